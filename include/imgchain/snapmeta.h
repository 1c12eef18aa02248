/*
 * imgchain/snapmeta.h - the snapshot metadata store of one domain.
 *
 * Layout (that of libvirt's qemu driver):
 * ROOT/DOMAIN/NAME.xml, one file per snapshot, each holding libvirt's
 * on-disk form (warning comment, SECURE output, <active>1</active> on the
 * current snapshot and <active>0</active> on the others).  libvirt can read
 * a store imgchain wrote and the other way round.
 *
 * Every change rewrites the affected files atomically (temporary file,
 * fsync, rename, fsync of the folder), ordered so that a crash between two
 * files leaves a store that still loads: at worst without a current
 * snapshot, never with two.
 *
 * Not thread-safe: one handle per domain, used by one thread at a time.
 */
#ifndef IMGCHAIN_SNAPMETA_H
#define IMGCHAIN_SNAPMETA_H

#include "common.h"
#include "error.h"
#include "xml.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ic_snapmeta ic_snapmeta;

/**
 * Loads the store of domain @p domain under @p root (nothing is created
 * until the first write; a missing folder is an empty store).  Every
 * NAME.xml is parsed as libvirt does on daemon start (REDEFINE + metadata
 * form), then the tree is rebuilt and checked.
 * @param out receives the store (free with ic_snapmeta_free)
 * @return 0; -EINVAL a bad domain name, a file that does not parse, a file
 *         whose name is not its snapshot's, "Too many snapshots claiming to
 *         be current for domain D", or "Snapshots have inconsistent
 *         relations for domain D: ..." (missing parent, cycle); -errno of
 *         reading the folder; -ENOMEM.
 */
IC_EXTERN int ic_snapmeta_open(ic_snapmeta **out, const char *root, const char *domain,
                               ic_error **errp);
/** Frees @p m (the files stay); NULL is a no-op. */
IC_EXTERN void ic_snapmeta_free(ic_snapmeta *m);

/** The folder holding the files (borrowed). */
IC_EXTERN const char *ic_snapmeta_dir(const ic_snapmeta *m);
/** Number of snapshots. */
IC_EXTERN size_t ic_snapmeta_count(const ic_snapmeta *m);
/** The snapshot named @p name (borrowed, valid until the next change), or NULL. */
IC_EXTERN const ic_snapshot_def *ic_snapmeta_lookup(const ic_snapmeta *m, const char *name);
/** The current snapshot (borrowed), or NULL when there is none. */
IC_EXTERN const ic_snapshot_def *ic_snapmeta_current(const ic_snapmeta *m);

/**
 * Names of the direct children of @p parent (NULL: the roots), sorted by
 * name; or, with @p topological and a NULL @p parent, every snapshot with
 * parents before children.  The strings are borrowed (valid until the next
 * change); the array is the caller's to free().
 * @return 0; -ENOENT @p parent is not a snapshot; -ENOMEM.
 */
IC_EXTERN int ic_snapmeta_list(const char ***names_out, size_t *n_out, const ic_snapmeta *m,
                               const char *parent, bool topological, ic_error **errp);

/**
 * Adds @p def or replaces the snapshot of the same name (libvirt's
 * REDEFINE into the store), and makes it current when @p make_current.
 * A replaced current snapshot stays current.  The store takes @p def in
 * every case (it is freed on failure).
 * @return 0; -EINVAL no name, a name with '/' or starting with '.', a
 *         parent that is missing, itself or a descendant; -errno of
 *         writing (the store in memory is then unchanged, and the files
 *         hold either the old or the new document); -ENOMEM.
 */
IC_EXTERN int ic_snapmeta_put(ic_snapmeta *m, ic_snapshot_def *def, bool make_current,
                              ic_error **errp);

/**
 * Makes @p name current (NULL: no current snapshot).  The old current's
 * file is rewritten first with <active>0</active>.
 * @return 0; -ENOENT no such snapshot; -errno of writing.
 */
IC_EXTERN int ic_snapmeta_set_current(ic_snapmeta *m, const char *name, ic_error **errp);

/**
 * Forgets the metadata of @p name (its images are not touched): its
 * children are re-parented to its parent and, if it was current, its
 * parent becomes current (libvirt's delete --metadata).
 * @return 0; -ENOENT no such snapshot; -errno of writing.
 */
IC_EXTERN int ic_snapmeta_remove(ic_snapmeta *m, const char *name, ic_error **errp);

/**
 * The library's path probe for ic_snapshot_align_options.path_kind: stat()
 * of @p path, following symlinks.  @p payload is unused.
 */
IC_EXTERN ic_path_kind ic_snapmeta_path_kind(const char *path, void *payload);

#ifdef __cplusplus
}
#endif
#endif
