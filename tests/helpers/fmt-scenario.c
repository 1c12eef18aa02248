/*
 * fmt-scenario.c - the scaffolding the qcow2 and QED fault and crash tests
 * share (see fmt-scenario.h).
 *
 * Design notes:
 *  1. Fault scenarios keep a byte-level model (blkverify) of the steps:
 *     every byte is CERTAIN (must read back exactly), OLD_OR_NEW (a step
 *     that may or may not have reached the disk: either value is fine,
 *     nothing else) or ANY (two unsure steps overlapped, or planted
 *     damage).  A durable step makes its range certain again.  Bytes no
 *     step touched must never change.
 *  2. Speed: the first setup of a fault scenario builds the image on the
 *     POSIX backend; the bytes and the model are kept and later setups only
 *     copy them (no create, no fdatasync).  qemu-img check runs once per
 *     distinct surviving file (FNV-1a hash): EIO and ENOSPC, once and
 *     persistent, often leave byte-identical files.
 *  3. Everything format specific comes in through struct fmt_ops (fault
 *     loop) or the scenario's format name (crash loop); this file never
 *     includes a format's private header.
 *  Fault and crash loops: docs/architecture.md (test kinds); qemu-iotests 026.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmt-scenario.h"
#include "util/error.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---- 1. common pieces ------------------------------------------------------ */

int fmt_open_rw(const char *path, ic_open_file_fn fn, void *payload, ic_image **img,
                ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    o.open_file = fn;
    o.payload = payload;
    return ic_image_open(img, path, &o, errp);
}

int fmt_open_target(struct tu_loop_ctx *ctx, ic_image **img, ic_error **errp)
{
    return fmt_open_rw(ctx->path, ctx->open_file, ctx->open_payload, img, errp);
}

static bool info_corrupt(const ic_image_info *info)
{
    for (size_t i = 0; i < info->nb_specific; i++)
        if (!strcmp(info->specific[i].key, "corrupt") && info->specific[i].type == IC_INFO_BOOL)
            return info->specific[i].b;
    return false;
}

int fmt_check_path(const char *path, bool corrupt_bit, ic_check_result *res, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret < 0)
        return ret;
    ret = ic_image_check(img, 0, NULL, NULL, res, errp);
    if (ret == 0 && corrupt_bit) {
        ic_image_info *info = NULL;
        ret = ic_image_get_info(img, &info, errp);
        if (ret == 0 && info_corrupt(info))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "the corrupt bit is set");
        ic_image_info_free(info);
    }
    ic_image_close(img);
    return ret;
}

int fmt_qemu_img_check(const char *path, const char *when, ic_error **errp)
{
    char *out = NULL;
    int rc = tu_sh_out(&out, "qemu-img check -U '%s' 2>&1", path);
    int ret = 0;
    if (rc != 0 && rc != 3)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s%sqemu-img check exit %d: %.300s",
                           when ? when : "", when ? ": " : "", rc, out ? out : "");
    free(out);
    return ret;
}

bool fmt_have_qemu_img(void)
{
    static int have = -1;
    if (have < 0)
        have = tu_have_prog("qemu-img");
    return have;
}

static int close_image(ic_image *img, const char *path, int ret, ic_error **errp)
{
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "%s: close failed: %s", path,
                           strerror(-cret));
    return ret;
}

/* ---- 2. fault scenarios: data ------------------------------------------------ */

/* Byte states of the model (design note 1). */
enum { B_CERTAIN = 0, B_OLD_OR_NEW = 1, B_ANY = 2 };

/* Step @i's data: position dependent; compressible for compressed writes
 * (runs of 64 equal bytes), otherwise pseudo-random. */
