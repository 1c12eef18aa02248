/*
 * test-qcow2-check.c - the qcow2 check op (src/qcow2/qcow2-check.c): a clean
 * image, a leak found and repaired, a dry run that writes nothing, a
 * refcount that needs a rebuild (refused by -r leaks, repaired by -r all),
 * a reference past the end of the file repaired by growing the file, and
 * crash loops (docs/architecture.md) over the repairs added for issue 4:
 * growing the file, dropping overhanging snapshots and cutting extra data.
 * A crashed repair may leave the damage as it was, never more of it, and
 * never changes what the guest reads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
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

struct fx {
    char *dir, *path;
    unsigned lines;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    cf_setup(NULL); /* the one test-folder fixture */
    f->dir = strdup(cf_dir);
    assert_non_null(f->dir);
    f->path = tu_path(f->dir, "a.qcow2");
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = 4u << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(f->path, &co, &err), err);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 5);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), err);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 3u << 20, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    cf_teardown(NULL);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void count_line(void *payload, const char *line)
{
    struct fx *f = payload;
    assert_true(strlen(line) > 0);
    f->lines++;
}

static int check(struct fx *f, unsigned fix, ic_check_result *r)
{
    ic_error *err = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK |
              ((fix && !(fix & IC_CHECK_DRY_RUN)) ? IC_OPEN_RDWR : 0);
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    int ret = ic_image_check(img, fix, count_line, f, r, &err);
    TU_ASSERT_OK(ret, err);
    assert_int_equal(ic_image_close(img), 0);
    return ret;
}

static void poke(struct fx *f, const char *defect)
{
    assert_int_equal(tu_sh("python3 tests/helpers/qcow2-poke.py '%s' %s", f->path, defect), 0);
}

static void test_qcow2_check__clean_image_reports_nothing(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    check(f, 0, &r);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    assert_int_equal(r.allocated_clusters, 2);
    assert_int_equal(r.total_clusters, 64);
    assert_true(r.image_end_offset > 0);
    assert_int_equal(f->lines, 0);
}

static void test_qcow2_check__leak_is_found_and_repaired(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "leak");
    check(f, 0, &r);
    assert_int_equal(r.leaks, 1);
    assert_int_equal(r.corruptions, 0);
    assert_true(f->lines >= 1);
    check(f, IC_FIX_LEAKS, &r);
    assert_int_equal(r.leaks_fixed, 1);
    check(f, 0, &r);
    assert_int_equal(r.leaks + r.corruptions, 0);
}

static void test_qcow2_check__dry_run_writes_nothing(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "refcount-zero");
    uint8_t *before = NULL, *after = NULL;
    size_t lb, la;
    assert_int_equal(tu_read_file(f->path, &before, &lb), 0);
    check(f, IC_FIX_LEAKS | IC_FIX_ERRORS | IC_CHECK_DRY_RUN, &r);
    assert_true(r.corruptions > 0);
    assert_int_equal(r.corruptions_fixed, 0);
    assert_int_equal(tu_read_file(f->path, &after, &la), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(before, after, la);
    free(before);
    free(after);
}

static void test_qcow2_check__zero_refcount_needs_rebuild_with_r_all(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    poke(f, "refcount-zero");
    check(f, IC_FIX_LEAKS, &r);
    assert_int_equal(r.check_errors, 1); /* "need to rebuild" as qemu-img -r leaks */
    check(f, IC_FIX_LEAKS | IC_FIX_ERRORS, &r);
    assert_true(r.corruptions_fixed > 0);
    assert_int_equal(r.corruptions, 0);
    check(f, 0, &r);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
}

