/*
 * qed-check.c - QED consistency check and repair (as qemu's QED check),
 * plus leak repair, which qemu does not do.
 *
 * Design notes:
 *  Owns: nothing new on disk; it reads and repairs the L1/L2 tables and the
 *  file length.
 *  What is checked (qemu's rules; counters as qemu-img check; docs/qed.md,
 *  "Check and repair"):
 *   - L1 entry that is not a valid table offset   -> corruption (fix: zero)
 *   - L2 entry (not 0/1) unaligned, in the header area or past EOF
 *                                                -> corruption (fix: zero)
 *   - cluster referenced twice (tables and data share one bitmap)
 *                                                -> corruption, never fixed;
 *     a doubly referenced L2 table is not scanned
 *   - cluster in [header_size, EOF) never referenced -> leak
 *   - total/allocated/fragmented clusters as qemu; no image-end-offset.
 *  Invariants:
 *   1. Any IC_FIX_* repairs corruptions (qemu treats -r leaks and -r all
 *      alike for QED); IC_CHECK_DRY_RUN reports and writes nothing.
 *   2. Leaks are counted only after a complete scan.  With IC_FIX_LEAKS and
 *      no corruption or I/O error left, leaks are repaired by compaction:
 *      the highest used clusters (data clusters, L2 tables) are copied into
 *      the lowest leaked slots, the copies are flushed, then the single
 *      reference to each is switched and flushed, then the file is
 *      truncated.  If we crash after a copy, we only leak it; if we crash
 *      after some switches, both copies hold the same bytes and the unused
 *      one is only leaked; truncation removes clusters nothing references.
 *      Objects that cannot move (the L1 table, an L2 table with no free run
 *      of table_size clusters below it) stop the compaction; what remains is
 *      reported as leaks.
 *   3. NEED_CHECK is cleared (after a flush) only when a repairing check
 *      leaves no corruption and no I/O error.
 *   4. Every bitmap index comes from an offset validated against the file
 *      size first, so it is in range.
 *  Follows qemu's QED check.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"

/* The compaction keeps one u64 per cluster between the final end of the
 * file and the current one (the clusters that may move): bounded at 32 MiB
 * of memory.  Beyond it only the leaked tail of the file is cut. */
#define QED_COMPACT_MAX_WINDOW (UINT64_C(4) * 1024 * 1024)
/* Data clusters copied per flush during compaction. */
#define QED_COMPACT_BATCH 256u

/* Referrer encoding for the compaction window: kind in bits 62-63, L1 index
 * in bits 32-61, L2 index (data) or cluster within the table in bits 0-31. */
enum { REF_NONE = 0, REF_DATA = 1, REF_L2 = 2, REF_L1 = 3 };
#define REF(kind, l1i, low) (((uint64_t)(kind) << 62) | ((uint64_t)(l1i) << 32) | (uint32_t)(low))
#define REF_KIND(r) ((unsigned)((r) >> 62))
#define REF_L1I(r) ((uint32_t)(((r) >> 32) & 0x3fffffffu))
#define REF_LOW(r) ((uint32_t)(r))

struct qed_check {
    struct ic_image *img;
    struct qed_state *s;
    ic_check_result *res;
    bool repair;          /* write repairs */
    bool dry;             /* report repairs without writing */
    uint64_t nclusters;   /* whole clusters in the file */
    uint8_t *used;        /* bitmap of referenced clusters */
    uint64_t *l2;         /* scratch table */
    ic_check_report_fn report;
    void *payload;
    int last_error;
};

static void say(struct qed_check *c, const char *fmt, ...) IC_PRINTF(2, 3);
static void say(struct qed_check *c, const char *fmt, ...)
{
    if (!c->report)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->report(c->payload, line);
}

static bool test_used(const struct qed_check *c, uint64_t cl)
{
    return (c->used[cl >> 3] >> (cl & 7)) & 1;
}

static void set_used(struct qed_check *c, uint64_t cl, bool v)
{
    if (v)
        c->used[cl >> 3] |= (uint8_t)(1u << (cl & 7));
    else
        c->used[cl >> 3] &= (uint8_t)~(1u << (cl & 7));
}

/* Marks @n clusters from @off used; counts a corruption per cluster that
 * was already referenced.  True when none was. */
