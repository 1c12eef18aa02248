/*
 * test-chain-convert.c - the convert engine (src/chain/chain-convert.c):
 * flattening mixed chains into every format against a reference model,
 * skipping zero and unallocated ranges, compression, progress, refusals
 * (errno and message), removal of a target after a failure, read-only
 * snapshot views, and EIO/ENOSPC at every metadata event of the target
 * (the fault loop: the copy fails cleanly and the target checks with 0
 * corruptions).
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "imgchain/chain.h"
#include "chain-fixture.h"
#include "fmt-scenario.h"

#define DISK (4u << 20)

/* Writes @len bytes of pattern @seed at @off into @img and @m. */
static void put(ic_image *img, struct tu_model *m, uint64_t off, size_t len, uint64_t seed)
{
    ic_error *err = NULL;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    if (m)
        tu_model_write(m, buf, len, off);
    free(buf);
}

static void zero(ic_image *img, struct tu_model *m, uint64_t off, uint64_t len)
{
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, off, len, 0, &err), err);
    if (m)
        tu_model_zero(m, off, len);
}

static void close_img(ic_image *img)
{
    assert_int_equal(ic_image_close(img), 0);
}

/* raw base (3 MiB) <- qcow2 mid (4 MiB) <- qed top: data in every layer,
 * zero writes hiding data below, unaligned edges, a short base. */
static struct tu_model *make_chain(void)
{
    struct tu_model *m = tu_model_new(DISK);
    cf_create("base.raw", "raw", 3u << 20, NULL, NULL, NULL);
    ic_image *img = cf_open("base.raw", IC_OPEN_RDWR);
    put(img, m, 0, 3u << 20, 1);
    close_img(img);
    cf_create("mid.qcow2", "qcow2", DISK, "base.raw", "raw", "cluster_size=4096");
    img = cf_open("mid.qcow2", IC_OPEN_RDWR);
    put(img, m, 100000, 300000, 2);
    zero(img, m, 1u << 20, 200000);
    put(img, m, 3500000, 1000, 3);
    close_img(img);
    cf_create("top.qed", "qed", 0, "mid.qcow2", "qcow2", NULL);
    img = cf_open("top.qed", IC_OPEN_RDWR);
    put(img, m, 2u << 20, 65536, 4);
    put(img, m, 4000000, 12345, 5);
    close_img(img);
    return m;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void test_chain_convert__flattens_a_mixed_chain_into_every_format(void **state)
{
    (void)state;
    struct tu_model *m = make_chain();
    static const char *const fmts[] = { "raw", "qcow2", "qed" };
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "out.%s", fmts[i]);
        ic_error *err = NULL;
        ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
        o.out_format = fmts[i];
        TU_ASSERT_OK(ic_image_convert(cf_path("top.qed"), cf_path(name), &o, &err), err);
        TU_MODEL_ASSERT_FILE(m, cf_path(name));
        /* flattened: no backing file recorded */
        ic_image *img = NULL;
        TU_ASSERT_OK(ic_image_open(&img, cf_path(name), NULL, &err), err);
        assert_null(ic_image_backing_name(img));
        assert_int_equal(ic_image_size(img), DISK);
        close_img(img);
    }
    tu_model_free(m);
}

static void test_chain_convert__never_writes_zero_or_unallocated_ranges(void **state)
{
    (void)state;
    ic_error *err = NULL;
    const uint64_t big = 1ull << 30;
    cf_create("sparse.qcow2", "qcow2", big, NULL, NULL, NULL);
    ic_image *img = cf_open("sparse.qcow2", IC_OPEN_RDWR);
    put(img, NULL, 512u << 20, 65536, 7);
    /* data clusters that hold zeroes: detected and skipped */
    uint8_t *z = calloc(1, 8u << 20);
    assert_non_null(z);
    TU_ASSERT_OK(ic_image_pwrite(img, z, 8u << 20, 100u << 20, &err), err);
    free(z);
    close_img(img);
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    o.out_format = "qcow2";
    TU_ASSERT_OK(ic_image_convert(cf_path("sparse.qcow2"), cf_path("sparse-out.qcow2"), &o, &err), err);
    /* header, tables, one L2 and one data cluster: far below 1 MiB */
    assert_true(file_size(cf_path("sparse-out.qcow2")) < (1 << 20));
    img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, cf_path("sparse-out.qcow2"), NULL, &err), err);
    ic_block_status st;
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 100u << 20, 8u << 20, &st, &err), err);
    assert_false(st.flags & IC_BS_ALLOCATED);
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 512u << 20, 65536, &st, &err), err);
    assert_true(st.flags & IC_BS_DATA);
    close_img(img);
}

