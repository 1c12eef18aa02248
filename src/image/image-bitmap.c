/*
 * image-bitmap.c - the public persistent dirty bitmap calls
 * (imgchain/bitmap.h) over the driver ops bitmap_change and bitmap_dump.
 *
 * Design notes:
 *  1. A merge reads its source through ic_bitmap_dump (any image, any
 *     granularity: the source's dirty extents are marked in the target,
 *     granule by granule, as qemu's merge marks them) and hands the
 *     extents to the target's driver, so drivers never look into another
 *     image's state.
 *  2. Errors carry qemu-img bitmap's words and are prefixed with the API
 *     name and the file, as every public entry point does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "image.h"
#include "util/error.h"

struct extents {
    uint64_t (*v)[2];
    size_t n, cap;
};

static int collect(uint64_t start, uint64_t length, void *payload)
{
    struct extents *e = payload;
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        uint64_t (*nv)[2] = realloc(e->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        e->v = nv;
        e->cap = cap;
    }
    e->v[e->n][0] = start;
    e->v[e->n][1] = length;
    e->n++;
    return 0;
}

int ic_bitmap_dump(ic_image *img, const char *name, ic_bitmap_extent_fn fn, void *payload,
                   ic_error **errp)
{
    if (!name || !fn)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_bitmap_dump: no bitmap name");
    if (!img->drv->bitmap_dump)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: format %s "
                            "has no persistent dirty bitmaps", img->filename, img->drv->name);
    int ret = img->drv->bitmap_dump(img, name, fn, payload, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

int ic_bitmap_change(ic_image *img, ic_bitmap_action action, const char *name,
                     uint64_t granularity, ic_image *src, const char *src_name, ic_error **errp)
{
    static const char fn[] = "ic_bitmap_change";
    if (!name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no bitmap name", fn);
    if (action > IC_BITMAP_MERGE)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown action %d", fn,
                            (int)action);
    if (img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: %s: image is opened read-only", fn,
                            img->filename);
    if (img->state == IC_IMAGE_ERROR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: %s: image is in an error state "
                            "after an earlier failure", fn, img->filename);
    if (!img->drv->bitmap_change)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: %s: format %s cannot store "
                            "persistent dirty bitmaps", fn, img->filename, img->drv->name);
    struct extents e = { NULL, 0, 0 };
    int ret = 0;
    if (action == IC_BITMAP_MERGE) {
        if (!src_name)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no source bitmap", fn);
        ic_error *derr = NULL;
        ret = ic_bitmap_dump(src ? src : img, src_name, collect, &e, &derr);
        if (ret < 0) {
            ic_error_propagate(errp, derr);
            free(e.v);
            return ret;
        }
    }
    ret = img->drv->bitmap_change(img, action, name, granularity, (const uint64_t (*)[2])e.v,
                                  e.n, errp);
    free(e.v);
    if (ret < 0)
        ic_error_prepend(errp, "%s: %s", fn, img->filename);
    return ret;
}
