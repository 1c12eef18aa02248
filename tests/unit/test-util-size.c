/*
 * test-util-size.c - size strings as qemu-img takes them (src/util/size.c).
 */
#include <errno.h>

#include "testutil.h"
#include "imgchain/util.h"

static uint64_t size_of(const char *s)
{
    uint64_t v = 12345;
    int ret = ic_parse_size(s, &v);
    if (ret != 0)
        fail_msg("ic_parse_size(\"%s\") = %d", s, ret);
    return v;
}

static void test_util_size__plain_numbers_are_bytes(void **state)
{
    (void)state;
    assert_int_equal(size_of("0"), 0);
    assert_int_equal(size_of("512"), 512);
    assert_int_equal(size_of("512b"), 512);
    assert_int_equal(size_of("512B"), 512);
    assert_true(size_of("18446744073709551615") == UINT64_MAX);
}

static void test_util_size__suffixes_are_powers_of_1024_in_either_case(void **state)
{
    (void)state;
    assert_int_equal(size_of("1k"), 1024);
    assert_int_equal(size_of("1K"), 1024);
    assert_int_equal(size_of("64M"), 64ull << 20);
    assert_int_equal(size_of("64m"), 64ull << 20);
    assert_int_equal(size_of("2G"), 2ull << 30);
    assert_int_equal(size_of("3T"), 3ull << 40);
    assert_int_equal(size_of("1P"), 1ull << 50);
    assert_int_equal(size_of("15E"), 15ull << 60);
}

static void test_util_size__fractions_need_a_suffix(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(size_of("1.5G"), 3ull << 29);
    assert_int_equal(size_of("0.5k"), 512);
    assert_int_equal(ic_parse_size("1.5", &v), -EINVAL);
    assert_int_equal(v, 7); /* untouched on error */
}

static void test_util_size__refuses_malformed_strings_with_einval(void **state)
{
    (void)state;
    uint64_t v = 7;
    static const char *const bad[] = { "", "abc", "-1", "+1", " 1", "1x", "1kb", "1 k", "k", ".5k" };
    for (size_t i = 0; i < IC_ARRAY_SIZE(bad); i++)
        if (ic_parse_size(bad[i], &v) != -EINVAL)
            fail_msg("\"%s\" was not refused with -EINVAL", bad[i]);
    assert_int_equal(ic_parse_size(NULL, &v), -EINVAL);
    assert_int_equal(v, 7);
}

static void test_util_size__refuses_sizes_beyond_64_bits_with_erange(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(ic_parse_size("18446744073709551616", &v), -ERANGE);
    assert_int_equal(ic_parse_size("16E", &v), -ERANGE);
    assert_int_equal(ic_parse_size("16777216T", &v), -ERANGE);
    assert_int_equal(ic_parse_size("16.5E", &v), -ERANGE);
    assert_int_equal(v, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_size__plain_numbers_are_bytes),
        cmocka_unit_test(test_util_size__suffixes_are_powers_of_1024_in_either_case),
        cmocka_unit_test(test_util_size__fractions_need_a_suffix),
        cmocka_unit_test(test_util_size__refuses_malformed_strings_with_einval),
        cmocka_unit_test(test_util_size__refuses_sizes_beyond_64_bits_with_erange),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
