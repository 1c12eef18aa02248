/*
 * imgchain/domain.h - offline VMs (libvirt <domain>s) and their snapshot
 * trees: virsh's define / snapshot-* lifecycle over all disks at once.
 *
 * Design: docs/domain-lifecycle.md.  In short: a state folder holds, per
 * domain D, D.xml (the domain), D/NAME.xml (one libvirt snapshot file
 * each), D.imgchain.json (what libvirt's XML has no field for: the images
 * imgchain created), D.lock and, while an operation runs, D.journal.
 *
 * Flags carry libvirt's values (virDomainSnapshotCreateFlags,
 * virDomainSnapshotListFlags, ...) so code written against libvirt maps
 * one to one.  Messages are libvirt's where libvirt has one.
 *
 * All functions return 0 (or a count) on success and -errno on failure
 * with *errp set (imgchain/error.h): -EINVAL bad input, -ENOENT no such
 * domain or snapshot, -EEXIST name in use, -EBUSY the domain is locked by
 * another process (IC_ERR_BUSY), -ENOTSUP refused as unsupported offline.
 *
 * Not thread-safe: one ic_domain per thread.
 */
#ifndef IMGCHAIN_DOMAIN_H
#define IMGCHAIN_DOMAIN_H

#include "common.h"
#include "error.h"
#include "image.h"
#include "xml.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the state folder ------------------------------------------------- */

/**
 * The state folder: @p dir when not NULL, else $IMGCHAIN_STATE_DIR, else
 * /var/lib/imgchain for root, else $XDG_STATE_HOME/imgchain, else
 * $HOME/.local/state/imgchain.  Nothing is created.
 * @param out receives a heap string (free())
 * @return 0; -ENOENT none of them is set.
 */
IC_EXTERN int ic_domain_state_dir(char **out, const char *dir, ic_error **errp);

/* ---- domains ---------------------------------------------------------- */

typedef struct ic_domain ic_domain;

/**
 * Defines (or redefines) the domain of the <domain> document @p xml in
 * @p state_dir: DIR/NAME.xml is written atomically.  A document without
 * <uuid> gets a random one; redefining an existing name needs the same
 * UUID (libvirt's "domain 'D' already exists with uuid U").
 * @param name_out receives the domain's name (free()); may be NULL
 * @return 0; -EINVAL malformed document or bad name; -EEXIST UUID clash;
 *   -EBUSY the domain is locked.
 */
IC_EXTERN int ic_domain_define(const char *state_dir, const char *xml, size_t len,
                               char **name_out, ic_error **errp);

/* libvirt's VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA */
#define IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA 0x2u

/**
 * Removes the domain's files from the state folder (never an image).  With
 * snapshots it is refused ("cannot delete inactive domain with N
 * snapshots") unless IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, which removes
 * their metadata files too.
 */
IC_EXTERN int ic_domain_undefine(const char *state_dir, const char *name, unsigned flags,
                                 ic_error **errp);

/**
 * Names of the domains of @p state_dir, sorted (a missing folder is
 * empty).  Free with ic_domain_names_free().
 */
IC_EXTERN int ic_domain_list(char ***names_out, size_t *n_out, const char *state_dir,
                             ic_error **errp);
IC_EXTERN void ic_domain_names_free(char **names, size_t n);

/* Open flags */
#define IC_DOMAIN_OPEN_WRITE 0x1u  /* writer lock; finishes a pending journal first */

/**
 * Opens domain @p name: its document, its snapshot store and its private
 * file, under the per-domain lock (reader lock, or writer lock with
 * IC_DOMAIN_OPEN_WRITE, held until ic_domain_close()).  With WRITE a
 * journal left by an interrupted operation is finished or rolled back
 * before this returns (ic_domain_recovered() says which).
 * @return 0; -ENOENT no such domain ("failed to get domain 'D'"); -EBUSY
 *   locked ("D: domain is locked by another process"); -EINVAL a file of
 *   the domain does not parse.
 */
