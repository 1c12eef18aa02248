/*
 * imgchain/bitmap.h - persistent dirty bitmaps (qcow2 v3): qemu-img
 * bitmap's operations, and the dirty extents of a bitmap.
 *
 * Every write through the library keeps the enabled bitmaps of an image up
 * to date by itself (see README.md); these functions change the set of
 * bitmaps.  Each change is stored crash-safely before the call returns:
 * after a crash the image has the bitmaps as before or as after.  The
 * image must be opened with IC_OPEN_RDWR for ic_bitmap_change.
 * All functions return 0 on success and -errno on failure with *errp set
 * (see imgchain/error.h).
 */
#ifndef IMGCHAIN_BITMAP_H
#define IMGCHAIN_BITMAP_H

#include "common.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ic_bitmap_action {
    IC_BITMAP_ADD,      /* a new enabled bitmap, all clear */
    IC_BITMAP_REMOVE,   /* the bitmap and its clusters (in-use ones too) */
    IC_BITMAP_CLEAR,    /* every bit cleared */
    IC_BITMAP_ENABLE,   /* records writes from now on (flag "auto") */
    IC_BITMAP_DISABLE,  /* records nothing until enabled again */
    IC_BITMAP_MERGE,    /* ORs a source bitmap in (ic_bitmap_change's src) */
} ic_bitmap_action;

/**
 * Applies @p action to bitmap @p name of @p img, as `qemu-img bitmap`.
 * @p granularity: for IC_BITMAP_ADD, bytes per bit (a power of two, 512 to
 * 2 GiB); 0 = the cluster size kept within 4 KiB..64 KiB (qemu's default).
 * @p src, @p src_name: for IC_BITMAP_MERGE, the source bitmap (@p src NULL
 * = @p img itself; it may be opened read-only).
 * @return 0; -ENOENT no such bitmap; -EEXIST (add) the name exists;
 *   -EINVAL bad granularity or name, or the bitmap is in use
 *   (inconsistent: only IC_BITMAP_REMOVE applies); -ENOTSUP the format or
 *   version cannot store bitmaps; -EROFS read-only image; -EIO, -ENOSPC.
 */
IC_EXTERN int ic_bitmap_change(ic_image *img, ic_bitmap_action action, const char *name,
                               uint64_t granularity, ic_image *src, const char *src_name,
                               ic_error **errp);

/** Receives one dirty extent [start, start + length) of guest bytes;
 * non-zero stops the walk (ic_bitmap_dump returns it). */
typedef int (*ic_bitmap_extent_fn)(uint64_t start, uint64_t length, void *payload);

/**
 * Calls @p fn for every dirty extent of bitmap @p name, in order, merged
 * and clipped to the virtual size: what qemu exports for it through NBD.
 * @return 0 (or @p fn's non-zero value); -ENOENT no such bitmap; -EINVAL
 *   the bitmap is in use (its data is inconsistent); -ENOTSUP the format
 *   has no bitmaps; -EIO.
 */
IC_EXTERN int ic_bitmap_dump(ic_image *img, const char *name, ic_bitmap_extent_fn fn,
                             void *payload, ic_error **errp);

#ifdef __cplusplus
}
#endif
#endif
