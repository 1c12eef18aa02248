/*
 * qcow2-cluster.c - guest address translation: L1/L2 tables, reads,
 * writes with allocation and copy-on-write, zero clusters, discard,
 * compressed clusters, block status, L1 growth and metadata
 * preallocation (as QEMU's qcow2 driver: its cluster code and I/O
 * paths).
 *
 * Design notes:
 *  Owns the active L1 table and the L2 tables (entry layouts: docs/qcow2.md,
 *  "L1 entries", "L2 entries", "Extended L2 entries", "Compressed clusters").
 *  1. Lookups work on runs: get_run() walks L1 and L2 entries (and
 *     subclusters with extended L2) and returns the longest prefix that
 *     shares one kind (unallocated, zero, zero-allocated, data,
 *     compressed) and, for data, contiguous host offsets - across L2
 *     tables, so block status and reads of contiguous data cost one call.
 *  2. Every entry read from disk is validated before use: L2 table and
 *     data cluster offsets must be cluster aligned, compressed offsets
 *     must lie below 2^56, subcluster bitmaps must be consistent;
 *     violations are reported with qcow2_signal_corruption().
 *  3. Writes: clusters whose entry is NORMAL with COPIED are written in
 *     place (contiguous runs with one pwrite); whole clusters needing a
 *     new home are allocated as a contiguous batch and written from the
 *     caller's buffer with one pwrite; partial clusters that need a new
 *     home (without extended L2: see 6) are rebuilt in a cluster buffer from the current guest view
 *     (backing, zeroes, compressed data) and written whole.  New L2
 *     entries always have COPIED.
 *  4. Ordering (docs/qcow2.md, "Crash ordering"): the new cluster is allocated
 *     (refcount increment in the refblock cache) and its data written
 *     before the L2 entry is changed in the L2 cache; the L2 cache writes
 *     refblocks and flushes the files before it writes any table, and
 *     dirty L1 entries are written only after the L2 tables are flushed
 *     (qcow2_flush_metadata).  Clusters an entry stopped referencing are
 *     queued and freed after that flush.  If we crash anywhere, an on-disk
 *     entry points only to allocated clusters whose data is written: at
 *     worst clusters leak.
 *  5. A shared L2 table (L1 entry without COPIED) is copied to a new
 *     cluster before it is changed; the old one is freed after the flush.
 *  6. Extended L2 follows qemu 7.2's subcluster rules
 *     (calculate_l2_meta, qcow2_alloc_cluster_link_l2) so that map output
 *     and host layout match qemu's:
 *     a. A write allocates the run of clusters that need a new home
 *        (unallocated, compressed, shared) in one contiguous batch and
 *        writes only the subclusters it touches, plus copy-on-write of
 *        the guest view inside the first and last touched subclusters.
 *        The COW region widens to the whole cluster for a compressed
 *        entry and to the first/last allocated subcluster of a shared
 *        one (their data must move).  Only the written subclusters get
 *        their allocation bit; the others keep their old state
 *        (unallocated: read through to the backing file; zero).
 *     b. A write into a COPIED cluster whose touched subclusters are not
 *        all allocated writes in place, with COW of the partly written
 *        first/last subcluster, and then sets their allocation bits.
 *     c. Zero writes are split like qemu's block layer (subcluster
 *        alignment): whole subclusters set their zero bits (and clear
 *        their allocation bits); whole clusters become all-zero bitmaps
 *        (host cluster dropped only with MAY_UNMAP, or when compressed);
 *        a partial subcluster becomes a zero subcluster only when the
 *        rest of it already reads as zeroes through the chain and it
 *        holds no data, else zero data is written.
 *     d. Discard stays cluster granular (qemu 7.2 ignores partial-cluster
 *        discards), and like qemu it allocates a missing L2 table.  Host
 *        clusters freed by a discard or an unmapping zero write are
 *        punched out of the file (qemu's pass-discard-request).
 *     e. An unallocated subcluster inside an allocated cluster reports its
 *        host offset in block status (not allocated, offset valid), as
 *        qemu's block status does.
 *     f. Host layout as qemu's: when both COW regions of a write read as
 *        zeroes, the host range is zeroed with one zero_range (allocated
 *        zeroes, qemu's handle_alloc_space) instead of zero buffers; the
 *        metadata-preallocation heuristic of block status counts
 *        refcounted clusters exactly as qemu 7.2 does.
 *     Crash safety: the data and COW writes are issued before the L2 entry
 *     that marks the subclusters allocated is changed in the L2 cache, and
 *     the cache flushes the files before it writes any table (design note
 *     4): if we crash before the table write, the new subclusters are not
 *     referenced and the cluster at worst leaks.
 *  7. L2 readahead: a scan (convert, map, block status over long runs)
 *     visits L2 tables in L1 order, and the kernel's readahead cannot
 *     guess their host offsets (qemu places each table just before the
 *     data it maps, so with metadata preallocation they are 512 MiB
 *     apart).  When get_run() moves to the L1 entry right after the one
 *     it looked up last, the tables of the next L2_READAHEAD entries get a
 *     prefetch hint, issued again when half of them are used, so their
 *     reads overlap instead of waiting one after the other.  Lookups that
 *     jump (random guest I/O) issue none.  The cold convert of a
 *     preallocated image (bench/bench.sh) is where it shows.
 *  8. A backing layer (read-only, below the top) answers get_run() from
 *     slices of its L2 tables (QCOW2_L2_SLICE_BYTES, a small LRU cache of
 *     them, l2_slices) instead of whole tables: a chain is opened once per
 *     handle (convert's readers each have one), so whole tables would cost
 *     depth x handles x tables touched.  get_run() only reads entries, and
 *     a read-only layer's tables never change under it, so the two caches
 *     of one image cannot disagree.
 *  9. Block status of a chain asks every layer above the one that holds a
 *     range, so each layer is asked again for every extent below it.  A
 *     read-only image remembers the last unallocated run it found and
 *     answers from it without a lookup when the question lies inside it:
 *     either inside the part found, or anywhere up to its end when the run
 *     was seen to end there (get_run() stopped before the end of the
 *     question, which only a change of kind does).  The answer is the
 *     lookup's: get_run() ends an unallocated run only where the kind
 *     changes, wherever the question starts.  Loading a snapshot's L1
 *     table forgets it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util/endian.h"
#include "util/overflow.h"

/* ---- entry helpers ----------------------------------------------------------- */

enum qcow2_sctype qcow2_subcluster_type(const struct qcow2_state *s, uint64_t e, uint64_t bm,
                                        uint32_t sc)
{
    enum qcow2_ctype t = qcow2_cluster_type(s, e);
    if (!s->ext_l2) {
        switch (t) {
        case QCOW2_CT_COMPRESSED: return QCOW2_SC_COMPRESSED;
        case QCOW2_CT_NORMAL: return QCOW2_SC_NORMAL;
        case QCOW2_CT_ZERO_PLAIN: return QCOW2_SC_ZERO_PLAIN;
        case QCOW2_CT_ZERO_ALLOC: return QCOW2_SC_ZERO_ALLOC;
        case QCOW2_CT_UNALLOCATED: return QCOW2_SC_UNALLOCATED_PLAIN;
        }
        return QCOW2_SC_INVALID;
    }
    if (t == QCOW2_CT_COMPRESSED)
        return bm ? QCOW2_SC_INVALID : QCOW2_SC_COMPRESSED;
    if ((bm >> 32) & bm)
        return QCOW2_SC_INVALID;
    bool alloc = (bm >> sc) & 1, zero = (bm >> (32 + sc)) & 1;
    if (t == QCOW2_CT_NORMAL) {
        if (alloc)
            return QCOW2_SC_NORMAL;
        return zero ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_UNALLOCATED_ALLOC;
    }
    /* no host cluster */
    if (bm & QCOW2_BITMAP_ALL_ALLOC)
        return QCOW2_SC_INVALID;
    return zero ? QCOW2_SC_ZERO_PLAIN : QCOW2_SC_UNALLOCATED_PLAIN;
}

void qcow2_parse_compressed(const struct qcow2_state *s, uint64_t e, uint64_t *coffset,
                            uint64_t *csize)
{
    uint64_t off = e & s->coffset_mask;
    uint64_t nb = ((e >> s->csize_shift) & s->csize_mask) + 1;
    *coffset = off;
    *csize = nb * 512 - (off & 511);
}

uint64_t qcow2_make_compressed(const struct qcow2_state *s, uint64_t coffset, uint64_t len)
{
    uint64_t nb = ((coffset + len - 1) >> 9) - (coffset >> 9) + 1;
    return QCOW2_OFLAG_COMPRESSED | ((nb - 1) << s->csize_shift) | coffset;
}

/* ---- L1 ---------------------------------------------------------------------- */

int qcow2_read_l1(struct ic_image *img, uint64_t offset, uint32_t size, uint64_t **out)
{
    *out = NULL;
    uint64_t *l1 = calloc(size ? size : 1, sizeof(*l1));
    if (!l1)
        return -ENOMEM;
    if (size) {
        uint8_t *raw = malloc((size_t)size * 8);
        if (!raw) {
            free(l1);
            return -ENOMEM;
        }
        int ret = ic_io_pread(img->file, raw, (size_t)size * 8, offset);
        if (ret < 0) {
            free(raw);
            free(l1);
            return ret;
        }
        for (uint32_t i = 0; i < size; i++)
            l1[i] = ic_load_be64(raw + 8 * (size_t)i);
        free(raw);
    }
    *out = l1;
    return 0;
}

int qcow2_write_l1_entries(struct ic_image *img, uint32_t first, uint32_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!n)
        return 0;
    uint8_t *raw = malloc((size_t)n * 8);
    if (!raw)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        ic_store_be64(raw + 8 * (size_t)i, s->l1[first + i]);
    ic_io_event(img->file, IC_EV_L1_UPDATE);
    int ret = ic_io_pwrite(img->file, raw, (size_t)n * 8, s->l1_offset + (uint64_t)first * 8);
    free(raw);
    return ret;
}

static void l1_mark_dirty(struct qcow2_state *s, uint32_t i)
{
    if (s->l1_dirty_lo == s->l1_dirty_hi) {
        s->l1_dirty_lo = i;
        s->l1_dirty_hi = i + 1;
        return;
    }
    s->l1_dirty_lo = IC_MIN(s->l1_dirty_lo, i);
    s->l1_dirty_hi = IC_MAX(s->l1_dirty_hi, i + 1);
}

static int flush_files(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = ic_io_flush(img->file);
    if (ret == 0 && s->data_file)
        ret = ic_io_flush(s->data_file);
    return ret;
}

int qcow2_flush_metadata(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    /* refblocks, then (after a flush, in the L2 cache's dependency) L2 */
    int ret = qcow2_cache_write(img, &s->refblock_cache);
    if (ret == 0)
        ret = qcow2_cache_write(img, &s->l2_cache);
    if (ret < 0)
        return ret;
    if (s->l1_dirty_lo != s->l1_dirty_hi) {
        /* L2 tables durable before the L1 entries that point to them. */
        if ((ret = flush_files(img)) < 0)
            return ret;
        ret = qcow2_write_l1_entries(img, s->l1_dirty_lo, s->l1_dirty_hi - s->l1_dirty_lo);
        if (ret < 0)
            return ret;
        s->l1_dirty_lo = s->l1_dirty_hi = 0;
    }
    return flush_files(img);
}

