/*
 * test-qcow2-snapshot.c - qcow2 internal snapshots through the public API
 * (src/qcow2/qcow2-snapshot.c, src/snap/snap-internal.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/snapshot.h"
#include "io/io-mem.h"

#define DISK (4u << 20)

/* The file every test works on, in the chain fixture's folder (cf_setup
 * makes it, cf_teardown removes it). */
#define FILE_PATH cf_path("a.qcow2")

static ic_image *make(const char *path, const char *opts)
{
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = opts;
    co.size = DISK;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 3);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 65536, &err), err);
    return img;
}

static void assert_clean(ic_image *img)
{
    ic_error *err = NULL;
    ic_check_result r;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &r, &err), err);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(r.check_errors, 0);
}

static void test_qcow2_snapshot__create_lists_every_field(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make(FILE_PATH, NULL);
    TU_ASSERT_OK(ic_snapshot_create(img, "first", &err), err);
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    TU_ASSERT_OK(n, err);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "1");
    assert_string_equal(v[0].name, "first");
    assert_int_equal(v[0].disk_size, DISK);
    assert_int_equal(v[0].icount, 0);
    assert_int_equal(v[0].vm_state_size, 0);
    assert_true(v[0].date_sec > 0);
    ic_snapshot_list_free(v, (size_t)n);
    assert_clean(img);
    ic_image_close(img);
}

static void test_qcow2_snapshot__create_refuses_an_existing_name(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make(FILE_PATH, NULL);
    TU_ASSERT_OK(ic_snapshot_create(img, "x", &err), err);
    TU_ASSERT_ERR(ic_snapshot_create(img, "x", &err), err, EEXIST, "already exists");
    TU_ASSERT_ERR(ic_snapshot_create(img, "", &err), err, EINVAL, "empty");
    ic_image_close(img);
}

static void test_qcow2_snapshot__apply_restores_data_and_delete_frees(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make(FILE_PATH, NULL);
    uint8_t want[65536], got[65536], other[65536];
    TU_ASSERT_OK(ic_image_pread(img, want, sizeof(want), 65536, &err), err);
    TU_ASSERT_OK(ic_snapshot_create(img, "s", &err), err);
    tu_fill_pattern(other, sizeof(other), 9);
    TU_ASSERT_OK(ic_image_pwrite(img, other, sizeof(other), 65536, &err), err);
    TU_ASSERT_OK(ic_snapshot_apply(img, "1", &err), err);
    TU_ASSERT_OK(ic_image_pread(img, got, sizeof(got), 65536, &err), err);
    assert_memory_equal(got, want, sizeof(got));
    assert_clean(img);
    TU_ASSERT_OK(ic_snapshot_delete(img, "s", &err), err);
    TU_ASSERT_ERR(ic_snapshot_delete(img, "s", &err), err, ENOENT, "not found");
    TU_ASSERT_ERR(ic_snapshot_apply(img, "s", &err), err, ENOENT, "not found");
    assert_clean(img);
    ic_image_close(img);
}

static void test_qcow2_snapshot__refcount_bits_1_refuses_before_writing(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make(FILE_PATH, "refcount_bits=1");
    TU_ASSERT_OK(ic_image_flush(img, &err), err);
    uint8_t *before = NULL, *after = NULL;
    size_t lb = 0, la = 0;
    assert_int_equal(tu_read_file(FILE_PATH, &before, &lb), 0);
    TU_ASSERT_ERR(ic_snapshot_create(img, "s", &err), err, ERANGE, "refcount_bits=1");
    assert_int_equal(tu_read_file(FILE_PATH, &after, &la), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(after, before, la);
    assert_clean(img);
    free(before);
    free(after);
    ic_image_close(img);
}

static void test_qcow2_snapshot__create_with_1000_snapshots_reads_only_the_active_tree(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make(FILE_PATH, NULL);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        TU_ASSERT_OK(ic_snapshot_create(img, name, &err), err);
    }
    ic_image_close(img);
    /* reopen through a fault wrapper that only counts events */
    ic_io *file = NULL, *wrap = NULL;
    assert_int_equal(tu_file_to_mem(&file, FILE_PATH), 0);
    TU_ASSERT_OK(ic_io_fault_wrap(&wrap, file, &err), err);
    ic_io *borrowed = NULL;
    assert_int_equal(tu_io_borrow(&borrowed, wrap), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    TU_ASSERT_OK(ic_image_open_io(&img, borrowed, &o, &err), err);
    TU_ASSERT_OK(ic_snapshot_create(img, "last", &err), err);
    /* one active L2 table: read once to count, once to check COPIED */
    assert_int_equal(ic_io_fault_event_count(wrap, IC_EV_L2_ALLOC_COW_READ), 2);
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    assert_int_equal(n, 1001);
    assert_string_equal(v[1000].id, "1001");
    ic_snapshot_list_free(v, (size_t)n);
    assert_clean(img);
    ic_image_close(img);
    ic_io_close(ic_io_fault_release_inner(wrap));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot__create_lists_every_field, cf_setup,
                                        cf_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot__create_refuses_an_existing_name,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot__apply_restores_data_and_delete_frees,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot__refcount_bits_1_refuses_before_writing,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qcow2_snapshot__create_with_1000_snapshots_reads_only_the_active_tree, cf_setup,
            cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
