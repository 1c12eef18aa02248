/*
 * test-io-fault.c - the fault injection backend (src/io/io-fault.c) and the
 * fault loop helper (tests/helpers/loops.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "toylog.h"
#include "io/io-mem.h"

static ic_io *faulty(ic_io **inner_out)
{
    ic_io *m, *f;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&m, "fault-inner", &err), err);
    TU_ASSERT_OK(ic_io_fault_wrap(&f, m, &err), err);
    if (inner_out)
        *inner_out = m;
    return f;
}

static void add(ic_io *f, int event, unsigned nth, int errnum, bool once)
{
    struct ic_fault_rule r = IC_FAULT_RULE_INIT;
    r.event = event;
    r.nth = nth;
    r.errnum = errnum;
    r.once = once;
    assert_int_equal(ic_io_fault_add_rule(f, &r), 0);
}

static void test_io_fault__any_write_once_fails_only_the_nth_write(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    add(f, IC_FAULT_ANY_WRITE, 3, ENOSPC, true);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 16), 0);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 32), -ENOSPC);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 48), 0);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_flush(f), 0);
    assert_int_equal(ic_io_fault_injected(f), 1);
    assert_int_equal(ic_io_fault_request_count(f, IC_FAULT_IO_WRITE), 4);
    ic_io_close(f);
}

static void test_io_fault__persistent_any_write_fails_every_write_from_the_nth(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    add(f, IC_FAULT_ANY_WRITE, 2, EIO, false);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 16), -EIO);
    /* reads and flushes are not writes */
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_flush(f), 0);
    assert_int_equal(ic_io_fault_injected(f), 5);
    ic_io_close(f);
}

static void test_io_fault__failed_write_never_reaches_the_inner_backend(void **state)
{
    (void)state;
    uint8_t b[64];
    memset(b, 0x5A, sizeof(b));
    ic_io *inner;
    ic_io *f = faulty(&inner);
    add(f, IC_FAULT_ANY_WRITE, 1, EIO, true);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 100), -EIO);
    assert_int_equal(ic_io_mem_of(inner)->n_write, 0);
    assert_int_equal(ic_io_get_size(inner), 0);
    ic_io_close(f);
}

static void test_io_fault__event_rule_fails_the_next_request_of_any_type(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    add(f, IC_EV_L2_UPDATE, 2, EIO, true);
    ic_io_event(f, IC_EV_L2_UPDATE);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0); /* 1st occurrence: not armed yet */
    ic_io_event(f, IC_EV_L1_UPDATE);                       /* other events do not count */
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);
    ic_io_event(f, IC_EV_L2_UPDATE);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), -EIO); /* the next request, a read */
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);   /* once: spent */
    ic_io_event(f, IC_EV_L2_UPDATE);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);   /* spent for good */
    assert_int_equal(ic_io_fault_injected(f), 1);
    assert_int_equal(ic_io_fault_event_count(f, IC_EV_L2_UPDATE), 3);
    assert_int_equal(ic_io_fault_event_count(f, IC_EV_L1_UPDATE), 1);
    assert_int_equal(ic_io_fault_event_count(f, IC_EV_REFBLOCK_ALLOC), 0);
    ic_io_close(f);
}

static void test_io_fault__persistent_event_rule_fails_everything_after_the_event(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    add(f, IC_EV_REFBLOCK_ALLOC, 1, ENOSPC, false);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0); /* before the event */
    ic_io_event(f, IC_EV_REFBLOCK_ALLOC);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), -ENOSPC);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), -ENOSPC);
    assert_int_equal(ic_io_flush(f), -ENOSPC);
    assert_int_equal(ic_io_truncate(f, 0), -ENOSPC);
    assert_int_equal(ic_io_punch_hole(f, 0, 16), -ENOSPC);
    assert_int_equal(ic_io_get_size(f), 16); /* not a request */
    assert_int_equal(ic_io_fault_injected(f), 5);
    ic_io_close(f);
}

static void test_io_fault__iotypes_narrow_an_event_rule_to_writes(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    struct ic_fault_rule r = IC_FAULT_RULE_INIT;
    r.event = IC_EV_HEADER_UPDATE;
    r.iotypes = IC_FAULT_IO_WRITE;
    assert_int_equal(ic_io_fault_add_rule(f, &r), 0);
    ic_io_event(f, IC_EV_HEADER_UPDATE);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_flush(f), 0);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), -EIO);
    ic_io_close(f);
}

static void test_io_fault__byte_range_limits_which_requests_match_and_count(void **state)
{
    (void)state;
    uint8_t b[512] = { 0 };
    ic_io *f = faulty(NULL);
    struct ic_fault_rule r = IC_FAULT_RULE_INIT;
    r.event = IC_FAULT_ANY_WRITE;
    r.nth = 2;
    r.off = 4096;
    r.len = 512;
    assert_int_equal(ic_io_fault_add_rule(f, &r), 0);
    assert_int_equal(ic_io_pwrite(f, b, 512, 3584), 0);  /* ends at 4096: outside */
    assert_int_equal(ic_io_pwrite(f, b, 512, 4608), 0);  /* starts at the end: outside */
    assert_int_equal(ic_io_pwrite(f, b, 512, 4000), 0);  /* touches: 1st match */
    assert_int_equal(ic_io_pwrite(f, b, 512, 0), 0);
    assert_int_equal(ic_io_pwrite(f, b, 1, 4607), -EIO); /* 2nd match */
    assert_int_equal(ic_io_fault_injected(f), 1);
    ic_io_close(f);
}

