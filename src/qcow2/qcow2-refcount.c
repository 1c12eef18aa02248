/*
 * qcow2-refcount.c - refcount table, refcount blocks, cluster allocation,
 * table growth and the refcount rebuild (as QEMU's qcow2 refcount code).
 *
 * Design notes:
 *  Owns the reftable and the refblocks.
 *  1. The reftable is loaded lazily, on the first refcount query: opening
 *     an image for reading never touches it.
 *  2. Refcount widths 1..64 are handled by qcow2_refblock_get/set (inline
 *     in qcow2.h; the packing is in docs/qcow2.md, "Refcounts").
 *  3. Ordering (docs/architecture.md, "The crash-ordering rule"; for
 *     qcow2, docs/qcow2.md, "Crash ordering"): increments are made before any
 *     reference reaches disk (the L2 cache depends on the refblock cache
 *     and flushes in between, qcow2-cache.c); decrements are queued and
 *     applied only after the metadata that dropped the reference is
 *     flushed (qcow2_flush_pending_frees).  A crash therefore leaves at
 *     worst leaked clusters.
 *  4. A new refblock is placed at the first cluster of the range it
 *     covers, so it describes itself; it is written and flushed before
 *     the reftable entry that points to it.  Callers restart their search
 *     for free clusters after a refblock was allocated.
 *  4b. A run of at least a refblock's worth of clusters (an L1 table of
 *     small clusters) cannot be found that way: the self-describing block
 *     of every range it spans would break it.  Such a run is allocated
 *     with the blocks missing in its ranges right after it, as part of one
 *     free run; they count the run and themselves (as qemu's allocator
 *     places a new block after the clusters it is allocating).  Same
 *     ordering: blocks written and flushed, then the reftable entries.
 *  5. The reftable grows by building a new table plus refblocks for the
 *     new area at the end of the file, covering themselves; flush; one
 *     12-byte header write switches to it; flush; then the old table is
 *     freed.  If we crash before the header write the new area is simply
 *     unreferenced; after it, at worst the old table leaks.
 *  6. Allocation never returns cluster 0 nor clusters overlapping the
 *     active L1, the reftable or the snapshot table: with a damaged
 *     refcount structure this refuses (corruption) instead of
 *     overwriting metadata (qemu's overlap check, reduced).
 *  7. The rebuild (dirty images, check -r all) computes every expected
 *     refcount from the metadata, writes a complete new structure past
 *     the end of the file, and switches the header to it with one write.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "util/endian.h"
#include "util/overflow.h"

/* Most restarts one allocation can need: each restart means a refblock or
 * a bigger reftable was created, which only happens a few times. */
#define QCOW2_ALLOC_MAX_RETRIES 64
/* The rebuild keeps one 32-bit counter per host cluster; references more
 * than this many clusters past the end of the file are refused. */
#define QCOW2_REBUILD_MAX_PAST_EOF (1ull << 24)

/* ---- runs of entries ---------------------------------------------------------- */

/* Entry @i of a refblock whose width @bits (8, 16, 32 or 64) is a
 * compile-time constant at every call below, so each run loop is compiled
 * for one width with the width switch folded away. */
static inline __attribute__((always_inline)) uint64_t rb_load(const uint8_t *rb, uint32_t i,
                                                              unsigned bits)
{
    switch (bits) {
    case 8: return rb[i];
    case 16: return ic_load_be16(rb + 2 * (size_t)i);
    case 32: return ic_load_be32(rb + 4 * (size_t)i);
    default: return ic_load_be64(rb + 8 * (size_t)i);
    }
}

static inline __attribute__((always_inline)) void rb_store(uint8_t *rb, uint32_t i, uint64_t v,
                                                           unsigned bits)
{
    switch (bits) {
    case 8: rb[i] = (uint8_t)v; break;
    case 16: ic_store_be16(rb + 2 * (size_t)i, (uint16_t)v); break;
    case 32: ic_store_be32(rb + 4 * (size_t)i, (uint32_t)v); break;
    default: ic_store_be64(rb + 8 * (size_t)i, v); break;
    }
}

static inline __attribute__((always_inline)) uint32_t
rb_add_run_w(uint8_t *rb, uint32_t i, uint32_t n, bool dec, uint64_t mag, uint64_t max,
             uint64_t *freed, unsigned bits)
{
    for (uint32_t k = 0; k < n; k++) {
        uint64_t v = rb_load(rb, i + k, bits);
        if (dec) {
            if (v < mag)
                return k;
            v -= mag;
            if (!v && freed)
                freed[(i + k) / 64] |= 1ull << ((i + k) % 64);
        } else {
            if (mag > max - v)
                return k;
            v += mag;
        }
        rb_store(rb, i + k, v, bits);
    }
    return n;
}

static inline __attribute__((always_inline)) uint32_t
rb_count_w(const uint8_t *rb, uint32_t i, uint32_t n, uint64_t value, unsigned bits)
{
    uint32_t cnt = 0;
    for (uint32_t k = 0; k < n; k++)
        cnt += rb_load(rb, i + k, bits) == value;
    return cnt;
}

/* First entry of [i, i + n) equal to 0, relative to @i (n when none).
 * Whole 64-bit words are skipped while none of their entries is 0 (the
 * test for a zero lane does not depend on byte order). */
static inline __attribute__((always_inline)) uint32_t
rb_find_zero_w(const uint8_t *rb, uint32_t i, uint32_t n, unsigned bits)
{
    uint32_t k = 0;
    if (bits < 64) {
        uint64_t lo = bits == 8 ? 0x0101010101010101ull
                    : bits == 16 ? 0x0001000100010001ull : 0x0000000100000001ull;
        uint64_t hi = lo << (bits - 1);
        uint32_t per = 64 / bits;
        for (; k + per <= n; k += per) {
            uint64_t w;
            memcpy(&w, rb + (size_t)(i + k) * (bits / 8), sizeof(w));
            if ((w - lo) & ~w & hi)
                break;
        }
    }
    while (k < n && rb_load(rb, i + k, bits))
        k++;
    return k;
}

uint32_t qcow2_refblock_find_zero(const struct qcow2_state *s, const uint8_t *rb, uint32_t i,
                                  uint32_t n)
{
    switch (s->refcount_bits) {
    case 8: return rb_find_zero_w(rb, i, n, 8);
    case 16: return rb_find_zero_w(rb, i, n, 16);
    case 32: return rb_find_zero_w(rb, i, n, 32);
    case 64: return rb_find_zero_w(rb, i, n, 64);
    default: break;
    }
    uint32_t k = 0;
    while (k < n && qcow2_refblock_get(s, rb, i + k))
        k++;
    return k;
}

