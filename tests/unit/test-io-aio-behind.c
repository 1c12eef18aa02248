/*
 * test-io-aio-behind.c - write-behind on the aio backend (ic_io_aio_lend,
 * src/io/io-aio.c invariants 6 and 7): lent buffers go to worker threads
 * and come back exactly once; the calls still take effect in order; the
 * file's reservation is invisible and cut off; small writes go through
 * the page cache, coherently; errors of lent writes reach the caller; and
 * the convert engine lends its slot buffers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/chain.h"
#include "io/io-aio.h"

#define CHUNK ((size_t)256 << 10)
#define NBUF 8

/* The file every test works on, in the chain fixture's folder (cf_setup
 * makes it, cf_teardown removes it). */
#define FILE_PATH cf_path("data.img")

/* A lender of NBUF buffers that counts holds and releases per buffer;
 * a buffer is reused only once it came back. */
struct lender {
    pthread_mutex_t lock;
    pthread_cond_t back;
    uint8_t *bufs[NBUF];
    unsigned out[NBUF];   /* held and not yet released */
    unsigned holds, releases, foreign;
    bool refuse;          /* hold() says no */
};

static int buf_index(struct lender *l, const void *p)
{
    for (int i = 0; i < NBUF; i++)
        if (l->bufs[i] == p)
            return i;
    return -1;
}

static bool l_hold(void *payload, const void *buf, size_t len)
{
    struct lender *l = payload;
    (void)len;
    pthread_mutex_lock(&l->lock);
    int i = buf_index(l, buf);
    bool ok = !l->refuse && i >= 0;
    if (ok) {
        l->out[i]++;
        l->holds++;
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

static void l_release(void *payload, const void *buf)
{
    struct lender *l = payload;
    pthread_mutex_lock(&l->lock);
    int i = buf_index(l, buf);
    if (i < 0)
        l->foreign++;
    else
        l->out[i]--;
    l->releases++;
    pthread_cond_broadcast(&l->back);
    pthread_mutex_unlock(&l->lock);
}

static void lender_init(struct lender *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->back, NULL);
    for (int i = 0; i < NBUF; i++)
        assert_int_equal(posix_memalign((void **)&l->bufs[i], 4096, CHUNK), 0);
}

static void lender_fini(struct lender *l)
{
    for (int i = 0; i < NBUF; i++)
        free(l->bufs[i]);
    pthread_cond_destroy(&l->back);
    pthread_mutex_destroy(&l->lock);
}

/* Waits until buffer @i is back, then fills it for chunk @n. */
static uint8_t *take(struct lender *l, int i, uint64_t n)
{
    pthread_mutex_lock(&l->lock);
    while (l->out[i])
        pthread_cond_wait(&l->back, &l->lock);
    pthread_mutex_unlock(&l->lock);
    tu_fill_pattern(l->bufs[i], CHUNK, 1000 + n);
    return l->bufs[i];
}

/* Opens @path O_DIRECT on the aio backend; false (test skipped) where the
 * file system refuses O_DIRECT. */
static bool open_direct(ic_io **io, const char *path, unsigned flags)
{
    ic_error *err = NULL;
    int ret = ic_io_open_aio(io, path, IC_IO_RDWR | IC_IO_DIRECT | flags, &err);
    if (ret == -EINVAL && ic_error_kind_of(err) == IC_ERR_UNSUPPORTED) {
        ic_error_free(err);
        return false;
    }
    TU_ASSERT_OK(ret, err);
    return true;
}

/* A new file on the O_DIRECT aio backend with lender @l attached (the
 * test is skipped where the file system refuses O_DIRECT). */
static ic_io *open_lent(const char *path, struct lender *l)
{
    ic_io *io;
    if (!open_direct(&io, path, IC_IO_CREATE))
        skip();
    lender_init(l);
    const struct ic_io_lender cb = { l_hold, l_release, l };
    assert_int_equal(ic_io_aio_lend(io, &cb), 0);
    return io;
}

static void assert_file_is_chunks(const char *path, uint64_t nchunks)
{
    uint8_t *data;
    size_t len;
    assert_int_equal(tu_read_file(path, &data, &len), 0);
    assert_int_equal(len, nchunks * CHUNK);
    uint8_t *want = malloc(CHUNK);
    for (uint64_t n = 0; n < nchunks; n++) {
        tu_fill_pattern(want, CHUNK, 1000 + n);
        assert_memory_equal(data + n * CHUNK, want, CHUNK);
    }
    free(want);
    free(data);
}

static void test_behind__lent_writes_go_behind_and_every_buffer_comes_back_once(void **state)
{
    (void)state;
    struct lender l;
    ic_io *io = open_lent(FILE_PATH, &l);
    const uint64_t n = 64;
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(ic_io_pwrite(io, take(&l, (int)(i % NBUF), i), CHUNK, i * CHUNK), 0);
    assert_int_equal(ic_io_flush(io), 0);
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(io, &st));
    assert_int_equal(st.behind_writes, n);
    assert_true(st.behind_max_in_flight >= 2); /* really in parallel */
    assert_true(st.behind_max_in_flight <= IC_AIO_BEHIND_DEPTH);
    /* flush waited for all of them: every buffer is back, once */
    assert_int_equal(l.holds, n);
    assert_int_equal(l.releases, n);
    assert_int_equal(l.foreign, 0);
    for (int i = 0; i < NBUF; i++)
        assert_int_equal(l.out[i], 0);
    assert_int_equal(ic_io_aio_lend(io, NULL), 0);
    assert_int_equal(ic_io_close(io), 0);
    assert_file_is_chunks(FILE_PATH, n);
    lender_fini(&l);
}

