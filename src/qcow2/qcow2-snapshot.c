/*
 * qcow2-snapshot.c - qcow2 internal snapshots: the snapshot table, and
 * create / apply (goto) / delete.
 *
 * Design notes:
 *  Owns the snapshot table and the snapshot operations (create, apply,
 *  delete, list, temporary view).  Every operation is one shadow-paged transaction
 *  ("txn" below) that ends with ONE write of header bytes 24..71:
 *
 *      bytes 24..71 = size, crypt_method (unchanged), l1_size,
 *                     l1_table_offset, refcount_table_offset,
 *                     refcount_table_clusters, nb_snapshots,
 *                     snapshots_offset
 *
 *  Why not qemu's sequence (raise refcounts, rewrite L2 tables in place,
 *  then switch the snapshot table with a 12-byte write at 60; see
 *  docs/qcow2.md, "Where imgchain differs from qemu")?  qemu-img
 *  check counts a COPIED flag that disagrees with the refcount as a
 *  corruption in BOTH directions, and an L2 entry and the refcount of its
 *  cluster live in different clusters: no order of in-place writes keeps
 *  them in agreement at every crash point.  So nothing reachable from the
 *  header is modified in place; the new tree, the changed refcount blocks
 *  and a new refcount table are written to free clusters, flushed, and
 *  the 48 header bytes (one sector) switch everything at once.  The
 *  snapshot-table pointer (60..71) is part of that single write.
 *
 *  Invariants:
 *  1. Before the header write, no cluster referenced by the on-disk state
 *     has been written: new structures go only to clusters whose refcount
 *     is 0 both before and after the transaction (never to a cluster the
 *     transaction frees).  If we crash before the header write, the image
 *     is the old one, without even leaks.
 *  2. The header write is the commit point.  Everything it points to was
 *     flushed before it; after it the image is the new one, consistent,
 *     and the clusters the old state used are already free in the new
 *     refcounts (no second phase, nothing can leak).
 *  3. The whole transaction is computed in memory first: refcount
 *     overflow (refcount_bits = 1, or a refcount at its maximum) and
 *     refcounts that would drop below zero are refused before the first
 *     byte is written.
 *  4. Cost is linear in the metadata of the trees involved (the active
 *     L1 for create; the snapshot's and the active tree for apply and
 *     delete) plus the table itself; the trees of the other snapshots are
 *     never read (1000 snapshots: creating the 1001st reads none of them).
 *  5. The in-memory snapshot table (s->snapshots; layout in docs/qcow2.md,
 *     "Snapshot table") is the source of truth;
 *     unknown extra data of each entry is written back unchanged.  Entries
 *     are written with at least 24 bytes of extra data (qemu's layout,
 *     v2 and v3 alike).
 *  6. New active tables carry correct COPIED flags: an L2 table whose
 *     data entries would need a COPIED change is copied (never rewritten
 *     in place), and an L1 entry has COPIED iff its table's refcount is 1.
 *  7. After the commit the engine's caches are reset and its in-memory
 *     L1, reftable and header fields replaced, so the data path sees the
 *     new state.
 *
 *  Lookup: goto matches an id first, then a name (qemu); delete takes an
 *  id and/or a name (the public layer decides which).  List and the
 *  temporary load (convert -l, map -l) stay in qcow2.c with the open code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qcow2-snapshot.h"
#include "util/endian.h"
#include "util/overflow.h"

/* Longest snapshot name we create (qemu truncates at 255 bytes; we refuse
 * instead of storing something else than what was asked for). */
#define QCOW2_MAX_SNAPSHOT_NAME 255u
/* Highest reftable index the transaction may touch: the reftable limit. */
#define QCOW2_TXN_MAX_RT (QCOW2_MAX_REFTABLE_BYTES / 8)

static int nomem(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static int io_err(ic_error **errp, int ret, const char *what)
{
    return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: %s", what,
                        strerror(-ret));
}

/* ---- the snapshot table ------------------------------------------------- */

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
    uint64_t n = QCOW2_SNAPSHOT_HEADER_LEN + QCOW2_SNAPSHOT_EXTRA_QEMU +
                 (uint64_t)sn->unknown_extra_size + strlen(sn->id_str) + strlen(sn->name);
    return IC_ALIGN_UP(n, 8);
}

uint64_t qcow2_snapshot_table_bytes(const struct qcow2_snapshot *sn, uint32_t n)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += entry_bytes(&sn[i]);
    return total;
}

void qcow2_snapshot_serialize(const struct qcow2_state *s, const struct qcow2_snapshot *sn,
                              uint32_t n, uint64_t cur_size, uint8_t *buf)
{
    (void)s;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct qcow2_snapshot *e = &sn[i];
        uint8_t *b = buf + pos;
        size_t id_len = strlen(e->id_str), name_len = strlen(e->name);
        uint64_t len = entry_bytes(e);
        memset(b, 0, len);
        ic_store_be64(b, e->l1_table_offset);
        ic_store_be32(b + 8, e->l1_size);
        ic_store_be16(b + 12, (uint16_t)id_len);
        ic_store_be16(b + 14, (uint16_t)name_len);
        ic_store_be32(b + 16, e->date_sec);
        ic_store_be32(b + 20, e->date_nsec);
        ic_store_be64(b + 24, e->vm_clock_nsec);
        /* the 32-bit field holds 0 when the size does not fit (qemu) */
        ic_store_be32(b + 32, e->vm_state_size > UINT32_MAX ? 0 : (uint32_t)e->vm_state_size);
        ic_store_be32(b + 36, QCOW2_SNAPSHOT_EXTRA_QEMU + e->unknown_extra_size);
        uint8_t *x = b + QCOW2_SNAPSHOT_HEADER_LEN;
        ic_store_be64(x, e->vm_state_size);
        ic_store_be64(x + 8, e->has_disk_size ? e->disk_size : cur_size);
        ic_store_be64(x + 16, (uint64_t)(e->has_icount ? e->icount : -1));
        if (e->unknown_extra_size)
            memcpy(x + QCOW2_SNAPSHOT_EXTRA_QEMU, e->unknown_extra, e->unknown_extra_size);
        x += QCOW2_SNAPSHOT_EXTRA_QEMU + e->unknown_extra_size;
        memcpy(x, e->id_str, id_len);
        memcpy(x + id_len, e->name, name_len);
        pos += len;
    }
}

static void snapshot_clear(struct qcow2_snapshot *sn)
{
    free(sn->id_str);
    free(sn->name);
    free(sn->unknown_extra);
    memset(sn, 0, sizeof(*sn));
}

static int find_by_id(const struct qcow2_state *s, const char *id)
{
    for (uint32_t i = 0; id && i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].id_str, id))
            return (int)i;
    return -1;
}