int qcow2_grow_l1(struct ic_image *img, uint64_t min_size)
{
    struct qcow2_state *s = qcow2_state(img);
    if (min_size <= s->l1_size)
        return 0;
    if (min_size * 8 > QCOW2_MAX_L1_BYTES)
        return ic_image_fail(img, -EFBIG, "L1 table would exceed %llu bytes",
                             (unsigned long long)QCOW2_MAX_L1_BYTES);
    /* Everything the current L1 points to must be durable before it is
     * copied; then new table, flush, one header write, flush, free. */
    int ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return ret;
    size_t bytes = (size_t)min_size * 8;
    uint64_t *nl1 = calloc((size_t)min_size, sizeof(*nl1));
    uint8_t *raw = calloc(1, bytes);
    if (!nl1 || !raw) {
        free(nl1);
        free(raw);
        return -ENOMEM;
    }
    if (s->l1_size)
        memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    for (uint64_t i = 0; i < min_size; i++)
        ic_store_be64(raw + 8 * i, nl1[i]);
    ic_io_event(img->file, IC_EV_L1_GROW_ALLOC);
    int64_t off = qcow2_alloc_clusters(img, IC_DIV_ROUND_UP(bytes, s->cluster_size));
    if (off < 0) {
        free(nl1);
        free(raw);
        return (int)off;
    }
    /* the refcount of the new table must be durable before the header
     * points to it */
    ret = qcow2_cache_write(img, &s->refblock_cache);
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_L1_GROW_WRITE);
        ret = ic_io_pwrite(img->file, raw, bytes, (uint64_t)off);
    }
    free(raw);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret == 0) {
        uint8_t hb[12];
        ic_store_be32(hb, (uint32_t)min_size);
        ic_store_be64(hb + 4, (uint64_t)off);
        ic_io_event(img->file, IC_EV_L1_GROW_ACTIVATE);
        ret = ic_io_pwrite(img->file, hb, sizeof(hb), QCOW2_HDR_L1_SIZE);
        if (ret == 0)
            ret = ic_io_flush(img->file);
        if (ret < 0) {
            /* A failed write or flush says nothing about what reached the
             * disk: the header may point to either table.  Both hold the
             * same entries now, but the next L1 update would reach only
             * the one in memory, and a later successful flush would then
             * claim writes the header's table never sees.  Stop writing
             * (sticky ERROR): if we fail here, whichever table the header
             * does not point to only leaks. */
            free(nl1);
            img->state = IC_IMAGE_ERROR;
            return ret;
        }
    }
    if (ret < 0) {
        /* if we fail before the switch the new table only leaks */
        free(nl1);
        return ret;
    }
    uint64_t old_off = s->l1_offset, old_size = s->l1_size;
    free(s->l1);
    s->l1 = nl1;
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = (uint64_t)off;
    s->h.l1_size = s->l1_size;
    s->h.l1_table_offset = s->l1_offset;
    /* Nothing references the old table any more: freeing it is safe now;
     * if we crash before the decrement is written it leaks. */
    if (old_size)
        return qcow2_free_clusters(img, old_off, old_size * 8);
    return 0;
}

/* ---- L2 access ----------------------------------------------------------------- */

int qcow2_get_l2(struct ic_image *img, uint64_t offset, uint8_t **table)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!offset || (offset & s->cluster_offset_mask) || offset > QCOW2_MAX_HOST_OFFSET)
        return qcow2_signal_corruption(img, true, offset, "L2 table offset %#" PRIx64
                                       " is invalid", offset);
    return qcow2_cache_get(img, &s->l2_cache, offset, false, table);
}

/* The L2 table of L1 entry @l1i, made writable: allocated when missing,
 * copied when shared (design note 5). */
static int get_l2_for_write(struct ic_image *img, uint32_t l1i, uint8_t **table)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t l1e = s->l1[l1i], old = l1e & QCOW2_L1E_OFFSET_MASK;
    int ret;
    if (old && (l1e & QCOW2_OFLAG_COPIED)) {
        if ((ret = qcow2_check_overlap(img, old, s->cluster_size)) < 0)
            return ret;
        return qcow2_get_l2(img, old, table);
    }
    if (old && (old & s->cluster_offset_mask))
        return qcow2_signal_corruption(img, true, old, "L2 table offset %#" PRIx64
                                       " unaligned (L1 index %#" PRIx32 ")", old, l1i);
    ic_io_event(img->file, IC_EV_L2_ALLOC);
    int64_t n = qcow2_alloc_clusters(img, 1);
    if (n < 0)
        return (int)n;
    uint8_t *nt;
    if ((ret = qcow2_cache_get(img, &s->l2_cache, (uint64_t)n, true, &nt)) < 0)
        return ret;
    if (old) {
        uint8_t *ot;
        ic_io_event(img->file, IC_EV_L2_ALLOC_COW_READ);
        if ((ret = qcow2_get_l2(img, old, &ot)) < 0) {
            qcow2_cache_put(&s->l2_cache, &nt);
            return ret;
        }
        memcpy(nt, ot, s->cluster_size);
        qcow2_cache_put(&s->l2_cache, &ot);
        /* the old table is still referenced on disk until the new L1
         * entry is flushed: free it only afterwards */
        if ((ret = qcow2_queue_free(img, old, s->cluster_size)) < 0) {
            qcow2_cache_put(&s->l2_cache, &nt);
            return ret;
        }
    }
    qcow2_cache_mark_dirty(&s->l2_cache, nt);
    s->l1[l1i] = (uint64_t)n | QCOW2_OFLAG_COPIED;
    l1_mark_dirty(s, l1i);
    *table = nt;
    return 0;
}

/* ---- lookup ---------------------------------------------------------------------- */

/* RK_UNALLOC_ALLOC: unallocated subclusters of an allocated extended-L2
 * cluster; they read like RK_UNALLOC but have a host offset (note 6e). */
enum run_kind { RK_UNALLOC, RK_UNALLOC_ALLOC, RK_ZERO_PLAIN, RK_ZERO_ALLOC, RK_DATA,
                RK_COMPRESSED };

static bool kind_has_host(enum run_kind k)
{
    return k == RK_DATA || k == RK_ZERO_ALLOC || k == RK_UNALLOC_ALLOC;
}

struct run {
    enum run_kind kind;
    uint64_t len;
    uint64_t host;   /* kind_has_host(): host offset of the first byte */
    uint64_t l2e;    /* RK_COMPRESSED: the entry */
};

static int unit_kind(struct ic_image *img, uint64_t e, uint64_t bm, uint64_t pos,
                     enum run_kind *kind, uint64_t *host, uint64_t *unit_end)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cstart = pos & ~s->cluster_offset_mask;
    uint32_t sc = (uint32_t)((pos - cstart) >> s->subcluster_bits);
    *unit_end = cstart + s->cluster_size;
    enum qcow2_sctype t = qcow2_subcluster_type(s, e, bm, sc);
    if (s->ext_l2 && t != QCOW2_SC_COMPRESSED)
        *unit_end = cstart + ((uint64_t)(sc + 1) << s->subcluster_bits);
    uint64_t hoff = e & QCOW2_L2E_OFFSET_MASK;
    switch (t) {
    case QCOW2_SC_INVALID:
        return qcow2_signal_corruption(img, true, UINT64_MAX, "invalid L2 entry %#" PRIx64
                                       " (bitmap %#" PRIx64 ") for guest offset %#" PRIx64, e, bm,
                                       pos);
    case QCOW2_SC_COMPRESSED: {
        uint64_t coff, csize;
        qcow2_parse_compressed(s, e, &coff, &csize);
        if (s->data_file)
            return qcow2_signal_corruption(img, true, coff, "compressed cluster in an image "
                                           "with an external data file");
        if (coff + csize > QCOW2_MAX_HOST_OFFSET)
            return qcow2_signal_corruption(img, true, coff, "compressed cluster offset %#"
                                           PRIx64 " is invalid", coff);
        *kind = RK_COMPRESSED;
        return 0;
    }
    case QCOW2_SC_UNALLOCATED_PLAIN:
        *kind = RK_UNALLOC;
        return 0;
    case QCOW2_SC_ZERO_PLAIN:
        *kind = RK_ZERO_PLAIN;
        return 0;
    case QCOW2_SC_UNALLOCATED_ALLOC:
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_NORMAL:
        if (hoff & s->cluster_offset_mask)
            return qcow2_signal_corruption(img, true, hoff, "cluster allocation offset %#"
                                           PRIx64 " unaligned (guest offset %#" PRIx64 ")",
                                           hoff, pos);
        *kind = t == QCOW2_SC_NORMAL ? RK_DATA
              : t == QCOW2_SC_ZERO_ALLOC ? RK_ZERO_ALLOC : RK_UNALLOC_ALLOC;
        *host = hoff + (pos - cstart);
        return 0;
    }
    return -EIO;
}

/* Design note 1a: the fast path of get_run() for standard (8-byte) L2
 * entries.  @e is the entry of the cluster just before @pos (of kind @k,
 * already validated by unit_kind()); the run goes on while each next
 * entry is exactly the predicted word: same flags, host offset one
 * cluster further (or the same entry again for kinds without a host
 * offset).  Whole big-endian words are compared, so no entry is decoded:
 * an entry equal to the prediction has the kind and validity of @e.
 * Without an external data file COPIED does not change the kind and is
 * ignored.  @l2 holds @nent entries (a table or a slice of one, design
 * note 8) and @tend lies within them.  Returns the guest offset where the
 * run stops (<= @tend, at a cluster boundary). */
static uint64_t scan_same_run(const struct qcow2_state *s, const uint8_t *l2, uint32_t nent,
                              uint64_t e, enum run_kind k, uint64_t pos, uint64_t tend)
{
    uint64_t mask = s->data_file ? UINT64_MAX : ~QCOW2_OFLAG_COPIED;
    uint64_t step = kind_has_host(k) ? s->cluster_size : 0;
    uint32_t j = (uint32_t)((pos >> s->cluster_bits) & (nent - 1));
    /* last cluster index of these entries inside the query (tend > pos) */
    uint32_t last = (uint32_t)(((tend - 1) >> s->cluster_bits) & (nent - 1));
    uint64_t n = (uint64_t)last - j + 1;
    if (step) {
        /* never predict past the largest host offset: the offset field
         * must not carry into the flag bits */
        uint64_t hoff = e & QCOW2_L2E_OFFSET_MASK;
        uint64_t room = ((QCOW2_L2E_OFFSET_MASK & ~s->cluster_offset_mask) - hoff) / step;
        n = IC_MIN(n, room);
    }
    uint64_t want = (e & mask) + step;
    const uint8_t *p = l2 + (size_t)j * 8;
    uint64_t i = 0;
    while (i < n && (ic_load_be64(p) & mask) == want) {
        want += step;
        p += 8;
        i++;
    }
    uint64_t stop = (pos & ~s->cluster_offset_mask) + (i << s->cluster_bits);
    return IC_MIN(stop, tend);
}

