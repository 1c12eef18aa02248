/*
 * io-crash.c - crash simulation: unflushed writes survive a "power failure"
 * only partly (test-only; after SQLite's src/test6.c and crash*.test).
 *
 * Design notes:
 *  A filter over another ic_io.  Between two flushes nothing reaches the
 *  inner backend: writes, zero ranges (punch_hole) and truncates are kept in
 *  an ordered list `pend`.  The list is the file system's volatile cache.
 *
 *  Invariants:
 *   1. The wrapper's view = the inner bytes with the pending list applied in
 *      order.  pread overlays the list on what the inner backend returns;
 *      `vsize` is the view's length (inner size at wrap time, then moved by
 *      every write past it and every truncate).
 *   2. A flush that is not the crashing one applies the whole list in order
 *      to the inner backend, flushes the inner backend, and empties the
 *      list: what was flushed is exactly what the inner backend holds.
 *   3. The crash_at-th flush (1-based) crashes instead.  For each pending
 *      operation, in order, the RNG picks: apply, drop, or (for writes and
 *      zero ranges) tear.  A torn operation is split at 512-byte sector
 *      boundaries of the file and each piece is applied, skipped, or
 *      replaced with random bytes.  Truncates are applied or dropped.
 *      Garbage goes only into sectors at or past the end of the file as it
 *      was when the crash began (space the file system had just allocated
 *      may hold anything), unless IC_CRASH_TRASH_ANY_SECTOR: disks write a
 *      sector atomically, so an in-place header update is old or new, never
 *      half of each, and a format could not survive otherwise.  The
 *      flush then returns -EIO, `crashed` is set and is sticky: every later
 *      I/O op returns -EIO, as a dead machine would.
 *   4. Decisions depend only on the seed and the sequence of operations, so
 *      a failing (N, seed) pair replays exactly.
 *   5. Closing (or releasing) a wrapper that did not crash applies the list
 *      without a flush: a process that exits leaves its writes in the page
 *      cache, which survives.  After a crash the list was consumed by it.
 *   6. Locking, events, block status and allocated size are passed to the
 *      inner backend (block status reports "data" while writes are pending
 *      in the range, which is always a safe answer).
 *
 *  Memory: every pending write is copied; the list is bounded by
 *  CRASH_MAX_PENDING_BYTES so a runaway test fails with -ENOMEM instead of
 *  exhausting the machine.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "io-crash.h"
#include "util/error.h"
#include "util/overflow.h"

/* Sector size of the simulated disk: the unit of a torn write (the classic
 * atomic write unit of disks; SQLite's test6 default). */
#define CRASH_SECTOR 512u
/* Bytes of pending writes kept between two flushes: far above what any unit
 * test writes, far below what would hurt a CI machine. */
#define CRASH_MAX_PENDING_BYTES ((uint64_t)1 << 30)

enum pend_kind { PEND_WRITE, PEND_ZERO, PEND_TRUNCATE };

struct pend {
    enum pend_kind kind;
    uint64_t off;   /* PEND_TRUNCATE: the new size */
    uint64_t len;
    uint8_t *data;  /* PEND_WRITE only */
};

struct io_crash {
    ic_io base;
    ic_io *inner;
    unsigned crash_at;
    unsigned flushes;
    bool crashed;
    uint64_t rng;
    uint64_t vsize;
    uint64_t crash_isize; /* inner size when the crash began */
    unsigned flags;       /* IC_CRASH_* */
    struct pend *pend;
    size_t n_pend, cap_pend;
    uint64_t pend_bytes;
    struct ic_io_crash_stats stats;
};

static const struct ic_io_ops crash_ops;

static struct io_crash *to_crash(ic_io *io)
{
    return (struct io_crash *)io;
}

static const struct io_crash *crash_of_const(const ic_io *io)
{
    return io && io->ops == &crash_ops ? (const struct io_crash *)io : NULL;
}

