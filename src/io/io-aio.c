/*
 * io-aio.c - libaio backend for bulk data movement (convert, commit).
 *
 * Design notes:
 *  The backend sits on a POSIX backend opened by ic_io_open_file(): that one
 *  owns the descriptor, the O_DIRECT open (and its clear "the file system
 *  does not support O_DIRECT" error) and the qemu-compatible locks
 *  (io-lock.c's ic_lock_apply, same bytes as every other imgchain open).
 *  Flush, truncate, size, holes, block status and locking are passed to it;
 *  this file owns only the data path: pread, pwrite and batches.
 *
 *  Invariants:
 *   1. A batch (aio_submit) has the effect of running its requests in array
 *      order: a request that overlaps an in-flight one (where either
 *      writes) waits until the in-flight ones complete.  Non-overlapping
 *      requests run concurrently, up to IC_AIO_QUEUE_DEPTH in flight.
 *   2. With IC_IO_DIRECT, requests whose buffer, offset and length are
 *      aligned (`align`, from statx STATX_DIOALIGN, at least 4096) go to
 *      the device as they are.  Unaligned ones go through a bounce buffer
 *      covering the aligned range: reads copy out their part; writes read
 *      the partial head/tail blocks first (read-modify-write), write the
 *      aligned range, and truncate the file back if the aligned write went
 *      past the old end of file.  A bounced write runs alone (nothing in
 *      flight): its read-modify-write and size fix-up must not race.
 *   3. Reads fill the whole buffer; bytes past end of file read as zeroes
 *      (like ic_io_pread).  A short completion is finished synchronously.
 *   4. Without an aio context (io_setup refused: aio-max-nr reached, or
 *      IC_AIO_SYNC) every request runs synchronously with the same
 *      semantics: the backend degrades, it never fails for that reason.
 *   5. Every request's ret is set; the batch returns the first failure in
 *      array order, or 0.
 *   6. Write-behind (ic_io_aio_lend, O_DIRECT only): a large aligned pwrite
 *      whose buffer the lender lets us keep is queued to worker threads
 *      and pwrite returns at once; the worker that wrote it hands the
 *      buffer back with the lender's release().  Up to IC_AIO_BEHIND_DEPTH
 *      are in flight.  The effect is still that of running the calls in
 *      order: a later write, read or batch that overlaps a lent write in
 *      flight waits for it, and flush, truncate, punch, block status and
 *      detach wait for all of them.  A failed lent write is kept and returned by the next call
 *      (pwrite, flush, truncate, detach): the caller learns of it before
 *      it can believe the data durable.
 *   7. While lending, the file grows ahead of the writes in steps of
 *      IC_AIO_BEHIND_RESERVE and more (an O_DIRECT write that extends the
 *      file runs synchronously on ext4 and XFS, which would leave one
 *      write in flight).  The reservation is invisible: get_size and reads see the
 *      size as written, and flush, truncate, detach and close cut the file
 *      back to it, so on disk the file is never longer after a flush.
 *      Why the copy engines use it: a lent write costs the caller no copy
 *      into the page cache (a copy into fresh pages, which a virtual
 *      machine's host may have to fault in, makes the writer the
 *      bottleneck of a convert).
 *   8. While lending, writes shorter than IC_AIO_BEHIND_MIN (a format's
 *      metadata: a QED L2 update after every data write) go through the
 *      page cache, on a second description of the same file opened
 *      without O_DIRECT: synchronous O_DIRECT made each a device round
 *      trip (or a read-modify-write when unaligned) on the writer's path,
 *      and convert -O qed paid 450 of them per GiB.  The kernel keeps
 *      both views coherent (an O_DIRECT read or write first writes back
 *      and drops the cached pages of its range), and flush's fdatasync
 *      covers the inode's pages whichever description wrote them.
 *  The I/O vtable is described in docs/architecture.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io.h"
#include "io-aio.h"
#include "util/compiler.h"
#include "util/error.h"
#include "util/overflow.h"

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

/* Largest alignment accepted from statx: larger values are not real device
 * constraints, and bounce buffers grow with it. */
#define AIO_MAX_ALIGN (1u << 20)