static bool mark_used(struct qed_check *c, uint64_t off, uint64_t n)
{
    uint64_t cl = off >> c->s->cluster_bits;
    uint64_t dup = 0;
    for (uint64_t i = 0; i < n && cl + i < c->nclusters; i++) {
        if (test_used(c, cl + i)) {
            dup++;
            say(c, "ERROR: cluster %" PRIu64 " is referenced more than once", cl + i);
        }
        set_used(c, cl + i, true);
    }
    c->res->corruptions += (int64_t)dup;
    return dup == 0;
}

static void count_invalid(struct qed_check *c, const char *what, uint64_t off)
{
    if (c->repair) {
        c->res->corruptions_fixed++;
        say(c, "Repairing %s: invalid offset %#" PRIx64 " cleared", what, off);
    } else {
        c->res->corruptions++;
        say(c, "ERROR: %s: invalid offset %#" PRIx64 "%s", what, off,
            c->dry ? " (would be cleared)" : "");
    }
}

static unsigned check_l2_table(struct qed_check *c, uint64_t table_off)
{
    struct qed_state *s = c->s;
    const uint64_t cs = s->header.cluster_size;
    unsigned invalid = 0;
    uint64_t last = 0;
    for (uint32_t i = 0; i < s->table_nelems; i++) {
        uint64_t off = c->l2[i];
        if (off == QED_UNALLOC_CLUSTER || off == QED_ZERO_CLUSTER)
            continue;
        c->res->allocated_clusters++;
        if (last && last + cs != off)
            c->res->fragmented_clusters++;
        last = off;
        if (!qed_check_cluster_offset(s, off)) {
            char what[96];
            snprintf(what, sizeof(what), "L2 table %#" PRIx64 " entry %" PRIu32, table_off, i);
            count_invalid(c, what, off);
            if (c->repair)
                c->l2[i] = QED_UNALLOC_CLUSTER;
            invalid++;
            continue;
        }
        mark_used(c, off, 1);
    }
    return invalid;
}

static void io_error(struct qed_check *c, int ret, const char *what, uint64_t off)
{
    c->res->check_errors++;
    c->last_error = ret;
    say(c, "ERROR: cannot %s at %#" PRIx64 ": %s", what, off, strerror(-ret));
}

static void check_l1_table(struct qed_check *c)
{
    struct qed_state *s = c->s;
    struct ic_image *img = c->img;
    unsigned invalid_l1 = 0;
    mark_used(c, s->header.l1_table_offset, s->header.table_size);
    for (uint32_t i = 0; i < s->table_nelems; i++) {
        uint64_t off = s->l1_table[i];
        if (off == QED_UNALLOC_CLUSTER)
            continue;
        if (!qed_check_table_offset(s, off)) {
            char what[48];
            snprintf(what, sizeof(what), "L1 entry %" PRIu32, i);
            count_invalid(c, what, off);
            if (c->repair)
                s->l1_table[i] = QED_UNALLOC_CLUSTER;
            invalid_l1++;
            continue;
        }
        if (!mark_used(c, off, s->header.table_size))
            continue; /* skip a doubly referenced table */
        int ret = qed_read_table(img, off, c->l2);
        if (ret < 0) {
            io_error(c, ret, "read the L2 table", off);
            continue;
        }
        unsigned invalid = check_l2_table(c, off);
        if (invalid > 0 && c->repair) {
            qed_l2_cache_drop(&s->l2_cache, off);
            ret = qed_write_table(img, off, c->l2, 0, s->table_nelems, false, IC_EV_CHECK_REPAIR);
            if (ret < 0)
                io_error(c, ret, "write the repaired L2 table", off);
        }
    }
    if (invalid_l1 > 0 && c->repair) {
        int ret = qed_write_l1_table(img, 0, s->table_nelems, IC_EV_CHECK_REPAIR);
        if (ret < 0)
            io_error(c, ret, "write the repaired L1 table", s->header.l1_table_offset);
    }
}

/* ---- leak repair by compaction ------------------------------------------------ */

struct data_move {
    uint64_t src, dst;   /* host offsets */
    uint32_t l1i, l2i;
};

