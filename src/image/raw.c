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
 *  4. A raw image whose format was probed (not named with -f raw or a
 *     recorded backing format) refuses a write, zero write or discard that
 *     would make its first 512 bytes probe as another format, as qemu's raw
 *     driver does: the next probing open would take the guest's data for an
 *     image header (and follow its backing name, or refuse the file).
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
    const char *str;
    ic_prealloc prealloc = IC_PREALLOC_OFF;
    if (ic_opts_take_str(p->opts, "preallocation", &str) > 0) {
        if (ic_prealloc_parse(str, &prealloc) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid parameter value: %s", str);
        if (prealloc == IC_PREALLOC_METADATA)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "Unsupported preallocation mode: metadata");
    }
    int ret = ic_opts_check_unused(p->opts, "raw", errp);
    if (ret < 0)
        return ret;
    /* qemu's file driver rounds the size up to a sector */
    if (p->size > UINT64_MAX - 511)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG, "image size is too large");
    uint64_t size = IC_ALIGN_UP(p->size, 512);
    ret = ic_io_truncate(file, 0);
    if (ret == 0)
        ret = ic_resize_fill(file, 0, size, prealloc);
    if (ret == 0 && prealloc == IC_PREALLOC_FALLOC && size) {
        /* qemu writes the first block after fallocate (its alignment probe
         * needs an allocated block); the same file for the same options */
        static const uint8_t zero[4096];
        ret = ic_io_pwrite(file, zero, size < sizeof(zero) ? (size_t)size : sizeof(zero), 0);
    }
    if (ret == 0)
        ret = ic_io_truncate(file, size);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot set file size: %s", strerror(-ret));
    return 0;
}

/* Note 4: @buf (NULL for zeroes) written at [off, off+len). */
static int guard_first_sector(struct ic_image *img, const void *buf, uint64_t off, uint64_t len)
{
    if (!img->probed || off >= IC_PROBE_SECTOR)
        return 0;
    uint8_t sec[IC_PROBE_SECTOR];
    int ret = ic_io_pread(img->file, sec, sizeof(sec), 0);
    if (ret < 0)
        return ret;
    size_t n = len < sizeof(sec) - off ? (size_t)len : sizeof(sec) - (size_t)off;
    if (buf)
        memcpy(sec + off, buf, n);
    else
        memset(sec + off, 0, n);
    const struct ic_driver *drv = NULL;
    const char *name = ic_probe_format(sec, sizeof(sec), NULL, &drv);
    if (drv == &ic_driver_raw)
        return 0;
    return ic_image_fail(img, -EPERM,
                         "write refused: the data would make the first sector of this raw "
                         "image probe as %s; name the format (-f raw) to write it", name);
}

static int raw_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    return ic_io_pread(img->file, buf, len, off);
}

static int raw_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    int ret = guard_first_sector(img, buf, off, len);
    if (ret < 0)
        return ret;
    return ic_io_pwrite(img->file, buf, len, off);
}

static int raw_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = guard_first_sector(img, NULL, off, len);
    if (ret < 0)
        return ret;
    if ((flags & IC_ZERO_MAY_UNMAP) && ic_io_punch_hole(img->file, off, len) == 0)
        return 0;
    return ic_io_pwrite_zeroes(img->file, off, len);
}

static int raw_discard(struct ic_image *img, uint64_t off, uint64_t len)
{
    int ret = guard_first_sector(img, NULL, off, len);
    if (ret < 0)
        return ret;
    ret = ic_io_punch_hole(img->file, off, len);
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

/* qemu's raw-format/file-posix truncate: any size (no alignment), shrink
 * by truncating, falloc/full for the new area, no metadata mode. */
static int raw_resize(struct ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                      ic_error **errp)
{
    if (prealloc == IC_PREALLOC_METADATA)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Unsupported preallocation mode: metadata");
    if (dry_run)
        return 0;
    uint64_t old = img->size;
    int ret = 0;
    if (size > old && prealloc != IC_PREALLOC_OFF)
        ret = ic_resize_fill(img->file, old, size - old, prealloc);
    if (ret == 0)
        ret = ic_io_truncate(img->file, size);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot resize: %s",
                            strerror(-ret));
    img->size = size;
    return 0;
}

/* qemu's raw_measure: the source's virtual size, or the requested size
 * rounded up to a sector; unallocated bytes count too.  Takes raw's create
 * options (qemu's raw and file-posix ones). */
static int raw_measure(ic_opts *opts, struct ic_image *src, uint64_t size, ic_measure_info *out,
                       ic_error **errp)
{
    const char *str;
    uint64_t v;
    bool b;
    int ret;
    if ((ret = ic_opts_take_size(opts, "size", &v, errp)) < 0)
        return ret;
    if (ic_opts_take_str(opts, "preallocation", &str) > 0) {
        ic_prealloc m;
        if (ic_prealloc_parse(str, &m) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid parameter value: %s", str);
    }
    if ((ret = ic_opts_take_bool(opts, "nocow", &b, errp)) < 0)
        return ret;
    if ((ret = ic_opts_take_size(opts, "extent_size_hint", &v, errp)) < 0)
        return ret;
    uint64_t req = src ? ic_image_size(src) : size;
    if (!src && req > UINT64_MAX - 511)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG, "image size is too large");
    if (!src)
        req = (req + 511) & ~(uint64_t)511;
    out->required = req;
    out->fully_allocated = req;
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
    .resize = raw_resize,
    .measure = raw_measure,
};
