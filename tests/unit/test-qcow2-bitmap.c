/*
 * test-qcow2-bitmap.c - persistent dirty bitmaps at the driver level: the
 * directory parser against qemu's rules (on hand-built buffers); on images
 * made by qemu-img: a read-write open that changes no guest data writes
 * nothing, the first write flags enabled bitmaps in use until a clean close
 * stores them, a resize is refused, a repair open refuses guest writes,
 * bitmaps qemu cannot load block every write with the file untouched,
 * read-only opens are unaffected, and an extension qemu ignores is dropped
 * as qemu drops it.
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
#include "imgchain/snapshot.h"
#include "qcow2/qcow2.h"
#include "qcow2/qcow2-bitmap.h"
#include "util/endian.h"

#define CS 65536u
#define VSIZE (64ull << 20)

/* Appends one directory entry to @dir at *pos. */
static void put_entry(uint8_t *dir, size_t *pos, uint64_t toff, uint32_t tsize, uint32_t flags,
                      uint8_t type, uint8_t gran, const char *name, uint32_t extra)
{
    uint8_t *e = dir + *pos;
    size_t nlen = strlen(name);
    memset(e, 0, IC_ALIGN_UP(24 + extra + nlen, 8));
    ic_store_be64(e + QCOW2_BME_TABLE_OFFSET, toff);
    ic_store_be32(e + QCOW2_BME_TABLE_SIZE, tsize);
    ic_store_be32(e + QCOW2_BME_FLAGS, flags);
    e[QCOW2_BME_TYPE] = type;
    e[QCOW2_BME_GRANULARITY] = gran;
    ic_store_be16(e + QCOW2_BME_NAME_SIZE, (uint16_t)nlen);
    ic_store_be32(e + QCOW2_BME_EXTRA_SIZE, extra);
    memcpy(e + 24 + extra, name, nlen);
    *pos += IC_ALIGN_UP(24 + extra + nlen, 8);
}

/* Parses a one-entry directory; returns the result and frees it. */
static int parse_one(uint32_t tsize, uint32_t flags, uint8_t type, uint8_t gran, uint32_t extra,
                     ic_error **err)
{
    uint8_t dir[256];
    size_t n = 0;
    put_entry(dir, &n, 0x50000, tsize, flags, type, gran, "bm", extra);
    struct qcow2_bitmap_dir d;
    int ret = qcow2_bitmap_dir_parse(dir, n, 1, CS, VSIZE, &d, err);
    qcow2_bitmap_dir_free(&d);
    return ret;
}

static void test_qcow2_bitmap__directory_entries_are_parsed_in_order(void **state)
{
    (void)state;
    uint8_t dir[256];
    size_t n = 0;
    put_entry(dir, &n, 0x50000, 1, QCOW2_BME_FLAG_AUTO, 1, 16, "bm0", 0);
    put_entry(dir, &n, 0x60000, 2, QCOW2_BME_FLAG_IN_USE, 1, 9, "a-longer-name", 0);
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    TU_ASSERT_OK(qcow2_bitmap_dir_parse(dir, n, 2, CS, VSIZE, &d, &err), err);
    assert_int_equal(d.nb, 2);
    assert_string_equal(d.bm[0].name, "bm0");
    assert_int_equal(d.bm[0].table_offset, 0x50000);
    assert_int_equal(d.bm[0].table_size, 1);
    assert_int_equal(d.bm[0].flags, QCOW2_BME_FLAG_AUTO);
    assert_int_equal(d.bm[0].granularity_bits, 16);
    assert_int_equal(d.bm[0].entry_pos, 0);
    assert_string_equal(d.bm[1].name, "a-longer-name");
    assert_int_equal(d.bm[1].entry_pos, 32);
    assert_int_equal(d.bm[1].flags, QCOW2_BME_FLAG_IN_USE);
    qcow2_bitmap_dir_free(&d);
    assert_null(d.bm);
}

