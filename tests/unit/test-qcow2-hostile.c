/*
 * test-qcow2-hostile.c - hostile qcow2 headers and tables: one case per
 * header field (and the extensions and tables they point to).  Each image
 * must be refused with a clear one-line error (errno and message checked),
 * must never crash (run under ASan/UBSan with `make check
 * SANITIZE=address,undefined`), and must be left byte for byte unchanged.
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
#include "qcow2/qcow2.h"
#include "util/endian.h"

static char *dir;
static char *good;          /* a valid image, cluster 64 KiB, 64 MiB, data at 0 */
static uint8_t *good_bytes;
static size_t good_len;

static int setup_all(void **state)
{
    (void)state;
    cf_setup(NULL); /* the one test-folder fixture */
    dir = strdup(cf_dir);
    assert_non_null(dir);
    good = tu_path(dir, "good.qcow2");
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    ic_error *err = NULL;
    co.format = "qcow2";
    co.size = 64u << 20;
    co.size_set = true;
    if (ic_image_create(good, &co, &err) < 0)
        return -1;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR;
    ic_image *img;
    if (ic_image_open(&img, good, &o, &err) < 0)
        return -1;
    uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    if (ic_image_pwrite(img, buf, sizeof(buf), 0, &err) < 0)
        return -1;
    ic_image_close(img);
    return tu_read_file(good, &good_bytes, &good_len);
}

static int teardown_all(void **state)
{
    (void)state;
    cf_teardown(NULL);
    free(dir);
    free(good);
    free(good_bytes);
    return 0;
}

typedef void (*patch_fn)(uint8_t *b);

/* Writes a patched copy, opens it read-only and read-write: both must fail
 * with @errnum and a message containing @msg; the file must not change. */
static void expect_refused(patch_fn patch, int errnum, const char *msg)
{
    uint8_t *b = malloc(good_len);
    assert_non_null(b);
    memcpy(b, good_bytes, good_len);
    patch(b);
    char *path = tu_path(dir, "bad.qcow2");
    assert_int_equal(tu_write_file(path, b, good_len), 0);
    for (int rw = 0; rw < 2; rw++) {
        ic_open_options o = IC_OPEN_OPTIONS_INIT;
        o.format = "qcow2";
        o.flags = rw ? IC_OPEN_RDWR : 0;
        ic_image *img = NULL;
        ic_error *err = NULL;
        int ret = ic_image_open(&img, path, &o, &err);
        if (ret == 0)
            ic_image_close(img);
        TU_ASSERT_ERR(ret, err, errnum, msg);
    }
    uint8_t *after;
    size_t alen;
    assert_int_equal(tu_read_file(path, &after, &alen), 0);
    assert_int_equal(alen, good_len);
    assert_memory_equal(after, b, good_len);
    free(after);
    free(b);
    free(path);
}

