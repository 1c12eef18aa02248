/*
 * test-io-crash.c - the crash-simulating backend (src/io/io-crash.c) and the
 * crash loop helper (tests/helpers/loops.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "toylog.h"
#include "io/io-mem.h"

static ic_io *mem_with(const void *buf, size_t len)
{
    ic_io *m;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&m, "crash-inner", &err), err);
    if (len)
        assert_int_equal(ic_io_pwrite(m, buf, len, 0), 0);
    return m;
}

static ic_io *wrap(ic_io *inner, unsigned n, uint64_t seed)
{
    ic_io *c;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_crash_wrap(&c, inner, n, seed, &err), err);
    return c;
}

static void test_io_crash__reads_see_unflushed_writes_but_inner_does_not(void **state)
{
    (void)state;
    uint8_t old[2048], neu[700], buf[2048];
    memset(old, 0xAA, sizeof(old));
    tu_fill_pattern(neu, sizeof(neu), 1);
    ic_io *inner = mem_with(old, sizeof(old));
    ic_io *c = wrap(inner, 0, 1);

    assert_int_equal(ic_io_pwrite(c, neu, sizeof(neu), 1000), 0);
    assert_int_equal(ic_io_pread(c, buf, sizeof(buf), 0), 0);
    assert_memory_equal(buf, old, 1000);
    assert_memory_equal(buf + 1000, neu, sizeof(neu));
    assert_memory_equal(buf + 1700, old, 348);
    /* nothing reached the inner backend */
    assert_int_equal(ic_io_pread(inner, buf, sizeof(buf), 0), 0);
    assert_memory_equal(buf, old, sizeof(old));
    assert_int_equal(ic_io_mem_of(inner)->n_write, 1);
    ic_io_close(c);
}

static void test_io_crash__flush_applies_overlapping_writes_in_order(void **state)
{
    (void)state;
    uint8_t a[1024], b[512], buf[1536];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    ic_io *inner = mem_with(NULL, 0);
    ic_io *c = wrap(inner, 0, 1);
    assert_int_equal(ic_io_pwrite(c, a, sizeof(a), 0), 0);
    assert_int_equal(ic_io_pwrite(c, b, sizeof(b), 768), 0);
    assert_int_equal(ic_io_get_size(c), 1280);
    assert_int_equal(ic_io_get_size(inner), 0);
    assert_int_equal(ic_io_flush(c), 0);
    assert_int_equal(ic_io_get_size(inner), 1280);
    assert_int_equal(ic_io_pread(inner, buf, 1280, 0), 0);
    assert_memory_equal(buf, a, 768);
    assert_memory_equal(buf + 768, b, 512);
    assert_int_equal(ic_io_crash_flush_count(c), 1);
    assert_false(ic_io_crash_happened(c));
    ic_io_close(c);
}

static void test_io_crash__truncate_is_buffered_in_order_with_writes(void **state)
{
    (void)state;
    uint8_t old[4096], w[100], buf[4096];
    memset(old, 0x55, sizeof(old));
    memset(w, 0x77, sizeof(w));
    ic_io *inner = mem_with(old, sizeof(old));
    ic_io *c = wrap(inner, 0, 1);
    assert_int_equal(ic_io_truncate(c, 1000), 0);
    assert_int_equal(ic_io_pwrite(c, w, sizeof(w), 3000), 0);
    assert_int_equal(ic_io_get_size(c), 3100);
    assert_int_equal(ic_io_get_size(inner), 4096); /* not yet */
    assert_int_equal(ic_io_pread(c, buf, 3100, 0), 0);
    assert_memory_equal(buf, old, 1000);
    for (int i = 1000; i < 3000; i++)
        assert_int_equal(buf[i], 0); /* cut off, then re-extended: zeroes */
    assert_memory_equal(buf + 3000, w, 100);
    assert_int_equal(ic_io_flush(c), 0);
    assert_int_equal(ic_io_get_size(inner), 3100);
    assert_int_equal(ic_io_pread(inner, buf, 3100, 0), 0);
    for (int i = 1000; i < 3000; i++)
        assert_int_equal(buf[i], 0);
    ic_io_close(c);
}

