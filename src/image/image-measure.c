/*
 * image-measure.c - ic_image_measure(): the generic half of `qemu-img
 * measure` (qemu's bdrv_measure), in front of each driver's measure op.
 *
 * Design notes:
 *  1. The target format is looked up by name and its -o string parsed
 *     here; the driver takes the keys it knows (qemu accepts every create
 *     option of the format and ignores those that do not change the size);
 *     a key nobody took is an error, as in qemu-img.
 *  2. Messages for an unknown format and a format without measurement are
 *     qemu-img's.
 */
#include <errno.h>
#include <string.h>

#include "driver.h"
#include "image.h"

int ic_image_measure(const char *format, const char *options, ic_image *src, uint64_t size,
                     ic_measure_info *out, ic_error **errp)
{
    memset(out, 0, sizeof(*out));
    if (!format)
        format = "raw";
    const struct ic_driver *drv = ic_driver_find(format);
    if (!drv)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Unknown file format '%s'", format);
    if (!drv->measure)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Block driver '%s' does not support size measurement", drv->name);
    ic_opts *opts = NULL;
    int ret = ic_opts_parse(&opts, options, errp);
    if (ret < 0)
        return ret;
    ret = drv->measure(opts, src, size, out, errp);
    if (ret == 0)
        ret = ic_opts_check_unused(opts, drv->name, errp);
    ic_opts_free(opts);
    if (ret < 0)
        memset(out, 0, sizeof(*out));
    return ret;
}
