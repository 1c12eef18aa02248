/*
 * test-qed-crash.c - QED allocating writes crashed at every flush
 * (CONVENTIONS.md section 4; SQLite crash tests).
 *
 * For N = 1, 2, ... the run is crashed at its Nth flush (the need-check
 * flush, the flush before each L2 update with a backing file, the flush of
 * each new L2 table, the guest flushes between writes, the flushes of
 * clearing need-check); unflushed writes are applied, dropped or torn.
 * The surviving image must then:
 *   - open, and if its need-check bit is clear, check with 0 corruptions
 *     (the bit must cover every possible inconsistency);
 *   - after a read-write open (which repairs, as qemu does) check with
 *     0 corruptions: the worst defect left is leaked space;
 *   - read back every write that a completed guest flush made durable;
 *   - with a backing file: read, for every other written sector, either the
 *     old contents or the new, never anything else (data is flushed before
 *     an L2 entry points at it).
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
#include "qed-damage.h"
#include "util/error.h"

#define DISK (4u << 20)
#define NWRITES 10

struct scenario {
    bool backing;
    const char *opts;
    /* filled by run(): writes made durable by a completed guest flush */
    unsigned durable;
};

struct wr {
    uint64_t off;
    uint32_t len;
};

/* Non-overlapping writes: partial clusters, cluster runs, several L2
 * tables (4 KiB x 1 = 2 MiB per table). */
static const struct wr writes[NWRITES] = {
    { 100, 200 },         { 5000, 9000 },     { 65536, 65536 },  { 300000, 1 },
    { 2097152 - 512, 1024 }, { 2200000, 40000 }, { 3000000, 4096 }, { 1000000, 70000 },
    { 4194304 - 4096, 4096 }, { 1500000, 3 },
};

static void pattern(uint8_t *buf, size_t len, unsigned i)
{
    tu_fill_pattern(buf, len, 1000 + i);
}

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qed";
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
        co.size_set = false;
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
    uint8_t *buf = malloc(70000);
    assert_non_null(buf);
    for (unsigned i = 0; i < NWRITES && ret == 0; i++) {
        pattern(buf, writes[i].len, i);
        ret = ic_image_pwrite(img, buf, writes[i].len, writes[i].off, errp);
        /* a flush after every other write */
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

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    ic_check_result res;
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    ic_image_close(img);
    if (ret < 0)
        return ret;
    struct qd_info in;
    assert_int_equal(qd_read_info(ctx->path, &in), 0);
    if (!(in.features & 2) && (res.corruptions || res.check_errors))
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                            "need-check is clear but check found %" PRId64 " corruptions",
                            res.corruptions);
    if (sc->backing && (in.features & 2))
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "need-check set with a backing file");

    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_RDWR; /* repairs a need-check image */
    if ((ret = ic_image_open(&img, ctx->path, &o, errp)) < 0)
        return ret;
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    if (ret == 0 && (res.corruptions || res.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                           "after the repairing open: %" PRId64 " corruptions, %" PRId64
                           " check errors", res.corruptions, res.check_errors);
    uint8_t *want = malloc(70000), *got = malloc(70000), *old = malloc(DISK);
    assert_true(want && got && old);
    tu_fill_pattern(old, DISK, 7);
    if (!sc->backing)
        memset(old, 0, DISK);
    for (unsigned i = 0; i < NWRITES && ret == 0; i++) {
        pattern(want, writes[i].len, i);
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
            continue; /* unflushed data without a backing file may read anything */
        /* per 512-byte sector of the guest: old or new */
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
    free(want);
    free(got);
    free(old);
    ic_image_close(img);
    return ret;
}

static void crash_loop(struct scenario *sc, const char *name, unsigned seeds)
{
    struct tu_crash_loop cfg = {
        .name = name,
        .target = "t.qed",
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

static void test_qed_crash__allocating_writes_without_backing_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct scenario sc = { false, "cluster_size=4096,table_size=1", 0 };
    crash_loop(&sc, "qed no backing", 4);
}

static void test_qed_crash__allocating_writes_over_a_backing_file_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct scenario sc = { true, "cluster_size=4096,table_size=1", 0 };
    crash_loop(&sc, "qed raw backing", 4);
}

static void test_qed_crash__large_clusters_and_tables_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct scenario sc = { true, "cluster_size=65536,table_size=2", 0 };
    crash_loop(&sc, "qed 64k raw backing", 2);
    struct scenario sc2 = { false, "cluster_size=65536,table_size=2", 0 };
    crash_loop(&sc2, "qed 64k no backing", 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qed_crash__allocating_writes_without_backing_leave_at_worst_leaks),
        cmocka_unit_test(test_qed_crash__allocating_writes_over_a_backing_file_leave_at_worst_leaks),
        cmocka_unit_test(test_qed_crash__large_clusters_and_tables_leave_at_worst_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
