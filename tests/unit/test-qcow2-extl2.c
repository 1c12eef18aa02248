/*
 * test-qcow2-extl2.c - extended L2 subcluster writes (qcow2-cluster.c
 * design note 6): the subcluster bitmaps after partial
 * writes, zero writes and discards, reads through to the backing file for
 * subclusters a write did not touch, the host offset block status reports
 * for them, refusal of a corrupt bitmap, random I/O against a raw model
 * (and `qemu-img check` when qemu-img is installed), a crash loop over
 * subcluster writes and a fault loop (every event x EIO/ENOSPC).
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
#include "fmt-scenario.h"
#include "qcow2/qcow2.h"

#define CS 65536u          /* cluster size of most tests */
#define SC (CS / 32)       /* its subcluster size */
#define DISK (4u << 20)

/* Images live in the chain fixture's temp directory (cf_dir) and are
 * named relative to it. */

/* A raw backing file of DISK bytes filled with pattern @seed; its model. */
static struct tu_model *make_backing(const char *name, uint64_t seed)
{
    struct tu_model *m = tu_model_new(DISK);
    tu_fill_pattern(m->data, DISK, seed);
    assert_int_equal(tu_model_save(m, cf_path(name)), 0);
    return m;
}

/* Creates image @name with extended L2 and 64 KiB clusters, DISK bytes or
 * over the raw file @backing (NULL: none), and opens it read-write. */
static ic_image *create_open(const char *name, const char *backing)
{
    cf_create(name, "qcow2", backing ? 0 : DISK, backing, backing ? "raw" : NULL,
              "extended_l2=on,cluster_size=65536");
    return cf_open(name, IC_OPEN_RDWR);
}

/* The L2 entry and bitmap of guest offset @off in the active tables. */
static void entry(ic_image *img, uint64_t off, uint64_t *e, uint64_t *bm)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    *e = *bm = 0;
    if (l1i >= s->l1_size || !(s->l1[l1i] & QCOW2_L1E_OFFSET_MASK))
        return;
    uint8_t *l2;
    assert_int_equal(qcow2_get_l2(img, s->l1[l1i] & QCOW2_L1E_OFFSET_MASK, &l2), 0);
    uint32_t ci = (uint32_t)((off >> s->cluster_bits) & (s->l2_entries - 1));
    *e = qcow2_l2_get(s, l2, ci);
    *bm = qcow2_l2_get_bitmap(s, l2, ci);
    qcow2_cache_put(&s->l2_cache, &l2);
}

static uint64_t alloc_bits(ic_image *img, uint64_t off)
{
    uint64_t e, bm;
    entry(img, off, &e, &bm);
    return bm & QCOW2_BITMAP_ALL_ALLOC;
}

static uint64_t zero_bits(ic_image *img, uint64_t off)
{
    uint64_t e, bm;
    entry(img, off, &e, &bm);
    return bm >> 32;
}

static uint64_t host_of(ic_image *img, uint64_t off)
{
    uint64_t e, bm;
    entry(img, off, &e, &bm);
    return e & QCOW2_L2E_OFFSET_MASK;
}

static void write_pattern(ic_image *img, struct tu_model *m, uint64_t off, size_t len,
                          uint64_t seed)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    if (m)
        tu_model_write(m, buf, len, off);
    free(buf);
}

static void write_zeroes(ic_image *img, struct tu_model *m, uint64_t off, uint64_t len,
                         unsigned flags)
{
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, off, len, flags, &err), err);
    if (m)
        tu_model_zero(m, off, len);
}

/* ---- subcluster allocation ------------------------------------------------- */