struct behind;

struct io_aio {
    ic_io base;
    struct behind *behind; /* write-behind state while a lender is attached */
    ic_io *posix;          /* owns fd, O_DIRECT open and locks */
    int fd;
    io_context_t ctx;
    bool have_ctx;
    bool want_ctx;         /* set up the context at the first batch */
    bool direct;
    uint32_t align;        /* offset/length alignment (1 when buffered) */
    uint32_t mem_align;    /* buffer alignment (1 when buffered) */
    struct ic_io_stats stats;
};

static const struct ic_io_ops aio_ops;

static struct io_aio *to_aio(ic_io *io)
{
    return (struct io_aio *)io;
}

static bool req_aligned(const struct io_aio *a, const void *buf, size_t len, uint64_t off)
{
    if (!a->direct)
        return true;
    return ((uintptr_t)buf % a->mem_align) == 0 && off % a->align == 0 && len % a->align == 0;
}

/* ---- synchronous data path -------------------------------------------- */

static void *bounce_alloc(const struct io_aio *a, size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, IC_MAX(a->mem_align, (uint32_t)sizeof(void *)), len ? len : a->align))
        return NULL;
    return p;
}

/* Aligned range [*a0, *a1) around [off, off+len). */
static int aligned_range(const struct io_aio *a, uint64_t off, size_t len, uint64_t *a0,
                         uint64_t *a1)
{
    uint64_t end;
    if (ic_add_overflow(off, (uint64_t)len, &end) || end > UINT64_MAX - a->align)
        return -EINVAL;
    *a0 = IC_ALIGN_DOWN(off, (uint64_t)a->align);
    *a1 = IC_ALIGN_UP(end, (uint64_t)a->align);
    if (*a1 - *a0 > SIZE_MAX / 2)
        return -EINVAL;
    return 0;
}

/* Reads exactly len bytes (zeroes past EOF) through a bounce buffer. */
static int bounce_read(struct io_aio *a, void *buf, size_t len, uint64_t off)
{
    uint64_t a0, a1;
    int ret = aligned_range(a, off, len, &a0, &a1);
    if (ret < 0)
        return ret;
    uint8_t *b = bounce_alloc(a, (size_t)(a1 - a0));
    if (!b)
        return -ENOMEM;
    a->stats.bounced++;
    int64_t n = ic_fd_pread_full(a->fd, b, (size_t)(a1 - a0), a0);
    if (n < 0) {
        free(b);
        return (int)n;
    }
    memset(b + n, 0, (size_t)(a1 - a0 - (uint64_t)n));
    memcpy(buf, b + (off - a0), len);
    free(b);
    return 0;
}

/* Read-modify-write of the aligned blocks around [off, off+len). */
static int bounce_write(struct io_aio *a, const void *buf, size_t len, uint64_t off)
{
    uint64_t a0, a1;
    int ret = aligned_range(a, off, len, &a0, &a1);
    if (ret < 0)
        return ret;
    int64_t old_size = ic_io_get_size(a->posix);
    if (old_size < 0)
        return (int)old_size;
    size_t blen = (size_t)(a1 - a0);
    uint8_t *b = bounce_alloc(a, blen);
    if (!b)
        return -ENOMEM;
    a->stats.bounced++;
    memset(b, 0, blen);
    /* head and tail blocks keep their bytes outside [off, off+len) */
    if (off != a0) {
        int64_t n = ic_fd_pread_full(a->fd, b, a->align, a0);
        ret = n < 0 ? (int)n : 0;
    }
    if (ret == 0 && off + len != a1 && (a1 - a->align != a0 || off == a0)) {
        int64_t n = ic_fd_pread_full(a->fd, b + blen - a->align, a->align, a1 - a->align);
        ret = n < 0 ? (int)n : 0;
    }
    if (ret == 0) {
        memcpy(b + (off - a0), buf, len);
        ret = ic_fd_pwrite_full(a->fd, b, blen, a0);
    }
    free(b);
    /* the aligned write may have gone past the intended end of file */
    if (ret == 0 && a1 > (uint64_t)old_size && off + len < a1)
        ret = ic_io_truncate(a->posix, IC_MAX((uint64_t)old_size, off + len));
    return ret;
}

