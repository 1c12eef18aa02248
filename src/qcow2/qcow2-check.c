/*
 * qcow2-check.c - qcow2 check and repair (qemu-img check for qcow2).
 *
 * Design notes:
 *  Owns no structure of its own: it reads every metadata structure
 *  (header to snapshot table) raw from the file, never through the engine's
 *  caches, so a damaged reftable or L2 table cannot make the check itself
 *  fail or signal corruption; repairs go through the engine afterwards.
 *  Counting follows qemu 7.2's qcow2_check_refcounts so the numbers match
 *  qemu-img check (docs/qcow2.md, "Refcounts" and "qemu's behaviour we
 *  match"):
 *  1. The in-memory refcount table (IMRT) counts the header, the active L1
 *     and every snapshot L1, one reference per L1 entry to its L2 table
 *     and one per L2 entry to its data cluster (compressed: every host
 *     cluster the byte range touches), the snapshot table, the reftable,
 *     the bitmaps and every refblock.  A reference that ends one cluster
 *     or more past the end of the file is a corruption and is not counted.
 *  2. compare: on-disk refcount > computed is a leak, < is a corruption;
 *     on-disk 0 with references needs a rebuild of the refcount structure
 *     (as does a damaged reftable entry or a refblock whose refcount is not
 *     1).  Clusters are compared up to the end of the IMRT.
 *  3. COPIED flags of the active tree are compared with the on-disk
 *     refcounts after the refcount repair (check_oflag_copied).
 *  4. Repair order, each step crash-safe: the refcount structure (rebuild:
 *     a complete new structure past the end of the file, flushed, then one
 *     header write; or in-place refblock entry updates, each entry an
 *     aligned write inside one sector: a crash leaves old or new values,
 *     never worse than before), then COPIED flags, then the snapshot table
 *     (new table, one header switch), then the dirty and corrupt bits
 *     (cleared only when nothing is left).
 *  5. Beyond qemu: a snapshot whose L1 table is unaligned or too large is
 *     dropped from the table with -r all (its clusters were not counted,
 *     so they are freed as leaks), and incomplete v3 entries are completed.
 *     A dropped entry keeps referencing its clusters on disk until the
 *     table is rewritten; the repair frees them first.  A crash in between
 *     leaves an entry whose L1 no reader follows (it is refused as
 *     unaligned or too large), and the next check drops it again.
 *  6. --dry-run (IC_CHECK_DRY_RUN with IC_FIX_*) runs the scan without
 *     fixing and reports each change the repair would make ("Would
 *     repair:", "Would discard", "Would drop:", "Would rebuild", "Would
 *     clear"); nothing is written.  Its counters are a plain check's,
 *     except that a preallocated zero cluster -r all would turn into a
 *     plain one no longer counts as a reference (as after the repair).  A
 *     COPIED flag is judged against the refcount the repair would leave,
 *     so the flags the refcount repair itself makes right are not
 *     announced as changes.
 *  7. An L2 table reached from k L1 entries (the active L1 and snapshots
 *     share most tables) is read and walked once, counting each of its
 *     references and findings k times: the same numbers as qemu's k walks
 *     for a fraction of the work (a finding's message is printed once).
 *  8. Beyond qemu: -r all repairs a reference past the end of the file
 *     when the data allows.  An aligned data cluster, preallocated zero
 *     cluster, L2 or L1 table past the end reads as zeroes (unallocated
 *     entries for a table); growing the file by at most
 *     CHK_MAX_GROW_CLUSTERS keeps exactly what a reader sees and makes the
 *     reference valid.  The file is grown and flushed, then scanned again,
 *     and the usual refcount repair (usually a rebuild, since the new
 *     clusters have refcount 0) follows.  Compressed data past the end
 *     cannot be decompressed, and the snapshot table, the refcount
 *     structure and bitmaps past the end would mean garbage: those stay
 *     errors.
 *  9. Snapshot table damage qemu's check opens: an
 *     IC_OPEN_CHECK open loads the first 65536 entries, the entries within
 *     64 MiB and at most 1024 bytes of extra data each (qcow2.c).  Without
 *     -r all the check stops with an error, as qemu's.  With -r all the
 *     header's snapshot count is lowered first (one 4-byte write, synced:
 *     the dropped entries and everything only they reference then leak,
 *     and the refcount repair frees them), and entries with cut extra
 *     data are rewritten with the rest of the table at the end.
 *
 * 10. Persistent dirty bitmaps are counted when qemu loads them (autoclear
 *     bit 0 and the extension; without the bit their clusters are leaks, as
 *     for qemu): the directory, every table and every data cluster.  A set
 *     of bitmaps qemu refuses (qcow2_bitmaps_load: broken directory,
 *     duplicate names, a bad table or a table of the wrong size for a
 *     bitmap not in use) or a bad table entry of an in-use bitmap makes
 *     qemu-img check fail (exit 1) without counts; the check then fails the
 *     same way, before any repair, naming the bitmap.  Repairs never drop
 *     a bitmap.
 *
 *  Every finding's message keeps qemu's wording and adds, in parentheses,
 *  the offset and the structure it lives in ("L2 table at 0x40000 entry
 *  3", "refcount block at 0x20000 entry 5", "snapshot table entry 0 at
 *  0xe0000").  Locations of L2 entries (the per-entry hot path) are kept
 *  as numbers and formatted only when a message is printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2-bitmap.h"
#include "qcow2-check.h"
#include "qcow2-snapshot.h"
#include "util/endian.h"
#include "util/overflow.h"

/* One line of a report: longer lines are cut (they name offsets only). */
#define CHK_LINE_MAX 512
/* Where a reference lives, for the messages ("L2 table at 0x40000 entry 3"). */
#define CHK_WHERE_MAX 160
/* -r all grows the file to cover an aligned reference past its end (design
 * note 8) by at most this many clusters (64 GiB with 64 KiB clusters, 512 MiB
 * with 512-byte ones): the IMRT and the rebuild keep a counter per cluster,
 * so this bounds their extra memory to 6 MiB, and a reference further away
 * is more likely garbage than the lost tail of a truncated file. */
#define CHK_MAX_GROW_CLUSTERS (1ull << 20)

struct l2ref {
    uint64_t off;
    uint64_t n;     /* L1 entries (active and snapshots) pointing here */
    bool done;
};

struct chk {
    struct ic_image *img;
    struct qcow2_state *s;
    unsigned fix;               /* fixes actually made (0 in a dry run) */
    unsigned would_fix;         /* fixes requested (reported in a dry run) */
    ic_check_report_fn report;
    void *payload;
    ic_check_result *res;
    int64_t file_len;
    /* IMRT: 16-bit counters for refcount widths up to 16, 64-bit above */
    uint16_t *v16;
    uint64_t *v64;
    uint64_t nb;
    uint64_t max;               /* refcount_max */
    bool rebuild;
    uint8_t *buf;               /* one cluster */
    /* raw reftable */
    uint64_t *rt;
    uint64_t rt_size;
    /* one-refblock cache for on-disk refcounts */
    uint8_t *rb;
    uint64_t rb_off;
    uint64_t highest;
    bool walking_snapshots;
    bool *drop;                 /* snapshots to drop with -r all */
    ic_check_result pre;        /* counters before compare */
    struct l2ref *refs;         /* L2 tables reached, with their L1 entry count */
    size_t nrefs;
    /* the reference being counted: where it lives, and whether growing the
     * file can make it valid (design note 8) */
    char where[CHK_WHERE_MAX];
    bool growable;
    /* the hot context, an L2 entry, is formatted only when a message
     * needs it (one snprintf per entry would double the check's time) */
    bool where_l2;
    uint64_t wl2_off;
    uint32_t wl2_idx;
    bool wl2_active;
    const char *wl2_what;
    int64_t tab;                /* snapshot table findings outside the scan counters */
    int64_t tab_eof;            /* scan corruptions: the table runs past the end */
    uint64_t grow_end;          /* file size that covers every growable reference */
    int64_t grow_refs;          /* corruptions that growing to grow_end repairs */
    bool grow_rebuild;          /* a grown cluster has no refcount: rebuild follows */
    ic_error *bitmap_err;       /* bitmaps qemu cannot load (design note 10) */
};

