/*
 * test-util-opts.c - qemu-img "-o k=v,..." option strings (src/util/opts.c).
 */
#include <errno.h>

#include "testutil.h"
#include "util/opts.h"

static ic_opts *parse(const char *s)
{
    ic_opts *o = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_opts_parse(&o, s, &err), err);
    assert_non_null(o);
    return o;
}

static void test_util_opts__parses_pairs_and_takes_them_by_type(void **state)
{
    (void)state;
    ic_opts *o = parse("cluster_size=64k,compat=1.1,lazy_refcounts=on,refcount_bits=16");
    ic_error *err = NULL;
    const char *s = NULL;
    uint64_t n = 0;
    bool b = false;
    assert_int_equal(ic_opts_take_size(o, "cluster_size", &n, &err), 1);
    assert_int_equal(n, 65536);
    assert_int_equal(ic_opts_take_str(o, "compat", &s), 1);
    assert_string_equal(s, "1.1");
    assert_int_equal(ic_opts_take_bool(o, "lazy_refcounts", &b, &err), 1);
    assert_true(b);
    assert_int_equal(ic_opts_take_uint(o, "refcount_bits", &n, &err), 1);
    assert_int_equal(n, 16);
    TU_ASSERT_OK(ic_opts_check_unused(o, "qcow2", &err), err);
    ic_opts_free(o);
}

static void test_util_opts__absent_keys_leave_the_output_untouched(void **state)
{
    (void)state;
    ic_opts *o = parse(NULL);
    ic_error *err = NULL;
    const char *s = "keep";
    uint64_t n = 7;
    bool b = true;
    assert_int_equal(ic_opts_take_str(o, "x", &s), 0);
    assert_string_equal(s, "keep");
    assert_int_equal(ic_opts_take_size(o, "x", &n, &err), 0);
    assert_int_equal(ic_opts_take_bool(o, "x", &b, &err), 0);
    assert_int_equal(n, 7);
    assert_true(b);
    assert_null(err);
    ic_opts_free(o);
    o = parse("");
    TU_ASSERT_OK(ic_opts_check_unused(o, "qcow2", &err), err);
    ic_opts_free(o);
}

static void test_util_opts__double_comma_is_a_literal_comma(void **state)
{
    (void)state;
    ic_opts *o = parse("backing_file=a,,b.img,backing_fmt=raw");
    const char *s = NULL;
    assert_int_equal(ic_opts_take_str(o, "backing_file", &s), 1);
    assert_string_equal(s, "a,b.img");
    assert_int_equal(ic_opts_take_str(o, "backing_fmt", &s), 1);
    assert_string_equal(s, "raw");
    ic_opts_free(o);
}

static void test_util_opts__bare_key_means_on_and_empty_items_are_skipped(void **state)
{
    (void)state;
    ic_opts *o = parse(",lazy_refcounts,extended_l2=off,");
    ic_error *err = NULL;
    bool b = false;
    assert_int_equal(ic_opts_take_bool(o, "lazy_refcounts", &b, &err), 1);
    assert_true(b);
    assert_int_equal(ic_opts_take_bool(o, "extended_l2", &b, &err), 1);
    assert_false(b);
    TU_ASSERT_OK(ic_opts_check_unused(o, "qcow2", &err), err);
    ic_opts_free(o);
    /* ",," escapes a comma anywhere, keys included (QemuOpts) */
    o = parse("a,,b=1");
    const char *s = NULL;
    assert_int_equal(ic_opts_take_str(o, "a,b", &s), 1);
    assert_string_equal(s, "1");
    ic_opts_free(o);
}

static void test_util_opts__repeated_key_keeps_the_last_value_and_counts_as_used(void **state)
{
    (void)state;
    ic_opts *o = parse("size=1M,size=2M");
    ic_error *err = NULL;
    uint64_t n = 0;
    assert_int_equal(ic_opts_take_size(o, "size", &n, &err), 1);
    assert_int_equal(n, 2u << 20);
    TU_ASSERT_OK(ic_opts_check_unused(o, "qcow2", &err), err);
    ic_opts_free(o);
}

static void test_util_opts__set_adds_or_replaces_a_key(void **state)
{
    (void)state;
    ic_opts *o = parse("backing_fmt=qcow2");
    const char *s = NULL;
    assert_int_equal(ic_opts_set(o, "backing_fmt", "raw"), 0);
    assert_int_equal(ic_opts_set(o, "size", "1G"), 0);
    assert_int_equal(ic_opts_take_str(o, "backing_fmt", &s), 1);
    assert_string_equal(s, "raw");
    assert_int_equal(ic_opts_take_str(o, "size", &s), 1);
    assert_string_equal(s, "1G");
    ic_opts_free(o);
}

static void test_util_opts__empty_key_is_refused_naming_the_string(void **state)
{
    (void)state;
    ic_opts *o = NULL;
    ic_error *err = NULL;
    int ret = ic_opts_parse(&o, "a=1,=x", &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    TU_ASSERT_ERR(ret, err, EINVAL, "invalid option string 'a=1,=x'");
    assert_null(o);
}

static void test_util_opts__bad_values_are_refused_naming_key_and_value(void **state)
{
    (void)state;
    ic_opts *o = parse("lazy_refcounts=maybe,cluster_size=64q,refcount_bits=-1,x=1y");
    ic_error *err = NULL;
    bool b;
    uint64_t n;
    TU_ASSERT_ERR(ic_opts_take_bool(o, "lazy_refcounts", &b, &err), err, EINVAL,
                  "option 'lazy_refcounts' expects 'on' or 'off', not 'maybe'");
    TU_ASSERT_ERR(ic_opts_take_size(o, "cluster_size", &n, &err), err, EINVAL,
                  "option 'cluster_size': invalid size '64q'");
    TU_ASSERT_ERR(ic_opts_take_uint(o, "refcount_bits", &n, &err), err, EINVAL,
                  "option 'refcount_bits' expects a number, not '-1'");
    TU_ASSERT_ERR(ic_opts_take_uint(o, "x", &n, &err), err, EINVAL, "not '1y'");
    ic_opts_free(o);
}

static void test_util_opts__unused_key_is_an_error_naming_key_and_format(void **state)
{
    (void)state;
    ic_opts *o = parse("size=1M,bogus=1");
    ic_error *err = NULL;
    uint64_t n;
    assert_int_equal(ic_opts_take_size(o, "size", &n, &err), 1);
    int ret = ic_opts_check_unused(o, "qed", &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    TU_ASSERT_ERR(ret, err, EINVAL, "invalid option 'bogus' for format 'qed'");
    ic_opts_free(o);
    ic_opts_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_opts__parses_pairs_and_takes_them_by_type),
        cmocka_unit_test(test_util_opts__absent_keys_leave_the_output_untouched),
        cmocka_unit_test(test_util_opts__double_comma_is_a_literal_comma),
        cmocka_unit_test(test_util_opts__bare_key_means_on_and_empty_items_are_skipped),
        cmocka_unit_test(test_util_opts__repeated_key_keeps_the_last_value_and_counts_as_used),
        cmocka_unit_test(test_util_opts__set_adds_or_replaces_a_key),
        cmocka_unit_test(test_util_opts__empty_key_is_refused_naming_the_string),
        cmocka_unit_test(test_util_opts__bad_values_are_refused_naming_key_and_value),
        cmocka_unit_test(test_util_opts__unused_key_is_an_error_naming_key_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