static int sync_read(struct io_aio *a, void *buf, size_t len, uint64_t off)
{
    a->stats.sync_requests++;
    if (!req_aligned(a, buf, len, off))
        return bounce_read(a, buf, len, off);
    int64_t n = ic_fd_pread_full(a->fd, buf, len, off);
    if (n < 0)
        return (int)n;
    memset((uint8_t *)buf + n, 0, len - (size_t)n);
    return 0;
}

static int sync_write(struct io_aio *a, const void *buf, size_t len, uint64_t off)
{
    a->stats.sync_requests++;
    if (!req_aligned(a, buf, len, off))
        return bounce_write(a, buf, len, off);
    return ic_fd_pwrite_full(a->fd, buf, len, off);
}

/* ---- write-behind (invariants 6 and 7) ------------------------------------ */

static bool overlaps(uint64_t o1, uint64_t l1, uint64_t o2, uint64_t l2)
{
    return o1 < o2 + l2 && o2 < o1 + l1;
}

enum behind_state { BEHIND_FREE = 0, BEHIND_QUEUED, BEHIND_RUNNING };

struct behind_req {
    const void *buf;
    uint64_t off;
    size_t len;
    enum behind_state state;
};

/* Lent writes run on IC_AIO_BEHIND_DEPTH worker threads, each a plain
 * O_DIRECT pwrite (qemu's aio=threads).  An aio context would do the
 * same, but io_destroy waits for an RCU grace period at every close,
 * which can take longer than the whole copy of a small image. */
struct behind {
    struct ic_io_lender lender;
    int fd;                     /* the backend's (O_DIRECT) */
    int cache_fd;               /* the same file without O_DIRECT, or -1 */
    pthread_t workers[IC_AIO_BEHIND_DEPTH];
    unsigned nworkers;
    pthread_mutex_t lock;       /* guards what follows up to `error` */
    pthread_cond_t work;        /* workers: a request was queued, or quit */
    pthread_cond_t done;        /* the caller: a request finished */
    struct behind_req reqs[IC_AIO_BEHIND_DEPTH];
    unsigned in_flight;         /* queued or running */
    bool quit;
    int error;                  /* first failure of a lent write */
    /* the caller's thread only: */
    uint64_t logical;           /* the file's size as written */
    uint64_t physical;          /* its real size (> logical while reserved) */
};

static bool behind_overlaps(const struct behind *b, uint64_t off, uint64_t len)
{
    for (unsigned i = 0; i < IC_AIO_BEHIND_DEPTH; i++)
        if (b->reqs[i].state != BEHIND_FREE && overlaps(b->reqs[i].off, b->reqs[i].len, off, len))
            return true;
    return false;
}

/* Waits until no lent write overlaps [off, off+len); the kept error. */
static int behind_wait(struct behind *b, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&b->lock);
    while (behind_overlaps(b, off, len))
        pthread_cond_wait(&b->done, &b->lock);
    int err = b->error;
    pthread_mutex_unlock(&b->lock);
    return err;
}

/* Waits for every lent write; the kept error. */
static int behind_drain(struct behind *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->in_flight)
        pthread_cond_wait(&b->done, &b->lock);
    int err = b->error;
    pthread_mutex_unlock(&b->lock);
    return err;
}

/* Cuts the reservation off (invariant 7); with nothing in flight. */
static int behind_trim(struct io_aio *a)
{
    struct behind *b = a->behind;
    if (b->physical <= b->logical)
        return 0;
    int ret = ic_io_truncate(a->posix, b->logical);
    if (ret == 0)
        b->physical = b->logical;
    return ret;
}

