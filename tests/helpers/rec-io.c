/*
 * rec-io.c - the recording pass-through backend of rec-io.h.  Every op is
 * forwarded to the inner POSIX backend; pwrite and prefetch are noted.
 */
#include <stdint.h>
#include <stdlib.h>

#include <unistd.h>

#include "rec-io.h"
#include "io/io.h"

static struct rec_io *rec_of(ic_io *io)
{
    return (struct rec_io *)io;
}
static int rec_close(ic_io *io)
{
    int ret = ic_io_close(rec_of(io)->inner);
    free(io->name);
    free(rec_of(io));
    return ret;
}
static int64_t rec_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    ic_io *in = rec_of(io)->inner;
    return in->ops->pread(in, buf, len, off);
}
static int rec_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct rec_io *r = rec_of(io);
    if (r->armed) {
        if (r->nwrites < REC_IO_MAX) {
            r->write_off[r->nwrites] = off;
            r->write_len[r->nwrites] = len;
        }
        r->nwrites++;
    }
    r->armed = false;
    if (len >= ((size_t)2 << 20)) {
        r->big_writes++;
        if (((uintptr_t)buf & (((uintptr_t)2 << 20) - 1)) == 0)
            r->big_writes_aligned++;
    }
    if (r->write_delay_us)
        usleep(r->write_delay_us);
    return ic_io_pwrite(r->inner, buf, len, off);
}
static int rec_flush(ic_io *io)
{
    return ic_io_flush(rec_of(io)->inner);
}
static int rec_truncate(ic_io *io, uint64_t size)
{
    return ic_io_truncate(rec_of(io)->inner, size);
}
static int64_t rec_get_size(ic_io *io)
{
    return ic_io_get_size(rec_of(io)->inner);
}
static void rec_event(ic_io *io, int ev)
{
    if (ev == rec_of(io)->watch_event)
        rec_of(io)->armed = true;
}
static void rec_prefetch(ic_io *io, uint64_t off, uint64_t len)
{
    struct rec_io *r = rec_of(io);
    if (r->nprefetch < REC_IO_MAX) {
        r->prefetch_off[r->nprefetch] = off;
        r->prefetch_len[r->nprefetch] = len;
    }
    r->nprefetch++;
    ic_io_prefetch(r->inner, off, len);
}

static const struct ic_io_ops rec_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = rec_close,
    .pread = rec_pread,
    .pwrite = rec_pwrite,
    .flush = rec_flush,
    .truncate = rec_truncate,
    .get_size = rec_get_size,
    .event = rec_event,
    .prefetch = rec_prefetch,
};

struct rec_io *rec_io_open(const char *path, bool rdwr, int watch_event)
{
    struct rec_io *r = ic_io_backend_new(sizeof(*r), &rec_ops, path, rdwr ? IC_IO_RDWR : 0);
    assert_non_null(r);
    r->watch_event = watch_event;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&r->inner, path, (rdwr ? IC_IO_RDWR : 0) | IC_IO_NOLOCK, &err),
                 err);
    return r;
}

ic_image *rec_io_image(struct rec_io *r, const char *format, bool rdwr)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = format;
    o.flags = (rdwr ? IC_OPEN_RDWR : 0) | IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open_io(&img, &r->base, &o, &err), err);
    return img;
}
