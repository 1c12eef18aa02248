/*
 * test-io-aio.c - the libaio backend (src/io/io-aio.c): batches, ordering,
 * O_DIRECT with and without alignment, fallbacks, locks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "io/io-aio.h"

#define CHUNK 65536
#define NREQ 64

/* The file every test works on, in the chain fixture's folder (cf_setup
 * makes it, cf_teardown removes it). */
#define FILE_PATH cf_path("data.img")

static ic_io *open_aio(const char *path, unsigned flags, unsigned aio_flags)
{
    ic_io *io;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_aio_ex(&io, path, flags, aio_flags, &err), err);
    return io;
}

static void *aligned(size_t len)
{
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 4096, len), 0);
    return p;
}

/* Writes NREQ chunks in one batch, reads them back in another. */
static void batch_roundtrip(const char *path, unsigned flags, unsigned aio_flags,
                            struct ic_io_stats *st)
{
    ic_io *io = open_aio(path, IC_IO_RDWR | IC_IO_CREATE | flags, aio_flags);
    uint8_t *w = aligned((size_t)NREQ * CHUNK), *r = aligned((size_t)NREQ * CHUNK);
    tu_fill_pattern(w, (size_t)NREQ * CHUNK, 77);
    memset(r, 0xCC, (size_t)NREQ * CHUNK);
    struct ic_io_req reqs[NREQ];
    for (int i = 0; i < NREQ; i++) /* reverse order: offsets do not follow the array */
        reqs[i] = (struct ic_io_req){ IC_IO_REQ_WRITE, w + (size_t)i * CHUNK, CHUNK,
                                      (uint64_t)(NREQ - 1 - i) * CHUNK, 1 };
    assert_int_equal(ic_io_submit(io, reqs, NREQ), 0);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(reqs[i].ret, 0);
        reqs[i].op = IC_IO_REQ_READ;
        reqs[i].buf = r + (size_t)i * CHUNK;
        reqs[i].ret = 1;
    }
    assert_int_equal(ic_io_submit(io, reqs, NREQ), 0);
    for (int i = 0; i < NREQ; i++)
        assert_int_equal(reqs[i].ret, 0);
    assert_memory_equal(r, w, (size_t)NREQ * CHUNK);
    assert_int_equal(ic_io_get_size(io), (int64_t)NREQ * CHUNK);
    assert_int_equal(ic_io_flush(io), 0);
    assert_true(ic_io_aio_get_stats(io, st));
    ic_io_close(io);
    free(w);
    free(r);
}

static void test_io_aio__batch_keeps_at_least_16_requests_in_flight(void **state)
{
    (void)state;
    struct ic_io_stats st;
    batch_roundtrip(FILE_PATH, 0, 0, &st);
    assert_true(st.async);
    assert_true(st.max_in_flight >= 16);
    assert_true(st.max_in_flight <= IC_AIO_QUEUE_DEPTH);
    assert_int_equal(st.aio_requests, 2 * NREQ);
    assert_true(st.io_submit_calls < 2 * NREQ); /* really batched */
}

static void test_io_aio__direct_batch_of_aligned_requests_needs_no_bounce(void **state)
{
    (void)state;
    struct ic_io_stats st;
    batch_roundtrip(FILE_PATH, IC_IO_DIRECT, 0, &st);
    assert_true(st.async);
    assert_true(st.max_in_flight >= 16);
    assert_int_equal(st.bounced, 0);
}

static void test_io_aio__works_synchronously_without_an_aio_context(void **state)
{
    (void)state;
    struct ic_io_stats st;
    batch_roundtrip(FILE_PATH, IC_IO_DIRECT, IC_AIO_SYNC, &st);
    assert_false(st.async);
    assert_int_equal(st.aio_requests, 0);
    assert_int_equal(st.sync_requests, 2 * NREQ);
}