static void *behind_worker(void *opaque)
{
    struct behind *b = opaque;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        struct behind_req *r = NULL;
        for (unsigned i = 0; i < IC_AIO_BEHIND_DEPTH && !r; i++)
            if (b->reqs[i].state == BEHIND_QUEUED)
                r = &b->reqs[i];
        if (!r) {
            if (b->quit)
                break;
            pthread_cond_wait(&b->work, &b->lock);
            continue;
        }
        r->state = BEHIND_RUNNING;
        pthread_mutex_unlock(&b->lock);
        int err = ic_fd_pwrite_full(b->fd, r->buf, r->len, r->off);
        /* hand the buffer back before the request stops counting, so
         * that a drained backend has no release() left to make */
        b->lender.release(b->lender.payload, r->buf);
        pthread_mutex_lock(&b->lock);
        if (err && !b->error)
            b->error = err;
        r->state = BEHIND_FREE;
        b->in_flight--;
        pthread_cond_broadcast(&b->done);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* A held buffer goes behind; when it cannot (a kept error, the
 * reservation failed) it is released here and the error returned. */
static int behind_write(struct io_aio *a, const void *buf, size_t len, uint64_t off,
                        uint64_t end)
{
    struct behind *b = a->behind;
    pthread_mutex_lock(&b->lock);
    while (!b->error && (b->in_flight == b->nworkers || behind_overlaps(b, off, len)))
        pthread_cond_wait(&b->done, &b->lock);
    int ret = b->error;
    pthread_mutex_unlock(&b->lock);
    if (ret == 0 && end > b->physical) {
        /* growing the file waits for every O_DIRECT write in flight (ext4
         * and XFS drain them before a size change), so it grows in steps
         * that double up to IC_AIO_BEHIND_RESERVE_MAX: five pauses for a
         * 1 GiB output instead of sixteen */
        uint64_t step = IC_MIN(IC_MAX(IC_AIO_BEHIND_RESERVE, b->physical),
                               IC_AIO_BEHIND_RESERVE_MAX);
        uint64_t to = IC_ALIGN_UP(IC_MAX(end, b->physical + step), IC_AIO_BEHIND_RESERVE);
        ret = ic_io_truncate(a->posix, to);
        if (ret == 0) {
            b->physical = to;
            a->stats.reserve_steps++;
        }
    }
    if (ret < 0) {
        b->lender.release(b->lender.payload, buf);
        return ret;
    }
    pthread_mutex_lock(&b->lock);
    struct behind_req *r = NULL;
    for (unsigned i = 0; i < IC_AIO_BEHIND_DEPTH && !r; i++)
        if (b->reqs[i].state == BEHIND_FREE)
            r = &b->reqs[i];
    *r = (struct behind_req){ .buf = buf, .off = off, .len = len, .state = BEHIND_QUEUED };
    b->in_flight++;
    if (b->in_flight > a->stats.behind_max_in_flight)
        a->stats.behind_max_in_flight = b->in_flight;
    a->stats.behind_writes++;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

/* Stops the workers (none when @b never started them) and frees @b. */
static void behind_free(struct behind *b)
{
    pthread_mutex_lock(&b->lock);
    b->quit = true;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    for (unsigned i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i], NULL);
    pthread_cond_destroy(&b->done);
    pthread_cond_destroy(&b->work);
    pthread_mutex_destroy(&b->lock);
    if (b->cache_fd >= 0)
        close(b->cache_fd);
    free(b);
}

/* A second open file description of @fd's file without O_DIRECT (through
 * /proc/self/fd, so it is the same inode whatever happened to the name);
 * -1 where that is not possible.  It takes no lock: the backend's own
 * description holds them for as long as both are open. */
static int reopen_cached(int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int cfd = open(path, O_RDWR | O_CLOEXEC);
    if (cfd < 0)
        return -1;
    struct stat a, b;
    if (fstat(fd, &a) < 0 || fstat(cfd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
        close(cfd);
        return -1;
    }
    return cfd;
}

static int behind_detach(struct io_aio *a)
{
    struct behind *b = a->behind;
    int ret = behind_drain(b);
    int tret = behind_trim(a);
    a->behind = NULL;
    behind_free(b);
    return ret ? ret : tret;
}

int ic_io_aio_copy_fd(ic_io *io)
{
    if (!io || io->ops != &aio_ops)
        return -1;
    struct io_aio *a = to_aio(io);
    return a->behind && a->behind->cache_fd >= 0 ? a->behind->cache_fd : a->fd;
}

int ic_io_aio_lend(ic_io *io, const struct ic_io_lender *lender)
{
    if (!io || io->ops != &aio_ops)
        return -ENOTSUP;
    struct io_aio *a = to_aio(io);
    if (!lender)
        return a->behind ? behind_detach(a) : 0;
    if (!a->direct || !lender->hold || !lender->release)
        return -ENOTSUP;
    if (a->behind)
        return -EBUSY;
    int64_t size = ic_io_get_size(a->posix);
    if (size < 0)
        return (int)size;
    struct behind *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->lender = *lender;
    b->fd = a->fd;
    b->cache_fd = reopen_cached(a->fd);
    b->logical = b->physical = (uint64_t)size;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done, NULL);
    a->behind = b;
    for (; b->nworkers < IC_AIO_BEHIND_DEPTH; b->nworkers++) {
        int terr = pthread_create(&b->workers[b->nworkers], NULL, behind_worker, b);
        if (terr != 0) {
            if (b->nworkers > 0)
                break; /* fewer in flight, still behind */
            a->behind = NULL;
            behind_free(b);
            return -terr;
        }
    }
    return 0;
}

/* ---- vtable data ops ----------------------------------------------------- */

static int64_t aio_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct io_aio *a = to_aio(io);
    uint64_t end = 0;
    if (a->behind) {
        if (ic_add_overflow(off, (uint64_t)len, &end))
            return -EINVAL;
        (void)behind_wait(a->behind, off, len); /* a write error is not this read's */
    }
    /* with a reservation, the file's real end is past the size as written */
    if (req_aligned(a, buf, len, off) && (!a->behind || end <= a->behind->logical)) {
        a->stats.sync_requests++;
        return ic_fd_pread_full(a->fd, buf, len, off); /* short only at EOF */
    }
    int64_t size = a->behind ? (int64_t)a->behind->logical : ic_io_get_size(a->posix);
    if (size < 0)
        return size;
    if (off >= (uint64_t)size || len == 0)
        return 0;
    size_t n = (size_t)IC_MIN((uint64_t)len, (uint64_t)size - off);
    int ret = sync_read(a, buf, n, off);
    return ret < 0 ? ret : (int64_t)n;
}

