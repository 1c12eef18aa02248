/*
 * test-util-path.c - backing-name resolution (src/util/path.c).
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/path.h"

static void expect_resolve(const char *img, const char *name, const char *want)
{
    char *r = ic_path_resolve_backing(img, name);
    assert_non_null(r);
    if (strcmp(r, want) != 0)
        fail_msg("resolve(\"%s\", \"%s\") = \"%s\", want \"%s\"", img ? img : "(null)", name, r,
                 want);
    free(r);
}

static void test_util_path__relative_backing_names_are_relative_to_the_overlay_dir(void **state)
{
    (void)state;
    expect_resolve("/images/vm/top.qcow2", "base.qcow2", "/images/vm/base.qcow2");
    expect_resolve("/images/vm/top.qcow2", "../gold/base.raw", "/images/vm/../gold/base.raw");
    expect_resolve("vm/top.qcow2", "base.qcow2", "vm/base.qcow2"); /* stays relative */
    expect_resolve("/top.qcow2", "base", "/base");
}

static void test_util_path__absolute_names_and_dirless_overlays_keep_the_name(void **state)
{
    (void)state;
    expect_resolve("/images/vm/top.qcow2", "/srv/base.qcow2", "/srv/base.qcow2");
    expect_resolve("top.qcow2", "base.qcow2", "base.qcow2");
    expect_resolve(NULL, "base.qcow2", "base.qcow2");
    expect_resolve("/a/b/", "c", "/a/b/c");
}

static void test_util_path__dirname_follows_posix_for_the_common_cases(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "/a/b/c.img", "/a/b" }, { "c.img", "." }, { "/c.img", "/" }, { "a/c", "a" },
    };
    for (size_t i = 0; i < IC_ARRAY_SIZE(cases); i++) {
        char *d = ic_path_dirname(cases[i][0]);
        assert_non_null(d);
        assert_string_equal(d, cases[i][1]);
        free(d);
    }
    assert_true(ic_path_is_absolute("/x"));
    assert_false(ic_path_is_absolute("x/y"));
    assert_false(ic_path_is_absolute(""));
    assert_false(ic_path_is_absolute(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_path__relative_backing_names_are_relative_to_the_overlay_dir),
        cmocka_unit_test(test_util_path__absolute_names_and_dirless_overlays_keep_the_name),
        cmocka_unit_test(test_util_path__dirname_follows_posix_for_the_common_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
