/*
 * test-qcow2-errpath.c - EIO and ENOSPC at every named metadata event (once
 * and persistent, nth = 1..3) and at each of the first pwrites, during the
 * qcow2 data-path operations that change metadata (the fault loop of
 * docs/architecture.md, qemu-iotests 026).  Snapshot create/apply/delete
 * have their own loop in test-qcow2-snapshot-errpath.c.
 *
 * Design notes:
 *  1. Each scenario is a small image (setup: create, optional raw backing
 *     file, a few "pre" steps on clean backends) and a list of steps run
 *     on the faulty backend.  Every step is followed by a guest flush; a
 *     step is DURABLE when both returned 0.  After a failed step the run
 *     goes on with the next ones (with a "once" rule the engine must keep
 *     working after an error, as in qemu's 026 which keeps the image open)
 *     and finally returns the first error.  The scaffolding (setup, run,
 *     the byte model, check, the loop driver) is shared with the QED test
 *     in tests/helpers/fmt-scenario.c; this file holds the qcow2 steps.
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
 *  Write ordering: docs/architecture.md (crash ordering); qemu-iotests 026.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "testutil.h"
#include "fmt-scenario.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* qcow2 needs no format hooks: the corrupt bit is checked generically. */
static const struct fmt_ops qcow2_ops = { .format = "qcow2", .target = "t.qcow2" };

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 4 KiB clusters: one L2 table maps 2 MiB. */
static const struct fmt_step alloc_pre[] = {
    { FMT_WRITE, 0, 64 * KiB },
};
static const struct fmt_step alloc_steps[] = {
    { FMT_WRITE, 2 * MiB + 4 * KiB, 12 * KiB },        /* new L2 table, whole clusters */
    { FMT_WRITE, 4 * MiB + 1000, 3000 },               /* new L2, COW head and tail */
    { FMT_WRITE, 6 * MiB - 6 * KiB, 12 * KiB },        /* spans two tables, one new */
    { FMT_WRITE, 100, 8 * KiB },                       /* rewrite in place + COW */
    { FMT_WRITE, 64 * KiB + 512, 512 },                /* new cluster in an old table */
};

static void test_qcow2_errpath__allocating_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 allocating writes", .opts = "cluster_size=4096", .size = 8 * MiB,
        .cluster_size = 4096, .pre = alloc_pre, .npre = N(alloc_pre),
        .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_L1_UPDATE, IC_EV_COW_WRITE, IC_EV_CLUSTER_ALLOC },
        .nmust = 4, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

static void test_qcow2_errpath__allocating_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 allocating writes over a backing file", .opts = "cluster_size=4096",
        .size = 8 * MiB, .backing = true, .cluster_size = 4096,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_COW_READ, IC_EV_COW_WRITE, IC_EV_L2_UPDATE },
        .nmust = 4, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

static void test_qcow2_errpath__allocating_writes_with_lazy_refcounts_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 allocating writes with lazy refcounts",
        .opts = "cluster_size=4096,lazy_refcounts=on", .size = 8 * MiB, .cluster_size = 4096,
        .pre = alloc_pre, .npre = N(alloc_pre), .steps = alloc_steps, .nsteps = N(alloc_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_HEADER_UPDATE, IC_EV_COW_WRITE }, .nmust = 3,
        .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* Extended L2 entries (32 subclusters of 512 bytes per 16 KiB cluster):
 * subcluster allocation, COW of partial subclusters, zero subclusters. */
static const struct fmt_step ext_pre[] = {
    { FMT_WRITE, 0, 32 * KiB },
};
static const struct fmt_step ext_steps[] = {
    { FMT_WRITE, 40 * KiB + 512, 1024 },           /* two subclusters of a new cluster */
    { FMT_WRITE, 40 * KiB + 4096 + 100, 300 },     /* partial subcluster, same cluster */
    { FMT_ZERO, 8 * KiB, 2 * KiB },                /* zero subclusters in place */
    { FMT_WRITE, 16 * MiB + 1000, 3000 },          /* new L2 table */
    { FMT_ZERO_UNMAP, 16 * KiB, 16 * KiB },        /* a whole cluster */
    { FMT_DISCARD, 40 * KiB, 16 * KiB },
};

static void test_qcow2_errpath__extended_l2_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 extended L2 writes over a backing file",
        .opts = "cluster_size=16384,extended_l2=on", .size = 17 * MiB, .backing = true,
        .cluster_size = 16384, .pre = ext_pre, .npre = N(ext_pre),
        .steps = ext_steps, .nsteps = N(ext_steps),
        .must_fire = { IC_EV_L2_ALLOC, IC_EV_COW_WRITE }, .nmust = 2, .qemu_check = true,
        .max_nth = 4,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* 512-byte clusters with 64-bit refcounts: a refblock covers 64 clusters
 * (32 KiB) and the first reftable cluster 64 refblocks (2 MiB of file). */
static const struct fmt_step reftable_pre[] = {
    { FMT_WRITE, 0, 900 * KiB },
};
static const struct fmt_step reftable_steps[] = {
    { FMT_WRITE, 900 * KiB, 160 * KiB },
    { FMT_WRITE, 3 * MiB, 4 * KiB },
    { FMT_WRITE, 1000, 100 },
};

