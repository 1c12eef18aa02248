/*
 * qcow2-bitmap-data.c - persistent dirty bitmaps: the bitmap data, read
 * into memory and walked as dirty extents.
 *
 * Design notes:
 *  Owns the bitmap data clusters a bitmap table points to, and the
 *  in-memory form of one bitmap (struct qcow2_bitmap_bits).
 *  1. Layout (docs/qcow2.md, "Bitmaps"): bit n covers guest bytes
 *     [n * g, (n + 1) * g) with g = 2^granularity_bits, and is bit n % 8
 *     (least significant first) of byte n / 8 of the data.  A table entry
 *     without an offset reads as all zeroes, or all ones with bit 0 set.
 *     Bits past the last one covering the disk are ignored on load (the
 *     format requires them to be zero).
 *  2. Only a consistent bitmap is loaded: an in-use one has no meaningful
 *     data (qemu does not read it either), and its table must have exactly
 *     the clusters the disk needs (checked again here, so a caller that
 *     skipped qcow2_bitmaps_load cannot index past the table).
 *  3. Memory is one bit per granule, as in qemu: at most 512 MiB for the
 *     largest bitmap qemu accepts (the directory parse bounds the table,
 *     hence the data).  The words are the in-memory layout (bit n is bit
 *     n % 64 of word n / 64); on-disk bytes are converted explicitly, so
 *     the host's byte order does not matter.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2-bitmap.h"
#include "util/overflow.h"

void qcow2_bitmap_bits_free(struct qcow2_bitmap_bits *b)
{
    free(b->w);
    b->w = NULL;
    b->nbits = 0;
}

int qcow2_bitmap_bits_init(struct qcow2_bitmap_bits *b, uint64_t virtual_size,
                           uint8_t granularity_bits)
{
    b->granularity_bits = granularity_bits;
    b->nbits = (virtual_size + (1ull << granularity_bits) - 1) >> granularity_bits;
    b->w = calloc((size_t)((b->nbits + 63) / 64) + 1, sizeof(uint64_t));
    return b->w ? 0 : -ENOMEM;
}

bool qcow2_bitmap_bits_get(const struct qcow2_bitmap_bits *b, uint64_t n)
{
    return n < b->nbits && ((b->w[n / 64] >> (n % 64)) & 1);
}

/* Sets (@v) or clears bits [first, first + count), clipped to nbits. */
static void set_bits(struct qcow2_bitmap_bits *b, uint64_t first, uint64_t count, bool v)
{
    if (first >= b->nbits)
        return;
    if (count > b->nbits - first)
        count = b->nbits - first;
    uint64_t n = first, end = first + count;
    while (n < end) {
        uint64_t wi = n / 64, bit = n % 64, take = IC_MIN(64 - bit, end - n);
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        if (v)
            b->w[wi] |= mask;
        else
            b->w[wi] &= ~mask;
        n += take;
    }
}

void qcow2_bitmap_bits_mark(struct qcow2_bitmap_bits *b, uint64_t off, uint64_t len)
{
    if (!len)
        return;
    uint64_t g = b->granularity_bits;
    uint64_t last = (off + len - 1) >> g; /* off + len <= virtual size <= 2^61 */
    set_bits(b, off >> g, last - (off >> g) + 1, true);
}