uint32_t qcow2_refblock_add_run(const struct qcow2_state *s, uint8_t *rb, uint32_t i, uint32_t n,
                                int64_t delta, uint64_t *freed)
{
    bool dec = delta < 0;
    uint64_t mag = dec ? -(uint64_t)delta : (uint64_t)delta, max = s->refcount_max;
    switch (s->refcount_bits) {
    case 8:
        return dec ? rb_add_run_w(rb, i, n, true, mag, max, freed, 8)
                   : rb_add_run_w(rb, i, n, false, mag, max, freed, 8);
    case 16:
        return dec ? rb_add_run_w(rb, i, n, true, mag, max, freed, 16)
                   : rb_add_run_w(rb, i, n, false, mag, max, freed, 16);
    case 32:
        return dec ? rb_add_run_w(rb, i, n, true, mag, max, freed, 32)
                   : rb_add_run_w(rb, i, n, false, mag, max, freed, 32);
    case 64:
        return dec ? rb_add_run_w(rb, i, n, true, mag, max, freed, 64)
                   : rb_add_run_w(rb, i, n, false, mag, max, freed, 64);
    default:
        break;
    }
    /* sub-byte widths: several entries share a byte */
    for (uint32_t k = 0; k < n; k++) {
        uint64_t v = qcow2_refblock_get(s, rb, i + k);
        if (dec ? v < mag : mag > max - v)
            return k;
        v = dec ? v - mag : v + mag;
        if (dec && !v && freed)
            freed[(i + k) / 64] |= 1ull << ((i + k) % 64);
        qcow2_refblock_set(s, rb, i + k, v);
    }
    return n;
}

uint32_t qcow2_refblock_count(const struct qcow2_state *s, const uint8_t *rb, uint32_t i,
                              uint32_t n, uint64_t value)
{
    switch (s->refcount_bits) {
    case 8: return rb_count_w(rb, i, n, value, 8);
    case 16: return rb_count_w(rb, i, n, value, 16);
    case 32: return rb_count_w(rb, i, n, value, 32);
    case 64: return rb_count_w(rb, i, n, value, 64);
    default: break;
    }
    uint32_t cnt = 0;
    for (uint32_t k = 0; k < n; k++)
        cnt += qcow2_refblock_get(s, rb, i + k) == value;
    return cnt;
}

/* ---- reftable ---------------------------------------------------------------- */

int qcow2_refcount_load(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->reftable)
        return 0;
    size_t n = s->reftable_size ? s->reftable_size : 1;
    uint64_t *t = calloc(n, sizeof(*t));
    if (!t)
        return -ENOMEM;
    if (s->reftable_size) {
        size_t bytes = (size_t)s->reftable_size * 8;
        uint8_t *raw = malloc(bytes);
        if (!raw) {
            free(t);
            return -ENOMEM;
        }
        int ret = ic_io_pread(img->file, raw, bytes, s->reftable_offset);
        if (ret < 0) {
            free(raw);
            free(t);
            return ret;
        }
        for (size_t i = 0; i < s->reftable_size; i++)
            t[i] = ic_load_be64(raw + 8 * i);
        free(raw);
    }
    s->reftable = t;
    return 0;
}

int64_t qcow2_file_clusters(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int64_t size = ic_io_get_size(img->file);
    if (size < 0)
        return size;
    return (int64_t)(((uint64_t)size + s->cluster_size - 1) >> s->cluster_bits);
}

/* The refblock offset in reftable entry @e (index @rt), 0 when absent;
 * corruption for a bad entry. */
static int reftable_entry_offset(struct ic_image *img, uint64_t rt, uint64_t e, uint64_t *off)
{
    struct qcow2_state *s = qcow2_state(img);
    *off = 0;
    if (e & QCOW2_REFT_RESERVED)
        return qcow2_signal_corruption(img, true, s->reftable_offset + rt * 8,
                                       "refcount table entry %" PRIu64 " has reserved bits set", rt);
    uint64_t o = e & QCOW2_REFT_OFFSET_MASK;
    if (o & s->cluster_offset_mask)
        return qcow2_signal_corruption(img, true, s->reftable_offset + rt * 8,
                                       "refblock offset %#" PRIx64 " unaligned (reftable index %#"
                                       PRIx64 ")", o, rt);
    if (o > QCOW2_MAX_HOST_OFFSET)
        return qcow2_signal_corruption(img, true, s->reftable_offset + rt * 8,
                                       "refblock offset %#" PRIx64 " is invalid", o);
    *off = o;
    return 0;
}

/* Offset of refblock @rt, 0 when absent; corruption for a bad entry. */
static int refblock_offset(struct ic_image *img, uint64_t rt, uint64_t *off)
{
    struct qcow2_state *s = qcow2_state(img);
    *off = 0;
    if (rt >= s->reftable_size)
        return 0;
    return reftable_entry_offset(img, rt, s->reftable[rt], off);
}

int qcow2_get_refcount(struct ic_image *img, uint64_t cluster, uint64_t *refcount)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = qcow2_refcount_load(img);
    if (ret < 0)
        return ret;
    uint64_t off;
    *refcount = 0;
    if ((ret = refblock_offset(img, cluster >> s->refblock_bits, &off)) < 0 || !off)
        return ret;
    uint8_t *rb;
    if ((ret = qcow2_cache_get(img, &s->refblock_cache, off, false, &rb)) < 0)
        return ret;
    *refcount = qcow2_refblock_get(s, rb, (uint32_t)(cluster & (s->refblock_entries - 1)));
    qcow2_cache_put(&s->refblock_cache, &rb);
    return 0;
}