static void test_chain_convert__compresses_every_cluster_with_c(void **state)
{
    (void)state;
    /* A mixed chain of incompressible data: the result must read back
     * right (clusters that do not shrink are stored as they are). */
    struct tu_model *m = make_chain();
    ic_error *err = NULL;
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    o.out_format = "qcow2";
    o.options = "cluster_size=16k";
    o.compress = true;
    TU_ASSERT_OK(ic_image_convert(cf_path("top.qed"), cf_path("c.qcow2"), &o, &err), err);
    TU_MODEL_ASSERT_FILE(m, cf_path("c.qcow2"));
    tu_model_free(m);

    /* Compressible data: every cluster is stored compressed. */
    m = tu_model_new(DISK);
    cf_create("flat.raw", "raw", DISK, NULL, NULL, NULL);
    ic_image *img = cf_open("flat.raw", IC_OPEN_RDWR);
    uint8_t *buf = malloc(DISK);
    assert_non_null(buf);
    for (size_t i = 0; i < DISK; i++)
        buf[i] = (uint8_t)("imgchain"[i % 8] + (i >> 16));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, DISK, 0, &err), err);
    tu_model_write(m, buf, DISK, 0);
    free(buf);
    close_img(img);
    TU_ASSERT_OK(ic_image_convert(cf_path("flat.raw"), cf_path("c2.qcow2"), &o, &err), err);
    TU_MODEL_ASSERT_FILE(m, cf_path("c2.qcow2"));
    assert_true(file_size(cf_path("c2.qcow2")) < DISK / 4);
    img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, cf_path("c2.qcow2"), NULL, &err), err);
    for (uint64_t off = 0; off < DISK; off += 1u << 20) {
        ic_block_status st;
        TU_ASSERT_OK(ic_image_block_status(img, NULL, off, 16384, &st, &err), err);
        /* as qemu reports compressed clusters: data without a host offset */
        assert_true(st.flags & IC_BS_DATA);
        assert_false(st.flags & IC_BS_OFFSET_VALID);
    }
    ic_check_result res;
    TU_ASSERT_OK(ic_image_check(img, 0, NULL, NULL, &res, &err), err);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    close_img(img);
    tu_model_free(m);
}

/* Many stripes with data: several readers run, slots complete out of
 * order, the qcow2 target allocates in that order; content must match. */
static void test_chain_convert__parallel_readers_copy_many_stripes_exactly_and_leave_nothing_cached(void **state)
{
    (void)state;
    const uint64_t size = 320ull << 20;
    struct tu_model *m = tu_model_new(size);
    cf_create("wide.qcow2", "qcow2", size, NULL, NULL, "cluster_size=65536");
    ic_image *img = cf_open("wide.qcow2", IC_OPEN_RDWR);
    for (uint64_t off = 0; off < size; off += 5ull << 20)
        put(img, m, off + (off >> 20) * 4099, 1u << 20, off + 1);
    close_img(img);
    static const char *const fmts[] = { "qcow2", "raw" };
    for (size_t i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof(name), "wide-out.%s", fmts[i]);
        ic_error *err = NULL;
        ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
        o.out_format = fmts[i];
        TU_ASSERT_OK(ic_image_convert(cf_path("wide.qcow2"), cf_path(name), &o, &err), err);
        /* the target goes out O_DIRECT (or streams, IC_OPEN_STREAM): once
         * convert returns, none of its pages is left in the page cache */
        size_t cached = 0;
        int cret = tu_cached_pages(cf_path(name), &cached);
        if (cret != -ENOTSUP) {
            assert_int_equal(cret, 0);
            assert_int_equal(cached, 0);
        }
        TU_MODEL_ASSERT_FILE(m, cf_path(name));
    }
    tu_model_free(m);
}