static void say(struct chk *c, const char *fmt, ...) IC_PRINTF(2, 3);
static void say(struct chk *c, const char *fmt, ...)
{
    if (!c->report)
        return;
    char line[CHK_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->report(c->payload, line);
}

/* "Repairing" / "Would repair" / "ERROR" for a fixable finding. */
static const char *verb(const struct chk *c, unsigned needs)
{
    if (c->fix & needs)
        return "Repairing";
    if ((c->would_fix & needs) && !c->fix)
        return "Would repair:";
    return "ERROR";
}

/* ---- IMRT ------------------------------------------------------------------ */

static uint64_t imrt_get(const struct chk *c, uint64_t k)
{
    if (k >= c->nb)
        return 0;
    return c->v16 ? c->v16[k] : c->v64[k];
}

static int imrt_grow(struct chk *c, uint64_t n)
{
    if (n <= c->nb)
        return 0;
    uint64_t nn = IC_MAX(n, c->nb + c->nb / 4);
    size_t es = c->v16 ? sizeof(uint16_t) : sizeof(uint64_t);
    void *old = c->v16 ? (void *)c->v16 : (void *)c->v64;
    uint8_t *nv = realloc(old, (size_t)nn * es);
    if (!nv)
        return -ENOMEM;
    memset(nv + c->nb * es, 0, (size_t)(nn - c->nb) * es);
    if (c->v16)
        c->v16 = (uint16_t *)(void *)nv;
    else
        c->v64 = (uint64_t *)(void *)nv;
    c->nb = nn;
    return 0;
}

/* qcow2_inc_refcounts_imrt (design note 1), @k times at once: a shared L2
 * table is walked once with the number of L1 entries that reach it
 * (design note 7); what qemu counts per walk is counted k times. */
static void set_where(struct chk *c, bool growable, const char *fmt, ...) IC_PRINTF(3, 4);
static void set_where(struct chk *c, bool growable, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->where, sizeof(c->where), fmt, ap);
    va_end(ap);
    c->growable = growable;
    c->where_l2 = false;
}

/* "L2 table at 0x40000 entry 3 (at 0x40018)" */
static const char *l2_at(char *buf, size_t len, const struct qcow2_state *s, uint64_t l2off,
                         uint32_t j, bool active)
{
    snprintf(buf, len, "L2 table at 0x%" PRIx64 " entry %" PRIu32 " (at 0x%" PRIx64 ")%s", l2off,
             j, l2off + (uint64_t)j * s->l2_entry_size,
             active ? "" : ", reached from snapshots only");
    return buf;
}

/* The current reference's location, for a message. */
static const char *where(struct chk *c)
{
    if (c->where_l2) {
        int n = snprintf(c->where, sizeof(c->where), "%s ", c->wl2_what);
        if (n > 0 && (size_t)n < sizeof(c->where))
            l2_at(c->where + n, sizeof(c->where) - (size_t)n, c->s, c->wl2_off, c->wl2_idx,
                  c->wl2_active);
        c->where_l2 = false;
    }
    return c->where;
}

/* Sets the hot context: what entry @j of the L2 table at @l2off references. */
static inline void set_where_l2(struct chk *c, bool growable, const char *what, uint64_t l2off,
                                uint32_t j, bool active)
{
    c->growable = growable;
    c->where_l2 = true;
    c->wl2_what = what;
    c->wl2_off = l2off;
    c->wl2_idx = j;
    c->wl2_active = active;
}

/* A reference ending one cluster or more past the end of the file.  An
 * aligned data cluster, L2 or L1 table there reads as zeroes (unallocated
 * entries for a table), so -r all can grow the file and keep exactly what
 * a reader sees (design note 8). */
static int disk_refcount(struct chk *c, uint64_t k, uint64_t *v);

static void past_eof(struct chk *c, uint64_t off, uint64_t size, uint64_t k)
{
    struct qcow2_state *s = c->s;
    uint64_t end = IC_ALIGN_UP(off + size, (uint64_t)s->cluster_size);
    uint64_t have = IC_DIV_ROUND_UP((uint64_t)c->file_len, s->cluster_size);
    bool can = c->growable && !(off & s->cluster_offset_mask) &&
               end - 1 <= QCOW2_MAX_HOST_OFFSET &&
               (end >> s->cluster_bits) - have <= CHK_MAX_GROW_CLUSTERS;
    const char *head = "ERROR:";
    if (can && (c->would_fix & IC_FIX_ERRORS))
        head = c->fix ? "Repairing:" : "Would repair:";
    say(c, "%s counting reference for region exceeding the end of the file by one cluster or "
        "more: offset 0x%" PRIx64 " size 0x%" PRIx64 " (%s; file size %" PRId64 ")%s%s", head,
        off, size, where(c), c->file_len,
        !c->growable ? "" : can ? "; fixed by growing the file, the cluster reads as zeroes "
        "as before" : "; too far past the end of the file to grow it", "");
    c->res->corruptions += (int64_t)k;
    if (can) {
        c->grow_end = IC_MAX(c->grow_end, end);
        c->grow_refs += (int64_t)k;
        /* once inside the file, a cluster with refcount 0 and references
         * makes the refcount structure be rebuilt (design note 2) */
        for (uint64_t q = off >> s->cluster_bits; q < (end >> s->cluster_bits); q++) {
            uint64_t v;
            if (disk_refcount(c, q, &v) < 0 || v == 0)
                c->grow_rebuild = true;
        }
    }
}

static int inc_k(struct chk *c, uint64_t off, uint64_t size, uint64_t k)
{
    struct qcow2_state *s = c->s;
    if (!size)
        return 0;
    if ((int64_t)(off + size) - c->file_len >= (int64_t)s->cluster_size) {
        past_eof(c, off, size, k);
        return 0;
    }
    uint64_t first = off >> s->cluster_bits, last = (off + size - 1) >> s->cluster_bits;
    if (imrt_grow(c, last + 1) < 0) {
        c->res->check_errors++;
        return -ENOMEM;
    }
    for (uint64_t q = first; q <= last; q++) {
        uint64_t v = imrt_get(c, q), nv = v + IC_MIN(k, c->max - v);
        if (c->max - v < k) {
            say(c, "ERROR: overflow cluster offset=0x%" PRIx64 " (refcount above %" PRIu64
                " for refcount_bits=%" PRIu32 "; reference from %s)", q << s->cluster_bits,
                c->max, s->refcount_bits, where(c));
            c->res->corruptions += (int64_t)(k - (c->max - v));
        }
        if (c->v16)
            c->v16[q] = (uint16_t)nv;
        else
            c->v64[q] = nv;
    }
    return 0;
}

static int inc(struct chk *c, uint64_t off, uint64_t size)
{
    return inc_k(c, off, size, 1);
}

/* ---- the walk ---------------------------------------------------------------- */

static int read_raw(struct chk *c, void *buf, uint64_t len, uint64_t off, const char *what)
{
    int ret = ic_io_pread(c->img->file, buf, (size_t)len, off);
    if (ret < 0) {
        say(c, "ERROR: I/O error in %s: reading %" PRIu64 " bytes at offset 0x%" PRIx64
            " (%s): %s", what, len, off, where(c), strerror(-ret));
        c->res->check_errors++;
    }
    return ret;
}

static int zero_alloc_repair(struct chk *c, uint64_t l2off, uint32_t j)
{
    struct qcow2_state *s = c->s;
    uint8_t e[16];
    memset(e, 0, sizeof(e));
    if (s->ext_l2)
        ic_store_be64(e + 8, QCOW2_BITMAP_ALL_ZERO);
    else
        ic_store_be64(e, QCOW2_OFLAG_ZERO);
    qcow2_cache_discard(&s->l2_cache, l2off);
    ic_io_event(c->img->file, IC_EV_CHECK_REPAIR);
    /* one entry, inside one sector: old or new after a crash */
    int ret = ic_io_pwrite(c->img->file, e, s->l2_entry_size, l2off + (uint64_t)j * s->l2_entry_size);
    if (ret == 0)
        ret = ic_io_flush(c->img->file);
    return ret;
}

/* One entry of the L2 table @l2 at @l2off, reached from @k L1 entries:
 * its findings and references (qemu's check_refcounts_l2 loop body).
 * *next: where the next cluster of the active tree would follow without
 * fragmentation. */