static int aio_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct io_aio *a = to_aio(io);
    struct behind *b = a->behind;
    if (!b)
        return sync_write(a, buf, len, off);
    uint64_t end;
    if (ic_add_overflow(off, (uint64_t)len, &end) || end > INT64_MAX)
        return -EINVAL;
    int ret;
    if (len >= IC_AIO_BEHIND_MIN && req_aligned(a, buf, len, off) &&
        b->lender.hold(b->lender.payload, buf, len)) {
        ret = behind_write(a, buf, len, off, end);
    } else {
        ret = behind_wait(b, off, len);
        if (ret == 0 && b->cache_fd >= 0 && len < IC_AIO_BEHIND_MIN) {
            /* metadata: through the page cache (invariant 8) */
            a->stats.cached_writes++;
            ret = ic_fd_pwrite_full(b->cache_fd, buf, len, off);
        } else if (ret == 0) {
            ret = sync_write(a, buf, len, off);
        }
        if (ret == 0 && end > b->physical) {
            /* it extended the file (a bounced write may have cut it back) */
            int64_t size = ic_io_get_size(a->posix);
            if (size < 0)
                return (int)size;
            b->physical = (uint64_t)size;
        }
    }
    if (ret == 0 && end > b->logical)
        b->logical = end;
    return ret;
}

/* ---- batches ---------------------------------------------------------------- */

struct slot {
    struct iocb cb;
    size_t idx;       /* request index */
    bool busy;
};

