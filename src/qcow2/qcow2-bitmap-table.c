/*
 * qcow2-bitmap-table.c - persistent dirty bitmaps: the bitmap tables.
 *
 * Design notes:
 *  Owns the bitmap table of each bitmap (one level of u64 entries, each
 *  the host offset of a data cluster, or 0 with bit 0 saying whether the
 *  cluster reads as all zeroes or all ones).
 *  1. An entry is valid as qemu's check_table_entry has it (docs/qcow2.md,
 *     "Bitmaps"): no reserved bit (1-8, 56-63), and with a non-zero
 *     offset a cluster-aligned offset and bit 0 clear.
 *  2. The table size is bounded by the directory entry (at most 512 MiB of
 *     bitmap data, so at most 2^20 entries with 512-byte clusters: 8 MiB
 *     of table), and its byte range is checked before it is read; bytes
 *     past the end of the file read as zeroes, as they do for qemu.
 *  3. A consistent bitmap's table has exactly the clusters its data needs
 *     for the virtual size (qemu's load_bitmap_data refuses any other
 *     size): one bit per 2^granularity_bits bytes, rounded up to whole
 *     64-bit words, then to clusters; the rounding to words never changes
 *     the cluster count because clusters are multiples of 8 bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2-bitmap.h"
#include "util/endian.h"
#include "util/overflow.h"

bool qcow2_bitmap_table_entry_ok(uint64_t entry, uint32_t cluster_size)
{
    if (entry & QCOW2_BMT_RESERVED_MASK)
        return false;
    uint64_t off = entry & QCOW2_BMT_OFFSET_MASK;
    if (off && ((entry & QCOW2_BMT_ALL_ONES) || off % cluster_size))
        return false;
    return true;
}

uint64_t qcow2_bitmap_table_clusters(uint64_t virtual_size, uint8_t granularity_bits,
                                     uint32_t cluster_size)
{
    /* virtual sizes are bounded to 2^61 at open: no overflow below */
    uint64_t bits = (virtual_size + (1ull << granularity_bits) - 1) >> granularity_bits;
    uint64_t bits_per_cluster = (uint64_t)cluster_size * 8;
    return (bits + bits_per_cluster - 1) / bits_per_cluster;
}

int qcow2_bitmap_table_load(struct ic_image *img, const struct qcow2_bitmap *bm,
                            uint64_t **table, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    *table = NULL;
    uint64_t bytes, end;
    /* table_size was bounded by the directory parse (design note 2) */
    if (bm->table_size == 0 || bm->table_size > QCOW2_BME_MAX_TABLE_SIZE ||
        ic_mul_overflow((uint64_t)bm->table_size, 8, &bytes) ||
        ic_add_overflow(bm->table_offset, bytes, &end) || end > (uint64_t)INT64_MAX)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "Could not read bitmap_table table from image for bitmap '%s': "
                            "the table at %#" PRIx64 " (%" PRIu32 " entries) is out of range",
                            bm->name, bm->table_offset, bm->table_size);
    uint8_t *raw = malloc((size_t)bytes);
    uint64_t *t = malloc((size_t)bytes);
    if (!raw || !t) {
        free(raw);
        free(t);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    int ret = ic_io_pread(img->file, raw, (size_t)bytes, bm->table_offset);
    if (ret < 0) {
        free(raw);
        free(t);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "Could not read bitmap_table table from image for bitmap '%s': %s",
                            bm->name, strerror(-ret));
    }
    for (uint32_t i = 0; i < bm->table_size; i++) {
        t[i] = ic_load_be64(raw + 8 * (size_t)i);
        if (!qcow2_bitmap_table_entry_ok(t[i], s->cluster_size)) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                               "Could not read bitmap_table table from image for bitmap '%s': "
                               "entry %" PRIu32 " (%#" PRIx64 ", bitmap table at %#" PRIx64
                               ") is invalid", bm->name, i, t[i], bm->table_offset);
            break;
        }
    }
    free(raw);
    if (ret < 0) {
        free(t);
        return ret;
    }
    *table = t;
    return 0;
}

int qcow2_bitmap_table_store(struct ic_image *img, const uint64_t *table, uint32_t n,
                             uint64_t *offset)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t bytes = (uint64_t)n * 8; /* n <= 2^27 */
    uint64_t alloc = IC_ALIGN_UP(bytes, (uint64_t)s->cluster_size);
    uint8_t *raw = calloc(1, (size_t)alloc);
    if (!raw)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        ic_store_be64(raw + 8 * (size_t)i, table[i]);
    int64_t off = qcow2_alloc_clusters(img, alloc >> s->cluster_bits);
    int ret = off < 0 ? (int)off : 0;
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_BITMAP_TABLE_WRITE);
        ret = ic_io_pwrite(img->file, raw, (size_t)alloc, (uint64_t)off);
    }
    free(raw);
    if (ret == 0)
        *offset = (uint64_t)off;
    return ret;
}

int qcow2_bitmap_table_free(struct ic_image *img, const struct qcow2_bitmap *bm)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t *t = NULL;
    int ret = qcow2_bitmap_table_load(img, bm, &t, NULL);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < bm->table_size && ret == 0; i++) {
        uint64_t off = t[i] & QCOW2_BMT_OFFSET_MASK;
        if (off)
            ret = qcow2_free_clusters(img, off, s->cluster_size);
    }
    free(t);
    if (ret == 0)
        ret = qcow2_free_clusters(img, bm->table_offset, (uint64_t)bm->table_size * 8);
    return ret;
}