static int find_by_name(const struct qcow2_state *s, const char *name)
{
    for (uint32_t i = 0; name && i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].name, name))
            return (int)i;
    return -1;
}

/* ---- the transaction ------------------------------------------------------ */

struct txn_rb {
    uint8_t *buf;       /* refcounts after the transaction */
    uint64_t *freed;    /* bit per cluster: dropped to 0 in this transaction */
    uint64_t old_off;   /* refblock before (0 = none) */
    uint64_t new_off;   /* where the changed block is written; 0 = not yet */
    bool loaded, dirty;
};

/* The data entries of an L2 table as runs of clusters that follow each
 * other on the host with the same COPIED flag, in entry order.  tree_delta
 * records one for every table it reads, so that fix_active_tree can check
 * a table it has seen against the refcounts without reading it again.
 * Tables are never modified during a transaction (a table that changes is
 * copied), so the summary of an offset stays true. */
#define L2_SUMMARY_RUNS 4
struct l2_run {
    uint64_t start;         /* first host cluster */
    uint32_t len;
    bool copied;            /* every entry of the run has COPIED */
};

struct l2_summary {
    uint64_t off;           /* the table's host offset; 0 = empty slot */
    uint32_t nb_runs;       /* > L2_SUMMARY_RUNS: too fragmented, not kept */
    struct l2_run run[L2_SUMMARY_RUNS];
};

struct txn {
    struct ic_image *img;
    struct qcow2_state *s;
    struct txn_rb *rb;
    uint64_t nb_rb;
    uint64_t cursor;        /* no free cluster below this */
    uint64_t rt_off, rt_clusters;
    uint8_t *l2buf;
    uint64_t file_clusters;
    struct l2_summary *sum; /* open addressing by offset; NULL = none yet */
    uint64_t sum_cap, sum_nb;
};

static void txn_free(struct txn *t)
{
    for (uint64_t i = 0; i < t->nb_rb; i++) {
        free(t->rb[i].buf);
        free(t->rb[i].freed);
    }
    free(t->rb);
    free(t->l2buf);
    free(t->sum);
    memset(t, 0, sizeof(*t));
}

static uint64_t summary_slot(const struct txn *t, uint64_t off)
{
    uint64_t h = (off >> t->s->cluster_bits) * 0x9e3779b97f4a7c15ull;
    uint64_t i = (h >> 32) & (t->sum_cap - 1);
    while (t->sum[i].off && t->sum[i].off != off)
        i = (i + 1) & (t->sum_cap - 1);
    return i;
}

static const struct l2_summary *summary_find(const struct txn *t, uint64_t off)
{
    if (!t->sum)
        return NULL;
    const struct l2_summary *e = &t->sum[summary_slot(t, off)];
    return e->off == off && e->nb_runs <= L2_SUMMARY_RUNS ? e : NULL;
}

/* Keeps @sm (a summary of the table at sm->off).  Summaries are an
 * optimisation only: without memory, none is kept. */
static void summary_keep(struct txn *t, const struct l2_summary *sm)
{
    if (sm->nb_runs > L2_SUMMARY_RUNS)
        return;
    if ((t->sum_nb + 1) * 2 > t->sum_cap) {
        uint64_t ncap = t->sum_cap ? t->sum_cap * 2 : 64;
        struct l2_summary *old = t->sum, *nv = calloc((size_t)ncap, sizeof(*nv));
        if (!nv)
            return;
        uint64_t ocap = t->sum_cap;
        t->sum = nv;
        t->sum_cap = ncap;
        for (uint64_t i = 0; i < ocap; i++)
            if (old[i].off)
                t->sum[summary_slot(t, old[i].off)] = old[i];
        free(old);
    }
    struct l2_summary *e = &t->sum[summary_slot(t, sm->off)];
    if (!e->off) {
        *e = *sm;
        t->sum_nb++;
    }
}

/* Appends a run to @sm (counting past the limit marks it too fragmented). */
static void summary_add_run(struct l2_summary *sm, uint64_t start, uint64_t len, bool copied)
{
    if (sm->nb_runs < L2_SUMMARY_RUNS)
        sm->run[sm->nb_runs] = (struct l2_run){ start, (uint32_t)len, copied };
    if (sm->nb_runs <= L2_SUMMARY_RUNS)
        sm->nb_runs++;
}

/* Flushes the engine, validates the reftable and prepares an empty txn. */
static int txn_begin(struct txn *t, struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    memset(t, 0, sizeof(*t));
    t->img = img;
    t->s = s;
    int ret = qcow2_flush_pending_frees(img);
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    /* Refcounts on disk must be exact before we compute on top of them. */
    if (ret == 0 && s->dirty_on_disk)
        ret = qcow2_mark_clean(img);
    if (ret == 0)
        ret = qcow2_refcount_load(img);
    if (ret < 0)
        return io_err(errp, ret, "cannot flush the image before the snapshot operation");
    for (uint32_t i = 0; i < s->reftable_size; i++) {
        uint64_t e = s->reftable[i];
        if ((e & QCOW2_REFT_RESERVED) || ((e & QCOW2_REFT_OFFSET_MASK) & s->cluster_offset_mask))
            return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                                "refcount table entry %" PRIu32 " is invalid (%#" PRIx64
                                "); run 'check -r all'", i, e);
    }
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return io_err(errp, (int)fc, "cannot get the file size");
    t->file_clusters = (uint64_t)fc;
    t->cursor = IC_MAX(s->free_cluster_index, 1);
    t->l2buf = malloc(s->cluster_size);
    if (!t->l2buf)
        return nomem(errp);
    return 0;
}

static int txn_rb_load(struct txn *t, uint64_t rt, struct txn_rb **out, ic_error **errp);

/* Hot path of every refcount access: the block is usually loaded. */
static inline int txn_rb_get(struct txn *t, uint64_t rt, struct txn_rb **out, ic_error **errp)
{
    if (rt < t->nb_rb && t->rb[rt].loaded) {
        *out = &t->rb[rt];
        return 0;
    }
    return txn_rb_load(t, rt, out, errp);
}

