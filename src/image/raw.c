/*
 * raw.c - the raw format: the file is the disk.
 *
 * Design notes:
 *  1. Virtual size = file size.  Every byte is "allocated" in this layer;
 *     holes in the host file (SEEK_DATA) are reported as zero runs, so map
 *     and convert can skip them, but they still hide nothing below: a raw
 *     file never has a backing file.
 *  2. Writes go straight to the file; zero writes punch holes when allowed.
 *  3. Creating writes nothing but the length (a sparse file).
 */
#include <errno.h>
#include <string.h>

#include "image.h"

static int raw_open(struct ic_image *img, unsigned flags, ic_error **errp)
{
    (void)flags;
    int64_t size = ic_io_get_size(img->file);
    if (size < 0)
        return ic_error_set(errp, ic_error_kind_from_errno((int)-size), (int)-size,
                            "cannot get file size: %s", strerror((int)-size));
    img->size = (uint64_t)size;
    img->cluster_size = 0;
    return 0;
}

static void raw_close(struct ic_image *img)
{
    (void)img;
}

static int raw_create(ic_io *file, const struct ic_create_params *p, ic_error **errp)
{
    if (p->backing_file)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "format raw does not support backing files");
    int ret = ic_opts_check_unused(p->opts, "raw", errp);
    if (ret < 0)
        return ret;
    ret = ic_io_truncate(file, 0);
    if (ret == 0)
        ret = ic_io_truncate(file, p->size);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot set file size: %s", strerror(-ret));
    return 0;
}

static int raw_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    return ic_io_pread(img->file, buf, len, off);
}

static int raw_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    return ic_io_pwrite(img->file, buf, len, off);
}

static int raw_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    if ((flags & IC_ZERO_MAY_UNMAP) && ic_io_punch_hole(img->file, off, len) == 0)
        return 0;
    return ic_io_pwrite_zeroes(img->file, off, len);
}

static int raw_discard(struct ic_image *img, uint64_t off, uint64_t len)
{
    int ret = ic_io_punch_hole(img->file, off, len);
    return ret == -ENOTSUP || ret == -EOPNOTSUPP ? 0 : ret;
}

static int raw_block_status(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                            unsigned *flags, uint64_t *map, ic_io **file)
{
    int data = ic_io_block_status(img->file, off, len, pnum);
    if (data < 0)
        return data;
    *flags = IC_BS_ALLOCATED | IC_BS_OFFSET_VALID | (data ? IC_BS_DATA : IC_BS_ZERO);
    *map = off;
    *file = img->file;
    return 0;
}

/* A raw file's guest offsets are its file offsets: the batch goes to the
 * backend as one (the aio backend keeps it in flight together). */
static int raw_pwrite_batch(struct ic_image *img, struct ic_io_req *reqs, size_t n)
{
    return ic_io_submit(img->file, reqs, n);
}

static int raw_truncate(struct ic_image *img, uint64_t size, ic_error **errp)
{
    int ret = ic_io_truncate(img->file, size);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot resize: %s", strerror(-ret));
    img->size = size;
    return 0;
}

const struct ic_driver ic_driver_raw = {
    .name = "raw",
    .instance_size = 0,
    .headerless = true,
    .probe = NULL, /* the fallback of ic_driver_probe, never a match */
    .open = raw_open,
    .close = raw_close,
    .create = raw_create,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_batch = raw_pwrite_batch,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .discard = raw_discard,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
};