int qcow2_count_refcounted(struct ic_image *img, uint64_t nclusters, uint64_t limit,
                           uint64_t *count)
{
    struct qcow2_state *s = qcow2_state(img);
    *count = 0;
    if (!img->read_only || s->reftable) {
        /* the caches may hold what the file does not yet */
        for (uint64_t c = 0; c < nclusters && *count < limit; c++) {
            uint64_t rc;
            int ret = qcow2_get_refcount(img, c, &rc);
            if (ret < 0)
                return ret;
            *count += rc != 0;
        }
        return 0;
    }
    /* Read-only: the file is the truth, and only the reftable entries and
     * refblock bytes covering the clusters are read, into buffers freed
     * on return; the image keeps nothing it will not ask for again. */
    uint64_t nrt = IC_MIN((nclusters + s->refblock_entries - 1) >> s->refblock_bits,
                          (uint64_t)s->reftable_size);
    if (nrt == 0)
        return 0;
    uint8_t *rt = malloc((size_t)nrt * 8), *rb = malloc(s->cluster_size);
    int ret = rt && rb ? ic_io_pread(img->file, rt, (size_t)nrt * 8, s->reftable_offset)
                       : -ENOMEM;
    for (uint64_t i = 0; ret == 0 && i < nrt && *count < limit; i++) {
        uint64_t off;
        if ((ret = reftable_entry_offset(img, i, ic_load_be64(rt + 8 * i), &off)) < 0 || !off)
            continue;
        uint64_t first = i << s->refblock_bits;
        uint32_t n = (uint32_t)IC_MIN((uint64_t)s->refblock_entries, nclusters - first);
        size_t bytes = (size_t)(((uint64_t)n * s->refcount_bits + 7) / 8);
        if ((ret = ic_io_pread(img->file, rb, bytes, off)) < 0)
            break;
        for (uint32_t j = 0; j < n && *count < limit; j++)
            *count += qcow2_refblock_get(s, rb, j) != 0;
    }
    free(rt);
    free(rb);
    return ret;
}

static int write_reftable_entry(struct ic_image *img, uint64_t rt)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t b[8];
    ic_store_be64(b, s->reftable[rt]);
    ic_io_event(img->file, IC_EV_REFTABLE_UPDATE);
    return ic_io_pwrite(img->file, b, 8, s->reftable_offset + rt * 8);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* Refuses allocations that would overwrite metadata (design note 6). */
int qcow2_check_overlap(struct ic_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    const char *what = NULL;
    if (off < s->cluster_size)
        what = "the header";
    else if (ranges_overlap(off, len, s->l1_offset, (uint64_t)s->l1_size * 8))
        what = "the active L1 table";
    else if (ranges_overlap(off, len, s->reftable_offset,
                            (uint64_t)s->reftable_clusters << s->cluster_bits))
        what = "the refcount table";
    else if (ranges_overlap(off, len, s->snapshots_offset, s->snapshots_size))
        what = "the snapshot table";
    if (what)
        return qcow2_signal_corruption(img, true, off, "Preventing invalid allocation of %#"
                                       PRIx64 " over %s (refcounts are damaged)", off, what);
    return 0;
}

static int grow_reftable(struct ic_image *img, uint64_t min_rt);

/* Makes sure refblock @rt exists.  Returns 1 when something was allocated
 * (the caller must search again), 0 when it already existed. */
static int ensure_refblock(struct ic_image *img, uint64_t rt)
{
    struct qcow2_state *s = qcow2_state(img);
    if (rt >= s->reftable_size) {
        int ret = grow_reftable(img, rt);
        return ret < 0 ? ret : 1;
    }
    uint64_t off;
    int ret = refblock_offset(img, rt, &off);
    if (ret < 0 || off)
        return ret;
    if (rt == 0)
        return qcow2_signal_corruption(img, true, s->reftable_offset,
                                       "refcount table entry 0 is empty");
    /* Design note 4: self-describing block at the start of its range. */
    uint64_t blk = (rt << s->refblock_bits) << s->cluster_bits;
    if (blk > QCOW2_MAX_HOST_OFFSET)
        return -EFBIG;
    if ((ret = qcow2_check_overlap(img, blk, s->cluster_size)) < 0)
        return ret;
    uint8_t *rb;
    qcow2_cache_discard(&s->l2_cache, blk);
    qcow2_cache_discard(&s->refblock_cache, blk);
    if ((ret = qcow2_cache_get(img, &s->refblock_cache, blk, true, &rb)) < 0)
        return ret;
    qcow2_refblock_set(s, rb, 0, 1);
    ic_io_event(img->file, IC_EV_REFBLOCK_ALLOC_WRITE);
    ret = ic_io_pwrite(img->file, rb, s->cluster_size, blk);
    qcow2_cache_put(&s->refblock_cache, &rb);
    /* The block must be on disk before the reftable points to it; if we
     * crash in between, it is just an unreferenced cluster. */
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        qcow2_cache_discard(&s->refblock_cache, blk);
        return ret;
    }
    s->reftable[rt] = blk;
    ret = write_reftable_entry(img, rt);
    if (ret < 0) {
        s->reftable[rt] = 0;
        qcow2_cache_discard(&s->refblock_cache, blk);
        return ret;
    }
    return 1;
}