static int txn_rb_load(struct txn *t, uint64_t rt, struct txn_rb **out, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    if (rt >= QCOW2_TXN_MAX_RT)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG,
                            "the image would need a refcount table larger than %llu bytes",
                            (unsigned long long)QCOW2_MAX_REFTABLE_BYTES);
    if (rt >= t->nb_rb) {
        uint64_t n = IC_MAX(rt + 1, t->nb_rb * 2);
        n = IC_MAX(n, (uint64_t)s->reftable_size);
        struct txn_rb *nv = realloc(t->rb, (size_t)n * sizeof(*nv));
        if (!nv)
            return nomem(errp);
        memset(nv + t->nb_rb, 0, (size_t)(n - t->nb_rb) * sizeof(*nv));
        t->rb = nv;
        t->nb_rb = n;
    }
    struct txn_rb *rb = &t->rb[rt];
    if (!rb->loaded) {
        rb->buf = calloc(1, s->cluster_size);
        rb->freed = calloc((s->refblock_entries + 63) / 64, sizeof(uint64_t));
        if (!rb->buf || !rb->freed)
            return nomem(errp);
        rb->old_off = rt < s->reftable_size ? s->reftable[rt] & QCOW2_REFT_OFFSET_MASK : 0;
        if (rb->old_off) {
            ic_io_event(t->img->file, IC_EV_REFBLOCK_LOAD);
            int ret = ic_io_pread(t->img->file, rb->buf, s->cluster_size, rb->old_off);
            if (ret < 0)
                return io_err(errp, ret, "cannot read a refcount block");
        }
        rb->loaded = true;
    }
    *out = rb;
    return 0;
}

static int txn_get(struct txn *t, uint64_t c, uint64_t *v, ic_error **errp)
{
    struct txn_rb *rb;
    int ret = txn_rb_get(t, c >> t->s->refblock_bits, &rb, errp);
    if (ret < 0)
        return ret;
    *v = qcow2_refblock_get(t->s, rb->buf, (uint32_t)(c & (t->s->refblock_entries - 1)));
    return 0;
}

static int txn_add(struct txn *t, uint64_t c, int64_t delta, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    struct txn_rb *rb;
    int ret = txn_rb_get(t, c >> s->refblock_bits, &rb, errp);
    if (ret < 0)
        return ret;
    uint32_t i = (uint32_t)(c & (s->refblock_entries - 1));
    uint64_t v = qcow2_refblock_get(s, rb->buf, i), nv;
    if (delta < 0) {
        if (v < (uint64_t)-delta)
            return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                                "refcount of cluster %#" PRIx64 " would drop below zero "
                                "(refcounts are damaged; run 'check -r all')",
                                c << s->cluster_bits);
        nv = v - (uint64_t)-delta;
        if (nv == 0)
            rb->freed[i / 64] |= 1ull << (i % 64);
    } else {
        if (ic_add_overflow(v, (uint64_t)delta, &nv) || nv > s->refcount_max)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ERANGE,
                                "cannot add a reference to cluster %#" PRIx64 ": its refcount "
                                "%" PRIu64 " is the maximum for refcount_bits=%" PRIu32,
                                c << s->cluster_bits, v, s->refcount_bits);
    }
    qcow2_refblock_set(s, rb->buf, i, nv);
    rb->dirty = true;
    return 0;
}

/* txn_add for clusters [c, c + n), one refcount block at a time: the
 * same refcounts, and on failure the same error (txn_add reports the first
 * cluster that cannot take @delta), as cluster by cluster. */
static int txn_add_run(struct txn *t, uint64_t c, uint64_t n, int64_t delta, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    while (n) {
        struct txn_rb *rb;
        int ret = txn_rb_get(t, c >> s->refblock_bits, &rb, errp);
        if (ret < 0)
            return ret;
        uint32_t i = (uint32_t)(c & (s->refblock_entries - 1));
        uint32_t m = (uint32_t)IC_MIN(n, (uint64_t)(s->refblock_entries - i));
        uint32_t done = qcow2_refblock_add_run(s, rb->buf, i, m, delta, rb->freed);
        if (done)
            rb->dirty = true;
        if (done < m) {
            /* txn_add refuses that cluster, with its message */
            if ((ret = txn_add(t, c + done, delta, errp)) < 0)
                return ret;
            done++;
        }
        c += done;
        n -= done;
    }
    return 0;
}

static int txn_add_range(struct txn *t, uint64_t off, uint64_t len, int64_t delta,
                         ic_error **errp)
{
    if (!len)
        return 0;
    uint64_t first = off >> t->s->cluster_bits, last = (off + len - 1) >> t->s->cluster_bits;
    return txn_add_run(t, first, last - first + 1, delta, errp);
}

static int txn_is_free(struct txn *t, uint64_t c, bool *is_free, ic_error **errp)
{
    struct txn_rb *rb;
    int ret = txn_rb_get(t, c >> t->s->refblock_bits, &rb, errp);
    if (ret < 0)
        return ret;
    uint32_t i = (uint32_t)(c & (t->s->refblock_entries - 1));
    *is_free = !(rb->freed[i / 64] & (1ull << (i % 64))) &&
               qcow2_refblock_get(t->s, rb->buf, i) == 0;
    return 0;
}

/* Allocates @n contiguous clusters free before and after the transaction
 * (invariant 1); their refcount becomes 1. */
static int txn_alloc(struct txn *t, uint64_t n, uint64_t *off, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    bool f;
    int ret;
    /* skip used clusters a refcount block at a time */
    for (;;) {
        struct txn_rb *rb;
        if ((ret = txn_rb_get(t, t->cursor >> s->refblock_bits, &rb, errp)) < 0)
            return ret;
        uint32_t i = (uint32_t)(t->cursor & (s->refblock_entries - 1));
        /* the first cluster with refcount 0 not freed by this transaction */
        for (;;) {
            i += qcow2_refblock_find_zero(s, rb->buf, i, s->refblock_entries - i);
            if (i >= s->refblock_entries || !(rb->freed[i / 64] & (1ull << (i % 64))))
                break;
            i++;
        }
        t->cursor = (t->cursor & ~((uint64_t)s->refblock_entries - 1)) + i;
        if (i < s->refblock_entries)
            break;
    }
    uint64_t c = t->cursor, start = c, run = 0;
    while (run < n) {
        if (((c + 1) << s->cluster_bits) - 1 > QCOW2_MAX_HOST_OFFSET)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG,
                                "no free space below the maximum host offset");
        if ((ret = txn_is_free(t, c, &f, errp)) < 0)
            return ret;
        if (f) {
            if (!run)
                start = c;
            run++;
        } else {
            run = 0;
        }
        c++;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((ret = txn_add(t, start + i, 1, errp)) < 0)
            return ret;
    if (start == t->cursor)
        t->cursor = start + n;
    *off = start << s->cluster_bits;
    return 0;
}

/* Frees the clusters of a table at [off, off + bytes). */
static int txn_free_table(struct txn *t, uint64_t off, uint64_t bytes, ic_error **errp)
{
    if (!off || !bytes)
        return 0;
    return txn_add_range(t, off, IC_ALIGN_UP(bytes, t->s->cluster_size), -1, errp);
}

static int read_l2(struct txn *t, uint64_t off, ic_error **errp)
{
    ic_io_event(t->img->file, IC_EV_L2_ALLOC_COW_READ);
    int ret = ic_io_pread(t->img->file, t->l2buf, t->s->cluster_size, off);
    if (ret < 0)
        return io_err(errp, ret, "cannot read an L2 table");
    return 0;
}