/* Random unaligned writes and reads with O_DIRECT against a memory model. */
static void test_io_aio__direct_unaligned_requests_match_a_model(void **state)
{
    (void)state;
    ic_io *io = open_aio(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE | IC_IO_DIRECT, 0);
    assert_true(ic_io_aio_alignment(io) >= 512);
    enum { SPACE = 256 * 1024 };
    uint8_t *model = calloc(1, SPACE), *buf = malloc(SPACE + 1), *rd = malloc(SPACE + 1);
    uint64_t size = 0, rng = 12345;
    for (int i = 0; i < 200; i++) {
        uint64_t off = tu_rand(&rng) % (SPACE - 9000);
        size_t len = 1 + (size_t)(tu_rand(&rng) % 9000);
        uint8_t *b = buf + (i & 1); /* unaligned buffer half the time */
        tu_fill_pattern(b, len, (uint64_t)i);
        if (tu_rand(&rng) % 4 == 0) {
            struct ic_io_req req = { IC_IO_REQ_WRITE, b, len, off, 1 };
            assert_int_equal(ic_io_submit(io, &req, 1), 0);
        } else {
            assert_int_equal(ic_io_pwrite(io, b, len, off), 0);
        }
        memcpy(model + off, b, len);
        if (off + len > size)
            size = off + len;
        /* the file ends exactly where the last byte was written */
        assert_int_equal(ic_io_get_size(io), (int64_t)size);
        uint64_t roff = tu_rand(&rng) % size;
        size_t rlen = 1 + (size_t)(tu_rand(&rng) % (size - roff));
        assert_int_equal(ic_io_pread(io, rd + 1, rlen, roff), 0);
        assert_memory_equal(rd + 1, model + roff, rlen);
    }
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(io, &st));
    assert_true(st.bounced > 0);
    ic_io_close(io);
    /* the bytes on disk, read with plain buffered I/O */
    uint8_t *disk;
    size_t dlen;
    assert_int_equal(tu_read_file(FILE_PATH, &disk, &dlen), 0);
    assert_int_equal(dlen, size);
    assert_memory_equal(disk, model, dlen);
    free(disk);
    free(model);
    free(buf);
    free(rd);
}

static void test_io_aio__overlapping_requests_in_one_batch_take_effect_in_order(void **state)
{
    (void)state;
    for (int direct = 0; direct < 2; direct++) {
        ic_io *io = open_aio(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE | (direct ? IC_IO_DIRECT : 0), 0);
        enum { N = 48 };
        uint8_t *w = aligned((size_t)N * 8192), *r = aligned(8192 * 2);
        struct ic_io_req reqs[N + 1];
        for (int i = 0; i < N; i++) {
            memset(w + (size_t)i * 8192, i + 1, 8192);
            /* all on [0, 16 KiB): each overlaps the previous one */
            reqs[i] = (struct ic_io_req){ IC_IO_REQ_WRITE, w + (size_t)i * 8192, 8192,
                                          (uint64_t)(i % 3) * 4096, 1 };
        }
        reqs[N] = (struct ic_io_req){ IC_IO_REQ_READ, r, 16384, 0, 1 };
        assert_int_equal(ic_io_submit(io, reqs, N + 1), 0);
        /* expected: replay the writes in order */
        uint8_t expect[16384];
        memset(expect, 0, sizeof(expect));
        for (int i = 0; i < N; i++)
            memset(expect + (i % 3) * 4096, i + 1, 8192);
        assert_memory_equal(r, expect, sizeof(expect));
        ic_io_close(io);
        free(w);
        free(r);
    }
}

static void test_io_aio__reads_past_end_of_file_are_zero_filled_or_short(void **state)
{
    (void)state;
    uint8_t data[1000];
    tu_fill_pattern(data, sizeof(data), 3);
    assert_int_equal(tu_write_file(FILE_PATH, data, sizeof(data)), 0);
    for (int direct = 0; direct < 2; direct++) {
        ic_io *io = open_aio(FILE_PATH, direct ? IC_IO_DIRECT : 0, 0);
        uint8_t *b = aligned(8192);
        memset(b, 0xCC, 8192);
        struct ic_io_req req = { IC_IO_REQ_READ, b, 8192, 0, 1 };
        assert_int_equal(ic_io_submit(io, &req, 1), 0);
        assert_int_equal(req.ret, 0);
        assert_memory_equal(b, data, sizeof(data));
        for (int i = 1000; i < 8192; i++)
            assert_int_equal(b[i], 0);
        /* the vtable op reports a short count at end of file */
        assert_int_equal(io->ops->pread(io, b, 4096, 0), 1000);
        assert_int_equal(io->ops->pread(io, b + 1, 10, 995), 5);
        assert_int_equal(io->ops->pread(io, b, 4096, 4096), 0);
        free(b);
        ic_io_close(io);
    }
}