static int walk_l2_entry(struct chk *c, const uint8_t *l2, uint64_t l2off, uint32_t j,
                         bool active, uint64_t k, uint64_t *next)
{
    struct qcow2_state *s = c->s;
    /* every message names the entry: "L2 table at 0x40000 entry 3 (at 0x40018)",
     * formatted (AT) only when a message is printed */
    char atb[CHK_WHERE_MAX];
#define AT l2_at(atb, sizeof(atb), s, l2off, j, active)
    uint64_t e = qcow2_l2_get(s, l2, j), bm = qcow2_l2_get_bitmap(s, l2, j);
    enum qcow2_ctype t = qcow2_cluster_type(s, e);
    int ret = 0;
    if (t == QCOW2_CT_UNALLOCATED && !bm)
        return 0;
    if (t != QCOW2_CT_COMPRESSED && (e & QCOW2_L2E_STD_RESERVED)) {
        say(c, "ERROR found l2 entry with reserved bits set: %" PRIx64 " (%s)", e, AT);
        c->res->corruptions += (int64_t)k;
    }
    switch (t) {
    case QCOW2_CT_COMPRESSED: {
        if (e & QCOW2_OFLAG_COPIED) {
            say(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                "compressed clusters (%s)", e & s->coffset_mask, AT);
            e &= ~QCOW2_OFLAG_COPIED;
            c->res->corruptions += (int64_t)k;
        }
        if (s->data_file_name) {
            say(c, "ERROR compressed cluster %" PRIu32 " with data file, entry=0x%" PRIx64
                " (%s)", j, e, AT);
            c->res->corruptions += (int64_t)k;
            break;
        }
        if (bm) {
            say(c, "ERROR compressed cluster %" PRIu32 " with non-zero subcluster allocation "
                "bitmap, entry=0x%" PRIx64 " (%s)", j, e, AT);
            c->res->corruptions += (int64_t)k;
            break;
        }
        uint64_t coff, csize;
        qcow2_parse_compressed(s, e, &coff, &csize);
        set_where_l2(c, false, "compressed data of", l2off, j, active);
        ret = inc_k(c, coff, csize, k);
        if (active) {
            c->res->allocated_clusters++;
            c->res->compressed_clusters++;
            c->res->fragmented_clusters++;
        }
        break;
    }
    case QCOW2_CT_NORMAL:
    case QCOW2_CT_ZERO_ALLOC: {
        uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
        if ((bm >> 32) & bm) {
            c->res->corruptions += (int64_t)k;
            say(c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted subcluster "
                "allocation bitmap (%s)", off, AT);
        }
        if (off & s->cluster_offset_mask) {
            bool data = s->ext_l2 ? !!(bm & QCOW2_BITMAP_ALL_ALLOC)
                                  : !(e & QCOW2_OFLAG_ZERO);
            c->res->corruptions += (int64_t)k;
            if (!data) {
                say(c, "%s offset=%" PRIx64 ": Preallocated cluster is not properly "
                    "aligned; L2 entry corrupted. (%s)", verb(c, IC_FIX_ERRORS), off, AT);
                if (c->fix & IC_FIX_ERRORS) {
                    if (zero_alloc_repair(c, l2off, j) == 0) {
                        c->res->corruptions -= (int64_t)k;
                        c->res->corruptions_fixed++;
                        return 0;
                    }
                    c->res->check_errors++;
                } else if (c->would_fix & IC_FIX_ERRORS) {
                    return 0; /* dry run: no reference, as after the repair */
                }
            } else {
                say(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; L2 "
                    "entry corrupted. (%s)", off, AT);
            }
        }
        if (active) {
            c->res->allocated_clusters++;
            if (*next && off != *next)
                c->res->fragmented_clusters++;
            *next = off + s->cluster_size;
        }
        set_where_l2(c, true, t == QCOW2_CT_NORMAL ? "data cluster of" :
                     "preallocated zero cluster of", l2off, j, active);
        if (!s->data_file_name)
            ret = inc_k(c, off, s->cluster_size, k);
        break;
    }
    case QCOW2_CT_ZERO_PLAIN:
        break;
    case QCOW2_CT_UNALLOCATED:
        if (bm & QCOW2_BITMAP_ALL_ALLOC) {
            c->res->corruptions += (int64_t)k;
            say(c, "ERROR: Unallocated cluster has non-zero subcluster allocation map (%s)",
                AT);
        }
        break;
    }
#undef AT
    return ret;
}

/* Whether entry @e (bitmap @bm, type @t) is a plain reference to a data
 * cluster: no finding of its own, counted as one reference to one whole
 * cluster.  walk_l2 batches such entries. */
static bool plain_data_entry(const struct chk *c, uint64_t e, uint64_t bm, enum qcow2_ctype t)
{
    const struct qcow2_state *s = c->s;
    return (t == QCOW2_CT_NORMAL || t == QCOW2_CT_ZERO_ALLOC) && !(e & QCOW2_L2E_STD_RESERVED) &&
           !((bm >> 32) & bm) && !(e & QCOW2_L2E_OFFSET_MASK & s->cluster_offset_mask) &&
           !s->data_file_name;
}

/* Counts @k references to each of clusters [q, q + n) when that needs no
 * message: inside the file and no counter overflows.  false (nothing
 * counted) otherwise. */
static bool inc_run_quiet(struct chk *c, uint64_t q, uint64_t n, uint64_t k)
{
    struct qcow2_state *s = c->s;
    if ((int64_t)((q + n) << s->cluster_bits) - c->file_len >= (int64_t)s->cluster_size)
        return false;
    if (imrt_grow(c, q + n) < 0)
        return false;
    if (c->v16) {
        uint16_t *v = c->v16 + q;
        for (uint64_t m = 0; m < n; m++)
            if (c->max - v[m] < k)
                return false;
        for (uint64_t m = 0; m < n; m++)
            v[m] = (uint16_t)(v[m] + k);
    } else {
        uint64_t *v = c->v64 + q;
        for (uint64_t m = 0; m < n; m++)
            if (c->max - v[m] < k)
                return false;
        for (uint64_t m = 0; m < n; m++)
            v[m] += k;
    }
    return true;
}

static int walk_l2(struct chk *c, uint64_t l2off, bool active, uint64_t k)
{
    struct qcow2_state *s = c->s;
    uint8_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        c->res->check_errors++;
        return -ENOMEM;
    }
    set_where(c, false, "L2 table at 0x%" PRIx64, l2off);
    int ret = read_raw(c, l2, s->cluster_size, l2off, "check_refcounts_l2");
    uint64_t next = 0;
    /* plain data entries [run_j, run_j + run_n) referencing clusters
     * [run_q, run_q + run_n): counted at once when quiet, else entry by
     * entry; flushed before any other entry, so findings keep their order */
    uint32_t run_j = 0;
    uint64_t run_q = 0, run_n = 0;
    for (uint32_t j = 0; ret == 0 && j <= s->l2_entries; j++) {
        uint64_t e = 0, bm = 0;
        enum qcow2_ctype t = QCOW2_CT_UNALLOCATED;
        bool plain = false;
        if (j < s->l2_entries) {
            e = qcow2_l2_get(s, l2, j);
            bm = qcow2_l2_get_bitmap(s, l2, j);
            t = qcow2_cluster_type(s, e);
            if (t == QCOW2_CT_UNALLOCATED && !bm)
                continue;
            plain = plain_data_entry(c, e, bm, t);
            if (plain && run_n && j == run_j + run_n &&
                ((e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits) == run_q + run_n) {
                run_n++;
                continue;
            }
        }
        if (run_n) {
            if (inc_run_quiet(c, run_q, run_n, k)) {
                if (active) {
                    c->res->allocated_clusters += (int64_t)run_n;
                    if (next && (run_q << s->cluster_bits) != next)
                        c->res->fragmented_clusters++;
                    next = (run_q + run_n) << s->cluster_bits;
                }
            } else {
                for (uint32_t m = 0; ret == 0 && m < run_n; m++)
                    ret = walk_l2_entry(c, l2, l2off, run_j + m, active, k, &next);
            }
            run_n = 0;
        }
        if (ret < 0 || j == s->l2_entries)
            break;
        if (plain) {
            run_j = j;
            run_q = (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits;
            run_n = 1;
            /* equal flags and no subcluster bitmap: the entries that
             * continue it exactly are plain too */
            if (!s->ext_l2) {
                uint32_t more = qcow2_l2_count_following(s, l2, j, e);
                run_n += more;
                j += more;
            }
        } else {
            ret = walk_l2_entry(c, l2, l2off, j, active, k, &next);
        }
    }
    free(l2);
    return ret;
}

static int cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const struct l2ref *)a)->off, y = ((const struct l2ref *)b)->off;
    return x < y ? -1 : x > y;
}

/* Adds the L2 offsets of one L1 table to c->refs (unsorted). */
static int collect_l1(struct chk *c, uint64_t l1off, uint32_t l1_size, size_t *cap)
{
    if (!l1_size)
        return 0;
    uint8_t *raw = malloc((size_t)l1_size * 8);
    if (!raw)
        return -ENOMEM;
    if (ic_io_pread(c->img->file, raw, (size_t)l1_size * 8, l1off) < 0) {
        free(raw);
        return 0; /* walk_l1 reports the read error */
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t e = ic_load_be64(raw + 8 * (size_t)i);
        if (!e)
            continue;
        if (c->nrefs == *cap) {
            size_t ncap = *cap ? *cap * 2 : 256;
            struct l2ref *nv = realloc(c->refs, ncap * sizeof(*nv));
            if (!nv) {
                free(raw);
                return -ENOMEM;
            }
            c->refs = nv;
            *cap = ncap;
        }
        c->refs[c->nrefs++] = (struct l2ref){ e & QCOW2_L1E_OFFSET_MASK, 1, false };
    }
    free(raw);
    return 0;
}

/* Counts how many L1 entries reach each L2 table, so a table shared by the
 * active L1 and the snapshots is read once (design note 7). */
