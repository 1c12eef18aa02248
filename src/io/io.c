/*
 * io.c - the wrappers every byte passes through.
 *
 * Design notes:
 *  1. Drivers call these, never a backend's ops directly, so this is the one
 *     place to add tracing, event dispatch and argument checks.
 *  2. ic_io_pread() loops over short reads and zero-fills past end of file:
 *     a qcow2 file may end inside the last cluster it references (qemu does
 *     not align the file size), and such a tail reads as zeroes.
 *  3. Events are dispatched only when the backend has an event op, so they
 *     cost one branch in production.
 *  4. ic_io_submit() is the batch entry point for bulk data movement.  A
 *     backend with a submit op (io-aio.c) overlaps the requests; any other
 *     backend, including the fault and crash filters, runs them in order
 *     through pread/pwrite, so batched copies see injected faults too.
 *  5. Deferred flushes (the unsafe cache mode): ic_io_flush() records the
 *     request and every mutating wrapper runs a recorded flush before it
 *     mutates.  So each flush that orders a later write against earlier
 *     ones still happens before that write, and only a flush with no write
 *     after it (the final one) is skipped.
 *  6. Dropped flushes (ic_io_drop_flushes): every flush is a no-op, for
 *     a file that an operation is creating and that is incomplete until
 *     the operation returns, written in the unsafe cache mode: a crash
 *     leaves such a file useless whatever order its writes reached the
 *     disk in, so ordering them protects nothing (qemu's unsafe mode drops
 *     every flush, for every file).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* wrap_state bits (design note 5) */
#define WRAP_DEFER   1u /* flushes wait for the next write */
#define WRAP_PENDING 2u /* a waiting flush has not run yet */
#define WRAP_DROP    4u /* flushes do nothing (design note 6) */

/* Runs a waiting flush before a write (design note 5). */
static int run_pending(ic_io *io)
{
    if (!(io->wrap_state & WRAP_PENDING))
        return 0;
    int ret = io->ops->flush(io);
    if (ret == 0)
        io->wrap_state &= ~WRAP_PENDING;
    return ret;
}

static const char *const event_names[] = {
#define IC_EVENT(id, name) name,
#include "events.def"
#undef IC_EVENT
};

const char *ic_event_name(int ev)
{
    if (ev < 0 || ev >= IC_EV__MAX)
        return NULL;
    return event_names[ev];
}

int ic_event_from_name(const char *name)
{
    for (int i = 0; i < IC_EV__MAX; i++)
        if (!strcmp(event_names[i], name))
            return i;
    return -1;
}

