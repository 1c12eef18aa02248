/*
 * test-qed-errpath.c - EIO and ENOSPC at every named metadata event (once
 * and persistent, nth = 1..2), at each of the first pwrites and flushes,
 * and at the first flush after each event, during QED allocating writes
 * (with a backing file, and without one: the need-check path), L2 table
 * allocation, zero writes and resize (the fault loop of
 * docs/architecture.md, qemu-iotests 026).
 *
 * Design notes:
 *  1. Each scenario is a small image (setup: create, optional raw backing
 *     file, a few "pre" steps on clean backends) and a list of steps run
 *     on the faulty backend.  Every step is followed by a guest flush; a
 *     step is DURABLE when both returned 0.  After a failed step the run
 *     goes on with the next ones (the engine must keep working, or refuse
 *     writes in its ERROR state) and finally returns the first error.  The
 *     scaffolding (setup, run, the byte model, check, the loop driver) is
 *     shared with the qcow2 test in tests/helpers/fmt-scenario.c; this file
 *     holds the QED steps and the QED hooks (planted damage, its repair).
 *  2. A byte-level model (blkverify) follows the steps: every byte is
 *     CERTAIN (must read back exactly), OLD_OR_NEW (a step that may or may
 *     not have reached the disk) or ANY (two unsure steps overlapped).  A
 *     durable step makes its range certain again.
 *  3. Pass criterion for each run: the run succeeded, or failed with
 *     ret < 0 and an error that names the image file, and no step failed
 *     with a corruption; the surviving file checks with 0 corruptions and
 *     0 check errors (leaks allowed) with ic_image_check, need-check bit
 *     or not (without a crash nothing may point at unwritten clusters),
 *     and with qemu-img check; a read-write open (which repairs an image
 *     whose need-check bit is set, as qemu does) succeeds and leaves 0
 *     corruptions; every byte reads back as the model allows; the virtual
 *     size is the old or the new one (certain after a durable resize).
 *  4. The dry run (no rule) must fire the events that make the scenario
 *     worth running (e.g. qed_need_check_set without a backing file).
 *  5. Speed: the first setup() builds the image; later setups copy its
 *     bytes.  qemu-img check runs once per distinct surviving file.
 *  Follows qemu's QED driver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "fmt-scenario.h"
#include "qed-damage.h"
#include "util/error.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* The damage a crash without a backing file may leave (need-check set): an
 * L2 entry past the end of the file and leaked clusters at its end.  The
 * repairing open zeroes the entry, so its cluster may read anything
 * (the scenario's any_off/any_len). */
#define DAMAGED_GUEST (8 * KiB)
static void plant_damage(const char *path)
{
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_int_equal(qd_set_l2(path, DAMAGED_GUEST, in.file_size + 16ull * in.cluster_size), 0);
    assert_int_equal(qd_append_clusters(path, 2), 0);
    assert_int_equal(qd_set_need_check(path, true), 0);
}

/* The planted damage may survive a run whose repairing open failed; it is
 * allowed only while need-check still covers it.  The file is then
 * repaired by a clean read-write open and checked again (strictly). */
static int repair_planted_damage(const char *path, ic_check_result *res, ic_error **errp)
{
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    if (!(in.features & 2))
        return 0; /* need-check clear: the corruptions stand (a violation) */
    ic_image *img = NULL;
    int ret = fmt_open_rw(path, NULL, NULL, &img, errp);
    if (ret < 0)
        return ret;
    int cret = ic_image_close(img);
    if (cret < 0)
        return ic_error_set(errp, IC_ERR_IO, -cret, "%s: close failed: %s", path,
                            strerror(-cret));
    return fmt_check_path(path, false, res, errp);
}

/* Design note 3: a read-write open repairs a need-check image; the image
 * must open and check clean afterwards (reopen_rw_check). */
static const struct fmt_ops qed_ops = {
    .format = "qed", .target = "t.qed", .reopen_rw_check = true,
    .plant_damage = plant_damage, .repair_damage = repair_planted_damage,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 4 KiB clusters, two-cluster tables: one L2 table maps 4 MiB.  (qemu
 * 7.2 cannot open QED images with one-cluster tables: an off-by-one in its
 * qed_check_table_offset, see tests/unit/test-qed-oracle.c.) */
#define QED_OPTS "cluster_size=4096,table_size=2"

static const struct fmt_step alloc_pre[] = {
    { FMT_WRITE, 0, 64 * KiB },
};
static const struct fmt_step alloc_steps[] = {
    { FMT_WRITE, 4 * MiB + 4 * KiB, 12 * KiB },        /* new L2 table, whole clusters */
    { FMT_WRITE, 8 * MiB + 1000, 3000 },               /* new L2, COW head and tail */
    { FMT_WRITE, 12 * MiB - 6 * KiB, 12 * KiB },       /* spans two tables, one new */
    { FMT_WRITE, 100, 8 * KiB },                       /* in place, then a new cluster */
    { FMT_WRITE, 64 * KiB + 512, 512 },                /* new cluster in an old table */
};

static void test_qed_errpath__allocating_writes_without_backing_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed allocating writes (need-check)", .opts = QED_OPTS, .size = 16 * MiB,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_QED_NEED_CHECK_SET, IC_EV_QED_NEED_CHECK_CLEAR, IC_EV_QED_L2_ALLOC,
                       IC_EV_QED_L1_UPDATE, IC_EV_QED_L2_UPDATE, IC_EV_COW_WRITE },
        .nmust = 6, .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