/* Adds @delta to every reference the tree under @l1 holds (qcow2's
 * counting rule): each L2 table once per L1 entry, each data cluster once
 * per L2 entry, each host cluster a compressed entry touches.  Data
 * clusters that follow each other on the host are updated as one run
 * (txn_add_run), in the order of the entries. */
static int tree_delta(struct txn *t, const uint64_t *l1, uint32_t n, int64_t delta,
                      ic_error **errp)
{
    struct qcow2_state *s = t->s;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (l2off & s->cluster_offset_mask)
            return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "L2 table offset %#" PRIx64
                                " (L1 index %" PRIu32 ") is not cluster aligned", l2off, i);
        int ret = txn_add(t, l2off >> s->cluster_bits, delta, errp);
        if (ret == 0)
            ret = read_l2(t, l2off, errp);
        /* pending data clusters [run, run + run_len), COPIED iff run_copied */
        uint64_t run = 0, run_len = 0;
        bool run_copied = false;
        struct l2_summary sm = { .off = l2off };
        for (uint32_t j = 0; ret == 0 && j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2_get(s, t->l2buf, j);
            enum qcow2_ctype ct = qcow2_cluster_type(s, e);
            if (ct == QCOW2_CT_UNALLOCATED || ct == QCOW2_CT_ZERO_PLAIN)
                continue;
            uint64_t d = e & QCOW2_L2E_OFFSET_MASK;
            bool copied = !!(e & QCOW2_OFLAG_COPIED);
            if (ct != QCOW2_CT_COMPRESSED && !(d & s->cluster_offset_mask) && run_len &&
                (d >> s->cluster_bits) == run + run_len && copied == run_copied) {
                run_len++;
                continue;
            }
            if (run_len) {
                summary_add_run(&sm, run, run_len, run_copied);
                if ((ret = txn_add_run(t, run, run_len, delta, errp)) < 0)
                    break;
            }
            run_len = 0;
            if (ct == QCOW2_CT_COMPRESSED) {
                uint64_t coff, csize;
                qcow2_parse_compressed(s, e, &coff, &csize);
                ret = txn_add_range(t, coff, csize, delta, errp);
            } else if (d & s->cluster_offset_mask) {
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "data cluster offset %#"
                                   PRIx64 " in the L2 table at %#" PRIx64
                                   " is not cluster aligned", d, l2off);
            } else {
                run = d >> s->cluster_bits;
                run_copied = copied;
                /* the entries that continue it exactly join at once */
                uint32_t more = qcow2_l2_count_following(s, t->l2buf, j, e);
                run_len = 1 + (uint64_t)more;
                j += more;
            }
        }
        if (ret == 0 && run_len) {
            summary_add_run(&sm, run, run_len, run_copied);
            ret = txn_add_run(t, run, run_len, delta, errp);
        }
        if (ret < 0)
            return ret;
        summary_keep(t, &sm);
    }
    return 0;
}

/* Whether the COPIED flag of every cluster of a run (all set, or all
 * clear) agrees with its refcount now (COPIED <=> refcount 1). */
static int run_agrees(struct txn *t, uint64_t c, uint64_t n, bool copied, bool *ok,
                      ic_error **errp)
{
    struct qcow2_state *s = t->s;
    *ok = true;
    while (n) {
        struct txn_rb *rb;
        int ret = txn_rb_get(t, c >> s->refblock_bits, &rb, errp);
        if (ret < 0)
            return ret;
        uint32_t i = (uint32_t)(c & (s->refblock_entries - 1));
        uint32_t m = (uint32_t)IC_MIN(n, (uint64_t)(s->refblock_entries - i));
        if (qcow2_refblock_count(s, rb->buf, i, m, 1) != (copied ? m : 0)) {
            *ok = false;
            return 0;
        }
        c += m;
        n -= m;
    }
    return 0;
}

/* Whether every data entry of the table at @l2off agrees with the
 * refcounts (*ok), from its summary when tree_delta kept one, else from
 * the table read into t->l2buf (*read then set). */
static int l2_agrees(struct txn *t, uint64_t l2off, bool *ok, bool *read, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    const struct l2_summary *sm = summary_find(t, l2off);
    int ret;
    *ok = true;
    *read = false;
    if (sm) {
        for (uint32_t r = 0; r < sm->nb_runs && *ok; r++)
            if ((ret = run_agrees(t, sm->run[r].start, sm->run[r].len, sm->run[r].copied, ok,
                                  errp)) < 0)
                return ret;
        return 0;
    }
    if ((ret = read_l2(t, l2off, errp)) < 0)
        return ret;
    *read = true;
    uint64_t run = 0, run_len = 0;
    bool run_copied = false;
    for (uint32_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = qcow2_l2_get(s, t->l2buf, j);
        enum qcow2_ctype ct = qcow2_cluster_type(s, e);
        if (ct != QCOW2_CT_NORMAL && ct != QCOW2_CT_ZERO_ALLOC)
            continue;
        uint64_t c = (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits;
        bool copied = !!(e & QCOW2_OFLAG_COPIED);
        if (run_len && c == run + run_len && copied == run_copied) {
            run_len++;
            continue;
        }
        if (run_len && ((ret = run_agrees(t, run, run_len, run_copied, ok, errp)) < 0 || !*ok))
            return ret;
        run = c;
        run_len = 1;
        run_copied = copied;
        if (!(e & QCOW2_L2E_OFFSET_MASK & s->cluster_offset_mask)) {
            uint32_t more = qcow2_l2_count_following(s, t->l2buf, j, e);
            run_len += more;
            j += more;
        }
    }
    if (run_len)
        return run_agrees(t, run, run_len, run_copied, ok, errp);
    return 0;
}

/* Gives the new active L1 @l1 (offsets, flags ignored) correct COPIED flags
 * (invariant 6), copying L2 tables whose entries disagree with the final
 * refcounts.  Sets *changed when an entry differs from @old (n_old entries). */
static int fix_active_tree(struct txn *t, uint64_t *l1, uint32_t n, const uint64_t *old,
                           uint32_t n_old, bool *changed, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    int ret;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        l1[i] = l2off;
        if (!l2off)
            continue;
        bool ok, read;
        if ((ret = l2_agrees(t, l2off, &ok, &read, errp)) < 0)
            return ret;
        if (ok)
            continue;
        if (!read && (ret = read_l2(t, l2off, errp)) < 0)
            return ret;
        bool copy = false;
        for (uint32_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2_get(s, t->l2buf, j), rc;
            enum qcow2_ctype ct = qcow2_cluster_type(s, e);
            if (ct != QCOW2_CT_NORMAL && ct != QCOW2_CT_ZERO_ALLOC)
                continue;
            if ((ret = txn_get(t, (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits, &rc, errp)) < 0)
                return ret;
            bool want = rc == 1;
            if (want != !!(e & QCOW2_OFLAG_COPIED)) {
                qcow2_l2_set(s, t->l2buf, j, want ? e | QCOW2_OFLAG_COPIED
                                                  : e & ~QCOW2_OFLAG_COPIED);
                copy = true;
            }
        }
        if (!copy)
            continue;
        /* The active reference moves from the old table to the copy; the
         * data references move with it (net zero).  The copy goes to a free
         * cluster: nothing on disk references it until the header switch. */
        uint64_t noff;
        if ((ret = txn_alloc(t, 1, &noff, errp)) < 0)
            return ret;
        if ((ret = txn_add(t, l2off >> s->cluster_bits, -1, errp)) < 0)
            return ret;
        ic_io_event(t->img->file, IC_EV_L2_ALLOC_WRITE);
        if ((ret = ic_io_pwrite(t->img->file, t->l2buf, s->cluster_size, noff)) < 0)
            return io_err(errp, ret, "cannot write an L2 table");
        l1[i] = noff;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t rc;
        if (!l1[i])
            continue;
        if ((ret = txn_get(t, l1[i] >> s->cluster_bits, &rc, errp)) < 0)
            return ret;
        if (rc == 1)
            l1[i] |= QCOW2_OFLAG_COPIED;
    }
    if (n != n_old)
        *changed = true;
    for (uint32_t i = 0; i < n && !*changed; i++)
        if (l1[i] != (old[i] & (QCOW2_L1E_OFFSET_MASK | QCOW2_OFLAG_COPIED)))
            *changed = true;
    return 0;
}

/* Writes a table of @bytes (padded with zeroes to whole clusters). */
static int write_table(struct txn *t, enum ic_event ev, uint64_t off, const uint8_t *data,
                       uint64_t bytes, const char *what, ic_error **errp)
{
    uint64_t full = IC_ALIGN_UP(bytes, t->s->cluster_size);
    uint8_t *b = calloc(1, (size_t)full);
    if (!b)
        return nomem(errp);
    memcpy(b, data, (size_t)bytes);
    ic_io_event(t->img->file, ev);
    int ret = ic_io_pwrite(t->img->file, b, (size_t)full, off);
    free(b);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot write the %s: %s",
                            what, strerror(-ret));
    return 0;
}