/* Design note 7: L1 entries ahead whose L2 tables are prefetched (the
 * window shrinks for big clusters: at most L2_READAHEAD_BYTES of tables). */
#define L2_READAHEAD 32u
#define L2_READAHEAD_BYTES ((uint64_t)4 << 20)

static void l2_readahead(struct ic_image *img, uint64_t l1i)
{
    struct qcow2_state *s = qcow2_state(img);
    bool sequential = l1i == s->ra_last_l1 + 1;
    s->ra_last_l1 = l1i;
    if (!sequential) {
        s->ra_next_l1 = l1i + 1;
        return;
    }
    uint64_t window = IC_MAX((uint64_t)1, IC_MIN((uint64_t)L2_READAHEAD,
                                                 L2_READAHEAD_BYTES / s->cluster_size));
    if (s->ra_next_l1 > l1i + window / 2)
        return; /* enough is in flight */
    uint64_t from = IC_MAX(s->ra_next_l1, l1i + 1);
    uint64_t to = IC_MIN(l1i + 1 + window, (uint64_t)s->l1_size);
    /* contiguous tables (qemu-img convert writes them back to back) go
     * out as one hint */
    uint64_t run_off = 0, run_len = 0;
    for (uint64_t j = from; j < to; j++) {
        uint64_t o = s->l1[j] & QCOW2_L1E_OFFSET_MASK;
        if (!o || (o & s->cluster_offset_mask))
            continue; /* no table, or one get_run() will report as corrupt */
        if (run_len && o == run_off + run_len) {
            run_len += s->cluster_size;
            continue;
        }
        ic_io_prefetch(img->file, run_off, run_len);
        run_off = o;
        run_len = s->cluster_size;
    }
    ic_io_prefetch(img->file, run_off, run_len);
    s->ra_next_l1 = IC_MAX(s->ra_next_l1, to);
}

/* Design note 8: whether @img's lookups use L2 slices; sets the slice
 * cache up on first use.  Negative errno when it cannot be allocated. */
static int use_slices(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!img->read_only || img->depth == 0 || s->cluster_size <= QCOW2_L2_SLICE_BYTES)
        return 0;
    if (!s->l2_slices.e && qcow2_cache_init(&s->l2_slices, QCOW2_L2_SLICES,
                                            QCOW2_L2_SLICE_BYTES, IC_EV_L2_UPDATE,
                                            "L2 slice") < 0)
        return -ENOMEM;
    return 1;
}

/* The L2 entries get_run() looks at around guest offset @pos, in the
 * table at host offset @l2off: the whole table, or (design note 8) the
 * slice holding @pos's entry.  *nent: entries in it (a power of two, and
 * it maps an aligned guest range of nent clusters); *c: the cache to put
 * it back to. */
static int get_l2_piece(struct ic_image *img, uint64_t l2off, uint64_t pos, bool slices,
                        uint8_t **l2, uint32_t *nent, struct qcow2_cache **c)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!slices) {
        *nent = s->l2_entries;
        *c = &s->l2_cache;
        return qcow2_get_l2(img, l2off, l2);
    }
    if (!l2off || (l2off & s->cluster_offset_mask) || l2off > QCOW2_MAX_HOST_OFFSET)
        return qcow2_signal_corruption(img, true, l2off, "L2 table offset %#" PRIx64
                                       " is invalid", l2off);
    *nent = QCOW2_L2_SLICE_BYTES / s->l2_entry_size;
    *c = &s->l2_slices;
    uint32_t ci = (uint32_t)((pos >> s->cluster_bits) & (s->l2_entries - 1));
    uint64_t slice = (uint64_t)(ci / *nent) * QCOW2_L2_SLICE_BYTES;
    return qcow2_cache_get(img, &s->l2_slices, l2off + slice, false, l2);
}

/* Design note 1: the run at @off, at most @maxlen bytes (> 0). */
static int get_run(struct ic_image *img, uint64_t off, uint64_t maxlen, struct run *r)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t pos = off, end = off + maxlen;
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    bool have = false;
    int slices = use_slices(img);
    if (slices < 0)
        return slices;
    memset(r, 0, sizeof(*r));
    while (pos < end) {
        uint64_t l1i = pos >> tbits;
        uint64_t tend = IC_MIN(end, (l1i + 1) << tbits);
        uint64_t l2off = l1i < s->l1_size ? s->l1[l1i] & QCOW2_L1E_OFFSET_MASK : 0;
        if (!l2off) {
            if (have && r->kind != RK_UNALLOC)
                break;
            r->kind = RK_UNALLOC;
            have = true;
            pos = tend;
            continue;
        }
        if (l2off & s->cluster_offset_mask)
            return qcow2_signal_corruption(img, true, l2off, "L2 table offset %#" PRIx64
                                           " unaligned (L1 index %#" PRIx64 ")", l2off, l1i);
        if (l1i != s->ra_last_l1) {
            /* the table after the last one: a streaming walk */
            s->l2_cache.recycle = l1i == s->ra_last_l1 + 1;
            l2_readahead(img, l1i);
        }
        uint8_t *l2;
        uint32_t nent = s->l2_entries;
        struct qcow2_cache *cache = &s->l2_cache;
        int ret = get_l2_piece(img, l2off, pos, slices, &l2, &nent, &cache);
        if (ret < 0)
            return ret;
        /* the guest range the piece maps ends at pend */
        uint64_t span = (uint64_t)nent << s->cluster_bits;
        uint64_t pend = IC_MIN(tend, (pos & ~(span - 1)) + span);
        bool stop = false;
        while (pos < pend) {
            uint32_t ci = (uint32_t)((pos >> s->cluster_bits) & (nent - 1));
            uint64_t e = qcow2_l2_get(s, l2, ci), bm = qcow2_l2_get_bitmap(s, l2, ci);
            enum run_kind k = RK_UNALLOC;
            uint64_t host = 0, uend;
            if ((ret = unit_kind(img, e, bm, pos, &k, &host, &uend)) < 0) {
                qcow2_cache_put(cache, &l2);
                return ret;
            }
            if (!have) {
                r->kind = k;
                r->host = host;
                r->l2e = e;
                have = true;
            } else if (k != r->kind || k == RK_COMPRESSED ||
                       (kind_has_host(k) && host != r->host + (pos - off))) {
                stop = true;
                break;
            }
            pos = IC_MIN(uend, pend);
            if (k == RK_COMPRESSED) {
                stop = true;
                break;
            }
            if (!s->ext_l2 && pos < pend)
                pos = scan_same_run(s, l2, nent, e, k, pos, pend);
        }
        qcow2_cache_put(cache, &l2);
        if (stop)
            break;
    }
    r->len = pos - off;
    return 0;
}

/* ---- reads ------------------------------------------------------------------------ */

static int load_compressed(struct ic_image *img, uint64_t e)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->cbuf && s->cbuf_entry == e)
        return 0;
    if (!s->cbuf && !(s->cbuf = malloc(s->cluster_size)))
        return -ENOMEM;
    uint64_t coff, csize;
    qcow2_parse_compressed(s, e, &coff, &csize);
    uint8_t *in = malloc((size_t)csize);
    if (!in)
        return -ENOMEM;
    int ret = ic_io_pread(img->file, in, (size_t)csize, coff);
    if (ret == 0) {
        ret = qcow2_decompress(s->compression_type, s->cbuf, s->cluster_size, in, (size_t)csize);
        if (ret == -EIO)
            ret = qcow2_signal_corruption(img, false, coff, "compressed cluster at %#" PRIx64
                                          " does not decompress (%s)", coff,
                                          s->compression_type ? "zstd" : "zlib");
    }
    free(in);
    s->cbuf_entry = ret == 0 ? e : 0;
    return ret;
}

int qcow2_cluster_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t *p = buf;
    while (len > 0) {
        struct run r;
        int ret = get_run(img, off, len, &r);
        if (ret < 0)
            return ret;
        size_t n = (size_t)r.len;
        switch (r.kind) {
        case RK_UNALLOC:
        case RK_UNALLOC_ALLOC:
            ret = ic_image_backing_pread(img, p, n, off);
            break;
        case RK_ZERO_PLAIN:
        case RK_ZERO_ALLOC:
            memset(p, 0, n);
            break;
        case RK_DATA:
            ret = ic_io_pread(qcow2_data_io(img), p, n, r.host);
            break;
        case RK_COMPRESSED:
            ret = load_compressed(img, r.l2e);
            if (ret == 0)
                memcpy(p, s->cbuf + (off & s->cluster_offset_mask), n);
            break;
        }
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* qemu 7.2's qcow2_detect_metadata_preallocation, as it is: the image
 * file refcounts at least max(10/9, +2) times as many clusters (counted
 * from the start, within the file's length) as the host really allocates.
 * Partly written big clusters (extended L2, 2 MiB) trigger it too, so the
 * count must be qemu's for map output to match. */
static bool detect_metadata_prealloc(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int64_t alloc = ic_io_allocated_size(img->file);
    int64_t fc = qcow2_file_clusters(img);
    if (alloc < 0 || fc <= 0)
        return false;
    int64_t real = alloc / s->cluster_size;
    int64_t threshold = IC_MAX(real * 10 / 9, real + 2);
    /* Asked once per image: a read-only layer (every backing file) keeps
     * no reftable nor refblocks for it, which would otherwise stay loaded
     * once per layer of a chain and per handle on it. */
    uint64_t count;
    if (qcow2_count_refcounted(img, (uint64_t)fc, (uint64_t)threshold, &count) < 0)
        return false;
    return count >= (uint64_t)threshold;
}

int qcow2_cluster_block_status(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                               unsigned *flags, uint64_t *map, ic_io **file)
{
    struct qcow2_state *s = qcow2_state(img);
    *map = 0;
    *file = NULL;
    /* design note 9 */
    if (img->read_only && off >= s->unalloc_start && off < s->unalloc_end &&
        (s->unalloc_final || len <= s->unalloc_end - off)) {
        *pnum = IC_MIN(len, s->unalloc_end - off);
        *flags = 0;
        return 0;
    }
    struct run r;
    int ret = get_run(img, off, len, &r);
    if (ret < 0)
        return ret;
    *pnum = r.len;
    if (r.kind == RK_UNALLOC && img->read_only) {
        s->unalloc_start = off;
        s->unalloc_end = off + r.len;
        s->unalloc_final = r.len < len;
    }
    if (r.kind == RK_DATA && !s->metadata_prealloc_checked) {
        s->metadata_prealloc_checked = true;
        s->metadata_prealloc = detect_metadata_prealloc(img);
    }
    if (r.kind == RK_DATA && s->metadata_prealloc) {
        /* as qemu's BDRV_BLOCK_RECURSE: holes of the host file read as
         * zeroes, and the run ends where the host status changes */
        uint64_t fp = 0;
        int d = ic_io_block_status(qcow2_data_io(img), r.host, r.len, &fp);
        if (d >= 0 && fp > 0 && fp <= r.len) {
            *pnum = fp;
            if (d == 0) {
                *flags = IC_BS_ALLOCATED | IC_BS_DATA | IC_BS_ZERO | IC_BS_OFFSET_VALID;
                *map = r.host;
                *file = qcow2_data_io(img);
                return 0;
            }
        }
    }
    switch (r.kind) {
    case RK_UNALLOC:
        *flags = 0;
        break;
    case RK_UNALLOC_ALLOC:
        /* not decided here (the caller looks at the backing file), but
         * the host offset is known: qemu reports it for the bottom layer */
        *flags = IC_BS_OFFSET_VALID;
        *map = r.host;
        *file = qcow2_data_io(img);
        break;
    case RK_ZERO_PLAIN:
        *flags = IC_BS_ALLOCATED | IC_BS_ZERO;
        break;
    case RK_ZERO_ALLOC:
        *flags = IC_BS_ALLOCATED | IC_BS_ZERO | IC_BS_OFFSET_VALID;
        *map = r.host;
        *file = qcow2_data_io(img);
        break;
    case RK_DATA:
        *flags = IC_BS_ALLOCATED | IC_BS_DATA | IC_BS_OFFSET_VALID;
        *map = r.host;
        *file = qcow2_data_io(img);
        break;
    case RK_COMPRESSED:
        *flags = IC_BS_ALLOCATED | IC_BS_DATA | IC_BS_COMPRESSED;
        break;
    }
    return 0;
}

/* ---- writes ------------------------------------------------------------------------- */

static int prepare_write(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->corrupt && !(img->flags & IC_OPEN_CHECK))
        return ic_image_fail(img, -EACCES, "image is corrupt; writes are refused");
    if (s->lazy_refcounts)
        return qcow2_mark_dirty(img);
    return 0;
}

static bool entry_copied(const struct qcow2_state *s, uint64_t e)
{
    return (e & QCOW2_OFLAG_COPIED) || s->data_file;
}

/* Can [a, a+n) of this cluster be written in place? */
static bool in_place(const struct qcow2_state *s, uint64_t e, uint64_t bm, uint64_t a, uint64_t n)
{
    if (qcow2_cluster_type(s, e) != QCOW2_CT_NORMAL || !entry_copied(s, e))
        return false;
    if (!s->ext_l2)
        return true;
    if ((bm >> 32) & bm)
        return false;
    uint32_t first = (uint32_t)(a >> s->subcluster_bits);
    uint32_t last = (uint32_t)((a + n - 1) >> s->subcluster_bits);
    for (uint32_t sc = first; sc <= last; sc++)
        if (!((bm >> sc) & 1))
            return false;
    return true;
}

/* Host offset for @n new clusters at guest offset @gpos: allocated in the
 * image, or the guest offset itself in an external data file. */
static int64_t alloc_data(struct ic_image *img, uint64_t gpos, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->data_file)
        return (int64_t)(gpos & ~s->cluster_offset_mask);
    return qcow2_alloc_clusters(img, n);
}