int qcow2_bitmap_data_load(struct ic_image *img, const struct qcow2_bitmap *bm,
                           struct qcow2_bitmap_bits *out, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    memset(out, 0, sizeof(*out));
    if (bm->flags & QCOW2_BME_FLAG_IN_USE)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "bitmap '%s' is in use: its data is "
                            "inconsistent", bm->name);
    uint64_t need = qcow2_bitmap_table_clusters(img->size, bm->granularity_bits, s->cluster_size);
    if (need != bm->table_size)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "Could not read bitmap '%s' from "
                            "image: its table has %" PRIu32 " entries, the disk needs %" PRIu64,
                            bm->name, bm->table_size, need);
    uint64_t *table = NULL;
    int ret = qcow2_bitmap_table_load(img, bm, &table, errp);
    if (ret < 0)
        return ret;
    if (qcow2_bitmap_bits_init(out, img->size, bm->granularity_bits) < 0) {
        free(table);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory for bitmap '%s'",
                            bm->name);
    }
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf) {
        free(table);
        qcow2_bitmap_bits_free(out);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    uint64_t per_cluster = (uint64_t)s->cluster_size * 8;
    for (uint32_t i = 0; i < bm->table_size && ret == 0; i++) {
        uint64_t first = (uint64_t)i * per_cluster;
        uint64_t off = table[i] & QCOW2_BMT_OFFSET_MASK;
        if (!off) {
            if (table[i] & QCOW2_BMT_ALL_ONES)
                set_bits(out, first, per_cluster, true);
            continue;
        }
        ret = ic_io_pread(img->file, buf, s->cluster_size, off);
        if (ret < 0) {
            ret = ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                               "Could not read bitmap '%s' from image: %s", bm->name,
                               strerror(-ret));
            break;
        }
        /* bytes -> words, least significant byte first (design note 3) */
        uint64_t nb = IC_MIN(per_cluster, out->nbits - first);
        for (uint64_t k = 0; k < (nb + 7) / 8; k++) {
            uint64_t n = first + 8 * k;
            out->w[n / 64] |= (uint64_t)buf[k] << (n % 64);
        }
    }
    free(buf);
    free(table);
    if (ret < 0)
        qcow2_bitmap_bits_free(out);
    /* bits at or past nbits (inside the last word) are never set */
    if (ret == 0 && out->nbits % 64)
        out->w[out->nbits / 64] &= (1ull << (out->nbits % 64)) - 1;
    return ret;
}

bool qcow2_bitmap_next_extent(const struct qcow2_bitmap_bits *b, uint64_t virtual_size,
                              uint64_t from, uint64_t *start, uint64_t *len)
{
    uint64_t g = b->granularity_bits;
    uint64_t n = from >> g;
    while (n < b->nbits) {
        uint64_t word = b->w[n / 64] >> (n % 64);
        if (!word) {
            n = (n / 64 + 1) * 64;
            continue;
        }
        n += (uint64_t)__builtin_ctzll(word);
        break;
    }
    if (n >= b->nbits)
        return false;
    uint64_t e = n;
    while (e < b->nbits) {
        uint64_t word = ~(b->w[e / 64] >> (e % 64));
        if (e % 64)
            word &= (1ull << (64 - e % 64)) - 1;  /* only bits of this word */
        if (!word) {
            e = (e / 64 + 1) * 64;
            continue;
        }
        e += (uint64_t)__builtin_ctzll(word);
        break;
    }
    if (e > b->nbits)
        e = b->nbits;
    uint64_t s0 = IC_MAX(n << g, from);
    uint64_t end = IC_MIN(e << g, virtual_size);
    if (end <= s0) /* @from is at or past the end of this run's guest bytes */
        return e < b->nbits && qcow2_bitmap_next_extent(b, virtual_size, e << g, start, len);
    *start = s0;
    *len = end - s0;
    return true;
}

int qcow2_bitmap_data_store(struct ic_image *img, const struct qcow2_bitmap_bits *b,
                            uint64_t *table, uint32_t table_size)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t per_cluster = (uint64_t)s->cluster_size * 8;
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    memset(table, 0, (size_t)table_size * sizeof(*table));
    for (uint32_t i = 0; i < table_size && ret == 0; i++) {
        uint64_t first = (uint64_t)i * per_cluster;
        if (first >= b->nbits)
            break;
        uint64_t nb = IC_MIN(per_cluster, b->nbits - first);
        bool any = false;
        memset(buf, 0, s->cluster_size);
        for (uint64_t k = 0; k < (nb + 7) / 8; k++) {
            uint64_t n = first + 8 * k;
            buf[k] = (uint8_t)(b->w[n / 64] >> (n % 64));
            any |= buf[k] != 0;
        }
        /* an all-zero chunk needs no cluster (entry 0), as qemu stores it */
        if (!any)
            continue;
        int64_t off = qcow2_alloc_clusters(img, 1);
        if (off < 0) {
            ret = (int)off;
            break;
        }
        table[i] = (uint64_t)off;
        ic_io_event(img->file, IC_EV_BITMAP_DATA_WRITE);
        ret = ic_io_pwrite(img->file, buf, s->cluster_size, (uint64_t)off);
    }
    free(buf);
    return ret;
}