static void test_qcow2_check__reference_past_eof_is_repaired_by_growing_the_file(void **state)
{
    struct fx *f = *state;
    ic_check_result r;
    ic_error *err = NULL;
    poke(f, "past-eof-near");
    /* what a reader sees before: zeroes where the cluster lies past the end */
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    uint8_t *before = malloc(4u << 20), *after = malloc(4u << 20);
    assert_true(before && after);
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    TU_ASSERT_OK(ic_image_pread(img, before, 4u << 20, 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    check(f, 0, &r);
    assert_int_equal(r.corruptions, 2); /* the reference, and COPIED with refcount 0 */
    check(f, IC_FIX_LEAKS, &r);
    assert_int_equal(r.corruptions, 2); /* -r leaks does not grow the file */
    check(f, IC_FIX_LEAKS | IC_FIX_ERRORS, &r);
    assert_int_equal(r.corruptions, 0);
    assert_true(r.corruptions_fixed >= 1);
    check(f, 0, &r);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    TU_ASSERT_OK(ic_image_pread(img, after, 4u << 20, 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    assert_memory_equal(before, after, 4u << 20);
    free(before);
    free(after);
}

/* ---- crash loops over the repairs ---------------------------------------- */

struct crash_case {
    const char *defect;       /* qcow2-poke.py defect */
    const char *opts;         /* create options */
    bool snapshot;            /* the base image has a snapshot */
    int64_t damage;           /* corruptions + check errors before the repair */
    uint8_t *guest;           /* guest data before (NULL: not readable before) */
};

#define CRASH_DISK (2u << 20)

/* Counts what -r all would repair (a dry run reads every damaged table). */
static int crash_count(const char *path, int64_t *out, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    ic_image *img = NULL;
    ic_check_result r;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret == 0)
        ret = ic_image_check(img, IC_FIX_LEAKS | IC_FIX_ERRORS | IC_CHECK_DRY_RUN, NULL, NULL,
                             &r, errp);
    ic_image_close(img);
    *out = ret == 0 ? r.corruptions + r.check_errors : 0;
    return ret;
}

/* Reads the guest view with a normal open; -EFBIG when it is refused. */
static int crash_read(const char *path, uint8_t *buf, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret == 0)
        ret = ic_image_pread(img, buf, CRASH_DISK, 0, errp);
    ic_image_close(img);
    return ret;
}

static int crash_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct crash_case *cc = ctx->payload;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = cc->opts;
    co.size = CRASH_DISK;
    co.size_set = true;
    int ret = ic_image_create(ctx->path, &co, errp);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    if (ret == 0)
        ret = ic_image_open(&img, ctx->path, &o, errp);
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 11);
    if (ret == 0)
        ret = ic_image_pwrite(img, buf, sizeof(buf), 0, errp);
    if (ret == 0 && cc->snapshot)
        ret = ic_snapshot_create(img, "s1", errp);
    if (ret == 0)
        ret = ic_image_pwrite(img, buf, 4096, 65536, errp);
    if (img)
        ic_image_close(img);
    if (ret == 0 && tu_sh("python3 tests/helpers/qcow2-poke.py '%s' %s", ctx->path,
                          cc->defect) != 0)
        ret = ic_error_set(errp, IC_ERR_OTHER, EIO, "poke failed");
    if (ret == 0)
        ret = crash_count(ctx->path, &cc->damage, errp);
    if (ret == 0 && cc->damage == 0)
        ret = ic_error_set(errp, IC_ERR_OTHER, EIO, "the damage was not detected");
    free(cc->guest);
    cc->guest = malloc(CRASH_DISK);
    assert_non_null(cc->guest);
    if (ret == 0 && crash_read(ctx->path, cc->guest, errp) < 0) {
        ic_error_free(*errp);
        *errp = NULL;
        free(cc->guest);
        cc->guest = NULL;
    }
    return ret;
}

static int crash_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK | IC_OPEN_CHECK;
    o.open_file = ctx->open_file;
    o.payload = ctx->open_payload;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    ic_check_result r;
    ret = ic_image_check(img, IC_FIX_LEAKS | IC_FIX_ERRORS, NULL, NULL, &r, errp);
    if (ret == 0 && (r.corruptions || r.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "repair left %" PRId64 " corruptions",
                           r.corruptions);
    if (ret == 0)
        ret = ic_image_flush(img, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int crash_verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct crash_case *cc = ctx->payload;
    int64_t now;
    int ret = crash_count(ctx->path, &now, errp);
    if (ret == 0 && now > (ctx->crashed ? cc->damage : 0))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: %" PRId64 " corruptions after the "
                           "repair, %" PRId64 " before", cc->defect, now, cc->damage);
    /* the guest reads what it read before, wherever the repair stopped */
    if (ret == 0 && cc->guest) {
        uint8_t *got = malloc(CRASH_DISK);
        assert_non_null(got);
        ret = crash_read(ctx->path, got, errp);
        if (ret == 0 && memcmp(got, cc->guest, CRASH_DISK))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: guest data changed", cc->defect);
        free(got);
    }
    /* qemu-img needs seconds to open 65536 snapshots: check-defects.sh
     * runs it on that repair */
    if (ret == 0 && !ctx->crashed && strcmp(cc->defect, "snapshot-too-many") &&
        tu_have_prog("qemu-img") &&
        tu_sh("qemu-img check -q '%s' >/dev/null 2>&1", ctx->path) != 0)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: qemu-img check is not clean",
                           cc->defect);
    return ret;
}

static void crash_loop(const char *defect, const char *opts, bool snapshot, unsigned seeds)
{
    struct crash_case cc = { defect, opts, snapshot, 0, NULL };
    struct tu_crash_loop cfg = {
        .name = defect, .target = "a.qcow2", .setup = crash_setup, .run = crash_run,
        .verify = crash_verify, .payload = &cc, .seed = 0xc4ec, .seeds = seeds,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 2);
    free(cc.guest);
}

static void test_qcow2_check__crashed_growth_repair_never_adds_damage(void **state)
{
    (void)state;
    crash_loop("past-eof-near", NULL, false, 2);
    crash_loop("past-eof-near", "cluster_size=4096,refcount_bits=8", false, 2);
}

static void test_qcow2_check__crashed_snapshot_table_repair_never_adds_damage(void **state)
{
    (void)state;
    crash_loop("snapshot-extra-big", NULL, true, 2);
    crash_loop("snapshot-too-many", NULL, false, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qcow2_check__clean_image_reports_nothing, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__leak_is_found_and_repaired, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__dry_run_writes_nothing, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_check__zero_refcount_needs_rebuild_with_r_all,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_qcow2_check__reference_past_eof_is_repaired_by_growing_the_file, fx_setup,
            fx_teardown),
        cmocka_unit_test(test_qcow2_check__crashed_growth_repair_never_adds_damage),
        cmocka_unit_test(test_qcow2_check__crashed_snapshot_table_repair_never_adds_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