static uint64_t max_batch(const struct qcow2_state *s)
{
    /* A batch must fit between two self-describing refblocks. */
    uint64_t b = s->refblock_entries / 2;
    return b ? b : 1;
}

/* Replaces entry @ci with a new cluster at @host (entry COPIED, all
 * subclusters allocated) and queues what the old entry referenced. */
static int set_new_entry(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t host)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t old = qcow2_l2_get(s, l2, ci);
    uint64_t oldhost = old & QCOW2_L2E_OFFSET_MASK;
    enum qcow2_ctype t = qcow2_cluster_type(s, old);
    qcow2_l2_set(s, l2, ci, host | QCOW2_OFLAG_COPIED);
    qcow2_l2_set_bitmap(s, l2, ci, QCOW2_BITMAP_ALL_ALLOC);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    if ((t == QCOW2_CT_NORMAL || t == QCOW2_CT_ZERO_ALLOC) && oldhost == host)
        return 0; /* rewritten in place */
    return qcow2_free_l2_entry(img, old);
}

/* Design note 3, slow path: one cluster rebuilt from the guest view. */
static int write_cluster_slow(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t pos,
                              const uint8_t *data, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cpos = pos & ~s->cluster_offset_mask, a = pos - cpos;
    uint64_t clen = IC_MIN((uint64_t)s->cluster_size, img->size - cpos);
    uint8_t *tmp = calloc(1, s->cluster_size);
    if (!tmp)
        return -ENOMEM;
    ic_io_event(img->file, IC_EV_COW_READ);
    int ret = qcow2_cluster_pread(img, tmp, (size_t)clen, cpos);
    if (ret < 0) {
        free(tmp);
        return ret;
    }
    memcpy(tmp + a, data, (size_t)n);
    uint64_t e = qcow2_l2_get(s, l2, ci);
    enum qcow2_ctype t = qcow2_cluster_type(s, e);
    int64_t host;
    if ((t == QCOW2_CT_NORMAL || t == QCOW2_CT_ZERO_ALLOC) && entry_copied(s, e)) {
        host = (int64_t)(e & QCOW2_L2E_OFFSET_MASK);
        if (!s->data_file && (ret = qcow2_check_overlap(img, (uint64_t)host, s->cluster_size)) < 0) {
            free(tmp);
            return ret;
        }
    } else {
        host = alloc_data(img, pos, 1);
        if (host < 0) {
            free(tmp);
            return (int)host;
        }
    }
    ic_io_event(img->file, IC_EV_COW_WRITE);
    ret = ic_io_pwrite(qcow2_data_io(img), tmp, (size_t)clen, (uint64_t)host);
    free(tmp);
    if (ret < 0)
        return ret;
    return set_new_entry(img, l2, ci, (uint64_t)host);
}

/* ---- extended L2 writes (design note 6) ------------------------------------------- */

/* Bits [first, last] of a 32-bit subcluster bitmap half. */
static uint64_t sc_range(uint32_t first, uint32_t last)
{
    return ((1ull << (last - first + 1)) - 1) << first;
}

/* Refuses an extended-L2 entry that qemu calls QCOW2_SUBCLUSTER_INVALID
 * (extended L2) or whose host cluster is unaligned, before a write
 * builds on it. */
static int ext_check_entry(struct ic_image *img, uint64_t e, uint64_t bm, uint64_t pos)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t hoff = e & QCOW2_L2E_OFFSET_MASK;
    if (qcow2_subcluster_type(s, e, bm, 0) == QCOW2_SC_INVALID)
        return qcow2_signal_corruption(img, true, UINT64_MAX, "invalid L2 entry %#" PRIx64
                                       " (bitmap %#" PRIx64 ") for guest offset %#" PRIx64, e, bm,
                                       pos);
    if (qcow2_cluster_type(s, e) == QCOW2_CT_NORMAL && (hoff & s->cluster_offset_mask))
        return qcow2_signal_corruption(img, true, hoff, "cluster allocation offset %#" PRIx64
                                       " unaligned (guest offset %#" PRIx64 ")", hoff, pos);
    return 0;
}

/* qemu's cluster_needs_new_alloc(): everything but a COPIED data cluster. */
static bool ext_needs_alloc(const struct qcow2_state *s, uint64_t e)
{
    return qcow2_cluster_type(s, e) != QCOW2_CT_NORMAL || !entry_copied(s, e);
}

/* Copy-on-write of guest bytes [gstart+from, gstart+to) to host
 * [host+from, host+to): the current guest view (this layer, the backing
 * chain, zeroes past the end of the disk).  Runs before the L2 entry
 * changes, so it reads what the old entry describes. */
static int ext_cow(struct ic_image *img, uint64_t gstart, uint64_t host, uint64_t from,
                   uint64_t to)
{
    if (from >= to)
        return 0;
    uint64_t len = to - from, g = gstart + from;
    uint8_t *tmp = calloc(1, (size_t)len);
    if (!tmp)
        return -ENOMEM;
    int ret = 0;
    if (g < img->size) {
        ic_io_event(img->file, IC_EV_COW_READ);
        ret = qcow2_cluster_pread(img, tmp, (size_t)IC_MIN(len, img->size - g), g);
    }
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_COW_WRITE);
        ret = ic_io_pwrite(qcow2_data_io(img), tmp, (size_t)len, host + from);
    }
    free(tmp);
    return ret;
}

/* qemu's bdrv_co_is_zero_fast() as is_zero_cow() uses it: block status
 * through the chain without want_zero says, in one run, that all of
 * [off, off+len) reads as zeroes.  Without want_zero, stored data (a raw
 * file's holes, data clusters over host holes) is never zero; unallocated
 * down to the bottom is, and so is the range past a shorter backing file
 * (not past the end of the image itself). */
static bool chain_zero_fast(struct ic_image *img, uint64_t off, uint64_t len)
{
    if (!len)
        return true;
    if (off + len > img->size)
        return false;
    for (struct ic_image *l = img; l; l = l->backing) {
        if (off >= l->size)
            return true;
        if (off + len > l->size)
            return false;
        uint64_t pnum = 0, map = 0;
        unsigned flags = 0;
        ic_io *file = NULL;
        if (ic_image_layer_block_status(l, off, len, &pnum, &flags, &map, &file) < 0 ||
            pnum < len)
            return false;
        if (flags & IC_BS_ALLOCATED)
            return (flags & IC_BS_ZERO) && !(flags & IC_BS_DATA) && !ic_image_headerless(l);
    }
    return true;
}

/* Writes guest bytes [gstart+a, gstart+end) from @data to host+a, with
 * copy-on-write of [from, a) and [end, to) (offsets from the cluster at
 * gstart / host).  As qemu's handle_alloc_space: when both COW regions
 * read as zeroes (chain_zero_fast), the host range [from, to) is zeroed with
 * one zero_range (allocated, reads as zeroes) instead of writing zero
 * buffers.  Everything here precedes the L2 update (note 6, crash safety). */
static int ext_write_cow(struct ic_image *img, uint64_t gstart, uint64_t host, uint64_t from,
                         uint64_t a, uint64_t end, uint64_t to, const uint8_t *data)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret;
    if (!s->data_file && (ret = qcow2_check_overlap(img, host + from, to - from)) < 0)
        return ret;
    bool zeroed = false;
    if ((from < a || end < to) && chain_zero_fast(img, gstart + from, a - from) &&
        chain_zero_fast(img, gstart + end, to - end)) {
        ic_io_event(img->file, IC_EV_COW_WRITE);
        ret = ic_io_zero_range(qcow2_data_io(img), host + from, to - from);
        if (ret < 0 && ret != -ENOTSUP)
            return ret;
        zeroed = ret == 0;
    }
    if (!zeroed && (ret = ext_cow(img, gstart, host, from, a)) < 0)
        return ret;
    ic_io_event(img->file, IC_EV_DATA_WRITE);
    if ((ret = ic_io_pwrite(qcow2_data_io(img), data, (size_t)(end - a), host + a)) < 0)
        return ret;
    if (!zeroed && (ret = ext_cow(img, gstart, host, end, to)) < 0)
        return ret;
    return 0;
}

/* After ext_write_cow: entries ci..ci+last point to host.. (+ j clusters)
 * and the subclusters of [from, to) are allocated, their zero bits
 * cleared; the other subclusters keep their state
 * (qcow2_alloc_cluster_link_l2).  Old entries that pointed elsewhere are
 * queued for freeing (after the table is on disk). */