static void test_io_crash__punch_hole_is_buffered_and_never_extends(void **state)
{
    (void)state;
    uint8_t old[2048], buf[2048];
    memset(old, 0x11, sizeof(old));
    ic_io *inner = mem_with(old, sizeof(old));
    ic_io *c = wrap(inner, 0, 1);
    assert_int_equal(ic_io_punch_hole(c, 1024, 4096), 0);
    assert_int_equal(ic_io_get_size(c), 2048);
    assert_int_equal(ic_io_pread(c, buf, 2048, 0), 0);
    assert_memory_equal(buf, old, 1024);
    for (int i = 1024; i < 2048; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(ic_io_pread(inner, buf, 2048, 0), 0);
    assert_memory_equal(buf, old, 2048);
    assert_int_equal(ic_io_flush(c), 0);
    assert_int_equal(ic_io_get_size(inner), 2048);
    assert_int_equal(ic_io_pread(inner, buf, 2048, 0), 0);
    for (int i = 1024; i < 2048; i++)
        assert_int_equal(buf[i], 0);
    ic_io_close(c);
}

static void test_io_crash__crash_at_nth_flush_fails_every_later_op_with_eio(void **state)
{
    (void)state;
    uint8_t b[512] = { 1 };
    ic_io *c = wrap(mem_with(NULL, 0), 2, 7);
    assert_int_equal(ic_io_pwrite(c, b, sizeof(b), 0), 0);
    assert_int_equal(ic_io_flush(c), 0);
    assert_false(ic_io_crash_happened(c));
    assert_int_equal(ic_io_pwrite(c, b, sizeof(b), 512), 0);
    assert_int_equal(ic_io_flush(c), -EIO);
    assert_true(ic_io_crash_happened(c));
    assert_int_equal(ic_io_crash_flush_count(c), 2);
    assert_int_equal(ic_io_pwrite(c, b, sizeof(b), 0), -EIO);
    assert_int_equal(ic_io_pread(c, b, sizeof(b), 0), -EIO);
    assert_int_equal(ic_io_flush(c), -EIO);
    assert_int_equal(ic_io_truncate(c, 0), -EIO);
    assert_int_equal(ic_io_get_size(c), -EIO);
    assert_int_equal(ic_io_punch_hole(c, 0, 512), -EIO);
    assert_int_equal(ic_io_crash_flush_count(c), 2); /* failed calls are not flushes */
    ic_io *inner = ic_io_crash_release_inner(c);
    assert_non_null(inner);
    /* the first, flushed sector survives whatever the RNG did */
    uint8_t r[512];
    assert_int_equal(ic_io_pread(inner, r, sizeof(r), 0), 0);
    assert_memory_equal(r, b, sizeof(b));
    ic_io_close(inner);
}

/* Runs a fixed write sequence, crashing at flush 2 with @seed; returns the
 * surviving bytes (malloc'd, *len). */
static uint8_t *crash_run(uint64_t seed, unsigned flags, size_t *len, struct ic_io_crash_stats *st)
{
    uint8_t base[8192], w[8192];
    memset(base, 0xEE, sizeof(base));
    ic_io *c = wrap(mem_with(base, sizeof(base)), 2, seed);
    if (flags)
        assert_int_equal(ic_io_crash_set_flags(c, flags), 0);
    assert_int_equal(ic_io_flush(c), 0);
    for (int i = 0; i < 12; i++) {
        tu_fill_pattern(w, sizeof(w), (uint64_t)i + 100);
        /* overwrites inside the old file and appends past it */
        uint64_t off = (uint64_t)i * 1536 + (i % 3) * 100;
        assert_int_equal(ic_io_pwrite(c, w, 2000, off), 0);
    }
    assert_int_equal(ic_io_flush(c), -EIO);
    ic_io_crash_get_stats(c, st);
    ic_io *inner = ic_io_crash_release_inner(c);
    struct ic_io_mem *m = ic_io_mem_of(inner);
    uint8_t *out = malloc((size_t)m->size + 1);
    assert_non_null(out);
    memcpy(out, m->data, (size_t)m->size);
    *len = (size_t)m->size;
    ic_io_close(inner);
    return out;
}

static void test_io_crash__same_seed_gives_the_same_surviving_bytes(void **state)
{
    (void)state;
    size_t l1, l2, l3;
    struct ic_io_crash_stats s1, s2, s3;
    uint8_t *a = crash_run(42, 0, &l1, &s1);
    uint8_t *b = crash_run(42, 0, &l2, &s2);
    assert_int_equal(l1, l2);
    assert_memory_equal(a, b, l1);
    assert_memory_equal(&s1, &s2, sizeof(s1));
    assert_int_equal(s1.pending, 12);
    assert_int_equal(s1.applied + s1.dropped + s1.torn, 12);
    /* some other seed must give other bytes: the RNG is really used */
    bool differs = false;
    for (uint64_t seed = 43; seed < 60 && !differs; seed++) {
        uint8_t *c = crash_run(seed, 0, &l3, &s3);
        differs = l3 != l1 || memcmp(a, c, l1) != 0;
        free(c);
    }
    assert_true(differs);
    free(a);
    free(b);
}

/* Every sector of the old file holds either its old bytes or bytes some
 * pending write put there: overwrites are sector-atomic by default. */
static void test_io_crash__overwritten_sectors_are_old_or_new_never_garbage(void **state)
{
    (void)state;
    unsigned long torn = 0, garbage = 0;
    static uint8_t pat[12][2000];
    for (int i = 0; i < 12; i++)
        tu_fill_pattern(pat[i], sizeof(pat[i]), (uint64_t)i + 100);
    for (uint64_t seed = 1; seed <= 40; seed++) {
        size_t len;
        struct ic_io_crash_stats st;
        uint8_t *out = crash_run(seed, 0, &len, &st);
        torn += st.torn;
        garbage += st.garbage_sectors;
        for (size_t s = 0; s < 8192 / 512; s++) {
            const uint8_t *sec = out + s * 512;
            bool ok = true;
            for (int k = 0; k < 512; k++)
                ok &= sec[k] == 0xEE;
            if (ok)
                continue;
            /* each byte was put there by a pending write (writes overlap,
             * so one sector may mix two of them) */
            for (size_t k = 0; k < 512; k++) {
                uint64_t p = s * 512 + k;
                bool byte_ok = sec[k] == 0xEE;
                for (int i = 0; i < 12 && !byte_ok; i++) {
                    uint64_t off = (uint64_t)i * 1536 + (i % 3) * 100;
                    byte_ok = p >= off && p < off + 2000 && sec[k] == pat[i][p - off];
                }
                if (!byte_ok)
                    fail_msg("seed %llu: byte %llu is garbage inside the old file",
                             (unsigned long long)seed, (unsigned long long)p);
            }
        }
        free(out);
    }
    assert_true(torn > 0);
    assert_true(garbage > 0); /* garbage did happen, past the old end */
}

static void test_io_crash__trash_flag_lets_garbage_hit_overwritten_sectors(void **state)
{
    (void)state;
    bool seen = false;
    for (uint64_t seed = 1; seed <= 60 && !seen; seed++) {
        size_t len;
        struct ic_io_crash_stats st;
        uint8_t *out = crash_run(seed, IC_CRASH_TRASH_ANY_SECTOR, &len, &st);
        /* sector 0 is covered only by write 0 (offset 0, pattern seed 100) */
        uint8_t w[2000];
        tu_fill_pattern(w, sizeof(w), 100);
        bool old = true, neu = true;
        for (int k = 0; k < 512; k++) {
            old &= out[k] == 0xEE;
            neu &= out[k] == w[k];
        }
        seen = !old && !neu;
        free(out);
    }
    assert_true(seen);
    ic_io *c = wrap(mem_with(NULL, 0), 0, 1);
    assert_int_equal(ic_io_crash_set_flags(c, 0x80), -EINVAL);
    ic_io_close(c);
}

static void test_io_crash__release_without_crash_applies_pending_writes(void **state)
{
    (void)state;
    uint8_t w[300], buf[300];
    tu_fill_pattern(w, sizeof(w), 5);
    ic_io *c = wrap(mem_with(NULL, 0), 5, 1);
    assert_int_equal(ic_io_pwrite(c, w, sizeof(w), 10), 0);
    ic_io *inner = ic_io_crash_release_inner(c);
    assert_int_equal(ic_io_get_size(inner), 310);
    assert_int_equal(ic_io_pread(inner, buf, sizeof(buf), 10), 0);
    assert_memory_equal(buf, w, sizeof(w));
    ic_io_close(inner);
}

static void test_io_crash__queries_on_other_backends_are_harmless(void **state)
{
    (void)state;
    ic_io *m = mem_with(NULL, 0);
    struct ic_io_crash_stats st;
    assert_false(ic_io_crash_happened(m));
    assert_int_equal(ic_io_crash_flush_count(m), 0);
    assert_null(ic_io_crash_release_inner(m));
    ic_io_crash_get_stats(m, &st);
    assert_int_equal(st.pending, 0);
    ic_io *c = NULL;
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_io_crash_wrap(&c, NULL, 1, 1, &err), err, EINVAL, "no inner backend");
    assert_null(c);
    ic_io_close(m);
}

