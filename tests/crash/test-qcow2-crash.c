/*
 * test-qcow2-crash.c - qcow2 allocating writes crashed at every flush
 * (the crash loop of docs/architecture.md; SQLite crash tests).
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
 * The image setup, the run and the read-back of the writes are shared with
 * the QED crash test (tests/helpers/fmt-scenario.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "testutil.h"
#include "fmt-scenario.h"
#include "util/error.h"

#define DISK (4u << 20)
#define NWRITES 8

/* Non-overlapping; together about 2.6 MiB of 512-byte clusters, so the
 * file passes the 2 MiB a one-cluster reftable covers. */
static const struct fmt_crash_op writes[NWRITES] = {
    { 100, 200, false }, { 5000, 9000, false }, { 65536, 1100000, false },
    { 1300000, 1, false }, { 2097152 - 512, 1024, false }, { 2200000, 1200000, false },
    { 3500000, 4096, false }, { 4194304 - 700, 700, false },
};

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_crash_scenario *sc = ctx->payload;
    int ret = fmt_qemu_img_check(ctx->path, "surviving image", errp);
    if (ret < 0)
        return ret;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    if ((ret = ic_image_open(&img, ctx->path, &o, errp)) < 0)
        return ret;
    /* durable writes, old or new over a backing file, bytes 0..99 untouched */
    ret = fmt_crash_check_ops(sc, img, ctx->crashed, errp);
    ic_image_close(img);
    if (ret < 0)
        return ret;
    if ((ret = fmt_open_rw(ctx->path, NULL, NULL, &img, errp)) < 0)
        return ret;
    ret = ic_image_close(img);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "close after the repairing open failed");
    return fmt_qemu_img_check(ctx->path, "after a read-write open", errp);
}

/* The writes of every test, a guest flush after every other one; qemu-img
 * check judges the surviving image, so the test needs it. */
#define QCOW2_CRASH(nm, bk, op, nseeds)                                                      \
    {                                                                                        \
        .name = (nm), .format = "qcow2", .opts = (op), .disk = DISK, .backing = (bk),        \
        .backing_seed = 7, .ops = writes, .nops = NWRITES, .data_seed = 1000,               \
        .flush_every = 2, .untouched_head = 100, .verify = verify, .seeds = (nseeds),       \
        .min_crash_points = 5, .needs_qemu_img = true,                                      \
    }

static void test_qcow2_crash__allocating_writes_growing_the_reftable_leave_at_worst_leaks(
    void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QCOW2_CRASH("qcow2 512/64 no backing", false, "cluster_size=512,refcount_bits=64", 1);
    fmt_crash_loop(&sc);
}

static void test_qcow2_crash__copy_on_write_over_a_backing_file_keeps_old_or_new_data(
    void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QCOW2_CRASH("qcow2 4k/1 raw backing", true, "cluster_size=4096,refcount_bits=1", 2);
    fmt_crash_loop(&sc);
}

static void test_qcow2_crash__lazy_refcounts_are_repaired_after_a_crash(void **state)
{
    (void)state;
    struct fmt_crash_scenario sc =
        QCOW2_CRASH("qcow2 lazy refcounts", false, "cluster_size=4096,lazy_refcounts=on", 1);
    fmt_crash_loop(&sc);
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