static int build_refs(struct chk *c)
{
    struct qcow2_state *s = c->s;
    size_t cap = 0;
    free(c->refs);
    c->refs = NULL;
    c->nrefs = 0;
    int ret = collect_l1(c, s->h.l1_table_offset, s->h.l1_size, &cap);
    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (!(sn->l1_table_offset & s->cluster_offset_mask) &&
            (uint64_t)sn->l1_size * 8 <= QCOW2_MAX_L1_BYTES)
            ret = collect_l1(c, sn->l1_table_offset, sn->l1_size, &cap);
    }
    if (ret < 0)
        return ret;
    if (c->nrefs)
        qsort(c->refs, c->nrefs, sizeof(*c->refs), cmp_ref);
    size_t n = 0;
    for (size_t i = 0; i < c->nrefs; i++) {
        if (n && c->refs[n - 1].off == c->refs[i].off)
            c->refs[n - 1].n++;
        else
            c->refs[n++] = c->refs[i];
    }
    c->nrefs = n;
    return 0;
}

/* @name: "active L1 table" or "L1 table of snapshot 1 (s1)", for messages. */
static int walk_l1(struct chk *c, uint64_t l1off, uint32_t l1_size, bool active,
                   const char *name)
{
    struct qcow2_state *s = c->s;
    if (!l1_size)
        return 0;
    set_where(c, true, "%s at 0x%" PRIx64 ", %" PRIu32 " entries", name, l1off, l1_size);
    int ret = inc(c, l1off, (uint64_t)l1_size * 8);
    if (ret < 0)
        return ret;
    uint8_t *raw = malloc((size_t)l1_size * 8);
    if (!raw) {
        c->res->check_errors++;
        return -ENOMEM;
    }
    if ((ret = read_raw(c, raw, (uint64_t)l1_size * 8, l1off, "check_refcounts_l1")) < 0) {
        free(raw);
        return ret;
    }
    for (uint32_t i = 0; ret == 0 && i < l1_size; i++) {
        uint64_t e = ic_load_be64(raw + 8 * (size_t)i);
        if (!e)
            continue;
        if (e & QCOW2_L1E_RESERVED_MASK) {
            say(c, "ERROR found L1 entry with reserved bits set: %" PRIx64 " (%s at 0x%" PRIx64
                " entry %" PRIu32 ")", e, name, l1off, i);
            c->res->corruptions++;
        }
        uint64_t l2off = e & QCOW2_L1E_OFFSET_MASK;
        set_where(c, true, "L2 table of %s at 0x%" PRIx64 " entry %" PRIu32, name, l1off, i);
        if ((ret = inc(c, l2off, s->cluster_size)) < 0)
            break;
        if (l2off & s->cluster_offset_mask) {
            say(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry corrupted"
                " (%s at 0x%" PRIx64 " entry %" PRIu32 ")", l2off, name, l1off, i);
            c->res->corruptions++;
        }
        struct l2ref key = { l2off, 0, false }, *r = bsearch(&key, c->refs, c->nrefs,
                                                             sizeof(*r), cmp_ref);
        if (r && r->done)
            continue; /* counted for every L1 entry at its first walk */
        if (r)
            r->done = true;
        ret = walk_l2(c, l2off, active, r ? r->n : 1);
    }
    free(raw);
    return ret;
}

/* qcow2_check_bitmaps_refcounts: the directory, each bitmap's table
 * (in-use ones included) and each data cluster.  Bitmaps qemu cannot load
 * (design note 10) end the check with an error instead of counts. */
static int walk_bitmaps(struct chk *c)
{
    struct qcow2_state *s = c->s;
    if (!qcow2_bitmaps_present(s))
        return 0;
    set_where(c, false, "bitmap directory at 0x%" PRIx64, s->bitmap_dir_offset);
    int ret = inc(c, s->bitmap_dir_offset, s->bitmap_dir_size);
    if (ret < 0)
        return ret;
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    if (qcow2_bitmaps_load(c->img, &d, &err) < 0) {
        c->res->corruptions++;
        if (ic_error_kind_of(err) == IC_ERR_NOMEM) {
            ic_error_free(err);
            return -ENOMEM;
        }
        if (!c->bitmap_err)
            c->bitmap_err = err;
        else
            ic_error_free(err);
        return 0;
    }
    for (uint32_t i = 0; i < d.nb && ret == 0; i++) {
        const struct qcow2_bitmap *bm = &d.bm[i];
        set_where(c, false, "table of bitmap '%.64s' (bitmap directory entry at 0x%" PRIx64 ")",
                  bm->name, s->bitmap_dir_offset + bm->entry_pos);
        if ((ret = inc(c, bm->table_offset, (uint64_t)bm->table_size * 8)) < 0)
            break;
        uint64_t *t = NULL;
        if (qcow2_bitmap_table_load(c->img, bm, &t, &err) < 0) {
            c->res->corruptions++;
            if (ic_error_kind_of(err) == IC_ERR_NOMEM) {
                ic_error_free(err);
                ret = -ENOMEM;
            } else if (!c->bitmap_err) {
                c->bitmap_err = err;
            } else {
                ic_error_free(err);
            }
            break;
        }
        for (uint32_t j = 0; ret == 0 && j < bm->table_size; j++) {
            uint64_t off = t[j] & QCOW2_BMT_OFFSET_MASK;
            if (!off)
                continue;
            set_where(c, false, "data of bitmap '%.64s', bitmap table at 0x%" PRIx64
                      " entry %" PRIu32, bm->name, bm->table_offset, j);
            ret = inc(c, off, s->cluster_size);
        }
        free(t);
    }
    qcow2_bitmap_dir_free(&d);
    return ret;
}

static int check_refblocks(struct chk *c)
{
    struct qcow2_state *s = c->s;
    const char *fix = (c->would_fix & IC_FIX_ERRORS) ? c->fix ? "; rebuilding the refcount "
                      "structure" : "; would rebuild the refcount structure" : "";
    for (uint64_t i = 0; i < c->rt_size; i++) {
        uint64_t e = c->rt[i], off = e & QCOW2_REFT_OFFSET_MASK, cl = off >> s->cluster_bits;
        uint64_t at = s->h.refcount_table_offset + 8 * i;
        if (e & QCOW2_REFT_RESERVED) {
            say(c, "ERROR refcount table entry %" PRIu64 " has reserved bits set (entry 0x%"
                PRIx64 " at 0x%" PRIx64 " in the refcount table at 0x%" PRIx64 "%s)", i, e, at,
                s->h.refcount_table_offset, fix);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off & s->cluster_offset_mask) {
            say(c, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table entry "
                "corrupted (offset 0x%" PRIx64 ", entry at 0x%" PRIx64 "%s)", i, off, at, fix);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off && cl >= c->nb) {
            c->res->corruptions++;
            say(c, "ERROR refcount block %" PRIu64 " is outside image (offset 0x%" PRIx64
                ", file size %" PRId64 ", refcount table entry at 0x%" PRIx64 "%s)", i, off,
                c->file_len, at, fix);
            c->rebuild = true;
            continue;
        }
        if (off) {
            set_where(c, false, "refcount block %" PRIu64 " (refcount table entry at 0x%" PRIx64
                      ")", i, at);
            int ret = inc(c, off, s->cluster_size);
            if (ret < 0)
                return ret;
            if (imrt_get(c, cl) != 1) {
                say(c, "ERROR refcount block %" PRIu64 " refcount=%" PRIu64 " (refcount block at "
                    "0x%" PRIx64 " is also used as other metadata or data; refcount table entry "
                    "at 0x%" PRIx64 "%s)", i, imrt_get(c, cl), off, at, fix);
                c->res->corruptions++;
                c->rebuild = true;
            }
        }
    }
    return 0;
}

/* Writes the number of snapshots the table keeps into the header (bytes
 * 60..63), qemu's first step when it drops overhanging entries. */
static int write_nb_snapshots(struct chk *c, uint32_t n)
{
    uint8_t b[4];
    ic_store_be32(b, n);
    ic_io_event(c->img->file, IC_EV_CHECK_REPAIR);
    /* If we crash after this point, the dropped entries' L1 and L2 tables,
     * data and table tail only leak: nothing references them any more, and
     * the refcount repair below frees them (design note 9). */
    int ret = ic_io_pwrite(c->img->file, b, sizeof(b), QCOW2_HDR_NB_SNAPSHOTS);
    if (ret == 0)
        ret = ic_io_flush(c->img->file);
    return ret;
}

/* Snapshot table damage an IC_OPEN_CHECK open accepted, counted before the
 * walk as qemu's qcow2_check_read_snapshot_table does (design note 9).
 * Without -r all the table cannot be read, so the check stops with an
 * error (qemu: "Check failed", exit 1).  Findings go to c->tab, except the
 * dropped entries, which -r all repairs here and now. */
