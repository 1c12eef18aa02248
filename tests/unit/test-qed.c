/*
 * test-qed.c - src/qed/qed.c: probe, header parsing (and hostile headers),
 * create options and layout, info, NEED_CHECK handling at open, flush and
 * close, autoclear bits, backing files, resize, make_empty.
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
#include "qed-damage.h"
#include "image/image.h"
#include "io/io-mem.h"
#include "util/endian.h"

/* ---- helpers ------------------------------------------------------------ */

struct hdr {
    uint32_t magic, cluster_size, table_size, header_size;
    uint64_t features, compat, autoclear, l1, size;
    uint32_t name_off, name_size;
};

static struct hdr default_hdr(void)
{
    struct hdr h = { 0x00444551u, 4096, 1, 1, 0, 0, 0, 4096, 1 << 20, 0, 0 };
    return h;
}

/* A memory file holding header @h, an optional backing name at 64, and
 * @file_size bytes in total (zeroes). */
static ic_io *mem_image(const struct hdr *h, const char *name, uint64_t file_size)
{
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&io, "hostile.qed", &err), err);
    uint8_t b[64];
    memset(b, 0, sizeof(b));
    ic_store_le32(b + 0, h->magic);
    ic_store_le32(b + 4, h->cluster_size);
    ic_store_le32(b + 8, h->table_size);
    ic_store_le32(b + 12, h->header_size);
    ic_store_le64(b + 16, h->features);
    ic_store_le64(b + 24, h->compat);
    ic_store_le64(b + 32, h->autoclear);
    ic_store_le64(b + 40, h->l1);
    ic_store_le64(b + 48, h->size);
    ic_store_le32(b + 56, h->name_off);
    ic_store_le32(b + 60, h->name_size);
    assert_int_equal(ic_io_truncate(io, file_size), 0);
    assert_int_equal(ic_io_pwrite(io, b, file_size < 64 ? (size_t)file_size : 64, 0), 0);
    if (name)
        assert_int_equal(ic_io_pwrite(io, name, strlen(name), 64), 0);
    return io;
}

static int open_mem(ic_image **img, ic_io *io, unsigned flags, ic_error **err)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = "qed";
    o.flags = flags | IC_OPEN_NO_BACKING;
    return ic_image_open_io(img, io, &o, err);
}

static void create_qed(const char *path, uint64_t size, const char *options,
                       const char *backing, const char *bfmt)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qed";
    co.size = size;
    co.size_set = size != 0 || !backing;
    co.options = options;
    co.backing_file = backing;
    co.backing_format = bfmt;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
}

static ic_image *open_path(const char *path, unsigned flags)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    return img;
}

/* ---- probe and hostile headers ---------------------------------------------- */

static void test_qed__probe_matches_the_magic_and_nothing_else(void **state)
{
    (void)state;
    uint8_t b[512];
    memset(b, 0, sizeof(b));
    memcpy(b, "QED\0", 4);
    assert_string_equal(ic_driver_probe(b, sizeof(b))->name, "qed");
    assert_string_equal(ic_driver_probe(b, 63)->name, "raw");
    b[3] = 1;
    assert_string_equal(ic_driver_probe(b, sizeof(b))->name, "raw");
}

struct hostile {
    const char *what;
    struct hdr h;
    const char *name;
    uint64_t file_size;
    int err;
    const char *msg;
};

