/*
 * test-qed-crash.c - QED allocating writes crashed at every flush
 * (the crash loop of docs/architecture.md; SQLite crash tests).
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
 * The image setup, the run and the read-back of the writes are shared with
 * the qcow2 crash test (tests/helpers/fmt-scenario.c); the need-check rules
 * are this file's own.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "testutil.h"
#include "fmt-scenario.h"
#include "qed-damage.h"
#include "util/error.h"

#define DISK (4u << 20)
#define NWRITES 10

/* Non-overlapping writes: partial clusters, cluster runs, several L2
 * tables (4 KiB x 1 = 2 MiB per table). */
static const struct fmt_crash_op writes[NWRITES] = {
    { 100, 200, false }, { 5000, 9000, false }, { 65536, 65536, false },
    { 300000, 1, false }, { 2097152 - 512, 1024, false }, { 2200000, 40000, false },
    { 3000000, 4096, false }, { 1000000, 70000, false }, { 4194304 - 4096, 4096, false },
    { 1500000, 3, false },
};

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_crash_scenario *sc = ctx->payload;
    ic_check_result res;
    int ret = fmt_check_path(ctx->path, false, &res, errp);
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

    ic_image *img = NULL; /* a read-write open repairs a need-check image */
    if ((ret = fmt_open_rw(ctx->path, NULL, NULL, &img, errp)) < 0)
        return ret;
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    if (ret == 0 && (res.corruptions || res.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                           "after the repairing open: %" PRId64 " corruptions, %" PRId64
                           " check errors", res.corruptions, res.check_errors);
    if (ret == 0)
        ret = fmt_crash_check_ops(sc, img, ctx->crashed, errp);
    ic_image_close(img);
    return ret;
}

/* The writes of every test, a guest flush after every other one; with a
 * backing file the image takes its size from it. */
#define QED_CRASH(nm, bk, op, nseeds)                                                        \
    {                                                                                        \
        .name = (nm), .format = "qed", .opts = (op), .disk = DISK, .backing = (bk),          \
        .size_from_backing = true, .backing_seed = 7, .ops = writes, .nops = NWRITES,        \
        .data_seed = 1000, .flush_every = 2, .verify = verify, .seeds = (nseeds),           \
        .min_crash_points = 5,                                                               \
    }

static void test_qed_crash__allocating_writes_without_backing_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QED_CRASH("qed no backing", false, "cluster_size=4096,table_size=1", 4);
    fmt_crash_loop(&sc);
}

static void test_qed_crash__allocating_writes_over_a_backing_file_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QED_CRASH("qed raw backing", true, "cluster_size=4096,table_size=1", 4);
    fmt_crash_loop(&sc);
}

static void test_qed_crash__large_clusters_and_tables_leave_at_worst_leaks(void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QED_CRASH("qed 64k raw backing", true, "cluster_size=65536,table_size=2", 2);
    fmt_crash_loop(&sc);
    struct fmt_crash_scenario sc2 =
        QED_CRASH("qed 64k no backing", false, "cluster_size=65536,table_size=2", 2);
    fmt_crash_loop(&sc2);
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
