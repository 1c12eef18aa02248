/*
 * test-qcow2-errpath.c - EIO and ENOSPC at every named metadata event (once
 * and persistent, nth = 1..3) and at each of the first pwrites, during the
 * qcow2 data-path operations that change metadata (CONVENTIONS.md section
 * 3, qemu-iotests 026).  Snapshot create/apply/delete have their own loop
 * in test-qcow2-snapshot-errpath.c.
 *
 * Design notes:
 *  1. Each scenario is a small image (setup: create, optional raw backing
 *     file, a few "pre" steps on clean backends) and a list of steps run
 *     on the faulty backend.  Every step is followed by a guest flush; a
 *     step is DURABLE when both returned 0.  After a failed step the run
 *     goes on with the next ones (with a "once" rule the engine must keep
 *     working after an error, as in qemu's 026 which keeps the image open)
 *     and finally returns the first error.
 *  2. A byte-level model (blkverify) follows the steps: every byte is
 *     CERTAIN (must read back exactly), OLD_OR_NEW (a step that may or may
 *     not have reached the disk: either value is fine, nothing else) or
 *     ANY (two unsure steps overlapped).  A durable step makes its range
 *     certain again.  Bytes no step touched must never change.
 *  3. Pass criterion for each run (the loop in tests/helpers/loops.c judges
 *     the first ones): the run succeeded, or failed with ret < 0 and an
 *     error that names the image file; no later step failed with a
 *     corruption; the surviving file checks with 0 corruptions and 0 check
 *     errors (leaks allowed) with ic_image_check and with qemu-img check;
 *     the qcow2 corrupt bit is clear; every byte reads back as the model
 *     allows; the virtual size is the old or the new one (certain after a
 *     durable resize).
 *  4. The dry run (no rule) must fire the events that make the scenario
 *     worth running (e.g. reftable_grow for the refcount growth scenario),
 *     so a change in the engine cannot silently turn a scenario into a
 *     no-op.
 *  5. Speed: the first setup() builds the image on the POSIX backend; the
 *     bytes are kept and later setups only copy them (no create, no
 *     fdatasync).  qemu-img check runs once per distinct surviving file.
 *  6. Besides every event x {EIO, ENOSPC} x {once, persistent} x nth 1..2,
 *     the loop fails the first pwrites and flushes, and (event_flush) the
 *     first flush after each event: the metadata write lands but is not
 *     known durable, the case where memory and disk can disagree.
 *  Reference: qcow2-qed.md section 1.13 (write ordering); qemu-iotests 026.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "util/error.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

enum step_kind { ST_WRITE, ST_ZERO, ST_ZERO_UNMAP, ST_DISCARD, ST_COMPRESSED, ST_TRUNCATE };

struct step {
    enum step_kind kind;
    uint64_t off;
    uint64_t len; /* ST_TRUNCATE: the new virtual size */
};

/* Byte states of the model (design note 2). */
enum { B_CERTAIN = 0, B_OLD_OR_NEW = 1, B_ANY = 2 };

/* Most events a scenario requires its dry run to fire. */
#define MAX_MUST_FIRE 4

struct scenario {
    const char *name;
    const char *opts;          /* qemu-img -o string */
    uint64_t size;             /* initial virtual size */
    bool backing;              /* raw backing file with a pattern */
    bool v2;                   /* compat=0.10 (no zero flag) */
    uint32_t cluster_size;
    const struct step *pre;
    size_t npre;
    const struct step *steps;
    size_t nsteps;
    int must_fire[MAX_MUST_FIRE];
    size_t nmust;
    bool qemu_check;           /* also run qemu-img check on every surviving file */
    unsigned max_nth;          /* occurrences of each event to fail (0 = 8) */

    /* built by the first setup(), copied by the others (design note 5) */
    uint8_t *t_img, *t_want;
    size_t t_img_len;
    char *t_dir;               /* holds base.raw; each run links to it */
    uint8_t *got;              /* read buffer of verify_data() */
    /* hashes of surviving files qemu-img check already passed */
    uint64_t *seen;
    size_t nseen;