static int write_l1(struct txn *t, uint64_t off, const uint64_t *l1, uint32_t n, ic_error **errp)
{
    uint8_t *raw = malloc((size_t)n * 8 + 1);
    if (!raw)
        return nomem(errp);
    for (uint32_t i = 0; i < n; i++)
        ic_store_be64(raw + 8 * (size_t)i, l1[i]);
    int ret = write_table(t, IC_EV_SNAPSHOT_L1_WRITE, off, raw, (uint64_t)n * 8, "L1 table", errp);
    free(raw);
    return ret;
}

/* The new state the header switch installs. */
struct txn_root {
    uint64_t size;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
};

/* Gives every changed refcount block a new home and builds the new
 * reftable, until stable (allocations change refcounts too). */
static int txn_finalize(struct txn *t, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    uint64_t epc = s->cluster_size / 8;
    int ret = txn_free_table(t, s->reftable_offset, (uint64_t)s->reftable_clusters << s->cluster_bits,
                             errp);
    if (ret < 0)
        return ret;
    for (unsigned iter = 0; iter < 1000; iter++) {
        bool changed = false;
        for (uint64_t rt = 0; rt < t->nb_rb; rt++) {
            if (!t->rb[rt].loaded || !t->rb[rt].dirty || t->rb[rt].new_off)
                continue;
            uint64_t off, old = t->rb[rt].old_off;
            if ((ret = txn_alloc(t, 1, &off, errp)) < 0)
                return ret;
            t->rb[rt].new_off = off; /* t->rb may have moved: index again */
            if (old && (ret = txn_add(t, old >> s->cluster_bits, -1, errp)) < 0)
                return ret;
            changed = true;
        }
        uint64_t need = s->reftable_size;
        for (uint64_t rt = 0; rt < t->nb_rb; rt++)
            if (t->rb[rt].new_off)
                need = IC_MAX(need, rt + 1);
        uint64_t clusters = IC_DIV_ROUND_UP(need, epc);
        if (clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG,
                                "the refcount table would exceed its maximum size");
        if (!t->rt_off || clusters > t->rt_clusters) {
            if (t->rt_off && (ret = txn_free_table(t, t->rt_off,
                                                   t->rt_clusters << s->cluster_bits, errp)) < 0)
                return ret;
            /* a little room, so one more refblock does not move it again */
            uint64_t want = clusters + (t->rt_off ? 1 : 0);
            if ((ret = txn_alloc(t, want, &t->rt_off, errp)) < 0)
                return ret;
            t->rt_clusters = want;
            changed = true;
        }
        if (!changed)
            return 0;
    }
    return ic_error_set(errp, IC_ERR_OTHER, EIO, "refcount placement did not converge");
}

/* Writes the refblocks and reftable, flushes, switches the header with one
 * write (the commit point, invariant 2), flushes, and updates the engine. */