/* Design note 5. */
static int grow_reftable(struct ic_image *img, uint64_t min_rt)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t old = s->reftable_size;
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return (int)fc;
    uint64_t start = old << s->refblock_bits;
    if ((uint64_t)fc > start)
        start = (uint64_t)fc;
    uint64_t blocks = 0, rt_entries = 0, rt_clusters = 0, end = start;
    uint64_t entries_per_cluster = s->cluster_size / 8;
    for (int iter = 0; iter < 32; iter++) {
        end = start + blocks + rt_clusters;
        uint64_t last_rt = (end - 1) >> s->refblock_bits;
        if (last_rt < old)
            last_rt = old;
        uint64_t nb = last_rt - old + 1;
        uint64_t want = IC_MAX(last_rt + 1, min_rt + 1);
        want = IC_MAX(want, old + old / 2);
        want = IC_ALIGN_UP(want, entries_per_cluster);
        uint64_t rc = want / entries_per_cluster;
        if (nb == blocks && want == rt_entries && rc == rt_clusters)
            break;
        blocks = nb;
        rt_entries = want;
        rt_clusters = rc;
    }
    end = start + blocks + rt_clusters;
    if (rt_entries * 8 > QCOW2_MAX_REFTABLE_BYTES || (end << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET)
        return ic_image_fail(img, -EFBIG, "the refcount table cannot grow any further");
    uint64_t cs = s->cluster_size;
    size_t area = (size_t)((blocks + rt_clusters) * cs);
    uint8_t *buf = calloc(1, area);
    uint64_t *nt = calloc((size_t)rt_entries, sizeof(*nt));
    if (!buf || !nt) {
        free(buf);
        free(nt);
        return -ENOMEM;
    }
    memcpy(nt, s->reftable, (size_t)old * 8);
    for (uint64_t i = 0; i < blocks; i++)
        nt[old + i] = (start + i) << s->cluster_bits;
    /* refcount 1 for every cluster of the new area, in the block covering it */
    for (uint64_t c = start; c < end; c++) {
        uint64_t rt = c >> s->refblock_bits;
        uint8_t *rb = buf + (rt - old) * cs;
        qcow2_refblock_set(s, rb, (uint32_t)(c & (s->refblock_entries - 1)), 1);
    }
    uint8_t *tab = buf + blocks * cs;
    for (uint64_t i = 0; i < rt_entries; i++)
        ic_store_be64(tab + 8 * i, nt[i]);
    for (uint64_t c = start; c < end; c++) {
        qcow2_cache_discard(&s->l2_cache, c << s->cluster_bits);
        qcow2_cache_discard(&s->refblock_cache, c << s->cluster_bits);
    }
    ic_io_event(img->file, IC_EV_REFTABLE_GROW);
    int ret = ic_io_pwrite(img->file, buf, area, start << s->cluster_bits);
    free(buf);
    /* New table and blocks durable before the header points to them. */
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        free(nt);
        return ret;
    }
    uint8_t hb[12];
    uint64_t new_off = (start + blocks) << s->cluster_bits;
    ic_store_be64(hb, new_off);
    ic_store_be32(hb + 8, (uint32_t)rt_clusters);
    ic_io_event(img->file, IC_EV_REFBLOCK_ALLOC_SWITCH_TABLE);
    ret = ic_io_pwrite(img->file, hb, sizeof(hb), QCOW2_HDR_REFTABLE_OFFSET);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        /* As for the L1 switch: after a failed header write or flush the
         * header may point to either table.  Later refcount updates would
         * reach only the one in memory, so a reopen could see refcounts
         * that are too low.  Stop writing (sticky ERROR): whichever table
         * the header does not point to only leaks. */
        free(nt);
        img->state = IC_IMAGE_ERROR;
        return ret;
    }
    uint64_t old_off = s->reftable_offset, old_clusters = s->reftable_clusters;
    free(s->reftable);
    s->reftable = nt;
    s->reftable_size = (uint32_t)rt_entries;
    s->reftable_offset = new_off;
    s->reftable_clusters = (uint32_t)rt_clusters;
    s->h.refcount_table_offset = new_off;
    s->h.refcount_table_clusters = (uint32_t)rt_clusters;
    /* If we crash before this decrement reaches disk, the old table only
     * leaks.  Nothing references it any more, so no flush ordering needed. */
    if (old_clusters)
        return qcow2_update_refcount(img, old_off, old_clusters << s->cluster_bits, -1);
    return 0;
}

/* ---- updates ----------------------------------------------------------------- */

static void cluster_freed(struct qcow2_state *s, uint64_t c)
{
    uint64_t off = c << s->cluster_bits;
    if (c < s->free_cluster_index)
        s->free_cluster_index = c;
    if (s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) == c)
        s->free_byte_offset = 0;
    qcow2_cache_discard(&s->l2_cache, off);
    qcow2_cache_discard(&s->refblock_cache, off);
    if (s->cbuf_entry)
        s->cbuf_entry = 0;
}

int qcow2_update_refcount(struct ic_image *img, uint64_t offset, uint64_t length, int64_t delta)
{
    struct qcow2_state *s = qcow2_state(img);
    if (length == 0)
        return 0;
    int ret = qcow2_refcount_load(img);
    if (ret < 0)
        return ret;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + length - 1) >> s->cluster_bits;
    uint64_t c = first;
    while (c <= last) {
        uint64_t rt = c >> s->refblock_bits, boff;
        if ((ret = refblock_offset(img, rt, &boff)) < 0)
            return ret;
        if (!boff) {
            if (delta < 0)
                return qcow2_signal_corruption(img, true, c << s->cluster_bits,
                                               "cannot decrease the refcount of free cluster %#"
                                               PRIx64, c << s->cluster_bits);
            if ((ret = ensure_refblock(img, rt)) < 0)
                return ret;
            continue;
        }
        uint8_t *rb;
        if ((ret = qcow2_cache_get(img, &s->refblock_cache, boff, false, &rb)) < 0)
            return ret;
        uint64_t rt_end = (rt + 1) << s->refblock_bits;
        for (; c <= last && c < rt_end; c++) {
            uint32_t i = (uint32_t)(c & (s->refblock_entries - 1));
            uint64_t v = qcow2_refblock_get(s, rb, i), nv;
            if (delta < 0 ? v < (uint64_t)-delta
                          : (ic_add_overflow(v, (uint64_t)delta, &nv) || nv > s->refcount_max)) {
                qcow2_cache_put(&s->refblock_cache, &rb);
                if (delta > 0)
                    return ic_image_fail(img, -ERANGE, "refcount of cluster %#" PRIx64
                                         " would overflow", c << s->cluster_bits);
                return qcow2_signal_corruption(img, true, c << s->cluster_bits,
                                               "refcount of cluster %#" PRIx64 " would drop "
                                               "below zero", c << s->cluster_bits);
            }
            nv = delta < 0 ? v - (uint64_t)-delta : v + (uint64_t)delta;
            qcow2_refblock_set(s, rb, i, nv);
            if (nv == 0)
                cluster_freed(s, c);
        }
        qcow2_cache_mark_dirty(&s->refblock_cache, rb);
        qcow2_cache_put(&s->refblock_cache, &rb);
    }
    return 0;
}

/* First run of @n free clusters at or after free_cluster_index (never
 * cluster 0).  *first_free receives the first free cluster seen. */
static int find_free(struct ic_image *img, uint64_t n, uint64_t *out, uint64_t *first_free)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t c = IC_MAX(s->free_cluster_index, 1), run_start = c, run = 0;
    *first_free = UINT64_MAX;
    for (;;) {
        if ((c << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET)
            return ic_image_fail(img, -EFBIG, "no free cluster below the maximum host offset");
        uint64_t rt = c >> s->refblock_bits, boff;
        int ret = refblock_offset(img, rt, &boff);
        if (ret < 0)
            return ret;
        uint64_t rt_end = (rt + 1) << s->refblock_bits;
        if (!boff) {
            /* an absent block: its whole range is free */
            if (!run)
                run_start = c;
            if (*first_free == UINT64_MAX)
                *first_free = c;
            uint64_t take = rt_end - c;
            if (run + take >= n) {
                *out = run_start;
                return 0;
            }
            run += take;
            c = rt_end;
            continue;
        }
        uint8_t *rb;
        if ((ret = qcow2_cache_get(img, &s->refblock_cache, boff, false, &rb)) < 0)
            return ret;
        for (; c < rt_end; c++) {
            if (qcow2_refblock_get(s, rb, (uint32_t)(c & (s->refblock_entries - 1)))) {
                run = 0;
                continue;
            }
            if (*first_free == UINT64_MAX)
                *first_free = c;
            if (!run)
                run_start = c;
            if (++run >= n) {
                qcow2_cache_put(&s->refblock_cache, &rb);
                *out = run_start;
                return 0;
            }
        }
        qcow2_cache_put(&s->refblock_cache, &rb);
    }
}