static void test_qed__refuses_hostile_headers_with_a_clear_error(void **state)
{
    (void)state;
    const struct hdr d = default_hdr();
    struct hostile cases[] = {
        { "bad magic", d, NULL, 8192, EINVAL, "not in QED format" },
        { "truncated header", d, NULL, 40, EINVAL, "header is truncated" },
        { "cluster size 0", d, NULL, 8192, EINVAL, "cluster size 0 is invalid" },
        { "cluster size 2 KiB", d, NULL, 8192, EINVAL, "cluster size 2048 is invalid" },
        { "cluster size not a power of 2", d, NULL, 3 * 8192, EINVAL, "cluster size 12288 is invalid" },
        { "cluster size 128 MiB", d, NULL, 8192, EINVAL, "cluster size 134217728 is invalid" },
        { "table size 0", d, NULL, 8192, EINVAL, "table size 0 is invalid" },
        { "table size 3", d, NULL, 8192, EINVAL, "table size 3 is invalid" },
        { "table size 32", d, NULL, 8192, EINVAL, "table size 32 is invalid" },
        { "header size 0", d, NULL, 8192, EINVAL, "header size is zero" },
        { "header size overflowing u32", d, NULL, 8192, EINVAL, "header size of 1048576 clusters" },
        { "image size not a multiple of 512", d, NULL, 8192, EINVAL, "image size 1000 is invalid" },
        { "image size beyond two table levels", d, NULL, 8192, EINVAL, "image size 1099511627776 is invalid" },
        { "L1 offset unaligned", d, NULL, 3 * 4096, EINVAL, "L1 table offset 0x1001 is invalid" },
        { "L1 inside the header", d, NULL, 8192, EINVAL, "L1 table offset 0 is invalid" },
        { "L1 past the end of the file", d, NULL, 8192, EINVAL, "L1 table offset 0x2000 is invalid" },
        { "L1 table running past EOF", d, NULL, 8192, EINVAL, "L1 table offset 0x1000 is invalid" },
        { "backing name outside the header area", d, "x", 8192, EINVAL, "lies outside the header area" },
        { "backing name with a NUL byte", d, "ab", 8192, EINVAL, "contains a NUL byte" },
        { "unknown incompatible feature", d, NULL, 8192, ENOTSUP, "unsupported QED features: 0x8" },
        { "tables larger than the memory limit", d, NULL, 8192, ENOTSUP, "exceed the supported" },
    };
    cases[0].h.magic = 0x00444552u;
    cases[2].h.cluster_size = 0;
    cases[3].h.cluster_size = 2048;
    cases[4].h.cluster_size = 12288;
    cases[5].h.cluster_size = 128u << 20;
    cases[6].h.table_size = 0;
    cases[7].h.table_size = 3;
    cases[8].h.table_size = 32;
    cases[9].h.header_size = 0;
    cases[10].h.header_size = 1u << 20;
    cases[11].h.size = 1000;
    cases[12].h.size = UINT64_C(1) << 40; /* 4 KiB x 512 x 512 = 1 GiB max */
    cases[13].h.l1 = 4097;
    cases[14].h.l1 = 0;
    cases[15].h.l1 = 8192;
    cases[16].h.table_size = 2; /* L1 = clusters 1-2, file has 2 clusters */
    cases[17].h.features = 1;
    cases[17].h.name_off = 4000;
    cases[17].h.name_size = 200;
    cases[18].h.features = 1;
    cases[18].h.name_off = 64;
    cases[18].h.name_size = 4;
    cases[19].h.features = 8;
    cases[20].h.cluster_size = 64u << 20;
    cases[20].h.table_size = 2;
    for (size_t i = 0; i < IC_ARRAY_SIZE(cases); i++) {
        print_message("hostile header: %s\n", cases[i].what);
        for (int rw = 0; rw < 2; rw++) {
            ic_io *io = mem_image(&cases[i].h, cases[i].name, cases[i].file_size);
            struct ic_io_mem *m = ic_io_mem_of(io);
            uint8_t before[64];
            memcpy(before, m->data, IC_MIN(m->size, (uint64_t)64));
            ic_image *img = NULL;
            ic_error *err = NULL;
            /* keep the backend alive after the failed open to look at it */
            ic_io *borrowed = NULL;
            assert_int_equal(tu_io_borrow(&borrowed, io), 0);
            int ret = open_mem(&img, borrowed, rw ? IC_OPEN_RDWR : 0, &err);
            assert_null(img);
            TU_ASSERT_ERR(ret, err, cases[i].err, cases[i].msg);
            assert_memory_equal(before, m->data, IC_MIN(m->size, (uint64_t)64));
            ic_io_close(io);
        }
    }
}

static void test_qed__opens_table_size_one_which_qemu_refuses(void **state)
{
    (void)state;
    struct hdr h = default_hdr();
    h.size = 4 << 20; /* two L2 tables of 512 x 4 KiB */
    ic_io *io = mem_image(&h, NULL, 8192);
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(open_mem(&img, io, IC_OPEN_RDWR, &err), err);
    uint8_t w[4096], r[4096];
    tu_fill_pattern(w, sizeof(w), 3);
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 512 * 4096 + 4096, &err), err);
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 512 * 4096 + 4096, &err), err);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(ic_image_close(img), 0);
}

/* ---- create ---------------------------------------------------------------------- */

