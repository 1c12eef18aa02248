/*
 * test-io-wrappers.c - the wrappers every byte passes through (src/io/io.c):
 * zero-fill, exact reads, zero writes, defaults for optional ops, events,
 * and the sequential fallback of ic_io_submit().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "io/io-mem.h"

/* A backend with only the mandatory ops, over a memory backend. */
struct bare {
    ic_io base;
    ic_io *mem;
};
static ic_io *bmem(ic_io *io)
{
    return ((struct bare *)io)->mem;
}
static int bare_close(ic_io *io)
{
    ic_io_close(bmem(io));
    free(io);
    return 0;
}
static int64_t bare_pread(ic_io *io, void *b, size_t l, uint64_t o)
{
    /* one byte at a time: the wrapper must loop over short reads */
    return bmem(io)->ops->pread(bmem(io), b, l ? 1 : 0, o);
}
static int bare_pwrite(ic_io *io, const void *b, size_t l, uint64_t o)
{
    return ic_io_pwrite(bmem(io), b, l, o);
}
static int bare_flush(ic_io *io)
{
    return ic_io_flush(bmem(io));
}
static int bare_truncate(ic_io *io, uint64_t s)
{
    return ic_io_truncate(bmem(io), s);
}
static int64_t bare_get_size(ic_io *io)
{
    return ic_io_get_size(bmem(io));
}
static const struct ic_io_ops bare_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = bare_close,
    .pread = bare_pread,
    .pwrite = bare_pwrite,
    .flush = bare_flush,
    .truncate = bare_truncate,
    .get_size = bare_get_size,
};

static ic_io *bare_new(ic_io **mem_out)
{
    struct bare *b = calloc(1, sizeof(*b));
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&b->mem, "bare", &err), err);
    b->base.ops = &bare_ops;
    if (mem_out)
        *mem_out = b->mem;
    return &b->base;
}

static void test_io_wrappers__pread_loops_over_short_reads_and_zero_fills_past_eof(void **state)
{
    (void)state;
    ic_io *m;
    ic_io *io = bare_new(&m);
    uint8_t w[100], r[300];
    tu_fill_pattern(w, sizeof(w), 4);
    assert_int_equal(ic_io_pwrite(io, w, sizeof(w), 0), 0);
    memset(r, 0xCC, sizeof(r));
    assert_int_equal(ic_io_pread(io, r, sizeof(r), 0), 0);
    assert_memory_equal(r, w, sizeof(w));
    for (int i = 100; i < 300; i++)
        assert_int_equal(r[i], 0);
    assert_true(ic_io_mem_of(m)->n_read >= 100); /* byte by byte */
    assert_int_equal(ic_io_pread_exact(io, r, 100, 0), 0);
    assert_int_equal(ic_io_pread_exact(io, r, 101, 0), -EIO);
    assert_string_equal(ic_io_name(io), "(unnamed)");
    ic_io_close(io);
}

static void test_io_wrappers__optional_ops_have_safe_defaults(void **state)
{
    (void)state;
    ic_io *io = bare_new(NULL);
    ic_error *err = NULL;
    uint64_t pnum = 0;
    assert_int_equal(ic_io_punch_hole(io, 0, 10), -ENOTSUP);
    TU_ASSERT_OK(ic_io_lock(io, IC_LOCK_WRITE, &err), err);
    assert_int_equal(ic_io_block_status(io, 0, 4096, &pnum), 1);
    assert_int_equal(pnum, 4096);
    assert_int_equal(ic_io_allocated_size(io), -ENOTSUP);
    ic_io_event(io, IC_EV_L2_UPDATE); /* no event op: nothing happens */
    ic_io_close(io);
    assert_int_equal(ic_io_close(NULL), 0);
    assert_string_equal(ic_io_name(NULL), "(unnamed)");
}

