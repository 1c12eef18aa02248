/*
 * test-qcow2-crash.c - qcow2 allocating writes crashed at every flush
 * (CONVENTIONS.md section 4; SQLite crash tests).
 *
 * The run creates nothing itself (setup does): it opens the image, makes
 * allocating writes that create L2 tables, refcount blocks and grow the
 * refcount table (512-byte clusters with 64-bit refcounts: one refblock
 * covers 32 KiB and one reftable cluster 2 MiB), with a guest flush after
 * every other write.  For N = 1, 2, ... the run is crashed at its Nth
 * flush; unflushed writes are applied, dropped or torn.  The surviving
 * image must then:
 *   - pass `qemu-img check` with 0 corruptions (leaks allowed);
 *   - open, and read back every write a completed guest flush made
 *     durable;
 *   - over a backing file: read, per 512-byte sector of every other write,
 *     either the old or the new contents;
 *   - after a read-write open (repairs a dirty lazy-refcount image) and a
 *     clean close, still pass `qemu-img check` with 0 corruptions.
 * The loop prints N and the seed of a failing run.
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
#include <cmocka.h>

#include "testutil.h"
#include "util/error.h"

#define DISK (4u << 20)
#define NWRITES 8
#define MAXW (1200u << 10)

struct scenario {
    bool backing;
    const char *opts;
    unsigned durable;
};

struct wr {
    uint64_t off;
    uint32_t len;
};

/* Non-overlapping; together about 2.6 MiB of 512-byte clusters, so the
 * file passes the 2 MiB a one-cluster reftable covers. */
static const struct wr writes[NWRITES] = {
    { 100, 200 },          { 5000, 9000 },         { 65536, 1100000 },   { 1300000, 1 },
    { 2097152 - 512, 1024 }, { 2200000, 1200000 }, { 3500000, 4096 },   { 4194304 - 700, 700 },
};

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = sc->opts;
    co.size = DISK;
    co.size_set = true;
    if (sc->backing) {
        char *base = tu_path(ctx->dir, "base.raw");
        struct tu_model *m = tu_model_new(DISK);
        tu_fill_pattern(m->data, DISK, 7);
        assert_int_equal(tu_model_save(m, base), 0);
        tu_model_free(m);
        free(base);
        co.backing_file = "base.raw";
        co.backing_format = "raw";
    }
    return ic_image_create(ctx->path, &co, errp);
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    sc->durable = 0;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    o.open_file = ctx->open_file;
    o.payload = ctx->open_payload;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    uint8_t *buf = malloc(MAXW);
    assert_non_null(buf);
    for (unsigned i = 0; i < NWRITES && ret == 0; i++) {
        tu_fill_pattern(buf, writes[i].len, 1000 + i);
        ret = ic_image_pwrite(img, buf, writes[i].len, writes[i].off, errp);
        if (ret == 0 && (i % 2 == 1 || i == NWRITES - 1)) {
            ret = ic_image_flush(img, errp);
            if (ret == 0)
                sc->durable = i + 1;
        }
    }
    free(buf);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed: %s", strerror(-cret));
    return ret;
}

/* qemu-img check: 0 = clean, 3 = leaks only; anything else fails. */
static int qemu_check(const char *path, const char *when, ic_error **errp)
{
    char *out = NULL;
    int rc = tu_sh_out(&out, "qemu-img check -U '%s' 2>&1", path);
    int ret = 0;
    if (rc != 0 && rc != 3)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: qemu-img check exit %d: %.300s", when,
                           rc, out ? out : "");
    free(out);
    return ret;
}

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    int ret = qemu_check(ctx->path, "surviving image", errp);
    if (ret < 0)
        return ret;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    if ((ret = ic_image_open(&img, ctx->path, &o, errp)) < 0)
        return ret;
    uint8_t *want = malloc(MAXW), *got = malloc(MAXW), *old = malloc(DISK);
    assert_true(want && got && old);
    tu_fill_pattern(old, DISK, 7);
    if (!sc->backing)
        memset(old, 0, DISK);
    for (unsigned i = 0; i < NWRITES && ret == 0; i++) {
        tu_fill_pattern(want, writes[i].len, 1000 + i);
        ret = ic_image_pread(img, got, writes[i].len, writes[i].off, errp);
        if (ret < 0)
            break;
        if (i < sc->durable || !ctx->crashed) {
            if (memcmp(want, got, writes[i].len))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "durable write %u (offset %"
                                   PRIu64 ") reads back wrong", i, writes[i].off);
            continue;
        }
        if (!sc->backing)
            continue;
        uint64_t end = writes[i].off + writes[i].len;
        for (uint64_t a = writes[i].off; a < end && ret == 0;) {
            uint64_t next = IC_MIN((a | 511) + 1, end);
            size_t k = (size_t)(a - writes[i].off), n = (size_t)(next - a);
            if (memcmp(got + k, want + k, n) && memcmp(got + k, old + a, n))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "write %u: bytes at %" PRIu64
                                   " are neither old nor new", i, a);
            a = next;
        }
    }
    /* the bytes around every write (never written) are untouched */
    if (ret == 0) {
        ret = ic_image_pread(img, got, 100, 0, errp);
        if (ret == 0 && memcmp(got, old, 100))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "bytes before the first write changed");
    }
    free(want);
    free(got);
    free(old);
    ic_image_close(img);
    if (ret < 0)
        return ret;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_RDWR;
    if ((ret = ic_image_open(&img, ctx->path, &o, errp)) < 0)
        return ret;
    ret = ic_image_close(img);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "close after the repairing open failed");
    return qemu_check(ctx->path, "after a read-write open", errp);
}

static void crash_loop(struct scenario *sc, const char *name, unsigned seeds)
{
    if (!tu_have_prog("qemu-img")) {
        skip();
        return;
    }
    struct tu_crash_loop cfg = {
        .name = name,
        .target = "t.qcow2",
        .setup = setup,
        .run = run,
        .verify = verify,
        .payload = sc,
        .seeds = seeds,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 5);
}

static void test_qcow2_crash__allocating_writes_growing_the_reftable_leave_at_worst_leaks(
    void **state)
{
    (void)state;
    struct scenario sc = { false, "cluster_size=512,refcount_bits=64", 0 };
    crash_loop(&sc, "qcow2 512/64 no backing", 1);
}

static void test_qcow2_crash__copy_on_write_over_a_backing_file_keeps_old_or_new_data(
    void **state)
{
    (void)state;
    struct scenario sc = { true, "cluster_size=4096,refcount_bits=1", 0 };
    crash_loop(&sc, "qcow2 4k/1 raw backing", 2);
}

static void test_qcow2_crash__lazy_refcounts_are_repaired_after_a_crash(void **state)
{
    (void)state;
    struct scenario sc = { false, "cluster_size=4096,lazy_refcounts=on", 0 };
    crash_loop(&sc, "qcow2 lazy refcounts", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_crash__allocating_writes_growing_the_reftable_leave_at_worst_leaks),
        cmocka_unit_test(test_qcow2_crash__copy_on_write_over_a_backing_file_keeps_old_or_new_data),
        cmocka_unit_test(test_qcow2_crash__lazy_refcounts_are_repaired_after_a_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