/* splitmix64 (to spread a small seed) feeding xorshift64*. */
static uint64_t rng_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_next(struct io_crash *c)
{
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void pend_free_all(struct io_crash *c)
{
    for (size_t i = 0; i < c->n_pend; i++)
        free(c->pend[i].data);
    c->n_pend = 0;
    c->pend_bytes = 0;
}

static int pend_push(struct io_crash *c, enum pend_kind kind, uint64_t off, uint64_t len,
                     const void *data)
{
    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend ? c->cap_pend * 2 : 16;
        struct pend *v = realloc(c->pend, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        c->pend = v;
        c->cap_pend = cap;
    }
    struct pend *p = &c->pend[c->n_pend];
    p->kind = kind;
    p->off = off;
    p->len = len;
    p->data = NULL;
    if (kind == PEND_WRITE) {
        if (len > CRASH_MAX_PENDING_BYTES - c->pend_bytes)
            return -ENOMEM;
        p->data = malloc(len ? (size_t)len : 1);
        if (!p->data)
            return -ENOMEM;
        if (len)
            memcpy(p->data, data, (size_t)len);
        c->pend_bytes += len;
    }
    c->n_pend++;
    return 0;
}

/* Zeroes [off, off+len) on the inner backend without extending it. */
static int inner_zero(ic_io *inner, uint64_t off, uint64_t len)
{
    int64_t size = ic_io_get_size(inner);
    if (size < 0)
        return (int)size;
    if (off >= (uint64_t)size)
        return 0;
    if (len > (uint64_t)size - off)
        len = (uint64_t)size - off;
    int ret = ic_io_punch_hole(inner, off, len);
    if (ret != -ENOTSUP && ret != -EOPNOTSUPP)
        return ret;
    static const uint8_t zeroes[4096];
    while (len > 0) {
        size_t n = len > sizeof(zeroes) ? sizeof(zeroes) : (size_t)len;
        ret = ic_io_pwrite(inner, zeroes, n, off);
        if (ret < 0)
            return ret;
        off += n;
        len -= n;
    }
    return 0;
}

static int apply_one(struct io_crash *c, const struct pend *p)
{
    switch (p->kind) {
    case PEND_WRITE:
        return ic_io_pwrite(c->inner, p->data, (size_t)p->len, p->off);
    case PEND_ZERO:
        return inner_zero(c->inner, p->off, p->len);
    case PEND_TRUNCATE:
        return ic_io_truncate(c->inner, p->off);
    }
    return -EINVAL;
}

/* Applies the whole list in order (invariant 2/5).  On failure the applied
 * prefix is removed and the rest stays pending. */
static int apply_all(struct io_crash *c)
{
    size_t i;
    int ret = 0;
    for (i = 0; i < c->n_pend; i++) {
        ret = apply_one(c, &c->pend[i]);
        if (ret < 0)
            break;
    }
    for (size_t j = 0; j < i; j++) {
        if (c->pend[j].kind == PEND_WRITE)
            c->pend_bytes -= c->pend[j].len;
        free(c->pend[j].data);
    }
    if (i > 0 && i < c->n_pend)
        memmove(c->pend, c->pend + i, (c->n_pend - i) * sizeof(*c->pend));
    c->n_pend -= i;
    return ret;
}

/* One torn write or zero range: sector pieces applied, skipped or garbage. */
static int apply_torn(struct io_crash *c, const struct pend *p)
{
    uint8_t garbage[CRASH_SECTOR];
    static const uint8_t zeroes[CRASH_SECTOR];
    uint64_t pos = p->off, end = p->off + p->len;
    int64_t isize = ic_io_get_size(c->inner);
    if (isize < 0)
        return (int)isize;
    while (pos < end) {
        uint64_t next = (pos / CRASH_SECTOR + 1) * CRASH_SECTOR;
        size_t n = (size_t)(IC_MIN(next, end) - pos);
        const uint8_t *src = p->kind == PEND_WRITE ? p->data + (pos - p->off) : zeroes;
        size_t wlen = n;
        if (p->kind == PEND_ZERO) { /* a zero range never extends the file */
            if (pos >= (uint64_t)isize)
                break;
            wlen = (size_t)IC_MIN((uint64_t)n, (uint64_t)isize - pos);
        }
        bool may_trash = (c->flags & IC_CRASH_TRASH_ANY_SECTOR) || pos >= c->crash_isize;
        uint64_t pick = rng_next(c) % (may_trash ? 3 : 2);
        int ret = 0;
        if (pick == 0) {
            ret = ic_io_pwrite(c->inner, src, wlen, pos);
        } else if (pick == 2) {
            for (size_t k = 0; k < wlen; k += 8) {
                uint64_t r = rng_next(c);
                memcpy(garbage + k, &r, IC_MIN((size_t)8, wlen - k));
            }
            ret = ic_io_pwrite(c->inner, garbage, wlen, pos);
            c->stats.garbage_sectors++;
        }
        if (ret < 0)
            return ret;
        pos += n;
    }
    return 0;
}

/* The power failure (invariant 3). */
static int do_crash(struct io_crash *c)
{
    int ret = 0;
    c->stats.pending = c->n_pend;
    int64_t isize = ic_io_get_size(c->inner);
    c->crash_isize = isize < 0 ? 0 : (uint64_t)isize;
    for (size_t i = 0; i < c->n_pend && ret == 0; i++) {
        const struct pend *p = &c->pend[i];
        uint64_t pick = rng_next(c) %
                        (p->kind == PEND_TRUNCATE || (c->flags & IC_CRASH_NO_TEAR) ? 2 : 3);
        if (pick == 0) {
            c->stats.applied++;
            ret = apply_one(c, p);
        } else if (pick == 1) {
            c->stats.dropped++;
        } else {
            c->stats.torn++;
            ret = apply_torn(c, p);
        }
    }
    pend_free_all(c);
    c->crashed = true;
    return ret;
}

static int64_t crash_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    if (off >= c->vsize || len == 0)
        return 0;
    uint64_t n64 = IC_MIN((uint64_t)len, c->vsize - off);
    size_t n = (size_t)n64;
    int ret = ic_io_pread(c->inner, buf, n, off);
    if (ret < 0)
        return ret;
    uint8_t *b = buf;
    uint64_t end = off + n;
    for (size_t i = 0; i < c->n_pend; i++) {
        const struct pend *p = &c->pend[i];
        if (p->kind == PEND_TRUNCATE) {
            if (p->off < end) {
                uint64_t from = IC_MAX(p->off, off);
                memset(b + (from - off), 0, (size_t)(end - from));
            }
            continue;
        }
        uint64_t lo = IC_MAX(p->off, off), hi = IC_MIN(p->off + p->len, end);
        if (lo >= hi)
            continue;
        if (p->kind == PEND_WRITE)
            memcpy(b + (lo - off), p->data + (lo - p->off), (size_t)(hi - lo));
        else
            memset(b + (lo - off), 0, (size_t)(hi - lo));
    }
    return (int64_t)n;
}

