/*
 * qcow2-resize.c - qemu-img resize for qcow2 (qemu's qcow2_co_truncate plus
 * the zeroing bdrv_co_truncate asks for when a backing file would show
 * through the new area).
 *
 * Design notes:
 *  1. Refusals come first and write nothing, with qemu's messages in
 *     qemu's order: a size not a multiple of 512, a v2 image with internal
 *     snapshots, a v2 image whose backing file holds data past the old size
 *     (qemu cannot zero the new area without zero clusters).  imgchain also
 *     refuses an image with persistent dirty bitmaps (it cannot resize
 *     them, and must not leave them describing another size) and
 *     preallocation with an external data file.
 *  2. Growing: the L1 grows first if the new size needs it (new table,
 *     flush, header switch, old table freed; qcow2-cluster.c), and so do
 *     the refcount structures, as allocation requires (qcow2-refcount.c
 *     design note 5).  Then everything the new area needs is written while
 *     it is still past the virtual size, so nothing visible changes: zeroes
 *     where the backing file would show through, explicit zeroes over the
 *     old size's partial last cluster, preallocated clusters.  Only after
 *     all of that is flushed does one 8-byte header write switch the size.
 *     A crash at any point leaves the old size with, at worst, leaked
 *     clusters.
 *  3. Shrinking: the header switch comes first (the tail disappears from
 *     the guest view at once), then the tail's clusters are dropped and
 *     their tables unhooked (tables, L1, then decrements), then the file is
 *     cut after its last used cluster.  A crash after the switch leaves
 *     only leaked clusters.  The partial cluster at the new end keeps its
 *     bytes past the end; a later grow zeroes them (note 2).
 *  4. v3 images with internal snapshots may grow and shrink as in qemu:
 *     the snapshots keep their own L1 tables and sizes, and shared
 *     clusters are only decremented.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util/endian.h"
#include "util/overflow.h"

static int fail(struct ic_image *img, int ret, ic_error **errp, const char *what)
{
    if (img->last_error)
        return ic_error_set(errp, img->last_error->kind, -ret, "%s: %s", what,
                            img->last_error->msg);
    return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: %s", what,
                        strerror(-ret));
}

static int write_size(struct ic_image *img, uint64_t size)
{
    uint8_t b[8];
    ic_store_be64(b, size);
    ic_io_event(img->file, IC_EV_HEADER_UPDATE);
    int ret = ic_io_pwrite(img->file, b, 8, QCOW2_HDR_SIZE);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    return ret;
}

/* Zeroes of [off, off + len) written as data through the write path (the
 * old size's partial last cluster, below one cluster). */
static int write_zero_data(struct ic_image *img, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    void *z = calloc(1, (size_t)len);
    if (!z)
        return -ENOMEM;
    int ret = qcow2_cluster_pwrite(img, z, (size_t)len, off);
    free(z);
    return ret;
}

/* Does this layer allocate anything in [off, off + len)? */
static int layer_allocates(struct ic_image *img, uint64_t off, uint64_t len, bool *out)
{
    *out = false;
    while (len > 0) {
        uint64_t pnum = 0, map = 0;
        unsigned flags = 0;
        ic_io *file = NULL;
        int ret = qcow2_cluster_block_status(img, off, len, &pnum, &flags, &map, &file);
        if (ret < 0)
            return ret;
        if (pnum == 0 || pnum > len)
            return -EIO;
        if (flags & IC_BS_ALLOCATED) {
            *out = true;
            return 0;
        }
        off += pnum;
        len -= pnum;
    }
    return 0;
}