static int check_snapshot_table(struct chk *c, ic_error **errp)
{
    struct qcow2_state *s = c->s;
    uint32_t over_count = s->snap_too_many ? s->h.nb_snapshots - QCOW2_MAX_SNAPSHOTS : 0;
    uint32_t over_size = s->snap_dropped - over_count;
    int first_cut = -1;
    for (uint32_t i = 0; i < s->nb_snapshots && first_cut < 0; i++)
        if (s->snapshots[i].extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA)
            first_cut = (int)i;
    if ((s->snap_dropped || s->snap_extra_cut) && !(c->would_fix & IC_FIX_ERRORS)) {
        if (s->snap_too_many)
            return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "snapshot table at 0x%" PRIx64
                                " too large: %" PRIu32 " snapshots (at most %u); run 'imgchain "
                                "check -r all' to drop the %" PRIu32 " overhanging snapshots",
                                s->h.snapshots_offset, s->h.nb_snapshots, QCOW2_MAX_SNAPSHOTS,
                                over_count);
        if (first_cut >= 0) {
            const struct qcow2_snapshot *sn = &s->snapshots[first_cut];
            return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "failed to read the snapshot table: "
                                "too much extra metadata in snapshot table entry %d at 0x%" PRIx64
                                " (%" PRIu32 " > %u bytes); run 'imgchain check -r all' to cut it",
                                first_cut, sn->entry_offset, sn->extra_data_size,
                                QCOW2_MAX_SNAPSHOT_EXTRA);
        }
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "failed to read the snapshot table: "
                            "snapshot table at 0x%" PRIx64 " is too big (over %llu bytes from "
                            "entry %" PRIu32 " on); run 'imgchain check -r all' to drop the %"
                            PRIu32 " overhanging snapshots", s->h.snapshots_offset,
                            (unsigned long long)QCOW2_MAX_SNAPSHOTS_BYTES, s->nb_snapshots,
                            over_size);
    }
    const char *drop = c->fix ? "Discarding" : "Would discard";
    if (over_count)
        say(c, "%s %" PRIu32 " overhanging snapshots (snapshot table at 0x%" PRIx64 " counts %"
            PRIu32 ", at most %u)", drop, over_count, s->h.snapshots_offset, s->h.nb_snapshots,
            QCOW2_MAX_SNAPSHOTS);
    if (over_size)
        say(c, "%s %" PRIu32 " overhanging snapshots (snapshot table is too big: entries %"
            PRIu32 " on, from 0x%" PRIx64 ", end past %llu bytes)", drop, over_size,
            s->nb_snapshots, s->h.snapshots_offset + s->snapshots_size,
            (unsigned long long)QCOW2_MAX_SNAPSHOTS_BYTES);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA)
            say(c, "%s too much extra metadata in snapshot table entry %" PRIu32 " (%" PRIu32
                " > %u; entry at 0x%" PRIx64 " in the snapshot table at 0x%" PRIx64 ")",
                drop, i, sn->extra_data_size, QCOW2_MAX_SNAPSHOT_EXTRA, sn->entry_offset,
                s->h.snapshots_offset);
    }
    /* qemu counts an entry cut and then dropped twice */
    c->tab += s->snap_extra_cut;
    if (s->snap_dropped) {
        if (!c->fix) {
            c->tab += s->snap_dropped;
        } else {
            int ret = write_nb_snapshots(c, s->nb_snapshots);
            if (ret < 0)
                return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                                    "failed to update the snapshot count in the image header: %s",
                                    strerror(-ret));
            s->h.nb_snapshots = s->nb_snapshots;
            c->res->corruptions_fixed += s->snap_dropped;
            s->snap_dropped = 0;
            s->snap_too_many = s->snap_too_big = false;
        }
    }
    if (s->h.version < 3)
        return 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->extra_data_size < QCOW2_SNAPSHOT_EXTRA_V3_MIN) {
            c->tab++;
            say(c, "%s snapshot table entry %" PRIu32 " is incomplete (extra_data_size %" PRIu32
                " < %u in a v3 image; entry at 0x%" PRIx64 " in the snapshot table at 0x%"
                PRIx64 ")", c->fix & IC_FIX_ERRORS ? "Repairing" :
                c->would_fix & IC_FIX_ERRORS ? "Would repair:" : "ERROR", i,
                sn->extra_data_size, QCOW2_SNAPSHOT_EXTRA_V3_MIN, sn->entry_offset,
                s->h.snapshots_offset);
        }
    }
    return 0;
}

static int calculate(struct chk *c)
{
    struct qcow2_state *s = c->s;
    int ret = build_refs(c);
    if (ret < 0) {
        c->res->check_errors++;
        return ret;
    }
    set_where(c, false, "image header");
    ret = inc(c, 0, s->cluster_size);
    if (ret == 0)
        ret = walk_l1(c, s->h.l1_table_offset, s->h.l1_size, true, "active L1 table");
    if (ret == 0 && s->data_file_name && s->nb_snapshots) {
        say(c, "ERROR %" PRIu32 " snapshots in image with data file (snapshot table at 0x%"
            PRIx64 ")", s->nb_snapshots, s->h.snapshots_offset);
        c->res->corruptions++;
    }
    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->l1_table_offset & s->cluster_offset_mask) {
            say(c, "%s snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not cluster aligned; "
                "snapshot table entry corrupted (entry %" PRIu32 " at 0x%" PRIx64 ")",
                c->would_fix & IC_FIX_ERRORS ? (c->fix ? "Dropping" : "Would drop:") : "ERROR",
                sn->id_str, sn->name, sn->l1_table_offset, i, sn->entry_offset);
            c->res->corruptions++;
            if (c->drop)
                c->drop[i] = true;
            continue;
        }
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
            say(c, "%s snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; snapshot "
                "table entry corrupted (entry %" PRIu32 " at 0x%" PRIx64 ")",
                c->would_fix & IC_FIX_ERRORS ? (c->fix ? "Dropping" : "Would drop:") : "ERROR",
                sn->id_str, sn->name, sn->l1_size, i, sn->entry_offset);
            c->res->corruptions++;
            if (c->drop)
                c->drop[i] = true;
            continue;
        }
        char name[CHK_WHERE_MAX / 2];
        snprintf(name, sizeof(name), "L1 table of snapshot %.24s (%.24s)", sn->id_str,
                 sn->name);
        ret = walk_l1(c, sn->l1_table_offset, sn->l1_size, false, name);
    }
    set_where(c, false, "snapshot table at 0x%" PRIx64 ", %" PRIu32 " entries",
              s->h.snapshots_offset, s->nb_snapshots);
    int64_t before = c->res->corruptions;
    if (ret == 0)
        ret = inc(c, s->h.snapshots_offset, s->snapshots_size);
    c->tab_eof = c->res->corruptions - before;
    set_where(c, false, "refcount table at 0x%" PRIx64 ", %" PRIu64 " entries",
              s->h.refcount_table_offset, c->rt_size);
    if (ret == 0)
        ret = inc(c, s->h.refcount_table_offset, c->rt_size * 8);
    if (ret == 0)
        ret = walk_bitmaps(c);
    if (ret == 0)
        ret = check_refblocks(c);
    return ret;
}

/* ---- on-disk refcounts --------------------------------------------------- */

/* qcow2_get_refcount on the raw structures: -EIO for an unaligned block. */
static int disk_refcount(struct chk *c, uint64_t k, uint64_t *v)
{
    struct qcow2_state *s = c->s;
    uint64_t rt = k >> s->refblock_bits;
    *v = 0;
    if (rt >= c->rt_size)
        return 0;
    uint64_t off = c->rt[rt] & QCOW2_REFT_OFFSET_MASK;
    if (!off)
        return 0;
    if (off & s->cluster_offset_mask)
        return -EIO;
    if (off != c->rb_off) {
        int ret = ic_io_pread(c->img->file, c->rb, s->cluster_size, off);
        if (ret < 0) {
            c->rb_off = 0;
            return ret;
        }
        c->rb_off = off;
    }
    *v = qcow2_refblock_get(s, c->rb, (uint32_t)(k & (s->refblock_entries - 1)));
    return 0;
}

static int load_reftable(struct chk *c)
{
    struct qcow2_state *s = c->s;
    /* re-read from the header: repairs may have moved it */
    c->rt_size = ((uint64_t)s->h.refcount_table_clusters << s->cluster_bits) / 8;
    free(c->rt);
    c->rt = calloc(c->rt_size ? c->rt_size : 1, sizeof(*c->rt));
    uint8_t *raw = malloc(c->rt_size ? c->rt_size * 8 : 1);
    if (!c->rt || !raw) {
        free(raw);
        return -ENOMEM;
    }
    int ret = ic_io_pread(c->img->file, raw, (size_t)c->rt_size * 8, s->h.refcount_table_offset);
    for (uint64_t i = 0; ret == 0 && i < c->rt_size; i++)
        c->rt[i] = ic_load_be64(raw + 8 * i);
    free(raw);
    c->rb_off = 0;
    return ret;
}

/* Where the refcount of cluster @k lives, for messages. */
static void rc_loc(const struct chk *c, uint64_t k, char *buf, size_t len)
{
    const struct qcow2_state *s = c->s;
    uint64_t rt = k >> s->refblock_bits, host = k << s->cluster_bits;
    uint32_t i = (uint32_t)(k & (s->refblock_entries - 1));
    if (rt >= c->rt_size)
        snprintf(buf, len, "host offset 0x%" PRIx64 ", beyond the refcount table at 0x%" PRIx64
                 " (%" PRIu64 " entries)", host, s->h.refcount_table_offset, c->rt_size);
    else if (!(c->rt[rt] & QCOW2_REFT_OFFSET_MASK))
        snprintf(buf, len, "host offset 0x%" PRIx64 ", no refcount block: refcount table entry %"
                 PRIu64 " at 0x%" PRIx64 " is 0", host, rt,
                 s->h.refcount_table_offset + 8 * rt);
    else
        snprintf(buf, len, "host offset 0x%" PRIx64 ", refcount block at 0x%" PRIx64 " entry %"
                 PRIu32, host, (uint64_t)(c->rt[rt] & QCOW2_REFT_OFFSET_MASK), i);
}