static int ext_link(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t last,
                    uint64_t host, uint64_t from, uint64_t to)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size;
    for (uint64_t j = 0; j <= last; j++) {
        uint32_t i = ci + (uint32_t)j;
        uint64_t old = qcow2_l2_get(s, l2, i), bm = qcow2_l2_get_bitmap(s, l2, i);
        uint64_t wf = IC_MAX(from, j * cs) - j * cs, wt = IC_MIN(to, (j + 1) * cs) - j * cs;
        uint32_t fsc = (uint32_t)(wf >> s->subcluster_bits);
        uint32_t lsc = (uint32_t)((wt - 1) >> s->subcluster_bits);
        uint64_t nbm = (bm | sc_range(fsc, lsc)) & ~(sc_range(fsc, lsc) << 32);
        uint64_t ne = (host + j * cs) | QCOW2_OFLAG_COPIED;
        if (ne == old && nbm == bm)
            continue;
        ic_io_event(img->file, IC_EV_L2_UPDATE);
        qcow2_l2_set(s, l2, i, ne);
        qcow2_l2_set_bitmap(s, l2, i, nbm);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        if ((old & QCOW2_L2E_OFFSET_MASK) != host + j * cs) {
            int ret = qcow2_free_l2_entry(img, old);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* Note 6b: the run of COPIED clusters from entry @ci with contiguous host
 * offsets that the write [pos, pos+len) reaches is written in place
 * (qemu's handle_copied + calculate_l2_meta with keep_old).  When a touched
 * subcluster is unallocated or zero, the partly written first/last
 * subcluster is completed from the guest view and the touched subclusters
 * become allocated.  Returns the bytes of the write it covered. */
static int64_t ext_write_keep(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t pos,
                              const uint8_t *data, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size, a = pos & s->cluster_offset_mask, gstart = pos - a;
    uint64_t host = qcow2_l2_get(s, l2, ci) & QCOW2_L2E_OFFSET_MASK, k = 0;
    int ret;
    while (k * cs < a + len && ci + k < s->l2_entries) {
        uint64_t e = qcow2_l2_get(s, l2, ci + (uint32_t)k);
        if (ext_needs_alloc(s, e) || (e & QCOW2_L2E_OFFSET_MASK) != host + k * cs)
            break;
        if ((ret = ext_check_entry(img, e, qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)k),
                                   gstart + k * cs)) < 0)
            return ret;
        k++;
    }
    if (k == 0)
        return -EIO; /* the caller saw entry @ci as a COPIED data cluster */
    uint64_t bytes = IC_MIN(len, k * cs - a), end = a + bytes;
    uint64_t last = (end - 1) >> s->cluster_bits;
    bool all = true;
    for (uint64_t j = 0; j <= last && all; j++) {
        uint64_t wf = IC_MAX(a, j * cs) - j * cs, wt = IC_MIN(end, (j + 1) * cs) - j * cs;
        uint64_t r = sc_range((uint32_t)(wf >> s->subcluster_bits),
                              (uint32_t)((wt - 1) >> s->subcluster_bits));
        all = (qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)j) & r) == r;
    }
    if (all) {
        /* every touched subcluster holds data: a plain overwrite */
        if (!s->data_file && (ret = qcow2_check_overlap(img, host + a, bytes)) < 0)
            return ret;
        ic_io_event(img->file, IC_EV_DATA_WRITE);
        ret = ic_io_pwrite(qcow2_data_io(img), data, (size_t)bytes, host + a);
        return ret < 0 ? ret : (int64_t)bytes;
    }
    uint64_t e0 = qcow2_l2_get(s, l2, ci), bm0 = qcow2_l2_get_bitmap(s, l2, ci);
    uint64_t el = qcow2_l2_get(s, l2, ci + (uint32_t)last);
    uint64_t bml = qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)last);
    uint32_t fsc = (uint32_t)(a >> s->subcluster_bits);
    uint32_t lsc = (uint32_t)(((end - 1) & s->cluster_offset_mask) >> s->subcluster_bits);
    /* a partly written subcluster that holds data keeps it; one that reads
     * as zeroes or from the backing file is completed from the guest view */
    uint64_t from = qcow2_subcluster_type(s, e0, bm0, fsc) == QCOW2_SC_NORMAL
                        ? a : (uint64_t)fsc << s->subcluster_bits;
    uint64_t to = qcow2_subcluster_type(s, el, bml, lsc) == QCOW2_SC_NORMAL
                      ? end : last * cs + ((uint64_t)(lsc + 1) << s->subcluster_bits);
    if ((ret = ext_write_cow(img, gstart, host, from, a, end, to, data)) < 0)
        return ret;
    /* The data is written; the L2 cache flushes the files before it writes
     * this table: if we crash before that, the subclusters stay as they
     * were and the bytes written are unused. */
    if ((ret = ext_link(img, l2, ci, last, host, from, to)) < 0)
        return ret;
    return (int64_t)bytes;
}

/* COW start (from the first cluster's start) for a new cluster replacing
 * entry (e, bm) whose first written subcluster is @sc (calculate_l2_meta,
 * keep_old false). */
static uint64_t ext_cow_start(const struct qcow2_state *s, uint64_t e, uint64_t bm, uint32_t sc)
{
    uint32_t alloc = (uint32_t)(bm & QCOW2_BITMAP_ALL_ALLOC);
    switch (qcow2_subcluster_type(s, e, bm, sc)) {
    case QCOW2_SC_COMPRESSED:
        return 0;
    case QCOW2_SC_NORMAL:
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_UNALLOCATED_ALLOC: {
        /* a shared cluster moves from its first allocated subcluster on */
        uint32_t first = alloc ? (uint32_t)__builtin_ctz(alloc) : QCOW2_SUBCLUSTERS;
        return (uint64_t)IC_MIN(sc, first) << s->subcluster_bits;
    }
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_UNALLOCATED_PLAIN:
    case QCOW2_SC_INVALID:
        break;
    }
    return (uint64_t)sc << s->subcluster_bits;
}

/* COW end (from the last cluster's start) when the write ends at @end
 * (1..cluster_size) inside it. */
static uint64_t ext_cow_end(const struct qcow2_state *s, uint64_t e, uint64_t bm, uint64_t end)
{
    uint32_t sc = (uint32_t)((end - 1) >> s->subcluster_bits);
    uint32_t alloc = (uint32_t)(bm & QCOW2_BITMAP_ALL_ALLOC);
    switch (qcow2_subcluster_type(s, e, bm, sc)) {
    case QCOW2_SC_COMPRESSED:
        return s->cluster_size;
    case QCOW2_SC_NORMAL:
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_UNALLOCATED_ALLOC: {
        /* ... up to its last allocated subcluster */
        uint32_t tail = alloc ? (uint32_t)__builtin_clz(alloc) : QCOW2_SUBCLUSTERS;
        uint32_t skip = IC_MIN(QCOW2_SUBCLUSTERS - sc - 1, tail);
        return s->cluster_size - ((uint64_t)skip << s->subcluster_bits);
    }
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_UNALLOCATED_PLAIN:
    case QCOW2_SC_INVALID:
        break;
    }
    return (uint64_t)(sc + 1) << s->subcluster_bits;
}

/* Note 6a: the run of clusters from entry @ci that need a new home, as far
 * as the write [pos, pos+len) reaches, gets one contiguous allocation
 * (qemu's handle_alloc).  Returns the bytes of the write it covered. */
static int64_t ext_write_alloc(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t pos,
                               const uint8_t *data, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size, a = pos & s->cluster_offset_mask, gstart = pos - a;
    uint64_t k = 0, mb = max_batch(s);
    int ret;
    while (k < mb && k * cs < a + len && ci + k < s->l2_entries) {
        uint64_t e = qcow2_l2_get(s, l2, ci + (uint32_t)k);
        if (!ext_needs_alloc(s, e))
            break;
        if ((ret = ext_check_entry(img, e, qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)k),
                                   gstart + k * cs)) < 0)
            return ret;
        k++;
    }
    if (k == 0)
        return -EIO; /* the caller saw entry @ci needing a new home */
    uint64_t bytes = IC_MIN(len, k * cs - a), end = a + bytes;
    uint64_t last = (end - 1) >> s->cluster_bits; /* == k - 1 */
    uint64_t from = ext_cow_start(s, qcow2_l2_get(s, l2, ci), qcow2_l2_get_bitmap(s, l2, ci),
                                  (uint32_t)(a >> s->subcluster_bits));
    uint64_t to = last * cs +
                  ext_cow_end(s, qcow2_l2_get(s, l2, ci + (uint32_t)last),
                              qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)last),
                              end - last * cs);
    int64_t host = alloc_data(img, pos, k);
    if (host < 0)
        return host;
    /* The clusters are allocated (refcounts in the refblock cache) but no
     * entry points to them yet: if we fail or crash from here until the
     * L2 table is written, they only leak. */
    if ((ret = ext_write_cow(img, gstart, (uint64_t)host, from, a, end, to, data)) < 0)
        return ret;
    /* Data and COW are written; only now the entries change (in the L2
     * cache, which flushes the files before it writes the table). */
    if ((ret = ext_link(img, l2, ci, last, (uint64_t)host, from, to)) < 0)
        return ret;
    return (int64_t)bytes;
}

/* One step of an extended-L2 write at entry @ci (a run of clusters that
 * are written in place, or a run that gets new clusters); returns the
 * bytes done. */
static int64_t ext_write(struct ic_image *img, uint8_t *l2, uint32_t ci, uint64_t pos,
                         const uint8_t *data, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t e = qcow2_l2_get(s, l2, ci), bm = qcow2_l2_get_bitmap(s, l2, ci);
    int ret = ext_check_entry(img, e, bm, pos);
    if (ret < 0)
        return ret;
    if (ext_needs_alloc(s, e))
        return ext_write_alloc(img, l2, ci, pos, data, len);
    return ext_write_keep(img, l2, ci, pos, data, len);
}

