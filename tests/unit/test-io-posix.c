/*
 * test-io-posix.c - the production backend (src/io/io-posix.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "chain-fixture.h"

/* The file every test works on, in the chain fixture's folder (cf_setup
 * makes it, cf_teardown removes it). */
#define FILE_PATH cf_path("f.img")

static ic_io *open_ok(const char *path, unsigned flags)
{
    ic_io *io;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, path, flags, &err), err);
    return io;
}

static void test_io_posix__missing_file_is_enoent_naming_it(void **state)
{
    (void)state;
    ic_io *io = (ic_io *)1;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, FILE_PATH, 0, &err);
    assert_null(io);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_NOTFOUND);
    assert_non_null(strstr(ic_error_message(err), FILE_PATH));
    TU_ASSERT_ERR(ret, err, ENOENT, "f.img: No such file or directory");
    assert_false(ic_io_file_exists(FILE_PATH));
    assert_int_equal(ic_io_file_kind(FILE_PATH), -ENOENT);
}

static void test_io_posix__directory_is_refused_with_eisdir(void **state)
{
    (void)state;
    ic_io *io;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, cf_dir, 0, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    TU_ASSERT_ERR(ret, err, EISDIR, ": is a directory");
    assert_int_equal(ic_io_file_kind(cf_dir), IC_FILE_DIR);
}

static void test_io_posix__create_writes_reads_and_sizes_a_file(void **state)
{
    (void)state;
    ic_io *io = open_ok(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE);
    assert_string_equal(ic_io_name(io), FILE_PATH);
    assert_true(ic_io_posix_fd(io) >= 0);
    uint8_t w[5000], r[6000];
    tu_fill_pattern(w, sizeof(w), 1);
    assert_int_equal(ic_io_pwrite(io, w, sizeof(w), 1000), 0);
    assert_int_equal(ic_io_get_size(io), 6000);
    assert_int_equal(ic_io_pread(io, r, sizeof(r), 0), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(r[i], 0);
    assert_memory_equal(r + 1000, w, sizeof(w));
    /* the op itself: a short count at end of file */
    assert_int_equal(io->ops->pread(io, r, 100, 5950), 50);
    assert_int_equal(ic_io_pread_exact(io, r, 100, 5950), -EIO);
    assert_int_equal(ic_io_flush(io), 0);
    ic_io_close(io);
    assert_true(ic_io_file_exists(FILE_PATH));
    assert_int_equal(ic_io_file_kind(FILE_PATH), IC_FILE_REGULAR);
}

static void test_io_posix__create_never_truncates_and_excl_refuses_existing(void **state)
{
    (void)state;
    assert_int_equal(tu_write_file(FILE_PATH, "hello", 5), 0);
    ic_io *io = open_ok(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE);
    assert_int_equal(ic_io_get_size(io), 5);
    ic_io_close(io);
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, FILE_PATH, IC_IO_RDWR | IC_IO_CREATE | IC_IO_EXCL, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_EXISTS);
    TU_ASSERT_ERR(ret, err, EEXIST, "f.img: File exists");
}

static void test_io_posix__read_only_handle_refuses_writes(void **state)
{
    (void)state;
    assert_int_equal(tu_write_file(FILE_PATH, "hello", 5), 0);
    ic_io *io = open_ok(FILE_PATH, 0);
    assert_int_equal(ic_io_pwrite(io, "x", 1, 0), -EBADF);
    assert_int_equal(ic_io_truncate(io, 0), -EINVAL);
    ic_io_close(io);
}

static void test_io_posix__truncate_and_punch_hole_make_zeroes(void **state)
{
    (void)state;
    ic_io *io = open_ok(FILE_PATH, IC_IO_RDWR | IC_IO_CREATE);
    enum { SZ = 1 << 20 };
    uint8_t *w = malloc(SZ), *r = malloc(SZ);
    memset(w, 0x33, SZ);
    assert_int_equal(ic_io_pwrite(io, w, SZ, 0), 0);
    assert_int_equal(ic_io_flush(io), 0);
    int64_t before = ic_io_allocated_size(io);
    assert_true(before >= SZ);
    assert_int_equal(ic_io_punch_hole(io, 256 * 1024, 512 * 1024), 0);
    assert_int_equal(ic_io_get_size(io), SZ);
    assert_true(ic_io_allocated_size(io) < before);
    assert_int_equal(ic_io_pread(io, r, SZ, 0), 0);
    assert_memory_equal(r, w, 256 * 1024);
    for (int i = 256 * 1024; i < 768 * 1024; i++)
        if (r[i] != 0)
            fail_msg("byte %d not zero after punch_hole", i);
    /* block status sees the hole */
    uint64_t pnum;
    assert_int_equal(ic_io_block_status(io, 0, SZ, &pnum), 1);
    assert_int_equal(pnum, 256 * 1024);
    assert_int_equal(ic_io_block_status(io, 256 * 1024, SZ - 256 * 1024, &pnum), 0);
    assert_int_equal(pnum, 512 * 1024);
    assert_int_equal(ic_io_truncate(io, 4096), 0);
    assert_int_equal(ic_io_truncate(io, 8192), 0);
    assert_int_equal(ic_io_pread(io, r, 8192, 0), 0);
    for (int i = 4096; i < 8192; i++)
        assert_int_equal(r[i], 0);
    ic_io_close(io);
    free(w);
    free(r);
}