/* How many clusters from @k on, inside @k's refcount block, have the
 * on-disk refcount the IMRT computed (c->highest follows the last nonzero
 * one): compare's fast path, one loop over a block.  0 when the block
 * cannot be read here or cluster @k differs; compare's per-cluster path
 * then reports it. */
static uint64_t matching_run(struct chk *c, uint64_t k)
{
    struct qcow2_state *s = c->s;
    uint64_t rt = k >> s->refblock_bits;
    if (rt >= c->rt_size)
        return 0;
    uint64_t off = c->rt[rt] & QCOW2_REFT_OFFSET_MASK, r1;
    if (!off || disk_refcount(c, k, &r1) < 0)
        return 0;
    uint32_t i = (uint32_t)(k & (s->refblock_entries - 1));
    uint64_t n = IC_MIN((uint64_t)(s->refblock_entries - i), c->nb - k), m = 0;
    if (s->refcount_bits == 16 && c->v16) {
        const uint8_t *p = c->rb + 2 * (size_t)i;
        const uint16_t *v = c->v16 + k;
        for (; m < n && ic_load_be16(p + 2 * m) == v[m]; m++)
            ;
    } else {
        for (; m < n && qcow2_refblock_get(s, c->rb, i + (uint32_t)m) == imrt_get(c, k + m); m++)
            ;
    }
    /* the last cluster of the run with a nonzero refcount */
    for (uint64_t q = m; q > 0; q--) {
        if (imrt_get(c, k + q - 1)) {
            c->highest = k + q - 1;
            break;
        }
    }
    return m;
}

/* compare_refcounts; with @fix, mismatches the mode allows are repaired
 * in place through the engine (design note 4). */
static int compare(struct chk *c, unsigned fix)
{
    struct qcow2_state *s = c->s;
    char loc[CHK_WHERE_MAX];
    c->highest = 0;
    /* a dry run of -r leaks: the real one fixes nothing when a rebuild is
     * needed, so find that out before announcing leak repairs */
    bool leaks_only = !c->fix && c->would_fix == IC_FIX_LEAKS;
    for (uint64_t i = 0; leaks_only && !c->rebuild && i < c->nb; i++) {
        uint64_t r1;
        if (imrt_get(c, i) && disk_refcount(c, i, &r1) == 0 && r1 == 0)
            c->rebuild = true;
    }
    bool would_none = leaks_only && c->rebuild;
    for (uint64_t i = 0; i < c->nb; i++) {
        uint64_t n = matching_run(c, i);
        if (n) {
            i += n - 1;
            continue;
        }
        uint64_t r1, r2 = imrt_get(c, i);
        int ret = disk_refcount(c, i, &r1);
        if (ret < 0) {
            rc_loc(c, i, loc, sizeof(loc));
            say(c, "Can't get refcount for cluster %" PRIu64 ": %s (%s)", i, strerror(-ret), loc);
            c->res->check_errors++;
            continue;
        }
        if (r1 || r2)
            c->highest = i;
        if (r1 == r2)
            continue;
        int64_t *fixed = NULL;
        unsigned need = 0;
        if (r1 == 0)
            c->rebuild = true;
        else if (r1 > r2)
            need = IC_FIX_LEAKS;
        else
            need = IC_FIX_ERRORS;
        if (need & fix)
            fixed = need == IC_FIX_LEAKS ? &c->res->leaks_fixed : &c->res->corruptions_fixed;
        /* a dry run names the change -r would make; a zero refcount is
         * repaired by the rebuild, which -r all makes */
        bool would = !c->fix && !would_none && ((need & c->would_fix) ||
                                                (!need && (c->would_fix & IC_FIX_ERRORS)));
        rc_loc(c, i, loc, sizeof(loc));
        say(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 " (%s%s)",
            fixed ? "Repairing" : would ? "Would repair:" : r1 < r2 ? "ERROR" : "Leaked", i, r1,
            r2, loc, would && !need ? "; by rebuilding the refcount structure" : "");
        if (fixed) {
            int64_t d = r2 > r1 ? (int64_t)(r2 - r1) : -(int64_t)(r1 - r2);
            ic_io_event(c->img->file, IC_EV_CHECK_REPAIR);
            if (qcow2_update_refcount(c->img, i << s->cluster_bits, s->cluster_size, d) == 0) {
                (*fixed)++;
                continue;
            }
        }
        if (r1 < r2)
            c->res->corruptions++;
        else
            c->res->leaks++;
    }
    if (fix) {
        int ret = qcow2_flush_metadata(c->img);
        if (ret < 0) {
            c->res->check_errors++;
            return ret;
        }
        c->rb_off = 0;
    }
    return 0;
}

/* The refcount of cluster @k once the requested repair is done: what is on
 * disk (@disk) after a real repair; in a dry run the computed refcount
 * where the repair would change it (-r leaks only lowers). */
static uint64_t rc_after(const struct chk *c, uint64_t k, uint64_t disk)
{
    if (c->fix || !c->would_fix || k >= c->nb)
        return disk;
    uint64_t want = imrt_get(c, k);
    if (c->would_fix & IC_FIX_ERRORS)
        return want;
    return disk > want ? want : disk;
}

/* One COPIED flag: an L1 entry (@l2 false: index @i, entry @e, table
 * @tab) or an L2 entry (@l2 true: entry @j of the table at @tab), against
 * the refcount now (@rc) and after the repair (@rc2, dry run only).
 * Messages are formatted only when printed (this runs for every entry).
 * Returns 1 when it is wrong now (counted). */
static int copied_one(struct chk *c, bool repair, bool dry_repair, bool l2, uint32_t i,
                      uint64_t e, uint64_t tab, uint64_t rc, uint64_t rc2)
{
    bool flag = !!(e & QCOW2_OFLAG_COPIED);
    bool now = (rc == 1) != flag, after = (rc2 == 1) != flag;
    bool dry = !c->fix && c->would_fix;
    if (!now && !(dry && after && dry_repair))
        return 0;
    char what[96], loc[CHK_WHERE_MAX];
    if (l2) {
        snprintf(what, sizeof(what), "data cluster: l2_entry=%" PRIx64, e);
        l2_at(loc, sizeof(loc), c->s, tab, i, true);
    } else {
        snprintf(what, sizeof(what), "L2 cluster: l1_index=%" PRIu32 " l1_entry=%" PRIx64, i, e);
        snprintf(loc, sizeof(loc), "active L1 table at 0x%" PRIx64 " entry %" PRIu32 ", L2 table "
                 "at 0x%" PRIx64, tab, i, (uint64_t)(e & QCOW2_L1E_OFFSET_MASK));
    }
    if (dry) {
        if (after && dry_repair)
            say(c, "Would repair: OFLAG_COPIED %s refcount=%" PRIu64 " (%s%s)", what, rc2, loc,
                rc2 != rc ? "; refcount after the repair above" : "");
        else
            say(c, "ERROR OFLAG_COPIED %s refcount=%" PRIu64 " (%s%s)", what, rc, loc,
                after ? "" : "; consistent once the refcount is repaired");
        return now;
    }
    say(c, "%s OFLAG_COPIED %s refcount=%" PRIu64 " (%s)", repair ? "Repairing" : "ERROR",
        what, rc, loc);
    return now;
}

/* Whether clusters [k, k + n) all have refcount 1 on disk (@copied) or
 * none has, and the check judges COPIED flags by the refcounts on disk
 * (not a dry run), so that none of their entries is wrong: check_copied's
 * fast path.  false whenever in doubt (the per-entry path decides). */
static bool run_agrees(struct chk *c, uint64_t k, uint64_t n, bool copied)
{
    struct qcow2_state *s = c->s;
    if (s->data_file_name || (!c->fix && c->would_fix))
        return false;
    while (n) {
        uint64_t rt = k >> s->refblock_bits, r1;
        if (rt >= c->rt_size || !(c->rt[rt] & QCOW2_REFT_OFFSET_MASK) ||
            disk_refcount(c, k, &r1) < 0)
            return false;
        uint32_t i = (uint32_t)(k & (s->refblock_entries - 1));
        uint32_t m = (uint32_t)IC_MIN(n, (uint64_t)(s->refblock_entries - i));
        if (qcow2_refblock_count(s, c->rb, i, m, 1) != (copied ? m : 0))
            return false;
        k += m;
        n -= m;
    }
    return true;
}

/* The COPIED flags of the data entries [j0, j1) of the active L2 table
 * @l2 at @l2off, one by one; returns how many are wrong now. */
