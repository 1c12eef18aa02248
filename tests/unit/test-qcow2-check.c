/*
 * test-qcow2-check.c - the qcow2 check op (src/qcow2/qcow2-check.c): a clean
 * image, a leak found and repaired, a dry run that writes nothing, and a
 * refcount that needs a rebuild (refused by -r leaks, repaired by -r all).
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

struct fx {
    char *dir, *path;
    unsigned lines;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "a.qcow2");
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = 4u << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(f->path, &co, &err), err);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 5);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), err);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 3u << 20, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void count_line(void *payload, const char *line)
{
    struct fx *f = payload;
    assert_true(strlen(line) > 0);
    f->lines++;
}

static int check(struct fx *f, unsigned fix, ic_check_result *r)
{
    ic_error *err = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK |
              ((fix && !(fix & IC_CHECK_DRY_RUN)) ? IC_OPEN_RDWR : 0);
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    int ret = ic_image_check(img, fix, count_line, f, r, &err);
    TU_ASSERT_OK(ret, err);
    assert_int_equal(ic_image_close(img), 0);
    return ret;
}

static void poke(struct fx *f, const char *defect)
{
    assert_int_equal(tu_sh("python3 tests/helpers/qcow2-poke.py '%s' %s", f->path, defect), 0);
}

static void test_qcow2_check__clean_image_reports_nothing(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    check(f, 0, &r);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    assert_int_equal(r.allocated_clusters, 2);
    assert_int_equal(r.total_clusters, 64);
    assert_true(r.image_end_offset > 0);
    assert_int_equal(f->lines, 0);
}

static void test_qcow2_check__leak_is_found_and_repaired(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "leak");
    check(f, 0, &r);
    assert_int_equal(r.leaks, 1);
    assert_int_equal(r.corruptions, 0);
    assert_true(f->lines >= 1);
    check(f, IC_FIX_LEAKS, &r);
    assert_int_equal(r.leaks_fixed, 1);
    check(f, 0, &r);
    assert_int_equal(r.leaks + r.corruptions, 0);
}

static void test_qcow2_check__dry_run_writes_nothing(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "refcount-zero");
    uint8_t *before = NULL, *after = NULL;
    size_t lb, la;
    assert_int_equal(tu_read_file(f->path, &before, &lb), 0);
    check(f, IC_FIX_LEAKS | IC_FIX_ERRORS | IC_CHECK_DRY_RUN, &r);
    assert_true(r.corruptions > 0);
    assert_int_equal(r.corruptions_fixed, 0);
    assert_int_equal(tu_read_file(f->path, &after, &la), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(before, after, la);
    free(before);
    free(after);
}

static void test_qcow2_check__zero_refcount_needs_rebuild_with_r_all(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "refcount-zero");
    check(f, IC_FIX_LEAKS, &r);
    assert_int_equal(r.check_errors, 1); /* "need to rebuild" as qemu-img -r leaks */
    check(f, IC_FIX_LEAKS | IC_FIX_ERRORS, &r);
    assert_true(r.corruptions_fixed > 0);
    assert_int_equal(r.corruptions, 0);
    check(f, 0, &r);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qcow2_check__clean_image_reports_nothing, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__leak_is_found_and_repaired, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__dry_run_writes_nothing, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__zero_refcount_needs_rebuild_with_r_all,
                                        fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
