/*
 * io-mem.c - an in-memory backend for unit tests and scratch images.
 *
 * Design notes: a growable byte array.  Reads past the end return short
 * counts like a file; writes past the end grow it with zeroes; flush is a
 * no-op (memory is "durable" for as long as the handle lives).  Counters of
 * every call let tests assert how much I/O an operation made.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "io-mem.h"
#include "util/error.h"

static struct ic_io_mem *to_mem(ic_io *io)
{
    return (struct ic_io_mem *)io;
}

static int mem_reserve(struct ic_io_mem *m, uint64_t size)
{
    if (size <= m->cap)
        return 0;
    if (size > ((uint64_t)1 << 40))
        return -EFBIG;
    uint64_t cap = m->cap ? m->cap : 4096;
    while (cap < size)
        cap *= 2;
    uint8_t *d = realloc(m->data, (size_t)cap);
    if (!d)
        return -ENOMEM;
    memset(d + m->cap, 0, (size_t)(cap - m->cap));
    m->data = d;
    m->cap = cap;
    return 0;
}

static int64_t mem_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct ic_io_mem *m = to_mem(io);
    m->n_read++;
    if (off >= m->size)
        return 0;
    uint64_t n = m->size - off;
    if (n > len)
        n = len;
    memcpy(buf, m->data + off, (size_t)n);
    return (int64_t)n;
}

static int mem_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct ic_io_mem *m = to_mem(io);
    m->n_write++;
    uint64_t end;
    if (__builtin_add_overflow(off, len, &end))
        return -EFBIG;
    int ret = mem_reserve(m, end);
    if (ret < 0)
        return ret;
    memcpy(m->data + off, buf, len);
    if (end > m->size)
        m->size = end;
    return 0;
}

static int mem_flush(ic_io *io)
{
    to_mem(io)->n_flush++;
    return 0;
}

static int mem_truncate(ic_io *io, uint64_t size)
{
    struct ic_io_mem *m = to_mem(io);
    int ret = mem_reserve(m, size);
    if (ret < 0)
        return ret;
    if (size < m->size)
        memset(m->data + size, 0, (size_t)(m->size - size));
    m->size = size;
    return 0;
}

static int64_t mem_get_size(ic_io *io)
{
    return (int64_t)to_mem(io)->size;
}

static int mem_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    struct ic_io_mem *m = to_mem(io);
    if (off >= m->size)
        return 0;
    if (len > m->size - off)
        len = m->size - off;
    memset(m->data + off, 0, (size_t)len);
    return 0;
}

static int mem_close(ic_io *io)
{
    struct ic_io_mem *m = to_mem(io);
    free(m->data);
    free(io->name);
    free(m);
    return 0;
}

static const struct ic_io_ops mem_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = mem_close,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .truncate = mem_truncate,
    .get_size = mem_get_size,
    .punch_hole = mem_punch_hole,
};

struct ic_io_mem *ic_io_mem_of(ic_io *io)
{
    return io && io->ops == &mem_ops ? to_mem(io) : NULL;
}

int ic_io_open_mem(ic_io **out, const char *name, ic_error **errp)
{
    *out = NULL;
    struct ic_io_mem *m = ic_io_backend_new(sizeof(*m), &mem_ops, name ? name : "memory",
                                            IC_IO_RDWR);
    if (!m)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    *out = &m->base;
    return 0;
}