    /* per-run state, reset by setup() */
    uint64_t cap;              /* model capacity: the largest virtual size */
    uint8_t *want, *alt, *state;
    uint64_t size_old, size_new;
    bool size_certain;
    char *violation;           /* first problem run() saw, reported by check() */
};

/* ---- data ------------------------------------------------------------------ */

/* Step @i's data: position dependent; compressible for compressed writes
 * (runs of 64 equal bytes), otherwise pseudo-random. */
static void step_data(const struct scenario *sc, size_t i, uint8_t *buf, uint64_t len)
{
    if (sc->steps[i].kind == ST_COMPRESSED) {
        for (uint64_t j = 0; j < len; j++)
            buf[j] = (uint8_t)(0x40 + i * 13 + ((sc->steps[i].off + j) >> 6));
        return;
    }
    tu_fill_pattern(buf, (size_t)len, 100 + i);
}

static void pre_data(size_t i, uint8_t *buf, uint64_t len)
{
    tu_fill_pattern(buf, (size_t)len, 500 + i);
}

/* The backing file's contents (first @len bytes of one cached pattern:
 * generating it for every run would dominate the loop's time). */
#define BACKING_MAX (17 * MiB)
static const uint8_t *backing_pattern(void)
{
    static uint8_t *pattern;
    if (!pattern) {
        pattern = malloc((size_t)BACKING_MAX);
        assert_non_null(pattern);
        tu_fill_pattern(pattern, (size_t)BACKING_MAX, 7);
    }
    return pattern;
}

static void backing_data(uint8_t *buf, uint64_t len)
{
    assert_true(len <= BACKING_MAX);
    memcpy(buf, backing_pattern(), (size_t)len);
}

/* ---- the model --------------------------------------------------------------- */

static void scenario_free(struct scenario *sc)
{
    free(sc->want);
    free(sc->alt);
    free(sc->state);
    free(sc->got);
    free(sc->violation);
    free(sc->t_img);
    free(sc->t_want);
    free(sc->seen);
    if (sc->t_dir)
        tu_rmtree(sc->t_dir);
    free(sc->t_dir);
    sc->want = sc->alt = sc->state = sc->got = sc->t_img = sc->t_want = NULL;
    sc->violation = sc->t_dir = NULL;
    sc->seen = NULL;
    sc->nseen = 0;
}

/* Resets the model to the state before the pre steps; the buffers are
 * allocated once per scenario (design note 5). */
static void model_init(struct scenario *sc)
{
    free(sc->violation);
    sc->violation = NULL;
    if (!sc->want) {
        sc->cap = sc->size;
        for (size_t i = 0; i < sc->nsteps; i++)
            if (sc->steps[i].kind == ST_TRUNCATE && sc->steps[i].len > sc->cap)
                sc->cap = sc->steps[i].len;
        sc->want = calloc(1, (size_t)sc->cap);
        sc->alt = calloc(1, (size_t)sc->cap);
        sc->state = calloc(1, (size_t)sc->cap);
        sc->got = malloc((size_t)sc->cap);
        assert_true(sc->want && sc->alt && sc->state && sc->got);
    }
    memset(sc->state, B_CERTAIN, (size_t)sc->cap);
    memset(sc->want, 0, (size_t)sc->cap);
    if (sc->backing)
        backing_data(sc->want, sc->size);
    sc->size_old = sc->size_new = sc->size;
    sc->size_certain = true;
}

/* What [off, off+len) of step @st reads as afterwards, into @out (which
 * holds the current expectation on entry).  @data: the written bytes. */