static void test_io_fault__any_flush_and_any_read_rules_fail_their_own_type(void **state)
{
    (void)state;
    uint8_t b[16] = { 0 };
    ic_io *f = faulty(NULL);
    add(f, IC_FAULT_ANY_FLUSH, 2, EIO, true);
    add(f, IC_FAULT_ANY_READ, 1, ENOSPC, true);
    assert_int_equal(ic_io_flush(f), 0);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_flush(f), -EIO);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), -ENOSPC);
    assert_int_equal(ic_io_pread(f, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_fault_request_count(f, IC_FAULT_IO_FLUSH), 2);
    assert_int_equal(ic_io_fault_request_count(f, IC_FAULT_IO_READ), 2);
    assert_int_equal(ic_io_fault_request_count(f, IC_FAULT_IO_READ | IC_FAULT_IO_WRITE), 0);
    ic_io_close(f);
}

static void test_io_fault__batches_see_faults_request_by_request(void **state)
{
    (void)state;
    uint8_t a[64], b[64], c[64];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    ic_io *inner;
    ic_io *f = faulty(&inner);
    add(f, IC_FAULT_ANY_WRITE, 2, ENOSPC, true);
    struct ic_io_req reqs[3] = {
        { IC_IO_REQ_WRITE, a, sizeof(a), 0, 1 },
        { IC_IO_REQ_WRITE, b, sizeof(b), 64, 1 },
        { IC_IO_REQ_READ, c, sizeof(c), 0, 1 },
    };
    assert_int_equal(ic_io_submit(f, reqs, 3), -ENOSPC);
    assert_int_equal(reqs[0].ret, 0);
    assert_int_equal(reqs[1].ret, -ENOSPC);
    assert_int_equal(reqs[2].ret, 0);
    assert_memory_equal(c, a, sizeof(a));
    assert_int_equal(ic_io_get_size(inner), 64);
    ic_io_close(f);
}

static void test_io_fault__stacked_wrappers_both_see_events(void **state)
{
    (void)state;
    ic_io *inner;
    ic_io *f1 = faulty(&inner);
    ic_io *f2;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_fault_wrap(&f2, f1, &err), err);
    ic_io_event(f2, IC_EV_COW_WRITE);
    assert_int_equal(ic_io_fault_event_count(f2, IC_EV_COW_WRITE), 1);
    assert_int_equal(ic_io_fault_event_count(f1, IC_EV_COW_WRITE), 1);
    assert_ptr_equal(ic_io_fault_release_inner(f2), f1);
    ic_io_close(f1);
}

static void test_io_fault__add_rule_refuses_bad_rules(void **state)
{
    (void)state;
    ic_io *m;
    ic_io *f = faulty(&m);
    struct ic_fault_rule r = IC_FAULT_RULE_INIT;
    r.event = IC_EV__MAX;
    assert_int_equal(ic_io_fault_add_rule(f, &r), -EINVAL);
    r.event = -4;
    assert_int_equal(ic_io_fault_add_rule(f, &r), -EINVAL);
    r.event = IC_FAULT_ANY_WRITE;
    r.errnum = 0;
    assert_int_equal(ic_io_fault_add_rule(f, &r), -EINVAL);
    r.errnum = EIO;
    r.iotypes = 1u << 7;
    assert_int_equal(ic_io_fault_add_rule(f, &r), -EINVAL);
    r.iotypes = 0;
    assert_int_equal(ic_io_fault_add_rule(m, &r), -EINVAL); /* not a fault backend */
    for (int i = 0; i < IC_FAULT_MAX_RULES; i++)
        assert_int_equal(ic_io_fault_add_rule(f, &r), 0);
    assert_int_equal(ic_io_fault_add_rule(f, &r), -ENOSPC);
    ic_io_fault_clear_rules(f);
    assert_int_equal(ic_io_fault_add_rule(f, &r), 0);
    ic_io_close(f);
}

static void test_io_fault__release_inner_returns_the_written_bytes(void **state)
{
    (void)state;
    uint8_t b[32], r[32];
    tu_fill_pattern(b, sizeof(b), 9);
    ic_io *inner;
    ic_io *f = faulty(&inner);
    assert_int_equal(ic_io_pwrite(f, b, sizeof(b), 8), 0);
    assert_ptr_equal(ic_io_fault_release_inner(f), inner);
    assert_int_equal(ic_io_pread(inner, r, sizeof(r), 8), 0);
    assert_memory_equal(r, b, sizeof(b));
    assert_null(ic_io_fault_release_inner(inner));
    assert_int_equal(ic_io_fault_injected(inner), 0);
    ic_io_close(inner);
    ic_io *x = NULL;
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_io_fault_wrap(&x, NULL, &err), err, EINVAL, "no inner backend");
}