static void test_behind__the_reservation_is_invisible_and_cut_off_at_flush(void **state)
{
    (void)state;
    struct lender l;
    ic_io *io = open_lent(FILE_PATH, &l);
    for (uint64_t i = 0; i < 3; i++)
        assert_int_equal(ic_io_pwrite(io, take(&l, (int)i, i), CHUNK, i * CHUNK), 0);
    /* the size as written, while the file itself is longer */
    assert_int_equal(ic_io_get_size(io), (int64_t)(3 * CHUNK));
    struct stat sb;
    assert_int_equal(stat(FILE_PATH, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, IC_AIO_BEHIND_RESERVE);
    /* a read past the size as written is short, as at end of file */
    uint8_t *r;
    assert_int_equal(posix_memalign((void **)&r, 4096, 2 * CHUNK), 0);
    assert_int_equal(ic_io_pread(io, r, 2 * CHUNK, 2 * CHUNK), 0);
    uint8_t *want = malloc(CHUNK);
    tu_fill_pattern(want, CHUNK, 1002);
    assert_memory_equal(r, want, CHUNK);
    for (size_t k = CHUNK; k < 2 * CHUNK; k++)
        assert_int_equal(r[k], 0);
    assert_int_equal(ic_io_flush(io), 0);
    assert_int_equal(stat(FILE_PATH, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, 3 * CHUNK);
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(io, &st));
    assert_int_equal(st.reserve_steps, 1);
    /* close cuts it off too, without a flush */
    assert_int_equal(ic_io_pwrite(io, take(&l, 3, 3), CHUNK, 3 * CHUNK), 0);
    assert_int_equal(ic_io_close(io), 0);
    assert_file_is_chunks(FILE_PATH, 4);
    free(want);
    free(r);
    lender_fini(&l);
}

static void test_behind__later_reads_and_small_overlapping_writes_see_a_lent_write(void **state)
{
    (void)state;
    struct lender l;
    ic_io *io = open_lent(FILE_PATH, &l);
    uint8_t *r, *want = malloc(CHUNK);
    assert_int_equal(posix_memalign((void **)&r, 4096, CHUNK), 0); /* reads need no bounce */
    for (uint64_t round = 0; round < 16; round++) {
        uint64_t off = round * CHUNK;
        assert_int_equal(ic_io_pwrite(io, take(&l, (int)(round % NBUF), round), CHUNK, off), 0);
        /* an unaligned synchronous write into the middle of it lands last */
        assert_int_equal(ic_io_pwrite(io, "overwritten", 11, off + 1000), 0);
        tu_fill_pattern(want, CHUNK, 1000 + round);
        memcpy(want + 1000, "overwritten", 11);
        assert_int_equal(ic_io_pread(io, r, CHUNK, off), 0);
        assert_memory_equal(r, want, CHUNK);
    }
    /* the small writes went through the page cache (invariant 8), not
     * through a read-modify-write of O_DIRECT blocks */
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(io, &st));
    assert_int_equal(st.cached_writes, 16);
    assert_int_equal(st.bounced, 0);
    assert_int_equal(ic_io_close(io), 0);
    assert_int_equal(l.releases, l.holds);
    /* and they are in the file, after the lent writes they overlap */
    uint8_t *data;
    size_t flen;
    assert_int_equal(tu_read_file(FILE_PATH, &data, &flen), 0);
    assert_int_equal(flen, 16 * CHUNK);
    for (uint64_t round = 0; round < 16; round++) {
        tu_fill_pattern(want, CHUNK, 1000 + round);
        memcpy(want + 1000, "overwritten", 11);
        assert_memory_equal(data + round * CHUNK, want, CHUNK);
    }
    free(data);
    free(r);
    free(want);
    lender_fini(&l);
}