IC_EXTERN int ic_domain_open(ic_domain **out, const char *state_dir, const char *name,
                             unsigned flags, ic_error **errp);
/** Releases the lock and frees @p dom; NULL is a no-op. */
IC_EXTERN void ic_domain_close(ic_domain *dom);

IC_EXTERN const char *ic_domain_name(const ic_domain *dom);
IC_EXTERN const char *ic_domain_uuid(const ic_domain *dom);
/** The parsed disks, sources following the active layers (borrowed). */
IC_EXTERN const ic_domain_def *ic_domain_get_def(const ic_domain *dom);
/* virDomainXMLFlags */
#define IC_DOMAIN_XML_SECURE 0x1u  /* keep passwords (<graphics passwd=>) */
/** The domain document as dumpxml prints it (heap string, free()). */
IC_EXTERN int ic_domain_get_xml(const ic_domain *dom, unsigned flags, char **out,
                                ic_error **errp);

/**
 * A one-line description of a journal left by an interrupted operation
 * ("interrupted snapshot-create of 's1' (phase prepare)"), or NULL.  After
 * a WRITE open it describes what was recovered ("rolled back ..." /
 * "finished ...") instead, or NULL when nothing was pending.
 */
IC_EXTERN const char *ic_domain_pending(const ic_domain *dom);
IC_EXTERN const char *ic_domain_recovered(const ic_domain *dom);

/**
 * Every image the domain's operations open or create from now on (not the
 * state folder's own files) goes through @p fn (NULL: the POSIX backend);
 * for tests and embedders, as ic_open_options.open_file.
 */
IC_EXTERN void ic_domain_set_open_file(ic_domain *dom, ic_open_file_fn fn, void *payload);

/** True when imgchain created @p path for this domain (private file), so
 * that it may ever delete it. */
IC_EXTERN bool ic_domain_image_owned(const ic_domain *dom, const char *path);

/* ---- snapshot create -------------------------------------------------- */

/* virDomainSnapshotCreateFlags */
#define IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE    0x1u
#define IC_DOMAIN_SNAPSHOT_CREATE_CURRENT     0x2u
#define IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA 0x4u
#define IC_DOMAIN_SNAPSHOT_CREATE_HALT        0x8u    /* refused offline */
#define IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY   0x10u
#define IC_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT   0x20u
#define IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE     0x40u   /* refused offline */
#define IC_DOMAIN_SNAPSHOT_CREATE_ATOMIC      0x80u   /* always honoured */
#define IC_DOMAIN_SNAPSHOT_CREATE_LIVE        0x100u  /* refused offline */
#define IC_DOMAIN_SNAPSHOT_CREATE_VALIDATE    0x200u

/**
 * Takes (or with REDEFINE records) the snapshot described by the
 * <domainsnapshot> document @p xml, over every disk of the domain (opened
 * with IC_DOMAIN_OPEN_WRITE): qcow2 internal snapshots for internal disks,
 * new overlays (mode 0600, absolute backing name and format recorded) for
 * external ones.  All disks or none: a failure on one disk undoes the
 * others and the message names the disk.  Journalled (docs/domain-lifecycle.md section 5).
 * @param name_out receives the snapshot's name (free()); may be NULL
 * @return 0; -EINVAL a refused document, flag combination or disk;
 *   -EEXIST the name is in use or an overlay file exists; -ENOTSUP a mode
 *   imgchain cannot do offline; -errno of the engine.
 */
IC_EXTERN int ic_domain_snapshot_create(ic_domain *dom, const char *xml, size_t len,
                                        unsigned flags, char **name_out, ic_error **errp);

/* ---- snapshot queries ------------------------------------------------- */

IC_EXTERN size_t ic_domain_snapshot_count(const ic_domain *dom);
/** The snapshot @p name (borrowed until the next change), or NULL. */
IC_EXTERN const ic_snapshot_def *ic_domain_snapshot_lookup(const ic_domain *dom,
                                                           const char *name);