static void test_io_aio__each_request_gets_its_own_result(void **state)
{
    (void)state;
    ic_io *io = open_aio(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE, 0);
    uint8_t a[512], b[512];
    memset(a, 1, sizeof(a));
    struct ic_io_req reqs[3] = {
        { IC_IO_REQ_WRITE, a, sizeof(a), 0, 1 },
        { 42, b, sizeof(b), 0, 1 },
        { IC_IO_REQ_READ, b, sizeof(b), 0, 1 },
    };
    assert_int_equal(ic_io_submit(io, reqs, 3), -EINVAL);
    assert_int_equal(reqs[0].ret, 0);
    assert_int_equal(reqs[1].ret, -EINVAL);
    assert_int_equal(reqs[2].ret, 0);
    assert_memory_equal(b, a, sizeof(a));
    ic_io_close(io);
    /* a read-only backend refuses writes: the error is per request */
    io = open_aio(FILE_PATH, 0, 0);
    reqs[0].ret = reqs[2].ret = 1;
    struct ic_io_req two[2] = { reqs[2], reqs[0] };
    assert_int_equal(ic_io_submit(io, two, 2), -EBADF);
    assert_int_equal(two[0].ret, 0);
    assert_int_equal(two[1].ret, -EBADF);
    ic_io_close(io);
}

static void test_io_aio__direct_on_a_file_system_without_o_direct_is_a_clear_error(void **state)
{
    (void)state;
    /* procfs refuses O_DIRECT at open, as tmpfs did before Linux 6.6 */
    ic_io *io = NULL;
    ic_error *err = NULL;
    int ret = ic_io_open_aio(&io, "/proc/self/status", IC_IO_DIRECT | IC_IO_NOLOCK, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_UNSUPPORTED);
    TU_ASSERT_ERR_PREFIX(ret, err, EINVAL,
                         "/proc/self/status: the file system does not support O_DIRECT");
    assert_null(io);
    /* without IC_IO_DIRECT the same file opens */
    TU_ASSERT_OK(ic_io_open_aio(&io, "/proc/self/status", IC_IO_NOLOCK, &err), err);
    uint8_t b[16];
    assert_int_equal(ic_io_pread(io, b, 4, 0), 0);
    assert_memory_equal(b, "Name", 4);
    ic_io_close(io);
}

static void test_io_aio__missing_file_is_enoent_naming_it(void **state)
{
    (void)state;
    ic_io *io = NULL;
    ic_error *err = NULL;
    char *p = tu_path(cf_dir, "nope.img");
    int ret = ic_io_open_aio(&io, p, 0, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_NOTFOUND);
    TU_ASSERT_ERR(ret, err, ENOENT, "nope.img: No such file or directory");
    free(p);
}

static void test_io_aio__takes_the_same_locks_as_the_posix_backend(void **state)
{
    (void)state;
    ic_io *w = open_aio(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE, 0);
    ic_io *other = NULL;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&other, FILE_PATH, IC_IO_RDWR, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_BUSY);
    TU_ASSERT_ERR(ret, err, EBUSY, "data.img: failed to get \"write\" lock");
    ret = ic_io_open_file(&other, FILE_PATH, 0, &err); /* a reader refuses a writer */
    TU_ASSERT_ERR(ret, err, EBUSY, "shared \"write\" lock");
    TU_ASSERT_OK(ic_io_open_file(&other, FILE_PATH, IC_IO_SHARE, &err), err);
    ic_io_close(other);
    ic_io_close(w);
    /* and the reverse */
    TU_ASSERT_OK(ic_io_open_file(&other, FILE_PATH, IC_IO_RDWR, &err), err);
    ret = ic_io_open_aio(&w, FILE_PATH, IC_IO_RDWR, &err);
    TU_ASSERT_ERR(ret, err, EBUSY, "data.img");
    ic_io_close(other);
}