static void test_behind__a_buffer_the_lender_refuses_is_written_at_once(void **state)
{
    (void)state;
    struct lender l;
    ic_io *io = open_lent(FILE_PATH, &l);
    l.refuse = true;
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(ic_io_pwrite(io, take(&l, (int)i, i), CHUNK, i * CHUNK), 0);
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(io, &st));
    assert_int_equal(st.behind_writes, 0);
    assert_int_equal(l.releases, 0);
    assert_int_equal(ic_io_close(io), 0);
    assert_file_is_chunks(FILE_PATH, 4);
    lender_fini(&l);
}

static void test_behind__a_failed_lent_write_reaches_the_next_call_and_detach(void **state)
{
    (void)state;
    struct lender l;
    ic_io *io = open_lent(FILE_PATH, &l);
    /* a lent buffer the kernel cannot read: the worker's pwrite fails */
    uint8_t *bad = mmap(NULL, CHUNK, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(bad != MAP_FAILED);
    free(l.bufs[0]);
    l.bufs[0] = bad;
    assert_int_equal(ic_io_pwrite(io, bad, CHUNK, 0), 0); /* accepted: behind */
    assert_int_equal(ic_io_flush(io), -EFAULT);
    assert_int_equal(l.releases, 1); /* given back all the same */
    assert_int_equal(ic_io_pwrite(io, take(&l, 1, 1), CHUNK, CHUNK), -EFAULT);
    assert_int_equal(l.releases, 2); /* refused and given back */
    assert_int_equal(ic_io_aio_lend(io, NULL), -EFAULT);
    assert_int_equal(l.releases, l.holds);
    /* detached: the backend works as before */
    assert_int_equal(ic_io_pwrite(io, take(&l, 2, 0), CHUNK, 0), 0);
    assert_int_equal(ic_io_close(io), 0);
    l.bufs[0] = NULL;
    munmap(bad, CHUNK);
    lender_fini(&l);
}

static void test_behind__only_an_o_direct_aio_backend_takes_a_lender(void **state)
{
    (void)state;
    struct lender l;
    lender_init(&l);
    const struct ic_io_lender cb = { l_hold, l_release, &l };
    ic_io *io;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, FILE_PATH, IC_IO_RDWR | IC_IO_CREATE, &err), err);
    assert_int_equal(ic_io_aio_lend(io, &cb), -ENOTSUP);
    ic_io_close(io);
    TU_ASSERT_OK(ic_io_open_aio(&io, FILE_PATH, IC_IO_RDWR, &err), err);
    assert_int_equal(ic_io_aio_lend(io, &cb), -ENOTSUP); /* buffered */
    ic_io_close(io);
    if (open_direct(&io, FILE_PATH, 0)) {
        assert_int_equal(ic_io_aio_lend(io, &cb), 0);
        assert_int_equal(ic_io_aio_lend(io, &cb), -EBUSY);
        assert_int_equal(ic_io_aio_lend(io, NULL), 0);
        assert_int_equal(ic_io_aio_lend(io, NULL), 0); /* nothing attached */
        ic_io_close(io);
    }
    lender_fini(&l);
}

