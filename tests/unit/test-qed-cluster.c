/*
 * test-qed-cluster.c - src/qed/qed-cluster.c (and the tables and cache it
 * drives): reads and writes through the chain against a raw reference
 * model, copy-on-write from backing files, zero clusters, allocation order
 * and block status runs.
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
#include "rec-io.h"
#include "image/image.h"
#include "io/io-mem.h"

struct fx {
    char *dir;
    char *top;
    char *base;
};

static void fx_init(struct fx *f)
{
    f->dir = strdup(cf_dir); /* cf_setup made it, cf_teardown removes it */
    assert_non_null(f->dir);
    f->top = tu_path(f->dir, "top.qed");
    f->base = tu_path(f->dir, "base.raw");
}

static void fx_free(struct fx *f)
{
    free(f->dir);
    free(f->top);
    free(f->base);
}

static void create(const char *path, uint64_t size, const char *opts, const char *backing,
                   const char *bfmt)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qed";
    co.size = size;
    co.size_set = size != 0;
    co.options = opts;
    co.backing_file = backing;
    co.backing_format = bfmt;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
}

static ic_image *open_img(const char *path, unsigned flags)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    return img;
}

/* A raw base file of @size filled with a pattern; returns its model. */
static struct tu_model *make_base(const char *path, uint64_t size, uint64_t seed)
{
    struct tu_model *m = tu_model_new(size);
    tu_fill_pattern(m->data, (size_t)size, seed);
    assert_int_equal(tu_model_save(m, path), 0);
    return m;
}

static void write_both(ic_image *img, struct tu_model *m, uint64_t off, size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    tu_model_write(m, buf, len, off);
    free(buf);
}

static void check_clean(ic_image *img)
{
    ic_check_result res;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &res, &err), err);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    assert_int_equal(res.check_errors, 0);
}

static void test_qed_cluster__random_writes_read_back_like_the_model(void **state)
{
    (void)state;
    static const struct {
        const char *opts;
    } geo[] = { { "cluster_size=4096,table_size=1" }, { "cluster_size=4096,table_size=2" },
                { "cluster_size=65536,table_size=4" } };
    for (size_t g = 0; g < IC_ARRAY_SIZE(geo); g++) {
        struct fx f;
        fx_init(&f);
        const uint64_t size = 6 << 20; /* several L2 tables with 4 KiB x 1 */
        create(f.top, size, geo[g].opts, NULL, NULL);
        ic_image *img = open_img(f.top, IC_OPEN_RDWR);
        struct tu_model *m = tu_model_new(size);
        uint64_t rng = 0x1234 + g;
        for (int i = 0; i < 200; i++) {
            uint64_t len = 1 + tu_rand(&rng) % 20000;
            uint64_t off = tu_rand(&rng) % (size - len);
            write_both(img, m, off, (size_t)len, rng);
        }
        /* one write across an L2 table boundary (2 MiB with 4 KiB x 1) */
        write_both(img, m, (2 << 20) - 3000, 300000, 77);
        TU_MODEL_ASSERT_IMAGE(m, img);
        check_clean(img);
        ic_error *err = NULL;
        TU_ASSERT_OK(ic_image_close(img), err);
        TU_MODEL_ASSERT_FILE(m, f.top);
        tu_model_free(m);
        fx_free(&f);
    }
}