/* Writes the part of [off, off+len) inside one L2 table; returns bytes. */
static int64_t write_in_table(struct ic_image *img, const uint8_t *buf, uint64_t len,
                              uint64_t off)
{
    struct qcow2_state *s = qcow2_state(img);
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    uint64_t l1i = off >> tbits;
    int ret;
    if (l1i >= s->l1_size && (ret = qcow2_grow_l1(img, l1i + 1)) < 0)
        return ret;
    uint8_t *l2;
    if ((ret = get_l2_for_write(img, (uint32_t)l1i, &l2)) < 0)
        return ret;
    uint64_t limit = IC_MIN(len, ((l1i + 1) << tbits) - off), done = 0;
    uint64_t cs = s->cluster_size;
    while (done < limit) {
        uint64_t pos = off + done, a = pos & s->cluster_offset_mask;
        uint64_t n = IC_MIN(limit - done, cs - a);
        uint32_t ci = (uint32_t)((pos >> s->cluster_bits) & (s->l2_entries - 1));
        uint64_t e = qcow2_l2_get(s, l2, ci), bm = qcow2_l2_get_bitmap(s, l2, ci);
        if (s->ext_l2) {
            int64_t w = ext_write(img, l2, ci, pos, buf + done, limit - done);
            if (w < 0) {
                ret = (int)w;
                break;
            }
            done += (uint64_t)w;
            continue;
        }
        if (in_place(s, e, bm, a, n)) {
            uint64_t host = (e & QCOW2_L2E_OFFSET_MASK) + a, total = n;
            for (uint32_t k = 1; done + total < limit; k++) {
                uint64_t e2 = qcow2_l2_get(s, l2, ci + k), bm2 = qcow2_l2_get_bitmap(s, l2, ci + k);
                uint64_t n2 = IC_MIN(limit - done - total, cs);
                if (!in_place(s, e2, bm2, 0, n2) ||
                    (e2 & QCOW2_L2E_OFFSET_MASK) != (e & QCOW2_L2E_OFFSET_MASK) + k * cs)
                    break;
                total += n2;
            }
            if (!s->data_file && (ret = qcow2_check_overlap(img, host, total)) < 0)
                break;
            ic_io_event(img->file, IC_EV_DATA_WRITE);
            if ((ret = ic_io_pwrite(qcow2_data_io(img), buf + done, (size_t)total, host)) < 0)
                break;
            done += total;
            continue;
        }
        bool full = a == 0 && (n == cs || pos + n >= img->size);
        if (full) {
            uint64_t k = 1, bytes = n, mb = max_batch(s);
            while (done + bytes < limit && k < mb) {
                uint64_t p2 = off + done + bytes;
                uint64_t n2 = IC_MIN(limit - done - bytes, cs);
                uint64_t e2 = qcow2_l2_get(s, l2, ci + (uint32_t)k);
                uint64_t bm2 = qcow2_l2_get_bitmap(s, l2, ci + (uint32_t)k);
                if (!(n2 == cs || p2 + n2 >= img->size) || in_place(s, e2, bm2, 0, n2))
                    break;
                bytes += n2;
                k++;
            }
            int64_t host = alloc_data(img, pos, k);
            if (host < 0) {
                ret = (int)host;
                break;
            }
            ic_io_event(img->file, IC_EV_DATA_WRITE);
            if ((ret = ic_io_pwrite(qcow2_data_io(img), buf + done, (size_t)bytes, (uint64_t)host)) < 0)
                break;
            for (uint64_t j = 0; j < k && ret == 0; j++)
                ret = set_new_entry(img, l2, ci + (uint32_t)j, (uint64_t)host + j * cs);
            if (ret < 0)
                break;
            done += bytes;
            continue;
        }
        if ((ret = write_cluster_slow(img, l2, ci, pos, buf + done, n)) < 0)
            break;
        done += n;
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    if (ret < 0)
        return ret;
    return (int64_t)done;
}

int qcow2_cluster_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    const uint8_t *p = buf;
    while (len > 0) {
        int64_t n = write_in_table(img, p, len, off);
        if (n < 0)
            return (int)n;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return qcow2_flush_pending_frees(img);
}

/* ---- zero writes and discard -------------------------------------------------------- */

static int write_zero_buf(struct ic_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    size_t chunk = (size_t)IC_MIN(len, (uint64_t)IC_MAX(s->cluster_size, 1u << 20));
    uint8_t *z = calloc(1, chunk);
    if (!z)
        return -ENOMEM;
    int ret = 0;
    while (len > 0 && ret == 0) {
        size_t n = (size_t)IC_MIN(len, (uint64_t)chunk);
        int64_t w = write_in_table(img, z, n, off);
        if (w < 0) {
            ret = (int)w;
            break;
        }
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    free(z);
    return ret;
}

/* ---- host discards of freed clusters (extended L2) ------------------------------------ */

/* qemu passes discard requests down to the image file (pass-discard-
 * request, on when the image is opened with unmap as qemu-io does): a host
 * cluster whose refcount drops to 0 because of a discard or an unmapping
 * zero write is punched out of the file.  With extended L2 we do the same,
 * so that the host layout (and what qemu's metadata-preallocation
 * heuristic sees) matches qemu's.  The clusters are noted while entries
 * are dropped and punched after qcow2_flush_pending_frees(): by then no
 * table on disk references them. */
struct punch_list {
    uint64_t *off;   /* host cluster offsets */
    size_t n, cap;
};

static int punch_note(struct ic_image *img, struct punch_list *pl, uint64_t e)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t first, end;
    if (!pl || s->data_file)
        return 0;
    switch (qcow2_cluster_type(s, e)) {
    case QCOW2_CT_COMPRESSED: {
        uint64_t coff, csize;
        qcow2_parse_compressed(s, e, &coff, &csize);
        first = coff & ~s->cluster_offset_mask;
        end = coff + csize;
        break;
    }
    case QCOW2_CT_NORMAL:
    case QCOW2_CT_ZERO_ALLOC:
        first = e & QCOW2_L2E_OFFSET_MASK;
        end = first + s->cluster_size;
        break;
    case QCOW2_CT_UNALLOCATED:
    case QCOW2_CT_ZERO_PLAIN:
    default:
        return 0;
    }
    for (uint64_t c = first; c < end; c += s->cluster_size) {
        if (pl->n == pl->cap) {
            size_t cap = pl->cap ? pl->cap * 2 : 16;
            uint64_t *nv = realloc(pl->off, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            pl->off = nv;
            pl->cap = cap;
        }
        pl->off[pl->n++] = c;
    }
    return 0;
}

/* Punches the noted clusters that are free now; frees the list.  A
 * backend without hole punching leaves the bytes (they are unused). */
static int punch_apply(struct ic_image *img, struct punch_list *pl, int ret)
{
    struct qcow2_state *s = qcow2_state(img);
    for (size_t i = 0; i < pl->n && ret == 0; i++) {
        uint64_t rc;
        ret = qcow2_get_refcount(img, pl->off[i] >> s->cluster_bits, &rc);
        if (ret == 0 && rc == 0) {
            ret = ic_io_punch_hole(img->file, pl->off[i], s->cluster_size);
            if (ret == -ENOTSUP)
                ret = 0;
        }
    }
    free(pl->off);
    pl->off = NULL;
    pl->n = pl->cap = 0;
    return ret;
}

enum zmode { ZM_ZERO, ZM_ZERO_UNMAP, ZM_DISCARD, ZM_FULL };

/* How a zeroing pass rewrites the L2 entry @e (bitmap @bm) of one whole
 * cluster: false to leave it, else the new entry and bitmap, and whether
 * the old host cluster is freed.  @arg is the pass's own parameter. */
typedef bool (*entry_rewrite_fn)(struct ic_image *img, uint64_t e, uint64_t bm, uint64_t *ne,
                                 uint64_t *nbm, bool *free_old, const void *arg);

/* The writable L2 table covering guest offset @off (L1 grown, table
 * allocated or unshared as qemu's get_cluster_table does). */
static int l2_for_write_at(struct ic_image *img, uint64_t off, uint8_t **l2)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    int ret;
    if (l1i >= s->l1_size && (ret = qcow2_grow_l1(img, l1i + 1)) < 0)
        return ret;
    return get_l2_for_write(img, (uint32_t)l1i, l2);
}

/* Rewrites the entries of the whole clusters of [off, off+n), all in the
 * writable L2 table @l2, with @fn.  A dropped host cluster is punched and
 * freed after the table is on disk (design note 4). */
static int rewrite_entries(struct ic_image *img, uint8_t *l2, uint64_t off, uint64_t n,
                           entry_rewrite_fn fn, const void *arg, struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = 0;
    for (uint64_t p = off; p < off + n && ret == 0; p += s->cluster_size) {
        uint32_t ci = (uint32_t)((p >> s->cluster_bits) & (s->l2_entries - 1));
        uint64_t e = qcow2_l2_get(s, l2, ci), bm = qcow2_l2_get_bitmap(s, l2, ci), ne, nbm;
        bool free_old;
        if (!fn(img, e, bm, &ne, &nbm, &free_old, arg))
            continue;
        ic_io_event(img->file, IC_EV_L2_UPDATE);
        qcow2_l2_set(s, l2, ci, ne);
        qcow2_l2_set_bitmap(s, l2, ci, nbm);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        if (free_old && (ret = punch_note(img, pl, e)) == 0)
            ret = qcow2_free_l2_entry(img, e);
    }
    return ret;
}

/* rewrite_entries() over [off, off+len) (cluster aligned, or ending at the
 * end of the disk), one L2 table at a time, each made writable first;
 * with @skip_missing, ranges without an L2 table are left alone. */
static int rewrite_range(struct ic_image *img, uint64_t off, uint64_t len, bool skip_missing,
                         entry_rewrite_fn fn, const void *arg, struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    while (len > 0) {
        uint64_t l1i = off >> tbits;
        uint64_t n = IC_MIN(len, ((l1i + 1) << tbits) - off);
        bool table = l1i < s->l1_size && (s->l1[l1i] & QCOW2_L1E_OFFSET_MASK);
        if (table || !skip_missing) {
            uint8_t *l2;
            int ret = l2_for_write_at(img, off, &l2);
            if (ret < 0)
                return ret;
            ret = rewrite_entries(img, l2, off, n, fn, arg, pl);
            qcow2_cache_put(&s->l2_cache, &l2);
            if (ret < 0)
                return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

/* entry_rewrite_fn (@arg: the enum zmode): the new entry for a whole
 * cluster that must read as zeroes (or be discarded). */
static bool zero_entry(struct ic_image *img, uint64_t e, uint64_t bm, uint64_t *ne,
                       uint64_t *nbm, bool *free_old, const void *arg)
{
    struct qcow2_state *s = qcow2_state(img);
    enum zmode mode = *(const enum zmode *)arg;
    enum qcow2_ctype t = qcow2_cluster_type(s, e);
    bool allocated = t == QCOW2_CT_NORMAL || t == QCOW2_CT_ZERO_ALLOC || t == QCOW2_CT_COMPRESSED;
    bool keep_host = mode == ZM_ZERO && (t == QCOW2_CT_NORMAL || t == QCOW2_CT_ZERO_ALLOC) &&
                     entry_copied(s, e);
    *free_old = false;
    if (mode == ZM_FULL) {
        *ne = 0;
        *nbm = 0;
        *free_old = allocated;
        return e != 0 || bm != 0;
    }
    if (mode == ZM_DISCARD && !img->backing_name && !allocated)
        return false;
    if (s->ext_l2) {
        *nbm = QCOW2_BITMAP_ALL_ZERO;
        *ne = keep_host ? e : 0;
        *free_old = !keep_host && allocated;
        return *ne != e || *nbm != bm;
    }
    if (s->h.version < 3) {
        /* v2: no zero flag; only deallocation reads as zeroes, and only
         * without a backing file (the caller checked). */
        *ne = 0;
        *nbm = 0;
        *free_old = allocated;
        return e != 0;
    }
    *nbm = 0;
    *ne = keep_host ? (e | QCOW2_OFLAG_ZERO) : QCOW2_OFLAG_ZERO;
    *free_old = !keep_host && allocated;
    return *ne != e;
}

/* Applies @mode to the whole clusters of [off, off+len) (cluster aligned,
 * or ending at the end of the disk). */
static int zero_clusters(struct ic_image *img, uint64_t off, uint64_t len, enum zmode mode,
                         struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    /* nothing to do for a missing table that already reads as zeroes
     * (no backing) or that a discard would leave reading the backing;
     * with extended L2 a discard allocates it anyway, as qemu's
     * get_cluster_table does (same host layout, note 6d) */
    bool skip_missing = mode == ZM_FULL || (!img->backing_name && !s->ext_l2) ||
                        (s->h.version < 3 && !s->ext_l2);
    return rewrite_range(img, off, len, skip_missing, zero_entry, &mode, pl);
}

/* ---- extended L2 zero writes (design note 6c) ---------------------------------------- */

/* qemu's MAX_BOUNCE_BUFFER: when write-zeroes is refused, qemu's block
 * layer writes zero data in pieces of at most this size and tries
 * write-zeroes again for the rest. */
#define EXT_ZERO_FALLBACK_MAX ((uint64_t)32768 * 512)

/* The L2 entry of guest offset @pos without allocating anything (0 when
 * there is no L2 table). */
static int lookup_entry(struct ic_image *img, uint64_t pos, uint64_t *e, uint64_t *bm)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t l1i = pos >> (s->cluster_bits + s->l2_bits);
    uint64_t l2off = l1i < s->l1_size ? s->l1[l1i] & QCOW2_L1E_OFFSET_MASK : 0;
    *e = *bm = 0;
    if (!l2off)
        return 0;
    uint8_t *l2;
    int ret = qcow2_get_l2(img, l2off, &l2);
    if (ret < 0)
        return ret;
    uint32_t ci = (uint32_t)((pos >> s->cluster_bits) & (s->l2_entries - 1));
    *e = qcow2_l2_get(s, l2, ci);
    *bm = qcow2_l2_get_bitmap(s, l2, ci);
    qcow2_cache_put(&s->l2_cache, &l2);
    return 0;
}

/* qemu's is_zero(): block status through the whole chain says the range
 * reads as zeroes (clamped to the disk). */
static bool chain_reads_zero(struct ic_image *img, uint64_t off, uint64_t len)
{
    if (off >= img->size)
        return true;
    len = IC_MIN(len, img->size - off);
    while (len > 0) {
        ic_block_status st;
        if (ic_image_block_status(img, NULL, off, len, &st, NULL) < 0 ||
            !(st.flags & IC_BS_ZERO) || st.length == 0)
            return false;
        uint64_t n = IC_MIN(st.length, len);
        off += n;
        len -= n;
    }
    return true;
}

/* qemu's zero_l2_subclusters: @nsc subclusters from @off (subcluster
 * aligned, inside one cluster, fewer than all) read as zeroes.  The host
 * cluster stays allocated.  -ENOTSUP for a compressed cluster. */
static int ext_zero_subclusters(struct ic_image *img, uint64_t off, uint32_t nsc)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t *l2;
    int ret = l2_for_write_at(img, off, &l2);
    if (ret < 0)
        return ret;
    uint32_t ci = (uint32_t)((off >> s->cluster_bits) & (s->l2_entries - 1));
    uint64_t e = qcow2_l2_get(s, l2, ci), bm = qcow2_l2_get_bitmap(s, l2, ci);
    if (qcow2_cluster_type(s, e) == QCOW2_CT_COMPRESSED) {
        ret = -ENOTSUP;
    } else {
        uint32_t sc = (uint32_t)((off & s->cluster_offset_mask) >> s->subcluster_bits);
        uint64_t r = sc_range(sc, sc + nsc - 1);
        uint64_t nbm = (bm | (r << 32)) & ~r;
        if (nbm != bm) {
            ic_io_event(img->file, IC_EV_L2_UPDATE);
            qcow2_l2_set_bitmap(s, l2, ci, nbm);
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        }
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    return ret;
}

/* entry_rewrite_fn (@arg: the bool unmap) for extended L2: an all-zero
 * bitmap; the host cluster is dropped when compressed, or with unmap. */
static bool ext_zero_entry(struct ic_image *img, uint64_t e, uint64_t bm, uint64_t *ne,
                           uint64_t *nbm, bool *free_old, const void *arg)
{
    enum qcow2_ctype t = qcow2_cluster_type(qcow2_state(img), e);
    bool unmap = *(const bool *)arg;
    *free_old = t == QCOW2_CT_COMPRESSED || (unmap && t == QCOW2_CT_NORMAL);
    *ne = *free_old ? 0 : e;
    *nbm = QCOW2_BITMAP_ALL_ZERO;
    return *ne != e || bm != QCOW2_BITMAP_ALL_ZERO;
}

/* qemu's zero_in_l2_slice: whole clusters of [off, off+len) (cluster
 * aligned; the last one may end at the end of the disk) get an all-zero
 * bitmap; the host cluster is dropped when compressed, or with @unmap. */
static int ext_zero_clusters(struct ic_image *img, uint64_t off, uint64_t len, bool unmap,
                             struct punch_list *pl)
{
    return rewrite_range(img, off, len, false, ext_zero_entry, &unmap, pl);
}

/* qemu's qcow2_subcluster_zeroize: [off, off+len) is subcluster aligned
 * (its end may be the end of the disk). */
static int ext_zeroize(struct ic_image *img, uint64_t off, uint64_t len, bool unmap,
                       struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size, scs = s->subcluster_size, end = off + len;
    uint64_t head = IC_MIN(end, IC_ALIGN_UP(off, cs)) - off;
    off += head;
    uint64_t tail = end >= img->size ? 0 : end - IC_MAX(off, IC_ALIGN_DOWN(end, cs));
    end -= tail;
    int ret = 0;
    if (head)
        ret = ext_zero_subclusters(img, off - head, (uint32_t)IC_DIV_ROUND_UP(head, scs));
    if (ret == 0 && end > off)
        ret = ext_zero_clusters(img, off, IC_MIN(end, img->size) - off, unmap, pl);
    if (ret == 0 && tail)
        ret = ext_zero_subclusters(img, end, (uint32_t)IC_DIV_ROUND_UP(tail, scs));
    return ret;
}

/* qcow2_co_pwrite_zeroes for one piece of the block layer's split: a
 * piece that covers only part of a subcluster zeroes the whole subcluster
 * when the rest of it already reads as zeroes and it holds no data;
 * otherwise -ENOTSUP (the caller writes zero data). */
static int ext_zero_piece(struct ic_image *img, uint64_t pos, uint64_t n, bool unmap,
                          struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t scs = s->subcluster_size, end = pos + n;
    uint64_t head = pos & (scs - 1);
    uint64_t tail = end == img->size ? 0 : IC_ALIGN_UP(end, scs) - end;
    if (head || tail) {
        if (!chain_reads_zero(img, pos - head, head) || !chain_reads_zero(img, end, tail))
            return -ENOTSUP;
        pos -= head;
        n = scs;
        uint64_t e, bm;
        int ret = lookup_entry(img, pos, &e, &bm);
        if (ret < 0)
            return ret;
        uint32_t sc = (uint32_t)((pos & s->cluster_offset_mask) >> s->subcluster_bits);
        switch (qcow2_subcluster_type(s, e, bm, sc)) {
        case QCOW2_SC_UNALLOCATED_PLAIN:
        case QCOW2_SC_UNALLOCATED_ALLOC:
        case QCOW2_SC_ZERO_PLAIN:
        case QCOW2_SC_ZERO_ALLOC:
            break;
        case QCOW2_SC_NORMAL:
        case QCOW2_SC_COMPRESSED:
        case QCOW2_SC_INVALID:
            return -ENOTSUP;
        }
    }
    return ext_zeroize(img, pos, n, unmap, pl);
}

/* Zero writes with extended L2, split as qemu's bdrv_co_do_pwrite_zeroes
 * splits them (alignment: one subcluster), with its fallback to zero data
 * for pieces the driver refuses. */
static int ext_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, bool unmap,
                             struct punch_list *pl)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t scs = s->subcluster_size, end = off + len;
    while (off < end) {
        uint64_t n = end - off;
        if (off & (scs - 1))
            n = IC_MIN(n, scs - (off & (scs - 1)));
        else if ((end & (scs - 1)) && n > scs)
            n -= end & (scs - 1);
        int ret = ext_zero_piece(img, off, n, unmap, pl);
        if (ret == -ENOTSUP) {
            n = IC_MIN(n, EXT_ZERO_FALLBACK_MAX);
            ret = write_zero_buf(img, off, n);
        }
        if (ret < 0)
            return ret;
        off += n;
    }
    return 0;
}

int qcow2_cluster_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->data_file_raw)
        return -ENOTSUP; /* the data file must hold the zeroes: plain writes */
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    if (s->ext_l2) {
        struct punch_list pl = { NULL, 0, 0 };
        ret = ext_pwrite_zeroes(img, off, len, (flags & IC_ZERO_MAY_UNMAP) != 0, &pl);
        if (ret == 0)
            ret = qcow2_flush_pending_frees(img);
        return punch_apply(img, &pl, ret);
    }
    uint64_t cs = s->cluster_size, end = off + len;
    uint64_t zs = IC_ALIGN_UP(off, cs);
    uint64_t ze = end == img->size ? IC_ALIGN_UP(end, cs) : IC_ALIGN_DOWN(end, cs);
    if (zs >= ze || (s->h.version < 3 && !s->ext_l2 && img->backing_name)) {
        ret = write_zero_buf(img, off, len);
    } else {
        if (off < zs)
            ret = write_zero_buf(img, off, zs - off);
        if (ret == 0) {
            enum zmode m = (flags & IC_ZERO_MAY_UNMAP) || s->h.version < 3 ? ZM_ZERO_UNMAP
                                                                          : ZM_ZERO;
            ret = zero_clusters(img, zs, IC_MIN(ze, img->size) - zs, m, NULL);
        }
        if (ret == 0 && ze < end)
            ret = write_zero_buf(img, ze, end - ze);
    }
    if (ret == 0)
        ret = qcow2_flush_pending_frees(img);
    return ret;
}

