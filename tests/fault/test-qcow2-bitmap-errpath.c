/*
 * test-qcow2-bitmap-errpath.c - EIO and ENOSPC at every named metadata
 * event (once and persistent) while writes go into an image holding
 * persistent dirty bitmaps (the fault loop, tests/helpers/testutil.h): each run succeeds
 * or fails with a message; afterwards the image checks with 0 corruptions
 * (leaks allowed, imgchain and qemu-img), every bitmap still loads by
 * qemu's rules, and a bitmap left consistent (not in use) has a dirty bit
 * for every granule whose guest data changed.
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
#include "fmt-scenario.h"
#include "qcow2/qcow2.h"
#include "qcow2/qcow2-bitmap.h"
#include "util/error.h"

#define DISK (4u << 20)

struct scenario {
    uint8_t *before;
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
    if (tu_sh("qemu-img create -q -f qcow2 '%s' %u && "
              "qemu-io -c 'write -P 0x11 0 1M' '%s' >/dev/null && "
              "qemu-img bitmap --add -g 512 '%s' fine && qemu-img bitmap --add '%s' def && "
              "qemu-io -c 'write -P 0x12 2M 100k' '%s' >/dev/null && "
              "qemu-img bitmap --add '%s' off && qemu-img bitmap --disable '%s' off",
              p, DISK, p, p, p, p, p, p) != 0)
        return ic_error_set(errp, IC_ERR_IO, EIO, "qemu-img could not make the image");
    return view(p, sc->before, errp);
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_image *img = NULL;
    int ret = fmt_open_rw(ctx->path, ctx->open_file, ctx->open_payload, &img, errp);
    if (ret < 0)
        return ret;
    uint8_t buf[70000];
    memset(buf, 0x5a, sizeof(buf));
    ret = ic_image_pwrite(img, buf, sizeof(buf), 300000, errp);
    if (ret == 0)
        ret = ic_image_pwrite_zeroes(img, 2u << 20, 65536, 0, errp);
    if (ret == 0)
        ret = ic_image_discard(img, 0, 65536, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed: %s", strerror(-cret));
    return ret;
}

static int check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    int ret = fmt_check_path(ctx->path, false, res, errp);
    if (ret == 0 && fmt_have_qemu_img())
        ret = fmt_qemu_img_check(ctx->path, NULL, errp);
    if (ret < 0)
        return ret;
    uint8_t *now = malloc(DISK);
    assert_non_null(now);
    ret = view(ctx->path, now, errp);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    struct qcow2_bitmap_dir d = { 0 };
    if (ret == 0)
        ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret == 0)
        ret = qcow2_bitmaps_load(img, &d, errp);
    if (ret == 0 && d.nb != 3)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%" PRIu32 " bitmaps left, not 3", d.nb);
    for (uint32_t i = 0; ret == 0 && i < d.nb; i++) {
        const struct qcow2_bitmap *bm = &d.bm[i];
        if ((bm->flags & QCOW2_BME_FLAG_IN_USE) || !(bm->flags & QCOW2_BME_FLAG_AUTO))
            continue;
        struct qcow2_bitmap_bits b;
        ret = qcow2_bitmap_data_load(img, bm, &b, errp);
        uint64_t g = 1ull << bm->granularity_bits;
        for (uint64_t n = 0; ret == 0 && n * g < DISK; n++) {
            uint64_t len = IC_MIN(g, DISK - n * g);
            if (memcmp(now + n * g, sc->before + n * g, len) && !qcow2_bitmap_bits_get(&b, n))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "consistent bitmap '%s' misses "
                                   "changed granule %" PRIu64, bm->name, n);
        }
        qcow2_bitmap_bits_free(&b);
    }
    qcow2_bitmap_dir_free(&d);
    ic_image_close(img);
    free(now);
    return ret;
}

static void test_qcow2_bitmap_errpath__writes_fail_cleanly_and_keep_the_bitmaps_true(void **state)
{
    (void)state;
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        skip();
    struct scenario sc = { malloc(DISK) };
    assert_non_null(sc.before);
    struct tu_fault_loop cfg = {
        .name = "bitmap writes", .target = "a.qcow2", .setup = setup, .run = run,
        .check = check, .payload = &sc, .max_nth = 2, .any_write_max = 6, .any_flush_max = 6,
        .event_flush = true,
    };
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.runs_injected > 0);
    /* the bitmap events themselves were reached */
    assert_true(sum.events_fired >= 3);
    free(sc.before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_bitmap_errpath__writes_fail_cleanly_and_keep_the_bitmaps_true),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
