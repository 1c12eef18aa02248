/*
 * test-qed-check.c - src/qed/qed-check.c: counters on clean images,
 * corruptions qemu's QED check detects (invalid L1/L2 offsets, clusters past
 * EOF, double references), need-check left set, repair, and leak repair by
 * truncation and compaction, on images damaged by tests/helpers/qed-damage.
 * (The same images against qemu-img check: test-qed-oracle.c.)
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
#include "qed-damage.h"

struct fx {
    char *dir;
    char *path;
    struct tu_model *m;
};

static void write_both(ic_image *img, struct tu_model *m, uint64_t off, size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    tu_model_write(m, buf, len, off);
    free(buf);
}

static ic_image *open_img(const char *path, unsigned flags)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    return img;
}

/* 4 KiB clusters, 2-cluster tables (4 MiB per L2), 12 MiB.  Host layout:
 * 0 header, 1-2 L1, 3-6 data (guest 0-3), 7-8 L2#1, 9-10 (guest 10-11),
 * 11-12 (guest 1025-1026), 13-14 L2#2, 15 (guest 4). */
static void fx_init(struct fx *f)
{
    f->dir = strdup(cf_dir); /* cf_setup made it, cf_teardown removes it */
    assert_non_null(f->dir);
    f->path = tu_path(f->dir, "a.qed");
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qed";
    co.size = 12 << 20;
    co.size_set = true;
    co.options = "cluster_size=4096,table_size=2";
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(f->path, &co, &err), err);
    f->m = tu_model_new(12 << 20);
    ic_image *img = open_img(f->path, IC_OPEN_RDWR);
    write_both(img, f->m, 0, 16384, 1);
    write_both(img, f->m, 40960, 8192, 2);
    write_both(img, f->m, (4 << 20) + 4096, 8192, 4);
    write_both(img, f->m, 16384, 4096, 3);
    TU_ASSERT_OK(ic_image_close(img), err);
}

static void fx_free(struct fx *f)
{
    tu_model_free(f->m);
    free(f->dir);
    free(f->path);
}

struct lines {
    char text[4096];
};

static void collect(void *payload, const char *line)
{
    struct lines *l = payload;
    strncat(l->text, line, sizeof(l->text) - strlen(l->text) - 2);
    strcat(l->text, "\n");
}

static ic_check_result run_check(const char *path, unsigned fix, struct lines *lines)
{
    ic_image *img = open_img(path, (fix && !(fix & IC_CHECK_DRY_RUN) ? IC_OPEN_RDWR : 0) |
                                   IC_OPEN_CHECK | IC_OPEN_NO_BACKING);
    ic_check_result res;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_check(img, fix, lines ? collect : NULL, lines, &res, &err), err);
    TU_ASSERT_OK(ic_image_close(img), err);
    return res;
}

static void test_qed_check__counts_clusters_on_a_clean_image(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(r.check_errors, 0);
    assert_int_equal(r.total_clusters, 3072);
    assert_int_equal(r.allocated_clusters, 9);
    /* table 1 maps 3-6, 15, 9-10: 2 breaks; table 2 maps 11-12 */
    assert_int_equal(r.fragmented_clusters, 2);
    assert_int_equal(r.image_end_offset, 0);
    fx_free(&f);
}

static void test_qed_check__finds_and_repairs_an_invalid_l2_offset(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(qd_set_l2(f.path, 8192, 1 << 30), 0);   /* past EOF */
    assert_int_equal(qd_set_l2(f.path, 12288, 0x2001), 0);   /* unaligned */
    assert_int_equal(qd_set_l2(f.path, 40960, 4096), 0);     /* the L1 table */
    struct lines l = { "" };
    ic_check_result r = run_check(f.path, 0, &l);
    /* the L1 cluster is then referenced twice: a corruption too */
    assert_int_equal(r.corruptions, 3);
    assert_non_null(strstr(l.text, "invalid offset 0x40000000"));
    r = run_check(f.path, IC_FIX_ERRORS, NULL);
    assert_int_equal(r.corruptions_fixed, 2);
    assert_int_equal(r.corruptions, 1); /* a double reference cannot be fixed */
    fx_free(&f);
}

static void test_qed_check__repairs_invalid_entries_then_the_image_is_clean(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(qd_set_l2(f.path, 8192, 1 << 30), 0);
    assert_int_equal(qd_set_l1(f.path, 3, 0x12345000), 0);
    assert_int_equal(qd_set_need_check(f.path, true), 0);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions, 2);
    assert_int_equal(r.leaks, 1);
    /* -r all: corruptions fixed and the leak they leave behind too */
    r = run_check(f.path, IC_FIX_ERRORS | IC_FIX_LEAKS, NULL);
    assert_int_equal(r.corruptions_fixed, 2);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks_fixed, 1);
    assert_int_equal(r.leaks, 0);
    r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    struct qd_info in;
    assert_int_equal(qd_read_info(f.path, &in), 0);
    assert_false(in.features & 2);
    tu_model_zero(f.m, 8192, 4096);
    TU_MODEL_ASSERT_FILE(f.m, f.path);
    fx_free(&f);
}

