/*
 * test-qcow2-resize-crash.c - qcow2 resize crashed at every flush.
 *
 * Each scenario creates a qcow2 image, fills it with a pattern, and resizes
 * it through the crash simulator (tu_crash_loop_run): for N = 1, 2, ... the
 * run is crashed at its Nth flush and the unflushed writes are applied,
 * dropped or torn.  The surviving image must:
 *   - check with 0 corruptions (leaks allowed), by imgchain and qemu-img;
 *   - have the old or the new size (the new one when the run completed);
 *   - read the pattern up to the smaller of the two sizes, and zeroes over
 *     the area a grow added.
 * Growing with 512-byte clusters and 64-bit refcounts makes the L1 table
 * grow (up to a table longer than one refblock's range, whose refblocks
 * then live past it) and, with metadata preallocation, the refcount table
 * too.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "util/error.h"

struct scenario {
    const char *opts;
    uint64_t old_size, new_size;
    ic_prealloc prealloc;
    uint8_t *data;  /* the guest data before the resize (old_size bytes) */
};

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = sc->opts;
    co.size = sc->old_size;
    co.size_set = true;
    int ret = ic_image_create(ctx->path, &co, errp);
    ic_image *img = NULL;
    if (ret == 0)
        ret = tu_loop_open(ctx, &img, IC_OPEN_RDWR, false, errp);
    if (ret < 0)
        return ret;
    /* data everywhere except one hole, so both allocated and unallocated
     * clusters cross the resize */
    uint64_t hole = sc->old_size / 2;
    ret = ic_image_pwrite(img, sc->data, (size_t)hole, 0, errp);
    if (ret == 0)
        ret = ic_image_pwrite(img, sc->data + hole + 65536, (size_t)(sc->old_size - hole - 65536),
                              hole + 65536, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_image *img = NULL;
    int ret = tu_loop_open(ctx, &img, IC_OPEN_RDWR, true, errp);
    if (ret < 0)
        return ret;
    ret = ic_image_resize(img, sc->new_size, sc->prealloc, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_image *img = NULL;
    int ret = tu_loop_open(ctx, &img, IC_OPEN_CHECK, false, errp);
    if (ret < 0)
        return ret;
    ic_check_result res;
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    if (ret == 0 && (res.corruptions || res.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "check found %" PRId64 " corruptions",
                           res.corruptions + res.check_errors);
    uint64_t size = ic_image_size(img);
    if (ret == 0 && size != sc->new_size && (size != sc->old_size || !ctx->crashed))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "size %" PRIu64 " is neither the old nor "
                           "the new one", size);
    uint64_t keep = sc->old_size < size ? sc->old_size : size;
    uint8_t *got = ret == 0 ? malloc((size_t)size) : NULL;
    if (ret == 0 && !got)
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    if (ret == 0)
        ret = ic_image_pread(img, got, (size_t)size, 0, errp);
    uint64_t hole = sc->old_size / 2;
    for (uint64_t i = 0; ret == 0 && i < keep; i++) {
        uint8_t want = i >= hole && i < hole + 65536 ? 0 : sc->data[i];
        if (got[i] != want)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "byte %" PRIu64 " changed", i);
    }
    for (uint64_t i = keep; ret == 0 && i < size; i++)
        if (got[i])
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "byte %" PRIu64 " of the new area "
                               "is not zero", i);
    free(got);
    ic_image_close(img);
    if (ret == 0 && tu_have_prog("qemu-img")) {
        int rc = tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", ctx->path);
        if (rc != 0 && rc != 3)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "qemu-img check exit %d", rc);
    }
    return ret;
}

static void run_scenario(const char *name, const char *opts, uint64_t old_size,
                         uint64_t new_size, ic_prealloc prealloc)
{
    struct scenario sc = { opts, old_size, new_size, prealloc, malloc((size_t)old_size) };
    assert_non_null(sc.data);
    tu_fill_pattern(sc.data, (size_t)old_size, 77);
    struct tu_crash_loop cfg = {
        .name = name, .target = "r.qcow2", .setup = setup, .run = run, .verify = verify,
        .payload = &sc, .seed = 0x7e51 + new_size, .seeds = 2,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 2);
    free(sc.data);
}

static void test_qcow2_resize_crash__a_grow_growing_the_l1_table_keeps_the_old_or_new_size(
    void **state)
{
    (void)state;
    run_scenario("grow, L1 grows", "cluster_size=512,refcount_bits=64", 256 << 10, 8 << 20,
                 IC_PREALLOC_OFF);
    /* a 32 KiB L1 table: 64 clusters, longer than one refblock's range */
    run_scenario("grow, L1 longer than a refblock range", "cluster_size=512,refcount_bits=64",
                 256 << 10, 128 << 20, IC_PREALLOC_OFF);
}

static void test_qcow2_resize_crash__a_preallocating_grow_growing_the_reftable_leaks_at_worst(
    void **state)
{
    (void)state;
    run_scenario("grow, metadata prealloc, reftable grows", "cluster_size=512,refcount_bits=64",
                 256 << 10, 2304 << 10, IC_PREALLOC_METADATA);
    run_scenario("grow v2, full prealloc", "compat=0.10,cluster_size=4096", 1 << 20, 3 << 20,
                 IC_PREALLOC_FULL);
}

static void test_qcow2_resize_crash__a_shrink_keeps_the_data_below_the_new_end(void **state)
{
    (void)state;
    run_scenario("shrink", "cluster_size=4096", 2 << 20, (1 << 20) + 1536, IC_PREALLOC_OFF);
    run_scenario("shrink, extended L2", "extended_l2=on,cluster_size=16384", 2 << 20, 700 << 10,
                 IC_PREALLOC_OFF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_resize_crash__a_grow_growing_the_l1_table_keeps_the_old_or_new_size),
        cmocka_unit_test(test_qcow2_resize_crash__a_preallocating_grow_growing_the_reftable_leaks_at_worst),
        cmocka_unit_test(test_qcow2_resize_crash__a_shrink_keeps_the_data_below_the_new_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
