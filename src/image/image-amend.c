/*
 * image-amend.c - ic_image_amend(): the generic half of `qemu-img amend`
 * (qemu's bdrv_amend_options), in front of each driver's amend op.
 *
 * Design notes:
 *  1. The -o string is parsed here; the driver takes the keys it can
 *     change and refuses creation-only keys itself (their message names
 *     them as such); a key nobody took is "Invalid parameter 'KEY'", as in
 *     qemu-img.  Messages for an unparsable list and a format without
 *     amendment are qemu-img's.
 *  2. ic_image_amend_check() runs the same refusals on an image that may
 *     be read-only, so a caller can refuse before a read-write open (which
 *     may itself write): a refused amend leaves the file as it was.
 *  3. Errors are prefixed with the file name, as every ic_image_* wrapper.
 */
#include <errno.h>
#include <string.h>

#include "driver.h"
#include "image.h"

static int amend(ic_image *img, const char *options, bool dry_run, ic_error **errp)
{
    if (img->read_only && !dry_run)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: image is opened read-only",
                            img->filename);
    if (img->state == IC_IMAGE_ERROR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                            "%s: image is in an error state after an earlier failure; "
                            "writes refused", img->filename);
    if (!img->drv->amend)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: Format driver '%s' does not support option amendment",
                            img->filename, img->drv->name);
    ic_opts *opts = NULL;
    ic_error *perr = NULL;
    if (!options || !*options || *options == ',' || ic_opts_parse(&opts, options, &perr) < 0) {
        ic_error_free(perr);
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: Invalid option list: %s",
                            img->filename, options ? options : "");
    }
    int ret = img->drv->amend(img, opts, dry_run, errp);
    ic_opts_free(opts);
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

int ic_image_amend(ic_image *img, const char *options, ic_error **errp)
{
    return amend(img, options, false, errp);
}

int ic_image_amend_check(ic_image *img, const char *options, ic_error **errp)
{
    return amend(img, options, true, errp);
}