int ic_io_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        int64_t n = io->ops->pread(io, p, len, off);
        if (n < 0)
            return (int)n;
        if (n == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int64_t ic_io_pread_upto(ic_io *io, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        int64_t n = io->ops->pread(io, p + done, len - done, off + done);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (int64_t)done;
}

int ic_io_pread_exact(ic_io *io, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        int64_t n = io->ops->pread(io, p, len, off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int ic_io_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    int ret = run_pending(io);
    if (ret < 0)
        return ret;
    return io->ops->pwrite(io, buf, len, off);
}

int ic_io_pwrite_zeroes(ic_io *io, uint64_t off, uint64_t len)
{
    static const uint8_t zeroes[65536];
    int ret = run_pending(io);
    if (ret < 0)
        return ret;
    /* Beyond the end of the file, extending with truncate is enough. */
    int64_t size = ic_io_get_size(io);
    if (size < 0)
        return (int)size;
    if (off >= (uint64_t)size) {
        return ic_io_truncate(io, off + len);
    }
    while (len > 0) {
        size_t n = len > sizeof(zeroes) ? sizeof(zeroes) : (size_t)len;
        ret = io->ops->pwrite(io, zeroes, n, off);
        if (ret < 0)
            return ret;
        off += n;
        len -= n;
    }
    return 0;
}

void *ic_io_backend_new(size_t size, const struct ic_io_ops *ops, const char *name,
                        unsigned flags)
{
    ic_io *b = calloc(1, size);
    char *n = strdup(name);
    if (!b || !n) {
        free(b);
        free(n);
        return NULL;
    }
    b->ops = ops;
    b->name = n;
    b->open_flags = flags;
    return b;
}

int ic_io_flush(ic_io *io)
{
    if (io->wrap_state & WRAP_DROP)
        return 0;
    if (io->wrap_state & WRAP_DEFER) {
        io->wrap_state |= WRAP_PENDING;
        return 0;
    }
    int ret = io->ops->flush(io);
    if (ret == 0)
        io->wrap_state &= ~WRAP_PENDING;
    return ret;
}

int ic_io_flush_pending(ic_io *io)
{
    return run_pending(io);
}

void ic_io_drop_flushes(ic_io *io)
{
    io->wrap_state = (io->wrap_state | WRAP_DROP) & ~WRAP_PENDING;
}

void ic_io_defer_flush(ic_io *io, bool on)
{
    if (on)
        io->wrap_state |= WRAP_DEFER;
    else
        io->wrap_state &= ~WRAP_DEFER;
}

int ic_io_truncate(ic_io *io, uint64_t size)
{
    int ret = run_pending(io);
    if (ret < 0)
        return ret;
    return io->ops->truncate(io, size);
}

int64_t ic_io_get_size(ic_io *io)
{
    return io->ops->get_size(io);
}

int ic_io_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    if (!io->ops->punch_hole)
        return -ENOTSUP;
    int ret = run_pending(io);
    if (ret < 0)
        return ret;
    return io->ops->punch_hole(io, off, len);
}

int ic_io_zero_range(ic_io *io, uint64_t off, uint64_t len)
{
    if (!io->ops->zero_range)
        return -ENOTSUP;
    int ret = run_pending(io);
    if (ret < 0)
        return ret;
    return io->ops->zero_range(io, off, len);
}

void ic_io_prefetch(ic_io *io, uint64_t off, uint64_t len)
{
    /* a version 1 table ends before the prefetch member */
    if (io->ops->version >= 2 && io->ops->prefetch && len)
        io->ops->prefetch(io, off, len);
}

uint32_t ic_io_alignment(ic_io *io)
{
    if (io->ops->version < 3 || !io->ops->alignment)
        return 1;
    return io->ops->alignment(io);
}

int ic_io_lend(ic_io *io, const struct ic_io_lender *lender)
{
    if (io->ops->version < 3 || !io->ops->lend)
        return lender ? -ENOTSUP : 0;
    return io->ops->lend(io, lender);
}

bool ic_io_get_stats(ic_io *io, struct ic_io_stats *out)
{
    if (io->ops->version < 3 || !io->ops->get_stats)
        return false;
    memset(out, 0, sizeof(*out));
    io->ops->get_stats(io, out);
    return true;
}

int ic_io_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    if (!io->ops->lock)
        return 0;
    return io->ops->lock(io, mode, errp);
}

int ic_io_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    if (!io->ops->block_status) {
        *pnum = len;
        return 1;
    }
    return io->ops->block_status(io, off, len, pnum);
}

int64_t ic_io_allocated_size(ic_io *io)
{
    if (!io->ops->allocated_size)
        return -ENOTSUP;
    return io->ops->allocated_size(io);
}

int ic_io_submit(ic_io *io, struct ic_io_req *reqs, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].op == IC_IO_REQ_WRITE) {
            int ret = run_pending(io);
            if (ret < 0)
                return ret;
            break;
        }
    }
    if (io->ops->submit)
        return io->ops->submit(io, reqs, n);
    /* Sequential fallback: same semantics, every request is attempted so
     * each ret is meaningful, the first failure is returned. */
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        struct ic_io_req *r = &reqs[i];
        switch (r->op) {
        case IC_IO_REQ_READ:
            r->ret = ic_io_pread(io, r->buf, r->len, r->off);
            break;
        case IC_IO_REQ_WRITE:
            r->ret = ic_io_pwrite(io, r->buf, r->len, r->off);
            break;
        default:
            r->ret = -EINVAL;
            break;
        }
        if (r->ret < 0 && first == 0)
            first = r->ret;
    }
    return first;
}

void ic_io_event(ic_io *io, enum ic_event ev)
{
    if (io->ops->event)
        io->ops->event(io, (int)ev);
}

int ic_io_close(ic_io *io)
{
    if (!io)
        return 0;
    return io->ops->close(io);
}