/** The current snapshot (borrowed), or NULL. */
IC_EXTERN const ic_snapshot_def *ic_domain_snapshot_current(const ic_domain *dom);
/** libvirt's location rule: external when memory or any disk is external
 * (or, for documents without <memory>, the state is disk-snapshot). */
IC_EXTERN bool ic_domain_snapshot_is_external(const ic_snapshot_def *def);
/** Children of @p name (descendants when @p descendants). */
IC_EXTERN size_t ic_domain_snapshot_num_children(const ic_domain *dom, const char *name,
                                                 bool descendants);

/* virDomainSnapshotXMLFlags */
#define IC_DOMAIN_SNAPSHOT_XML_SECURE 0x1u
/** The public form of snapshot @p name (no <active>). */
IC_EXTERN int ic_domain_snapshot_get_xml(const ic_domain *dom, const char *name,
                                         unsigned flags, char **out, ic_error **errp);

/** Makes @p name current (virsh snapshot-current DOMAIN NAME). */
IC_EXTERN int ic_domain_snapshot_set_current(ic_domain *dom, const char *name,
                                             ic_error **errp);

/* virDomainSnapshotListFlags */
#define IC_DOMAIN_SNAPSHOT_LIST_ROOTS       0x1u
#define IC_DOMAIN_SNAPSHOT_LIST_DESCENDANTS 0x1u   /* with a start snapshot */
#define IC_DOMAIN_SNAPSHOT_LIST_METADATA    0x2u
#define IC_DOMAIN_SNAPSHOT_LIST_LEAVES      0x4u
#define IC_DOMAIN_SNAPSHOT_LIST_NO_LEAVES   0x8u
#define IC_DOMAIN_SNAPSHOT_LIST_NO_METADATA 0x10u
#define IC_DOMAIN_SNAPSHOT_LIST_INACTIVE    0x20u
#define IC_DOMAIN_SNAPSHOT_LIST_ACTIVE      0x40u
#define IC_DOMAIN_SNAPSHOT_LIST_DISK_ONLY   0x80u
#define IC_DOMAIN_SNAPSHOT_LIST_INTERNAL    0x100u
#define IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL    0x200u
#define IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL 0x400u

/**
 * Names of the snapshots matching @p flags: of the whole domain when
 * @p from is NULL (only roots with ROOTS), else the children of @p from
 * (all descendants with DESCENDANTS).  Filter groups are AND'ed, the bits
 * of one group OR'ed, a whole group set is no filter (libvirt's rules).
 * Sorted by name, or parents before children with TOPOLOGICAL.  The
 * strings are borrowed until the next change; the array is the caller's.
 */
IC_EXTERN int ic_domain_snapshot_list(const char ***names_out, size_t *n_out,
                                      const ic_domain *dom, const char *from, unsigned flags,
                                      ic_error **errp);

/* ---- revert and delete (docs/domain-lifecycle.md section 8) ----------- */

/* virDomainSnapshotRevertFlags, plus imgchain's own */
#define IC_DOMAIN_SNAPSHOT_REVERT_RUNNING         0x1u    /* refused: never starts qemu */
#define IC_DOMAIN_SNAPSHOT_REVERT_PAUSED          0x2u    /* refused: never starts qemu */
#define IC_DOMAIN_SNAPSHOT_REVERT_FORCE           0x4u
#define IC_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM     0x8u    /* refused: no NVRAM handling */
#define IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN 0x10000u
#define IC_DOMAIN_SNAPSHOT_REVERT_DISCARD         0x20000u

/**
 * Reverts every disk to snapshot @p name and makes it current: internal
 * snapshots are applied on their image; external disks get a new qcow2
 * overlay (0600) on the image the snapshot froze, named as libvirt names
 * it ("<frozen image without suffix>.<seconds>").  The domain's document
 * becomes the snapshot's <domain> with those sources.
 * Refused unless FORCE: state no snapshot captured would be lost (the
 * message names the disk and the file), or the snapshot's domain is not
 * ABI-compatible.  Always refused: an internal snapshot in an image
 * frozen or used as a backing file since.  DISCARD removes the abandoned
 * active layers imgchain made and nothing uses; DELETE_CHILDREN then
 * deletes the snapshot's descendants (as DELETE_CHILDREN_ONLY).
 * Journalled (docs/domain-lifecycle.md section 5).
 */
