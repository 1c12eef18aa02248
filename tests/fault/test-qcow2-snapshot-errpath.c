/*
 * test-qcow2-snapshot-errpath.c - EIO and ENOSPC at every named metadata
 * event (once and persistent) during snapshot create, apply and delete
 * (the fault loop of docs/architecture.md, qemu-iotests 026/217): each run succeeds or
 * fails with a message, and the image afterwards checks with 0
 * corruptions (leaks allowed) and still opens.
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
#include "imgchain/snapshot.h"
#include "fmt-scenario.h"
#include "util/error.h"

#define DISK (2u << 20)

enum op { OP_CREATE, OP_APPLY, OP_DELETE };

static int setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = DISK;
    co.size_set = true;
    int ret = ic_image_create(ctx->path, &co, errp);
    ic_image *img = NULL;
    if (ret == 0)
        ret = fmt_open_rw(ctx->path, NULL, NULL, &img, errp);
    if (ret < 0)
        return ret;
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 1);
    for (uint64_t off = 0; ret == 0 && off < DISK; off += 4 * sizeof(buf))
        ret = ic_image_pwrite(img, buf, sizeof(buf), off, errp);
    if (ret == 0)
        ret = ic_snapshot_create(img, "base", errp);
    tu_fill_pattern(buf, sizeof(buf), 2);
    if (ret == 0)
        ret = ic_image_pwrite(img, buf, sizeof(buf), 0, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    enum op *op = ctx->payload;
    ic_image *img = NULL;
    int ret = fmt_open_rw(ctx->path, ctx->open_file, ctx->open_payload, &img, errp);
    if (ret < 0)
        return ret;
    if (*op == OP_CREATE)
        ret = ic_snapshot_create(img, "new", errp);
    else if (*op == OP_APPLY)
        ret = ic_snapshot_apply(img, "base", errp);
    else
        ret = ic_snapshot_delete(img, "base", errp);
    if (ret == 0)
        ret = ic_image_flush(img, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static int check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    int ret = fmt_check_path(ctx->path, false, res, errp);
    if (ret == 0 && fmt_have_qemu_img())
        ret = fmt_qemu_img_check(ctx->path, NULL, errp);
    return ret;
}

static void loop(enum op op)
{
    struct tu_fault_loop cfg = {
        .name = op == OP_CREATE ? "snapshot create" : op == OP_APPLY ? "snapshot apply"
                                                                      : "snapshot delete",
        .target = "a.qcow2", .setup = setup, .run = run, .check = check, .payload = &op,
        .max_nth = 2, .any_write_max = 4,
    };
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.runs_injected > 0);
}

static void test_qcow2_snapshot_errpath__create_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    loop(OP_CREATE);
}

static void test_qcow2_snapshot_errpath__apply_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    loop(OP_APPLY);
}

static void test_qcow2_snapshot_errpath__delete_fails_cleanly_at_every_event(void **state)
{
    (void)state;
    loop(OP_DELETE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_snapshot_errpath__create_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_snapshot_errpath__apply_fails_cleanly_at_every_event),
        cmocka_unit_test(test_qcow2_snapshot_errpath__delete_fails_cleanly_at_every_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