int qcow2_cluster_discard(struct ic_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    uint64_t cs = s->cluster_size, end = off + len;
    uint64_t zs = IC_ALIGN_UP(off, cs);
    uint64_t ze = end == img->size ? IC_ALIGN_UP(end, cs) : IC_ALIGN_DOWN(end, cs);
    if (zs >= ze)
        return 0;
    struct punch_list pl = { NULL, 0, 0 };
    if (s->data_file_raw)
        ret = write_zero_buf(img, zs, IC_MIN(ze, img->size) - zs);
    else
        ret = zero_clusters(img, zs, IC_MIN(ze, img->size) - zs, ZM_DISCARD,
                            s->ext_l2 ? &pl : NULL);
    if (ret == 0)
        ret = qcow2_flush_pending_frees(img);
    return punch_apply(img, &pl, ret);
}

int qcow2_make_empty(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    uint64_t end = IC_ALIGN_UP(img->size, (uint64_t)s->cluster_size);
    if (s->data_file_raw)
        ret = write_zero_buf(img, 0, img->size);
    else if (end)
        ret = zero_clusters(img, 0, IC_MIN(end, img->size), ZM_FULL, NULL);
    if (ret == 0)
        ret = qcow2_flush_pending_frees(img);
    return ret;
}

/* ---- compressed writes ----------------------------------------------------------------- */

/* Thread-safe (driver contract): reads only the cluster size and the
 * compression type, both fixed at open. */