static void step_result(const struct scenario *sc, const struct step *st, const uint8_t *data,
                        uint8_t *out)
{
    uint64_t cs = sc->cluster_size;
    switch (st->kind) {
    case ST_WRITE:
    case ST_COMPRESSED:
        memcpy(out, data, (size_t)st->len);
        break;
    case ST_ZERO:
    case ST_ZERO_UNMAP:
        memset(out, 0, (size_t)st->len);
        break;
    case ST_DISCARD: {
        /* whole clusters only; they read as zeroes, or as the backing
         * file where v2 has no zero flag to hide it */
        uint64_t end = st->off + st->len;
        uint64_t zs = IC_ALIGN_UP(st->off, cs);
        uint64_t ze = end == sc->size_new ? IC_ALIGN_UP(end, cs) : IC_ALIGN_DOWN(end, cs);
        ze = IC_MIN(ze, end);
        if (zs >= ze)
            break;
        uint8_t *p = out + (zs - st->off);
        if (sc->backing && sc->v2) {
            const uint8_t *bk = backing_pattern();
            for (uint64_t a = zs; a < ze; a++)
                p[a - zs] = a < sc->size ? bk[a] : 0;
        } else {
            memset(p, 0, (size_t)(ze - zs));
        }
        break;
    }
    case ST_TRUNCATE:
        break;
    }
}

/* Applies a step to the model: durable or not (design note 2). */
static void model_apply(struct scenario *sc, const struct step *st, const uint8_t *data,
                        bool durable)
{
    if (st->kind == ST_TRUNCATE) {
        if (durable) {
            sc->size_old = sc->size_new = st->len;
            sc->size_certain = true;
        } else {
            sc->size_new = st->len;
            sc->size_certain = false;
        }
        return;
    }
    uint8_t *res = malloc((size_t)st->len);
    assert_non_null(res);
    memcpy(res, sc->want + st->off, (size_t)st->len);
    step_result(sc, st, data, res);
    for (uint64_t j = 0; j < st->len; j++) {
        uint64_t a = st->off + j;
        if (durable) {
            sc->want[a] = res[j];
            sc->state[a] = B_CERTAIN;
        } else if (sc->state[a] == B_CERTAIN) {
            if (res[j] != sc->want[a]) {
                sc->alt[a] = res[j];
                sc->state[a] = B_OLD_OR_NEW;
            }
        } else if (sc->state[a] == B_OLD_OR_NEW && res[j] != sc->want[a] &&
                   res[j] != sc->alt[a]) {
            sc->state[a] = B_ANY;
        }
    }
    free(res);
}

static void violation(struct scenario *sc, const char *fmt, ...) IC_PRINTF(2, 3);
static void violation(struct scenario *sc, const char *fmt, ...)
{
    if (sc->violation)
        return;
    va_list ap;
    va_start(ap, fmt);
    assert_true(vasprintf(&sc->violation, fmt, ap) >= 0);
    va_end(ap);
}

/* ---- setup / run / check ------------------------------------------------------- */

static int open_rw(const char *path, ic_open_file_fn fn, void *payload, ic_image **img,
                   ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    o.open_file = fn;
    o.payload = payload;
    return ic_image_open(img, path, &o, errp);
}

static int do_step(ic_image *img, const struct step *st, const uint8_t *data, ic_error **errp)
{
    switch (st->kind) {
    case ST_WRITE:
        return ic_image_pwrite(img, data, (size_t)st->len, st->off, errp);
    case ST_ZERO:
        return ic_image_pwrite_zeroes(img, st->off, st->len, 0, errp);
    case ST_ZERO_UNMAP:
        return ic_image_pwrite_zeroes(img, st->off, st->len, IC_ZERO_MAY_UNMAP, errp);
    case ST_DISCARD:
        return ic_image_discard(img, st->off, st->len, errp);
    case ST_COMPRESSED:
        return ic_image_pwrite_compressed(img, data, (size_t)st->len, st->off, errp);
    case ST_TRUNCATE:
        return ic_image_truncate(img, st->len, errp);
    }
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "bad step");
}