/* Must request @r wait for the in-flight ones (invariant 1/2)? */
static bool must_wait(const struct io_aio *a, const struct ic_io_req *reqs,
                      const struct slot *slots, unsigned in_flight, const struct ic_io_req *r)
{
    if (in_flight == 0)
        return false;
    bool bounced = !req_aligned(a, r->buf, r->len, r->off);
    if (bounced && r->op == IC_IO_REQ_WRITE)
        return true; /* runs alone */
    for (unsigned s = 0; s < IC_AIO_QUEUE_DEPTH; s++) {
        if (!slots[s].busy)
            continue;
        const struct ic_io_req *o = &reqs[slots[s].idx];
        if ((o->op == IC_IO_REQ_WRITE || r->op == IC_IO_REQ_WRITE) &&
            overlaps(o->off, o->len, r->off, r->len))
            return true;
    }
    return false;
}

/* Completion of one aio request (invariant 3). */
static void complete(struct io_aio *a, struct ic_io_req *r, long res)
{
    if (res < 0) {
        r->ret = (int)res;
        return;
    }
    size_t done = (size_t)res;
    if (done >= r->len) {
        r->ret = 0;
        return;
    }
    /* short: finish synchronously (end of file for reads, rare for writes) */
    uint8_t *p = (uint8_t *)r->buf + done;
    if (r->op == IC_IO_REQ_READ)
        r->ret = sync_read(a, p, r->len - done, r->off + done);
    else
        r->ret = sync_write(a, p, r->len - done, r->off + done);
}

static int reap(struct io_aio *a, struct ic_io_req *reqs,
                unsigned *in_flight, long min_nr)
{
    struct io_event ev[IC_AIO_QUEUE_DEPTH];
    int n;
    do {
        n = io_getevents(a->ctx, min_nr, IC_AIO_QUEUE_DEPTH, ev, NULL);
    } while (n == -EINTR);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        struct slot *s = ev[i].data;
        complete(a, &reqs[s->idx], (long)ev[i].res);
        s->busy = false;
        (*in_flight)--;
    }
    return 0;
}

static int run_sync(struct io_aio *a, struct ic_io_req *r)
{
    switch (r->op) {
    case IC_IO_REQ_READ:
        return sync_read(a, r->buf, r->len, r->off);
    case IC_IO_REQ_WRITE:
        return sync_write(a, r->buf, r->len, r->off);
    default:
        return -EINVAL;
    }
}