static void test_qcow2_bitmap__entry_count_must_match_the_extension(void **state)
{
    (void)state;
    uint8_t dir[256];
    size_t n = 0;
    put_entry(dir, &n, 0x50000, 1, 0, 1, 16, "bm0", 0);
    put_entry(dir, &n, 0x60000, 1, 0, 1, 16, "bm1", 0);
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 1, CS, VSIZE, &d, &err), err, EINVAL,
                  "More bitmaps found than specified in header extension");
    assert_null(d.bm);
    assert_int_equal(d.nb, 0);
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, 32, 2, CS, VSIZE, &d, &err), err, EINVAL,
                  "Less bitmaps found than specified in header extension");
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 0, CS, VSIZE, &d, &err), err, EINVAL,
                  "invalid number of bitmaps 0");
    /* 60000 entries cannot fit in 64 bytes: refused before sizing by the count */
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 60000, CS, VSIZE, &d, &err), err, EINVAL,
                  "Less bitmaps found");
}

static void test_qcow2_bitmap__entries_must_fill_the_directory_exactly(void **state)
{
    (void)state;
    uint8_t dir[256];
    size_t n = 0;
    put_entry(dir, &n, 0x50000, 1, 0, 1, 16, "bm0", 0);
    memset(dir + n, 0, 16);
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    /* 16 trailing bytes: too short for another entry header */
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n + 16, 1, CS, VSIZE, &d, &err), err, EINVAL,
                  "Broken bitmap directory");
    /* a name running past the end */
    ic_store_be16(dir + QCOW2_BME_NAME_SIZE, 200);
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 1, CS, VSIZE, &d, &err), err, EINVAL,
                  "Broken bitmap directory");
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, 0, 1, CS, VSIZE, &d, &err), err, EINVAL,
                  "size is zero");
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, QCOW2_MAX_BITMAP_DIR + 8, 1, CS, VSIZE, &d, &err),
                  err, EINVAL, "size is too big");
}