static uint64_t max_step_len(const struct scenario *sc)
{
    uint64_t m = 1;
    for (size_t i = 0; i < sc->npre; i++)
        m = IC_MAX(m, sc->pre[i].len);
    for (size_t i = 0; i < sc->nsteps; i++)
        if (sc->steps[i].kind != ST_TRUNCATE)
            m = IC_MAX(m, sc->steps[i].len);
    return m;
}

/* Creates the image (and its backing file) and runs the pre steps. */
static int build(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = sc->opts;
    co.size = sc->size;
    co.size_set = true;
    if (sc->backing) {
        co.backing_file = "base.raw";
        co.backing_format = "raw";
    }
    int ret = ic_image_create(ctx->path, &co, errp);
    if (ret < 0)
        return ret;
    ic_image *img = NULL;
    if ((ret = open_rw(ctx->path, NULL, NULL, &img, errp)) < 0)
        return ret;
    uint8_t *buf = malloc((size_t)max_step_len(sc));
    assert_non_null(buf);
    for (size_t i = 0; i < sc->npre && ret == 0; i++) {
        pre_data(i, buf, sc->pre[i].len);
        ret = do_step(img, &sc->pre[i], buf, errp);
        if (ret == 0)
            model_apply(sc, &sc->pre[i], buf, true);
    }
    free(buf);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "%s: close failed: %s", ctx->path,
                           strerror(-cret));
    return ret;
}

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    if (sc->backing) {
        /* one backing file per scenario, linked into each run's dir */
        if (!sc->t_dir) {
            sc->t_dir = tu_tmpdir();
            char *tb = tu_path(sc->t_dir, "base.raw");
            struct tu_model *m = tu_model_new(sc->size);
            backing_data(m->data, sc->size);
            assert_int_equal(tu_model_save(m, tb), 0);
            tu_model_free(m);
            free(tb);
        }
        char *tb = tu_path(sc->t_dir, "base.raw"), *base = tu_path(ctx->dir, "base.raw");
        assert_int_equal(symlink(tb, base), 0);
        free(tb);
        free(base);
    }
    if (!sc->t_img) {
        model_init(sc);
        int ret = build(ctx, errp);
        if (ret < 0)
            return ret;
        assert_int_equal(tu_read_file(ctx->path, &sc->t_img, &sc->t_img_len), 0);
        sc->t_want = malloc((size_t)sc->cap);
        assert_non_null(sc->t_want);
        memcpy(sc->t_want, sc->want, (size_t)sc->cap);
        return 0;
    }
    assert_int_equal(tu_write_file(ctx->path, sc->t_img, sc->t_img_len), 0);
    free(sc->violation);
    sc->violation = NULL;
    memset(sc->state, B_CERTAIN, (size_t)sc->cap);
    memcpy(sc->want, sc->t_want, (size_t)sc->cap);
    sc->size_old = sc->size_new = sc->size;
    sc->size_certain = true;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_image *img = NULL;
    const char *file = base_name(ctx->path);
    int ret = open_rw(ctx->path, ctx->open_file, ctx->open_payload, &img, errp);
    if (ret < 0) {
        const char *msg = errp && *errp ? ic_error_message(*errp) : "";
        if (!strstr(msg, file))
            violation(sc, "the open failed with a message that does not name %s: '%s'", file,
                      msg);
        return ret;
    }
    uint8_t *buf = malloc((size_t)max_step_len(sc));
    assert_non_null(buf);
    for (size_t i = 0; i < sc->nsteps; i++) {
        const struct step *st = &sc->steps[i];
        ic_error *err = NULL;
        if (st->kind != ST_TRUNCATE)
            step_data(sc, i, buf, st->len);
        int r = do_step(img, st, buf, &err);
        if (r == 0)
            r = ic_image_flush(img, &err);
        model_apply(sc, st, buf, r == 0);
        if (r == 0)
            continue;
        const char *msg = err ? ic_error_message(err) : "";
        if (!strstr(msg, file))
            violation(sc, "step %zu failed with a message that does not name %s: '%s'", i,
                      file, msg);
        /* an I/O error is never a reason to call the image corrupt */
        if (strstr(msg, "corrupt"))
            violation(sc, "step %zu signalled corruption: '%s'", i, msg);
        if (ret == 0) {
            ret = r;
            ic_error_propagate(errp, err);
        } else {
            ic_error_free(err);
        }
    }
    free(buf);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "%s: close failed: %s", ctx->path,
                           strerror(-cret));
    if (!ctx->rule) {
        for (size_t k = 0; k < sc->nmust; k++)
            if (ic_io_fault_event_count(ctx->io, sc->must_fire[k]) == 0)
                violation(sc, "the dry run never fired event %s",
                          ic_fault_event_name(sc->must_fire[k]));
    }
    return ret;
}