static int crash_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct io_crash *c = to_crash(io);
    uint64_t end;
    if (c->crashed)
        return -EIO;
    if (ic_add_overflow(off, (uint64_t)len, &end) || end > INT64_MAX)
        return -EFBIG;
    int ret = pend_push(c, PEND_WRITE, off, len, buf);
    if (ret < 0)
        return ret;
    if (end > c->vsize)
        c->vsize = end;
    return 0;
}

static int crash_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    struct io_crash *c = to_crash(io);
    uint64_t end;
    if (c->crashed)
        return -EIO;
    if (ic_add_overflow(off, len, &end))
        return -EINVAL;
    if (off >= c->vsize)
        return 0;
    return pend_push(c, PEND_ZERO, off, IC_MIN(len, c->vsize - off), NULL);
}

static int crash_truncate(ic_io *io, uint64_t size)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    if (size > INT64_MAX)
        return -EFBIG;
    int ret = pend_push(c, PEND_TRUNCATE, size, 0, NULL);
    if (ret < 0)
        return ret;
    c->vsize = size;
    return 0;
}

static int crash_flush(ic_io *io)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    c->flushes++;
    if (c->crash_at != 0 && c->flushes == c->crash_at) {
        do_crash(c); /* the inner result does not matter: the machine is dead */
        return -EIO;
    }
    int ret = apply_all(c);
    if (ret < 0)
        return ret;
    return ic_io_flush(c->inner);
}