static void test_qcow2_extl2__partial_write_allocates_only_the_touched_subclusters(void **state)
{
    (void)state;
    const char *name = "a.qcow2";
    ic_image *img = create_open(name, NULL);
    struct tu_model *m = tu_model_new(DISK);
    /* 3000 bytes from 5000: subclusters 2 and 3 of cluster 0 */
    write_pattern(img, m, 5000, 3000, 1);
    uint64_t e, bm;
    entry(img, 0, &e, &bm);
    assert_true(e & QCOW2_OFLAG_COPIED);
    assert_int_not_equal(e & QCOW2_L2E_OFFSET_MASK, 0);
    assert_int_equal(bm, 0xcull);
    /* a write across two clusters: the last two subclusters of cluster 1
     * and the first one of cluster 2, from one contiguous allocation */
    write_pattern(img, m, 2 * CS - 2 * SC + 7, 2 * SC, 2);
    assert_int_equal(alloc_bits(img, CS), 0xc0000000ull);
    assert_int_equal(alloc_bits(img, 2 * CS), 0x1ull);
    assert_int_equal(host_of(img, 2 * CS), host_of(img, CS) + CS);
    /* a second write into cluster 0 stays in place and adds subcluster 10 */
    uint64_t host = host_of(img, 0);
    write_pattern(img, m, 10 * SC + 100, 50, 3);
    assert_int_equal(host_of(img, 0), host);
    assert_int_equal(alloc_bits(img, 0), 0xcull | (1ull << 10));
    assert_int_equal(zero_bits(img, 0), 0);
    TU_MODEL_ASSERT_IMAGE(m, img);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_close(img), err);
    TU_MODEL_ASSERT_FILE(m, cf_path(name));
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

static void test_qcow2_extl2__untouched_subclusters_read_through_to_the_backing_file(
    void **state)
{
    (void)state;
    struct tu_model *m = make_backing("b1.raw", 77);
    const char *name = "o1.qcow2";
    ic_image *img = create_open(name, "b1.raw");
    write_pattern(img, m, 3 * SC + 1, 10, 4);        /* COW inside subcluster 3 */
    write_pattern(img, m, CS + 31 * SC, SC, 5);       /* the last subcluster only */
    assert_int_equal(alloc_bits(img, 0), 1ull << 3);
    assert_int_equal(alloc_bits(img, CS), 1ull << 31);
    TU_MODEL_ASSERT_IMAGE(m, img);
    /* block status: the untouched subclusters come from the backing file */
    ic_block_status st;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 0, 3 * SC, &st, &err), err);
    assert_int_equal(st.depth, 1);
    assert_int_equal(st.length, 3 * SC);
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 3 * SC, SC, &st, &err), err);
    assert_int_equal(st.depth, 0);
    assert_true(st.flags & IC_BS_DATA);
    assert_int_equal(st.host_offset, host_of(img, 0) + 3 * SC);
    TU_ASSERT_OK(ic_image_close(img), err);
    TU_MODEL_ASSERT_FILE(m, cf_path(name));
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

static void test_qcow2_extl2__unallocated_subclusters_of_the_bottom_image_report_their_host_offset(
    void **state)
{
    (void)state;
    const char *name = "h.qcow2";
    ic_image *img = create_open(name, NULL);
    write_pattern(img, NULL, 0, SC, 6);
    ic_block_status st;
    ic_error *err = NULL;
    /* as qemu-img map: not present, zero, with the host offset */
    TU_ASSERT_OK(ic_image_block_status(img, NULL, SC, CS - SC, &st, &err), err);
    assert_false(st.flags & IC_BS_ALLOCATED);
    assert_true(st.flags & IC_BS_ZERO);
    assert_true(st.flags & IC_BS_OFFSET_VALID);
    assert_int_equal(st.host_offset, host_of(img, 0) + SC);
    assert_int_equal(st.length, CS - SC);
    TU_ASSERT_OK(ic_image_close(img), err);
}