static void test_qed__create_lays_out_header_name_and_l1_like_qemu(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *base = tu_path(dir, "base.raw"), *path = tu_path(dir, "a.qed");
    assert_int_equal(tu_write_file(base, "", 0), 0);
    assert_int_equal(tu_sh("truncate -s 1M %s", base), 0);
    create_qed(path, 0, "cluster_size=4096,table_size=2", "base.raw", "raw");
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_int_equal(in.cluster_size, 4096);
    assert_int_equal(in.table_size, 2);
    assert_int_equal(in.header_size, 1);
    assert_int_equal(in.features, 0x5); /* backing file + no probe */
    assert_int_equal(in.l1_offset, 4096);
    assert_int_equal(in.image_size, 1 << 20);
    assert_int_equal(in.file_size, 3 * 4096);
    uint8_t *b;
    size_t len;
    assert_int_equal(tu_read_file(path, &b, &len), 0);
    assert_int_equal(ic_load_le32(b + 56), 64);
    assert_int_equal(ic_load_le32(b + 60), 8);
    assert_memory_equal(b + 64, "base.raw", 8);
    free(b);

    ic_image *img = open_path(path, 0);
    assert_string_equal(ic_image_format(img), "qed");
    assert_string_equal(ic_image_backing_name(img), "base.raw");
    assert_string_equal(ic_image_backing_format(img), "raw");
    assert_non_null(ic_image_backing(img));
    ic_image_close(img);

    /* defaults: 64 KiB clusters, 4-cluster tables, size rounded to 512 */
    create_qed(path, 1000, NULL, NULL, NULL);
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_int_equal(in.cluster_size, 65536);
    assert_int_equal(in.table_size, 4);
    assert_int_equal(in.image_size, 1024);
    assert_int_equal(in.features, 0);
    assert_int_equal(in.file_size, 5 * 65536);
    free(base);
    free(path);
}

static void test_qed__records_a_non_raw_backing_format_as_probed(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *base = tu_path(dir, "base.qed"), *path = tu_path(dir, "top.qed");
    create_qed(base, 1 << 20, "cluster_size=4096", NULL, NULL);
    create_qed(path, 0, NULL, "base.qed", "qed");
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_int_equal(in.features, 0x1);
    ic_image *img = open_path(path, 0);
    assert_null(ic_image_backing_format(img));
    assert_string_equal(ic_image_format(ic_image_backing(img)), "qed");
    assert_int_equal(ic_image_size(img), 1 << 20);
    ic_image_close(img);
    free(base);
    free(path);
}

static void test_qed__create_refuses_bad_options_before_touching_the_file(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "keep.qed");
    assert_int_equal(tu_write_file(path, "precious", 8), 0);
    struct {
        const char *opts;
        uint64_t size;
        int err;
        const char *msg;
    } cases[] = {
        { "cluster_size=2048", 1 << 20, EINVAL, "cluster size must be within range" },
        { "cluster_size=12k", 1 << 20, EINVAL, "cluster size must be within range" },
        { "table_size=3", 1 << 20, EINVAL, "table size must be within range" },
        { "table_size=32", 1 << 20, EINVAL, "table size must be within range" },
        { "preallocation=metadata", 1 << 20, ENOTSUP, "Unsupported preallocation mode: metadata" },
        { "lazy_refcounts=on", 1 << 20, EINVAL, "invalid option 'lazy_refcounts'" },
        { "cluster_size=4096,table_size=1", UINT64_C(1) << 31, EINVAL, "image size must be" },
    };
    for (size_t i = 0; i < IC_ARRAY_SIZE(cases); i++) {
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.format = "qed";
        co.size = cases[i].size;
        co.size_set = true;
        co.options = cases[i].opts;
        ic_error *err = NULL;
        int ret = ic_image_create(path, &co, &err);
        TU_ASSERT_ERR(ret, err, cases[i].err, cases[i].msg);
        uint8_t *b;
        size_t len;
        assert_int_equal(tu_read_file(path, &b, &len), 0);
        assert_int_equal(len, 8);
        assert_memory_equal(b, "precious", 8);
        free(b);
    }
    free(path);
}

/* ---- info, need-check, autoclear ------------------------------------------------- */