/* Writes refblocks for the ranges @missing[0..m) at clusters [first, first
 * + m), counting every cluster of [c, first + m) that lies in those ranges,
 * and points the reftable to them (design note 4b). */
static int place_trailing_blocks(struct ic_image *img, const uint64_t *missing, uint64_t m,
                                 uint64_t c, uint64_t first)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size, end = first + m;
    uint8_t *buf = calloc((size_t)m, (size_t)cs);
    if (!buf)
        return -ENOMEM;
    for (uint64_t i = 0; i < m; i++) {
        uint64_t lo = IC_MAX(c, missing[i] << s->refblock_bits);
        uint64_t hi = IC_MIN(end, (missing[i] + 1) << s->refblock_bits);
        for (uint64_t x = lo; x < hi; x++)
            qcow2_refblock_set(s, buf + i * cs, (uint32_t)(x & (s->refblock_entries - 1)), 1);
    }
    for (uint64_t i = 0; i < m; i++) {
        qcow2_cache_discard(&s->l2_cache, (first + i) << s->cluster_bits);
        qcow2_cache_discard(&s->refblock_cache, (first + i) << s->cluster_bits);
    }
    ic_io_event(img->file, IC_EV_REFBLOCK_ALLOC_WRITE);
    int ret = ic_io_pwrite(img->file, buf, (size_t)(m * cs), first << s->cluster_bits);
    free(buf);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    for (uint64_t i = 0; ret == 0 && i < m; i++) {
        s->reftable[missing[i]] = (first + i) << s->cluster_bits;
        ret = write_reftable_entry(img, missing[i]);
        if (ret < 0)
            s->reftable[missing[i]] = 0;
    }
    return ret;
}

