/*
 * test-util-endian.c - byte-order helpers (src/util/endian.h).
 */
#include <string.h>

#include "testutil.h"
#include "util/endian.h"

static void test_util_endian__big_endian_stores_put_the_most_significant_byte_first(void **state)
{
    (void)state;
    uint8_t b[8];
    ic_store_be16(b, 0x1234);
    assert_memory_equal(b, "\x12\x34", 2);
    ic_store_be32(b, 0x12345678u);
    assert_memory_equal(b, "\x12\x34\x56\x78", 4);
    ic_store_be64(b, 0x0123456789ABCDEFull);
    assert_memory_equal(b, "\x01\x23\x45\x67\x89\xAB\xCD\xEF", 8);
}

static void test_util_endian__little_endian_stores_put_the_least_significant_byte_first(void **state)
{
    (void)state;
    uint8_t b[8];
    ic_store_le16(b, 0x1234);
    assert_memory_equal(b, "\x34\x12", 2);
    ic_store_le32(b, 0x12345678u);
    assert_memory_equal(b, "\x78\x56\x34\x12", 4);
    ic_store_le64(b, 0x0123456789ABCDEFull);
    assert_memory_equal(b, "\xEF\xCD\xAB\x89\x67\x45\x23\x01", 8);
}

static void test_util_endian__loads_read_what_stores_wrote_at_unaligned_addresses(void **state)
{
    (void)state;
    uint8_t buf[32];
    uint64_t rng = 99;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = tu_rand(&rng);
        size_t o = (size_t)(v % 23); /* any alignment */
        ic_store_be16(buf + o, (uint16_t)v);
        assert_int_equal(ic_load_be16(buf + o), (uint16_t)v);
        ic_store_le16(buf + o, (uint16_t)v);
        assert_int_equal(ic_load_le16(buf + o), (uint16_t)v);
        ic_store_be32(buf + o, (uint32_t)v);
        assert_int_equal(ic_load_be32(buf + o), (uint32_t)v);
        ic_store_le32(buf + o, (uint32_t)v);
        assert_int_equal(ic_load_le32(buf + o), (uint32_t)v);
        ic_store_be64(buf + o, v);
        assert_true(ic_load_be64(buf + o) == v);
        ic_store_le64(buf + o, v);
        assert_true(ic_load_le64(buf + o) == v);
    }
}

static void test_util_endian__loads_of_high_bytes_do_not_sign_extend(void **state)
{
    (void)state;
    static const uint8_t ff[8] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    static const uint8_t hi[8] = { 0x80, 0, 0, 0, 0, 0, 0, 0x80 };
    assert_int_equal(ic_load_be16(ff), 0xFFFF);
    assert_true(ic_load_be32(ff) == 0xFFFFFFFFu);
    assert_true(ic_load_be64(ff) == UINT64_MAX);
    assert_true(ic_load_le64(ff) == UINT64_MAX);
    assert_true(ic_load_be32(hi) == 0x80000000u);
    assert_true(ic_load_be64(hi) == 0x8000000000000080ull);
    assert_true(ic_load_le64(hi) == 0x8000000000000080ull);
    assert_true(ic_load_le32(hi + 4) == 0x80000000u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_endian__big_endian_stores_put_the_most_significant_byte_first),
        cmocka_unit_test(test_util_endian__little_endian_stores_put_the_least_significant_byte_first),
        cmocka_unit_test(test_util_endian__loads_read_what_stores_wrote_at_unaligned_addresses),
        cmocka_unit_test(test_util_endian__loads_of_high_bytes_do_not_sign_extend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