static void test_qed__info_reports_cluster_size_and_the_need_check_bit(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 1 << 20, "cluster_size=8192", NULL, NULL);
    assert_int_equal(qd_set_need_check(path, true), 0);
    ic_image *img = open_path(path, 0); /* read-only: no repair, bit kept */
    ic_image_info *info = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_get_info(img, &info, &err), err);
    assert_int_equal(info->cluster_size, 8192);
    assert_true(info->dirty);
    assert_int_equal(info->nb_specific, 0);
    assert_string_equal(info->format, "qed");
    ic_image_info_free(info);
    ic_image_close(img);
    free(path);
}

static void test_qed__sets_need_check_for_allocating_writes_and_clears_it_on_flush(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 1 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    uint8_t w[100];
    memset(w, 7, sizeof(w));
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 5000, &err), err);
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_true(in.features & 2);
    TU_ASSERT_OK(ic_image_flush(img, &err), err);
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_false(in.features & 2);
    /* an in-place write allocates nothing and leaves the bit alone */
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 4096, &err), err);
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_false(in.features & 2);
    /* close clears it too */
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 500000, &err), err);
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_true(in.features & 2);
    assert_int_equal(ic_image_close(img), 0);
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_false(in.features & 2);
    free(path);
}

static void test_qed__never_sets_need_check_when_a_backing_file_is_open(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *base = tu_path(dir, "b.raw"), *path = tu_path(dir, "a.qed");
    assert_int_equal(tu_sh("truncate -s 1M %s", base), 0);
    create_qed(path, 0, "cluster_size=4096", "b.raw", "raw");
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    uint8_t w[100];
    memset(w, 7, sizeof(w));
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 5000, &err), err);
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_int_equal(in.features, 0x5);
    assert_int_equal(ic_image_close(img), 0);
    free(base);
    free(path);
}

static void test_qed__read_write_open_with_need_check_repairs_invalid_entries(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 4 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    uint8_t w[8192];
    tu_fill_pattern(w, sizeof(w), 1);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    /* entry 1 points past EOF, as after a crash without a flush */
    assert_int_equal(qd_set_l2(path, 4096, 1 << 30), 0);
    assert_int_equal(qd_set_need_check(path, true), 0);

    img = open_path(path, 0); /* read-only: left as it is */
    uint8_t r[4096];
    int ret = ic_image_pread(img, r, sizeof(r), 4096, &err);
    TU_ASSERT_ERR(ret, err, EIO, "invalid cluster offset 0x40000000");
    ic_image_close(img);

    img = open_path(path, IC_OPEN_RDWR); /* repairs */
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 4096, &err), err);
    uint8_t zero[4096] = { 0 };
    assert_memory_equal(r, zero, sizeof(r));
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 0, &err), err);
    assert_memory_equal(r, w, sizeof(r));
    ic_check_result res;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &res, &err), err);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 1); /* the cluster the bad entry lost */
    ic_image_close(img);
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_false(in.features & 2);
    free(path);
}

static void test_qed__unrepairable_need_check_image_opens_but_refuses_writes(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 4 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    uint8_t w[8192];
    tu_fill_pattern(w, sizeof(w), 1);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    assert_int_equal(qd_double_reference(path, 0, 4096), 0);
    assert_int_equal(qd_set_need_check(path, true), 0);
    img = open_path(path, IC_OPEN_RDWR);
    uint8_t r[4096];
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 4096, &err), err);
    assert_memory_equal(r, w, sizeof(r)); /* both entries read cluster A */
    int ret = ic_image_pwrite(img, w, 100, 0, &err);
    TU_ASSERT_ERR(ret, err, EIO, "error state");
    ic_image_close(img);
    struct qd_info in;
    assert_int_equal(qd_read_info(path, &in), 0);
    assert_true(in.features & 2); /* still needs a check */
    free(path);
}