static void test_qcow2_extl2__compressed_cluster_is_copied_whole_on_a_partial_write(
    void **state)
{
    (void)state;
    const char *name = "c.qcow2";
    ic_image *img = create_open(name, NULL);
    struct tu_model *m = tu_model_new(DISK);
    uint8_t *buf = calloc(1, CS);
    assert_non_null(buf);
    memset(buf, 0x5a, CS);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite_compressed(img, buf, CS, CS, &err), err);
    tu_model_write(m, buf, CS, CS);
    free(buf);
    uint64_t e, bm;
    entry(img, CS, &e, &bm);
    assert_true(e & QCOW2_OFLAG_COMPRESSED);
    assert_int_equal(bm, 0);
    write_pattern(img, m, CS + 5 * SC + 3, 20, 7);
    entry(img, CS, &e, &bm);
    assert_false(e & QCOW2_OFLAG_COMPRESSED);
    assert_int_equal(bm, QCOW2_BITMAP_ALL_ALLOC);
    TU_MODEL_ASSERT_IMAGE(m, img);
    TU_ASSERT_OK(ic_image_close(img), err);
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

/* ---- zero writes and discards --------------------------------------------- */

static void test_qcow2_extl2__zero_writes_set_zero_bits_instead_of_writing_zeroes(void **state)
{
    (void)state;
    struct tu_model *m = make_backing("b2.raw", 88);
    const char *name = "z.qcow2";
    ic_image *img = create_open(name, "b2.raw");
    /* whole subclusters 4..5 of an unallocated cluster: zero bits only */
    write_zeroes(img, m, 4 * SC, 2 * SC, 0);
    uint64_t e, bm;
    entry(img, 0, &e, &bm);
    assert_int_equal(e, 0);
    assert_int_equal(bm, 0x30ull << 32);
    /* part of a subcluster over backing data: zero data is written */
    write_zeroes(img, m, 8 * SC + 10, 100, 0);
    assert_int_equal(alloc_bits(img, 0), 1ull << 8);
    /* a whole cluster: an all-zero bitmap, no host cluster */
    write_zeroes(img, m, 2 * CS, CS, 0);
    entry(img, 2 * CS, &e, &bm);
    assert_int_equal(e, 0);
    assert_int_equal(bm, QCOW2_BITMAP_ALL_ZERO);
    /* an allocated cluster keeps its host cluster without unmap ... */
    write_pattern(img, m, 3 * CS, CS, 9);
    uint64_t host = host_of(img, 3 * CS);
    write_zeroes(img, m, 3 * CS, CS, 0);
    entry(img, 3 * CS, &e, &bm);
    assert_int_equal(e & QCOW2_L2E_OFFSET_MASK, host);
    assert_int_equal(bm, QCOW2_BITMAP_ALL_ZERO);
    /* ... and drops it with unmap */
    write_pattern(img, m, 4 * CS, CS, 10);
    write_zeroes(img, m, 4 * CS, CS, IC_ZERO_MAY_UNMAP);
    entry(img, 4 * CS, &e, &bm);
    assert_int_equal(e, 0);
    assert_int_equal(bm, QCOW2_BITMAP_ALL_ZERO);
    /* whole subclusters of an allocated cluster: zero bits replace the
     * allocation bits, the host cluster stays */
    write_pattern(img, m, 5 * CS, 4 * SC, 11);
    write_zeroes(img, m, 5 * CS + SC, 2 * SC, 0);
    entry(img, 5 * CS, &e, &bm);
    assert_int_equal(bm, 0x9ull | (0x6ull << 32));
    TU_MODEL_ASSERT_IMAGE(m, img);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_close(img), err);
    TU_MODEL_ASSERT_FILE(m, cf_path(name));
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

static void test_qcow2_extl2__partial_zero_write_over_zeroes_zeroes_the_whole_subcluster(
    void **state)
{
    (void)state;
    const char *name = "pz.qcow2";
    ic_image *img = create_open(name, NULL);
    struct tu_model *m = tu_model_new(DISK);
    /* no backing file: the rest of the subcluster already reads as zeroes */
    write_zeroes(img, m, 6 * SC + 5, 17, 0);
    uint64_t e, bm;
    entry(img, 0, &e, &bm);
    assert_int_equal(e, 0);
    assert_int_equal(bm, (1ull << 6) << 32);
    TU_MODEL_ASSERT_IMAGE(m, img);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_close(img), err);
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

