/*
 * test-io-posix.c - the production backend (src/io/io-posix.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "util/bigbuf.h"

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

/* ---- IC_IO_MISS_DIRECT (src/io/io-posix.c note 11) ---------------------- */

/* Whether this machine can show the hint at work: a page cache apart from
 * the file (not tmpfs), O_DIRECT in cf_dir and cachestat(2) in the kernel. */
static bool miss_direct_observable(void)
{
    size_t none;
    if (tu_cached_pages(cf_dir, &none) == -ENOTSUP)
        return false;
    int fd = open(FILE_PATH, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct { uint64_t off, len; } r = { 0, 4096 };
    uint64_t cs[5];
    bool ok = syscall(451 /* cachestat */, fd, &r, cs, 0) == 0;
    close(fd);
    return ok;
}

static void evict(void)
{
    int fd = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    size_t cached = 99;
    assert_int_equal(tu_cached_pages(FILE_PATH, &cached), 0);
    assert_int_equal(cached, 0);
}

/* @size bytes of pattern @seed in FILE_PATH, on the disk and not cached;
 * skips the test where the hint cannot be observed. */
static void make_uncached(size_t size, uint64_t seed)
{
    uint8_t *w = malloc(size);
    tu_fill_pattern(w, size, seed);
    assert_int_equal(tu_write_file(FILE_PATH, w, size), 0);
    free(w);
    if (!miss_direct_observable())
        skip();
    evict();
}

static size_t cached_pages(void)
{
    size_t n = 0;
    assert_int_equal(tu_cached_pages(FILE_PATH, &n), 0);
    return n;
}

/* Reads [off, off+len) of FILE_PATH (pattern @seed, @size bytes) through
 * a handle opened with @flags into @buf and checks the bytes; zeroes past
 * the end. */
static void read_check(unsigned flags, uint8_t *buf, size_t len, uint64_t off, size_t size,
                       uint64_t seed)
{
    uint8_t *want = calloc(1, off + len > size ? off + len : size);
    tu_fill_pattern(want, size, seed);
    ic_io *io = open_ok(FILE_PATH, flags);
    assert_int_equal(ic_io_pread(io, buf, len, off), 0);
    assert_memory_equal(buf, want + off, len);
    assert_int_equal(ic_io_close(io), 0);
    free(want);
}

static void test_io_posix__a_large_read_of_uncached_data_goes_around_the_page_cache(void **state)
{
    (void)state;
    const size_t size = (size_t)8 << 20, len = (size_t)2 << 20;
    make_uncached(size, 3);
    uint8_t *buf = ic_bigbuf_alloc(len);
    /* the control: without the hint the read fills the page cache */
    read_check(0, buf, len, len, size, 3);
    assert_true(cached_pages() >= len / 4096);
    evict();
    read_check(IC_IO_MISS_DIRECT, buf, len, len, size, 3);
    assert_int_equal(cached_pages(), 0);
    ic_bigbuf_free(buf, len);
}

static void test_io_posix__small_unaligned_or_partly_cached_reads_go_through_the_page_cache(void **state)
{
    (void)state;
    const size_t size = (size_t)8 << 20, len = (size_t)2 << 20;
    make_uncached(size, 4);
    uint8_t *buf = ic_bigbuf_alloc(len + 4096);
    /* small: metadata-sized reads stay buffered */
    read_check(IC_IO_MISS_DIRECT, buf, 64 << 10, 0, size, 4);
    assert_true(cached_pages() > 0);
    evict();
    /* a buffer that is not block-aligned cannot go direct */
    read_check(IC_IO_MISS_DIRECT, buf + 512, len, 0, size, 4);
    assert_true(cached_pages() >= len / 4096);
    evict();
    /* one cached page in the range: the whole read goes through the cache */
    read_check(0, buf, 4096, (uint64_t)4 << 20, size, 4);
    size_t before = cached_pages();
    read_check(IC_IO_MISS_DIRECT, buf, len, (uint64_t)4 << 20, size, 4);
    assert_true(cached_pages() >= before + len / 4096 - 1);
    ic_bigbuf_free(buf, len + 4096);
}

static void test_io_posix__a_direct_read_across_the_unaligned_end_returns_the_bytes_up_to_it(void **state)
{
    (void)state;
    const size_t size = ((size_t)3 << 20) + 100, len = (size_t)2 << 20;
    make_uncached(size, 5);
    uint8_t *buf = ic_bigbuf_alloc(len);
    /* [2 MiB, 4 MiB): 1 MiB + 100 bytes of data, then zeroes */
    read_check(IC_IO_MISS_DIRECT, buf, len, len, size, 5);
    assert_int_equal(cached_pages(), 0);
    /* the short read did not turn the hint off */
    read_check(IC_IO_MISS_DIRECT, buf, len, 0, size, 5);
    assert_int_equal(cached_pages(), 0);
    ic_bigbuf_free(buf, len);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, cf_setup, cf_teardown)
    const struct CMUnitTest tests[] = {
        T(test_io_posix__missing_file_is_enoent_naming_it),
        T(test_io_posix__a_large_read_of_uncached_data_goes_around_the_page_cache),
        T(test_io_posix__small_unaligned_or_partly_cached_reads_go_through_the_page_cache),
        T(test_io_posix__a_direct_read_across_the_unaligned_end_returns_the_bytes_up_to_it),
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