static bool info_corrupt(const ic_image_info *info)
{
    for (size_t i = 0; i < info->nb_specific; i++)
        if (!strcmp(info->specific[i].key, "corrupt") && info->specific[i].type == IC_INFO_BOOL)
            return info->specific[i].b;
    return false;
}

/* Reads the surviving image and compares it with the model. */
static int verify_data(struct scenario *sc, const char *path, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret < 0)
        return ret;
    uint64_t size = ic_image_size(img);
    if (size != sc->size_new && (sc->size_certain || size != sc->size_old)) {
        ic_image_close(img);
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "virtual size %" PRIu64 " is neither %"
                            PRIu64 " nor %" PRIu64, size, sc->size_old, sc->size_new);
    }
    uint8_t *got = sc->got;
    ret = ic_image_pread(img, got, (size_t)size, 0, errp);
    /* byte by byte only in the 4 KiB chunks that differ from `want` */
    for (uint64_t c = 0; ret == 0 && c < size; c += 4 * KiB) {
        uint64_t n = IC_MIN(4 * KiB, size - c);
        if (!memcmp(got + c, sc->want + c, (size_t)n))
            continue;
        for (uint64_t a = c; ret == 0 && a < c + n; a++) {
            bool ok = sc->state[a] == B_ANY || got[a] == sc->want[a] ||
                      (sc->state[a] == B_OLD_OR_NEW && got[a] == sc->alt[a]);
            if (!ok)
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "byte at %#" PRIx64 " reads %#x, "
                                   "expected %#x%s", a, got[a], sc->want[a],
                                   sc->state[a] == B_OLD_OR_NEW ? " or the new value" : "");
        }
    }
    ic_image_close(img);
    return ret;
}

static bool have_qemu_img(void)
{
    static int have = -1;
    if (have < 0)
        have = tu_have_prog("qemu-img");
    return have;
}

/* FNV-1a over the file: EIO and ENOSPC (and often once and persistent)
 * leave byte-identical files; qemu-img checks each distinct one once. */
static uint64_t file_hash(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int qemu_check(struct scenario *sc, const char *path, ic_error **errp)
{
    uint8_t *b;
    size_t n;
    assert_int_equal(tu_read_file(path, &b, &n), 0);
    uint64_t h = file_hash(b, n);
    free(b);
    for (size_t i = 0; i < sc->nseen; i++)
        if (sc->seen[i] == h)
            return 0;
    /* 0 clean, 3 leaks only: both fine; 1 check error, 2 corruption */
    int rc = tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", path);
    if (rc != 0 && rc != 3)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "qemu-img check exit %d", rc);
    uint64_t *nv = realloc(sc->seen, (sc->nseen + 1) * sizeof(*nv));
    assert_non_null(nv);
    sc->seen = nv;
    sc->seen[sc->nseen++] = h;
    return 0;
}

