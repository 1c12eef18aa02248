/*
 * test-qcow2-snapshot-crash.c - crash at every flush of snapshot create,
 * apply and delete, and of check -r all (the crash loop of docs/architecture.md).
 *
 * For each N the surviving image must check without corruption (imgchain's
 * check, and qemu-img check when installed; leaks allowed), and the
 * snapshot must be wholly there or not at all: present means its data
 * reads back exactly as when it was taken; for apply, the active data is
 * either the old or the snapshot's, never a mix.
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
#include "imgchain/chain.h"
#include "imgchain/snapshot.h"
#include "util/error.h"

#define DISK (2u << 20)
#define CL 65536u

enum op { OP_CREATE, OP_APPLY, OP_DELETE, OP_REPAIR };

struct scenario {
    enum op op;
    const char *opts;
    uint8_t *v1;   /* guest data when s1 was taken */
    uint8_t *v2;   /* guest data afterwards (the active state before the op) */
    int64_t damage; /* corruptions of the damaged image before the repair */
};

static int count_corruptions(const char *path, int64_t *out, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    ic_check_result r;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret == 0)
        ret = ic_image_check(img, 0, NULL, NULL, &r, errp);
    ic_image_close(img);
    *out = ret == 0 ? r.corruptions + r.check_errors : 0;
    return ret;
}

static int write_pattern(ic_image *img, unsigned seed, ic_error **errp)
{
    uint8_t *buf = malloc(3 * CL);
    assert_non_null(buf);
    tu_fill_pattern(buf, 3 * CL, seed);
    int ret = ic_image_pwrite(img, buf, 3 * CL, seed % 4 * CL, errp);
    if (ret == 0)
        ret = ic_image_pwrite(img, buf, 4096, DISK - 8192, errp);
    free(buf);
    return ret;
}

