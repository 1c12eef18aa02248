/*
 * test-qcow2-compress.c - compressed cluster payloads (zlib raw deflate,
 * zstd) and compressed cluster descriptors for every cluster size.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "qcow2/qcow2.h"

#define CS 65536

static void roundtrip(uint8_t type)
{
    uint8_t *in = malloc(CS), *out = malloc(CS), *back = malloc(CS + 1024);
    assert_true(in && out && back);
    tu_fill_pattern(in, CS, 3);
    memset(in, 0x11, CS / 2);
    int64_t n = qcow2_compress(type, out, CS - 1, in, CS);
    assert_true(n > 0 && n < CS / 2 + 1024);
    /* the stored range is rounded up to sectors: trailing bytes are ignored */
    memset(out + n, 0xee, (size_t)(CS - 1 - n));
    memset(back, 0, CS);
    assert_int_equal(qcow2_decompress(type, back, CS, out, (size_t)IC_MIN(n + 511, CS - 1)), 0);
    assert_memory_equal(back, in, CS);
    free(in);
    free(out);
    free(back);
}

static void test_qcow2_compress__zlib_round_trips_with_sector_padding(void **state)
{
    (void)state;
    roundtrip(QCOW2_COMPRESSION_ZLIB);
}

static void test_qcow2_compress__zstd_round_trips_with_sector_padding(void **state)
{
    (void)state;
    roundtrip(QCOW2_COMPRESSION_ZSTD);
}

static void test_qcow2_compress__incompressible_data_does_not_fit(void **state)
{
    (void)state;
    uint8_t *in = malloc(CS), *out = malloc(CS);
    assert_true(in && out);
    tu_fill_pattern(in, CS, 9);
    assert_int_equal(qcow2_compress(QCOW2_COMPRESSION_ZLIB, out, CS - 1, in, CS), -ENOSPC);
    assert_int_equal(qcow2_compress(QCOW2_COMPRESSION_ZSTD, out, CS - 1, in, CS), -ENOSPC);
    free(in);
    free(out);
}

static void test_qcow2_compress__garbage_or_short_input_is_an_error(void **state)
{
    (void)state;
    uint8_t garbage[600], out[4096];
    tu_fill_pattern(garbage, sizeof(garbage), 1);
    assert_int_equal(qcow2_decompress(QCOW2_COMPRESSION_ZLIB, out, sizeof(out), garbage, sizeof(garbage)), -EIO);
    assert_int_equal(qcow2_decompress(QCOW2_COMPRESSION_ZSTD, out, sizeof(out), garbage, sizeof(garbage)), -EIO);
    /* a valid stream that produces less than one cluster */
    uint8_t in[1000], c[2000];
    memset(in, 7, sizeof(in));
    int64_t n = qcow2_compress(QCOW2_COMPRESSION_ZLIB, c, sizeof(c), in, sizeof(in));
    assert_true(n > 0);
    assert_int_equal(qcow2_decompress(QCOW2_COMPRESSION_ZLIB, out, sizeof(out), c, (size_t)n), -EIO);
    n = qcow2_compress(QCOW2_COMPRESSION_ZSTD, c, sizeof(c), in, sizeof(in));
    assert_true(n > 0);
    assert_int_equal(qcow2_decompress(QCOW2_COMPRESSION_ZSTD, out, sizeof(out), c, (size_t)n), -EIO);
    assert_int_equal(qcow2_decompress(9, out, sizeof(out), c, (size_t)n), -ENOTSUP);
}

static void test_qcow2_compress__descriptors_round_trip_for_every_cluster_size(void **state)
{
    (void)state;
    for (uint32_t bits = 9; bits <= 21; bits++) {
        struct qcow2_state s = { 0 };
        s.csize_shift = 62 - (bits - 8);
        s.csize_mask = (1ull << (bits - 8)) - 1;
        s.coffset_mask = (1ull << s.csize_shift) - 1;
        uint64_t cs = 1ull << bits;
        uint64_t offs[] = { 0x123456789ull & ~(cs - 1), (0x123456789ull & ~(cs - 1)) + 777 };
        for (size_t k = 0; k < 2; k++) {
            uint64_t len = cs - (offs[k] & (cs - 1)) - 1;
            if (len == 0)
                len = 1;
            uint64_t e = qcow2_make_compressed(&s, offs[k], len);
            assert_true(e & QCOW2_OFLAG_COMPRESSED);
            assert_false(e & QCOW2_OFLAG_COPIED);
            uint64_t coff, csize;
            qcow2_parse_compressed(&s, e, &coff, &csize);
            assert_int_equal(coff, offs[k]);
            /* covers the data, ends on a sector, stays in the cluster */
            assert_true(csize >= len);
            assert_int_equal((coff + csize) % 512, 0);
            assert_true(coff + csize <= (offs[k] & ~(cs - 1)) + cs);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_compress__zlib_round_trips_with_sector_padding),
        cmocka_unit_test(test_qcow2_compress__zstd_round_trips_with_sector_padding),
        cmocka_unit_test(test_qcow2_compress__incompressible_data_does_not_fit),
        cmocka_unit_test(test_qcow2_compress__garbage_or_short_input_is_an_error),
        cmocka_unit_test(test_qcow2_compress__descriptors_round_trip_for_every_cluster_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