static void test_qcow2_errpath__refcount_table_growth_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 refcount table growth", .opts = "cluster_size=512,refcount_bits=64",
        .size = 4 * MiB, .cluster_size = 512, .pre = reftable_pre, .npre = N(reftable_pre),
        .steps = reftable_steps, .nsteps = N(reftable_steps),
        .must_fire = { IC_EV_REFTABLE_GROW, IC_EV_REFBLOCK_ALLOC_SWITCH_TABLE,
                       IC_EV_REFBLOCK_ALLOC_WRITE, IC_EV_REFTABLE_UPDATE },
        .nmust = 4, .qemu_check = true,
        .max_nth = 4, /* refblock events fire dozens of times with 512 B clusters */
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* 4 MiB disk with 4 KiB clusters: a two-entry L1; growing to 8 MiB needs
 * 4 entries (a new table: the old one is freed).  The write after the
 * resize allocates an L2 table for an entry the OLD table already had: if
 * a failed resize left the header pointing at the new table while memory
 * kept the old one, that write would be lost. */
static const struct fmt_step l1_pre[] = {
    { FMT_WRITE, 0, 8 * KiB },
};
static const struct fmt_step l1_steps[] = {
    { FMT_TRUNCATE, 0, 8 * MiB },
    { FMT_WRITE, 2 * MiB + 512, 8 * KiB },
    { FMT_WRITE, 8 * MiB - 4 * KiB, 4 * KiB },
    { FMT_WRITE, 4 * KiB, 4 * KiB },
};

static void test_qcow2_errpath__l1_growth_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 L1 growth", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = l1_pre, .npre = N(l1_pre),
        .steps = l1_steps, .nsteps = N(l1_steps),
        .must_fire = { IC_EV_L1_GROW_ALLOC, IC_EV_L1_GROW_WRITE, IC_EV_L1_GROW_ACTIVATE,
                       IC_EV_CLUSTER_FREE },
        .nmust = 4, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* Zero writes (keep and unmap) and discards over data, unallocated
 * clusters and partial clusters. */
static const struct fmt_step zero_pre[] = {
    { FMT_WRITE, 0, 256 * KiB },
    { FMT_WRITE, 2 * MiB, 64 * KiB },
};
static const struct fmt_step zero_steps[] = {
    { FMT_ZERO, 8 * KiB, 16 * KiB },            /* whole clusters, kept allocated (v3) */
    { FMT_ZERO_UNMAP, 32 * KiB, 16 * KiB },     /* whole clusters, freed */
    { FMT_ZERO, 60 * KiB + 100, 10 * KiB },     /* partial edges written as data */
    { FMT_DISCARD, 100 * KiB, 40 * KiB + 300 }, /* discard, unaligned end */
    { FMT_ZERO, 4 * MiB, 64 * KiB },            /* unallocated: new table when backed */
    { FMT_DISCARD, 2 * MiB, 64 * KiB },         /* a whole table's data */
    { FMT_WRITE, 32 * KiB, 8 * KiB },           /* reuse freed clusters */
};

static void test_qcow2_errpath__zero_writes_and_discards_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 zero writes and discards", .opts = "cluster_size=4096", .size = 8 * MiB,
        .cluster_size = 4096, .pre = zero_pre, .npre = N(zero_pre),
        .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE }, .nmust = 2, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

static void test_qcow2_errpath__zero_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 zero writes and discards over a backing file", .opts = "cluster_size=4096",
        .size = 8 * MiB, .backing = true, .cluster_size = 4096,
        .pre = zero_pre, .npre = N(zero_pre), .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE, IC_EV_L2_ALLOC }, .nmust = 3,
        .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

static void test_qcow2_errpath__v2_zero_writes_over_a_backing_file_fail_cleanly(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 v2 zero writes and discards over a backing file",
        .opts = "cluster_size=4096,compat=0.10", .size = 8 * MiB, .backing = true, .v2 = true,
        .cluster_size = 4096, .pre = zero_pre, .npre = N(zero_pre),
        .steps = zero_steps, .nsteps = N(zero_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_CLUSTER_FREE }, .nmust = 2, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* Compressed clusters: new tables, packing several into one host cluster,
 * overwriting compressed with compressed and with plain data. */
static const struct fmt_step comp_pre[] = {
    { FMT_WRITE, 0, 16 * KiB },
};
static const struct fmt_step comp_steps[] = {
    { FMT_COMPRESSED, 16 * KiB, 4 * KiB },
    { FMT_COMPRESSED, 20 * KiB, 4 * KiB },
    { FMT_COMPRESSED, 2 * MiB, 4 * KiB },        /* new L2 table */
    { FMT_COMPRESSED, 0, 4 * KiB },              /* replaces a plain cluster */
    { FMT_COMPRESSED, 16 * KiB, 4 * KiB },       /* replaces a compressed one */
    { FMT_WRITE, 20 * KiB + 1000, 1000 },        /* COW from a compressed cluster */
};

static void test_qcow2_errpath__compressed_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 compressed writes", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = comp_pre, .npre = N(comp_pre),
        .steps = comp_steps, .nsteps = N(comp_steps),
        .must_fire = { IC_EV_DATA_WRITE_COMPRESSED, IC_EV_L2_UPDATE_COMPRESSED,
                       IC_EV_L2_ALLOC, IC_EV_CLUSTER_FREE },
        .nmust = 4, .qemu_check = true,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
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