IC_EXTERN int ic_domain_snapshot_revert(ic_domain *dom, const char *name, unsigned flags,
                                        ic_error **errp);
/** ic_domain_snapshot_revert() naming new overlays: @p files holds
 * "DISK=PATH" strings (absolute paths) for some of the external disks. */
IC_EXTERN int ic_domain_snapshot_revert_files(ic_domain *dom, const char *name,
                                              const char *const *files, size_t nfiles,
                                              unsigned flags, ic_error **errp);

/* virDomainSnapshotDeleteFlags */
#define IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN      0x1u
#define IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY 0x2u
#define IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY 0x4u

/**
 * Deletes snapshot @p name (and/or its descendants, leaves first):
 * internal snapshots from every disk; external ones merged away, by commit
 * into the frozen image when nothing else reads it, else by streaming into
 * the overlays above, else (the overlay is itself another snapshot's point,
 * or holds internal snapshots) by keeping the images as they are.  No
 * image anything still uses is deleted, and only images imgchain made
 * are.  Children are re-parented, the current snapshot moves to the
 * parent, and every remaining snapshot naming a merged file is rewritten.
 * METADATA_ONLY touches no image.  Journalled.
 */
IC_EXTERN int ic_domain_snapshot_delete(ic_domain *dom, const char *name, unsigned flags,
                                        ic_error **errp);

/* ---- running domains (docs/domain-live.md) ---------------------------- */

/**
 * Records the QMP socket of the qemu running the domain and, optionally,
 * its guest agent's socket (absolute paths; @p qmp NULL forgets both) in
 * the private file.  Opened with IC_DOMAIN_OPEN_WRITE.
 */
IC_EXTERN int ic_domain_set_sockets(ic_domain *dom, const char *qmp, const char *qga,
                                    ic_error **errp);
/** The recorded sockets (borrowed), or NULL. */
IC_EXTERN const char *ic_domain_qmp_socket(const ic_domain *dom);
IC_EXTERN const char *ic_domain_qga_socket(const ic_domain *dom);
/**
 * 1 when the domain runs: its QMP socket answers qemu's greeting; 0 when
 * no socket is recorded or nothing listens; -errno when the socket
 * answers but not as qemu.  Nothing is inferred from image locks.
 */
IC_EXTERN int ic_domain_is_running(ic_domain *dom, ic_error **errp);
/**
 * For a running domain, replaces (in memory only) the disk sources of
 * @p dom by the active layers qemu reports (query-block), so dumpxml and
 * domblklist show what is active.  1 running, 0 not, -errno.
 */
IC_EXTERN int ic_domain_refresh_live(ic_domain *dom, ic_error **errp);
/**
 * The mountpoints the next live --quiesce snapshot freezes (with
 * guest-fsfreeze-freeze-list, checking the count frozen); none: every file
 * system (guest-fsfreeze-freeze).
 */
IC_EXTERN int ic_domain_set_quiesce_mountpoints(ic_domain *dom, const char *const *mps,
                                                size_t n, ic_error **errp);
/**
 * True when @p dom (opened either way) has the journal of an interrupted
 * live snapshot: it may hold the guest frozen and nodes in qemu, so a
 * front end recovers it at once (a WRITE open) even for a read-only
 * command.
 */
IC_EXTERN bool ic_domain_live_pending(ic_domain *dom);
/** True when snapshot @p name was taken with the guest quiesced. */
IC_EXTERN bool ic_domain_snapshot_quiesced(const ic_domain *dom, const char *name);

#ifdef __cplusplus
}
#endif
#endif
