/*
 * image-resize.c - ic_image_resize(): the generic half of `qemu-img resize`
 * (qemu's bdrv_co_truncate), in front of each driver's resize op.
 *
 * Design notes:
 *  1. The generic layer refuses what does not depend on the format: a
 *     read-only or failed image, a size of 0, preallocation while not
 *     growing.  Everything else (alignment, snapshots, shrink support,
 *     modes) is the driver's, with qemu's messages, since qemu's checks
 *     differ per format and their order decides which message wins.
 *  2. A driver without a resize op gets qemu's generic behaviour for what
 *     it has: its truncate for a growing resize without preallocation.
 *  3. Errors are prefixed with the file name ("FILE: message"), as every
 *     other ic_image_* wrapper does.
 *  4. ic_image_resize_check() runs the same refusals on an image that may
 *     be read-only, so a caller can refuse before a read-write open (which
 *     may itself write, e.g. clear qcow2's bitmaps autoclear bit).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "image.h"

static const char *const prealloc_names[] = {
    [IC_PREALLOC_OFF] = "off",
    [IC_PREALLOC_METADATA] = "metadata",
    [IC_PREALLOC_FALLOC] = "falloc",
    [IC_PREALLOC_FULL] = "full",
};

const char *ic_prealloc_name(ic_prealloc mode)
{
    if ((unsigned)mode >= sizeof(prealloc_names) / sizeof(prealloc_names[0]))
        return "?";
    return prealloc_names[mode];
}

int ic_prealloc_parse(const char *s, ic_prealloc *out)
{
    for (unsigned i = 0; s && i < sizeof(prealloc_names) / sizeof(prealloc_names[0]); i++)
        if (!strcmp(s, prealloc_names[i])) {
            *out = (ic_prealloc)i;
            return 0;
        }
    return -EINVAL;
}

static int resize(ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                  ic_error **errp)
{
    if (img->read_only && !dry_run)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: image is opened read-only",
                            img->filename);
    if (img->state == IC_IMAGE_ERROR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                            "%s: image is in an error state after an earlier failure; "
                            "writes refused", img->filename);
    if ((unsigned)prealloc > IC_PREALLOC_FULL)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: invalid preallocation mode",
                            img->filename);
    if (size == 0)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: New image size must be positive",
                            img->filename);
    if (size <= img->size && prealloc != IC_PREALLOC_OFF)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Preallocation can only be used for growing images",
                            img->filename);
    int ret;
    if (img->drv->resize) {
        ret = img->drv->resize(img, size, prealloc, dry_run, errp);
    } else if (size >= img->size && prealloc == IC_PREALLOC_OFF && img->drv->truncate) {
        ret = size == img->size || dry_run ? 0 : img->drv->truncate(img, size, errp);
    } else {
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s cannot be resized this way", img->filename,
                            img->drv->name);
    }
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

int ic_image_resize(ic_image *img, uint64_t size, ic_prealloc prealloc, ic_error **errp)
{
    return resize(img, size, prealloc, false, errp);
}

int ic_image_resize_check(ic_image *img, uint64_t size, ic_prealloc prealloc, ic_error **errp)
{
    return resize(img, size, prealloc, true, errp);
}

int ic_resize_fill(ic_io *io, uint64_t off, uint64_t len, ic_prealloc mode)
{
    if (len == 0 || (mode != IC_PREALLOC_FALLOC && mode != IC_PREALLOC_FULL))
        return 0;
    if (mode == IC_PREALLOC_FALLOC) {
        int ret = ic_io_zero_range(io, off, len);
        if (ret != -ENOTSUP && ret != -EOPNOTSUPP)
            return ret;
    }
    const size_t chunk = 4u << 20;
    void *z = calloc(1, chunk);
    if (!z)
        return -ENOMEM;
    int ret = 0;
    while (len > 0 && ret == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ret = ic_io_pwrite(io, z, n, off);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
}

bool ic_resize_backing_shows(const struct ic_image *img, uint64_t old_size)
{
    return img->backing && img->backing->size > old_size;
}