static void test_io_fault__event_names_cover_request_rules(void **state)
{
    (void)state;
    assert_string_equal(ic_fault_event_name(IC_FAULT_ANY_WRITE), "any write");
    assert_string_equal(ic_fault_event_name(IC_FAULT_ANY_FLUSH), "any flush");
    assert_string_equal(ic_fault_event_name(IC_FAULT_ANY_READ), "any read");
    assert_string_equal(ic_fault_event_name(IC_EV_L2_UPDATE), "l2_update");
    assert_string_equal(ic_fault_event_name(999), "(unknown event)");
}

/* ---- the fault loop helper on the toy log ----------------------------- */

struct toy_payload {
    bool misordered;
    unsigned checks;
};

static int toy_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_io *io;
    int ret = ic_io_open_file(&io, ctx->path, IC_IO_RDWR | IC_IO_CREATE | IC_IO_NOLOCK, errp);
    if (ret < 0)
        return ret;
    ret = toylog_create(io);
    if (ret == 0)
        ret = toylog_append(io, 1, false);
    ic_io_close(io);
    return ret < 0 ? ic_error_set_errno(errp, ret, "%s: create", ctx->path) : 0;
}

static int toy_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct toy_payload *p = ctx->payload;
    int ret = toylog_append(ctx->io, 3, p->misordered);
    return ret < 0 ? ic_error_set_errno(errp, ret, "%s: append", ctx->path) : 0;
}

static int toy_check(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp)
{
    struct toy_payload *p = ctx->payload;
    uint64_t count, corrupt, leaked;
    int ret = toylog_check_path(ctx->path, &count, &corrupt, &leaked);
    if (ret < 0)
        return ic_error_set_errno(errp, ret, "%s", ctx->path);
    p->checks++;
    res->corruptions = (int64_t)corrupt;
    res->leaks = (int64_t)leaked;
    return 0;
}

static void test_fault_loop__runs_every_fired_event_errno_and_mode(void **state)
{
    (void)state;
    struct toy_payload p = { false, 0 };
    struct tu_fault_loop cfg = {
        .name = "toylog append", .target = "log", .setup = toy_setup, .run = toy_run,
        .check = toy_check, .payload = &p, .max_nth = 3, .any_write_max = 4,
    };
    struct tu_fault_summary sum;
    tu_fault_loop_run(&cfg, &sum);
    /* two events fire (data_write, header_update), 3 occurrences each,
     * x 2 errnos x 2 modes = 24 runs; plus 4 "any write" nths x 4 = 16 */
    assert_int_equal(sum.events_fired, 2);
    assert_int_equal(sum.runs, 24 + 16);
    assert_int_equal(sum.runs_injected, sum.runs);
    assert_int_equal(sum.runs_failed_cleanly, sum.runs);
    assert_int_equal(sum.violations, 0);
    assert_true(sum.leaks > 0); /* a failed header update leaks its record */
    assert_int_equal(p.checks, sum.runs + 1);
}

static void child_loop(void **state)
{
    (void)state;
    struct toy_payload p = { true, 0 };
    struct tu_fault_loop cfg = {
        .name = "toylog misordered", .target = "log", .setup = toy_setup, .run = toy_run,
        .check = toy_check, .payload = &p, .use_posix = true,
    };
    tu_fault_loop_run(&cfg, NULL);
}

static void test_fault_loop__fails_the_test_when_a_fault_corrupts_the_image(void **state)
{
    (void)state;
    tu_assert_child_test_fails(child_loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_fault__any_write_once_fails_only_the_nth_write),
        cmocka_unit_test(test_io_fault__persistent_any_write_fails_every_write_from_the_nth),
        cmocka_unit_test(test_io_fault__failed_write_never_reaches_the_inner_backend),
        cmocka_unit_test(test_io_fault__event_rule_fails_the_next_request_of_any_type),
        cmocka_unit_test(test_io_fault__persistent_event_rule_fails_everything_after_the_event),
        cmocka_unit_test(test_io_fault__iotypes_narrow_an_event_rule_to_writes),
        cmocka_unit_test(test_io_fault__byte_range_limits_which_requests_match_and_count),
        cmocka_unit_test(test_io_fault__any_flush_and_any_read_rules_fail_their_own_type),
        cmocka_unit_test(test_io_fault__batches_see_faults_request_by_request),
        cmocka_unit_test(test_io_fault__stacked_wrappers_both_see_events),
        cmocka_unit_test(test_io_fault__add_rule_refuses_bad_rules),
        cmocka_unit_test(test_io_fault__release_inner_returns_the_written_bytes),
        cmocka_unit_test(test_io_fault__event_names_cover_request_rules),
        cmocka_unit_test(test_fault_loop__runs_every_fired_event_errno_and_mode),
        cmocka_unit_test(test_fault_loop__fails_the_test_when_a_fault_corrupts_the_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