static void test_qcow2_bitmap__entries_outside_qemu_constraints_are_refused(void **state)
{
    (void)state;
    ic_error *err = NULL;
    TU_ASSERT_OK(parse_one(1, QCOW2_BME_FLAG_AUTO, 1, 16, 0, &err), err);
    TU_ASSERT_ERR(parse_one(1, 0, 1, 16, 8, &err), err, ENOTSUP,
                  "Bitmap extra data is not supported");
    TU_ASSERT_ERR(parse_one(1, 0, 2, 16, 0, &err), err, EINVAL,
                  "Bitmap 'bm' doesn't satisfy the constraints");
    TU_ASSERT_ERR(parse_one(1, 1u << 2, 1, 16, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_ERR(parse_one(1, 1u << 31, 1, 16, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_ERR(parse_one(1, 0, 1, 8, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_ERR(parse_one(1, 0, 1, 32, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_ERR(parse_one(0, 0, 1, 16, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_ERR(parse_one(QCOW2_BME_MAX_TABLE_SIZE + 1, 0, 1, 16, 0, &err), err, EINVAL,
                  "constraints");
    /* 8193 clusters of 64 KiB: past qemu's 512 MiB of bitmap data */
    TU_ASSERT_ERR(parse_one(8193, 0, 1, 31, 0, &err), err, EINVAL, "constraints");
    TU_ASSERT_OK(parse_one(8192, 0, 1, 31, 0, &err), err);
    /* 64 MiB at 512 B per bit needs 16 KiB of bitmap: one cluster is
     * enough; at 9 bits one cluster covers 256 MiB */
    TU_ASSERT_OK(parse_one(1, 0, 1, 9, 0, &err), err);
}

static void test_qcow2_bitmap__tables_past_one_gib_together_are_refused(void **state)
{
    (void)state;
    /* 129 bitmaps with 8 MiB tables each (qemu's largest at 512-byte
     * clusters): 1 GiB + 8 MiB of tables */
    static uint8_t dir[129 * 32];
    size_t n = 0;
    char name[16];
    for (int i = 0; i < 129; i++) {
        snprintf(name, sizeof(name), "b%03d", i);
        put_entry(dir, &n, 0x50000, 1u << 20, 0, 1, 9, name, 0);
    }
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 129, 512, VSIZE, &d, &err), err, EFBIG,
                  "more than imgchain reads");
    assert_null(d.bm);
    /* 128 of them are exactly 1 GiB: accepted */
    TU_ASSERT_OK(qcow2_bitmap_dir_parse(dir, n - 32, 128, 512, VSIZE, &d, &err), err);
    assert_int_equal(d.nb, 128);
    qcow2_bitmap_dir_free(&d);
}

static void test_qcow2_bitmap__a_table_too_small_for_the_disk_is_allowed_only_in_use(void **state)
{
    (void)state;
    uint8_t dir[64];
    size_t n = 0;
    /* one 512-byte cluster at granularity 512: 4096 bits = 2 MiB < 64 MiB */
    put_entry(dir, &n, 0x50000 & ~511u, 1, 0, 1, 9, "small", 0);
    struct qcow2_bitmap_dir d;
    ic_error *err = NULL;
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 1, 512, VSIZE, &d, &err), err, EINVAL,
                  "Bitmap 'small' doesn't satisfy the constraints");
    ic_store_be32(dir + QCOW2_BME_FLAGS, QCOW2_BME_FLAG_IN_USE);
    TU_ASSERT_OK(qcow2_bitmap_dir_parse(dir, n, 1, 512, VSIZE, &d, &err), err);
    qcow2_bitmap_dir_free(&d);
    /* unaligned table offset */
    ic_store_be64(dir, 0x50200);
    TU_ASSERT_ERR(qcow2_bitmap_dir_parse(dir, n, 1, CS, VSIZE, &d, &err), err, EINVAL,
                  "constraints");
}

static void test_qcow2_bitmap__table_entries_are_checked_as_qemu_checks_them(void **state)
{
    (void)state;
    assert_true(qcow2_bitmap_table_entry_ok(0, CS));
    assert_true(qcow2_bitmap_table_entry_ok(QCOW2_BMT_ALL_ONES, CS));
    assert_true(qcow2_bitmap_table_entry_ok(0x70000, CS));
    assert_false(qcow2_bitmap_table_entry_ok(0x70000 | QCOW2_BMT_ALL_ONES, CS));
    assert_false(qcow2_bitmap_table_entry_ok(0x70200, CS));
    assert_true(qcow2_bitmap_table_entry_ok(0x70200, 512));
    assert_false(qcow2_bitmap_table_entry_ok(1ull << 1, CS));
    assert_false(qcow2_bitmap_table_entry_ok(1ull << 8, CS));
    assert_false(qcow2_bitmap_table_entry_ok(1ull << 56, CS));
    assert_false(qcow2_bitmap_table_entry_ok(1ull << 63, CS));
}

static void test_qcow2_bitmap__table_size_follows_the_disk_and_the_granularity(void **state)
{
    (void)state;
    /* 64 MiB at 64 KiB per bit: 1024 bits = 128 bytes, one cluster */
    assert_int_equal(qcow2_bitmap_table_clusters(VSIZE, 16, CS), 1);
    /* at 512 B per bit: 131072 bits = 16 KiB: one 64 KiB cluster, 32 of 512 B */
    assert_int_equal(qcow2_bitmap_table_clusters(VSIZE, 9, CS), 1);
    assert_int_equal(qcow2_bitmap_table_clusters(VSIZE, 9, 512), 32);
    /* one bit past a cluster's worth needs a second cluster */
    assert_int_equal(qcow2_bitmap_table_clusters(512ull * 4096 + 1, 9, 512), 2);
    assert_int_equal(qcow2_bitmap_table_clusters(512ull * 4096, 9, 512), 1);
    assert_int_equal(qcow2_bitmap_table_clusters(0, 16, CS), 0);
}

/* ---- images made by qemu-img ------------------------------------------------ */

/* a.qcow2: bm0 enabled with 1 MiB written under it, bm1 disabled (512 B). */
static bool make_bitmap_image(const char *name, const char *opts)
{
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        return false;
    const char *p = cf_path(name);
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 %s%s '%s' 64M && "
                           "qemu-img bitmap --add '%s' bm0 && "
                           "qemu-io -c 'write -P 0x22 1M 1M' '%s' >/dev/null && "
                           "qemu-img bitmap --add -g 512 '%s' bm1 && "
                           "qemu-img bitmap --disable '%s' bm1",
                           opts ? "-o " : "", opts ? opts : "", p, p, p, p, p), 0);
    return true;
}

static ic_image *try_open_cache(const char *name, unsigned flags, ic_cache_mode cache,
                                ic_error **err)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_BACKING;
    o.cache = cache;
    ic_image *img = NULL;
    if (ic_image_open(&img, cf_path(name), &o, err) < 0)
        return NULL;
    return img;
}

static ic_image *try_open(const char *name, unsigned flags, ic_error **err)
{
    return try_open_cache(name, flags, IC_CACHE_DEFAULT, err);
}

/* The flags of bitmap @name as the directory on disk has them now. */
static uint32_t disk_flags(const char *img_name, const char *name)
{
    ic_error *err = NULL;
    ic_image *img = try_open(img_name, IC_OPEN_FORCE_SHARE, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    struct qcow2_bitmap_dir d;
    TU_ASSERT_OK(qcow2_bitmap_dir_load(img, &d, &err), err);
    uint32_t f = UINT32_MAX;
    for (uint32_t i = 0; i < d.nb; i++)
        if (!strcmp(d.bm[i].name, name))
            f = d.bm[i].flags;
    qcow2_bitmap_dir_free(&d);
    ic_image_close(img);
    assert_int_not_equal(f, UINT32_MAX);
    return f;
}

static void test_qcow2_bitmap__a_read_write_open_writes_nothing_before_guest_data_changes(void **state)
{
    (void)state;
    if (!make_bitmap_image("a.qcow2", NULL))
        skip();
    uint8_t *before, *after;
    size_t blen, alen;
    assert_int_equal(tu_read_file(cf_path("a.qcow2"), &before, &blen), 0);
    ic_error *err = NULL;
    ic_image *img = try_open("a.qcow2", IC_OPEN_RDWR, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    uint8_t buf[512];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), 1u << 20, &err), err);
    TU_ASSERT_OK(ic_image_close(img), err);
    assert_int_equal(tu_read_file(cf_path("a.qcow2"), &after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(after);
    free(before);
}

static void test_qcow2_bitmap__the_first_write_flags_enabled_bitmaps_in_use_until_a_clean_close(void **state)
{
    (void)state;
    if (!make_bitmap_image("u.qcow2", NULL))
        skip();
    ic_error *err = NULL;
    ic_image *img = try_open("u.qcow2", IC_OPEN_RDWR | IC_OPEN_NO_LOCK, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    assert_int_equal(disk_flags("u.qcow2", "bm0"), QCOW2_BME_FLAG_AUTO);
    uint8_t buf[4096];
    memset(buf, 7, sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 40u << 20, &err), err);
    /* on disk before the data: bm0 in use; bm1 (disabled) untouched */
    assert_int_equal(disk_flags("u.qcow2", "bm0"), QCOW2_BME_FLAG_AUTO | QCOW2_BME_FLAG_IN_USE);
    assert_int_equal(disk_flags("u.qcow2", "bm1"), 0);
    TU_ASSERT_OK(ic_image_close(img), err);
    assert_int_equal(disk_flags("u.qcow2", "bm0"), QCOW2_BME_FLAG_AUTO);
    assert_int_equal(disk_flags("u.qcow2", "bm1"), 0);
    cf_assert_qemu_clean("u.qcow2");
    char *ext = NULL;
    assert_int_equal(tu_sh_out(&ext, "sh '%s/tests/helpers/qemu-dirty-extents.sh' '%s' bm0",
                               getenv("IC_TOP") ? getenv("IC_TOP") : ".", cf_path("u.qcow2")), 0);
    assert_string_equal(ext, "1048576 1048576\n41943040 65536\n");
    free(ext);
}

static void test_qcow2_bitmap__a_resize_of_an_image_with_bitmaps_is_refused(void **state)
{
    (void)state;
    if (!make_bitmap_image("rs.qcow2", NULL))
        skip();
    ic_error *err = NULL;
    ic_image *img = try_open("rs.qcow2", IC_OPEN_RDWR, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    TU_ASSERT_ERR(ic_image_truncate(img, 128u << 20, &err), err, ENOTSUP,
                  "Can't resize an image which has bitmaps");
    TU_ASSERT_OK(ic_image_close(img), err);
}

static void test_qcow2_bitmap__an_open_for_repair_refuses_every_change_of_guest_data(void **state)
{
    (void)state;
    if (!make_bitmap_image("rep.qcow2", NULL))
        skip();
    assert_int_equal(tu_sh("qemu-img snapshot -c s0 '%s'", cf_path("rep.qcow2")), 0);
    uint8_t *before, *after;
    size_t blen, alen;
    assert_int_equal(tu_read_file(cf_path("rep.qcow2"), &before, &blen), 0);
    ic_error *err = NULL;
    ic_image *img = try_open("rep.qcow2", IC_OPEN_RDWR | IC_OPEN_CHECK, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    const char *why = "image has persistent dirty bitmaps (bm0, bm1) and is open for check "
                      "and repair only; refusing to change its guest data";
    uint8_t buf[512] = { 1 };
    TU_ASSERT_ERR(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_image_pwrite_zeroes(img, 0, 65536, 0, &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_image_discard(img, 0, 65536, &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_image_truncate(img, 128u << 20, &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_snapshot_create(img, "s1", &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_snapshot_apply(img, "s0", &err), err, ENOTSUP, why);
    TU_ASSERT_ERR(ic_snapshot_delete(img, "s0", &err), err, ENOTSUP, why);
    /* the repair itself is allowed: a clean image needs none, writes none */
    ic_check_result r;
    TU_ASSERT_OK(ic_image_check(img, IC_FIX_LEAKS | IC_FIX_ERRORS, NULL, NULL, &r, &err), err);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors + r.leaks_fixed, 0);
    TU_ASSERT_OK(ic_image_close(img), err);
    assert_int_equal(tu_read_file(cf_path("rep.qcow2"), &after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(after);
    free(before);
}

static void test_qcow2_bitmap__read_only_opens_read_the_image_and_write_nothing(void **state)
{
    (void)state;
    if (!make_bitmap_image("ro.qcow2", "cluster_size=16384,extended_l2=on"))
        skip();
    uint8_t *before, *after;
    size_t blen, alen;
    assert_int_equal(tu_read_file(cf_path("ro.qcow2"), &before, &blen), 0);
    ic_error *err = NULL;
    ic_image *img = try_open("ro.qcow2", 0, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    uint8_t buf[512];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), 1u << 20, &err), err);
    assert_int_equal(buf[0], 0x22);
    assert_int_equal(buf[511], 0x22);
    ic_check_result r;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &r, &err), err);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    TU_ASSERT_OK(ic_image_close(img), err);
    assert_int_equal(tu_read_file(cf_path("ro.qcow2"), &after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(after);
    free(before);
}

static void test_qcow2_bitmap__the_repair_refusal_counts_the_names_it_leaves_out(void **state)
{
    (void)state;
    if (!make_bitmap_image("many.qcow2", NULL))
        skip();
    for (int i = 0; i < 30; i++)
        assert_int_equal(tu_sh("qemu-img bitmap --add '%s' name-of-bitmap-number-%02d",
                               cf_path("many.qcow2"), i), 0);
    ic_error *err = NULL;
    ic_image *img = try_open("many.qcow2", IC_OPEN_RDWR | IC_OPEN_CHECK, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    uint8_t buf[512] = { 0 };
    assert_int_equal(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), -ENOTSUP);
    ic_image_close(img);
    const char *m = ic_error_message(err);
    assert_non_null(strstr(m, "(bm0, bm1, name-of-bitmap-number-00, "));
    assert_non_null(strstr(m, " more) and is open for check and repair only"));
    assert_null(strchr(m, '\n'));
    assert_true(strlen(m) < 512);
    ic_error_free(err);
}

static void test_qcow2_bitmap__bitmaps_qemu_cannot_load_block_every_write(void **state)
{
    (void)state;
    if (!make_bitmap_image("bad.qcow2", NULL))
        skip();
    assert_int_equal(tu_sh("python3 '%s/tests/helpers/qcow2-bitmap-poke.py' '%s' break-dir",
                           getenv("IC_TOP") ? getenv("IC_TOP") : ".", cf_path("bad.qcow2")), 0);
    uint8_t *before, *after;
    size_t blen, alen;
    assert_int_equal(tu_read_file(cf_path("bad.qcow2"), &before, &blen), 0);
    ic_error *err = NULL;
    assert_null(try_open("bad.qcow2", IC_OPEN_RDWR, &err));
    assert_int_equal(ic_error_kind_of(err), IC_ERR_CORRUPT);
    assert_non_null(strstr(ic_error_message(err), "bad.qcow2: cannot load the persistent dirty "
                           "bitmaps, so the image cannot be written: Bitmap 'bm0' doesn't "
                           "satisfy the constraints"));
    ic_error_free(err);
    err = NULL;
    /* nor for a repair: its refcount rebuild could not count them */
    assert_null(try_open("bad.qcow2", IC_OPEN_RDWR | IC_OPEN_CHECK, &err));
    assert_non_null(strstr(ic_error_message(err), "bad.qcow2: cannot load the persistent dirty "
                           "bitmaps, so the image cannot be written: Bitmap 'bm0' doesn't "
                           "satisfy the constraints"));
    ic_error_free(err);
    assert_int_equal(tu_read_file(cf_path("bad.qcow2"), &after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(after);
    free(before);
    err = NULL;
    ic_image *img = try_open("bad.qcow2", 0, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    ic_image_close(img);
}

static void test_qcow2_bitmap__an_extension_qemu_ignores_is_dropped_on_read_write_open(void **state)
{
    (void)state;
    if (!make_bitmap_image("ign.qcow2", NULL))
        skip();
    uint8_t *b;
    size_t len;
    assert_int_equal(tu_read_file(cf_path("ign.qcow2"), &b, &len), 0);
    ic_store_be64(b + QCOW2_HDR_AUTOCLEAR, 0);
    assert_int_equal(tu_write_file(cf_path("ign.qcow2"), b, len), 0);
    free(b);
    ic_error *err = NULL;
    ic_image *img = try_open("ign.qcow2", 0, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    assert_true(qcow2_state(img)->has_bitmaps_ext);
    assert_false(qcow2_bitmaps_present(qcow2_state(img)));
    ic_image_close(img);
    img = try_open("ign.qcow2", IC_OPEN_RDWR, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    TU_ASSERT_OK(ic_image_close(img), err);
    img = try_open("ign.qcow2", 0, &err);
    TU_ASSERT_OK(img ? 0 : -1, err);
    assert_false(qcow2_state(img)->has_bitmaps_ext);
    ic_image_close(img);
    /* qemu now sees leaked clusters, and no bitmaps: what it would leave */
    assert_int_equal(tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", cf_path("ign.qcow2")) , 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_bitmap__directory_entries_are_parsed_in_order),
        cmocka_unit_test(test_qcow2_bitmap__entry_count_must_match_the_extension),
        cmocka_unit_test(test_qcow2_bitmap__entries_must_fill_the_directory_exactly),
        cmocka_unit_test(test_qcow2_bitmap__entries_outside_qemu_constraints_are_refused),
        cmocka_unit_test(test_qcow2_bitmap__a_table_too_small_for_the_disk_is_allowed_only_in_use),
        cmocka_unit_test(test_qcow2_bitmap__tables_past_one_gib_together_are_refused),
        cmocka_unit_test(test_qcow2_bitmap__table_entries_are_checked_as_qemu_checks_them),
        cmocka_unit_test(test_qcow2_bitmap__table_size_follows_the_disk_and_the_granularity),
        cmocka_unit_test(test_qcow2_bitmap__a_read_write_open_writes_nothing_before_guest_data_changes),
        cmocka_unit_test(test_qcow2_bitmap__the_first_write_flags_enabled_bitmaps_in_use_until_a_clean_close),
        cmocka_unit_test(test_qcow2_bitmap__a_resize_of_an_image_with_bitmaps_is_refused),
        cmocka_unit_test(test_qcow2_bitmap__an_open_for_repair_refuses_every_change_of_guest_data),
        cmocka_unit_test(test_qcow2_bitmap__read_only_opens_read_the_image_and_write_nothing),
        cmocka_unit_test(test_qcow2_bitmap__the_repair_refusal_counts_the_names_it_leaves_out),
        cmocka_unit_test(test_qcow2_bitmap__bitmaps_qemu_cannot_load_block_every_write),
        cmocka_unit_test(test_qcow2_bitmap__an_extension_qemu_ignores_is_dropped_on_read_write_open),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