int64_t qcow2_cluster_compress(const struct ic_image *img, void *dst, size_t dst_len,
                               const void *src, size_t len)
{
    const struct qcow2_state *s = img->opaque;
    if (len > s->cluster_size || dst_len < s->cluster_size)
        return -EINVAL;
    uint8_t *in = NULL;
    if (len < s->cluster_size) {
        /* the last cluster of the disk: compress it padded with zeroes */
        if (!(in = calloc(1, s->cluster_size)))
            return -ENOMEM;
        memcpy(in, src, len);
        src = in;
    }
    /* As qemu: worth storing compressed only if smaller than a cluster. */
    int64_t clen = qcow2_compress(s->compression_type, dst, s->cluster_size - 1, src,
                                  s->cluster_size);
    free(in);
    return clen;
}

int qcow2_cluster_pwrite_precompressed(struct ic_image *img, const void *cbuf, size_t clen,
                                       uint64_t off)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->data_file)
        return ic_image_fail(img, -ENOTSUP, "compression is not supported with an external "
                             "data file");
    /* limit: a compressed payload is smaller than one cluster (qemu's
     * rule, and what the descriptor's size field can hold) */
    if ((off & s->cluster_offset_mask) || off >= img->size || clen == 0 ||
        clen >= s->cluster_size)
        return ic_image_fail(img, -EINVAL, "invalid precompressed cluster write");
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    uint64_t l1i = off >> tbits;
    if (l1i >= s->l1_size && (ret = qcow2_grow_l1(img, l1i + 1)) < 0)
        return ret;
    uint8_t *l2;
    if ((ret = get_l2_for_write(img, (uint32_t)l1i, &l2)) < 0)
        return ret;
    int64_t coff = qcow2_alloc_bytes(img, (uint64_t)clen);
    if (coff < 0) {
        ret = (int)coff;
    } else {
        /* if we crash after this point we only leak the payload bytes:
         * no L2 entry points at them yet */
        ic_io_event(img->file, IC_EV_DATA_WRITE_COMPRESSED);
        ret = ic_io_pwrite(img->file, cbuf, clen, (uint64_t)coff);
    }
    if (ret == 0) {
        uint32_t ci = (uint32_t)((off >> s->cluster_bits) & (s->l2_entries - 1));
        uint64_t old = qcow2_l2_get(s, l2, ci);
        ic_io_event(img->file, IC_EV_L2_UPDATE_COMPRESSED);
        qcow2_l2_set(s, l2, ci, qcow2_make_compressed(s, (uint64_t)coff, (uint64_t)clen));
        qcow2_l2_set_bitmap(s, l2, ci, 0);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        ret = qcow2_free_l2_entry(img, old);
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    if (ret == 0)
        ret = qcow2_flush_pending_frees(img);
    return ret;
}

int qcow2_cluster_pwrite_compressed(struct ic_image *img, const void *buf, size_t len,
                                    uint64_t off)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->data_file)
        return ic_image_fail(img, -ENOTSUP, "compression is not supported with an external "
                             "data file");
    if ((off & s->cluster_offset_mask) || len > s->cluster_size ||
        (len < s->cluster_size && off + len != img->size))
        return ic_image_fail(img, -EINVAL, "compressed writes must cover one whole cluster");
    uint8_t *out = malloc(s->cluster_size);
    if (!out)
        return -ENOMEM;
    int64_t clen = qcow2_cluster_compress(img, out, s->cluster_size, buf, len);
    int ret;
    if (clen == -ENOSPC)
        ret = qcow2_cluster_pwrite(img, buf, len, off);
    else if (clen < 0)
        ret = (int)clen;
    else
        ret = qcow2_cluster_pwrite_precompressed(img, out, (size_t)clen, off);
    free(out);
    return ret;
}

/* ---- preallocation=metadata ---------------------------------------------------------------- */

int qcow2_preallocate_metadata(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t total = qcow2_size_to_clusters(s, img->size);
    uint64_t tables = qcow2_size_to_l1(s, img->size);
    uint8_t *t = malloc(s->cluster_size);
    if (!t)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = 0;
    uint64_t file_end = 0;
    for (uint64_t l1i = 0; l1i < tables && ret == 0; l1i++) {
        if (s->l1[l1i])
            continue;
        uint64_t first = l1i << s->l2_bits;
        uint64_t gc = IC_MIN((uint64_t)s->l2_entries, total - first);
        int64_t toff = qcow2_alloc_clusters(img, 1);
        if (toff < 0) {
            ret = (int)toff;
            break;
        }
        memset(t, 0, s->cluster_size);
        for (uint64_t j = 0; j < gc;) {
            /* one packed run per table: data runs then follow each other
             * with their refblocks between them, as qemu lays them out */
            uint64_t k = gc - j;
            int64_t host = s->data_file ? alloc_data(img, (first + j) << s->cluster_bits, k)
                                        : qcow2_alloc_clusters_packed(img, k);
            if (host < 0) {
                ret = (int)host;
                break;
            }
            for (uint64_t x = 0; x < k; x++) {
                uint64_t h = s->data_file ? (first + j + x) << s->cluster_bits
                                          : (uint64_t)host + (x << s->cluster_bits);
                qcow2_l2_set(s, t, (uint32_t)(j + x), h | QCOW2_OFLAG_COPIED);
                /* extended L2: allocated but all subclusters unallocated,
                 * reading through to the backing file (qemu's layout) */
            }
            if (!s->data_file)
                file_end = IC_MAX(file_end, (uint64_t)host + (k << s->cluster_bits));
            j += k;
        }
        if (ret < 0)
            break;
        qcow2_cache_discard(&s->l2_cache, (uint64_t)toff);
        /* The table is unreferenced until the L1 entry below is written by
         * qcow2_flush_metadata (after refblocks and a flush). */
        ic_io_event(img->file, IC_EV_L2_ALLOC_WRITE);
        ret = ic_io_pwrite(img->file, t, s->cluster_size, (uint64_t)toff);
        file_end = IC_MAX(file_end, (uint64_t)toff + s->cluster_size);
        s->l1[l1i] = (uint64_t)toff | QCOW2_OFLAG_COPIED;
        l1_mark_dirty(s, (uint32_t)l1i);
    }
    free(t);
    if (ret == 0) {
        int64_t fsz = ic_io_get_size(img->file);
        if (fsz < 0)
            ret = (int)fsz;
        else if ((uint64_t)fsz < file_end)
            ret = ic_io_truncate(img->file, file_end);
    }
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "metadata preallocation failed: %s",
                            img->last_error ? img->last_error->msg : strerror(-ret));
    return 0;
}

/* ---- resize (qcow2-resize.c) --------------------------------------------------------- */

int qcow2_cluster_drop_tail(struct ic_image *img, uint64_t from)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    uint64_t reach = (uint64_t)s->l1_size << tbits;
    from = IC_ALIGN_UP(from, (uint64_t)s->cluster_size);
    struct punch_list pl = { NULL, 0, 0 };
    if (from < reach && !s->data_file_raw)
        ret = zero_clusters(img, from, reach - from, ZM_FULL, s->ext_l2 ? &pl : NULL);
    /* Tables wholly past @from hold nothing now: unhook them.  Their
     * cached copies go first, so no later flush writes into a cluster
     * that may be reused; until the L1 update is on disk the old tables
     * still describe the old (invisible) tail, and the queued decrements
     * come only after it. */
    for (uint64_t i = (from + (1ull << tbits) - 1) >> tbits; ret == 0 && i < s->l1_size; i++) {
        uint64_t t = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!t)
            continue;
        qcow2_cache_discard(&s->l2_cache, t);
        s->l1[i] = 0;
        l1_mark_dirty(s, (uint32_t)i);
        ret = qcow2_queue_free(img, t, s->cluster_size);
    }
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret == 0)
        ret = qcow2_flush_pending_frees(img);
    return punch_apply(img, &pl, ret);
}

int qcow2_cluster_preallocate(struct ic_image *img, uint64_t from, uint64_t end,
                              ic_prealloc mode)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = prepare_write(img);
    if (ret < 0)
        return ret;
    uint64_t cs = s->cluster_size, mb = max_batch(s);
    uint32_t tbits = s->cluster_bits + s->l2_bits;
    uint32_t *idx = malloc((size_t)s->l2_entries * sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    from = IC_ALIGN_UP(from, cs);
    for (uint64_t pos = from; pos < end && ret == 0;) {
        uint64_t l1i = pos >> tbits;
        uint64_t tend = IC_MIN(end, (l1i + 1) << tbits);
        uint8_t *l2;
        if ((ret = l2_for_write_at(img, pos, &l2)) < 0)
            break;
        uint32_t n = 0;
        for (uint64_t p = pos; p < tend; p += cs) {
            uint32_t ci = (uint32_t)((p >> s->cluster_bits) & (s->l2_entries - 1));
            enum qcow2_ctype t = qcow2_cluster_type(s, qcow2_l2_get(s, l2, ci));
            if (t == QCOW2_CT_UNALLOCATED || t == QCOW2_CT_ZERO_PLAIN)
                idx[n++] = ci;
        }
        for (uint32_t j = 0; j < n && ret == 0;) {
            uint64_t k = IC_MIN((uint64_t)(n - j), mb);
            /* A run ends where the next refblock range begins (that range
             * starts with its own refblock), so no gap is left behind. */
            int64_t fc = qcow2_file_clusters(img);
            if (fc < 0) {
                ret = (int)fc;
                break;
            }
            uint64_t next = IC_MAX(s->free_cluster_index, (uint64_t)fc);
            uint64_t in_range = next & (s->refblock_entries - 1);
            uint64_t left = s->refblock_entries - in_range - (in_range == 0);
            if (left && left < k)
                k = left;
            /* Fresh clusters past everything in use read as zeroes, so an
             * entry pointing at them reads as before (zero, or an extended
             * L2 bitmap that still says unallocated/zero). */
            int64_t host = qcow2_alloc_clusters_at_end(img, k);
            if (host < 0) {
                ret = (int)host;
                break;
            }
            /* The clusters exist in the file before any entry names them:
             * a table written after a later failure must not point past
             * the end of the file. */
            uint64_t hend = (uint64_t)host + k * cs;
            if (mode == IC_PREALLOC_FALLOC || mode == IC_PREALLOC_FULL) {
                ret = ic_resize_fill(img->file, (uint64_t)host, k * cs, mode);
            } else {
                int64_t fsz = ic_io_get_size(img->file);
                ret = fsz < 0 ? (int)fsz : (uint64_t)fsz < hend ? ic_io_truncate(img->file, hend) : 0;
            }
            for (uint64_t x = 0; x < k && ret == 0; x++) {
                uint32_t ci = idx[j + x];
                uint64_t e = qcow2_l2_get(s, l2, ci);
                uint64_t keep = s->ext_l2 ? 0 : (e & QCOW2_OFLAG_ZERO);
                ic_io_event(img->file, IC_EV_L2_UPDATE);
                qcow2_l2_set(s, l2, ci, ((uint64_t)host + x * cs) | QCOW2_OFLAG_COPIED | keep);
            }
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            j += (uint32_t)k;
        }
        qcow2_cache_put(&s->l2_cache, &l2);
        pos = tend;
    }
    free(idx);
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    return ret;
}
