/*
 * qed-table.c - reading and writing QED L1 and L2 tables.
 *
 * Design notes:
 *  Owns: the on-disk L1 table (table_size clusters at l1_table_offset) and
 *  every L2 table (table_size clusters each), both arrays of little-endian
 *  u64 cluster offsets (docs/qed.md, "Tables").
 *  Invariants:
 *   1. Tables are CPU-endian in memory; byte order is converted only here,
 *      at the read/write boundary (ic_load_le64 / ic_store_le64).
 *   2. A table update writes only the 4 KiB blocks that hold the changed
 *      entries (qemu's qed_write_table writes 512-byte sectors).  Whole
 *      blocks spare the kernel a read-modify-write of a page-cache page
 *      that is not cached (a convert streams its target out of the cache,
 *      src/io/io-posix.c note 5, so a 512-byte update would read its page
 *      back from the disk before every L2 update).  A crash
 *      still leaves each entry old or new: every 512-byte sector of the
 *      block lands whole, and the unchanged ones carry what the disk
 *      already holds (the cache equals the disk, invariant 4).  Tables are
 *      at least one 4 KiB block (clusters are >= 4 KiB) and aligned to it.
 *   3. Every table offset is validated by the caller (qed_check_table_offset)
 *      before it reaches these functions.
 *   4. A failed L2 read or write drops the table from the cache, so the
 *      cache never disagrees with the disk (qed-l2-cache.c invariant 1).
 *  Follows the table handling of qemu's QED driver.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"
#include "util/endian.h"

/* Entries per 4 KiB block: the granularity of partial table writes
 * (invariant 2). */
#define QED_SECTOR_ENTRIES (4096u / sizeof(uint64_t))

int qed_read_table(struct ic_image *img, uint64_t offset, uint64_t *table)
{
    struct qed_state *s = qed_state_of(img);
    /* Read in place, then convert: the buffer is table_bytes long. */
    int ret = ic_io_pread(img->file, table, s->table_bytes, offset);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < s->table_nelems; i++)
        table[i] = ic_load_le64(&table[i]);
    return 0;
}

int qed_write_table(struct ic_image *img, uint64_t offset, const uint64_t *table,
                    uint32_t index, uint32_t n, bool flush, enum ic_event ev)
{
    struct qed_state *s = qed_state_of(img);
    uint32_t start = index & ~(uint32_t)(QED_SECTOR_ENTRIES - 1);
    uint32_t end = (index + n + (uint32_t)QED_SECTOR_ENTRIES - 1) &
                   ~(uint32_t)(QED_SECTOR_ENTRIES - 1);
    if (end > s->table_nelems)
        end = s->table_nelems;
    size_t bytes = (size_t)(end - start) * sizeof(uint64_t);
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return -ENOMEM;
    for (uint32_t i = start; i < end; i++)
        ic_store_le64(buf + (size_t)(i - start) * 8, table[i]);
    ic_io_event(img->file, ev);
    int ret = ic_io_pwrite(img->file, buf, bytes, offset + (uint64_t)start * 8);
    free(buf);
    if (ret == 0 && flush)
        ret = ic_io_flush(img->file);
    return ret;
}

int qed_read_l1_table(struct ic_image *img)
{
    struct qed_state *s = qed_state_of(img);
    return qed_read_table(img, s->header.l1_table_offset, s->l1_table);
}

int qed_write_l1_table(struct ic_image *img, uint32_t index, uint32_t n, enum ic_event ev)
{
    struct qed_state *s = qed_state_of(img);
    return qed_write_table(img, s->header.l1_table_offset, s->l1_table, index, n, false, ev);
}

int qed_read_l2_table(struct ic_image *img, uint64_t offset, uint64_t **out)
{
    struct qed_state *s = qed_state_of(img);
    uint64_t *t = qed_l2_cache_find(&s->l2_cache, offset);
    if (t) {
        *out = t;
        return 0;
    }
    t = qed_l2_cache_insert(&s->l2_cache, offset);
    if (!t)
        return -ENOMEM;
    int ret = qed_read_table(img, offset, t);
    if (ret < 0) {
        qed_l2_cache_drop(&s->l2_cache, offset);
        return ret;
    }
    *out = t;
    return 0;
}