struct progress_log {
    uint64_t last, total;
    unsigned calls;
    bool monotonic;
};

static void on_progress(uint64_t done, uint64_t total, void *payload)
{
    struct progress_log *p = payload;
    if (p->calls == 0 && done != 0)
        p->monotonic = false;
    if (done < p->last || done > total)
        p->monotonic = false;
    p->last = done;
    p->total = total;
    p->calls++;
}

/* A target cluster larger than a stripe (QED allows up to 64 MiB): the
 * stripe grows to the granule; the copy is exact and progress ends at the
 * disk's size. */
static void test_chain_convert__clusters_larger_than_a_stripe_are_copied_whole(void **state)
{
    (void)state;
    const uint64_t size = 96ull << 20;
    struct tu_model *m = tu_model_new(size);
    cf_create("big.qcow2", "qcow2", size, NULL, NULL, NULL);
    ic_image *img = cf_open("big.qcow2", IC_OPEN_RDWR);
    for (uint64_t off = 0; off < size; off += 7ull << 20)
        put(img, m, off + 4096, 3u << 20, off + 7);
    close_img(img);
    ic_error *err = NULL;
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    o.out_format = "qed";
    o.options = "cluster_size=16M,force_large_clusters=on";
    struct progress_log log = { .monotonic = true };
    o.progress = on_progress;
    o.payload = &log;
    TU_ASSERT_OK(ic_image_convert(cf_path("big.qcow2"), cf_path("big.qed"), &o, &err), err);
    assert_true(log.monotonic);
    assert_int_equal(log.last, size);
    /* read back by imgchain only: qemu 7.2 computes the largest QED image
     * for 16 MiB clusters in 64 bits, which wraps, and refuses to open it */
    TU_MODEL_ASSERT_FILE(m, cf_path("big.qed"));
    tu_model_free(m);
}

static void test_chain_convert__reports_progress_from_zero_to_total_in_order(void **state)
{
    (void)state;
    struct tu_model *m = make_chain();
    /* 64 KiB target clusters (and -c) widen data windows over the heads
     * of zero runs already counted: progress must not count them twice */
    static const struct {
        const char *fmt, *name;
        bool compress;
    } cases[] = { { "raw", "p.raw", false },
                  { "qcow2", "p.qcow2", false },
                  { "qcow2", "pc.qcow2", true } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ic_error *err = NULL;
        struct progress_log log = { .monotonic = true };
        ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
        o.out_format = cases[i].fmt;
        o.compress = cases[i].compress;
        o.progress = on_progress;
        o.payload = &log;
        TU_ASSERT_OK(ic_image_convert(cf_path("top.qed"), cf_path(cases[i].name), &o, &err), err);
        assert_true(log.monotonic);
        assert_true(log.calls >= 2);
        assert_int_equal(log.total, DISK);
        assert_int_equal(log.last, DISK);
        TU_MODEL_ASSERT_FILE(m, cf_path(cases[i].name));
    }
    tu_model_free(m);
}

static void test_chain_convert__refuses_compression_for_raw_before_creating_anything(void **state)
{
    (void)state;
    struct tu_model *m = make_chain();
    ic_error *err = NULL;
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    o.out_format = "raw";
    o.compress = true;
    int ret = ic_image_convert(cf_path("top.qed"), cf_path("nc.raw"), &o, &err);
    TU_ASSERT_ERR(ret, err, ENOTSUP, "does not support compression");
    assert_int_equal(file_size(cf_path("nc.raw")), -1);
    o.out_format = "vhdx";
    o.compress = false;
    ret = ic_image_convert(cf_path("top.qed"), cf_path("nc.vhdx"), &o, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "unknown output format 'vhdx'");
    o.out_format = "qcow2";
    o.options = "backing_file=base.raw";
    ret = ic_image_convert(cf_path("top.qed"), cf_path("nc.qcow2"), &o, &err);
    TU_ASSERT_ERR(ret, err, ENOTSUP, "backing_file");
    assert_int_equal(file_size(cf_path("nc.qcow2")), -1);
    o.options = "cluster_size=3000";
    ret = ic_image_convert(cf_path("top.qed"), cf_path("nc.qcow2"), &o, &err);
    assert_true(ret < 0);
    assert_non_null(err);
    assert_non_null(strstr(ic_error_message(err), "nc.qcow2"));
    ic_error_free(err);
    err = NULL;
    assert_int_equal(file_size(cf_path("nc.qcow2")), -1);
    tu_model_free(m);
}

