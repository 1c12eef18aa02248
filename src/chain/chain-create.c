/*
 * chain-create.c - ic_image_create(): validate, open the backing chain for
 * its size, create the file, let the format driver lay it out.
 *
 * Design notes:
 *  1. Everything that can be refused is refused before the target file is
 *     touched: the format, the size, the backing file (opened read-only,
 *     unless -u), generic option syntax.  The driver's create() validates
 *     its own options before it truncates the file.
 *  2. A target that did not exist and whose creation failed is removed, so
 *     a refused create leaves nothing behind.
 *  3. The target is locked as a writer before it is truncated: an image a
 *     running VM uses is never clobbered.
 *  4. An existing regular file is not rewritten: the new image is built in
 *     a temporary file next to it and renamed over it (src/io/io-posix.c
 *     note 7), so a create that fails late (an I/O error, a full disk)
 *     leaves the old file byte for byte as it was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "util/path.h"

int ic_image_create(const char *path, const ic_create_options *opts, ic_error **errp)
{
    static const ic_create_options defaults = IC_CREATE_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    const char *fmt = opts->format ? opts->format : "qcow2";
    const struct ic_driver *drv = ic_driver_find(fmt);
    if (!drv)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown format '%s'", path, fmt);
    if (!drv->create)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: format '%s' cannot be created",
                            path, fmt);
    ic_opts *o = NULL;
    int ret = ic_opts_parse(&o, opts->options, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s", path);
        return ret;
    }
    /* -o size=, backing_file=, backing_fmt= are the same as the arguments. */
    uint64_t size = opts->size;
    bool size_set = opts->size_set;
    const char *backing = opts->backing_file, *bfmt = opts->backing_format;
    uint64_t osize;
    ret = ic_opts_take_size(o, "size", &osize, errp);
    if (ret < 0)
        goto out;
    if (ret > 0 && !size_set) {
        size = osize;
        size_set = true;
    }
    const char *s;
    if (ic_opts_take_str(o, "backing_file", &s) > 0 && !backing)
        backing = s;
    if (ic_opts_take_str(o, "backing_fmt", &s) > 0 && !bfmt)
        bfmt = s;
    if (backing && !*backing)
        backing = NULL;
    if (bfmt && !backing) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "%s: a backing format was given without a backing file", path);
        goto out;
    }
    if (backing && strlen(backing) > 1023) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: backing file name is too long", path);
        goto out;
    }
    if (bfmt && !ic_driver_find(bfmt)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown backing format '%s'", path, bfmt);
        goto out;
    }
    if (backing && !opts->no_backing_open) {
        char *bpath = ic_path_resolve_backing(path, backing);
        if (!bpath) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        ic_open_options bo = IC_OPEN_OPTIONS_INIT;
        bo.format = bfmt;
        bo.open_file = opts->open_file;
        bo.payload = opts->payload;
        ic_image *bimg = NULL;
        ret = ic_image_open(&bimg, bpath, &bo, errp);
        free(bpath);
        if (ret < 0) {
            ic_error_prepend(errp, "%s: could not open backing file", path);
            goto out;
        }
        if (!bfmt) {
            /* As qemu-img 7.2: probing a backing file and recording the
             * guess is unsafe, so the format must be named. */
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "%s: backing file specified without backing format "
                               "(detected format of %s: %s; use -F)",
                               path, backing, ic_image_format(bimg));
            ic_image_close(bimg);
            goto out;
        }
        if (!size_set) {
            size = ic_image_size(bimg);
            size_set = true;
        }
        ic_image_close(bimg);
    } else if (backing && !bfmt) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "%s: backing file specified without backing format (use -F)", path);
        goto out;
    }
    if (!size_set) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: image size must be specified", path);
        goto out;
    }
    bool existed = ic_io_file_exists(path);
    ic_io *file = NULL;
    ret = ic_image_open_file(opts->open_file, opts->payload, &file, path,
                             IC_IO_RDWR | IC_IO_CREATE, errp);
    if (ret < 0)
        goto out;
    /* Note 4: an existing file is replaced whole, not rewritten. */
    ic_io *tmp = NULL;
    if (existed && !opts->open_file && (ret = ic_io_open_replacement(&tmp, path, errp)) < 0) {
        ic_io_close(file);
        goto out;
    }
    struct ic_create_params p = {
        .filename = path,
        .size = size,
        .backing_file = backing,
        .backing_format = bfmt,
        .opts = o,
        .open_file = opts->open_file,
        .payload = opts->payload,
    };
    ret = drv->create(tmp ? tmp : file, &p, errp);
    if (ret == 0) {
        ret = ic_io_flush(tmp ? tmp : file);
        if (ret < 0)
            ic_error_set(errp, IC_ERR_IO, -ret, "%s: flush failed: %s", path, strerror(-ret));
    } else {
        ic_error_prepend(errp, "%s", path);
    }
    if (tmp && ret == 0)
        ret = ic_io_commit_replacement(tmp, path, errp);
    if (tmp && ret == 0)
        ic_io_close(tmp);
    else
        ic_io_discard_replacement(tmp);
    ic_io_close(file);
    if (ret < 0 && !existed && !opts->open_file)
        ic_io_remove(path);
out:
    ic_opts_free(o);
    return ret;
}