static int64_t copied_entries(struct chk *c, bool repair, bool dry_repair, const uint8_t *l2,
                              uint64_t l2off, uint32_t j0, uint32_t j1)
{
    struct qcow2_state *s = c->s;
    int64_t found = 0;
    for (uint32_t j = j0; j < j1; j++) {
        uint64_t e = qcow2_l2_get(s, l2, j), rc;
        enum qcow2_ctype t = qcow2_cluster_type(s, e);
        if (t != QCOW2_CT_NORMAL && t != QCOW2_CT_ZERO_ALLOC)
            continue;
        uint64_t k = (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits;
        rc = 1;
        if (!s->data_file_name && disk_refcount(c, k, &rc) < 0)
            continue;
        found += copied_one(c, repair, dry_repair, true, j, e, l2off, rc,
                            s->data_file_name ? rc : rc_after(c, k, rc));
    }
    return found;
}

/* check_oflag_copied: counts, and with @repair fixes through the engine.
 * @dry_repair: a dry run of a repair that would fix them. */
static int check_copied(struct chk *c, bool repair, bool dry_repair)
{
    struct qcow2_state *s = c->s;
    int64_t found = 0;
    uint8_t *l2 = c->buf;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e1 = s->l1[i], l2off = e1 & QCOW2_L1E_OFFSET_MASK, rc;
        if (!l2off)
            continue;
        if (disk_refcount(c, l2off >> s->cluster_bits, &rc) < 0)
            continue;
        found += copied_one(c, repair, dry_repair, false, i, e1, s->l1_offset, rc,
                            rc_after(c, l2off >> s->cluster_bits, rc));
        if (ic_io_pread(c->img->file, l2, s->cluster_size, l2off) < 0) {
            say(c, "ERROR: Could not read L2 table at 0x%" PRIx64 " (active L1 table entry %"
                PRIu32 ")", l2off, i);
            c->res->check_errors++;
            return -EIO;
        }
        /* data entries [run_j, j) map clusters [run_k, run_k + run_n) with
         * one COPIED state; a run that agrees with the refcounts is
         * skipped whole, any other goes entry by entry */
        uint32_t run_j = 0;
        uint64_t run_k = 0, run_n = 0;
        bool run_copied = false;
        for (uint32_t j = 0; j <= s->l2_entries; j++) {
            uint64_t e = 0, k = 0;
            if (j < s->l2_entries) {
                e = qcow2_l2_get(s, l2, j);
                enum qcow2_ctype t = qcow2_cluster_type(s, e);
                if (t != QCOW2_CT_NORMAL && t != QCOW2_CT_ZERO_ALLOC)
                    continue;
                k = (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits;
                if (run_n && k == run_k + run_n && !!(e & QCOW2_OFLAG_COPIED) == run_copied) {
                    run_n++;
                    continue;
                }
            }
            if (run_n && !run_agrees(c, run_k, run_n, run_copied))
                found += copied_entries(c, repair, dry_repair, l2, l2off, run_j, j);
            if (j == s->l2_entries)
                break;
            run_j = j;
            run_k = k;
            run_n = 1;
            run_copied = !!(e & QCOW2_OFLAG_COPIED);
            if (!(e & QCOW2_L2E_OFFSET_MASK & s->cluster_offset_mask)) {
                uint32_t more = qcow2_l2_count_following(s, l2, j, e);
                run_n += more;
                j += more;
            }
        }
    }
    if (!found)
        return 0;
    if (repair) {
        int64_t fixed = qcow2_fix_copied(c->img);
        if (fixed < 0) {
            c->res->check_errors++;
            c->res->corruptions += found;
            return (int)fixed;
        }
        c->res->corruptions_fixed += found;
        return 0;
    }
    c->res->corruptions += found;
    return 0;
}

/* Drops broken entries, completes incomplete v3 entries and cuts extra
 * data to 1024 bytes, then rewrites the table (design notes 5, 9).
 * *dropped: entries removed. */
static int fix_snapshot_table(struct chk *c, bool *changed, int64_t *dropped, ic_error **errp)
{
    struct qcow2_state *s = c->s;
    uint32_t n = 0;
    *changed = false;
    *dropped = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        if (c->drop && c->drop[i]) {
            free(sn->id_str);
            free(sn->name);
            free(sn->unknown_extra);
            *changed = true;
            (*dropped)++;
            continue;
        }
        if ((s->h.version >= 3 && sn->extra_data_size < QCOW2_SNAPSHOT_EXTRA_V3_MIN) ||
            sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA)
            *changed = true;
        if (!sn->has_disk_size) {
            sn->has_disk_size = true;
            sn->disk_size = c->img->size;
        }
        /* the reader kept at most 1024 bytes: the serializer writes those */
        sn->extra_data_size = QCOW2_SNAPSHOT_EXTRA_QEMU + sn->unknown_extra_size;
        s->snapshots[n++] = *sn;
    }
    s->nb_snapshots = n;
    if (c->drop)
        memset(c->drop, 0, n * sizeof(*c->drop));
    if (!*changed)
        return 0;
    int ret = qcow2_snapshot_rewrite_table(c->img, errp);
    if (ret == 0)
        s->snap_extra_cut = 0;
    return ret;
}

static void chk_free(struct chk *c)
{
    free(c->v16);
    free(c->v64);
    free(c->buf);
    free(c->rt);
    free(c->rb);
    free(c->drop);
    free(c->refs);
    ic_error_free(c->bitmap_err);
    c->bitmap_err = NULL;
}

static int chk_init(struct chk *c, struct ic_image *img, unsigned fix, ic_check_report_fn report,
                    void *payload, ic_check_result *res)
{
    struct qcow2_state *s = qcow2_state(img);
    memset(c, 0, sizeof(*c));
    c->img = img;
    c->s = s;
    c->would_fix = fix & (IC_FIX_LEAKS | IC_FIX_ERRORS);
    c->fix = (fix & IC_CHECK_DRY_RUN) ? 0 : c->would_fix;
    c->report = report;
    c->payload = payload;
    c->res = res;
    c->max = s->refcount_max;
    c->file_len = ic_io_get_size(img->file);
    if (c->file_len < 0)
        return (int)c->file_len;
    c->buf = malloc(s->cluster_size);
    c->rb = malloc(s->cluster_size);
    if (!c->buf || !c->rb)
        return -ENOMEM;
    if (s->nb_snapshots && !(c->drop = calloc(s->nb_snapshots, sizeof(bool))))
        return -ENOMEM;
    uint64_t nb = ((uint64_t)c->file_len + s->cluster_size - 1) >> s->cluster_bits;
    if (s->refcount_bits <= 16) {
        c->v16 = calloc(nb ? nb : 1, sizeof(uint16_t));
        if (!c->v16)
            return -ENOMEM;
    } else {
        c->v64 = calloc(nb ? nb : 1, sizeof(uint64_t));
        if (!c->v64)
            return -ENOMEM;
    }
    c->nb = nb;
    return load_reftable(c);
}

/* Empties the IMRT and sizes it for the file as it is now (after a repair
 * moved its end). */
static int imrt_reset(struct chk *c)
{
    struct qcow2_state *s = c->s;
    c->file_len = ic_io_get_size(c->img->file);
    if (c->file_len < 0)
        return (int)c->file_len;
    int ret = imrt_grow(c, ((uint64_t)c->file_len + s->cluster_size - 1) >> s->cluster_bits);
    if (ret < 0)
        return ret;
    memset(c->v16 ? (void *)c->v16 : (void *)c->v64, 0,
           (size_t)c->nb * (c->v16 ? sizeof(uint16_t) : sizeof(uint64_t)));
    c->rebuild = false;
    c->grow_end = 0;
    c->grow_refs = 0;
    c->grow_rebuild = false;
    return load_reftable(c);
}

/* One scan: 0 when it completed. */
static int scan(struct chk *c)
{
    c->res->total_clusters = qcow2_size_to_clusters(c->s, c->img->size);
    int ret = calculate(c);
    c->pre = *c->res;
    if (ret == 0)
        ret = compare(c, 0);
    return ret;
}

/* Design note 8: grows the file so that every aligned reference past its
 * end lies inside it, then scans again.  The first scan's counters are
 * left in @first. */
static int grow_and_rescan(struct chk *c, ic_check_result *first)
{
    int64_t old = c->file_len;
    say(c, "Repairing: growing the file from %" PRId64 " to %" PRIu64 " bytes so that %" PRId64
        " reference(s) past its end become valid (the clusters read as zeroes, as before)", old,
        c->grow_end, c->grow_refs);
    *first = *c->res;
    ic_io_event(c->img->file, IC_EV_CHECK_REPAIR);
    /* If we crash after this point the file is only longer: the new
     * clusters read as zeroes, as the references past the old end did, and
     * their refcount is 0 as it was; the refcount repair that follows
     * writes a new structure before switching to it (design note 4). */
    int ret = ic_io_truncate(c->img->file, c->grow_end);
    if (ret == 0)
        ret = ic_io_flush(c->img->file);
    if (ret < 0) {
        say(c, "ERROR growing the file to %" PRIu64 " bytes: %s", c->grow_end, strerror(-ret));
        c->res->check_errors++;
        return ret;
    }
    if ((ret = imrt_reset(c)) < 0) {
        c->res->check_errors++;
        return ret;
    }
    ic_check_result keep = *c->res;
    memset(c->res, 0, sizeof(*c->res));
    c->res->corruptions_fixed = keep.corruptions_fixed;
    c->res->leaks_fixed = keep.leaks_fixed;
    return scan(c);
}