/* The crash backend finds a write-ordering bug: a misordered toy log append
 * is corrupt at some crash point, a correct one never is. */
static unsigned long toylog_corrupt_runs(bool misordered)
{
    unsigned long corrupt_runs = 0;
    for (unsigned n = 1; n <= 8; n++) {
        for (uint64_t seed = 1; seed <= 8; seed++) {
            ic_io *m = mem_with(NULL, 0);
            assert_int_equal(toylog_create(m), 0);
            ic_io *c = wrap(m, n, seed);
            int ret = toylog_append(c, 4, misordered);
            assert_true(ret == 0 || ic_io_crash_happened(c));
            ic_io *inner = ic_io_crash_release_inner(c);
            uint64_t count, corrupt, leaked;
            assert_int_equal(toylog_check(inner, &count, &corrupt, &leaked), 0);
            corrupt_runs += corrupt > 0;
            ic_io_close(inner);
        }
    }
    return corrupt_runs;
}

static void test_io_crash__finds_a_misordered_update_and_passes_a_correct_one(void **state)
{
    (void)state;
    assert_true(toylog_corrupt_runs(true) > 0);
    assert_int_equal(toylog_corrupt_runs(false), 0);
}

/* ---- the crash loop helper on the toy log ----------------------------- */

struct toy_payload {
    bool misordered;
    unsigned verified;
};