static int aio_submit(ic_io *io, struct ic_io_req *reqs, size_t n)
{
    struct io_aio *a = to_aio(io);
    struct slot slots[IC_AIO_QUEUE_DEPTH];
    unsigned in_flight = 0;
    size_t i = 0;
    int ret = 0;
    memset(slots, 0, sizeof(slots));
    if (a->want_ctx) {
        a->want_ctx = false;
        a->have_ctx = io_setup(IC_AIO_QUEUE_DEPTH, &a->ctx) == 0;
        a->stats.async = a->have_ctx;
    }
    /* batches do not mix with lent writes: those finish first */
    if (a->behind && (ret = behind_drain(a->behind)) < 0) {
        for (size_t k = 0; k < n; k++)
            reqs[k].ret = ret;
        return ret;
    }

    while (i < n || in_flight > 0) {
        struct iocb *batch[IC_AIO_QUEUE_DEPTH];
        struct slot *bslot[IC_AIO_QUEUE_DEPTH];
        int nb = 0;
        while (i < n && in_flight + (unsigned)nb < IC_AIO_QUEUE_DEPTH) {
            struct ic_io_req *r = &reqs[i];
            if (r->len == 0 && (r->op == IC_IO_REQ_READ || r->op == IC_IO_REQ_WRITE)) {
                r->ret = 0;
                i++;
                continue;
            }
            /* the batch being built counts as in flight for ordering */
            for (int k = 0; k < nb; k++)
                bslot[k]->busy = true;
            bool wait = must_wait(a, reqs, slots, in_flight + (unsigned)nb, r);
            for (int k = 0; k < nb; k++)
                bslot[k]->busy = false;
            if (wait)
                break;
            bool aligned = req_aligned(a, r->buf, r->len, r->off);
            if (!a->have_ctx || !aligned || (r->op != IC_IO_REQ_READ && r->op != IC_IO_REQ_WRITE) ||
                r->off > INT64_MAX) {
                r->ret = run_sync(a, r);
                i++;
                continue;
            }
            struct slot *s = NULL;
            for (unsigned k = 0; k < IC_AIO_QUEUE_DEPTH && !s; k++) {
                bool taken = slots[k].busy;
                for (int j = 0; j < nb && !taken; j++)
                    taken = bslot[j] == &slots[k];
                if (!taken)
                    s = &slots[k];
            }
            s->idx = i;
            if (r->op == IC_IO_REQ_READ)
                io_prep_pread(&s->cb, a->fd, r->buf, r->len, (long long)r->off);
            else
                io_prep_pwrite(&s->cb, a->fd, r->buf, r->len, (long long)r->off);
            s->cb.data = s;
            batch[nb] = &s->cb;
            bslot[nb] = s;
            nb++;
            i++;
        }
        int done = 0;
        while (done < nb) {
            int k = io_submit(a->ctx, nb - done, batch + done);
            a->stats.io_submit_calls++;
            if (k == -EINTR)
                continue;
            if (k <= 0) {
                /* the kernel refused (EAGAIN: queue full): run the rest
                 * synchronously, after what is in flight (invariant 1) */
                while (in_flight > 0 && (ret = reap(a, reqs, &in_flight, 1)) == 0)
                    ;
                for (int j = done; j < nb; j++)
                    reqs[bslot[j]->idx].ret = run_sync(a, &reqs[bslot[j]->idx]);
                break;
            }
            for (int j = done; j < done + k; j++)
                bslot[j]->busy = true;
            in_flight += (unsigned)k;
            a->stats.aio_requests += (uint64_t)k;
            if (in_flight > a->stats.max_in_flight)
                a->stats.max_in_flight = in_flight;
            done += k;
        }
        if (ret < 0)
            break;
        if (in_flight > 0) {
            /* refill as soon as one completes, unless nothing is left */
            ret = reap(a, reqs, &in_flight, 1);
            if (ret < 0)
                break;
        }
    }
    if (ret < 0) {
        /* io_getevents failed: the context is unusable; mark what is left */
        for (size_t k = 0; k < n; k++)
            if (k >= i)
                reqs[k].ret = ret;
        for (unsigned s = 0; s < IC_AIO_QUEUE_DEPTH; s++)
            if (slots[s].busy)
                reqs[slots[s].idx].ret = ret;
        return ret;
    }
    for (size_t k = 0; k < n; k++)
        if (reqs[k].ret < 0)
            return reqs[k].ret;
    return 0;
}

/* ---- passed to the POSIX backend ------------------------------------------ */

/* Everything but reads and writes waits for the lent writes (invariant 6). */
static int aio_flush(ic_io *io)
{
    struct io_aio *a = to_aio(io);
    if (a->behind) {
        int ret = behind_drain(a->behind);
        if (ret == 0)
            ret = behind_trim(a);
        if (ret < 0)
            return ret;
    }
    return ic_io_flush(a->posix);
}
static int aio_truncate(ic_io *io, uint64_t size)
{
    struct io_aio *a = to_aio(io);
    if (!a->behind)
        return ic_io_truncate(a->posix, size);
    int ret = behind_drain(a->behind);
    if (ret == 0)
        ret = ic_io_truncate(a->posix, size);
    if (ret == 0)
        a->behind->logical = a->behind->physical = size;
    return ret;
}
static int64_t aio_get_size(ic_io *io)
{
    struct io_aio *a = to_aio(io);
    if (a->behind)
        return (int64_t)a->behind->logical;
    return ic_io_get_size(a->posix);
}
static int aio_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    struct io_aio *a = to_aio(io);
    int ret = a->behind ? behind_drain(a->behind) : 0;
    return ret < 0 ? ret : ic_io_punch_hole(a->posix, off, len);
}
static int aio_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(to_aio(io)->posix, mode, errp);
}
static int aio_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    struct io_aio *a = to_aio(io);
    if (a->behind)
        (void)behind_drain(a->behind);
    return ic_io_block_status(a->posix, off, len, pnum);
}
static int64_t aio_allocated_size(ic_io *io)
{
    struct io_aio *a = to_aio(io);
    if (a->behind)
        (void)behind_drain(a->behind);
    return ic_io_allocated_size(a->posix);
}
/* O_DIRECT reads bypass the page cache: a readahead hint is wasted there. */
static void aio_prefetch(ic_io *io, uint64_t off, uint64_t len)
{
    if (!to_aio(io)->direct)
        ic_io_prefetch(to_aio(io)->posix, off, len);
}