static void test_io_aio__non_aio_backends_report_no_stats(void **state)
{
    (void)state;
    ic_io *m;
    ic_error *err = NULL;
    struct ic_io_stats st;
    TU_ASSERT_OK(ic_io_open_mem(&m, "m", &err), err);
    assert_false(ic_io_aio_get_stats(m, &st));
    assert_int_equal(ic_io_aio_alignment(m), 0);
    ic_io_close(m);
}

/* The capability ops of the io vtable reach the aio backend through the
 * library's wrappers, and default for a backend without them. */
static bool lend_hold(void *payload, const void *buf, size_t len)
{
    (void)payload;
    (void)buf;
    (void)len;
    return false;
}
static void lend_release(void *payload, const void *buf)
{
    (void)payload;
    (void)buf;
}

static void test_io_aio__capabilities_are_vtable_ops_with_defaults(void **state)
{
    (void)state;
    ic_error *err = NULL;
    ic_io *m;
    TU_ASSERT_OK(ic_io_open_mem(&m, "m", &err), err);
    struct ic_io_stats st;
    const struct ic_io_lender lender = { lend_hold, lend_release, NULL };
    assert_int_equal(ic_io_alignment(m), 1);
    assert_false(ic_io_get_stats(m, &st));
    assert_int_equal(ic_io_lend(m, &lender), -ENOTSUP);
    assert_int_equal(ic_io_lend(m, NULL), 0);
    ic_io_close(m);

    ic_io *buffered = open_aio(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE, 0);
    assert_int_equal(ic_io_alignment(buffered), 1);
    assert_true(ic_io_get_stats(buffered, &st));
    assert_int_equal(ic_io_lend(buffered, &lender), -ENOTSUP); /* not O_DIRECT */
    ic_io_close(buffered);

    ic_io *direct = NULL;
    if (ic_io_open_aio_ex(&direct, FILE_PATH, IC_IO_RDWR | IC_IO_DIRECT, 0, &err) < 0) {
        ic_error_free(err);
        skip(); /* no O_DIRECT here */
    }
    assert_int_equal(ic_io_alignment(direct), ic_io_aio_alignment(direct));
    assert_true(ic_io_alignment(direct) >= 512);
    int depth = ic_io_lend(direct, &lender);
    assert_true(depth >= 1 && depth <= IC_AIO_BEHIND_DEPTH);
    assert_int_equal(ic_io_lend(direct, &lender), -EBUSY);
    assert_int_equal(ic_io_lend(direct, NULL), 0);
    assert_true(ic_io_get_stats(direct, &st));
    ic_io_close(direct);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, cf_setup, cf_teardown)
    const struct CMUnitTest tests[] = {
        T(test_io_aio__batch_keeps_at_least_16_requests_in_flight),
        T(test_io_aio__direct_batch_of_aligned_requests_needs_no_bounce),
        T(test_io_aio__works_synchronously_without_an_aio_context),
        T(test_io_aio__direct_unaligned_requests_match_a_model),
        T(test_io_aio__overlapping_requests_in_one_batch_take_effect_in_order),
        T(test_io_aio__reads_past_end_of_file_are_zero_filled_or_short),
        T(test_io_aio__each_request_gets_its_own_result),
        T(test_io_aio__direct_on_a_file_system_without_o_direct_is_a_clear_error),
        T(test_io_aio__missing_file_is_enoent_naming_it),
        T(test_io_aio__takes_the_same_locks_as_the_posix_backend),
        T(test_io_aio__non_aio_backends_report_no_stats),
        T(test_io_aio__capabilities_are_vtable_ops_with_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
