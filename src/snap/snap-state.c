/*
 * snap-state.c - would reverting lose anything?  The two questions
 * snapshot-revert asks of a disk before it switches it to a snapshot:
 *
 *   ic_image_layer_allocated()  external disks: does the active overlay
 *                               itself (not its backing chain) hold any
 *                               cluster?  Then it holds writes no snapshot
 *                               captured.
 *   ic_snapshot_differs()       internal disks: is the qcow2 image's active
 *                               state still exactly its snapshot S?
 *
 * Design notes
 * ------------
 * Owns no on-disk structure: both questions are answered through the
 * public image layer (ic_image_block_status, ic_image_snapshot_load_tmp,
 * ic_image_open), so the format drivers stay behind src/image.
 *
 *  1. "Allocated" is the IC_BS_ALLOCATED flag of the layer's own block
 *     status (the walk stops at the layer's backing image): data clusters
 *     and clusters the layer marks as reading zero both count, since both
 *     are writes the guest made after the overlay was created.
 *  2. The active state of a qcow2 image equals snapshot S exactly when
 *     every guest cluster maps to the same place in both: same
 *     allocation, zero and compression flags and, where the cluster has
 *     one, the same host offset.  Equal L1 tables (what a fresh snapshot
 *     or a just-applied one has: the active L1 entries are S's L2 offsets)
 *     imply equal mappings; a guest write after S copies on write (the
 *     cluster was shared with S), so it always moves a host offset and
 *     shows as a difference.  Comparing the mappings rather than the L1
 *     bytes answers the question the revert asks (would state be lost?)
 *     without reading qcow2 structures outside src/qcow2, and also treats
 *     as equal an L2 table that was copied but still maps the same clusters.
 *  3. The snapshot's view is a second, read-only handle on the same file
 *     (IC_OPEN_FORCE_SHARE: the caller may hold @img read-write, and this
 *     handle writes nothing), without its backing chain: only the layer's
 *     own mappings matter.  The caller flushes @img first if it wrote.
 *  4. The virtual sizes differing is a difference (apply would resize).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/chain.h"
#include "imgchain/snapshot.h"
#include "util/error.h"

/* Longest run asked for at once; drivers answer shorter runs anyway. */
#define STATE_QUERY_MAX (1ULL << 40)

static uint64_t query_len(uint64_t size, uint64_t off)
{
    uint64_t left = size - off;
    return left < STATE_QUERY_MAX ? left : STATE_QUERY_MAX;
}

int ic_image_layer_allocated(ic_image *img, uint64_t *first, ic_error **errp)
{
    if (!img)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_image_layer_allocated: no image");
    const ic_image *base = ic_image_backing(img);
    uint64_t size = ic_image_size(img);
    for (uint64_t off = 0; off < size;) {
        ic_block_status st;
        int ret = ic_image_block_status(img, base, off, query_len(size, off), &st, errp);
        if (ret < 0)
            return ret;
        if (st.flags & IC_BS_ALLOCATED) {
            if (first)
                *first = off;
            return 1;
        }
        off += st.length;
    }
    return 0;
}

/* The mapping facts that must agree between the two views. */
#define STATE_FLAGS (IC_BS_ALLOCATED | IC_BS_ZERO | IC_BS_DATA | IC_BS_COMPRESSED | \
                     IC_BS_OFFSET_VALID)

/* Compares the two views from @off on; 1 (difference at *at), 0, -errno. */
static int compare_views(ic_image *cur, ic_image *snap, uint64_t *at, ic_error **errp)
{
    uint64_t size = ic_image_size(cur);
    for (uint64_t off = 0; off < size;) {
        ic_block_status a, b;
        int ret = ic_image_block_status(cur, NULL, off, query_len(size, off), &a, errp);
        if (ret == 0)
            ret = ic_image_block_status(snap, NULL, off, query_len(size, off), &b, errp);
        if (ret < 0)
            return ret;
        if ((a.flags & STATE_FLAGS) != (b.flags & STATE_FLAGS) ||
            ((a.flags & IC_BS_OFFSET_VALID) && a.host_offset != b.host_offset)) {
            *at = off;
            return 1;
        }
        /* both runs map contiguously from the same start: the shorter one
         * agrees on its whole length */
        off += a.length < b.length ? a.length : b.length;
    }
    return 0;
}

int ic_snapshot_differs(ic_image *img, const char *name, uint64_t *first, ic_error **errp)
{
    static const char fn[] = "ic_snapshot_differs";
    if (!img || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no image or snapshot name", fn);
    ic_image *snap = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = ic_image_format(img);
    o.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    int ret = ic_image_open(&snap, ic_image_filename(img), &o, errp);
    if (ret < 0)
        return ret;
    ret = ic_image_snapshot_load_tmp(snap, NULL, name, false, errp);
    if (ret < 0)
        goto out;
    uint64_t at = 0;
    if (ic_image_size(snap) != ic_image_size(img)) {
        /* apply would change the virtual size: the current one is lost */
        at = ic_image_size(snap) < ic_image_size(img) ? ic_image_size(snap) : ic_image_size(img);
        ret = 1;
    } else {
        /* the active view without its backing chain: a second handle, so
         * that @img keeps its chain for the caller */
        ic_image *cur = NULL;
        ret = ic_image_open(&cur, ic_image_filename(img), &o, errp);
        if (ret == 0)
            ret = compare_views(cur, snap, &at, errp);
        ic_image_close(cur);
    }
    if (ret == 1 && first)
        *first = at;
out:
    ic_image_close(snap);
    return ret;
}