/* Design note 4b: for @n >= refblock entries, and packed allocations. */
static int64_t alloc_large_run(struct ic_image *img, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t k = 0;
    uint64_t *missing = NULL;
    int64_t ret = -EIO;
    for (int tries = 0; tries < QCOW2_ALLOC_MAX_RETRIES; tries++) {
        uint64_t c = 0, first_free = 0;
        if ((ret = find_free(img, n + k, &c, &first_free)) < 0)
            goto out;
        uint64_t end = c + n + k;
        if ((end << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET ||
            (end << s->cluster_bits) >> s->cluster_bits != end) {
            ret = ic_image_fail(img, -EFBIG, "image file would exceed the maximum host offset");
            goto out;
        }
        uint64_t rt_first = c >> s->refblock_bits, rt_last = (end - 1) >> s->refblock_bits;
        if (rt_last >= s->reftable_size) {
            if ((ret = grow_reftable(img, rt_last)) < 0)
                goto out;
            continue;
        }
        free(missing);
        missing = calloc((size_t)(rt_last - rt_first + 1), sizeof(*missing));
        if (!missing) {
            ret = -ENOMEM;
            goto out;
        }
        uint64_t m = 0;
        for (uint64_t rt = rt_first; rt <= rt_last; rt++) {
            uint64_t boff;
            if ((ret = refblock_offset(img, rt, &boff)) < 0)
                goto out;
            if (!boff)
                missing[m++] = rt;
        }
        if (m > k) {
            k = m;
            continue;
        }
        /* [c, c + n + m) lies inside the free run and spans no range
         * without a block outside @missing (a shorter run spans fewer). */
        end = c + n + m;
        if ((ret = qcow2_check_overlap(img, c << s->cluster_bits, (n + m) << s->cluster_bits)) < 0)
            goto out;
        ic_io_event(img->file, IC_EV_CLUSTER_ALLOC);
        if (m && (ret = place_trailing_blocks(img, missing, m, c, c + n)) < 0)
            goto out;
        /* the clusters in ranges that had a block are counted there */
        for (uint64_t rt = rt_first, i = 0; rt <= rt_last; rt++) {
            if (i < m && missing[i] == rt) {
                i++;
                continue;
            }
            uint64_t lo = IC_MAX(c, rt << s->refblock_bits);
            uint64_t hi = IC_MIN(end, (rt + 1) << s->refblock_bits);
            if (lo < hi && (ret = qcow2_update_refcount(img, lo << s->cluster_bits,
                                                        (hi - lo) << s->cluster_bits, 1)) < 0)
                goto out;
        }
        s->free_cluster_index = end;
        ret = (int64_t)(c << s->cluster_bits);
        goto out;
    }
    ret = ic_image_fail(img, -EIO, "cluster allocation did not converge");
out:
    free(missing);
    return ret;
}

int64_t qcow2_alloc_clusters(struct ic_image *img, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = qcow2_refcount_load(img);
    if (ret < 0)
        return ret;
    if (n == 0)
        return -EINVAL;
    if (n >= s->refblock_entries)
        return alloc_large_run(img, n);
    for (int tries = 0; tries < QCOW2_ALLOC_MAX_RETRIES + (int)(n >> s->refblock_bits); tries++) {
        uint64_t c = 0, first_free = 0;
        if ((ret = find_free(img, n, &c, &first_free)) < 0)
            return ret;
        uint64_t end = c + n;
        if ((end << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET || (end << s->cluster_bits) >> s->cluster_bits != end)
            return ic_image_fail(img, -EFBIG, "image file would exceed the maximum host offset");
        bool again = false;
        for (uint64_t rt = c >> s->refblock_bits; rt <= (end - 1) >> s->refblock_bits; rt++) {
            ret = ensure_refblock(img, rt);
            if (ret < 0)
                return ret;
            if (ret > 0) {
                again = true;
                break;
            }
        }
        if (again)
            continue;
        if ((ret = qcow2_check_overlap(img, c << s->cluster_bits, n << s->cluster_bits)) < 0)
            return ret;
        ic_io_event(img->file, IC_EV_CLUSTER_ALLOC);
        ret = qcow2_update_refcount(img, c << s->cluster_bits, n << s->cluster_bits, 1);
        if (ret < 0)
            return ret;
        /* As qemu's alloc_clusters_noref: the hint moves past the run;
         * holes too small for this request are found again only after a
         * free lowers the hint (otherwise every batch rescans them). */
        s->free_cluster_index = n == 1 && first_free < c ? first_free : end;
        return (int64_t)(c << s->cluster_bits);
    }
    return ic_image_fail(img, -EIO, "cluster allocation did not converge");
}

int64_t qcow2_alloc_clusters_packed(struct ic_image *img, uint64_t n)
{
    int ret = qcow2_refcount_load(img);
    if (ret < 0)
        return ret;
    if (n == 0)
        return -EINVAL;
    return alloc_large_run(img, n);
}

int64_t qcow2_alloc_clusters_at_end(struct ic_image *img, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return fc;
    if ((uint64_t)fc > s->free_cluster_index)
        s->free_cluster_index = (uint64_t)fc;
    return qcow2_alloc_clusters(img, n);
}

int64_t qcow2_alloc_bytes(struct ic_image *img, uint64_t size)
{
    struct qcow2_state *s = qcow2_state(img);
    if (size == 0 || size > s->cluster_size)
        return -EINVAL;
    uint64_t off = s->free_byte_offset;
    if (off) {
        uint64_t in = off & s->cluster_offset_mask;
        uint64_t rc;
        int ret = qcow2_get_refcount(img, off >> s->cluster_bits, &rc);
        if (ret < 0)
            return ret;
        /* Packing adds a reference to a cluster already in use; it must
         * fit in the cluster and in the refcount width. */
        if (in && in + size <= s->cluster_size && rc > 0 && rc < s->refcount_max) {
            ret = qcow2_update_refcount(img, off, 1, 1);
            if (ret < 0)
                return ret;
            s->free_byte_offset = (in + size == s->cluster_size) ? 0 : off + size;
            return (int64_t)off;
        }
        if (in && rc > 0 && rc < s->refcount_max) {
            /* It does not fit in what is left of this cluster.  As qemu
             * does, take a new cluster and, when it lies right after this
             * one, let the data run across the boundary (a compressed
             * cluster may cross into the next host cluster; both clusters
             * then hold a reference).  The new cluster's refcount is raised
             * by the allocation, this one's here: both before any L2 entry
             * points at the data, so a crash only leaks. */
            int64_t c = qcow2_alloc_clusters(img, 1);
            if (c < 0)
                return c;
            if ((uint64_t)c == (off | (s->cluster_size - 1)) + 1) {
                ret = qcow2_update_refcount(img, off, 1, 1);
                if (ret < 0)
                    return ret; /* the new cluster only leaks */
                uint64_t end = off + size;
                s->free_byte_offset = (end & (s->cluster_size - 1)) ? end : 0;
                return (int64_t)off;
            }
            s->free_byte_offset = size == s->cluster_size ? 0 : (uint64_t)c + size;
            return c;
        }
    }
    int64_t c = qcow2_alloc_clusters(img, 1);
    if (c < 0)
        return c;
    s->free_byte_offset = size == s->cluster_size ? 0 : (uint64_t)c + size;
    return c;
}

int qcow2_free_clusters(struct ic_image *img, uint64_t offset, uint64_t length)
{
    ic_io_event(img->file, IC_EV_CLUSTER_FREE);
    return qcow2_update_refcount(img, offset, length, -1);
}

int qcow2_free_l2_entry(struct ic_image *img, uint64_t l2e)
{
    struct qcow2_state *s = qcow2_state(img);
    switch (qcow2_cluster_type(s, l2e)) {
    case QCOW2_CT_COMPRESSED: {
        uint64_t coff, csize;
        qcow2_parse_compressed(s, l2e, &coff, &csize);
        return qcow2_queue_free(img, coff, csize);
    }
    case QCOW2_CT_NORMAL:
    case QCOW2_CT_ZERO_ALLOC:
        if (s->data_file)
            return 0; /* data clusters of a data file are not refcounted */
        return qcow2_queue_free(img, l2e & QCOW2_L2E_OFFSET_MASK, s->cluster_size);
    case QCOW2_CT_UNALLOCATED:
    case QCOW2_CT_ZERO_PLAIN:
        return 0;
    }
    return 0;
}

int qcow2_queue_free(struct ic_image *img, uint64_t offset, uint64_t length)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->nb_pending_free == s->cap_pending_free) {
        size_t cap = s->cap_pending_free ? s->cap_pending_free * 2 : 16;
        void *nv = realloc(s->pending_free, cap * sizeof(*s->pending_free));
        if (!nv)
            return -ENOMEM;
        s->pending_free = nv;
        s->cap_pending_free = cap;
    }
    s->pending_free[s->nb_pending_free].offset = offset;
    s->pending_free[s->nb_pending_free].length = length;
    s->nb_pending_free++;
    return 0;
}

int qcow2_flush_pending_frees(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!s->nb_pending_free)
        return 0;
    /* The tables that stopped referencing these clusters reach disk first:
     * if we crash before the decrements, the clusters only leak. */
    int ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < s->nb_pending_free; i++) {
        uint64_t off = s->pending_free[i].offset, len = s->pending_free[i].length;
        ret = qcow2_free_clusters(img, off, len);
        if (ret < 0) {
            s->nb_pending_free = 0;
            return ret;
        }
    }
    s->nb_pending_free = 0;
    return 0;
}

/* ---- rebuild ------------------------------------------------------------------ */

struct imrt {
    uint32_t *v;
    uint64_t nb;
    uint64_t limit;
};

static int imrt_add(struct ic_image *img, struct imrt *m, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!len)
        return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    if (last >= m->limit)
        return qcow2_signal_corruption(img, false, off, "reference to %#" PRIx64 " lies far past "
                                       "the end of the file", off);
    if (last >= m->nb) {
        uint64_t nnb = IC_MAX(last + 1, m->nb * 2);
        nnb = IC_MIN(nnb, m->limit);
        uint32_t *nv = realloc(m->v, (size_t)nnb * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        memset(nv + m->nb, 0, (size_t)(nnb - m->nb) * sizeof(*nv));
        m->v = nv;
        m->nb = nnb;
    }
    for (uint64_t c = first; c <= last; c++)
        if (m->v[c] < UINT32_MAX)
            m->v[c]++;
    return 0;
}

