/*
 * test-qcow2-amend-crash.c - qcow2 amend crashed at every flush.
 *
 * Each scenario creates a qcow2 image with data, zero clusters, a hole and
 * optionally an internal snapshot, and amends it through the crash
 * simulator (tu_crash_loop_run): for N = 1, 2, ... the run is crashed at
 * its Nth flush and the unflushed writes are applied, dropped or torn.
 * The surviving image must:
 *   - check with 0 corruptions (leaks allowed), by imgchain and qemu-img;
 *   - have the old or the new refcount width and version (the new ones
 *     when the run completed);
 *   - read the same guest data as before.
 * A refcount_bits change writes a whole new refcount structure and
 * switches to it with one header write; a downgrade expands zero clusters
 * before its header switch.
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

#include <imgchain/snapshot.h>

#include "testutil.h"
#include "util/error.h"

#define SIZE (2u << 20)

struct scenario {
    const char *create_opts;
    const char *amend_opts;
    bool snapshot;
    /* "compat bits" as qemu-img info shows them: the states a crash may
     * leave ('|'-separated: the old one and those between steps), and the
     * final one */
    const char *old_state, *new_state;
    uint8_t *data;
};

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct scenario *sc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = sc->create_opts;
    co.size = SIZE;
    co.size_set = true;
    int ret = ic_image_create(ctx->path, &co, errp);
    ic_image *img = NULL;
    if (ret == 0)
        ret = tu_loop_open(ctx, &img, IC_OPEN_RDWR, false, errp);
    if (ret < 0)
        return ret;
    /* data, then a zero cluster, a hole, and data again */
    ret = ic_image_pwrite(img, sc->data, SIZE / 2, 0, errp);
    if (ret == 0)
        ret = ic_image_pwrite_zeroes(img, SIZE / 2, 65536, 0, errp);
    if (ret == 0)
        ret = ic_image_pwrite(img, sc->data + SIZE / 2 + 131072, SIZE / 2 - 131072,
                              SIZE / 2 + 131072, errp);
    if (ret == 0 && sc->snapshot) {
        ret = ic_snapshot_create(img, "s1", errp);
        /* the active layer diverges from the snapshot in its first cluster */
        if (ret == 0)
            ret = ic_image_pwrite(img, sc->data, 65536, 0, errp);
    }
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
    ret = ic_image_amend(img, sc->amend_opts, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

/* "compat refcount-bits" of the image, from qemu-img's JSON */
static int image_state(const char *path, char *out, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "qemu-img info -U --output=json '%s' | python3 -c 'import json,sys; "
             "d=json.load(sys.stdin)[\"format-specific\"][\"data\"]; "
             "print(d[\"compat\"], d[\"refcount-bits\"])'", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char *r = fgets(out, (int)len, p);
    int rc = pclose(p);
    if (!r || rc != 0)
        return -1;
    out[strcspn(out, "\n")] = 0;
    return 0;
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
    uint8_t *got = ret == 0 ? malloc(SIZE) : NULL;
    if (ret == 0 && !got)
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    if (ret == 0)
        ret = ic_image_pread(img, got, SIZE, 0, errp);
    for (uint64_t i = 0; ret == 0 && i < SIZE; i++) {
        uint8_t want = i >= SIZE / 2 && i < SIZE / 2 + 131072 ? 0 : sc->data[i];
        if (got[i] != want)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "byte %" PRIu64 " changed", i);
    }
    free(got);
    ic_image_close(img);
    if (ret == 0 && tu_have_prog("qemu-img")) {
        int rc = tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", ctx->path);
        if (rc != 0 && rc != 3)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "qemu-img check exit %d", rc);
        char st[64];
        if (ret == 0 && image_state(ctx->path, st, sizeof(st)) < 0)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "qemu-img info failed");
        char key[80], states[160];
        snprintf(key, sizeof(key), "|%s|", st);
        snprintf(states, sizeof(states), "|%s|", sc->old_state);
        if (ret == 0 && strcmp(st, sc->new_state) && (!strstr(states, key) || !ctx->crashed))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "state '%s' is neither '%s' nor '%s'",
                               st, sc->old_state, sc->new_state);
    }
    return ret;
}

static void run_scenario(const char *name, const char *create_opts, const char *amend_opts,
                         bool snapshot, const char *old_state, const char *new_state)
{
    struct scenario sc = { create_opts, amend_opts, snapshot, old_state, new_state,
                           malloc(SIZE) };
    assert_non_null(sc.data);
    tu_fill_pattern(sc.data, SIZE, 41);
    struct tu_crash_loop cfg = {
        .name = name, .target = "a.qcow2", .setup = setup, .run = run, .verify = verify,
        .payload = &sc, .seed = 0xa3e4d, .seeds = 2,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 2);
    free(sc.data);
}

static void test_qcow2_amend_crash__a_refcount_width_change_keeps_the_old_or_new_structure(
    void **state)
{
    (void)state;
    run_scenario("16 -> 64 bits", "cluster_size=4096", "refcount_bits=64", false, "1.1 16",
                 "1.1 64");
    run_scenario("16 -> 1 bit", "cluster_size=4096", "refcount_bits=1", false, "1.1 16",
                 "1.1 1");
    run_scenario("16 -> 2 bits with a snapshot", "cluster_size=4096", "refcount_bits=2", true,
                 "1.1 16", "1.1 2");
    run_scenario("64 -> 8 bits, 512-byte clusters", "cluster_size=512,refcount_bits=64",
                 "refcount_bits=8", false, "1.1 64", "1.1 8");
}

static void test_qcow2_amend_crash__a_version_change_keeps_the_data(void **state)
{
    (void)state;
    run_scenario("downgrade, zero clusters expanded", "cluster_size=4096", "compat=0.10",
                 false, "1.1 16", "0.10 16");
    run_scenario("upgrade with a snapshot and a new width", "compat=0.10,cluster_size=4096",
                 "compat=1.1,refcount_bits=4", true, "0.10 16|1.1 16", "1.1 4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_amend_crash__a_refcount_width_change_keeps_the_old_or_new_structure),
        cmocka_unit_test(test_qcow2_amend_crash__a_version_change_keeps_the_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
