/*
 * test-qcow2-resize-errpath.c - qcow2 resize (ic_image_resize) with I/O
 * errors injected at every named metadata event, every write and every
 * flush (tests/helpers/fmt-scenario.c runs the loop).
 *
 * Each run must fail cleanly (an error naming the image, never a claim of
 * corruption) or succeed; the surviving file must check with 0
 * corruptions (leaks allowed), pass qemu-img check, have the old or the
 * new size, and read every byte the model allows: a failed grow leaves the
 * old size, or the new one with the new area reading zeroes; a failed
 * shrink keeps every byte below the new end.
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
#define MiB (1024ull * KiB)
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct fmt_ops qcow2_ops = { .format = "qcow2", .target = "t.qcow2" };

/* 4 KiB clusters: a two-entry L1 for 4 MiB; growing to 8 MiB needs a new
 * table, and metadata preallocation then allocates L2 tables and data
 * clusters for the new 4 MiB before the size switch. */
static const struct fmt_step grow_pre[] = {
    { FMT_WRITE, 0, 8 * KiB },
    { FMT_WRITE, 4 * MiB - 6 * KiB, 6 * KiB },
};
static const struct fmt_step grow_steps[] = {
    { FMT_RESIZE, IC_PREALLOC_METADATA, 8 * MiB },
    { FMT_WRITE, 6 * MiB + 512, 8 * KiB },
    { FMT_WRITE, 4 * KiB, 4 * KiB },
};

static void test_qcow2_resize_errpath__a_preallocating_grow_fails_cleanly_at_every_event(
    void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 resize grow metadata", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = grow_pre, .npre = N(grow_pre),
        .steps = grow_steps, .nsteps = N(grow_steps),
        .must_fire = { IC_EV_L1_GROW_ALLOC, IC_EV_L1_GROW_ACTIVATE, IC_EV_L2_UPDATE,
                       IC_EV_HEADER_UPDATE },
        .nmust = 4, .qemu_check = true, .max_nth = 4,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* A full-preallocation grow of a v2 image whose old end is mid-cluster:
 * the partial cluster is zeroed past the old end, the new clusters are
 * written with zeroes. */
static const struct fmt_step grow_full_pre[] = {
    { FMT_WRITE, 0, 3 * MiB - 512 },
};
static const struct fmt_step grow_full_steps[] = {
    { FMT_RESIZE, IC_PREALLOC_FULL, 5 * MiB },
    { FMT_WRITE, 4 * MiB, 4 * KiB },
};

static void test_qcow2_resize_errpath__a_full_grow_of_a_v2_image_fails_cleanly_at_every_event(
    void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 v2 resize grow full", .opts = "compat=0.10,cluster_size=65536",
        .size = 3 * MiB - 512, .cluster_size = 65536, .pre = grow_full_pre,
        .npre = N(grow_full_pre), .steps = grow_full_steps, .nsteps = N(grow_full_steps),
        .must_fire = { IC_EV_L2_UPDATE, IC_EV_HEADER_UPDATE },
        .nmust = 2, .qemu_check = true, .max_nth = 4,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

/* A shrink through data, zero clusters and a whole L2 table: the size
 * switch comes first, then the tail's clusters and tables are freed. */
static const struct fmt_step shrink_pre[] = {
    { FMT_WRITE, 0, 1 * MiB },
    { FMT_WRITE, 2 * MiB + 4 * KiB, 64 * KiB },
    { FMT_ZERO, 3 * MiB, 64 * KiB },
    { FMT_WRITE, 4 * MiB - 8 * KiB, 8 * KiB },
};
static const struct fmt_step shrink_steps[] = {
    { FMT_RESIZE, IC_PREALLOC_OFF, 1 * MiB + 1536 },
    { FMT_WRITE, 512 * KiB, 4 * KiB },
};

static void test_qcow2_resize_errpath__a_shrink_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    struct fmt_fault_scenario sc = {
        .name = "qcow2 resize shrink", .opts = "cluster_size=4096", .size = 4 * MiB,
        .cluster_size = 4096, .pre = shrink_pre, .npre = N(shrink_pre),
        .steps = shrink_steps, .nsteps = N(shrink_steps),
        .must_fire = { IC_EV_HEADER_UPDATE, IC_EV_L2_UPDATE, IC_EV_L1_UPDATE,
                       IC_EV_CLUSTER_FREE },
        .nmust = 4, .qemu_check = true, .max_nth = 4,
    };
    fmt_fault_loop(&qcow2_ops, &sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_resize_errpath__a_preallocating_grow_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_resize_errpath__a_full_grow_of_a_v2_image_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_resize_errpath__a_shrink_fails_cleanly_at_every_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