static int imrt_walk_l1(struct ic_image *img, struct imrt *m, const uint64_t *l1, uint32_t l1_size)
{
    struct qcow2_state *s = qcow2_state(img);
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (l2off & s->cluster_offset_mask)
            return qcow2_signal_corruption(img, false, l2off, "L2 table offset %#" PRIx64
                                           " unaligned (L1 index %#" PRIx32 ")", l2off, i);
        int ret = imrt_add(img, m, l2off, s->cluster_size);
        if (ret < 0)
            return ret;
        uint8_t *l2;
        if ((ret = qcow2_get_l2(img, l2off, &l2)) < 0)
            return ret;
        for (uint32_t j = 0; j < s->l2_entries && ret == 0; j++) {
            uint64_t e = qcow2_l2_get(s, l2, j);
            switch (qcow2_cluster_type(s, e)) {
            case QCOW2_CT_COMPRESSED: {
                uint64_t coff, csize;
                qcow2_parse_compressed(s, e, &coff, &csize);
                ret = imrt_add(img, m, coff, csize);
                break;
            }
            case QCOW2_CT_NORMAL:
            case QCOW2_CT_ZERO_ALLOC:
                if (!s->data_file) {
                    uint64_t d = e & QCOW2_L2E_OFFSET_MASK;
                    if (d & s->cluster_offset_mask)
                        ret = qcow2_signal_corruption(img, false, l2off, "data cluster offset %#"
                                                      PRIx64 " unaligned", d);
                    else
                        ret = imrt_add(img, m, d, s->cluster_size);
                }
                break;
            case QCOW2_CT_UNALLOCATED:
            case QCOW2_CT_ZERO_PLAIN:
                break;
            }
        }
        qcow2_cache_put(&s->l2_cache, &l2);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The bitmap directory, tables and data clusters.  Bitmaps that cannot be
 * counted (qemu would not load them) stop the computation: a refcount
 * structure built without them would free clusters the bitmaps use. */
static int imrt_bitmaps(struct ic_image *img, struct imrt *m)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!qcow2_bitmaps_present(s))
        return 0;
    int ret = imrt_add(img, m, s->bitmap_dir_offset, s->bitmap_dir_size);
    if (ret < 0)
        return ret;
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    if (qcow2_bitmaps_load(img, &d, &err) < 0) {
        ret = qcow2_signal_corruption(img, false, s->bitmap_dir_offset, "cannot count the "
                                      "persistent dirty bitmaps: %s", ic_error_message(err));
        ic_error_free(err);
        return ret;
    }
    for (uint32_t i = 0; i < d.nb && ret == 0; i++) {
        const struct qcow2_bitmap *bm = &d.bm[i];
        uint64_t *t = NULL;
        ret = imrt_add(img, m, bm->table_offset, (uint64_t)bm->table_size * 8);
        if (ret == 0 && qcow2_bitmap_table_load(img, bm, &t, &err) < 0) {
            ret = qcow2_signal_corruption(img, false, bm->table_offset, "cannot count the "
                                          "persistent dirty bitmaps: %s", ic_error_message(err));
            ic_error_free(err);
            err = NULL;
        }
        for (uint32_t j = 0; ret == 0 && j < bm->table_size; j++) {
            uint64_t off = t[j] & QCOW2_BMT_OFFSET_MASK;
            if (off)
                ret = imrt_add(img, m, off, s->cluster_size);
        }
        free(t);
    }
    qcow2_bitmap_dir_free(&d);
    return ret;
}

int qcow2_calculate_refcounts(struct ic_image *img, uint32_t **imrt, uint64_t *nb,
                              ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    *imrt = NULL;
    *nb = 0;
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-fc, "cannot get file size: %s",
                            strerror((int)-fc));
    struct imrt m = { NULL, 0, (uint64_t)fc + QCOW2_REBUILD_MAX_PAST_EOF };
    int ret = imrt_add(img, &m, 0, s->cluster_size);
    if (ret == 0)
        ret = imrt_add(img, &m, s->l1_offset, (uint64_t)s->l1_size * 8);
    if (ret == 0)
        ret = imrt_walk_l1(img, &m, s->l1, s->l1_size);
    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = NULL;
        ret = imrt_add(img, &m, sn->l1_table_offset, (uint64_t)sn->l1_size * 8);
        if (ret == 0 && sn->l1_size)
            ret = qcow2_read_l1(img, sn->l1_table_offset, sn->l1_size, &l1);
        if (ret == 0)
            ret = imrt_walk_l1(img, &m, l1, sn->l1_size);
        free(l1);
    }
    if (ret == 0)
        ret = imrt_add(img, &m, s->snapshots_offset, s->snapshots_size);
    if (ret == 0)
        ret = imrt_bitmaps(img, &m);
    if (ret < 0) {
        free(m.v);
        if (img->last_error)
            return ic_error_set(errp, img->last_error->kind, img->last_error->errnum, "%s",
                                img->last_error->msg);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot compute refcounts: %s", strerror(-ret));
    }
    *imrt = m.v;
    *nb = m.nb;
    return 0;
}

int qcow2_rebuild_refcount_structure(struct ic_image *img, uint32_t *imrt, uint64_t nb,
                                     ic_error **errp)
{
    return qcow2_rebuild_refcount_structure_order(img, imrt, nb,
                                                  qcow2_state(img)->refcount_order, errp);
}

/* Sets the refcount geometry of @g for entries of 2^@order bits. */
static void set_refcount_geometry(struct qcow2_state *g, uint32_t order)
{
    g->refcount_order = order;
    g->refcount_bits = 1u << order;
    g->refcount_max = g->refcount_bits == 64 ? UINT64_MAX : (1ull << g->refcount_bits) - 1;
    g->refblock_bits = g->cluster_bits + 3 - order;
    g->refblock_entries = 1u << g->refblock_bits;
}