static int check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    if (sc->violation)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s", sc->violation);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    ret = ic_image_check(img, 0, NULL, NULL, res, errp);
    ic_image_info *info = NULL;
    if (ret == 0)
        ret = ic_image_get_info(img, &info, errp);
    if (ret == 0 && info_corrupt(info))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "the corrupt bit is set");
    ic_image_info_free(info);
    ic_image_close(img);
    if (ret == 0 && res->check_errors)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "check hit %" PRId64 " errors",
                           res->check_errors);
    if (ret == 0 && res->corruptions == 0 && sc->qemu_check && have_qemu_img())
        ret = qemu_check(sc, ctx->path, errp);
    if (ret == 0 && res->corruptions == 0)
        ret = verify_data(sc, ctx->path, errp);
    return ret;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void loop(struct scenario *sc)
{
    struct tu_fault_loop cfg = {
        .name = sc->name, .target = "t.qcow2", .setup = setup, .run = run, .check = check,
        .payload = sc, .max_nth = sc->max_nth ? sc->max_nth : 8, .any_write_max = 6, .any_flush_max = 6,
        .event_flush = true,
    };
    /* under valgrind (tests/run.sh with VALGRIND=1 sets IC_WRAP) only the
     * first occurrence of each event: the full loop would take hours */
    const char *wrap = getenv("IC_WRAP");
    if (wrap && *wrap) {
        cfg.max_nth = 1;
        cfg.any_write_max = cfg.any_flush_max = 2;
        cfg.event_flush = false;
    }
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    scenario_free(sc);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.runs_injected > 0);
    assert_true(sum.runs_failed_cleanly > 0);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 4 KiB clusters: one L2 table maps 2 MiB. */
static const struct step alloc_pre[] = {
    { ST_WRITE, 0, 64 * KiB },
};
static const struct step alloc_steps[] = {
    { ST_WRITE, 2 * MiB + 4 * KiB, 12 * KiB },        /* new L2 table, whole clusters */
    { ST_WRITE, 4 * MiB + 1000, 3000 },               /* new L2, COW head and tail */
    { ST_WRITE, 6 * MiB - 6 * KiB, 12 * KiB },        /* spans two tables, one new */
    { ST_WRITE, 100, 8 * KiB },                       /* rewrite in place + COW */
    { ST_WRITE, 64 * KiB + 512, 512 },                /* new cluster in an old table */
};

static void test_qcow2_errpath__allocating_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 allocating writes", .opts = "cluster_size=4096", .size = 8 * MiB,
        .cluster_size = 4096, .pre = alloc_pre, .npre = N(alloc_pre),
        .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_L1_UPDATE, IC_EV_COW_WRITE, IC_EV_CLUSTER_ALLOC },
        .nmust = 4, .qemu_check = true,
    };
    loop(&sc);
}

static void test_qcow2_errpath__allocating_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 allocating writes over a backing file", .opts = "cluster_size=4096",
        .size = 8 * MiB, .backing = true, .cluster_size = 4096,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_COW_READ, IC_EV_COW_WRITE, IC_EV_L2_UPDATE },
        .nmust = 4, .qemu_check = true,
    };
    loop(&sc);
}

static void test_qcow2_errpath__allocating_writes_with_lazy_refcounts_fail_cleanly(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 allocating writes with lazy refcounts",
        .opts = "cluster_size=4096,lazy_refcounts=on", .size = 8 * MiB, .cluster_size = 4096,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_HEADER_UPDATE, IC_EV_COW_WRITE }, .nmust = 3,
        .qemu_check = true,
    };
    loop(&sc);
}

/* Extended L2 entries (32 subclusters of 512 bytes per 16 KiB cluster):
 * subcluster allocation, COW of partial subclusters, zero subclusters. */