static void test_io_wrappers__write_zeroes_past_eof_only_extends_the_file(void **state)
{
    (void)state;
    ic_io *m;
    ic_io *io = bare_new(&m);
    uint8_t w[64], r[64];
    memset(w, 0x44, sizeof(w));
    assert_int_equal(ic_io_pwrite(io, w, sizeof(w), 0), 0);
    unsigned long writes = ic_io_mem_of(m)->n_write;
    assert_int_equal(ic_io_pwrite_zeroes(io, 1000, 200000), 0);
    assert_int_equal(ic_io_get_size(io), 201000);
    assert_int_equal(ic_io_mem_of(m)->n_write, writes); /* by truncate, no data written */
    /* inside the file it really writes zeroes, in 64 KiB pieces */
    assert_int_equal(ic_io_pwrite_zeroes(io, 16, 32), 0);
    assert_int_equal(ic_io_pread(io, r, sizeof(r), 0), 0);
    assert_memory_equal(r, w, 16);
    for (int i = 16; i < 48; i++)
        assert_int_equal(r[i], 0);
    assert_memory_equal(r + 48, w + 48, 16);
    ic_io_close(io);
}

static void test_io_wrappers__event_names_round_trip_through_the_table(void **state)
{
    (void)state;
    for (int ev = 0; ev < IC_EV__MAX; ev++) {
        const char *n = ic_event_name(ev);
        assert_non_null(n);
        assert_int_equal(ic_event_from_name(n), ev);
    }
    assert_string_equal(ic_event_name(IC_EV_L2_UPDATE), "l2_update");
    assert_string_equal(ic_event_name(IC_EV_REFBLOCK_ALLOC), "refblock_alloc");
    assert_null(ic_event_name(-1));
    assert_null(ic_event_name(IC_EV__MAX));
    assert_int_equal(ic_event_from_name("no_such_event"), -1);
}

static void test_io_wrappers__events_reach_a_backend_that_listens(void **state)
{
    (void)state;
    ic_io *m, *f;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&m, "m", &err), err);
    TU_ASSERT_OK(ic_io_fault_wrap(&f, m, &err), err);
    ic_io_event(f, IC_EV_SNAPSHOT_SWITCH);
    ic_io_event(f, IC_EV_SNAPSHOT_SWITCH);
    assert_int_equal(ic_io_fault_event_count(f, IC_EV_SNAPSHOT_SWITCH), 2);
    ic_io_close(f);
}

static void test_io_wrappers__submit_without_a_submit_op_runs_requests_in_order(void **state)
{
    (void)state;
    ic_io *io = bare_new(NULL);
    uint8_t a[100], b[100], r1[150], r2[150];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    struct ic_io_req reqs[5] = {
        { IC_IO_REQ_WRITE, a, sizeof(a), 0, 1 },
        { IC_IO_REQ_READ, r1, sizeof(r1), 0, 1 }, /* sees only a, zeroes past EOF */
        { IC_IO_REQ_WRITE, b, sizeof(b), 50, 1 },
        { IC_IO_REQ_READ, r2, sizeof(r2), 0, 1 },
        { IC_IO_REQ_WRITE, a, 0, 1000, 1 },       /* empty */
    };
    assert_int_equal(ic_io_submit(io, reqs, 5), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(reqs[i].ret, 0);
    assert_memory_equal(r1, a, 100);
    for (int i = 100; i < 150; i++)
        assert_int_equal(r1[i], 0);
    assert_memory_equal(r2, a, 50);
    assert_memory_equal(r2 + 50, b, 100);
    assert_int_equal(ic_io_get_size(io), 150);
    assert_int_equal(ic_io_submit(io, reqs, 0), 0);
    /* an unknown op fails alone; the first failure is returned */
    struct ic_io_req bad[2] = { { 9, a, 1, 0, 1 }, { IC_IO_REQ_READ, r1, 1, 0, 1 } };
    assert_int_equal(ic_io_submit(io, bad, 2), -EINVAL);
    assert_int_equal(bad[0].ret, -EINVAL);
    assert_int_equal(bad[1].ret, 0);
    ic_io_close(io);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_wrappers__pread_loops_over_short_reads_and_zero_fills_past_eof),
        cmocka_unit_test(test_io_wrappers__optional_ops_have_safe_defaults),
        cmocka_unit_test(test_io_wrappers__write_zeroes_past_eof_only_extends_the_file),
        cmocka_unit_test(test_io_wrappers__event_names_round_trip_through_the_table),
        cmocka_unit_test(test_io_wrappers__events_reach_a_backend_that_listens),
        cmocka_unit_test(test_io_wrappers__submit_without_a_submit_op_runs_requests_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