static void test_qed_errpath__allocating_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed allocating writes over a backing file", .opts = QED_OPTS, .size = 16 * MiB,
        .backing = true, .pre = alloc_pre, .npre = N(alloc_pre),
        .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_QED_L2_ALLOC, IC_EV_QED_L1_UPDATE, IC_EV_QED_L2_UPDATE,
                       IC_EV_COW_READ, IC_EV_COW_WRITE, IC_EV_DATA_WRITE },
        .nmust = 6, .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

/* Many L2 tables: every step reaches a table that does not exist yet. */
static const struct fmt_step l2_steps[] = {
    { FMT_WRITE, 4 * MiB, 4 * KiB },
    { FMT_WRITE, 8 * MiB - 4 * KiB, 8 * KiB },         /* spans a table boundary */
    { FMT_WRITE, 12 * MiB + 100, 100 },
    { FMT_WRITE, 12 * MiB + 8 * KiB, 8 * KiB },
};

static void test_qed_errpath__l2_table_allocation_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed L2 table allocation", .opts = QED_OPTS, .size = 16 * MiB,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = l2_steps, .nsteps = N(l2_steps),
        .must_fire = { IC_EV_QED_L2_ALLOC, IC_EV_QED_L1_UPDATE }, .nmust = 2,
        .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

/* Zero writes over data (kept, zeroed or punched in place), over
 * unallocated clusters (zero clusters only when a backing file would show
 * through, in new tables too) and partial clusters (written as data). */
static const struct fmt_step zero_pre[] = {
    { FMT_WRITE, 0, 256 * KiB },
    { FMT_WRITE, 4 * MiB, 64 * KiB },
};
static const struct fmt_step zero_steps[] = {
    { FMT_ZERO, 8 * KiB, 16 * KiB },
    { FMT_ZERO_UNMAP, 32 * KiB, 16 * KiB },
    { FMT_ZERO, 60 * KiB + 100, 10 * KiB },            /* partial: data in place */
    { FMT_ZERO, 300 * KiB + 100, 64 * KiB },           /* unallocated, partial edges */
    { FMT_ZERO_UNMAP, 8 * MiB, 64 * KiB },             /* unallocated, new table */
    { FMT_WRITE, 8 * MiB + 8 * KiB, 4 * KiB + 100 },   /* data over a zero cluster */
};

static void test_qed_errpath__zero_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed zero writes", .opts = QED_OPTS, .size = 12 * MiB,
        .pre = zero_pre, .npre = N(zero_pre), .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_DATA_WRITE, IC_EV_QED_NEED_CHECK_SET }, .nmust = 2,
        .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

static void test_qed_errpath__zero_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed zero writes over a backing file", .opts = QED_OPTS, .size = 12 * MiB,
        .backing = true, .pre = zero_pre, .npre = N(zero_pre),
        .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_QED_L2_UPDATE, IC_EV_QED_L2_ALLOC, IC_EV_COW_READ }, .nmust = 3,
        .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

/* Resize within the L1's reach (a header write), then writes past the old
 * end: a failed resize must leave the old size and refuse them. */
static const struct fmt_step resize_steps[] = {
    { FMT_TRUNCATE, 0, 8 * MiB },
    { FMT_WRITE, 6 * MiB + 512, 8 * KiB },             /* a new table past the old end */
    { FMT_WRITE, 4 * KiB, 4 * KiB },
};

static void test_qed_errpath__resize_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed resize", .opts = QED_OPTS, .size = 4 * MiB,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = resize_steps,
        .nsteps = N(resize_steps), .must_fire = { IC_EV_HEADER_UPDATE, IC_EV_QED_L2_ALLOC },
        .nmust = 2, .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

/* An image left with need-check set over damage: the run's read-write open
 * repairs it (check_repair, need-check clear), then writes, one of them
 * to the cluster whose entry the repair dropped. */
static const struct fmt_step repair_pre[] = {
    { FMT_WRITE, 0, 64 * KiB },
    { FMT_WRITE, 4 * MiB, 16 * KiB },
};
static const struct fmt_step repair_steps[] = {
    { FMT_WRITE, 4 * MiB + 32 * KiB, 4 * KiB },
    { FMT_WRITE, DAMAGED_GUEST, 4 * KiB },
};

static void test_qed_errpath__repairing_open_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qed repairing open", .opts = QED_OPTS, .size = 8 * MiB,
        .pre = repair_pre, .npre = N(repair_pre), .steps = repair_steps,
        .nsteps = N(repair_steps), .damaged = true,
        .any_off = DAMAGED_GUEST, .any_len = 4 * KiB,
        .must_fire = { IC_EV_CHECK_REPAIR, IC_EV_QED_NEED_CHECK_CLEAR }, .nmust = 2,
        .qemu_check = true,
    };
    fmt_fault_loop(&qed_ops, &sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qed_errpath__allocating_writes_without_backing_fail_cleanly),
        cmocka_unit_test(test_qed_errpath__allocating_writes_over_a_backing_file_fail_cleanly),
        cmocka_unit_test(test_qed_errpath__l2_table_allocation_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qed_errpath__zero_writes_fail_cleanly_at_every_event),
        cmocka_unit_test(test_qed_errpath__zero_writes_over_a_backing_file_fail_cleanly),
        cmocka_unit_test(test_qed_errpath__resize_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qed_errpath__repairing_open_fails_cleanly_at_every_event),
    };
    /* IC_TEST_FILTER=pattern runs only the matching tests */
    if (getenv("IC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("IC_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