/* The copy engine (src/chain/chain-convert.c design note 5) lends its slots to a
 * target on an O_DIRECT aio backend: the copy goes behind, the result is
 * exact, and the target is no longer than its data. */
static void test_behind__the_copy_engine_writes_a_direct_target_behind(void **state)
{
    (void)state;
    char *src_path = tu_path(cf_dir, "src.qcow2");
    char *dst_path = tu_path(cf_dir, "dst.qcow2");
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = 64 << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(src_path, &co, &err), err);
    TU_ASSERT_OK(ic_image_create(dst_path, &co, &err), err);
    ic_image *src;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    TU_ASSERT_OK(ic_image_open(&src, src_path, &oo, &err), err);
    uint8_t *data = malloc(24 << 20);
    tu_fill_pattern(data, 24 << 20, 5);
    TU_ASSERT_OK(ic_image_pwrite(src, data, 24 << 20, 8 << 20, &err), err);
    ic_image_close(src);
    oo.flags = 0;
    TU_ASSERT_OK(ic_image_open(&src, src_path, &oo, &err), err);

    ic_io *file;
    if (!open_direct(&file, dst_path, 0))
        skip();
    ic_image *dst;
    ic_open_options dop = IC_OPEN_OPTIONS_INIT;
    dop.format = "qcow2";
    dop.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING;
    dop.cache = IC_CACHE_NONE;
    TU_ASSERT_OK(ic_image_open_io(&dst, file, &dop, &err), err);
    TU_ASSERT_OK(ic_image_copy(dst, src, NULL, &err), err);
    struct ic_io_stats st;
    assert_true(ic_io_aio_get_stats(file, &st));
    assert_true(st.behind_writes >= 12 - 1); /* 24 MiB in 2 MiB windows */
    assert_true(st.behind_max_in_flight >= 1);
    uint8_t *r = malloc(24 << 20);
    TU_ASSERT_OK(ic_image_pread(dst, r, 24 << 20, 8 << 20, &err), err);
    assert_memory_equal(r, data, 24 << 20);
    assert_int_equal(ic_image_close(dst), 0);
    ic_image_close(src);
    if (tu_have_prog("qemu-img")) {
        assert_int_equal(tu_sh("qemu-img check -q '%s'", dst_path), 0);
        assert_int_equal(tu_sh("qemu-img compare -q '%s' '%s'", src_path, dst_path), 0);
    }
    struct stat sb;
    assert_int_equal(stat(dst_path, &sb), 0);
    assert_true((uint64_t)sb.st_size < (24u << 20) + (2u << 20)); /* no reservation left */
    free(r);
    free(data);
    free(src_path);
    free(dst_path);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, cf_setup, cf_teardown)
    const struct CMUnitTest tests[] = {
        T(test_behind__lent_writes_go_behind_and_every_buffer_comes_back_once),
        T(test_behind__the_reservation_is_invisible_and_cut_off_at_flush),
        T(test_behind__later_reads_and_small_overlapping_writes_see_a_lent_write),
        T(test_behind__a_buffer_the_lender_refuses_is_written_at_once),
        T(test_behind__a_failed_lent_write_reaches_the_next_call_and_detach),
        T(test_behind__only_an_o_direct_aio_backend_takes_a_lender),
        T(test_behind__the_copy_engine_writes_a_direct_target_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