static int txn_commit(struct txn *t, const struct txn_root *root, uint64_t *new_l1,
                      ic_error **errp)
{
    struct ic_image *img = t->img;
    struct qcow2_state *s = t->s;
    int ret = txn_finalize(t, errp);
    if (ret < 0)
        return ret;
    uint64_t entries = t->rt_clusters * (s->cluster_size / 8);
    uint64_t *rt = calloc((size_t)entries, sizeof(*rt));
    uint8_t *raw = calloc(1, (size_t)(t->rt_clusters << s->cluster_bits));
    if (!rt || !raw) {
        free(rt);
        free(raw);
        return nomem(errp);
    }
    for (uint64_t i = 0; i < entries; i++) {
        if (i < t->nb_rb && t->rb[i].new_off)
            rt[i] = t->rb[i].new_off;
        else if (i < s->reftable_size)
            rt[i] = s->reftable[i];
        ic_store_be64(raw + 8 * i, rt[i]);
    }
    for (uint64_t i = 0; ret == 0 && i < t->nb_rb; i++) {
        if (!t->rb[i].new_off)
            continue;
        ic_io_event(img->file, IC_EV_REFBLOCK_UPDATE);
        ret = ic_io_pwrite(img->file, t->rb[i].buf, s->cluster_size, t->rb[i].new_off);
    }
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_REFTABLE_UPDATE);
        ret = ic_io_pwrite(img->file, raw, (size_t)(t->rt_clusters << s->cluster_bits), t->rt_off);
    }
    free(raw);
    /* Everything the new header will point to is durable before it does.
     * If we crash before the header write below, the image is the old one
     * and the clusters written so far were free (not even leaked). */
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        free(rt);
        return io_err(errp, ret, "cannot write the new metadata");
    }
    uint8_t hb[48];
    ic_store_be64(hb, root->size);
    ic_store_be32(hb + 8, s->h.crypt_method);
    ic_store_be32(hb + 12, root->l1_size);
    ic_store_be64(hb + 16, root->l1_offset);
    ic_store_be64(hb + 24, t->rt_off);
    ic_store_be32(hb + 32, (uint32_t)t->rt_clusters);
    ic_store_be32(hb + 36, root->nb_snapshots);
    ic_store_be64(hb + 40, root->snapshots_offset);
    IC_STATIC_ASSERT(QCOW2_HDR_SIZE + 48 == QCOW2_HDR_V2_LEN, "switch covers bytes 24..71");
    ic_io_event(img->file, IC_EV_SNAPSHOT_SWITCH);
    ret = ic_io_pwrite(img->file, hb, sizeof(hb), QCOW2_HDR_SIZE);
    if (ret < 0) {
        free(rt);
        return io_err(errp, ret, "cannot switch the header");
    }
    /* From here on the new state is the image (the write reached the file;
     * the flush makes it durable).  Install it in memory whatever the flush
     * says, so memory and file agree. */
    int fret = ic_io_flush(img->file);
    qcow2_cache_reset(&s->l2_cache);
    qcow2_cache_reset(&s->refblock_cache);
    free(s->reftable);
    s->reftable = rt;
    s->reftable_size = (uint32_t)entries;
    s->reftable_offset = t->rt_off;
    s->reftable_clusters = (uint32_t)t->rt_clusters;
    s->h.refcount_table_offset = t->rt_off;
    s->h.refcount_table_clusters = (uint32_t)t->rt_clusters;
    if (new_l1) {
        free(s->l1);
        s->l1 = new_l1;
    }
    s->l1_size = root->l1_size;
    s->l1_offset = root->l1_offset;
    s->h.l1_size = root->l1_size;
    s->h.l1_table_offset = root->l1_offset;
    s->l1_dirty_lo = s->l1_dirty_hi = 0;
    if (root->size != img->size) {
        img->size = root->size;
        s->h.size = root->size;
        s->l1_vm_state_index = (uint32_t)qcow2_size_to_l1(s, root->size);
    }
    s->h.nb_snapshots = root->nb_snapshots;
    s->h.snapshots_offset = root->snapshots_offset;
    s->snapshots_offset = root->snapshots_offset;
    s->free_cluster_index = 1;
    s->free_byte_offset = 0;
    s->cbuf_entry = 0;
    if (fret < 0)
        return io_err(errp, fret, "cannot flush the header switch");
    /* Give the space of what the old state used back (best effort: the
     * clusters are free in the new refcounts already). */
    for (uint64_t r = 0; r < t->nb_rb; r++) {
        if (!t->rb[r].loaded)
            continue;
        for (uint32_t i = 0; i < s->refblock_entries; i++) {
            if (!(i % 64) && !t->rb[r].freed[i / 64]) {
                i += 63; /* a word without freed clusters */
                continue;
            }
            if (!(t->rb[r].freed[i / 64] & (1ull << (i % 64))))
                continue;
            uint64_t c = (r << s->refblock_bits) + i;
            if (c >= t->file_clusters || qcow2_refblock_get(s, t->rb[r].buf, i))
                continue;
            uint32_t j = i + 1;
            while (j < s->refblock_entries && (t->rb[r].freed[j / 64] & (1ull << (j % 64))) &&
                   !qcow2_refblock_get(s, t->rb[r].buf, j) &&
                   (r << s->refblock_bits) + j < t->file_clusters)
                j++;
            (void)ic_io_punch_hole(img->file, c << s->cluster_bits,
                                   (uint64_t)(j - i) << s->cluster_bits);
            i = j - 1;
        }
    }
    return 0;
}

/* Common refusals of every write operation. */
static int check_writable(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "the image is opened read-only");
    if (s->corrupt)
        return ic_error_set(errp, IC_ERR_CORRUPT, EACCES,
                            "the image is marked corrupt; run 'check -r all' first");
    if (s->data_file)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "internal snapshots are not supported with an external data file");
    if (img->state == IC_IMAGE_ERROR)
        return ic_error_set(errp, IC_ERR_IO, EIO, "the image is in an error state");
    /* a check-mode open loaded only part of a damaged table: rewriting it
     * would lose the rest without freeing it */
    if (s->snap_dropped || s->snap_extra_cut)
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "the snapshot table is damaged; run "
                            "'imgchain check -r all' first");
    return 0;
}

/* Allocates and writes the table for snapshots[0..n) inside @t. */
static int txn_write_table(struct txn *t, const struct qcow2_snapshot *sn, uint32_t n,
                           uint64_t *off, uint64_t *bytes, ic_error **errp)
{
    struct qcow2_state *s = t->s;
    *off = 0;
    *bytes = qcow2_snapshot_table_bytes(sn, n);
    if (n > QCOW2_MAX_SNAPSHOTS)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG, "too many snapshots (at most %u)",
                            QCOW2_MAX_SNAPSHOTS);
    if (*bytes > QCOW2_MAX_SNAPSHOTS_BYTES)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG,
                            "the snapshot table would exceed 64 MiB");
    if (!n)
        return 0;
    uint8_t *buf = malloc((size_t)*bytes);
    if (!buf)
        return nomem(errp);
    qcow2_snapshot_serialize(s, sn, n, t->img->size, buf);
    int ret = txn_alloc(t, IC_DIV_ROUND_UP(*bytes, s->cluster_size), off, errp);
    if (ret == 0)
        ret = write_table(t, IC_EV_SNAPSHOT_TABLE_WRITE, *off, buf, *bytes, "snapshot table", errp);
    free(buf);
    return ret;
}

static char *next_id(const struct qcow2_state *s)
{
    unsigned long long max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        char *end;
        unsigned long long v = strtoull(s->snapshots[i].id_str, &end, 10);
        if (*s->snapshots[i].id_str && !*end && v > max)
            max = v;
    }
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", max + 1);
    return strdup(buf);
}

/* ---- create --------------------------------------------------------------- */