static void test_qed__clears_unknown_autoclear_bits_only_when_writable(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 1 << 20, "cluster_size=4096", NULL, NULL);
    assert_int_equal(qd_poke_le64(path, 32, 0x80), 0);
    assert_int_equal(qd_poke_le64(path, 24, 0x40), 0); /* compat: kept */
    ic_image_close(open_path(path, 0));
    uint64_t v;
    assert_int_equal(qd_peek_le64(path, 32, &v), 0);
    assert_int_equal(v, 0x80);
    ic_image_close(open_path(path, IC_OPEN_RDWR));
    assert_int_equal(qd_peek_le64(path, 32, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(qd_peek_le64(path, 24, &v), 0);
    assert_int_equal(v, 0x40);
    free(path);
}

/* ---- backing change, resize, make_empty -------------------------------------------- */

static void test_qed__change_backing_rewrites_name_and_feature_bits(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 1 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR | IC_OPEN_NO_BACKING);
    struct ic_image *in = (struct ic_image *)img;
    ic_error *err = NULL;
    TU_ASSERT_OK(in->drv->change_backing(in, "other/base.raw", "raw", &err), err);
    assert_string_equal(ic_image_backing_name(img), "other/base.raw");
    assert_string_equal(ic_image_backing_format(img), "raw");
    ic_image_close(img);
    struct qd_info qi;
    assert_int_equal(qd_read_info(path, &qi), 0);
    assert_int_equal(qi.features, 0x5);
    img = open_path(path, IC_OPEN_RDWR | IC_OPEN_NO_BACKING);
    in = (struct ic_image *)img;
    assert_string_equal(ic_image_backing_name(img), "other/base.raw");
    TU_ASSERT_OK(in->drv->change_backing(in, "b.qcow2", "qcow2", &err), err);
    assert_null(ic_image_backing_format(img));
    TU_ASSERT_OK(in->drv->change_backing(in, NULL, NULL, &err), err);
    assert_null(ic_image_backing_name(img));
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    int ret = in->drv->change_backing(in, big, NULL, &err);
    TU_ASSERT_ERR(ret, err, ENOSPC, "does not fit in the QED header area");
    ic_image_close(img);
    assert_int_equal(qd_read_info(path, &qi), 0);
    assert_int_equal(qi.features, 0);
    free(path);
}

static void test_qed__truncate_grows_and_refuses_to_shrink(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 1 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_truncate(img, 2 << 20, &err), err);
    assert_int_equal(ic_image_size(img), 2 << 20);
    int ret = ic_image_truncate(img, 1 << 20, &err);
    TU_ASSERT_ERR(ret, err, ENOTSUP, "shrinking QED images is not supported");
    ret = ic_image_truncate(img, (2 << 20) + 100, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "invalid QED image size");
    ic_image_close(img);
    struct qd_info qi;
    assert_int_equal(qd_read_info(path, &qi), 0);
    assert_int_equal(qi.image_size, 2 << 20);
    free(path);
}

static void test_qed__make_empty_drops_every_cluster_and_shrinks_the_file(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* cf_setup made it, cf_teardown removes it */
    char *path = tu_path(dir, "a.qed");
    create_qed(path, 4 << 20, "cluster_size=4096,table_size=2", NULL, NULL);
    ic_image *img = open_path(path, IC_OPEN_RDWR);
    uint8_t w[65536];
    tu_fill_pattern(w, sizeof(w), 9);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 100000, &err), err);
    struct ic_image *in = (struct ic_image *)img;
    TU_ASSERT_OK(in->drv->make_empty(in, &err), err);
    uint8_t r[65536], z[65536] = { 0 };
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 100000, &err), err);
    assert_memory_equal(r, z, sizeof(r));
    ic_check_result res;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &res, &err), err);
    assert_int_equal(res.corruptions + res.leaks, 0);
    ic_image_close(img);
    struct qd_info qi;
    assert_int_equal(qd_read_info(path, &qi), 0);
    assert_int_equal(qi.file_size, 3 * 4096);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qed__probe_matches_the_magic_and_nothing_else),
        cmocka_unit_test(test_qed__refuses_hostile_headers_with_a_clear_error),
        cmocka_unit_test(test_qed__opens_table_size_one_which_qemu_refuses),
        cmocka_unit_test_setup_teardown(
            test_qed__create_lays_out_header_name_and_l1_like_qemu, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__records_a_non_raw_backing_format_as_probed, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__create_refuses_bad_options_before_touching_the_file, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__info_reports_cluster_size_and_the_need_check_bit, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__sets_need_check_for_allocating_writes_and_clears_it_on_flush,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__never_sets_need_check_when_a_backing_file_is_open, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__read_write_open_with_need_check_repairs_invalid_entries,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__unrepairable_need_check_image_opens_but_refuses_writes,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__clears_unknown_autoclear_bits_only_when_writable, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__change_backing_rewrites_name_and_feature_bits, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__truncate_grows_and_refuses_to_shrink, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed__make_empty_drops_every_cluster_and_shrinks_the_file, cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