/* Copies @n clusters from @src to @dst. */
static int copy_clusters(struct qed_check *c, uint64_t src, uint64_t dst, uint64_t n,
                         uint8_t *buf)
{
    const uint64_t cs = c->s->header.cluster_size;
    for (uint64_t i = 0; i < n; i++) {
        int ret = ic_io_pread(c->img->file, buf, (size_t)cs, src + i * cs);
        if (ret == 0) {
            ic_io_event(c->img->file, IC_EV_CHECK_REPAIR);
            ret = ic_io_pwrite(c->img->file, buf, (size_t)cs, dst + i * cs);
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int run_data_batch(struct qed_check *c, struct data_move *mv, unsigned n, uint8_t *buf)
{
    struct qed_state *s = c->s;
    struct ic_image *img = c->img;
    if (n == 0)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        int ret = copy_clusters(c, mv[i].src, mv[i].dst, 1, buf);
        if (ret < 0)
            return ret;
    }
    /* The copies are durable before anything points at them: if we crash
     * before the switches below, the copies are only leaked. */
    int ret = ic_io_flush(img->file);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < n; i++) {
        uint64_t l2_off = s->l1_table[mv[i].l1i];
        uint64_t *t;
        if ((ret = qed_read_l2_table(img, l2_off, &t)) < 0)
            return ret;
        t[mv[i].l2i] = mv[i].dst;
        ret = qed_write_table(img, l2_off, t, mv[i].l2i, 1, false, IC_EV_CHECK_REPAIR);
        if (ret < 0) {
            qed_l2_cache_drop(&s->l2_cache, l2_off);
            return ret;
        }
    }
    return ic_io_flush(img->file);
}

static int move_l2_table(struct qed_check *c, uint32_t l1i, uint64_t dst, uint8_t *buf)
{
    struct qed_state *s = c->s;
    uint64_t src = s->l1_table[l1i];
    int ret = copy_clusters(c, src, dst, s->header.table_size, buf);
    if (ret == 0)
        ret = ic_io_flush(c->img->file); /* copy durable before the switch */
    if (ret < 0)
        return ret;
    s->l1_table[l1i] = dst;
    ret = qed_write_l1_table(c->img, l1i, 1, IC_EV_CHECK_REPAIR);
    if (ret == 0)
        ret = ic_io_flush(c->img->file);
    qed_l2_cache_drop(&s->l2_cache, src);
    if (ret < 0)
        s->l1_table[l1i] = src; /* memory keeps the copy that surely holds */
    return ret;
}

/* Fills the referrer map for clusters in [w, w + wn). */
static int build_window(struct qed_check *c, uint64_t w, uint64_t wn, uint64_t *ref)
{
    struct qed_state *s = c->s;
    uint32_t bits = s->cluster_bits;
    uint64_t l1c = s->header.l1_table_offset >> bits;
    for (uint32_t k = 0; k < s->header.table_size; k++)
        if (l1c + k >= w && l1c + k < w + wn)
            ref[l1c + k - w] = REF(REF_L1, 0, k);
    for (uint32_t i = 0; i < s->table_nelems; i++) {
        uint64_t off = s->l1_table[i];
        if (off == QED_UNALLOC_CLUSTER)
            continue;
        uint64_t tc = off >> bits;
        for (uint32_t k = 0; k < s->header.table_size; k++)
            if (tc + k >= w && tc + k < w + wn)
                ref[tc + k - w] = REF(REF_L2, i, k);
        int ret = qed_read_table(c->img, off, c->l2);
        if (ret < 0)
            return ret;
        for (uint32_t j = 0; j < s->table_nelems; j++) {
            uint64_t e = c->l2[j];
            if (e == QED_UNALLOC_CLUSTER || e == QED_ZERO_CLUSTER)
                continue;
            uint64_t dc = e >> bits;
            if (dc >= w && dc < w + wn)
                ref[dc - w] = REF(REF_DATA, i, j);
        }
    }
    return 0;
}

/* Finds @n free clusters in a row in [from, below); UINT64_MAX if none. */
static uint64_t find_free_run(const struct qed_check *c, uint64_t from, uint64_t below, uint64_t n)
{
    uint64_t run = 0;
    for (uint64_t cl = from; cl < below; cl++) {
        run = test_used(c, cl) ? 0 : run + 1;
        if (run == n)
            return cl + 1 - n;
    }
    return UINT64_MAX;
}

/* Records that @n clusters moved from @src to @dst (bitmap and referrers). */
static void move_ref(struct qed_check *c, uint64_t *ref, uint64_t w, uint64_t src, uint64_t dst,
                     uint64_t n)
{
    for (uint64_t k = 0; k < n; k++) {
        set_used(c, dst + k, true);
        set_used(c, src + k, false);
        uint64_t r = ref[src + k - w];
        ref[src + k - w] = REF_NONE;
        if (dst + k >= w)
            ref[dst + k - w] = r;
    }
}

/* A table at @below has no free run of table_size clusters under it: make
 * one by moving the data clusters out of the lowest run that holds only
 * free and data clusters into free clusters elsewhere (queued in @mv).
 * Needs the full referrer map.  Returns the run or UINT64_MAX. */
static uint64_t gather_run(struct qed_check *c, uint64_t *ref, uint64_t w, uint64_t lo,
                           uint64_t below, struct data_move *mv, unsigned *nmv)
{
    const uint64_t ts = c->s->header.table_size, cs = c->s->header.cluster_size;
    uint64_t nfree = 0;
    for (uint64_t cl = lo; cl < below; cl++)
        nfree += !test_used(c, cl);
    if (nfree < ts)
        return UINT64_MAX;
    for (uint64_t a = lo; a + ts <= below; a++) {
        uint64_t used_in = 0;
        bool ok = true;
        for (uint64_t k = 0; k < ts && ok; k++) {
            if (!test_used(c, a + k))
                continue;
            used_in++;
            ok = REF_KIND(ref[a + k - w]) == REF_DATA;
        }
        if (!ok || nfree - (ts - used_in) < used_in || *nmv + used_in > QED_COMPACT_BATCH)
            continue;
        uint64_t y = lo;
        for (uint64_t k = 0; k < ts; k++) {
            uint64_t x = a + k;
            if (!test_used(c, x))
                continue;
            while (test_used(c, y) || (y >= a && y < a + ts))
                y++;
            uint64_t r = ref[x - w];
            mv[(*nmv)++] = (struct data_move){ x * cs, y * cs, REF_L1I(r), REF_LOW(r) };
            move_ref(c, ref, w, x, y, 1);
        }
        return a;
    }
    return UINT64_MAX;
}

static int compact(struct qed_check *c)
{
    struct qed_state *s = c->s;
    struct ic_image *img = c->img;
    const uint64_t cs = s->header.cluster_size;
    const uint64_t hs = s->header.header_size;
    const uint64_t ts = s->header.table_size;
    uint64_t end = c->nclusters;
    while (end > hs && !test_used(c, end - 1))
        end--;
    uint64_t used = 0;
    for (uint64_t cl = hs; cl < end; cl++)
        used += test_used(c, cl);
    /* The clusters that may move lie at or above hs + used.  When the whole
     * file fits in the window, map every cluster: that also lets a table
     * that has no free run below it gather one (invariant 2). */
    uint64_t w = end - hs <= QED_COMPACT_MAX_WINDOW ? hs : hs + used, wn = end - w;
    uint64_t *ref = NULL;
    struct data_move *mv = NULL;
    uint8_t *buf = NULL;
    unsigned nmv = 0;
    int ret = 0;
    if (wn > 0 && wn <= QED_COMPACT_MAX_WINDOW) {
        ref = calloc((size_t)wn, sizeof(*ref));
        mv = calloc(QED_COMPACT_BATCH, sizeof(*mv));
        buf = malloc((size_t)cs);
        if (!ref || !mv || !buf) {
            ret = -ENOMEM;
            goto out;
        }
        if ((ret = build_window(c, w, wn, ref)) < 0)
            goto out;
        uint64_t lo = hs;
        for (;;) {
            while (end > hs && !test_used(c, end - 1))
                end--;
            while (lo < end && test_used(c, lo))
                lo++;
            if (lo >= end || end - 1 < w)
                break;
            uint64_t r = ref[end - 1 - w];
            unsigned kind = REF_KIND(r);
            if (kind == REF_DATA) {
                mv[nmv++] = (struct data_move){ (end - 1) * cs, lo * cs, REF_L1I(r), REF_LOW(r) };
                move_ref(c, ref, w, end - 1, lo, 1);
                if (nmv == QED_COMPACT_BATCH) {
                    if ((ret = run_data_batch(c, mv, nmv, buf)) < 0)
                        goto out;
                    nmv = 0;
                }
                continue;
            }
            if (kind != REF_L2 || REF_LOW(r) != ts - 1)
                break; /* the L1 table (or an unknown owner) cannot move */
            uint64_t start = end - ts;
            uint64_t dst = find_free_run(c, lo, start, ts);
            if (dst == UINT64_MAX && w == hs)
                dst = gather_run(c, ref, w, lo, start, mv, &nmv);
            if (dst == UINT64_MAX)
                break;
            /* Pending data moves first: the table copy must carry them. */
            if ((ret = run_data_batch(c, mv, nmv, buf)) < 0)
                goto out;
            nmv = 0;
            if ((ret = move_l2_table(c, REF_L1I(r), dst * cs, buf)) < 0)
                goto out;
            move_ref(c, ref, w, start, dst, ts);
        }
        if ((ret = run_data_batch(c, mv, nmv, buf)) < 0)
            goto out;
        nmv = 0;
    }
    while (end > hs && !test_used(c, end - 1))
        end--;
    if (end < c->nclusters) {
        /* Nothing references the clusters past @end (the switches above
         * are durable), so cutting them loses nothing. */
        ic_io_event(img->file, IC_EV_CHECK_REPAIR);
        ret = ic_io_truncate(img->file, end * cs);
        if (ret == 0)
            ret = ic_io_flush(img->file);
        if (ret < 0)
            goto out;
        c->nclusters = end;
        s->file_size = end * cs;
    }
out:
    free(ref);
    free(mv);
    free(buf);
    return ret;
}

static int64_t count_leaks(const struct qed_check *c)
{
    int64_t leaks = 0;
    for (uint64_t cl = c->s->header.header_size; cl < c->nclusters; cl++)
        leaks += !test_used(c, cl);
    return leaks;
}

int qed_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
              ic_check_result *res)
{
    struct qed_state *s = qed_state_of(img);
    struct qed_check c = {
        .img = img,
        .s = s,
        .res = res,
        .report = report,
        .payload = payload,
    };
    bool any_fix = (fix & (IC_FIX_LEAKS | IC_FIX_ERRORS)) != 0;
    c.dry = any_fix && (fix & IC_CHECK_DRY_RUN);
    c.repair = any_fix && !c.dry && !img->read_only;
    res->total_clusters = IC_DIV_ROUND_UP(s->header.image_size, (uint64_t)s->header.cluster_size);

    int64_t fsize = ic_io_get_size(img->file);
    if (fsize < 0) {
        io_error(&c, (int)fsize, "get the file size", 0);
        return 0;
    }
    /* Check against the file as it is (a failed write may have left the
     * in-memory allocation point past it; nothing references that). */
    s->file_size = qed_start_of_cluster(s, (uint64_t)fsize);
    c.nclusters = s->file_size >> s->cluster_bits;
    c.used = calloc((size_t)(c.nclusters / 8 + 1), 1);
    c.l2 = malloc(s->table_bytes);
    if (!c.used || !c.l2) {
        free(c.used);
        free(c.l2);
        return -ENOMEM;
    }
    check_l1_table(&c);
    int ret = 0;
    if (c.last_error == 0) {
        /* Only count leaks if the entire image was scanned. */
        int64_t leaks = count_leaks(&c);
        if (leaks > 0 && c.repair && (fix & IC_FIX_LEAKS) && res->corruptions == 0) {
            ret = compact(&c);
            if (ret < 0 && ret != -ENOMEM) {
                io_error(&c, ret, "repair leaked clusters", 0);
                ret = 0;
            }
            int64_t left = count_leaks(&c);
            if (ret == 0 && left < leaks) {
                res->leaks_fixed += leaks - left;
                say(&c, "Repaired %" PRId64 " leaked clusters", leaks - left);
            }
            leaks = left;
        }
        res->leaks = leaks;
        if (leaks > 0)
            say(&c, "%" PRId64 " leaked clusters%s", leaks,
                c.dry && (fix & IC_FIX_LEAKS) ? " (would be repaired)" : "");
        if (c.repair && res->corruptions == 0 && res->check_errors == 0 &&
            (s->header.features & QED_F_NEED_CHECK)) {
            int r = qed_clear_need_check(img);
            if (r < 0)
                io_error(&c, r, "clear the need-check flag", 0);
        }
    }
    if (c.repair)
        qed_l2_cache_clear(&s->l2_cache);
    free(c.used);
    free(c.l2);
    return ret;
}

int qed_co_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
                 ic_check_result *res, ic_error **errp)
{
    int ret = qed_check(img, fix, report, payload, res);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "QED check failed: %s",
                            strerror(-ret));
    if (res->corruptions == 0 && res->check_errors == 0) {
        struct qed_state *s = qed_state_of(img);
        if (s->corrupt_unfixed && !img->read_only && (fix & (IC_FIX_LEAKS | IC_FIX_ERRORS)) &&
            !(fix & IC_CHECK_DRY_RUN)) {
            /* A clean repair lifts the write ban of the open-time check. */
            s->corrupt_unfixed = false;
            if (img->state == IC_IMAGE_ERROR)
                img->state = IC_IMAGE_OPEN;
        }
    }
    return 0;
}