static void test_qcow2_extl2__discard_clears_whole_clusters_and_ignores_partial_ones(
    void **state)
{
    (void)state;
    struct tu_model *m = make_backing("b3.raw", 99);
    const char *name = "d.qcow2";
    ic_image *img = create_open(name, "b3.raw");
    write_pattern(img, m, 0, 3 * CS, 12);
    ic_error *err = NULL;
    /* part of a cluster: ignored, as qemu 7.2 does */
    TU_ASSERT_OK(ic_image_discard(img, CS + SC, 4 * SC, &err), err);
    assert_int_equal(alloc_bits(img, CS), QCOW2_BITMAP_ALL_ALLOC);
    /* a whole cluster reads as zeroes afterwards (not the backing file) */
    TU_ASSERT_OK(ic_image_discard(img, CS, CS, &err), err);
    tu_model_zero(m, CS, CS);
    uint64_t e, bm;
    entry(img, CS, &e, &bm);
    assert_int_equal(e, 0);
    assert_int_equal(bm, QCOW2_BITMAP_ALL_ZERO);
    TU_MODEL_ASSERT_IMAGE(m, img);
    TU_ASSERT_OK(ic_image_close(img), err);
    cf_assert_qemu_clean(name);
    tu_model_free(m);
}

/* ---- bad input ------------------------------------------------------------- */

static void test_qcow2_extl2__write_over_a_corrupt_bitmap_is_refused(void **state)
{
    (void)state;
    const char *name = "bad.qcow2";
    ic_image *img = create_open(name, NULL);
    write_pattern(img, NULL, 0, SC, 13);
    struct qcow2_state *s = qcow2_state(img);
    uint64_t l2off = s->l1[0] & QCOW2_L1E_OFFSET_MASK;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_close(img), err);
    /* subcluster 0 both allocated and zero: bitmap 0x00000001_00000001 */
    assert_int_equal(tu_sh("printf '\\000\\000\\000\\001\\000\\000\\000\\001' | "
                           "dd of='%s' bs=1 seek=%" PRIu64 " conv=notrunc status=none",
                           cf_path(name), l2off + 8), 0);
    img = cf_open(name, IC_OPEN_RDWR);
    uint8_t buf[100] = { 0 };
    int ret = ic_image_pwrite(img, buf, sizeof(buf), 3 * SC, &err);
    assert_int_equal(ret, -EIO);
    assert_non_null(err);
    assert_non_null(strstr(ic_error_message(err), "invalid L2 entry"));
    ic_error_free(err);
    err = NULL;
    ic_image_close(img);
}

/* ---- random I/O against the model ------------------------------------------ */

static void random_run(const char *opts, uint32_t cs, bool backing, uint64_t seed)
{
    struct tu_model *m = backing ? make_backing("rb.raw", seed) : tu_model_new(DISK);
    const char *name = "r.qcow2";
    cf_create(name, "qcow2", backing ? 0 : DISK, backing ? "rb.raw" : NULL,
              backing ? "raw" : NULL, opts);
    ic_image *img = cf_open(name, IC_OPEN_RDWR);
    uint32_t sc = cs / 32;
    uint64_t st = seed;
    ic_error *err = NULL;
    for (unsigned i = 0; i < 120; i++) {
        unsigned kind = (unsigned)(tu_rand(&st) % 10);
        uint64_t len = tu_rand(&st) % 2 ? sc * (1 + tu_rand(&st) % 40) : 1 + tu_rand(&st) % (3 * cs);
        uint64_t off = tu_rand(&st) % (DISK - len);
        if (tu_rand(&st) % 2)
            off -= off % sc;
        if (kind < 6) {
            write_pattern(img, m, off, (size_t)len, seed * 1000 + i);
        } else if (kind < 8) {
            write_zeroes(img, m, off, len, kind == 7 ? IC_ZERO_MAY_UNMAP : 0);
        } else {
            /* whole clusters read as zeroes; partial ones are ignored */
            TU_ASSERT_OK(ic_image_discard(img, off, len, &err), err);
            uint64_t zs = IC_ALIGN_UP(off, cs), ze = IC_ALIGN_DOWN(off + len, cs);
            if (zs < ze)
                tu_model_zero(m, zs, ze - zs);
        }
        if (i % 20 == 19)
            TU_MODEL_ASSERT_IMAGE(m, img);
    }
    /* every bitmap is valid (no subcluster both allocated and zero, no
     * allocation bits without a host cluster) */
    for (uint64_t c = 0; c < DISK; c += cs) {
        uint64_t e, bm;
        entry(img, c, &e, &bm);
        assert_int_not_equal(qcow2_subcluster_type(qcow2_state(img), e, bm, 0),
                             QCOW2_SC_INVALID);
    }
    TU_MODEL_ASSERT_IMAGE(m, img);
    TU_ASSERT_OK(ic_image_close(img), err);
    TU_MODEL_ASSERT_FILE(m, cf_path(name));
    cf_assert_qemu_clean(name);
    tu_model_free(m);
    remove(cf_path(name));
    remove(cf_path("rb.raw"));
}