static const struct step ext_pre[] = {
    { ST_WRITE, 0, 32 * KiB },
};
static const struct step ext_steps[] = {
    { ST_WRITE, 40 * KiB + 512, 1024 },           /* two subclusters of a new cluster */
    { ST_WRITE, 40 * KiB + 4096 + 100, 300 },     /* partial subcluster, same cluster */
    { ST_ZERO, 8 * KiB, 2 * KiB },                /* zero subclusters in place */
    { ST_WRITE, 16 * MiB + 1000, 3000 },          /* new L2 table */
    { ST_ZERO_UNMAP, 16 * KiB, 16 * KiB },        /* a whole cluster */
    { ST_DISCARD, 40 * KiB, 16 * KiB },
};

static void test_qcow2_errpath__extended_l2_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 extended L2 writes over a backing file",
        .opts = "cluster_size=16384,extended_l2=on", .size = 17 * MiB, .backing = true,
        .cluster_size = 16384, .pre = ext_pre, .npre = N(ext_pre),
        .steps = ext_steps, .nsteps = N(ext_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_COW_WRITE }, .nmust = 2, .qemu_check = true,
        .max_nth = 4,
    };
    loop(&sc);
}

/* 512-byte clusters with 64-bit refcounts: a refblock covers 64 clusters
 * (32 KiB) and the first reftable cluster 64 refblocks (2 MiB of file). */
static const struct step reftable_pre[] = {
    { ST_WRITE, 0, 900 * KiB },
};
static const struct step reftable_steps[] = {
    { ST_WRITE, 900 * KiB, 160 * KiB },
    { ST_WRITE, 3 * MiB, 4 * KiB },
    { ST_WRITE, 1000, 100 },
};

static void test_qcow2_errpath__refcount_table_growth_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 refcount table growth", .opts = "cluster_size=512,refcount_bits=64",
        .size = 4 * MiB, .cluster_size = 512, .pre = reftable_pre, .npre = N(reftable_pre),
        .steps = reftable_steps, .nsteps = N(reftable_steps),
        .must_fire = { IC_EV_REFTABLE_GROW, IC_EV_REFBLOCK_ALLOC_SWITCH_TABLE,
                       IC_EV_REFBLOCK_ALLOC_WRITE, IC_EV_REFTABLE_UPDATE },
        .nmust = 4, .qemu_check = true,
        .max_nth = 4, /* refblock events fire dozens of times with 512 B clusters */
    };
    loop(&sc);
}

/* 4 MiB disk with 4 KiB clusters: a two-entry L1; growing to 8 MiB needs
 * 4 entries (a new table: the old one is freed).  The write after the
 * resize allocates an L2 table for an entry the OLD table already had: if
 * a failed resize left the header pointing at the new table while memory
 * kept the old one, that write would be lost. */
static const struct step l1_pre[] = {
    { ST_WRITE, 0, 8 * KiB },
};
static const struct step l1_steps[] = {
    { ST_TRUNCATE, 0, 8 * MiB },
    { ST_WRITE, 2 * MiB + 512, 8 * KiB },
    { ST_WRITE, 8 * MiB - 4 * KiB, 4 * KiB },
    { ST_WRITE, 4 * KiB, 4 * KiB },
};

static void test_qcow2_errpath__l1_growth_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 L1 growth", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = l1_pre, .npre = N(l1_pre),
        .steps = l1_steps, .nsteps = N(l1_steps),
        .must_fire = { IC_EV_L1_GROW_ALLOC, IC_EV_L1_GROW_WRITE, IC_EV_L1_GROW_ACTIVATE,
                       IC_EV_CLUSTER_FREE },
        .nmust = 4, .qemu_check = true,
    };
    loop(&sc);
}

/* Zero writes (keep and unmap) and discards over data, unallocated
 * clusters and partial clusters. */
