/*
 * image-open.c - opening an image with its backing chain.
 *
 * Design notes:
 *  1. The top image's format is the caller's, or probed.  A backing image's
 *     format is the one its overlay records; only when none is recorded is
 *     it probed, so a raw backing file that happens to contain a qcow2
 *     header is never reinterpreted (qemu's probing hazard).
 *  2. Backing names are resolved against the directory of the overlay as it
 *     was named (qemu's rule), so relative chains work from any directory.
 *  3. Loops are detected by the (device, inode)-free method of comparing
 *     resolved paths plus a depth limit (default 256): a loop through
 *     different spellings of one path still ends at the limit with a clear
 *     error instead of recursing without bound as qemu-img 7.2 does.
 *  4. Backing files are opened read-only with shared locks; only the top
 *     image may be writable.
 *  5. A raw file cannot have a backing file; it ends the chain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "util/path.h"

static int probe_file(ic_io *file, const struct ic_driver **drv, ic_error **errp)
{
    uint8_t buf[4096];
    int64_t n = file->ops->pread(file, buf, sizeof(buf), 0);
    if (n < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-n, "%s: cannot read header: %s",
                            ic_io_name(file), strerror((int)-n));
    *drv = ic_driver_probe(buf, (size_t)n);
    return 0;
}

static bool path_seen(struct ic_image *top, const char *path)
{
    for (struct ic_image *l = top; l; l = l->backing)
        if (!strcmp(l->filename, path))
            return true;
    return false;
}

static unsigned io_flags_for(unsigned open_flags, bool top)
{
    unsigned f = 0;
    if (top && (open_flags & IC_OPEN_RDWR))
        f |= IC_IO_RDWR;
    if (open_flags & IC_OPEN_NO_LOCK)
        f |= IC_IO_NOLOCK;
    if (open_flags & IC_OPEN_FORCE_SHARE)
        f |= IC_IO_SHARE;
    if (top && (open_flags & IC_OPEN_STREAM))
        f |= IC_IO_STREAM;
    return f;
}

int ic_chain_open_backing(struct ic_image *top, unsigned depth_left, ic_error **errp)
{
    struct ic_image *img = top;
    unsigned depth = 0;
    while (img->backing_name) {
        if (!strcmp(img->drv->name, "raw"))
            break;
        if (depth_left == 0)
            return ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                                "%s: backing chain is deeper than the limit (a loop?)",
                                top->filename);
        char *path = ic_path_resolve_backing(img->filename, img->backing_name);
        if (!path)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        if (path_seen(top, path)) {
            int ret = ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                                   "%s: backing file '%s' creates an infinite loop",
                                   img->filename, path);
            free(path);
            return ret;
        }
        free(img->backing_path);
        img->backing_path = path;
        ic_io *file = NULL;
        int ret = ic_image_open_file(top->open_file, top->payload, &file, path,
                                     io_flags_for(top->flags, false), errp);
        if (ret < 0) {
            ic_error_prepend(errp, "%s: could not open backing file", img->filename);
            return ret;
        }
        const struct ic_driver *drv = NULL;
        if (img->backing_fmt) {
            drv = ic_driver_find(img->backing_fmt);
            if (!drv) {
                ic_io_close(file);
                return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                    "%s: unknown backing format '%s'", img->filename,
                                    img->backing_fmt);
            }
        } else if ((ret = probe_file(file, &drv, errp)) < 0) {
            ic_io_close(file);
            return ret;
        }
        struct ic_image *bk = NULL;
        unsigned bflags = top->flags & ~(IC_OPEN_RDWR | IC_OPEN_CHECK);
        ret = ic_image_open_layer(&bk, file, path, drv, bflags, top->open_file, top->payload, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "%s: could not open backing file", img->filename);
            return ret;
        }
        bk->depth = img->depth + 1;
        img->backing = bk;
        img = bk;
        depth_left--;
        depth++;
    }
    return 0;
}

static int open_common(ic_image **out, ic_io *file, const char *path,
                       const ic_open_options *opts, ic_error **errp)
{
    static const ic_open_options defaults = IC_OPEN_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    const struct ic_driver *drv = NULL;
    int ret;
    if (opts->format) {
        drv = ic_driver_find(opts->format);
        if (!drv) {
            ic_io_close(file);
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown format '%s'", path,
                                opts->format);
        }
    } else if ((ret = probe_file(file, &drv, errp)) < 0) {
        ic_io_close(file);
        return ret;
    }
    struct ic_image *img = NULL;
    ret = ic_image_open_layer(&img, file, path, drv, opts->flags, opts->open_file, opts->payload,
                              errp);
    if (ret < 0)
        return ret;
    if (!(opts->flags & IC_OPEN_NO_BACKING)) {
        unsigned depth = opts->max_depth ? opts->max_depth : IC_CHAIN_DEFAULT_MAX_DEPTH;
        ret = ic_chain_open_backing(img, depth, errp);
        if (ret < 0) {
            ic_image_free_chain(img);
            return ret;
        }
    }
    *out = img;
    return 0;
}

int ic_image_open(ic_image **out, const char *path, const ic_open_options *opts, ic_error **errp)
{
    *out = NULL;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_image_open: no file name given");
    if (opts && (opts->flags & IC_OPEN_RDWR) && (opts->flags & IC_OPEN_FORCE_SHARE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: force-share (-U) is only allowed read-only", path);
    unsigned flags = opts ? opts->flags : 0;
    ic_io *file = NULL;
    int ret = ic_image_open_file(opts ? opts->open_file : NULL, opts ? opts->payload : NULL,
                                 &file, path, io_flags_for(flags, true), errp);
    if (ret < 0)
        return ret;
    return open_common(out, file, path, opts, errp);
}

int ic_image_open_io(ic_image **out, ic_io *file, const ic_open_options *opts, ic_error **errp)
{
    *out = NULL;
    return open_common(out, file, ic_io_name(file), opts, errp);
}
