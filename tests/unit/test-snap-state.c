/*
 * test-snap-state.c - the questions snapshot-revert asks before it drops a
 * disk's current state (src/snap/snap-state.c): does an overlay hold
 * writes of its own, and is a qcow2 image's active state still its
 * snapshot's?  Images are made both by imgchain and by qemu-img / qemu-io
 * (the oracle writes the images when it is installed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/snapshot.h"

#define MiB (1024ULL * 1024)

static char *path(const char *name)
{
    return tu_path(cf_dir, name);
}

static void create(const char *p, const char *backing, uint64_t size)
{
    ic_create_options o = IC_CREATE_OPTIONS_INIT;
    ic_error *err = NULL;
    o.format = "qcow2";
    if (backing) {
        o.backing_file = backing;
        o.backing_format = "qcow2";
    } else {
        o.size = size;
        o.size_set = true;
    }
    TU_ASSERT_OK(ic_image_create(p, &o, &err), err);
}

static ic_image *open_image(const char *p, unsigned flags)
{
    ic_image *img = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    ic_error *err = NULL;
    o.flags = flags;
    TU_ASSERT_OK(ic_image_open(&img, p, &o, &err), err);
    return img;
}

static void write_at(const char *p, uint64_t off, size_t len, uint64_t seed)
{
    ic_image *img = open_image(p, IC_OPEN_RDWR);
    void *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    free(buf);
    assert_int_equal(ic_image_close(img), 0);
}

static int layer_allocated(const char *p, uint64_t *first)
{
    ic_image *img = open_image(p, 0);
    ic_error *err = NULL;
    int ret = ic_image_layer_allocated(img, first, &err);
    TU_ASSERT_OK(ret, err);
    ic_image_close(img);
    return ret;
}

static int differs(const char *p, const char *snap, uint64_t *first)
{
    ic_image *img = open_image(p, 0);
    ic_error *err = NULL;
    int ret = ic_snapshot_differs(img, snap, first, &err);
    TU_ASSERT_OK(ret, err);
    ic_image_close(img);
    return ret;
}

static void snapshot(const char *p, const char *name, bool apply)
{
    ic_image *img = open_image(p, IC_OPEN_RDWR);
    ic_error *err = NULL;
    if (apply)
        TU_ASSERT_OK(ic_snapshot_apply(img, name, &err), err);
    else
        TU_ASSERT_OK(ic_snapshot_create(img, name, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

static void need_qemu(void)
{
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        skip();
}

/* ---- ic_image_layer_allocated ------------------------------------------- */

static void test_a_fresh_overlay_allocates_nothing_though_its_backing_holds_data(void **state)
{
    (void)state;
    char *base = path("base.qcow2"), *top = path("top.qcow2");
    create(base, NULL, 8 * MiB);
    write_at(base, 0, 64 * 1024, 1);
    create(top, base, 0);
    assert_int_equal(layer_allocated(top, NULL), 0);
    /* the base layer itself does allocate: the answer is per layer */
    uint64_t first = 99;
    assert_int_equal(layer_allocated(base, &first), 1);
    assert_int_equal(first, 0);
    free(base);
    free(top);
}

static void test_a_write_into_the_overlay_is_found_at_its_offset(void **state)
{
    (void)state;
    char *base = path("base.qcow2"), *top = path("top.qcow2");
    create(base, NULL, 8 * MiB);
    create(top, base, 0);
    write_at(top, 5 * MiB, 4096, 2);
    uint64_t first = 0;
    assert_int_equal(layer_allocated(top, &first), 1);
    assert_int_equal(first, 5 * MiB);
    free(base);
    free(top);
}

static void test_a_qemu_io_zero_write_in_a_qemu_img_overlay_counts_as_allocated(void **state)
{
    (void)state;
    need_qemu();
    char *base = path("base.qcow2"), *top = path("top.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 '%s' 8M && "
                           "qemu-io -c 'write -P 7 0 1M' '%s' >/dev/null && "
                           "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'",
                           base, base, base, top), 0);
    assert_int_equal(layer_allocated(top, NULL), 0);
    assert_int_equal(tu_sh("qemu-io -c 'write -z 3M 64k' '%s' >/dev/null", top), 0);
    uint64_t first = 0;
    assert_int_equal(layer_allocated(top, &first), 1);
    assert_int_equal(first, 3 * MiB);
    free(base);
    free(top);
}

static void test_an_empty_image_allocates_nothing(void **state)
{
    (void)state;
    char *p = path("empty.qcow2");
    create(p, NULL, 0);
    assert_int_equal(layer_allocated(p, NULL), 0);
    free(p);
}

/* ---- ic_snapshot_differs ------------------------------------------------- */

static void test_a_fresh_internal_snapshot_is_the_active_state(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 16 * MiB);
    write_at(p, 0, 1 * MiB, 3);
    write_at(p, 9 * MiB, 4096, 4);
    snapshot(p, "s1", false);
    assert_int_equal(differs(p, "s1", NULL), 0);
    free(p);
}

static void test_a_write_after_the_snapshot_makes_the_states_differ(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 16 * MiB);
    write_at(p, 0, 1 * MiB, 3);
    snapshot(p, "s1", false);
    /* overwrite a shared cluster: copy on write moves it */
    write_at(p, 512 * 1024, 4096, 5);
    uint64_t first = 0;
    assert_int_equal(differs(p, "s1", &first), 1);
    assert_int_equal(first, 512 * 1024);
    free(p);
}