static void test_io_posix__remove_deletes_and_reports_missing(void **state)
{
    (void)state;
    assert_int_equal(tu_write_file(FILE_PATH, "x", 1), 0);
    assert_int_equal(ic_io_remove(FILE_PATH), 0);
    assert_false(ic_io_file_exists(FILE_PATH));
    assert_int_equal(ic_io_remove(FILE_PATH), -ENOENT);
}

static void test_io_posix__direct_on_a_file_system_without_o_direct_is_unsupported(void **state)
{
    (void)state;
    ic_io *io;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, "/proc/self/status", IC_IO_DIRECT | IC_IO_NOLOCK, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_UNSUPPORTED);
    TU_ASSERT_ERR(ret, err, EINVAL, "does not support O_DIRECT (-t none)");
}

static void test_io_posix__posix_fd_is_minus_one_for_other_backends(void **state)
{
    (void)state;
    ic_io *m;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&m, "m", &err), err);
    assert_int_equal(ic_io_posix_fd(m), -1);
    assert_int_equal(ic_io_posix_fd(NULL), -1);
    ic_io_close(m);
}

/* Writes 16 MiB in 1 MiB pieces with @flags, flushes, and returns how
 * many of its pages are still cached; checks the bytes read back. */
static size_t write_bulk_and_count_cached(const char *path, unsigned flags)
{
    const size_t piece = (size_t)1 << 20, total = 16 * piece;
    uint8_t *w = malloc(piece), *r = malloc(piece);
    ic_io *io = open_ok(path, IC_IO_RDWR | IC_IO_CREATE | flags);
    for (size_t off = 0; off < total; off += piece) {
        tu_fill_pattern(w, piece, (unsigned)(off / piece) + 1);
        assert_int_equal(ic_io_pwrite(io, w, piece, off), 0);
    }
    assert_int_equal(ic_io_flush(io), 0);
    size_t cached = 0;
    assert_int_equal(tu_cached_pages(path, &cached), 0);
    for (size_t off = 0; off < total; off += piece) {
        tu_fill_pattern(w, piece, (unsigned)(off / piece) + 1);
        assert_int_equal(ic_io_pread(io, r, piece, off), 0);
        assert_memory_equal(r, w, piece);
    }
    assert_int_equal(ic_io_close(io), 0);
    free(w);
    free(r);
    return cached;
}

static void test_io_posix__stream_output_leaves_no_page_cache_after_flush(void **state)
{
    (void)state;
    size_t none;
    if (tu_cached_pages(cf_dir, &none) == -ENOTSUP)
        skip(); /* tmpfs: the page cache is the file */
    char *plain = tu_path(cf_dir, "plain.img");
    /* the control: without the hint the written data stays cached, so the
     * count below measures the hint and not the machine */
    size_t cached_plain = write_bulk_and_count_cached(plain, 0);
    size_t cached_stream = write_bulk_and_count_cached(FILE_PATH, IC_IO_STREAM);
    assert_true(cached_plain > 4096 / 2);
    assert_int_equal(cached_stream, 0);
    free(plain);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, cf_setup, cf_teardown)
    const struct CMUnitTest tests[] = {
        T(test_io_posix__missing_file_is_enoent_naming_it),
        T(test_io_posix__directory_is_refused_with_eisdir),
        T(test_io_posix__create_writes_reads_and_sizes_a_file),
        T(test_io_posix__create_never_truncates_and_excl_refuses_existing),
        T(test_io_posix__read_only_handle_refuses_writes),
        T(test_io_posix__truncate_and_punch_hole_make_zeroes),
        T(test_io_posix__remove_deletes_and_reports_missing),
        T(test_io_posix__direct_on_a_file_system_without_o_direct_is_unsupported),
        T(test_io_posix__posix_fd_is_minus_one_for_other_backends),
        T(test_io_posix__stream_output_leaves_no_page_cache_after_flush),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