int qcow2_rebuild_refcount_structure_order(struct ic_image *img, uint32_t *imrt, uint64_t nb,
                                           uint32_t order, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    /* The new structure's geometry; @s keeps the old one until the switch
     * (a shallow copy read only for its geometry fields). */
    struct qcow2_state geo = *s;
    set_refcount_geometry(&geo, order);
    bool reorder = order != s->refcount_order;
    int ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot flush before the rebuild: %s",
                            strerror(-ret));
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-fc, "cannot get file size");
    for (uint64_t c = 0; c < nb; c++)
        if (imrt[c] > geo.refcount_max)
            return ic_error_set(errp, IC_ERR_CORRUPT, ERANGE, "cluster %#" PRIx64 " has more "
                                "references than refcount_bits=%" PRIu32 " can count",
                                c << s->cluster_bits, geo.refcount_bits);
    /* Place everything past both the used clusters and the end of file
     * (design note 7): the old structure stays intact until the switch. */
    uint64_t start = IC_MAX(nb, (uint64_t)fc);
    uint64_t epc = s->cluster_size / 8, blocks = 0, rtc = 0;
    for (int iter = 0; iter < 32; iter++) {
        uint64_t total = start + blocks + rtc;
        uint64_t nbk = IC_DIV_ROUND_UP(total, geo.refblock_entries);
        uint64_t nrtc = IC_DIV_ROUND_UP(nbk, epc);
        if (nbk == blocks && nrtc == rtc)
            break;
        blocks = nbk;
        rtc = nrtc;
    }
    uint64_t end = start + blocks + rtc;
    if (rtc * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG, "refcount table would be too large");
    uint64_t *nt = calloc((size_t)(rtc * epc), sizeof(*nt));
    uint8_t *rb = malloc(s->cluster_size);
    if (!nt || !rb) {
        free(nt);
        free(rb);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    for (uint64_t b = 0; b < blocks && ret == 0; b++) {
        memset(rb, 0, s->cluster_size);
        uint64_t c0 = b << geo.refblock_bits;
        for (uint32_t i = 0; i < geo.refblock_entries; i++) {
            uint64_t c = c0 + i, v = 0;
            if (c < nb)
                v = imrt[c];
            if (c >= start && c < end)
                v = 1;
            if (v)
                qcow2_refblock_set(&geo, rb, i, v);
        }
        nt[b] = (start + b) << s->cluster_bits;
        ic_io_event(img->file, IC_EV_CHECK_REPAIR);
        ret = ic_io_pwrite(img->file, rb, s->cluster_size, nt[b]);
    }
    free(rb);
    uint8_t *tab = NULL;
    if (ret == 0) {
        tab = calloc(1, (size_t)(rtc * s->cluster_size));
        if (!tab)
            ret = -ENOMEM;
    }
    if (ret == 0) {
        for (uint64_t i = 0; i < rtc * epc; i++)
            ic_store_be64(tab + 8 * i, nt[i]);
        ic_io_event(img->file, IC_EV_CHECK_REPAIR);
        ret = ic_io_pwrite(img->file, tab, (size_t)(rtc * s->cluster_size),
                           (start + blocks) << s->cluster_bits);
    }
    free(tab);
    /* New structure durable before the header switches to it. */
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret == 0) {
        /* One write switches to the new structure: the reftable offset and
         * size, and with a new width also refcount_order, read back from
         * disk in between so every other field stays as it is there (all
         * of bytes 48..100 lie in the first sector). */
        uint8_t hb[QCOW2_HDR_HEADER_LENGTH - QCOW2_HDR_REFTABLE_OFFSET];
        size_t hlen = reorder ? sizeof(hb) : 12;
        if (reorder)
            ret = ic_io_pread(img->file, hb, sizeof(hb), QCOW2_HDR_REFTABLE_OFFSET);
        if (ret == 0) {
            ic_store_be64(hb, (start + blocks) << s->cluster_bits);
            ic_store_be32(hb + 8, (uint32_t)rtc);
            if (reorder)
                ic_store_be32(hb + QCOW2_HDR_REFCOUNT_ORDER - QCOW2_HDR_REFTABLE_OFFSET, order);
            ic_io_event(img->file, IC_EV_HEADER_UPDATE);
            ret = ic_io_pwrite(img->file, hb, hlen, QCOW2_HDR_REFTABLE_OFFSET);
        }
        if (ret == 0)
            ret = ic_io_flush(img->file);
    }
    if (ret < 0) {
        free(nt);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot write the new refcount structure: %s", strerror(-ret));
    }
    qcow2_cache_reset(&s->refblock_cache);
    free(s->reftable);
    s->reftable = nt;
    s->reftable_size = (uint32_t)(rtc * epc);
    s->reftable_offset = (start + blocks) << s->cluster_bits;
    s->reftable_clusters = (uint32_t)rtc;
    s->h.refcount_table_offset = s->reftable_offset;
    s->h.refcount_table_clusters = (uint32_t)rtc;
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    if (reorder) {
        set_refcount_geometry(s, order);
        s->h.refcount_order = order;
    }
    return 0;
}

int64_t qcow2_fix_copied(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int64_t fixed = 0;
    int ret;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2off = s->l1[i] & QCOW2_L1E_OFFSET_MASK, rc;
        if (!l2off)
            continue;
        if ((ret = qcow2_get_refcount(img, l2off >> s->cluster_bits, &rc)) < 0)
            return ret;
        bool want = rc == 1;
        if (want != !!(s->l1[i] & QCOW2_OFLAG_COPIED)) {
            s->l1[i] = want ? s->l1[i] | QCOW2_OFLAG_COPIED : s->l1[i] & ~QCOW2_OFLAG_COPIED;
            s->l1_dirty_lo = s->l1_dirty_lo == s->l1_dirty_hi ? i : IC_MIN(s->l1_dirty_lo, i);
            s->l1_dirty_hi = IC_MAX(s->l1_dirty_hi, i + 1);
            fixed++;
        }
        uint8_t *l2;
        if ((ret = qcow2_get_l2(img, l2off, &l2)) < 0)
            return ret;
        bool dirty = false;
        for (uint32_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2_get(s, l2, j);
            enum qcow2_ctype t = qcow2_cluster_type(s, e);
            if (t != QCOW2_CT_NORMAL && t != QCOW2_CT_ZERO_ALLOC)
                continue;
            bool w = true;
            if (!s->data_file) {
                if ((ret = qcow2_get_refcount(img, (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits,
                                              &rc)) < 0) {
                    qcow2_cache_put(&s->l2_cache, &l2);
                    return ret;
                }
                w = rc == 1;
            }
            if (w != !!(e & QCOW2_OFLAG_COPIED)) {
                qcow2_l2_set(s, l2, j, w ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
                dirty = true;
                fixed++;
            }
        }
        if (dirty)
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, &l2);
    }
    ret = qcow2_flush_metadata(img);
    return ret < 0 ? ret : fixed;
}

int qcow2_repair_refcounts(struct ic_image *img, ic_error **errp)
{
    uint32_t *imrt = NULL;
    uint64_t nb = 0;
    int ret = qcow2_calculate_refcounts(img, &imrt, &nb, errp);
    if (ret < 0)
        return ret;
    ret = qcow2_rebuild_refcount_structure(img, imrt, nb, errp);
    free(imrt);
    if (ret < 0)
        return ret;
    int64_t f = qcow2_fix_copied(img);
    if (f < 0)
        return ic_error_set(errp, ic_error_kind_from_errno((int)-f), (int)-f,
                            "cannot fix COPIED flags: %s", strerror((int)-f));
    ret = qcow2_mark_clean(img);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot clear the dirty bit: %s",
                            strerror(-ret));
    return 0;
}