int qcow2_snapshot_create(struct ic_image *img, const ic_snapshot_info *info, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    const char *name = info->name ? info->name : "";
    if (!*name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "the snapshot name is empty");
    if (strlen(name) > QCOW2_MAX_SNAPSHOT_NAME)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "snapshot name is longer than %u bytes", QCOW2_MAX_SNAPSHOT_NAME);
    if (find_by_name(s, name) >= 0)
        return ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "a snapshot named '%s' already exists",
                            name);
    if (info->id && (find_by_id(s, info->id) >= 0 || !*info->id))
        return ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "snapshot id '%s' is invalid or taken",
                            info->id);
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EFBIG, "too many snapshots (at most %u)",
                            QCOW2_MAX_SNAPSHOTS);
    struct qcow2_snapshot *tab = realloc(s->snapshots, (s->nb_snapshots + 1) * sizeof(*tab));
    if (!tab)
        return nomem(errp);
    s->snapshots = tab;
    struct qcow2_snapshot *sn = &tab[s->nb_snapshots];
    memset(sn, 0, sizeof(*sn));
    sn->id_str = info->id ? strdup(info->id) : next_id(s);
    sn->name = strdup(name);
    if (!sn->id_str || !sn->name) {
        snapshot_clear(sn);
        return nomem(errp);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sn->date_sec = info->date_sec ? info->date_sec : (uint32_t)ts.tv_sec;
    sn->date_nsec = info->date_sec ? info->date_nsec : (uint32_t)ts.tv_nsec;
    sn->vm_clock_nsec = info->vm_clock_nsec;
    sn->vm_state_size = 0; /* disk-only: VM state is saved by a running VM */
    sn->has_disk_size = true;
    sn->disk_size = img->size;
    sn->has_icount = true;
    sn->icount = info->icount;
    /* The snapshot keeps the current active L1 table where it is; the
     * active tree moves to a new L1 (invariant 6). */
    sn->l1_table_offset = s->l1_offset;
    sn->l1_size = s->l1_size;
    sn->extra_data_size = QCOW2_SNAPSHOT_EXTRA_QEMU;

    struct txn t;
    uint64_t *nl1 = NULL;
    bool changed = false, committed = false;
    uint64_t l1_off = 0, tab_off = 0, tab_bytes = 0;
    ret = txn_begin(&t, img, errp);
    if (ret == 0) {
        nl1 = calloc(s->l1_size ? s->l1_size : 1, sizeof(*nl1));
        if (!nl1)
            ret = nomem(errp);
    }
    if (ret == 0) {
        /* the active VM-state area stays with the snapshot (qemu discards it
         * from the active L1 after create) */
        for (uint32_t i = 0; i < s->l1_size && i < s->l1_vm_state_index; i++)
            nl1[i] = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        ret = tree_delta(&t, nl1, s->l1_size, +1, errp);
    }
    if (ret == 0)
        ret = fix_active_tree(&t, nl1, s->l1_size, s->l1, s->l1_size, &changed, errp);
    if (ret == 0 && s->l1_size) {
        ret = txn_alloc(&t, IC_DIV_ROUND_UP((uint64_t)s->l1_size * 8, s->cluster_size), &l1_off,
                        errp);
        if (ret == 0)
            ret = write_l1(&t, l1_off, nl1, s->l1_size, errp);
    }
    if (ret == 0)
        ret = txn_free_table(&t, s->snapshots_offset, s->snapshots_size, errp);
    if (ret == 0)
        ret = txn_write_table(&t, s->snapshots, s->nb_snapshots + 1, &tab_off, &tab_bytes, errp);
    if (ret == 0) {
        struct txn_root root = { img->size, s->l1_size, l1_off, s->nb_snapshots + 1, tab_off };
        ret = txn_commit(&t, &root, nl1, errp);
        if (ret == 0 || s->h.nb_snapshots == s->nb_snapshots + 1) {
            nl1 = NULL;
            s->nb_snapshots++;
            s->snapshots_size = tab_bytes;
            committed = true;
        }
    }
    txn_free(&t);
    free(nl1);
    if (!committed) {
        snapshot_clear(sn);
        qcow2_cache_reset(&s->l2_cache);
        qcow2_cache_reset(&s->refblock_cache);
    }
    if (ret < 0)
        ic_error_prepend(errp, "cannot create snapshot '%s'", name);
    return ret;
}

/* ---- goto (apply) ------------------------------------------------------------ */

static int read_snapshot_l1(struct ic_image *img, const struct qcow2_snapshot *sn, uint64_t **l1,
                            ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t end;
    if ((sn->l1_table_offset & s->cluster_offset_mask) ||
        (uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
        ic_add_overflow(sn->l1_table_offset, (uint64_t)sn->l1_size * 8, &end) ||
        end > QCOW2_MAX_HOST_OFFSET || (sn->l1_size && !sn->l1_table_offset))
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "snapshot '%s' has an invalid L1 table "
                            "(offset %#" PRIx64 ", %" PRIu32 " entries); run 'check -r all'",
                            sn->name, sn->l1_table_offset, sn->l1_size);
    int ret = qcow2_read_l1(img, sn->l1_table_offset, sn->l1_size, l1);
    if (ret < 0)
        return io_err(errp, ret, "cannot read the snapshot's L1 table");
    return 0;
}

int qcow2_snapshot_goto(struct ic_image *img, const char *id_or_name, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    int idx = find_by_id(s, id_or_name);
    if (idx < 0)
        idx = find_by_name(s, id_or_name);
    if (idx < 0)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "snapshot '%s' not found", id_or_name);
    const struct qcow2_snapshot *sn = &s->snapshots[idx];
    uint64_t new_size = sn->has_disk_size ? sn->disk_size : img->size;
    if (new_size > QCOW2_MAX_VIRTUAL_SIZE || new_size % 512)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "snapshot '%s' records an invalid disk "
                            "size %" PRIu64, sn->name, new_size);
    uint64_t need = qcow2_size_to_l1(s, new_size);
    if (need * 8 > QCOW2_MAX_L1_BYTES)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "snapshot '%s' disk size is too large",
                            sn->name);
    uint64_t *snl1 = NULL, *nl1 = NULL;
    if ((ret = read_snapshot_l1(img, sn, &snl1, errp)) < 0)
        return ret;
    struct txn t;
    bool changed = false;
    uint64_t l1_off = 0, tab_off = 0, tab_bytes = 0;
    uint32_t n = (uint32_t)need;
    ret = txn_begin(&t, img, errp);
    if (ret == 0 && !(nl1 = calloc(n ? n : 1, sizeof(*nl1))))
        ret = nomem(errp);
    if (ret == 0) {
        for (uint32_t i = 0; i < n && i < sn->l1_size; i++)
            nl1[i] = snl1[i] & QCOW2_L1E_OFFSET_MASK;
        /* raise the new tree first, so shared clusters never touch zero */
        ret = tree_delta(&t, nl1, n, +1, errp);
    }
    if (ret == 0)
        ret = tree_delta(&t, s->l1, s->l1_size, -1, errp);
    if (ret == 0)
        ret = txn_free_table(&t, s->l1_offset, (uint64_t)s->l1_size * 8, errp);
    if (ret == 0)
        ret = fix_active_tree(&t, nl1, n, s->l1, s->l1_size, &changed, errp);
    if (ret == 0 && n) {
        ret = txn_alloc(&t, IC_DIV_ROUND_UP((uint64_t)n * 8, s->cluster_size), &l1_off, errp);
        if (ret == 0)
            ret = write_l1(&t, l1_off, nl1, n, errp);
    }
    /* The table is rewritten too: it moves with every transaction so the
     * header switch stays one write (and v2 entries gain qemu's extra data). */
    if (ret == 0)
        ret = txn_free_table(&t, s->snapshots_offset, s->snapshots_size, errp);
    if (ret == 0)
        ret = txn_write_table(&t, s->snapshots, s->nb_snapshots, &tab_off, &tab_bytes, errp);
    if (ret == 0) {
        struct txn_root root = { new_size, n, l1_off, s->nb_snapshots, tab_off };
        ret = txn_commit(&t, &root, nl1, errp);
        if (ret == 0 || s->l1_offset == l1_off) {
            nl1 = NULL;
            s->snapshots_size = tab_bytes;
        }
    }
    txn_free(&t);
    free(nl1);
    free(snl1);
    if (ret < 0) {
        qcow2_cache_reset(&s->l2_cache);
        qcow2_cache_reset(&s->refblock_cache);
        ic_error_prepend(errp, "cannot apply snapshot '%s'", id_or_name);
    }
    return ret;
}

