/*
 * test-qcow2-bitmap-crash.c - crash at every flush of writes, snapshot
 * apply, commit, and bitmap changes (add, merge, remove, clear between
 * writes) on an image holding persistent dirty bitmaps
 * (the crash loop of tests/helpers/testutil.h).
 *
 * The survivor must have no corruption, and every bitmap must still load
 * (qemu's rules); a bitmap that is not flagged in use (consistent) must
 * have a dirty bit for every granule whose guest data differs from what
 * it was before the run: a crash may leave a bitmap in use (qemu then
 * treats it as inconsistent), never clean and missing a write.
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
#include "imgchain/bitmap.h"
#include "imgchain/chain-edit.h"
#include "imgchain/snapshot.h"
#include "qcow2/qcow2.h"
#include "qcow2/qcow2-bitmap.h"
#include "util/error.h"

#define DISK (8u << 20)

enum op { OP_WRITES, OP_APPLY, OP_COMMIT, OP_CHANGE };

struct scenario {
    enum op op;
    const char *opts;
    uint8_t *before;    /* guest view before the run */
    unsigned clean_points; /* crash points that left a consistent bitmap */
};

static int view(const char *path, uint8_t *out, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret == 0)
        ret = ic_image_pread(img, out, DISK, 0, errp);
    ic_image_close(img);
    return ret;
}

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    const char *p = ctx->path;
    if (tu_sh("qemu-img create -q -f qcow2 -o %s '%s' %u && "
              "qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x12 5M 300k' '%s' >/dev/null && "
              "qemu-img snapshot -c s0 '%s' && "
              "qemu-io -c 'write -P 0x13 512k 1M' '%s' >/dev/null && "
              "qemu-img bitmap --add -g 512 '%s' fine && "
              "qemu-img bitmap --add '%s' def && "
              "qemu-img bitmap --add -g 2M '%s' coarse && "
              "qemu-img bitmap --add '%s' off && qemu-img bitmap --disable '%s' off",
              sc->opts, p, DISK, p, p, p, p, p, p, p, p) != 0)
        return ic_error_set(errp, IC_ERR_IO, EIO, "qemu-img could not make the image");
    if (sc->op == OP_COMMIT) {
        char *top = tu_path(ctx->dir, "top.qcow2");
        int r = tu_sh("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s' && "
                      "qemu-io -c 'write -P 0x21 100k 700k' -c 'write -z 3M 64k' "
                      "-c 'write -P 0x22 7M 1M' '%s' >/dev/null", p, top, top);
        free(top);
        if (r)
            return ic_error_set(errp, IC_ERR_IO, EIO, "qemu-img could not make the overlay");
    }
    return view(p, sc->before, errp);
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    if (sc->op == OP_COMMIT) {
        char *top = tu_path(ctx->dir, "top.qcow2");
        ic_commit_options co = IC_COMMIT_OPTIONS_INIT;
        co.flags = IC_OPEN_NO_LOCK;
        co.open_file = ctx->open_file;
        co.payload = ctx->open_payload;
        co.no_dependents_scan = true;
        int ret = ic_chain_commit(top, &co, errp);
        free(top);
        return ret;
    }
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    o.open_file = ctx->open_file;
    o.payload = ctx->open_payload;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    if (sc->op == OP_APPLY) {
        ret = ic_snapshot_apply(img, "s0", errp);
    } else if (sc->op == OP_CHANGE) {
        /* bitmap changes between writes: add, merge, remove, clear */
        uint8_t buf[70000];
        memset(buf, 0x6b, sizeof(buf));
        ret = ic_bitmap_change(img, IC_BITMAP_ADD, "new", 4096, NULL, NULL, errp);
        if (ret == 0)
            ret = ic_image_pwrite(img, buf, sizeof(buf), 3000000, errp);
        if (ret == 0)
            ret = ic_bitmap_change(img, IC_BITMAP_MERGE, "def", 0, NULL, "fine", errp);
        if (ret == 0)
            ret = ic_bitmap_change(img, IC_BITMAP_REMOVE, "coarse", 0, NULL, NULL, errp);
        if (ret == 0)
            ret = ic_image_pwrite(img, buf, sizeof(buf), 6000000, errp);
        if (ret == 0)
            ret = ic_bitmap_change(img, IC_BITMAP_CLEAR, "off", 0, NULL, NULL, errp);
    } else {
        uint8_t *buf = malloc(300000);
        assert_non_null(buf);
        memset(buf, 0x5a, 300000);
        ret = ic_image_pwrite(img, buf, 300000, 2000000, errp);
        if (ret == 0)
            ret = ic_image_pwrite_zeroes(img, 5u << 20, 65536, 0, errp);
        if (ret == 0)
            ret = ic_image_pwrite(img, buf, 1, DISK - 1, errp);
        if (ret == 0)
            ret = ic_image_discard(img, 0, 1u << 20, errp);
        free(buf);
    }
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed: %s", strerror(-cret));
    return ret;
}

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    uint8_t *now = malloc(DISK);
    assert_non_null(now);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK | IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    ic_check_result r;
    struct qcow2_bitmap_dir d = { 0 };
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret == 0)
        ret = ic_image_check(img, 0, NULL, NULL, &r, errp);
    if (ret == 0 && (r.corruptions || r.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%" PRId64 " corruptions",
                           r.corruptions);
    if (ret == 0)
        ret = qcow2_bitmaps_load(img, &d, errp);
    ic_image_close(img);
    img = NULL;
    if (ret == 0)
        ret = view(ctx->path, now, errp);
    if (ret == 0) {
        o.flags = IC_OPEN_NO_LOCK | IC_OPEN_NO_BACKING;
        ret = ic_image_open(&img, ctx->path, &o, errp);
    }
    for (uint32_t i = 0; ret == 0 && i < d.nb; i++) {
        const struct qcow2_bitmap *bm = &d.bm[i];
        if (bm->flags & QCOW2_BME_FLAG_IN_USE)
            continue;
        if (!(bm->flags & QCOW2_BME_FLAG_AUTO))
            continue; /* disabled: records nothing by definition */
        sc->clean_points++;
        struct qcow2_bitmap_bits b;
        ret = qcow2_bitmap_data_load(img, bm, &b, errp);
        uint64_t g = 1ull << bm->granularity_bits;
        for (uint64_t n = 0; ret == 0 && n * g < DISK; n++) {
            uint64_t len = IC_MIN(g, DISK - n * g);
            if (memcmp(now + n * g, sc->before + n * g, len) && !qcow2_bitmap_bits_get(&b, n))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "consistent bitmap '%s' misses "
                                   "changed granule %" PRIu64 " (crash at flush %u)", bm->name,
                                   n, ctx->n);
        }
        qcow2_bitmap_bits_free(&b);
    }
    /* a change adds one and removes one: 4 or 5 in between */
    if (ret == 0 && (d.nb < 4 || d.nb > (sc->op == OP_CHANGE ? 5u : 4u)))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%" PRIu32 " bitmaps left", d.nb);
    ic_image_close(img);
    qcow2_bitmap_dir_free(&d);
    free(now);
    return ret;
}