static int toy_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    ic_io *io;
    int ret = ic_io_open_file(&io, ctx->path, IC_IO_RDWR | IC_IO_CREATE | IC_IO_NOLOCK, errp);
    if (ret < 0)
        return ret;
    ret = toylog_create(io);
    ic_io_close(io);
    return ret < 0 ? ic_error_set_errno(errp, ret, "%s: create", ctx->path) : 0;
}

static int toy_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct toy_payload *p = ctx->payload;
    /* go through open_file like a real operation would */
    ic_io *io;
    int ret = ctx->open_file(&io, ctx->path, IC_IO_RDWR, ctx->open_payload, errp);
    if (ret < 0)
        return ret;
    ret = toylog_append(io, 3, p->misordered);
    ic_io_close(io);
    return ret < 0 ? ic_error_set_errno(errp, ret, "%s: append", ctx->path) : 0;
}

static int toy_verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct toy_payload *p = ctx->payload;
    uint64_t count, corrupt, leaked;
    int ret = toylog_check_path(ctx->path, &count, &corrupt, &leaked);
    if (ret < 0)
        return ic_error_set_errno(errp, ret, "%s", ctx->path);
    p->verified++;
    if (corrupt)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: %llu corrupt", ctx->path,
                            (unsigned long long)corrupt);
    /* what was flushed reads back: record k's header flush is the
     * wrapper's flush 2k+2 (create's flush happened before the wrapper) */
    uint64_t durable = ctx->crashed ? (ctx->n - 1) / 2 : 3;
    if (count < durable)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: %llu records, %llu were flushed",
                            ctx->path, (unsigned long long)count, (unsigned long long)durable);
    return 0;
}