static void test_qed_cluster__partial_writes_copy_head_and_tail_from_the_backing_file(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const uint64_t size = 1 << 20;
    struct tu_model *m = make_base(f.base, size, 42);
    create(f.top, 0, "cluster_size=65536", "base.raw", "raw");
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    write_both(img, m, 70000, 1000, 1);       /* inside one cluster */
    write_both(img, m, 200000, 100000, 2);    /* spans clusters, both edges partial */
    write_both(img, m, size - 10, 10, 3);     /* last bytes of the disk */
    TU_MODEL_ASSERT_IMAGE(m, img);
    ic_image_close(img);
    /* the overlay alone holds whole clusters whose edges came from the base */
    img = open_img(f.top, IC_OPEN_NO_BACKING);
    uint8_t r[1000];
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 65536, &err), err);
    assert_memory_equal(r, m->data + 65536, sizeof(r));
    ic_image_close(img);
    TU_MODEL_ASSERT_FILE(m, f.top);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__zero_writes_hide_the_backing_without_allocating(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const uint64_t size = 1 << 20;
    struct tu_model *m = make_base(f.base, size, 42);
    create(f.top, 0, "cluster_size=4096", "base.raw", "raw");
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    struct qd_info before, after;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 8192, 65536, 0, &err), err);
    tu_model_zero(m, 8192, 65536);
    TU_MODEL_ASSERT_IMAGE(m, img);
    assert_int_equal(qd_read_info(f.top, &before), 0);
    /* an L2 table was needed, but no data cluster */
    assert_int_equal(before.file_size, (1 + 4 + 4) * 4096); /* header, L1, L2 */
    uint64_t e;
    assert_int_equal(qd_get_l2(f.top, 8192, &e), 0);
    assert_int_equal(e, 1);
    /* a partial write into a zero cluster fills the rest with zeroes */
    write_both(img, m, 8192 + 100, 50, 5);
    TU_MODEL_ASSERT_IMAGE(m, img);
    /* unaligned zero writes: edges as data, middle as zero clusters */
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 300000, 50000, IC_ZERO_MAY_UNMAP, &err), err);
    tu_model_zero(m, 300000, 50000);
    /* zeroing allocated data keeps the cluster and reads zeroes */
    write_both(img, m, 500000, 8192, 6);
    assert_int_equal(qd_read_info(f.top, &before), 0);
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 499712, 12288, IC_ZERO_MAY_UNMAP, &err), err);
    tu_model_zero(m, 499712, 12288);
    TU_MODEL_ASSERT_IMAGE(m, img);
    check_clean(img);
    ic_image_close(img);
    assert_int_equal(qd_read_info(f.top, &after), 0);
    assert_int_equal(after.file_size, before.file_size);
    TU_MODEL_ASSERT_FILE(m, f.top);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__allocates_data_then_l2_at_eof_like_qemu(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    create(f.top, 1 << 20, "cluster_size=4096,table_size=2", NULL, NULL);
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    struct tu_model *m = tu_model_new(1 << 20);
    write_both(img, m, 0, 4096, 1);
    write_both(img, m, 8192, 100, 2);
    ic_image_close(img);
    /* qemu-io wrote the same requests to 0x3000 and 0x6000 with the L2 at
     * 0x4000 (see the reference, observed with qemu 7.2) */
    uint64_t l1, e0, e2;
    struct qd_info qi;
    assert_int_equal(qd_read_info(f.top, &qi), 0);
    assert_int_equal(qd_peek_le64(f.top, qi.l1_offset, &l1), 0);
    assert_int_equal(l1, 0x4000);
    assert_int_equal(qd_get_l2(f.top, 0, &e0), 0);
    assert_int_equal(qd_get_l2(f.top, 8192, &e2), 0);
    assert_int_equal(e0, 0x3000);
    assert_int_equal(e2, 0x6000);
    assert_int_equal(qi.file_size, 7 * 4096);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__block_status_returns_long_runs_across_tables(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const uint64_t size = 8 << 20;
    create(f.top, size, "cluster_size=4096,table_size=1", NULL, NULL);
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    struct tu_model *m = tu_model_new(size);
    /* 3 MiB in one request: crosses the 2 MiB table boundary */
    write_both(img, m, 1 << 20, 3 << 20, 1);
    ic_block_status bs;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 0, size, &bs, &err), err);
    assert_int_equal(bs.length, 1 << 20);
    assert_false(bs.flags & IC_BS_ALLOCATED);
    assert_true(bs.flags & IC_BS_ZERO);
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 1 << 20, size - (1 << 20), &bs, &err), err);
    /* data before the second table is contiguous with data after it? no:
     * the new L2 table was allocated between them, so two host runs */
    assert_true(bs.flags & IC_BS_ALLOCATED);
    assert_true(bs.flags & IC_BS_DATA);
    assert_true(bs.flags & IC_BS_OFFSET_VALID);
    assert_int_equal(bs.length, 1 << 20);
    uint64_t total = bs.length;
    while (total < (3u << 20)) {
        TU_ASSERT_OK(ic_image_block_status(img, NULL, (1 << 20) + total,
                                           size - (1 << 20) - total, &bs, &err), err);
        assert_true(bs.flags & IC_BS_DATA);
        total += bs.length;
    }
    assert_int_equal(total, 3 << 20);
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 4 << 20, 4 << 20, &bs, &err), err);
    assert_int_equal(bs.length, 4 << 20);
    assert_false(bs.flags & IC_BS_DATA);
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 6 << 20, 1 << 20, 0, &err), err);
    ic_image_close(img);
    /* a zero run over a backing-less image is still reported as zero */
    img = open_img(f.top, 0);
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 6 << 20, 1 << 20, &bs, &err), err);
    assert_true(bs.flags & IC_BS_ZERO);
    ic_image_close(img);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__reports_a_bad_l2_entry_as_corruption_and_stops_writing(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    create(f.top, 1 << 20, "cluster_size=4096", NULL, NULL);
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    struct tu_model *m = tu_model_new(1 << 20);
    write_both(img, m, 0, 8192, 1);
    ic_image_close(img);
    assert_int_equal(qd_set_l2(f.top, 4096, 0x1234), 0); /* unaligned */
    img = open_img(f.top, IC_OPEN_RDWR);
    uint8_t r[4096];
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pread(img, r, sizeof(r), 0, &err), err);
    int ret = ic_image_pread(img, r, sizeof(r), 4096, &err);
    TU_ASSERT_ERR(ret, err, EIO, "invalid cluster offset 0x1234");
    ret = ic_image_pwrite(img, r, sizeof(r), 0, &err);
    TU_ASSERT_ERR(ret, err, EIO, "error state");
    ic_image_close(img);
    assert_int_equal(qd_set_l1(f.top, 0, 0x7000000), 0);
    img = open_img(f.top, 0);
    ret = ic_image_pread(img, r, sizeof(r), 0, &err);
    TU_ASSERT_ERR(ret, err, EIO, "invalid L2 table offset 0x7000000");
    ic_image_close(img);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__refuses_cow_when_the_backing_file_is_not_open(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct tu_model *m = make_base(f.base, 1 << 20, 4);
    create(f.top, 0, "cluster_size=4096", "base.raw", "raw");
    ic_image *img = open_img(f.top, IC_OPEN_RDWR | IC_OPEN_NO_BACKING);
    uint8_t w[4096];
    memset(w, 1, sizeof(w));
    ic_error *err = NULL;
    int ret = ic_image_pwrite(img, w, 100, 0, &err);
    TU_ASSERT_ERR(ret, err, ENOTSUP, "backing file 'base.raw', which is not open");
    /* whole clusters need no backing data */
    TU_ASSERT_OK(ic_image_pwrite(img, w, sizeof(w), 4096, &err), err);
    ic_image_close(img);
    tu_model_write(m, w, sizeof(w), 4096);
    TU_MODEL_ASSERT_FILE(m, f.top);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__qed_works_over_raw_and_under_another_qed(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct tu_model *m = make_base(f.base, 2 << 20, 11);
    char *mid = tu_path(f.dir, "mid.qed");
    create(mid, 0, "cluster_size=4096,table_size=2", "base.raw", "raw");
    create(f.top, 0, "cluster_size=65536", "mid.qed", "qed");
    ic_image *img = open_img(mid, IC_OPEN_RDWR);
    write_both(img, m, 10000, 20000, 1);
    ic_image_close(img);
    img = open_img(f.top, IC_OPEN_RDWR);
    write_both(img, m, 15000, 70000, 2);
    write_both(img, m, (2 << 20) - 5000, 5000, 3);
    TU_MODEL_ASSERT_IMAGE(m, img);
    ic_image_close(img);
    TU_MODEL_ASSERT_FILE(m, f.top);
    free(mid);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_cluster__l2_updates_write_whole_aligned_4k_blocks(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    create(f.top, 1 << 30, NULL, NULL, NULL); /* 64 KiB clusters, 256 KiB tables */
    struct rec_io *r = rec_io_open(f.top, true, IC_EV_QED_L2_UPDATE);
    ic_image *img = rec_io_image(r, "qed", true);
    struct tu_model *m = tu_model_new(1 << 30);
    write_both(img, m, 0, 65536, 1);              /* allocates the L2 table */
    write_both(img, m, 5 * 65536, 100, 2);        /* entry 5: block 0 */
    write_both(img, m, 700 * 65536 + 7, 4000, 3); /* entry 700: block 1 */
    assert_int_equal(r->nwrites, 2);
    for (unsigned i = 0; i < 2; i++) {
        /* a whole page-cache page: never a partial-page read-modify-write */
        assert_int_equal(r->write_len[i], 4096);
        assert_int_equal(r->write_off[i] % 4096, 0);
    }
    assert_int_equal(r->write_off[1] - r->write_off[0], 4096);
    TU_MODEL_ASSERT_IMAGE(m, img);
    check_clean(img);
    assert_int_equal(ic_image_close(img), 0);
    TU_MODEL_ASSERT_FILE(m, f.top);
    tu_model_free(m);
    fx_free(&f);
}

static void test_qed_l2_cache__evicts_the_least_recently_used_table(void **state)
{
    (void)state;
    /* many tables (4 KiB x 1 = 2 MiB per L2) and a budget-bound cache:
     * touching more tables than slots must still read correctly */
    struct fx f;
    fx_init(&f);
    const uint64_t size = 80 << 20;
    create(f.top, size, "cluster_size=4096,table_size=1", NULL, NULL);
    ic_image *img = open_img(f.top, IC_OPEN_RDWR);
    struct tu_model *m = tu_model_new(size);
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t t = 0; t < 40; t++)
            write_both(img, m, t * (2 << 20) + (uint64_t)pass * 4096, 4096, t + 100 * pass);
    TU_MODEL_ASSERT_IMAGE(m, img);
    check_clean(img);
    ic_image_close(img);
    tu_model_free(m);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__random_writes_read_back_like_the_model, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__partial_writes_copy_head_and_tail_from_the_backing_file,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__zero_writes_hide_the_backing_without_allocating,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__allocates_data_then_l2_at_eof_like_qemu, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__block_status_returns_long_runs_across_tables, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__reports_a_bad_l2_entry_as_corruption_and_stops_writing,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__refuses_cow_when_the_backing_file_is_not_open, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__qed_works_over_raw_and_under_another_qed, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_cluster__l2_updates_write_whole_aligned_4k_blocks, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_l2_cache__evicts_the_least_recently_used_table, cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