static void test_qcow2_extl2__random_io_matches_the_model_without_a_backing_file(void **state)
{
    (void)state;
    random_run("extended_l2=on,cluster_size=16384", 16384, false, 21);
    random_run("extended_l2=on,cluster_size=65536", 65536, false, 22);
}

static void test_qcow2_extl2__random_io_matches_the_model_over_a_backing_file(void **state)
{
    (void)state;
    random_run("extended_l2=on,cluster_size=16384", 16384, true, 23);
    random_run("extended_l2=on,cluster_size=65536,refcount_bits=1", 65536, true, 24);
}

/* ---- crash loop ---------------------------------------------------------------- */

/* Subcluster writes (16 KiB clusters: 512-byte subclusters) over a raw
 * backing file, a flush after each; crashed at every flush.  Setup and run
 * are the shared crash scenario of tests/helpers/fmt-scenario.c. */
#define CR_DISK (1u << 20)
#define CR_N 6
static const struct fmt_crash_op cr_ops[CR_N] = {
    { 700, 300, false }, { 16384 + 512, 1024, false }, { 40000, 9000, false },
    { 1000, 2000, true }, { 16384, 16384, true },      { 5000, 40000, false },
};

static void cr_expect(struct tu_model *m, unsigned upto)
{
    uint8_t *buf = malloc(65536);
    assert_non_null(buf);
    for (unsigned i = 0; i < upto; i++) {
        if (cr_ops[i].zero) {
            tu_model_zero(m, cr_ops[i].off, cr_ops[i].len);
        } else {
            tu_fill_pattern(buf, cr_ops[i].len, 500 + i);
            tu_model_write(m, buf, cr_ops[i].len, cr_ops[i].off);
        }
    }
    free(buf);
}

static int cr_verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct fmt_crash_scenario *cs = ctx->payload;
    int ret = fmt_qemu_img_check(ctx->path, NULL, errp);
    if (ret < 0)
        return ret;
    /* durable operations read back; the one in flight (if any) shows,
     * per 512-byte subcluster, the state before or after it */
    struct tu_model *before = tu_model_new(CR_DISK), *after = tu_model_new(CR_DISK);
    tu_fill_pattern(before->data, CR_DISK, 5);
    memcpy(after->data, before->data, CR_DISK);
    unsigned done = ctx->crashed ? cs->durable : CR_N;
    cr_expect(before, done);
    cr_expect(after, done < CR_N ? done + 1 : CR_N);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        goto out;
    uint8_t *got = malloc(CR_DISK);
    assert_non_null(got);
    ret = ic_image_pread(img, got, CR_DISK, 0, errp);
    for (uint64_t a = 0; a < CR_DISK && ret == 0; a += 512)
        if (memcmp(got + a, before->data + a, 512) && memcmp(got + a, after->data + a, 512))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "bytes at %" PRIu64
                               " are neither before nor after operation %u", a, done);
    free(got);
    ic_image_close(img);
out:
    tu_model_free(before);
    tu_model_free(after);
    return ret;
}