static int64_t crash_get_size(ic_io *io)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    return (int64_t)c->vsize;
}

static void crash_event(ic_io *io, int event)
{
    ic_io *inner = to_crash(io)->inner;
    if (inner->ops->event)
        inner->ops->event(inner, event);
}

static int crash_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(to_crash(io)->inner, mode, errp);
}

static int crash_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    if (c->n_pend > 0) {
        *pnum = len;
        return 1;
    }
    return ic_io_block_status(c->inner, off, len, pnum);
}

static int64_t crash_allocated_size(ic_io *io)
{
    struct io_crash *c = to_crash(io);
    if (c->crashed)
        return -EIO;
    return ic_io_allocated_size(c->inner);
}

/* Frees the wrapper; applies the list first when it did not crash. */
static ic_io *crash_detach(struct io_crash *c)
{
    ic_io *inner = c->inner;
    if (!c->crashed)
        (void)apply_all(c); /* invariant 5; nobody is left to report to */
    pend_free_all(c);
    free(c->pend);
    free(c->base.name);
    free(c);
    return inner;
}

static int crash_close(ic_io *io)
{
    return ic_io_close(crash_detach(to_crash(io)));
}

static const struct ic_io_ops crash_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = crash_close,
    .pread = crash_pread,
    .pwrite = crash_pwrite,
    .flush = crash_flush,
    .truncate = crash_truncate,
    .get_size = crash_get_size,
    .punch_hole = crash_punch_hole,
    .event = crash_event,
    .lock = crash_lock,
    .block_status = crash_block_status,
    .allocated_size = crash_allocated_size,
    .submit = NULL, /* batches run in order through pread/pwrite */
};

int ic_io_crash_wrap(ic_io **out, ic_io *inner, unsigned crash_at_flush, uint64_t seed,
                     ic_error **errp)
{
    *out = NULL;
    if (!inner)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "crash wrapper: no inner backend");
    int64_t size = ic_io_get_size(inner);
    if (size < 0) {
        int ret = ic_error_set_errno(errp, (int)size, "%s: crash wrapper: cannot get size",
                                     ic_io_name(inner));
        ic_io_close(inner);
        return ret;
    }
    struct io_crash *c = ic_io_backend_new(sizeof(*c), &crash_ops, ic_io_name(inner),
                                           inner->open_flags);
    if (!c) {
        ic_io_close(inner);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "crash wrapper: out of memory");
    }
    c->inner = inner;
    c->crash_at = crash_at_flush;
    c->rng = rng_seed(seed);
    c->vsize = (uint64_t)size;
    *out = &c->base;
    return 0;
}

int ic_io_crash_now(ic_io *io)
{
    if (!io || io->ops != &crash_ops)
        return -EINVAL;
    struct io_crash *c = to_crash(io);
    if (!c->crashed)
        do_crash(c); /* as at a crash flush: the machine is dead either way */
    return 0;
}

bool ic_io_crash_happened(const ic_io *io)
{
    const struct io_crash *c = crash_of_const(io);
    return c && c->crashed;
}

unsigned ic_io_crash_flush_count(const ic_io *io)
{
    const struct io_crash *c = crash_of_const(io);
    return c ? c->flushes : 0;
}

void ic_io_crash_get_stats(const ic_io *io, struct ic_io_crash_stats *out)
{
    const struct io_crash *c = crash_of_const(io);
    memset(out, 0, sizeof(*out));
    if (c)
        *out = c->stats;
}

int ic_io_crash_set_flags(ic_io *io, unsigned flags)
{
    if (!crash_of_const(io) || (flags & ~(IC_CRASH_TRASH_ANY_SECTOR | IC_CRASH_NO_TEAR)))
        return -EINVAL;
    to_crash(io)->flags = flags;
    return 0;
}

ic_io *ic_io_crash_release_inner(ic_io *io)
{
    if (!crash_of_const(io))
        return NULL;
    return crash_detach(to_crash(io));
}