static const struct step zero_pre[] = {
    { ST_WRITE, 0, 256 * KiB },
    { ST_WRITE, 2 * MiB, 64 * KiB },
};
static const struct step zero_steps[] = {
    { ST_ZERO, 8 * KiB, 16 * KiB },            /* whole clusters, kept allocated (v3) */
    { ST_ZERO_UNMAP, 32 * KiB, 16 * KiB },     /* whole clusters, freed */
    { ST_ZERO, 60 * KiB + 100, 10 * KiB },     /* partial edges written as data */
    { ST_DISCARD, 100 * KiB, 40 * KiB + 300 }, /* discard, unaligned end */
    { ST_ZERO, 4 * MiB, 64 * KiB },            /* unallocated: new table when backed */
    { ST_DISCARD, 2 * MiB, 64 * KiB },         /* a whole table's data */
    { ST_WRITE, 32 * KiB, 8 * KiB },           /* reuse freed clusters */
};

static void test_qcow2_errpath__zero_writes_and_discards_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 zero writes and discards", .opts = "cluster_size=4096", .size = 8 * MiB,
        .cluster_size = 4096, .pre = zero_pre, .npre = N(zero_pre),
        .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE }, .nmust = 2, .qemu_check = true,
    };
    loop(&sc);
}

static void test_qcow2_errpath__zero_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 zero writes and discards over a backing file", .opts = "cluster_size=4096",
        .size = 8 * MiB, .backing = true, .cluster_size = 4096,
        .pre = zero_pre, .npre = N(zero_pre), .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE, IC_EV_L2_ALLOC }, .nmust = 3,
        .qemu_check = true,
    };
    loop(&sc);
}

static void test_qcow2_errpath__v2_zero_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 v2 zero writes and discards over a backing file",
        .opts = "cluster_size=4096,compat=0.10", .size = 8 * MiB, .backing = true, .v2 = true,
        .cluster_size = 4096, .pre = zero_pre, .npre = N(zero_pre),
        .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE }, .nmust = 2, .qemu_check = true,
    };
    loop(&sc);
}

/* Compressed clusters: new tables, packing several into one host cluster,
 * overwriting compressed with compressed and with plain data. */
static const struct step comp_pre[] = {
    { ST_WRITE, 0, 16 * KiB },
};
static const struct step comp_steps[] = {
    { ST_COMPRESSED, 16 * KiB, 4 * KiB },
    { ST_COMPRESSED, 20 * KiB, 4 * KiB },
    { ST_COMPRESSED, 2 * MiB, 4 * KiB },        /* new L2 table */
    { ST_COMPRESSED, 0, 4 * KiB },              /* replaces a plain cluster */
    { ST_COMPRESSED, 16 * KiB, 4 * KiB },       /* replaces a compressed one */
    { ST_WRITE, 20 * KiB + 1000, 1000 },        /* COW from a compressed cluster */
};

static void test_qcow2_errpath__compressed_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct scenario sc = {
        .name = "qcow2 compressed writes", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = comp_pre, .npre = N(comp_pre),
        .steps = comp_steps, .nsteps = N(comp_steps),
        .must_fire = { IC_EV_DATA_WRITE_COMPRESSED, IC_EV_L2_UPDATE_COMPRESSED,
                       IC_EV_L2_ALLOC, IC_EV_CLUSTER_FREE },
        .nmust = 4, .qemu_check = true,
    };
    loop(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_errpath__allocating_writes_fail_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_errpath__allocating_writes_over_a_backing_file_fail_cleanly),
        cmocka_unit_test(test_qcow2_errpath__allocating_writes_with_lazy_refcounts_fail_cleanly),
        cmocka_unit_test(test_qcow2_errpath__extended_l2_writes_fail_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_errpath__refcount_table_growth_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_errpath__l1_growth_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_errpath__zero_writes_and_discards_fail_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_errpath__zero_writes_over_a_backing_file_fail_cleanly),
        cmocka_unit_test(test_qcow2_errpath__v2_zero_writes_over_a_backing_file_fail_cleanly),
        cmocka_unit_test(test_qcow2_errpath__compressed_writes_fail_cleanly_at_every_event),
    };
    /* IC_TEST_FILTER=pattern runs only the matching tests */
    if (getenv("IC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("IC_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