static void test_a_write_to_an_unallocated_cluster_makes_the_states_differ(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 16 * MiB);
    snapshot(p, "s1", false);
    write_at(p, 12 * MiB, 100, 6);
    uint64_t first = 0;
    assert_int_equal(differs(p, "s1", &first), 1);
    assert_int_equal(first, 12 * MiB);
    free(p);
}

static void test_applying_the_snapshot_makes_the_states_equal_again(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 16 * MiB);
    write_at(p, 0, 2 * MiB, 3);
    snapshot(p, "s1", false);
    write_at(p, 1 * MiB, 4096, 8);
    snapshot(p, "s2", false);
    assert_int_equal(differs(p, "s1", NULL), 1);
    assert_int_equal(differs(p, "s2", NULL), 0);
    snapshot(p, "s1", true);
    assert_int_equal(differs(p, "s1", NULL), 0);
    assert_int_equal(differs(p, "s2", NULL), 1);
    free(p);
}

static void test_the_check_works_while_the_caller_holds_the_image_writable(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 16 * MiB);
    snapshot(p, "s1", false);
    ic_image *img = open_image(p, IC_OPEN_RDWR);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_snapshot_differs(img, "s1", NULL, &err), err);
    uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), err);
    TU_ASSERT_OK(ic_image_flush(img, &err), err);
    uint64_t first = 1;
    int ret = ic_snapshot_differs(img, "s1", &first, &err);
    TU_ASSERT_OK(ret, err);
    assert_int_equal(ret, 1);
    assert_int_equal(first, 0);
    assert_int_equal(ic_image_close(img), 0);
    free(p);
}

static void test_qemu_img_snapshots_and_qemu_io_writes_are_judged_alike(void **state)
{
    (void)state;
    need_qemu();
    char *p = path("q.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 '%s' 16M && "
                           "qemu-io -c 'write -P 1 0 3M' '%s' >/dev/null && "
                           "qemu-img snapshot -c s1 '%s'", p, p, p), 0);
    assert_int_equal(differs(p, "s1", NULL), 0);
    assert_int_equal(tu_sh("qemu-io -c 'write -P 2 2M 64k' '%s' >/dev/null", p), 0);
    uint64_t first = 0;
    assert_int_equal(differs(p, "s1", &first), 1);
    assert_int_equal(first, 2 * MiB);
    assert_int_equal(tu_sh("qemu-img snapshot -a s1 '%s'", p), 0);
    assert_int_equal(differs(p, "s1", NULL), 0);
    assert_int_equal(tu_sh("qemu-io -c 'discard 0 64k' '%s' >/dev/null", p), 0);
    assert_int_equal(differs(p, "s1", &first), 1);
    assert_int_equal(first, 0);
    assert_int_equal(tu_sh("qemu-img check -q '%s'", p), 0);
    free(p);
}

static void test_a_resize_since_the_snapshot_is_a_difference(void **state)
{
    (void)state;
    need_qemu();
    char *p = path("q.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 '%s' 16M && "
                           "qemu-img snapshot -c s1 '%s' && qemu-img resize -q '%s' 32M",
                           p, p, p), 0);
    uint64_t first = 0;
    assert_int_equal(differs(p, "s1", &first), 1);
    assert_int_equal(first, 16 * MiB);
    free(p);
}

static void test_an_unknown_snapshot_or_a_raw_image_is_an_error(void **state)
{
    (void)state;
    char *p = path("a.qcow2");
    create(p, NULL, 1 * MiB);
    ic_image *img = open_image(p, 0);
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_snapshot_differs(img, "nope", NULL, &err), err, ENOENT, "nope");
    ic_image_close(img);
    char *r = path("a.raw");
    ic_create_options o = IC_CREATE_OPTIONS_INIT;
    o.format = "raw";
    o.size = 1 * MiB;
    o.size_set = true;
    TU_ASSERT_OK(ic_image_create(r, &o, &err), err);
    img = open_image(r, 0);
    TU_ASSERT_ERR(ic_snapshot_differs(img, "s1", NULL, &err), err, ENOTSUP, "snapshots");
    ic_image_close(img);
    free(p);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_fresh_overlay_allocates_nothing_though_its_backing_holds_data, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(test_a_write_into_the_overlay_is_found_at_its_offset,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_qemu_io_zero_write_in_a_qemu_img_overlay_counts_as_allocated, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_image_allocates_nothing, cf_setup,
                                        cf_teardown),
        cmocka_unit_test_setup_teardown(test_a_fresh_internal_snapshot_is_the_active_state,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_a_write_after_the_snapshot_makes_the_states_differ,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_write_to_an_unallocated_cluster_makes_the_states_differ, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_applying_the_snapshot_makes_the_states_equal_again, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_check_works_while_the_caller_holds_the_image_writable, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qemu_img_snapshots_and_qemu_io_writes_are_judged_alike, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_a_resize_since_the_snapshot_is_a_difference, cf_setup,
                                        cf_teardown),
        cmocka_unit_test_setup_teardown(test_an_unknown_snapshot_or_a_raw_image_is_an_error,
                                        cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
