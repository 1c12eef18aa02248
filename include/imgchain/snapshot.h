/*
 * imgchain/snapshot.h - internal snapshots (qcow2): create, apply, delete,
 * list.
 *
 * The image must be opened with IC_OPEN_RDWR for create, apply and delete.
 * Each operation is crash-safe: after a crash the image is either before or
 * after the operation, never in between (one header write switches it).
 * All functions return 0 (or a count) on success and -errno on failure with
 * *errp set (see imgchain/error.h).
 */
#ifndef IMGCHAIN_SNAPSHOT_H
#define IMGCHAIN_SNAPSHOT_H

#include "common.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Creates a disk-only internal snapshot named @p name of the image's
 * current state, with the next free numeric id.
 * @return 0; -EEXIST a snapshot with that name exists; -EINVAL empty name or
 *   longer than 255 bytes, or the image is read-only (-EROFS); -ERANGE a
 *   refcount cannot hold another reference (refcount_bits=1 or at its
 *   maximum; nothing was written); -ENOTSUP the format has no internal
 *   snapshots (raw, QED, qcow2 with a data file); -EFBIG too many
 *   snapshots; -EIO, -ENOSPC.
 */
IC_EXTERN int ic_snapshot_create(ic_image *img, const char *name, ic_error **errp);

/**
 * Reverts the image to snapshot @p id_or_name: matched as an id first,
 * then as a name (qemu-img snapshot -a).  The virtual size becomes the
 * snapshot's.
 * @return 0; -ENOENT no such snapshot; -ERANGE refcount overflow; other
 *   errors as ic_snapshot_create.
 */
IC_EXTERN int ic_snapshot_apply(ic_image *img, const char *id_or_name, ic_error **errp);

/**
 * Deletes snapshot @p name_or_id: matched as a name first (qemu-img
 * snapshot -d matches names), then as an id.  Its clusters (VM state
 * included) are freed.
 * @return 0; -ENOENT no such snapshot; other errors as ic_snapshot_create.
 */
IC_EXTERN int ic_snapshot_delete(ic_image *img, const char *name_or_id, ic_error **errp);

/**
 * Lists the internal snapshots of the top image in table order.
 * @param out receives a malloc'd array (free with ic_snapshot_list_free),
 *   NULL when there are none
 * @return the number of snapshots (>= 0), or -errno.
 */
IC_EXTERN int ic_snapshot_list(ic_image *img, ic_snapshot_info **out, ic_error **errp);
/** Frees a list returned by ic_snapshot_list (NULL is a no-op). */
IC_EXTERN void ic_snapshot_list_free(ic_snapshot_info *list, size_t n);

/* ---- state a revert would lose (src/snap/snap-state.c) ----------------- */

/**
 * Whether the top layer of @p img itself (not its backing chain) allocates
 * any cluster, data or zero: for an overlay, whether it holds writes made
 * since it was created.
 * @param first receives the guest offset of the first allocated run; may
 *   be NULL
 * @return 1 allocated, 0 nothing allocated, -errno.
 */
IC_EXTERN int ic_image_layer_allocated(ic_image *img, uint64_t *first, ic_error **errp);

/**
 * Whether the active state of @p img differs from its internal snapshot
 * @p name (matched by name): 0 when every guest cluster of the image
 * (without its backing chain) maps where the snapshot maps it, as after
 * creating or applying the snapshot with no write since.  Reads through a
 * second read-only handle; flush @p img first if it was written.
 * @param first receives the guest offset of the first difference; may be
 *   NULL
 * @return 1 differs, 0 same, -ENOENT no such snapshot, -ENOTSUP the format
 *   has no internal snapshots, -errno.
 */
IC_EXTERN int ic_snapshot_differs(ic_image *img, const char *name, uint64_t *first,
                                  ic_error **errp);

#ifdef __cplusplus
}
#endif
#endif