static void test_chain_convert__refuses_a_target_inside_the_source_chain(void **state)
{
    (void)state;
    struct tu_model *m = make_chain();
    ic_error *err = NULL;
    int64_t before = file_size(cf_path("base.raw"));
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    int ret = ic_image_convert(cf_path("top.qed"), cf_path("base.raw"), &o, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "a backing file of the conversion");
    ret = ic_image_convert(cf_path("top.qed"), cf_path("top.qed"), &o, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "the source of the conversion");
    assert_int_equal(file_size(cf_path("base.raw")), before);
    TU_MODEL_ASSERT_FILE(m, cf_path("top.qed"));
    tu_model_free(m);
}

/* A source whose L1 entry points to an unaligned L2 table: opening works,
 * the copy fails on it (after the target was created). */
static void test_chain_convert__removes_its_target_when_the_source_cannot_be_read(void **state)
{
    (void)state;
    ic_error *err = NULL;
    cf_create("bad.qcow2", "qcow2", DISK, NULL, NULL, NULL);
    ic_image *img = cf_open("bad.qcow2", IC_OPEN_RDWR);
    put(img, NULL, 0, 65536, 9);
    close_img(img);
    /* fresh 64 KiB-cluster image: L1 at 0x30000 holding the big-endian
     * entry 0x80000000_00040000; make the L2 offset 0x40200 (bit 9 is an
     * offset bit, so this is an unaligned table, not a reserved bit). */
    uint8_t *file = NULL;
    size_t len = 0;
    assert_int_equal(tu_read_file(cf_path("bad.qcow2"), &file, &len), 0);
    assert_true(len > 0x30000 + 8);
    assert_int_equal(file[0x30000], 0x80);
    assert_int_equal(file[0x30000 + 5], 0x04);
    file[0x30000 + 6] = 0x02;
    assert_int_equal(tu_write_file(cf_path("bad.qcow2"), file, len), 0);
    free(file);
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    int ret = ic_image_convert(cf_path("bad.qcow2"), cf_path("bad-out.raw"), &o, &err);
    assert_true(ret < 0);
    assert_non_null(err);
    assert_non_null(strstr(ic_error_message(err), "bad.qcow2"));
    ic_error_free(err);
    assert_int_equal(file_size(cf_path("bad-out.raw")), -1);
}

static void test_chain_convert__copies_into_an_image_the_caller_opened(void **state)
{
    (void)state;
    struct tu_model *m = make_chain();
    ic_error *err = NULL;
    cf_create("into.qcow2", "qcow2", DISK * 2, NULL, NULL, NULL);
    ic_image *dst = cf_open("into.qcow2", IC_OPEN_RDWR);
    ic_image *src = NULL;
    TU_ASSERT_OK(ic_image_open(&src, cf_path("top.qed"), NULL, &err), err);
    TU_ASSERT_OK(ic_image_copy(dst, src, NULL, &err), err);
    close_img(dst);
    /* a target smaller than the source is refused */
    cf_create("small.qcow2", "qcow2", DISK / 2, NULL, NULL, NULL);
    dst = cf_open("small.qcow2", IC_OPEN_RDWR);
    int ret = ic_image_copy(dst, src, NULL, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "target is smaller");
    close_img(dst);
    close_img(src);
    struct tu_model *m2 = tu_model_new(DISK * 2);
    memcpy(m2->data, m->data, DISK);
    TU_MODEL_ASSERT_FILE(m2, cf_path("into.qcow2"));
    tu_model_free(m2);
    tu_model_free(m);
}