static void test_qed_check__reports_a_double_reference_and_leaves_it(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(qd_double_reference(f.path, 0, 40960), 0);
    struct lines l = { "" };
    ic_check_result r = run_check(f.path, 0, &l);
    assert_int_equal(r.corruptions, 1);
    assert_int_equal(r.leaks, 1);
    assert_non_null(strstr(l.text, "referenced more than once"));
    r = run_check(f.path, IC_FIX_ERRORS | IC_FIX_LEAKS, NULL);
    assert_int_equal(r.corruptions, 1);
    assert_int_equal(r.leaks_fixed, 0); /* no compaction over a corruption */
    fx_free(&f);
}

static void test_qed_check__repairs_leaks_at_the_end_by_truncating(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct qd_info before, after;
    assert_int_equal(qd_read_info(f.path, &before), 0);
    assert_int_equal(qd_append_clusters(f.path, 3), 0);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.leaks, 3);
    r = run_check(f.path, IC_FIX_LEAKS | IC_CHECK_DRY_RUN, NULL);
    assert_int_equal(r.leaks, 3);
    assert_int_equal(r.leaks_fixed, 0);
    r = run_check(f.path, IC_FIX_LEAKS, NULL);
    assert_int_equal(r.leaks_fixed, 3);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(qd_read_info(f.path, &after), 0);
    assert_int_equal(after.file_size, before.file_size);
    TU_MODEL_ASSERT_FILE(f.m, f.path);
    fx_free(&f);
}

static void test_qed_check__repairs_leaks_in_the_middle_by_compaction(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct qd_info before, after;
    assert_int_equal(qd_read_info(f.path, &before), 0);
    /* drop the references of guest clusters 1 and 2 (reads as zeroes now):
     * their host clusters in the middle of the file leak */
    assert_int_equal(qd_set_l2(f.path, 4096, 0), 0);
    assert_int_equal(qd_set_l2(f.path, 8192, 0), 0);
    /* and the whole second L2 table with its data */
    assert_int_equal(qd_set_l1(f.path, 1, 0), 0);
    tu_model_zero(f.m, 4096, 8192);
    tu_model_zero(f.m, 4 << 20, 4 << 20);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.leaks, 2 + 2 + 2); /* 2 data, 2 L2 table, 2 data */
    r = run_check(f.path, IC_FIX_LEAKS, NULL);
    assert_int_equal(r.leaks_fixed, 6);
    assert_int_equal(r.leaks, 0);
    r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions + r.leaks, 0);
    assert_int_equal(qd_read_info(f.path, &after), 0);
    assert_int_equal(after.file_size, before.file_size - 6 * 4096);
    TU_MODEL_ASSERT_FILE(f.m, f.path);
    fx_free(&f);
}

static void test_qed_check__moves_an_l2_table_when_compacting(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    /* free two clusters early in the file, then allocate a third table at
     * the end: compaction must move that table into the hole */
    assert_int_equal(qd_set_l2(f.path, 0, 0), 0);
    assert_int_equal(qd_set_l2(f.path, 4096, 0), 0);
    tu_model_zero(f.m, 0, 8192);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.leaks, 2);
    ic_image *img = open_img(f.path, IC_OPEN_RDWR);
    write_both(img, f.m, (8 << 20) + 4096, 100, 8); /* data 16, L2#3 17-18 */
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_close(img), err);
    r = run_check(f.path, IC_FIX_LEAKS, NULL);
    assert_int_equal(r.leaks_fixed, 2);
    r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions + r.leaks, 0);
    uint64_t l1;
    struct qd_info in;
    assert_int_equal(qd_read_info(f.path, &in), 0);
    assert_int_equal(qd_peek_le64(f.path, in.l1_offset + 2 * 8, &l1), 0);
    assert_int_equal(l1, 3 * 4096);
    assert_int_equal(in.file_size, 17 * 4096);
    assert_true(l1 < in.file_size - 2 * 4096);
    TU_MODEL_ASSERT_FILE(f.m, f.path);
    fx_free(&f);
}

static void test_qed_check__clears_need_check_left_set_on_a_clean_image(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(qd_set_need_check(f.path, true), 0);
    ic_check_result r = run_check(f.path, 0, NULL);
    assert_int_equal(r.corruptions + r.leaks, 0);
    struct qd_info in;
    assert_int_equal(qd_read_info(f.path, &in), 0);
    assert_true(in.features & 2);
    r = run_check(f.path, IC_FIX_LEAKS, NULL);
    assert_int_equal(qd_read_info(f.path, &in), 0);
    assert_false(in.features & 2);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_qed_check__counts_clusters_on_a_clean_image, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__finds_and_repairs_an_invalid_l2_offset, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__repairs_invalid_entries_then_the_image_is_clean, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__reports_a_double_reference_and_leaves_it, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__repairs_leaks_at_the_end_by_truncating, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__repairs_leaks_in_the_middle_by_compaction, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__moves_an_l2_table_when_compacting, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_check__clears_need_check_left_set_on_a_clean_image, cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
