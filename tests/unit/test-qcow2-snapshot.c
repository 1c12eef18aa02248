/*
 * test-qcow2-snapshot.c - qcow2 internal snapshots through the public API
 * (src/qcow2/qcow2-snapshot.c, src/snap/snap-internal.c).
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
#include "chain-fixture.h"
#include "imgchain/snapshot.h"
#include "io/io-mem.h"
#include "qcow2/qcow2.h"

#define DISK (4u << 20)

/* The file every test works on, in the chain fixture's folder (cf_setup
 * makes it, cf_teardown removes it). */
#define FILE_PATH cf_path("a.qcow2")

/* A new image with no data written. */
static ic_image *make_empty(const char *path, const char *opts)
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
    return img;
}

/* A new image with 64 KiB of data at 64 KiB. */
static ic_image *make(const char *path, const char *opts)
{
    ic_error *err = NULL;
    ic_image *img = make_empty(path, opts);
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
    /* one active L2 table, read once: counting it leaves a summary of its
     * data runs from which the COPIED check is made */
    assert_int_equal(ic_io_fault_event_count(wrap, IC_EV_L2_ALLOC_COW_READ), 1);
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    assert_int_equal(n, 1001);
    assert_string_equal(v[1000].id, "1001");
    ic_snapshot_list_free(v, (size_t)n);
    assert_clean(img);
    ic_image_close(img);
    ic_io_close(ic_io_fault_release_inner(wrap));
}

/* Host offset of the data cluster at guest offset @off. */
static uint64_t host_of(ic_image *img, uint64_t off)
{
    uint64_t pnum = 0, map = 0;
    unsigned flags = 0;
    ic_io *file = NULL;
    assert_int_equal(qcow2_cluster_block_status(img, off, 512, &pnum, &flags, &map, &file), 0);
    assert_true(flags & IC_BS_OFFSET_VALID);
    return map;
}

static void test_qcow2_snapshot__runs_crossing_refcount_blocks_count_every_cluster_at_every_width(
    void **state)
{
    (void)state;
    /* 512-byte clusters: a refcount block holds 2048 (2 bits) down to 64
     * (64 bits) entries, so 1 MiB of data (2048 clusters that follow each
     * other on the host) spans one or more block boundaries */
    static const unsigned widths[] = { 2, 4, 8, 16, 32, 64 };
    enum { DATA = 1u << 20 };
    uint8_t *want = malloc(DATA), *got = malloc(DATA), other[8192];
    assert_non_null(want);
    assert_non_null(got);
    for (size_t w = 0; w < IC_ARRAY_SIZE(widths); w++) {
        ic_error *err = NULL;
        char opts[64];
        snprintf(opts, sizeof(opts), "cluster_size=512,refcount_bits=%u,preallocation=metadata",
                 widths[w]);
        ic_image *img = make_empty(FILE_PATH, opts);
        tu_fill_pattern(want, DATA, 20 + (int)w);
        TU_ASSERT_OK(ic_image_pwrite(img, want, DATA, 0, &err), err);
        struct qcow2_state *s = qcow2_state(img);
        /* some run of clusters that follow each other on the host goes
         * from one refcount block into the next */
        bool crosses = false;
        for (uint64_t g = 512; g < DATA && !crosses; g += 512) {
            uint64_t a = host_of(img, g - 512) >> s->cluster_bits;
            uint64_t b = host_of(img, g) >> s->cluster_bits;
            crosses = b == a + 1 && (a >> s->refblock_bits) != (b >> s->refblock_bits);
        }
        assert_true(crosses);
        TU_ASSERT_OK(ic_snapshot_create(img, "s1", &err), err);
        assert_clean(img);
        /* two snapshots share every cluster three times: more than 2 bits hold */
        bool two = widths[w] > 2;
        if (two) {
            TU_ASSERT_OK(ic_snapshot_create(img, "s2", &err), err);
            assert_clean(img);
        }
        tu_fill_pattern(other, sizeof(other), 99);
        TU_ASSERT_OK(ic_image_pwrite(img, other, sizeof(other), DATA / 2, &err), err);
        TU_ASSERT_OK(ic_snapshot_apply(img, "s1", &err), err);
        TU_ASSERT_OK(ic_image_pread(img, got, DATA, 0, &err), err);
        assert_memory_equal(got, want, DATA);
        assert_clean(img);
        if (two) {
            TU_ASSERT_OK(ic_snapshot_delete(img, "s2", &err), err);
            assert_clean(img);
        }
        TU_ASSERT_OK(ic_snapshot_delete(img, "s1", &err), err);
        assert_clean(img);
        TU_ASSERT_OK(ic_image_pread(img, got, DATA, 0, &err), err);
        assert_memory_equal(got, want, DATA);
        /* no snapshot left: every data cluster is back at refcount 1 */
        for (uint64_t g = 0; g < DATA; g += 512) {
            uint64_t rc = 0;
            assert_int_equal(qcow2_get_refcount(img, host_of(img, g) >> s->cluster_bits, &rc), 0);
            assert_int_equal(rc, 1);
        }
        ic_image_close(img);
        assert_int_equal(remove(FILE_PATH), 0);
    }
    free(want);
    free(got);
}