static void test_chain_convert__snapshot_views_are_read_only_and_named(void **state)
{
    (void)state;
    ic_error *err = NULL;
    cf_create("ro.qed", "qed", DISK, NULL, NULL, NULL);
    ic_image *img = cf_open("ro.qed", IC_OPEN_RDWR);
    int ret = ic_image_snapshot_load_tmp(img, "1", NULL, false, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "read-only");
    close_img(img);
    TU_ASSERT_OK(ic_image_open(&img, cf_path("ro.qed"), NULL, &err), err);
    ret = ic_image_snapshot_load_tmp(img, "1", NULL, false, &err);
    TU_ASSERT_ERR(ret, err, ENOTSUP, "does not support internal snapshots");
    ret = ic_image_snapshot_load_tmp(img, NULL, NULL, false, &err);
    TU_ASSERT_ERR(ret, err, EINVAL, "no snapshot id or name");
    close_img(img);
}

/* ---- the fault loop: a failing target during the copy ------------------- */

static int fl_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    char *src = tu_path(ctx->dir, "src.raw");
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "raw";
    co.size = 1u << 20;
    co.size_set = true;
    int ret = ic_image_create(src, &co, errp);
    ic_image *img = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    if (ret == 0)
        ret = ic_image_open(&img, src, &o, errp);
    if (ret == 0) {
        uint8_t buf[65536];
        for (uint64_t off = 0; ret == 0 && off < (1u << 20); off += 3 * sizeof(buf)) {
            tu_fill_pattern(buf, sizeof(buf), off);
            ret = ic_image_pwrite(img, buf, sizeof(buf), off, errp);
        }
        ic_image_close(img);
    }
    free(src);
    if (ret < 0)
        return ret;
    co.format = "qcow2";
    co.options = "cluster_size=4096";
    return ic_image_create(ctx->path, &co, errp);
}

static int fl_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    char *srcpath = tu_path(ctx->dir, "src.raw");
    ic_open_options so = IC_OPEN_OPTIONS_INIT;
    so.flags = IC_OPEN_NO_LOCK;
    so.format = "raw";
    ic_image *src = NULL, *dst = NULL;
    int ret = ic_image_open(&src, srcpath, &so, errp);
    free(srcpath);
    if (ret < 0)
        return ret;
    ret = fmt_open_target(ctx, &dst, errp);
    if (ret == 0)
        ret = ic_image_copy(dst, src, NULL, errp);
    int cret = ic_image_close(dst);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    ic_image_close(src);
    return ret;
}

static int fl_check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    return fmt_check_path(ctx->path, false, res, errp);
}

static void test_chain_convert__fails_cleanly_at_every_target_metadata_event(void **state)
{
    (void)state;
    struct tu_fault_loop cfg = {
        .name = "convert into qcow2", .target = "dst.qcow2", .setup = fl_setup,
        .run = fl_run, .check = fl_check, .max_nth = 2, .any_write_max = 3, .quiet = true,
    };
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.runs_injected > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_convert__flattens_a_mixed_chain_into_every_format,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_chain_convert__never_writes_zero_or_unallocated_ranges,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_chain_convert__compresses_every_cluster_with_c,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__parallel_readers_copy_many_stripes_exactly_and_leave_nothing_cached, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__clusters_larger_than_a_stripe_are_copied_whole, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__reports_progress_from_zero_to_total_in_order, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__refuses_compression_for_raw_before_creating_anything, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__refuses_a_target_inside_the_source_chain, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_convert__removes_its_target_when_the_source_cannot_be_read, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(test_chain_convert__copies_into_an_image_the_caller_opened,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(test_chain_convert__snapshot_views_are_read_only_and_named,
                                        cf_setup, cf_teardown),
        cmocka_unit_test(test_chain_convert__fails_cleanly_at_every_target_metadata_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