static int grow(struct ic_image *img, uint64_t size, ic_prealloc prealloc, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t old = img->size, cs = s->cluster_size;
    bool shows = ic_resize_backing_shows(img, old);
    uint64_t need = qcow2_size_to_l1(s, size);
    int ret = 0;
    if (need > s->l1_size && (ret = qcow2_grow_l1(img, need)) < 0)
        return fail(img, ret, errp, "cannot grow the L1 table");
    uint64_t head_end = IC_MIN(IC_ALIGN_UP(old, cs), size);
    bool head_alloc = false;
    if (head_end > old && !shows && (ret = layer_allocates(img, old, head_end - old, &head_alloc)) < 0)
        return fail(img, ret, errp, "cannot read the last cluster's status");
    /* The area past the old size is invisible until the header switch:
     * the write paths below see the new size in memory only. */
    img->size = size;
    if (head_end > old && (shows || head_alloc))
        ret = write_zero_data(img, old, head_end - old);
    if (ret == 0 && shows && size > head_end)
        ret = qcow2_cluster_pwrite_zeroes(img, head_end, size - head_end, 0);
    if (ret == 0 && prealloc != IC_PREALLOC_OFF)
        ret = qcow2_cluster_preallocate(img, head_end, size, prealloc);
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret == 0 && s->data_file_raw)
        ret = ic_io_truncate(s->data_file, size);
    if (ret == 0 && s->data_file_raw && prealloc != IC_PREALLOC_OFF)
        ret = ic_resize_fill(s->data_file, old, size - old, prealloc);
    img->size = old;
    if (ret < 0)
        return fail(img, ret, errp, "cannot prepare the new area");
    if ((ret = write_size(img, size)) < 0) {
        img->state = IC_IMAGE_ERROR;
        return fail(img, ret, errp, "cannot write the new size");
    }
    return 0;
}

/* The byte after the last cluster with a non-zero refcount. */
static int used_end(struct ic_image *img, uint64_t *end)
{
    struct qcow2_state *s = qcow2_state(img);
    int64_t fc = qcow2_file_clusters(img);
    if (fc < 0)
        return (int)fc;
    for (uint64_t c = (uint64_t)fc; c > 0; c--) {
        uint64_t rc;
        int ret = qcow2_get_refcount(img, c - 1, &rc);
        if (ret < 0)
            return ret;
        if (rc) {
            *end = c << s->cluster_bits;
            return 0;
        }
    }
    *end = 0;
    return 0;
}

static int shrink(struct ic_image *img, uint64_t size, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return fail(img, ret, errp, "cannot flush before shrinking");
    if ((ret = write_size(img, size)) < 0) {
        img->state = IC_IMAGE_ERROR;
        return fail(img, ret, errp, "cannot write the new size");
    }
    s->h.size = size;
    img->size = size;
    s->l1_vm_state_index = (uint32_t)qcow2_size_to_l1(s, size);
    /* From here on the tail is invisible: dropping it can only leak. */
    ret = qcow2_cluster_drop_tail(img, size);
    if (ret == 0 && s->data_file_raw)
        ret = ic_io_truncate(s->data_file, size);
    if (ret < 0) {
        img->state = IC_IMAGE_ERROR;
        return fail(img, ret, errp, "cannot free the dropped clusters");
    }
    /* Cutting the file after its last used cluster only tidies: the
     * shrink is complete before it; a failure is still reported (the
     * image keeps its new size and at worst unused space). */
    uint64_t end = 0;
    int64_t fsz = ic_io_get_size(img->file);
    ret = fsz < 0 ? (int)fsz : used_end(img, &end);
    if (ret == 0 && end && end < (uint64_t)fsz) {
        ret = ic_io_truncate(img->file, end);
        if (ret == 0)
            ret = ic_io_flush(img->file);
    }
    if (ret < 0)
        return fail(img, ret, errp, "shrunk, but cannot cut the file after its last cluster");
    return 0;
}

int qcow2_resize(struct ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                 ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (size % 512)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "The new size must be a multiple of 512");
    if (s->nb_snapshots && s->h.version < 3)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Can't resize a v2 image which has snapshots");
    if (s->nb_bitmaps)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "the image has %" PRIu32 " persistent dirty bitmap(s), which imgchain "
                            "cannot resize; nothing was changed", s->nb_bitmaps);
    if (size > QCOW2_MAX_VIRTUAL_SIZE)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG, "size %" PRIu64 " is too large", size);
    if (size < img->size) {
        if (prealloc != IC_PREALLOC_OFF)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "Preallocation can't be used for shrinking an image");
        return dry_run ? 0 : shrink(img, size, errp);
    }
    if (size == img->size)
        return 0;
    if (prealloc != IC_PREALLOC_OFF && s->data_file && !s->data_file_raw)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "preallocation with an external data file is not supported by "
                            "imgchain; nothing was changed");
    if (s->h.version < 3 && ic_resize_backing_shows(img, img->size))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Failed to zero out new clusters: Operation not supported");
    if (dry_run)
        return 0;
    int ret = grow(img, size, prealloc, errp);
    if (ret < 0)
        return ret;
    s->h.size = size;
    img->size = size;
    s->l1_vm_state_index = (uint32_t)qcow2_size_to_l1(s, size);
    return 0;
}
