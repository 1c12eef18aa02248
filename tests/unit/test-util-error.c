/*
 * test-util-error.c - the error object (src/util/error.c): errno, kind and
 * message, first-error-wins, prepend, propagate.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_util_error__set_returns_minus_errno_and_records_kind_and_message(void **state)
{
    (void)state;
    ic_error *err = NULL;
    int ret = ic_error_set(&err, IC_ERR_CORRUPT, EIO, "%s: L2 table offset %#x unaligned",
                           "a.qcow2", 0x123);
    assert_int_equal(ret, -EIO);
    assert_non_null(err);
    assert_int_equal(ic_error_errno(err), EIO);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_CORRUPT);
    assert_string_equal(ic_error_message(err), "a.qcow2: L2 table offset 0x123 unaligned");
    assert_true(IC_ERR_CONSISTENT(ret, err));
    ic_error_free(err);
}

static void test_util_error__first_error_wins_and_later_ones_only_return_their_code(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_error_set(&err, IC_ERR_NOTFOUND, ENOENT, "first");
    int ret = ic_error_set(&err, IC_ERR_IO, ENOSPC, "second");
    assert_int_equal(ret, -ENOSPC);
    TU_ASSERT_ERR(-ENOENT, err, ENOENT, "first");
}

static void test_util_error__null_errp_drops_the_error_but_keeps_the_code(void **state)
{
    (void)state;
    assert_int_equal(ic_error_set(NULL, IC_ERR_IO, EIO, "x"), -EIO);
    assert_int_equal(ic_error_set_errno(NULL, -ENOSPC, "x"), -ENOSPC);
    ic_error_prepend(NULL, "ctx");
    assert_int_equal(ic_error_errno(NULL), 0);
    assert_int_equal(ic_error_kind_of(NULL), IC_ERR_OTHER);
    assert_string_equal(ic_error_message(NULL), "");
    ic_error_free(NULL);
}

static void test_util_error__zero_or_negative_errnum_is_normalised(void **state)
{
    (void)state;
    ic_error *err = NULL;
    assert_int_equal(ic_error_set(&err, IC_ERR_OTHER, 0, "no code"), -EIO);
    TU_ASSERT_ERR(-EIO, err, EIO, "no code");
    assert_int_equal(ic_error_set(&err, IC_ERR_IO, -ENOSPC, "negative"), -ENOSPC);
    TU_ASSERT_ERR(-ENOSPC, err, ENOSPC, "negative");
}

static void test_util_error__set_errno_appends_strerror_and_picks_the_kind(void **state)
{
    (void)state;
    ic_error *err = NULL;
    int ret = ic_error_set_errno(&err, -ENOSPC, "%s: cannot write L2 table", "b.qcow2");
    assert_int_equal(ic_error_kind_of(err), IC_ERR_IO);
    TU_ASSERT_ERR_PREFIX(ret, err, ENOSPC, "b.qcow2: cannot write L2 table: No space left on device");
    /* only the lock code says IC_ERR_BUSY; an errno never does */
    ret = ic_error_set_errno(&err, EBUSY, "device");
    assert_int_equal(ic_error_kind_of(err), IC_ERR_IO);
    TU_ASSERT_ERR(ret, err, EBUSY, "device: Device or resource busy");
}

static void test_util_error__prepend_adds_context_in_front(void **state)
{
    (void)state;
    ic_error *err = NULL;
    int ret = ic_error_set(&err, IC_ERR_NOTFOUND, ENOENT, "base.qcow2: No such file or directory");
    ic_error_prepend(&err, "ic_image_open: %s", "top.qcow2");
    ic_error_prepend(&err, "convert");
    assert_string_equal(ic_error_message(err),
                        "convert: ic_image_open: top.qcow2: base.qcow2: No such file or directory");
    TU_ASSERT_ERR(ret, err, ENOENT, "ic_image_open");
    ic_error_prepend(&err, "nothing to prefix"); /* unset: stays unset */
    assert_null(err);
}

static void test_util_error__messages_stay_on_one_line(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_error_set(&err, IC_ERR_INVALID, EINVAL, "bad name '%s'", "a\nb\rc");
    TU_ASSERT_ERR(-EINVAL, err, EINVAL, "bad name 'a b c'");
}

static void test_util_error__propagate_moves_into_an_unset_target_only(void **state)
{
    (void)state;
    ic_error *dst = NULL, *src = NULL, *src2 = NULL;
    ic_error_set(&src, IC_ERR_IO, EIO, "inner");
    ic_error_propagate(&dst, src);
    assert_ptr_equal(dst, src);
    ic_error_set(&src2, IC_ERR_IO, ENOSPC, "later");
    ic_error_propagate(&dst, src2); /* freed, dst keeps the first */
    TU_ASSERT_ERR(-EIO, dst, EIO, "inner");
    src = NULL; /* it was moved into dst, which the assertion freed */
    ic_error_set(&src, IC_ERR_IO, EIO, "dropped");
    ic_error_propagate(NULL, src);
    ic_error_propagate(&dst, NULL);
    assert_null(dst);
}

static void test_util_error__copy_is_independent_of_the_original(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_error_set(&err, IC_ERR_CORRUPT, EIO, "x.qcow2: refcount block overlaps L1");
    ic_error *c = ic_error_copy(err);
    ic_error_free(err);
    assert_int_equal(ic_error_kind_of(c), IC_ERR_CORRUPT);
    TU_ASSERT_ERR(-EIO, c, EIO, "refcount block overlaps L1");
    assert_null(ic_error_copy(NULL));
}

static void test_util_error__kind_from_errno_maps_the_common_codes(void **state)
{
    (void)state;
    static const struct { int e; ic_error_kind k; } map[] = {
        { EINVAL, IC_ERR_INVALID }, { ERANGE, IC_ERR_INVALID }, { ENOENT, IC_ERR_NOTFOUND },
        { ENOTDIR, IC_ERR_NOTFOUND }, { EIO, IC_ERR_IO }, { ENOSPC, IC_ERR_IO },
        { EROFS, IC_ERR_IO }, { ENOTSUP, IC_ERR_UNSUPPORTED }, { EBUSY, IC_ERR_IO },
        { EAGAIN, IC_ERR_IO }, { ENOMEM, IC_ERR_NOMEM }, { EEXIST, IC_ERR_EXISTS },
        { EPERM, IC_ERR_OTHER },
    };
    for (size_t i = 0; i < IC_ARRAY_SIZE(map); i++)
        assert_int_equal(ic_error_kind_from_errno(map[i].e), map[i].k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_error__set_returns_minus_errno_and_records_kind_and_message),
        cmocka_unit_test(test_util_error__first_error_wins_and_later_ones_only_return_their_code),
        cmocka_unit_test(test_util_error__null_errp_drops_the_error_but_keeps_the_code),
        cmocka_unit_test(test_util_error__zero_or_negative_errnum_is_normalised),
        cmocka_unit_test(test_util_error__set_errno_appends_strerror_and_picks_the_kind),
        cmocka_unit_test(test_util_error__prepend_adds_context_in_front),
        cmocka_unit_test(test_util_error__messages_stay_on_one_line),
        cmocka_unit_test(test_util_error__propagate_moves_into_an_unset_target_only),
        cmocka_unit_test(test_util_error__copy_is_independent_of_the_original),
        cmocka_unit_test(test_util_error__kind_from_errno_maps_the_common_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