static int rebuild(struct chk *c, ic_error **errp)
{
    struct qcow2_state *s = c->s;
    /* the engine places its own refblocks and reftable: drop the old ones */
    uint32_t *imrt = calloc(c->nb ? c->nb : 1, sizeof(*imrt));
    if (!imrt)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    for (uint64_t i = 0; i < c->nb; i++)
        imrt[i] = (uint32_t)IC_MIN(imrt_get(c, i), (uint64_t)UINT32_MAX);
    uint64_t rtf = s->h.refcount_table_offset >> s->cluster_bits;
    uint64_t rtn = IC_DIV_ROUND_UP(c->rt_size * 8, s->cluster_size);
    for (uint64_t k = rtf; k < rtf + rtn && k < c->nb; k++)
        if (imrt[k])
            imrt[k]--;
    for (uint64_t i = 0; i < c->rt_size; i++) {
        uint64_t off = c->rt[i] & QCOW2_REFT_OFFSET_MASK;
        if (!(c->rt[i] & QCOW2_REFT_RESERVED) && off && !(off & s->cluster_offset_mask) &&
            (off >> s->cluster_bits) < c->nb && imrt[off >> s->cluster_bits])
            imrt[off >> s->cluster_bits]--;
    }
    say(c, "Rebuilding refcount structure");
    int ret = qcow2_rebuild_refcount_structure(c->img, imrt, c->nb, errp);
    free(imrt);
    return ret;
}

/* What a dry run cannot show per cluster: the whole-structure steps the
 * repair would take (design note 6). */
static void dry_run_steps(struct chk *c)
{
    struct qcow2_state *s = c->s;
    if (c->fix || !c->would_fix)
        return;
    bool all = !!(c->would_fix & IC_FIX_ERRORS);
    if (all && c->grow_end > (uint64_t)c->file_len)
        say(c, "Would repair: grow the file from %" PRId64 " to %" PRIu64 " bytes so that %"
            PRId64 " reference(s) past its end become valid (the clusters read as zeroes, as "
            "before), then count the clusters it adds", c->file_len, c->grow_end, c->grow_refs);
    if ((c->rebuild || (c->grow_rebuild && c->grow_end > (uint64_t)c->file_len)) && all)
        say(c, "Would rebuild the refcount structure (refcount table at 0x%" PRIx64 ", %" PRIu64
            " entries): new refcount blocks and table written past the end of the file from the "
            "references counted, one header switch, then the old structure freed",
            s->h.refcount_table_offset, c->rt_size);
    else if (c->rebuild)
        say(c, "ERROR need to rebuild refcount structures (-r leaks cannot; -r all can)");
    if (all && s->h.version >= 3 && (s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY))
        say(c, "Would clear the dirty bit (incompatible feature bit 0, header offset 72) if "
            "the repair leaves no corruption");
    if (s->h.version >= 3 && (s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT))
        say(c, "Would clear the corrupt bit (incompatible feature bit 1, header offset 72) if "
            "the repair leaves no corruption");
}

int qcow2_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
                ic_check_result *res, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct chk c;
    memset(res, 0, sizeof(*res));
    int ret = chk_init(&c, img, fix, report, payload, res);
    if (ret < 0) {
        chk_free(&c);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot check: %s",
                            strerror(-ret));
    }
    if (c.fix) {
        /* repairs start from what is on disk */
        ret = qcow2_flush_pending_frees(img);
        if (ret == 0)
            ret = qcow2_flush_metadata(img);
        if (ret < 0) {
            chk_free(&c);
            return ic_error_set(errp, IC_ERR_IO, -ret, "cannot flush before repairing: %s",
                                strerror(-ret));
        }
    }
    if ((ret = check_snapshot_table(&c, errp)) < 0) {
        chk_free(&c);
        return ret;
    }
    ret = scan(&c);
    if (ret < 0)
        goto out;
    if (c.bitmap_err) {
        /* qemu cannot open such an image: no counts, nothing repaired */
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s", ic_error_message(c.bitmap_err));
        chk_free(&c);
        return ret;
    }
    ic_check_result first;
    bool grown = false;
    if ((c.fix & IC_FIX_ERRORS) && c.grow_end > (uint64_t)c.file_len) {
        if ((ret = grow_and_rescan(&c, &first)) < 0)
            goto out;
        grown = true;
    }
    dry_run_steps(&c);
    if (c.fix && c.rebuild && (c.fix & IC_FIX_ERRORS)) {
        ic_check_result before = grown ? first : *res;
        ic_error *err = NULL;
        if ((ret = rebuild(&c, &err)) < 0) {
            say(&c, "ERROR rebuilding the refcount structure: %s", ic_error_message(err));
            ic_error_free(err);
            res->check_errors++;
            goto out;
        }
        /* recount on the new structure (past the old end of the file);
         * leaks left by it are fixed */
        ic_check_result again = { 0 };
        c.res = &again;
        if ((ret = imrt_reset(&c)) == 0)
            ret = calculate(&c);
        if (ret == 0)
            ret = compare(&c, IC_FIX_LEAKS);
        c.res = res;
        if (ret < 0) {
            res->check_errors++;
            goto out;
        }
        if (c.rebuild)
            say(&c, "ERROR rebuilt refcount structure is still broken");
        res->corruptions = again.corruptions;
        res->leaks = again.leaks;
        res->check_errors += again.check_errors;
        res->allocated_clusters = again.allocated_clusters;
        res->fragmented_clusters = again.fragmented_clusters;
        res->compressed_clusters = again.compressed_clusters;
        if (res->corruptions < before.corruptions)
            res->corruptions_fixed += before.corruptions - res->corruptions;
        if (res->leaks < before.leaks)
            res->leaks_fixed += before.leaks - res->leaks;
    } else if (c.fix) {
        if (c.rebuild) {
            say(&c, "ERROR need to rebuild refcount structures");
            res->check_errors++;
            ret = 0;
            goto out;
        }
        /* references the growth made valid, with their refcounts right */
        if (grown && first.corruptions > c.pre.corruptions)
            res->corruptions_fixed += first.corruptions - c.pre.corruptions;
        if (res->leaks || res->corruptions) {
            /* qemu: back to the counters before compare, compare again fixing */
            int64_t gfixed = res->corruptions_fixed;
            *res = c.pre;
            res->corruptions_fixed = gfixed;
            if ((ret = compare(&c, c.fix)) < 0)
                goto out;
        }
    }
    if (ret == 0) {
        c.rb_off = 0;
        bool repair = (c.fix & IC_FIX_ERRORS) ||
                      ((c.fix & IC_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
                       !res->leaks);
        bool dry_repair = (c.would_fix & IC_FIX_ERRORS) ||
                          ((c.would_fix & IC_FIX_LEAKS) && !res->check_errors &&
                           !res->corruptions && !c.tab);
        ret = check_copied(&c, repair, dry_repair);
        if (ret < 0)
            goto out;
    }
    if (c.fix & IC_FIX_ERRORS) {
        bool changed;
        int64_t dropped = 0;
        ic_error *err = NULL;
        if (fix_snapshot_table(&c, &changed, &dropped, &err) < 0) {
            say(&c, "ERROR failed to update snapshot table: %s", ic_error_message(err));
            ic_error_free(err);
            res->check_errors++;
            res->corruptions += c.tab;
        } else {
            /* the dropped entries were counted by the scan, the rest in
             * c.tab; a rewritten table no longer runs past the end */
            int64_t eof = changed ? c.tab_eof : 0;
            res->corruptions -= dropped + eof;
            res->corruptions_fixed += dropped + c.tab + eof;
        }
    } else {
        res->corruptions += c.tab;
    }
    res->image_end_offset = (c.highest + 1) << s->cluster_bits;
    if (c.fix && !res->check_errors && !res->corruptions) {
        int r2 = qcow2_mark_clean(img);
        if (r2 == 0 && (s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
            s->h.incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT;
            s->corrupt = false;
            r2 = qcow2_update_header(img);
            if (r2 == 0)
                r2 = ic_io_flush(img->file);
        }
        if (r2 < 0)
            res->check_errors++;
    }
    ret = 0;
out:
    chk_free(&c);
    /* I/O failures during the scan are in check_errors (qemu-img exit 1) */
    if (ret != -ENOMEM)
        ret = 0;
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "check could not "
                            "complete: %s", strerror(-ret));
    return 0;
}
