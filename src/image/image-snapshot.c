/*
 * image-snapshot.c - the public internal-snapshot API (imgchain/snapshot.h):
 * argument checks, name-or-id resolution and error context, dispatched to
 * the format driver's snapshot ops.
 *
 * Design notes:
 *  Owns no on-disk structure; the qcow2 driver does the work
 *  (src/qcow2/qcow2-snapshot.c).
 *  1. Every public entry point prefixes its errors with its own name and
 *     the image's file name, once (libnbd context).
 *  2. Names are resolved here against the driver's list, so the driver is
 *     always called with an exact id: delete tries the name first (what
 *     qemu-img -d matches), then the id; apply lets the driver match an id
 *     first, then a name (qemu-img -a).
 *  3. Formats without the ops fail with -ENOTSUP and change nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/chain.h"
#include "imgchain/snapshot.h"
#include "image.h"
#include "util/error.h"

static int need_rw(ic_image *img, const char *fn, ic_error **errp)
{
    if (img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: %s: the image is opened read-only",
                            fn, img->filename);
    return 0;
}

static int unsupported(ic_image *img, const char *fn, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                        "%s: %s: format %s does not support internal snapshots", fn,
                        img->filename, img->drv->name);
}

int ic_snapshot_create(ic_image *img, const char *name, ic_error **errp)
{
    static const char fn[] = "ic_snapshot_create";
    if (!name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no snapshot name", fn);
    int ret = need_rw(img, fn, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->snapshot_create)
        return unsupported(img, fn, errp);
    ic_snapshot_info sn = { 0 };
    sn.name = (char *)(uintptr_t)name;
    sn.icount = 0; /* what qemu-img snapshot -c records */
    ret = img->drv->snapshot_create(img, &sn, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s: %s", fn, img->filename);
    return ret;
}

int ic_snapshot_apply(ic_image *img, const char *id_or_name, ic_error **errp)
{
    static const char fn[] = "ic_snapshot_apply";
    if (!id_or_name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no snapshot given", fn);
    int ret = need_rw(img, fn, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->snapshot_goto)
        return unsupported(img, fn, errp);
    ret = img->drv->snapshot_goto(img, id_or_name, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s: %s", fn, img->filename);
    return ret;
}

int ic_snapshot_list(ic_image *img, ic_snapshot_info **out, ic_error **errp)
{
    *out = NULL;
    if (!img->drv->snapshot_list)
        return 0;
    int ret = img->drv->snapshot_list(img, out, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

void ic_snapshot_list_free(ic_snapshot_info *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        ic_snapshot_info_clear(&list[i]);
    free(list);
}

int ic_snapshot_delete(ic_image *img, const char *name_or_id, ic_error **errp)
{
    static const char fn[] = "ic_snapshot_delete";
    if (!name_or_id)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no snapshot given", fn);
    int ret = need_rw(img, fn, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->snapshot_delete)
        return unsupported(img, fn, errp);
    ic_snapshot_info *list = NULL;
    int n = ic_snapshot_list(img, &list, errp);
    if (n < 0)
        return n;
    const char *id = NULL;
    for (int i = 0; i < n && !id; i++)
        if (!strcmp(list[i].name, name_or_id))
            id = list[i].id;
    for (int i = 0; i < n && !id; i++)
        if (!strcmp(list[i].id, name_or_id))
            id = list[i].id;
    if (!id)
        ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "%s: %s: snapshot '%s' not found", fn,
                           img->filename, name_or_id);
    else if ((ret = img->drv->snapshot_delete(img, id, NULL, errp)) < 0)
        ic_error_prepend(errp, "%s: %s", fn, img->filename);
    ic_snapshot_list_free(list, n > 0 ? (size_t)n : 0);
    return ret;
}

/* ---- temporary snapshot views (imgchain/chain.h) ------------------------ */

int ic_image_snapshot_load_tmp(ic_image *img, const char *id, const char *name, bool either,
                               ic_error **errp)
{
    if (!img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: a snapshot can only be loaded into a read-only image",
                            img->filename);
    if (!id && !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no snapshot id or name given",
                            img->filename);
    if (!img->drv->snapshot_load_tmp)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support internal snapshots", img->filename,
                            img->drv->name);
    int ret;
    if (either) {
        /* qemu-img's -l ID_OR_NAME: the id first, then the name. */
        const char *key = id ? id : name;
        ic_error *local = NULL;
        ret = img->drv->snapshot_load_tmp(img, key, NULL, &local);
        if (ret == -ENOENT || ret == -EINVAL) {
            ic_error_free(local);
            ret = img->drv->snapshot_load_tmp(img, NULL, key, errp);
        } else if (ret < 0) {
            ic_error_propagate(errp, local);
        }
    } else {
        ret = img->drv->snapshot_load_tmp(img, id, name, errp);
    }
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}
