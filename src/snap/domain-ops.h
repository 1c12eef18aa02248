/*
 * domain-ops.h - what snapshot-revert and snapshot-delete share
 * (src/snap/domain-revert.c, domain-delete.c, domain-ops.c; design:
 * docs/domain-snapshots.md section 8).  Private to src/snap.
 */
#ifndef IC_SNAP_DOMAIN_OPS_H
#define IC_SNAP_DOMAIN_OPS_H

#include "domain-internal.h"

/* ---- domain-ops.c ---- */
/* A heap copy of @def (formatted and parsed back); NULL with *errp set. */
ic_snapshot_def *ic_dom_def_copy(const ic_snapshot_def *def, ic_error **errp);
/* The disks of the snapshot's embedded <domain>: def->dom, or parsed from
 * def->domain into *owned (freed by the caller).  NULL (errp set) when the
 * snapshot has no <domain>. */
const ic_domain_def *ic_dom_snapshot_domain(const ic_snapshot_def *def, ic_domain_def **owned,
                                            ic_error **errp);
/* The disk of @def with target @target, or NULL. */
const ic_domain_disk_def *ic_dom_find_disk(const ic_domain_def *def, const char *target);
/* Whether two paths name the same file (real paths; spelled paths when
 * either is missing). */
bool ic_dom_same_file(const char *a, const char *b);
/* Whether any snapshot of @dom other than @skip names @path as a disk
 * source (<disks>, <revertDisks>) or in its <domain>. */
bool ic_dom_path_in_snapshots(const ic_domain *dom, const char *path, const char *skip);
/* Removes @path from the private file's images (the caller saves). */
void ic_dom_priv_remove_image(ic_domain *dom, const char *path);
/* The children (descendants with @all) of @name, leaves first when @all;
 * the array is the caller's, the names borrowed. */
int ic_dom_descendants(const char ***out, size_t *n, const ic_domain *dom, const char *name,
                       bool all, ic_error **errp);

/* The <disk> element of @tree with target @target, or NULL. */
ic_xml_node *ic_dom_tree_disk(ic_xml_node *tree, const char *target);
/* Points a <disk> element at file @path of format @fmt (type file, no
 * <backingStore>); 0 or -ENOMEM. */
int ic_dom_tree_set_source(ic_xml_node *disk, const char *path, const char *fmt);

/* ---- domain-revert.c ---- */
/* Redoes a snapshot-revert journal (every step is idempotent) and removes it. */
int ic_dom_revert_finish(ic_domain *dom, json_object *j, ic_error **errp);

/* ---- domain-delete.c ---- */
/* Redoes a snapshot-delete journal (every step is idempotent) and removes it. */
int ic_dom_delete_finish(ic_domain *dom, json_object *j, ic_error **errp);

#endif
