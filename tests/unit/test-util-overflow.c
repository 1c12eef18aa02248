/*
 * test-util-overflow.c - overflow-checked arithmetic (src/util/overflow.h).
 */
#include "testutil.h"
#include "util/overflow.h"

static void test_util_overflow__add_reports_wrap_around_of_64_bit_offsets(void **state)
{
    (void)state;
    uint64_t r;
    assert_false(ic_add_overflow((uint64_t)1, (uint64_t)2, &r));
    assert_int_equal(r, 3);
    assert_false(ic_add_overflow(UINT64_MAX - 1, (uint64_t)1, &r));
    assert_true(r == UINT64_MAX);
    assert_true(ic_add_overflow(UINT64_MAX, (uint64_t)1, &r));
    assert_true(ic_add_overflow((uint64_t)1 << 63, (uint64_t)1 << 63, &r));
}

static void test_util_overflow__mul_reports_table_sizes_that_do_not_fit(void **state)
{
    (void)state;
    uint64_t r;
    uint32_t r32;
    assert_false(ic_mul_overflow((uint64_t)1 << 31, (uint64_t)8, &r));
    assert_true(r == (uint64_t)1 << 34);
    assert_true(ic_mul_overflow((uint64_t)1 << 61, (uint64_t)8, &r));
    assert_false(ic_mul_overflow((uint64_t)0, UINT64_MAX, &r));
    assert_int_equal(r, 0);
    /* the result type decides: an L1 size of 2^30 entries x 8 fits 64 bits, not 32 */
    assert_true(ic_mul_overflow((uint32_t)1 << 30, (uint32_t)8, &r32));
    assert_false(ic_mul_overflow((uint32_t)1 << 30, (uint32_t)8, &r));
}

static void test_util_overflow__sub_reports_underflow_of_unsigned_values(void **state)
{
    (void)state;
    uint64_t r;
    int64_t s;
    assert_false(ic_sub_overflow((uint64_t)5, (uint64_t)5, &r));
    assert_int_equal(r, 0);
    assert_true(ic_sub_overflow((uint64_t)4, (uint64_t)5, &r));
    assert_false(ic_sub_overflow((int64_t)4, (int64_t)5, &s));
    assert_int_equal(s, -1);
    assert_true(ic_sub_overflow(INT64_MIN, (int64_t)1, &s));
}

static void test_util_overflow__range_within_accepts_exact_fits_and_refuses_wraps(void **state)
{
    (void)state;
    assert_true(ic_range_within(0, 0, 0));
    assert_true(ic_range_within(0, 100, 100));
    assert_true(ic_range_within(100, 0, 100));
    assert_false(ic_range_within(1, 100, 100));
    assert_false(ic_range_within(101, 0, 100));
    assert_true(ic_range_within(UINT64_MAX - 1, 1, UINT64_MAX));
    /* off + len wraps to a small number: must not pass */
    assert_false(ic_range_within(UINT64_MAX - 1, 3, UINT64_MAX));
    assert_false(ic_range_within(UINT64_MAX, UINT64_MAX, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_overflow__add_reports_wrap_around_of_64_bit_offsets),
        cmocka_unit_test(test_util_overflow__mul_reports_table_sizes_that_do_not_fit),
        cmocka_unit_test(test_util_overflow__sub_reports_underflow_of_unsigned_values),
        cmocka_unit_test(test_util_overflow__range_within_accepts_exact_fits_and_refuses_wraps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