static void test_qcow2_snapshot__a_cluster_at_its_maximum_inside_a_run_is_named_and_nothing_written(
    void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_image *img = make_empty(FILE_PATH, "cluster_size=512,refcount_bits=2");
    uint8_t data[16384];
    tu_fill_pattern(data, sizeof(data), 5);
    TU_ASSERT_OK(ic_image_pwrite(img, data, sizeof(data), 0, &err), err);
    TU_ASSERT_OK(ic_snapshot_create(img, "s1", &err), err);
    /* every data cluster now has refcount 2; one in the middle of a run
     * is raised to 3, the most 2 bits hold */
    struct qcow2_state *s = qcow2_state(img);
    uint64_t mid = host_of(img, 8192);
    assert_int_equal(host_of(img, 0) + 8192, mid);
    assert_int_equal(qcow2_update_refcount(img, mid, s->cluster_size, 1), 0);
    TU_ASSERT_OK(ic_image_flush(img, &err), err);
    uint8_t *before = NULL, *after = NULL;
    size_t lb = 0, la = 0;
    assert_int_equal(tu_read_file(FILE_PATH, &before, &lb), 0);
    char part[128];
    snprintf(part, sizeof(part), "cluster %#" PRIx64 ": its refcount 3 is the maximum", mid);
    TU_ASSERT_ERR(ic_snapshot_create(img, "s2", &err), err, ERANGE, part);
    assert_int_equal(tu_read_file(FILE_PATH, &after, &la), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(after, before, la);
    free(before);
    free(after);
    ic_image_close(img);
}

/* Opens FILE_PATH (held in memory) through a fault wrapper that counts
 * events; *wrap receives the wrapper. */
static ic_image *open_counted(ic_io **wrap)
{
    ic_error *err = NULL;
    ic_io *file = NULL, *borrowed = NULL;
    ic_image *img = NULL;
    assert_int_equal(tu_file_to_mem(&file, FILE_PATH), 0);
    TU_ASSERT_OK(ic_io_fault_wrap(wrap, file, &err), err);
    assert_int_equal(tu_io_borrow(&borrowed, *wrap), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    TU_ASSERT_OK(ic_image_open_io(&img, borrowed, &o, &err), err);
    return img;
}

static void test_qcow2_snapshot__a_table_too_fragmented_to_summarise_is_read_again_and_fixed(
    void **state)
{
    (void)state;
    ic_error *err = NULL;
    /* one L2 table (64 KiB clusters) whose data clusters are written in
     * reverse order: no two entries follow each other on the host, so the
     * table has more runs than a summary holds */
    ic_image *img = make_empty(FILE_PATH, NULL);
    uint8_t buf[65536];
    for (int i = 15; i >= 0; i--) {
        tu_fill_pattern(buf, sizeof(buf), 40 + i);
        TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), (uint64_t)i * 65536, &err), err);
    }
    ic_image_close(img);
    ic_io *wrap = NULL;
    img = open_counted(&wrap);
    TU_ASSERT_OK(ic_snapshot_create(img, "s", &err), err);
    /* counted once, then read again for the COPIED check */
    assert_int_equal(ic_io_fault_event_count(wrap, IC_EV_L2_ALLOC_COW_READ), 2);
    assert_clean(img);
    /* deleting the only snapshot sets every COPIED flag again */
    TU_ASSERT_OK(ic_snapshot_delete(img, "s", &err), err);
    assert_clean(img);
    for (int i = 0; i < 16; i++) {
        uint8_t got[65536];
        tu_fill_pattern(buf, sizeof(buf), 40 + i);
        TU_ASSERT_OK(ic_image_pread(img, got, sizeof(got), (uint64_t)i * 65536, &err), err);
        assert_memory_equal(got, buf, sizeof(got));
    }
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
        cmocka_unit_test_setup_teardown(
            test_qcow2_snapshot__runs_crossing_refcount_blocks_count_every_cluster_at_every_width,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qcow2_snapshot__a_cluster_at_its_maximum_inside_a_run_is_named_and_nothing_written,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qcow2_snapshot__a_table_too_fragmented_to_summarise_is_read_again_and_fixed,
            cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
