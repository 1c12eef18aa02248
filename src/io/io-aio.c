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
 *  Reference: CONVENTIONS.md section 1 (I/O vtable); qemu block/linux-aio.c.
 */
#include <errno.h>
#include <libaio.h>
#include <linux/stat.h>
#include <stdlib.h>
#include <string.h>
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

struct io_aio {
    ic_io base;
    ic_io *posix;          /* owns fd, O_DIRECT open and locks */
    int fd;
    io_context_t ctx;
    bool have_ctx;
    bool direct;
    uint32_t align;        /* offset/length alignment (1 when buffered) */
    uint32_t mem_align;    /* buffer alignment (1 when buffered) */
    struct ic_io_aio_stats stats;
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

/* ---- vtable data ops ----------------------------------------------------- */

static int64_t aio_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct io_aio *a = to_aio(io);
    if (req_aligned(a, buf, len, off)) {
        a->stats.sync_requests++;
        return ic_fd_pread_full(a->fd, buf, len, off); /* short only at EOF */
    }
    int64_t size = ic_io_get_size(a->posix);
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
    return sync_write(to_aio(io), buf, len, off);
}

/* ---- batches ---------------------------------------------------------------- */

struct slot {
    struct iocb cb;
    size_t idx;       /* request index */
    bool busy;
};

static bool overlaps(uint64_t o1, uint64_t l1, uint64_t o2, uint64_t l2)
{
    return o1 < o2 + l2 && o2 < o1 + l1;
}

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

static int aio_flush(ic_io *io)
{
    return ic_io_flush(to_aio(io)->posix);
}
static int aio_truncate(ic_io *io, uint64_t size)
{
    return ic_io_truncate(to_aio(io)->posix, size);
}
static int64_t aio_get_size(ic_io *io)
{
    return ic_io_get_size(to_aio(io)->posix);
}
static int aio_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    return ic_io_punch_hole(to_aio(io)->posix, off, len);
}
static int aio_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(to_aio(io)->posix, mode, errp);
}
static int aio_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    return ic_io_block_status(to_aio(io)->posix, off, len, pnum);
}
static int64_t aio_allocated_size(ic_io *io)
{
    return ic_io_allocated_size(to_aio(io)->posix);
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
    if (a->have_ctx)
        io_destroy(a->ctx);
    int ret = ic_io_close(a->posix);
    free(io->name);
    free(a);
    return ret;
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
    /* invariant 4: no context is not an error, only slower */
    if (!(aio_flags & IC_AIO_SYNC) && io_setup(IC_AIO_QUEUE_DEPTH, &a->ctx) == 0)
        a->have_ctx = true;
    a->stats.async = a->have_ctx;
    *out = &a->base;
    return 0;
}

int ic_io_open_aio(ic_io **out, const char *path, unsigned flags, ic_error **errp)
{
    return ic_io_open_aio_ex(out, path, flags, 0, errp);
}

bool ic_io_aio_get_stats(const ic_io *io, struct ic_io_aio_stats *out)
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