static void crash(enum op op, const char *opts, const char *name)
{
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        skip();
    struct scenario sc = { .op = op, .opts = opts };
    sc.before = malloc(DISK);
    assert_non_null(sc.before);
    struct tu_crash_loop cfg = {
        .name = name,
        .target = "bm.qcow2",
        .setup = setup,
        .run = run,
        .verify = verify,
        .payload = &sc,
        .seeds = 2,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 3);
    /* the final run and early crashes leave consistent bitmaps: checked */
    assert_true(sc.clean_points > 0);
    free(sc.before);
}

static void test_qcow2_bitmap_crash__writes_never_leave_a_clean_bitmap_missing_one(void **state)
{
    (void)state;
    crash(OP_WRITES, "cluster_size=65536", "bitmap writes");
}

static void test_qcow2_bitmap_crash__writes_with_512_byte_clusters(void **state)
{
    (void)state;
    crash(OP_WRITES, "cluster_size=512", "bitmap writes, 512 B clusters");
}

static void test_qcow2_bitmap_crash__writes_with_extended_l2(void **state)
{
    (void)state;
    crash(OP_WRITES, "cluster_size=16384,extended_l2=on", "bitmap writes, extended L2");
}

static void test_qcow2_bitmap_crash__snapshot_apply_never_leaves_a_clean_bitmap_missing_one(void **state)
{
    (void)state;
    crash(OP_APPLY, "cluster_size=65536", "bitmap snapshot apply");
}

static void test_qcow2_bitmap_crash__commit_never_leaves_a_clean_bitmap_missing_one(void **state)
{
    (void)state;
    crash(OP_COMMIT, "cluster_size=65536", "bitmap commit");
}

static void test_qcow2_bitmap_crash__bitmap_changes_never_leave_a_clean_bitmap_missing_one(void **state)
{
    (void)state;
    crash(OP_CHANGE, "cluster_size=65536", "bitmap add, merge, remove, clear");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_bitmap_crash__writes_never_leave_a_clean_bitmap_missing_one),
        cmocka_unit_test(test_qcow2_bitmap_crash__writes_with_512_byte_clusters),
        cmocka_unit_test(test_qcow2_bitmap_crash__writes_with_extended_l2),
        cmocka_unit_test(test_qcow2_bitmap_crash__snapshot_apply_never_leaves_a_clean_bitmap_missing_one),
        cmocka_unit_test(test_qcow2_bitmap_crash__commit_never_leaves_a_clean_bitmap_missing_one),
        cmocka_unit_test(test_qcow2_bitmap_crash__bitmap_changes_never_leave_a_clean_bitmap_missing_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
