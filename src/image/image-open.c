/*
 * image-open.c - opening an image with its backing chain.
 *
 * Design notes:
 *  1. The top image's format is the caller's, or probed.  A backing image's
 *     format is the one its overlay records; only when none is recorded is
 *     it probed, so a raw backing file that happens to contain a qcow2
 *     header is never reinterpreted (qemu's probing hazard).  A probed
 *     format imgchain does not implement (vmdk, vdi, LUKS...) is refused,
 *     top or backing, instead of being read or written as raw.
 *  2. Backing names are resolved against the directory of the overlay as it
 *     was named (qemu's rule), so relative chains work from any directory.
 *  3. Loops are found by real path with a depth limit (default 256), by
 *     the walker every chain walk shares (image-walk.c): a loop through
 *     any spelling of one file is reported as a loop before the file is
 *     opened twice, where qemu-img 7.2 recurses without bound.
 *  4. Backing files are opened read-only with shared locks; only the top
 *     image may be writable.
 *  5. A raw file cannot have a backing file; it ends the chain.
 *  6. Every file is opened by ic_image_open_file_cache (image-cache.c),
 *     the one place where a cache mode picks the backend.  The top image
 *     uses opts->cache, its backing chain opts->backing_cache (DEFAULT:
 *     the same mode).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "util/path.h"

static int probe_file(ic_io *file, const struct ic_driver **drv, ic_error **errp)
{
    return ic_image_probe_file(file, drv, errp);
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

int ic_chain_open_backing(struct ic_image *top, unsigned max_depth, ic_error **errp)
{
    struct ic_walk w;
    ic_walk_init(&w, max_depth);
    int ret = ic_walk_visit(&w, top->filename);
    struct ic_image *img = top;
    while (ret == IC_WALK_OK) {
        bool oom;
        char *path = ic_walk_next(img, &oom);
        if (!path) {
            if (oom)
                ret = -ENOMEM;
            break;
        }
        ret = ic_walk_visit(&w, path);
        if (ret == IC_WALK_LOOP || ret == IC_WALK_TOO_DEEP) {
            if (ret == IC_WALK_LOOP)
                ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                             "%s: backing file '%s' creates an infinite loop", img->filename,
                             path);
            else
                ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                             "%s: backing chain is deeper than the limit of %u images",
                             top->filename, w.max_depth);
            free(path);
            ret = -ELOOP;
            break;
        }
        if (ret < 0) {
            free(path);
            break;
        }
        free(img->backing_path);
        img->backing_path = path;
        ic_io *file = NULL;
        ret = ic_image_open_file_cache(top->open_file, top->payload, &file, path,
                                       io_flags_for(top->flags, false), top->backing_cache, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "%s: could not open backing file", img->filename);
            break;
        }
        const struct ic_driver *drv = NULL;
        if (img->backing_fmt) {
            drv = ic_driver_find(img->backing_fmt);
            if (!drv) {
                ic_io_close(file);
                if (ic_foreign_is_format(img->backing_fmt))
                    ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                       "%s: backing file %s: %s images are not supported",
                                       img->filename, path, img->backing_fmt);
                else
                    ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                       "%s: unknown backing format '%s'", img->filename,
                                       img->backing_fmt);
                break;
            }
        } else if ((ret = probe_file(file, &drv, errp)) < 0) {
            ic_io_close(file);
            break;
        }
        struct ic_image *bk = NULL;
        unsigned bflags = top->flags & ~(IC_OPEN_RDWR | IC_OPEN_CHECK);
        ret = ic_image_open_layer(&bk, file, path, drv, bflags, top->open_file, top->payload, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "%s: could not open backing file", img->filename);
            break;
        }
        bk->depth = img->depth + 1;
        bk->probed = !img->backing_fmt;
        ic_image_set_cache(bk, top->backing_cache);
        bk->backing_cache = top->backing_cache;
        img->backing = bk;
        img = bk;
    }
    ic_walk_fini(&w);
    if (ret == -ENOMEM)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    return ret < 0 ? ret : 0;
}

/* The cache modes of @opts (version 1 has none). */
static ic_cache_mode top_cache(const ic_open_options *opts)
{
    return opts && opts->version >= 2 ? opts->cache : IC_CACHE_DEFAULT;
}

static ic_cache_mode chain_cache(const ic_open_options *opts)
{
    if (!opts || opts->version < 2)
        return IC_CACHE_DEFAULT;
    return opts->backing_cache != IC_CACHE_DEFAULT ? opts->backing_cache : opts->cache;
}

static int check_options(const char *path, const ic_open_options *opts, ic_error **errp)
{
    if (!opts)
        return 0;
    if (opts->version < 1 || opts->version > IC_OPEN_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown open options version %u",
                            path, opts->version);
    if (!ic_cache_mode_valid(top_cache(opts)) || !ic_cache_mode_valid(chain_cache(opts)))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown cache mode", path);
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
            if (ic_foreign_is_format(opts->format))
                return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                    "%s: %s images are not supported", path, opts->format);
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
    img->probed = !opts->format;
    ic_image_set_cache(img, top_cache(opts));
    img->backing_cache = chain_cache(opts);
    if (!(opts->flags & IC_OPEN_NO_BACKING)) {
        ret = ic_chain_open_backing(img, opts->max_depth, errp);
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
    int ret = check_options(path, opts, errp);
    if (ret < 0)
        return ret;
    unsigned flags = opts ? opts->flags : 0;
    ic_io *file = NULL;
    ret = ic_image_open_file_cache(opts ? opts->open_file : NULL, opts ? opts->payload : NULL,
                                   &file, path, io_flags_for(flags, true), top_cache(opts),
                                   errp);
    if (ret < 0)
        return ret;
    return open_common(out, file, path, opts, errp);
}

int ic_image_open_io(ic_image **out, ic_io *file, const ic_open_options *opts, ic_error **errp)
{
    *out = NULL;
    int ret = check_options(ic_io_name(file), opts, errp);
    if (ret < 0) {
        ic_io_close(file);
        return ret;
    }
    return open_common(out, file, ic_io_name(file), opts, errp);
}