static void step_data(const struct fmt_fault_scenario *sc, size_t i, uint8_t *buf, uint64_t len)
{
    if (sc->steps[i].kind == FMT_COMPRESSED) {
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

/* ---- 2. fault scenarios: the model --------------------------------------------- */

static void scenario_free(struct fmt_fault_scenario *sc)
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

/* Marks the scenario's damaged range as readable as anything. */
static void mark_any(struct fmt_fault_scenario *sc)
{
    if (sc->any_len)
        memset(sc->state + sc->any_off, B_ANY, (size_t)sc->any_len);
}

/* Steps that change the virtual size and write no guest data. */
static bool size_step(enum fmt_step_kind k)
{
    return k == FMT_TRUNCATE || k == FMT_RESIZE;
}

/* Resets the model to the state before the pre steps; the buffers are
 * allocated once per scenario (design note 2). */
static void model_init(struct fmt_fault_scenario *sc)
{
    free(sc->violation);
    sc->violation = NULL;
    if (!sc->want) {
        sc->cap = sc->size;
        for (size_t i = 0; i < sc->nsteps; i++)
            if (size_step(sc->steps[i].kind) && sc->steps[i].len > sc->cap)
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
static void step_result(const struct fmt_fault_scenario *sc, const struct fmt_step *st,
                        const uint8_t *data, uint8_t *out)
{
    uint64_t cs = sc->cluster_size;
    switch (st->kind) {
    case FMT_WRITE:
    case FMT_COMPRESSED:
        memcpy(out, data, (size_t)st->len);
        break;
    case FMT_ZERO:
    case FMT_ZERO_UNMAP:
        memset(out, 0, (size_t)st->len);
        break;
    case FMT_DISCARD: {
        /* whole clusters only; they read as zeroes, or as the backing
         * file where v2 has no zero flag to hide it */
        assert_true(cs != 0);
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
    case FMT_TRUNCATE:
    case FMT_RESIZE:
        break;
    }
}

/* Applies a step to the model: durable or not (design note 1). */
static void model_apply(struct fmt_fault_scenario *sc, const struct fmt_step *st,
                        const uint8_t *data, bool durable)
{
    if (size_step(st->kind)) {
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

static void violation(struct fmt_fault_scenario *sc, const char *fmt, ...) IC_PRINTF(2, 3);
static void violation(struct fmt_fault_scenario *sc, const char *fmt, ...)
{
    if (sc->violation)
        return;
    va_list ap;
    va_start(ap, fmt);
    assert_true(vasprintf(&sc->violation, fmt, ap) >= 0);
    va_end(ap);
}

/* ---- 2. fault scenarios: setup / run / check -------------------------------------- */

static int do_step(ic_image *img, const struct fmt_step *st, const uint8_t *data, ic_error **errp)
{
    switch (st->kind) {
    case FMT_WRITE:
        return ic_image_pwrite(img, data, (size_t)st->len, st->off, errp);
    case FMT_ZERO:
        return ic_image_pwrite_zeroes(img, st->off, st->len, 0, errp);
    case FMT_ZERO_UNMAP:
        return ic_image_pwrite_zeroes(img, st->off, st->len, IC_ZERO_MAY_UNMAP, errp);
    case FMT_DISCARD:
        return ic_image_discard(img, st->off, st->len, errp);
    case FMT_COMPRESSED:
        return ic_image_pwrite_compressed(img, data, (size_t)st->len, st->off, errp);
    case FMT_TRUNCATE:
        return ic_image_truncate(img, st->len, errp);
    case FMT_RESIZE:
        return ic_image_resize(img, st->len, (ic_prealloc)st->off, errp);
    }
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "bad step");
}

static uint64_t max_step_len(const struct fmt_fault_scenario *sc)
{
    uint64_t m = 1;
    for (size_t i = 0; i < sc->npre; i++)
        m = IC_MAX(m, sc->pre[i].len);
    for (size_t i = 0; i < sc->nsteps; i++)
        if (!size_step(sc->steps[i].kind))
            m = IC_MAX(m, sc->steps[i].len);
    return m;
}

/* Creates the image (over base.raw when backed) and runs the pre steps. */
static int build(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_fault_scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = sc->ops->format;
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
    if ((ret = fmt_open_rw(ctx->path, NULL, NULL, &img, errp)) < 0)
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
    return close_image(img, ctx->path, ret, errp);
}

static int fault_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_fault_scenario *sc = ctx->payload;
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
        if (sc->damaged) {
            assert_non_null(sc->ops->plant_damage);
            sc->ops->plant_damage(ctx->path);
        }
        mark_any(sc);
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
    mark_any(sc);
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

static int fault_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_fault_scenario *sc = ctx->payload;
    ic_image *img = NULL;
    const char *file = base_name(ctx->path);
    int ret = fmt_open_target(ctx, &img, errp);
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
        const struct fmt_step *st = &sc->steps[i];
        ic_error *err = NULL;
        if (!size_step(st->kind))
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
    ret = close_image(img, ctx->path, ret, errp);
    if (!ctx->rule) {
        for (size_t k = 0; k < sc->nmust; k++)
            if (ic_io_fault_event_count(ctx->io, sc->must_fire[k]) == 0)
                violation(sc, "the dry run never fired event %s",
                          ic_fault_event_name(sc->must_fire[k]));
    }
    return ret;
}

/* Reads the surviving image and compares it with the model. */
static int verify_data(struct fmt_fault_scenario *sc, const char *path, ic_error **errp)
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

/* FNV-1a over the file (design note 2). */
static uint64_t file_hash(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* qemu-img check, once per distinct surviving file. */
static int qemu_check_once(struct fmt_fault_scenario *sc, const char *path, ic_error **errp)
{
    uint8_t *b;
    size_t n;
    assert_int_equal(tu_read_file(path, &b, &n), 0);
    uint64_t h = file_hash(b, n);
    free(b);
    for (size_t i = 0; i < sc->nseen; i++)
        if (sc->seen[i] == h)
            return 0;
    int ret = fmt_qemu_img_check(path, NULL, errp);
    if (ret < 0)
        return ret;
    uint64_t *nv = realloc(sc->seen, (sc->nseen + 1) * sizeof(*nv));
    assert_non_null(nv);
    sc->seen = nv;
    sc->seen[sc->nseen++] = h;
    return 0;
}

/* Opens the image (@payload: its path) as a memory copy: a repairing open
 * writes, and its flushes need not reach the disk (they would cost an
 * fdatasync per run).  The backing file opens read-only as usual. */
static int open_mem_copy(ic_io **out, const char *path, unsigned flags, void *payload,
                         ic_error **errp)
{
    if (strcmp(path, (const char *)payload))
        return ic_io_open_file(out, path, flags, errp); /* the backing file */
    int ret = tu_file_to_mem(out, path);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: %s", path,
                            strerror(-ret));
    return 0;
}

/* A read-write open (which may repair, e.g. QED's need-check) must leave an
 * image that checks with 0 corruptions and 0 check errors. */
static int reopen_rw_and_check(const char *path, ic_error **errp)
{
    ic_image *img = NULL;
    int ret = fmt_open_rw(path, open_mem_copy, (void *)(uintptr_t)path, &img, errp);
    if (ret < 0)
        return ret;
    ic_check_result res;
    memset(&res, 0, sizeof(res));
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && (res.corruptions || res.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "after a read-write open: %" PRId64
                           " corruptions, %" PRId64 " check errors", res.corruptions,
                           res.check_errors);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "%s: close failed: %s", path,
                           strerror(-cret));
    return ret;
}

static int fault_check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    struct fmt_fault_scenario *sc = ctx->payload;
    if (sc->violation)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s", sc->violation);
    int ret = fmt_check_path(ctx->path, true, res, errp);
    if (ret == 0 && sc->damaged && res->corruptions && sc->ops->repair_damage)
        ret = sc->ops->repair_damage(ctx->path, res, errp);
    if (ret == 0 && res->check_errors)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "check hit %" PRId64 " errors",
                           res->check_errors);
    if (ret < 0 || res->corruptions)
        return ret;
    if (sc->qemu_check && fmt_have_qemu_img())
        ret = qemu_check_once(sc, ctx->path, errp);
    if (ret == 0)
        ret = verify_data(sc, ctx->path, errp);
    if (ret == 0 && sc->ops->reopen_rw_check)
        ret = reopen_rw_and_check(ctx->path, errp);
    return ret;
}

void fmt_fault_loop(const struct fmt_ops *ops, struct fmt_fault_scenario *sc)
{
    sc->ops = ops;
    struct tu_fault_loop cfg = {
        .name = sc->name, .target = ops->target, .setup = fault_setup, .run = fault_run,
        .check = fault_check, .payload = sc, .max_nth = sc->max_nth ? sc->max_nth : 8,
        .any_write_max = 6, .any_flush_max = 6, .event_flush = true,
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

/* ---- 3. crash scenarios -------------------------------------------------------- */

int fmt_crash_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_crash_scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = sc->format;
    co.options = sc->opts;
    co.size = sc->disk;
    co.size_set = true;
    if (sc->backing) {
        char *base = tu_path(ctx->dir, "base.raw");
        struct tu_model *m = tu_model_new(sc->disk);
        tu_fill_pattern(m->data, (size_t)sc->disk, sc->backing_seed);
        assert_int_equal(tu_model_save(m, base), 0);
        tu_model_free(m);
        free(base);
        co.backing_file = "base.raw";
        co.backing_format = "raw";
        co.size_set = !sc->size_from_backing;
    }
    return ic_image_create(ctx->path, &co, errp);
}

size_t fmt_crash_max_len(const struct fmt_crash_scenario *sc)
{
    size_t m = 1;
    for (size_t i = 0; i < sc->nops; i++)
        m = IC_MAX(m, (size_t)sc->ops[i].len);
    return m;
}

int fmt_crash_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_crash_scenario *sc = ctx->payload;
    unsigned every = sc->flush_every ? sc->flush_every : 1;
    sc->durable = 0;
    ic_image *img = NULL;
    int ret = fmt_open_target(ctx, &img, errp);
    if (ret < 0)
        return ret;
    uint8_t *buf = malloc(fmt_crash_max_len(sc));
    assert_non_null(buf);
    for (size_t i = 0; i < sc->nops && ret == 0; i++) {
        const struct fmt_crash_op *op = &sc->ops[i];
        if (op->zero) {
            ret = ic_image_pwrite_zeroes(img, op->off, op->len, 0, errp);
        } else {
            tu_fill_pattern(buf, op->len, sc->data_seed + i);
            ret = ic_image_pwrite(img, buf, op->len, op->off, errp);
        }
        if (ret == 0 && (i % every == every - 1 || i == sc->nops - 1)) {
            ret = ic_image_flush(img, errp);
            if (ret == 0)
                sc->durable = (unsigned)i + 1;
        }
    }
    free(buf);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed: %s", strerror(-cret));
    return ret;
}

int fmt_crash_check_ops(const struct fmt_crash_scenario *sc, ic_image *img, bool crashed,
                        ic_error **errp)
{
    size_t maxw = fmt_crash_max_len(sc);
    uint8_t *want = malloc(maxw), *got = malloc(maxw), *old = malloc((size_t)sc->disk);
    assert_true(want && got && old);
    if (sc->backing)
        tu_fill_pattern(old, (size_t)sc->disk, sc->backing_seed);
    else
        memset(old, 0, (size_t)sc->disk);
    int ret = 0;
    for (size_t i = 0; i < sc->nops && ret == 0; i++) {
        const struct fmt_crash_op *op = &sc->ops[i];
        if (op->zero)
            memset(want, 0, op->len);
        else
            tu_fill_pattern(want, op->len, sc->data_seed + i);
        ret = ic_image_pread(img, got, op->len, op->off, errp);
        if (ret < 0)
            break;
        if (i < sc->durable || !crashed) {
            if (memcmp(want, got, op->len))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "durable write %zu (offset %"
                                   PRIu64 ") reads back wrong", i, op->off);
            continue;
        }
        if (!sc->backing)
            continue; /* unflushed data without a backing file may read anything */
        /* per 512-byte sector of the guest: old or new */
        uint64_t end = op->off + op->len;
        for (uint64_t a = op->off; a < end && ret == 0;) {
            uint64_t next = IC_MIN((a | 511) + 1, end);
            size_t k = (size_t)(a - op->off), n = (size_t)(next - a);
            if (memcmp(got + k, want + k, n) && memcmp(got + k, old + a, n))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "write %zu: bytes at %" PRIu64
                                   " are neither old nor new", i, a);
            a = next;
        }
    }
    /* the bytes before the first write (never written) are untouched */
    if (ret == 0 && sc->untouched_head) {
        size_t n = (size_t)sc->untouched_head;
        assert_true(n <= maxw);
        ret = ic_image_pread(img, got, n, 0, errp);
        if (ret == 0 && memcmp(got, old, n))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "bytes before the first write changed");
    }
    free(want);
    free(got);
    free(old);
    return ret;
}

void fmt_crash_loop(struct fmt_crash_scenario *sc)
{
    if (sc->needs_qemu_img && !fmt_have_qemu_img()) {
        skip();
        return;
    }
    char target[64];
    snprintf(target, sizeof(target), "t.%s", sc->format);
    struct tu_crash_loop cfg = {
        .name = sc->name,
        .target = target,
        .setup = fmt_crash_setup,
        .run = fmt_crash_run,
        .verify = sc->verify,
        .payload = sc,
        .seeds = sc->seeds,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= sc->min_crash_points);
}