static int aio_close(ic_io *io)
{
    struct io_aio *a = to_aio(io);
    int bret = a->behind ? behind_detach(a) : 0;
    if (a->have_ctx)
        io_destroy(a->ctx);
    int ret = ic_io_close(a->posix);
    free(io->name);
    free(a);
    return bret ? bret : ret;
}

/* The capability ops (imgchain/sys/io.h version 3). */
static uint32_t aio_alignment(ic_io *io)
{
    return to_aio(io)->align;
}

static int aio_lend(ic_io *io, const struct ic_io_lender *lender)
{
    int ret = ic_io_aio_lend(io, lender);
    if (ret < 0 || !lender)
        return ret;
    return (int)to_aio(io)->behind->nworkers;
}

static void aio_get_stats(ic_io *io, struct ic_io_stats *out)
{
    *out = to_aio(io)->stats;
}

static const struct ic_io_ops aio_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = aio_close,
    .pread = aio_pread,
    .pwrite = aio_pwrite,
    .flush = aio_flush,
    .truncate = aio_truncate,
    .get_size = aio_get_size,
    .punch_hole = aio_punch_hole,
    .event = NULL,
    .lock = aio_lock,
    .block_status = aio_block_status,
    .allocated_size = aio_allocated_size,
    .submit = aio_submit,
    .prefetch = aio_prefetch,
    .alignment = aio_alignment,
    .lend = aio_lend,
    .get_stats = aio_get_stats,
};

/* O_DIRECT alignment: statx(STATX_DIOALIGN) where the kernel has it. */
static void probe_alignment(struct io_aio *a)
{
    a->align = IC_AIO_DEFAULT_ALIGN;
    a->mem_align = IC_AIO_DEFAULT_ALIGN;
#ifdef STATX_DIOALIGN
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    if (syscall(SYS_statx, a->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN)) {
        uint32_t o = stx.stx_dio_offset_align, m = stx.stx_dio_mem_align;
        if (o > a->align && IC_IS_POW2(o) && o <= AIO_MAX_ALIGN)
            a->align = o;
        if (m > a->mem_align && IC_IS_POW2(m) && m <= AIO_MAX_ALIGN)
            a->mem_align = m;
    }
#endif
}

int ic_io_open_aio_ex(ic_io **out, const char *path, unsigned flags, unsigned aio_flags,
                      ic_error **errp)
{
    *out = NULL;
    ic_io *posix;
    int ret = ic_io_open_file(&posix, path, flags, errp);
    if (ret < 0)
        return ret;
    struct io_aio *a = ic_io_backend_new(sizeof(*a), &aio_ops, path, flags);
    if (!a) {
        ic_io_close(posix);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", path);
    }
    a->posix = posix;
    a->fd = ic_io_posix_fd(posix);
    a->direct = (flags & IC_IO_DIRECT) != 0;
    a->align = 1;
    a->mem_align = 1;
    if (a->direct)
        probe_alignment(a);
    /* invariant 4: no context is not an error, only slower; it is set up
     * by the first batch (io_destroy costs an RCU grace period at close,
     * tens of milliseconds, which a handle without batches need not pay) */
    a->want_ctx = !(aio_flags & IC_AIO_SYNC);
    *out = &a->base;
    return 0;
}

int ic_io_open_aio(ic_io **out, const char *path, unsigned flags, ic_error **errp)
{
    return ic_io_open_aio_ex(out, path, flags, 0, errp);
}

bool ic_io_aio_get_stats(const ic_io *io, struct ic_io_stats *out)
{
    if (!io || io->ops != &aio_ops)
        return false;
    *out = ((const struct io_aio *)io)->stats;
    return true;
}

uint32_t ic_io_aio_alignment(const ic_io *io)
{
    if (!io || io->ops != &aio_ops)
        return 0;
    return ((const struct io_aio *)io)->align;
}