/* ---- delete ------------------------------------------------------------------ */

int qcow2_snapshot_delete(struct ic_image *img, const char *id, const char *name,
                          ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    int idx = -1;
    for (uint32_t i = 0; i < s->nb_snapshots && idx < 0; i++)
        if ((!id || !strcmp(s->snapshots[i].id_str, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name)) && (id || name))
            idx = (int)i;
    if (idx < 0)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "snapshot '%s' not found",
                            name ? name : id ? id : "");
    struct qcow2_snapshot victim = s->snapshots[idx];
    uint64_t *snl1 = NULL, *nl1 = NULL;
    if ((ret = read_snapshot_l1(img, &victim, &snl1, errp)) < 0)
        return ret;
    /* the table without the entry (memory only until the commit) */
    uint32_t nn = s->nb_snapshots - 1;
    struct qcow2_snapshot *rest = calloc(nn ? nn : 1, sizeof(*rest));
    if (!rest) {
        free(snl1);
        return nomem(errp);
    }
    memcpy(rest, s->snapshots, (size_t)idx * sizeof(*rest));
    memcpy(rest + idx, s->snapshots + idx + 1, (size_t)(nn - (uint32_t)idx) * sizeof(*rest));
    struct txn t;
    bool changed = false;
    uint64_t l1_off = s->l1_offset, tab_off = 0, tab_bytes = 0;
    ret = txn_begin(&t, img, errp);
    if (ret == 0)
        ret = tree_delta(&t, snl1, victim.l1_size, -1, errp);
    if (ret == 0)
        ret = txn_free_table(&t, victim.l1_table_offset, (uint64_t)victim.l1_size * 8, errp);
    if (ret == 0 && !(nl1 = calloc(s->l1_size ? s->l1_size : 1, sizeof(*nl1))))
        ret = nomem(errp);
    if (ret == 0) {
        memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
        ret = fix_active_tree(&t, nl1, s->l1_size, s->l1, s->l1_size, &changed, errp);
    }
    if (ret == 0 && changed) {
        /* COPIED flags of the active tree change: a new active L1 */
        ret = txn_free_table(&t, s->l1_offset, (uint64_t)s->l1_size * 8, errp);
        if (ret == 0)
            ret = txn_alloc(&t, IC_DIV_ROUND_UP((uint64_t)s->l1_size * 8, s->cluster_size),
                            &l1_off, errp);
        if (ret == 0)
            ret = write_l1(&t, l1_off, nl1, s->l1_size, errp);
    }
    if (ret == 0)
        ret = txn_free_table(&t, s->snapshots_offset, s->snapshots_size, errp);
    if (ret == 0)
        ret = txn_write_table(&t, rest, nn, &tab_off, &tab_bytes, errp);
    if (ret == 0) {
        struct txn_root root = { img->size, s->l1_size, l1_off, nn, tab_off };
        ret = txn_commit(&t, &root, changed ? nl1 : NULL, errp);
        if (ret == 0 || s->h.nb_snapshots == nn) {
            if (changed)
                nl1 = NULL;
            free(s->snapshots);
            s->snapshots = rest;
            rest = NULL;
            s->nb_snapshots = nn;
            s->snapshots_size = tab_bytes;
            snapshot_clear(&victim);
        }
    }
    txn_free(&t);
    free(nl1);
    free(snl1);
    free(rest);
    if (ret < 0) {
        qcow2_cache_reset(&s->l2_cache);
        qcow2_cache_reset(&s->refblock_cache);
        ic_error_prepend(errp, "cannot delete snapshot '%s'", name ? name : id);
    }
    return ret;
}

/* ---- table rewrite for check -r all ----------------------------------------- */

/* The old table as check leaves it: its refcounts match the references
 * check counted, and it counts none past the end of the file, so a
 * cluster of the table with refcount 0 is one it did not count (the table
 * ran past the end): only the others are freed. */
static int txn_free_checked_table(struct txn *t, uint64_t off, uint64_t bytes, ic_error **errp)
{
    if (!off || !bytes)
        return 0;
    uint64_t first = off >> t->s->cluster_bits, last = (off + bytes - 1) >> t->s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        uint64_t v;
        int ret = txn_get(t, c, &v, errp);
        if (ret == 0 && v)
            ret = txn_add(t, c, -1, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int qcow2_snapshot_rewrite_table(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct txn t;
    uint64_t tab_off = 0, tab_bytes = 0;
    int ret = txn_begin(&t, img, errp);
    if (ret == 0)
        ret = txn_free_checked_table(&t, s->snapshots_offset, s->snapshots_size, errp);
    if (ret == 0)
        ret = txn_write_table(&t, s->snapshots, s->nb_snapshots, &tab_off, &tab_bytes, errp);
    if (ret == 0) {
        struct txn_root root = { img->size, s->l1_size, s->l1_offset, s->nb_snapshots, tab_off };
        ret = txn_commit(&t, &root, NULL, errp);
        if (ret == 0 || s->snapshots_offset == tab_off)
            s->snapshots_size = tab_bytes;
    }
    txn_free(&t);
    if (ret < 0) {
        qcow2_cache_reset(&s->l2_cache);
        qcow2_cache_reset(&s->refblock_cache);
    }
    return ret;
}