/* Opens a patched copy fine, but reading guest offset 0 must fail. */
static void expect_read_refused(patch_fn patch, int errnum, const char *msg)
{
    uint8_t *b = malloc(good_len);
    assert_non_null(b);
    memcpy(b, good_bytes, good_len);
    patch(b);
    char *path = tu_path(dir, "bad.qcow2");
    assert_int_equal(tu_write_file(path, b, good_len), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    uint8_t buf[512];
    TU_ASSERT_ERR(ic_image_pread(img, buf, sizeof(buf), 0, &err), err, errnum, msg);
    ic_image_close(img);
    uint8_t *after;
    size_t alen;
    assert_int_equal(tu_read_file(path, &after, &alen), 0);
    assert_memory_equal(after, b, good_len);
    free(after);
    free(b);
    free(path);
}

#define CASE(name, body, errnum, msg)                          \
    static void p_##name(uint8_t *b) { body; }                 \
    static void test_qcow2_hostile__##name(void **state)       \
    {                                                          \
        (void)state;                                           \
        expect_refused(p_##name, errnum, msg);                 \
    }

#define RCASE(name, body, errnum, msg)                         \
    static void p_##name(uint8_t *b) { body; }                 \
    static void test_qcow2_hostile__##name(void **state)       \
    {                                                          \
        (void)state;                                           \
        expect_read_refused(p_##name, errnum, msg);            \
    }

/* Offsets in the good image: reftable 0x10000, refblock 0x20000, L1
 * 0x30000, L2 0x40000, data 0x50000. */
CASE(bad_magic_is_not_qcow2, ic_store_be32(b, 0x514649fa), EINVAL, "bad magic")
CASE(version_4_is_unsupported, ic_store_be32(b + 4, 4), ENOTSUP, "Unsupported qcow2 version 4")
CASE(version_1_is_unsupported, ic_store_be32(b + 4, 1), ENOTSUP, "Unsupported qcow2 version 1")
CASE(backing_offset_past_the_cluster_is_refused,
     { ic_store_be64(b + 8, 70000); ic_store_be32(b + 16, 4); }, EINVAL, "invalid backing file offset")
CASE(backing_name_longer_than_1023_is_refused,
     { ic_store_be64(b + 8, 4096); ic_store_be32(b + 16, 1024); }, EINVAL, "invalid backing file offset")
/* read where it is, as qemu does: here it holds header fields, NULs included */
CASE(backing_name_overlapping_the_header_with_a_nul_is_refused,
     { ic_store_be64(b + 8, 16); ic_store_be32(b + 16, 8); }, EINVAL, "contains a NUL byte")
CASE(cluster_bits_8_is_unsupported, ic_store_be32(b + 20, 8), EINVAL, "Unsupported cluster size: 2^8")
CASE(cluster_bits_22_is_unsupported, ic_store_be32(b + 20, 22), EINVAL, "Unsupported cluster size: 2^22")
CASE(huge_virtual_size_is_refused, ic_store_be64(b + 24, 1ull << 62), EFBIG, "virtual size")
CASE(aes_encryption_is_refused, ic_store_be32(b + 32, 1), ENOTSUP, "encrypted (AES)")
CASE(luks_encryption_is_refused, ic_store_be32(b + 32, 2), ENOTSUP, "encrypted images are not supported")
CASE(unknown_encryption_method_is_refused, ic_store_be32(b + 32, 7), EINVAL, "invalid encryption method 7")
CASE(l1_too_small_for_the_size_is_refused, ic_store_be32(b + 36, 0), EINVAL, "L1 table is too small")
CASE(l1_larger_than_32m_is_refused, ic_store_be32(b + 36, 0x400001), EFBIG, "active L1 table is too large")
CASE(unaligned_l1_offset_is_refused, ic_store_be64(b + 40, 0x30008), EINVAL, "active L1 table offset 0x30008 is not cluster aligned")
CASE(l1_offset_past_int64_is_refused, ic_store_be64(b + 40, 0xffffffffffff0000ull), EINVAL, "active L1 table offset")
CASE(unaligned_reftable_offset_is_refused, ic_store_be64(b + 48, 0x10200), EINVAL, "reference count table offset 0x10200 is not cluster aligned")
CASE(missing_reftable_is_refused, ic_store_be32(b + 56, 0), EINVAL, "does not contain a reference count table")
CASE(huge_reftable_is_refused, ic_store_be32(b + 56, 1000), EFBIG, "reference count table is too large")
CASE(too_many_snapshots_are_refused, ic_store_be32(b + 60, 65537), EFBIG, "too many snapshots")
CASE(unaligned_snapshot_table_is_refused,
     { ic_store_be32(b + 60, 1); ic_store_be64(b + 64, 0x10010); }, EINVAL, "snapshot table offset")
CASE(snapshot_with_too_much_extra_data_is_refused,
     { ic_store_be32(b + 60, 1); ic_store_be64(b + 64, 0x50000); ic_store_be32(b + 0x50000 + 36, 5000); },
     EFBIG, "too much extra data")
CASE(unknown_incompatible_bit_is_refused_by_mask, ic_store_be64(b + 72, 1ull << 5), ENOTSUP,
     "Unknown incompatible feature: 20")
CASE(unknown_incompatible_bit_is_refused_by_its_table_name,
     {
         /* rename the feature table's "dirty bit" entry to bit 9 */
         for (size_t p = 112; p + 8 < 4096; p += 8)
             if (ic_load_be32(b + p) == QCOW2_EXT_FEATURE_TABLE) {
                 b[p + 8 + 1] = 9;
                 memcpy(b + p + 8 + 2, "future widget", 14);
                 break;
             }
         ic_store_be64(b + 72, 1ull << 9);
     },
     ENOTSUP, "Unsupported qcow2 feature(s): future widget")
CASE(refcount_order_7_is_refused, ic_store_be32(b + 96, 7), EINVAL, "may not exceed 64 bits")
CASE(header_length_below_104_is_refused, ic_store_be32(b + 100, 96), EINVAL, "qcow2 header too short")
CASE(header_length_past_the_cluster_is_refused, ic_store_be32(b + 100, 65544), EINVAL, "exceeds cluster size")
/* an odd header length is qemu's: extensions are read from there, so the
 * end marker's length field is the next extension's magic */
CASE(header_length_not_a_multiple_of_8_reads_the_extensions_from_there, ic_store_be32(b + 100, 108),
     EINVAL, "runs past the end of the header area")
CASE(compression_bit_without_a_type_is_refused, ic_store_be64(b + 72, QCOW2_INCOMPAT_COMPRESSION), EINVAL,
     "compression type bit set")
CASE(compression_type_without_its_bit_is_refused, b[104] = 1, EINVAL, "without the compression type feature bit")
CASE(unknown_compression_type_is_refused,
     { ic_store_be64(b + 72, QCOW2_INCOMPAT_COMPRESSION); b[104] = 2; }, ENOTSUP, "unknown compression type 2")
CASE(extended_l2_with_small_clusters_is_refused,
     { ic_store_be64(b + 72, QCOW2_INCOMPAT_EXTL2); ic_store_be32(b + 20, 13); }, EINVAL,
     "extended L2 entries need a cluster size of at least 16 KiB")
CASE(external_data_bit_without_a_name_is_refused, ic_store_be64(b + 72, QCOW2_INCOMPAT_DATA_FILE),
     EINVAL, "'data-file' is required")
CASE(raw_data_bit_without_a_data_file_is_refused, ic_store_be64(b + 88, QCOW2_AUTOCLEAR_DATA_FILE_RAW),
     EINVAL, "raw external data bit")
CASE(extension_running_past_the_header_area_is_refused,
     { ic_store_be32(b + 112, 0x12345678); ic_store_be32(b + 116, 0x7fffffff); }, EINVAL,
     "runs past the end of the header area")
CASE(overlong_backing_format_extension_is_refused,
     { ic_store_be32(b + 112, QCOW2_EXT_BACKING_FORMAT); ic_store_be32(b + 116, 16); }, EINVAL,
     "backing format extension too long")
CASE(bitmaps_extension_with_bad_length_is_refused,
     { ic_store_be32(b + 112, QCOW2_EXT_BITMAPS); ic_store_be32(b + 116, 16); }, EINVAL,
     "bitmaps extension has length 16")
CASE(encryption_extension_without_encryption_is_refused,
     { ic_store_be32(b + 112, QCOW2_EXT_CRYPTO); ic_store_be32(b + 116, 16); }, EINVAL,
     "encryption header extension present")
CASE(truncated_file_is_refused, memset(b + 4, 0, 100), ENOTSUP, "Unsupported qcow2 version 0")

RCASE(unaligned_l2_table_offset_is_corruption, ic_store_be64(b + 0x30000, 0x8000000000040200ull), EIO,
      "L2 table offset 0x40200 unaligned")
RCASE(unaligned_data_cluster_offset_is_corruption, ic_store_be64(b + 0x40000, 0x8000000000050200ull),
      EIO, "cluster allocation offset 0x50200 unaligned")
RCASE(undecompressable_compressed_cluster_is_corruption,
      ic_store_be64(b + 0x40000, QCOW2_OFLAG_COMPRESSED | 0x50000), EIO, "does not decompress")

static void test_qcow2_hostile__corrupt_image_opens_read_only_but_not_read_write(void **state)
{
    (void)state;
    uint8_t *b = malloc(good_len);
    assert_non_null(b);
    memcpy(b, good_bytes, good_len);
    ic_store_be64(b + 72, QCOW2_INCOMPAT_CORRUPT);
    char *path = tu_path(dir, "corrupt.qcow2");
    assert_int_equal(tu_write_file(path, b, good_len), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    uint8_t buf[4096];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), 0, &err), err);
    assert_int_equal(buf[100], 0x5a);
    ic_image_close(img);
    o.flags = IC_OPEN_RDWR;
    TU_ASSERT_ERR(ic_image_open(&img, path, &o, &err), err, EACCES,
                  "image is corrupt; cannot be opened read/write");
    free(b);
    free(path);
}

static void test_qcow2_hostile__file_shorter_than_a_header_is_refused(void **state)
{
    (void)state;
    char *path = tu_path(dir, "short.qcow2");
    assert_int_equal(tu_write_file(path, good_bytes, 40), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = "qcow2";
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_image_open(&img, path, &o, &err), err, EINVAL, "too small for a qcow2 header");
    free(path);
}

int main(void)
{
#define T(n) cmocka_unit_test(test_qcow2_hostile__##n)
    const struct CMUnitTest tests[] = {
        T(bad_magic_is_not_qcow2), T(version_4_is_unsupported), T(version_1_is_unsupported),
        T(backing_offset_past_the_cluster_is_refused), T(backing_name_longer_than_1023_is_refused),
        T(backing_name_overlapping_the_header_with_a_nul_is_refused), T(cluster_bits_8_is_unsupported),
        T(cluster_bits_22_is_unsupported), T(huge_virtual_size_is_refused),
        T(aes_encryption_is_refused), T(luks_encryption_is_refused),
        T(unknown_encryption_method_is_refused), T(l1_too_small_for_the_size_is_refused),
        T(l1_larger_than_32m_is_refused), T(unaligned_l1_offset_is_refused),
        T(l1_offset_past_int64_is_refused), T(unaligned_reftable_offset_is_refused),
        T(missing_reftable_is_refused), T(huge_reftable_is_refused),
        T(too_many_snapshots_are_refused), T(unaligned_snapshot_table_is_refused),
        T(snapshot_with_too_much_extra_data_is_refused),
        T(unknown_incompatible_bit_is_refused_by_mask),
        T(unknown_incompatible_bit_is_refused_by_its_table_name), T(refcount_order_7_is_refused),
        T(header_length_below_104_is_refused), T(header_length_past_the_cluster_is_refused),
        T(header_length_not_a_multiple_of_8_reads_the_extensions_from_there),
        T(compression_bit_without_a_type_is_refused),
        T(compression_type_without_its_bit_is_refused), T(unknown_compression_type_is_refused),
        T(extended_l2_with_small_clusters_is_refused),
        T(external_data_bit_without_a_name_is_refused),
        T(raw_data_bit_without_a_data_file_is_refused),
        T(extension_running_past_the_header_area_is_refused),
        T(overlong_backing_format_extension_is_refused),
        T(bitmaps_extension_with_bad_length_is_refused),
        T(encryption_extension_without_encryption_is_refused), T(truncated_file_is_refused),
        T(unaligned_l2_table_offset_is_corruption), T(unaligned_data_cluster_offset_is_corruption),
        T(undecompressable_compressed_cluster_is_corruption),
        T(corrupt_image_opens_read_only_but_not_read_write),
        T(file_shorter_than_a_header_is_refused),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