static void test_crash_loop__runs_every_flush_point_until_the_operation_completes(void **state)
{
    (void)state;
    struct toy_payload p = { false, 0 };
    struct tu_crash_loop cfg = {
        .name = "toylog append", .target = "log", .setup = toy_setup, .run = toy_run,
        .verify = toy_verify, .payload = &p, .seeds = 3,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_int_equal(sum.crash_points, 6); /* 3 records x 2 flushes */
    assert_int_equal(sum.completed_at, 7);
    assert_int_equal(sum.runs, 6 * 3 + 1);
    assert_int_equal(p.verified, sum.runs);
}

static void test_crash_loop__posix_target_gives_the_same_result(void **state)
{
    (void)state;
    struct toy_payload p = { false, 0 };
    struct tu_crash_loop cfg = {
        .name = "toylog append (posix)", .target = "log", .setup = toy_setup, .run = toy_run,
        .verify = toy_verify, .payload = &p, .use_posix = true, .quiet = true,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_int_equal(sum.crash_points, 6);
    assert_int_equal(sum.completed_at, 7);
}

/* Runs the loop on the misordered log in a child process (the loop fails
 * the child's test); the child must fail. */
static void child_loop(void **state)
{
    (void)state;
    struct toy_payload p = { true, 0 };
    struct tu_crash_loop cfg = {
        .name = "toylog misordered", .target = "log", .setup = toy_setup, .run = toy_run,
        .verify = toy_verify, .payload = &p, .seeds = 8,
    };
    tu_crash_loop_run(&cfg, NULL);
}

static void test_crash_loop__fails_the_test_on_a_misordered_update(void **state)
{
    (void)state;
    tu_assert_child_test_fails(child_loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_crash__reads_see_unflushed_writes_but_inner_does_not),
        cmocka_unit_test(test_io_crash__flush_applies_overlapping_writes_in_order),
        cmocka_unit_test(test_io_crash__truncate_is_buffered_in_order_with_writes),
        cmocka_unit_test(test_io_crash__punch_hole_is_buffered_and_never_extends),
        cmocka_unit_test(test_io_crash__crash_at_nth_flush_fails_every_later_op_with_eio),
        cmocka_unit_test(test_io_crash__same_seed_gives_the_same_surviving_bytes),
        cmocka_unit_test(test_io_crash__overwritten_sectors_are_old_or_new_never_garbage),
        cmocka_unit_test(test_io_crash__trash_flag_lets_garbage_hit_overwritten_sectors),
        cmocka_unit_test(test_io_crash__release_without_crash_applies_pending_writes),
        cmocka_unit_test(test_io_crash__queries_on_other_backends_are_harmless),
        cmocka_unit_test(test_io_crash__finds_a_misordered_update_and_passes_a_correct_one),
        cmocka_unit_test(test_crash_loop__runs_every_flush_point_until_the_operation_completes),
        cmocka_unit_test(test_crash_loop__posix_target_gives_the_same_result),
        cmocka_unit_test(test_crash_loop__fails_the_test_on_a_misordered_update),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