/* The image and the operations of the crash and the fault loop. */
static struct fmt_crash_scenario cr_scenario = {
    .name = "qcow2 extended L2 16k over raw", .format = "qcow2",
    .opts = "extended_l2=on,cluster_size=16384", .disk = CR_DISK, .backing = true,
    .size_from_backing = true, .backing_seed = 5, .ops = cr_ops, .nops = CR_N,
    .data_seed = 500, .flush_every = 1, .verify = cr_verify, .seeds = 2,
    .min_crash_points = CR_N, .needs_qemu_img = true,
};

static void test_qcow2_extl2__subcluster_writes_crashed_at_every_flush_leave_old_or_new_data(
    void **state)
{
    (void)state;
    fmt_crash_loop(&cr_scenario);
}

/* ---- fault loop --------------------------------------------------------------- */

/* EIO/ENOSPC at every metadata event (and the first writes and flushes) of
 * a sequence of subcluster writes, zero writes and a discard: the run
 * fails cleanly and the image keeps 0 corruptions (leaks allowed).  The
 * image is the crash loop's (fmt_crash_setup with cr_scenario). */
static int fl_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_image *img = NULL;
    int ret = fmt_open_target(ctx, &img, errp);
    if (ret < 0)
        return ret;
    uint8_t buf[40000];
    for (unsigned i = 0; i < CR_N && ret == 0; i++) {
        if (cr_ops[i].zero) {
            ret = ic_image_pwrite_zeroes(img, cr_ops[i].off, cr_ops[i].len,
                                         i % 2 ? IC_ZERO_MAY_UNMAP : 0, errp);
        } else {
            tu_fill_pattern(buf, cr_ops[i].len, 500 + i);
            ret = ic_image_pwrite(img, buf, cr_ops[i].len, cr_ops[i].off, errp);
        }
    }
    if (ret == 0)
        ret = ic_image_discard(img, 16384, 32768, errp);
    if (ret == 0)
        ret = ic_image_flush(img, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed: %s", strerror(-cret));
    return ret;
}

static int fl_check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    int ret = fmt_check_path(ctx->path, false, res, errp);
    if (ret == 0 && fmt_have_qemu_img())
        ret = fmt_qemu_img_check(ctx->path, NULL, errp);
    return ret;
}

static void test_qcow2_extl2__subcluster_writes_fail_cleanly_at_every_event(void **state)
{
    (void)state;
    struct tu_fault_loop cfg = {
        .name = "qcow2 extended L2 writes",
        .target = "t.qcow2", .setup = fmt_crash_setup, .run = fl_run, .check = fl_check,
        .payload = &cr_scenario, .max_nth = 2, .any_write_max = 6, .any_flush_max = 3,
    };
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.runs_injected > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_extl2__partial_write_allocates_only_the_touched_subclusters),
        cmocka_unit_test(test_qcow2_extl2__untouched_subclusters_read_through_to_the_backing_file),
        cmocka_unit_test(
            test_qcow2_extl2__unallocated_subclusters_of_the_bottom_image_report_their_host_offset),
        cmocka_unit_test(test_qcow2_extl2__compressed_cluster_is_copied_whole_on_a_partial_write),
        cmocka_unit_test(test_qcow2_extl2__zero_writes_set_zero_bits_instead_of_writing_zeroes),
        cmocka_unit_test(
            test_qcow2_extl2__partial_zero_write_over_zeroes_zeroes_the_whole_subcluster),
        cmocka_unit_test(test_qcow2_extl2__discard_clears_whole_clusters_and_ignores_partial_ones),
        cmocka_unit_test(test_qcow2_extl2__write_over_a_corrupt_bitmap_is_refused),
        cmocka_unit_test(test_qcow2_extl2__random_io_matches_the_model_without_a_backing_file),
        cmocka_unit_test(test_qcow2_extl2__random_io_matches_the_model_over_a_backing_file),
        cmocka_unit_test(
            test_qcow2_extl2__subcluster_writes_crashed_at_every_flush_leave_old_or_new_data),
        cmocka_unit_test(test_qcow2_extl2__subcluster_writes_fail_cleanly_at_every_event),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