static int read_all(ic_image *img, uint8_t *out, ic_error **errp)
{
    return ic_image_pread(img, out, DISK, 0, errp);
}

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = sc->opts;
    co.size = DISK;
    co.size_set = true;
    int ret = ic_image_create(ctx->path, &co, errp);
    ic_image *img = NULL;
    if (ret == 0)
        ret = tu_loop_open(ctx, &img, IC_OPEN_RDWR, false, errp);
    if (ret < 0)
        return ret;
    ret = write_pattern(img, 1, errp);
    if (ret == 0)
        ret = read_all(img, sc->v1, errp);
    if (ret == 0 && sc->op != OP_CREATE)
        ret = ic_snapshot_create(img, "s1", errp);
    if (ret == 0)
        ret = write_pattern(img, 2, errp);
    if (ret == 0)
        ret = read_all(img, sc->v2, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    if (ret == 0 && sc->op == OP_REPAIR) {
        /* a leak and a refcount the rebuild must restore */
        if (tu_sh("python3 tests/helpers/qcow2-poke.py '%s' leak && "
                  "python3 tests/helpers/qcow2-poke.py '%s' refcount-zero", ctx->path,
                  ctx->path) != 0)
            ret = ic_error_set(errp, IC_ERR_OTHER, EIO, "poke failed");
        if (ret == 0)
            ret = count_corruptions(ctx->path, &sc->damage, errp);
        if (ret == 0 && sc->damage == 0)
            ret = ic_error_set(errp, IC_ERR_OTHER, EIO, "the damage was not detected");
    }
    return ret;
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_image *img = NULL;
    int ret = tu_loop_open(ctx, &img, IC_OPEN_RDWR, true, errp);
    if (ret < 0)
        return ret;
    switch (sc->op) {
    case OP_CREATE:
        ret = ic_snapshot_create(img, "s1", errp);
        break;
    case OP_APPLY:
        ret = ic_snapshot_apply(img, "s1", errp);
        break;
    case OP_DELETE:
        ret = ic_snapshot_delete(img, "s1", errp);
        break;
    case OP_REPAIR: {
        ic_check_result r;
        ret = ic_image_check(img, IC_FIX_LEAKS | IC_FIX_ERRORS, NULL, NULL, &r, errp);
        if (ret == 0 && (r.corruptions || r.check_errors))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "repair left corruptions");
        break;
    }
    }
    if (ret == 0)
        ret = ic_image_flush(img, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    ic_check_result res;
    ret = ic_image_check(img, 0, NULL, NULL, &res, errp);
    if (ret == 0 && (res.corruptions || res.check_errors) &&
        !(sc->op == OP_REPAIR && ctx->crashed))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "check found %" PRId64 " corruptions",
                           res.corruptions);
    if (ret == 0 && sc->op == OP_REPAIR && res.corruptions + res.check_errors > sc->damage)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "a crashed repair made things worse: %"
                           PRId64 " corruptions", res.corruptions);
    ic_snapshot_info *list = NULL;
    int n = ret == 0 ? ic_snapshot_list(img, &list, errp) : 0;
    if (n < 0)
        ret = n;
    uint8_t *got = malloc(DISK);
    assert_non_null(got);
    if (ret == 0 && sc->op != OP_REPAIR) {
        ret = read_all(img, got, errp);
        bool has = n == 1;
        if (ret == 0 && sc->op == OP_APPLY && memcmp(got, sc->v1, DISK) &&
            memcmp(got, sc->v2, DISK))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "active data is neither the old "
                               "nor the snapshot's");
        if (ret == 0 && sc->op != OP_APPLY && memcmp(got, sc->v2, DISK))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "active data changed");
        if (ret == 0 && !ctx->crashed && has != (sc->op != OP_DELETE))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "completed run: wrong snapshot count");
        if (ret == 0 && has) {
            ic_image_close(img);
            img = NULL;
            o.flags = IC_OPEN_NO_LOCK;
            ret = ic_image_open(&img, ctx->path, &o, errp);
            if (ret == 0)
                ret = ic_image_snapshot_load_tmp(img, NULL, "s1", false, errp);
            if (ret == 0)
                ret = read_all(img, got, errp);
            if (ret == 0 && memcmp(got, sc->op == OP_CREATE ? sc->v2 : sc->v1, DISK))
                ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "snapshot s1 reads back wrong");
        }
    }
    free(got);
    ic_snapshot_list_free(list, n > 0 ? (size_t)n : 0);
    ic_image_close(img);
    if (ret == 0 && tu_have_prog("qemu-img")) {
        int rc = tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", ctx->path);
        if (rc != 0 && rc != 3 && !(sc->op == OP_REPAIR && ctx->crashed && rc == 2))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "qemu-img check exit %d", rc);
    }
    return ret;
}

static void run_scenario(enum op op, const char *opts)
{
    struct scenario sc = { op, opts, malloc(DISK), malloc(DISK), 0 };
    assert_true(sc.v1 && sc.v2);
    struct tu_crash_loop cfg = {
        .name = "qcow2 snapshot", .target = "a.qcow2", .setup = setup, .run = run,
        .verify = verify, .payload = &sc, .seed = 0x5eed + op, .seeds = 2,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 2);
    free(sc.v1);
    free(sc.v2);
}

static void test_qcow2_snapshot_crash__create_is_all_or_nothing(void **state)
{
    (void)state;
    run_scenario(OP_CREATE, NULL);
    run_scenario(OP_CREATE, "compat=0.10,cluster_size=4096");
}

static void test_qcow2_snapshot_crash__apply_shows_old_or_snapshot_data(void **state)
{
    (void)state;
    run_scenario(OP_APPLY, NULL);
}

static void test_qcow2_snapshot_crash__delete_is_all_or_nothing(void **state)
{
    (void)state;
    run_scenario(OP_DELETE, "refcount_bits=8");
}

static void test_qcow2_snapshot_crash__repair_never_adds_damage(void **state)
{
    (void)state;
    run_scenario(OP_REPAIR, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_snapshot_crash__create_is_all_or_nothing),
        cmocka_unit_test(test_qcow2_snapshot_crash__apply_shows_old_or_snapshot_data),
        cmocka_unit_test(test_qcow2_snapshot_crash__delete_is_all_or_nothing),
        cmocka_unit_test(test_qcow2_snapshot_crash__repair_never_adds_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
