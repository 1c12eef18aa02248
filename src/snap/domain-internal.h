/*
 * domain-internal.h - what the files of the domain store share
 * (src/snap/domain*.c; design: docs/domain-lifecycle.md).
 *
 *   domain.c          state folder, define/undefine/list, open (lock,
 *                     document, store, private file), disk sources
 *   domain-journal.c  the journal file and recovery dispatch
 *   domain-create.c   snapshot-create (plan, execute, undo, finish)
 *   domain-list.c     snapshot queries and list filters
 */
#ifndef IC_SNAP_DOMAIN_INTERNAL_H
#define IC_SNAP_DOMAIN_INTERNAL_H

#include <json-c/json.h>

#include "imgchain/domain.h"
#include "imgchain/snapmeta.h"
#include "imgchain/sys/io.h"

/* libvirt writes its folders 0777 (umask applies) and its files 0600. */
#define IC_DOM_DIR_MODE 0777u
#define IC_DOM_FILE_MODE 0600u
/* Largest domain, private or journal file read (they are KiBs). */
#define IC_DOM_MAX_FILE (64u << 20)

struct ic_domain {
    char *state_dir;
    char *name;
    char *xml_path;      /* DIR/D.xml */
    char *priv_path;     /* DIR/D.imgchain.json */
    char *journal_path;  /* DIR/D.journal */
    ic_io *lock;         /* DIR/D.lock, NULL for a reader without a lock file */
    bool writable;
    ic_xml_node *tree;   /* the <domain> document */
    ic_domain_def *def;  /* its disks, parsed from @tree */
    ic_snapmeta *meta;   /* DIR/D/NAME.xml */
    json_object *priv;   /* the private file's content */
    ic_open_file_fn open_file;  /* images' backend (ic_domain_set_open_file) */
    void *open_payload;
    char *pending;       /* a journal found at open (readers) */
    char *recovered;     /* what a WRITE open did with a journal */
    struct ic_dom_live *live;  /* domain-live.c: options of a live snapshot */
};

/* ---- domain.c ---- */
/* Points disk @target at @path (type file, driver type @format), dropping
 * any <backingStore>, and re-parses the disks.  0 or -errno. */
int ic_dom_set_disk_source(ic_domain *dom, const char *target, const char *path,
                           const char *format, ic_error **errp);
/* The <disk> of @tree whose target is @target, or NULL. */
ic_xml_node *ic_dom_tree_disk(ic_xml_node *tree, const char *target);
/* Its <source file=> (borrowed), or NULL. */
const char *ic_dom_tree_disk_source(const ic_xml_node *tree, const char *target);
/* ic_dom_set_disk_source on any tree (a snapshot's <domain>); @format NULL
 * keeps the driver type.  0, -ENOENT no such disk, -ENOMEM. */
int ic_dom_tree_set_disk_source(ic_xml_node *tree, const char *target, const char *path,
                                const char *format);
/* Makes @tree the domain's document (taken in every case). */
int ic_dom_replace_tree(ic_domain *dom, ic_xml_node *tree, ic_error **errp);
/* Writes DIR/D.xml from the tree (atomically). */
int ic_dom_save_xml(ic_domain *dom, ic_error **errp);
/* Records @path as created by imgchain (role "overlay"/"revert") unless it
 * is listed already; the caller saves. */
int ic_dom_priv_add_image(ic_domain *dom, const char *path, const char *snapshot,
                          const char *disk, const char *role, ic_error **errp);
int ic_dom_save_priv(ic_domain *dom, ic_error **errp);
/* A heap string "DIR/D<suffix>". */
char *ic_dom_path(const char *dir, const char *name, const char *suffix);

/* ---- domain-journal.c ---- */
int ic_dom_journal_write(ic_domain *dom, json_object *j, ic_error **errp);
/* 0 with *out NULL when there is no journal. */
int ic_dom_journal_load(ic_domain *dom, json_object **out, ic_error **errp);
int ic_dom_journal_remove(ic_domain *dom, ic_error **errp);
/* One line describing journal @j ("interrupted snapshot-create of 's1'
 * (phase prepare)"); heap string. */
char *ic_dom_journal_describe(json_object *j);
/* Finishes (commit phase) or rolls back (prepare phase) the journal;
 * sets dom->recovered.  0 when there was none. */
int ic_dom_recover(ic_domain *dom, ic_error **errp);

/* ---- domain-create.c ---- */
/* Undoes the steps of a prepare-phase create journal that happened. */
int ic_dom_create_rollback(ic_domain *dom, json_object *j, ic_error **errp);
/* Redoes the metadata writes of a commit-phase create journal, then
 * removes the journal. */
int ic_dom_create_finish(ic_domain *dom, json_object *j, ic_error **errp);

/* ---- domain-steps.c ---- */
/* Runs the steps of a commit-phase revert/delete journal from its "next"
 * index, recording progress; removes the journal at the end. */
int ic_dom_steps_run(ic_domain *dom, json_object *j, ic_error **errp);
/* A new step {"do": @op} (NULL on allocation failure) and its fields. */
json_object *ic_dom_step(const char *op);
void ic_dom_step_set(json_object *step, const char *key, const char *value);

/* ---- domain-delete.c / domain-revert.c ---- */
/* The folders whose images may use one of the domain's (for
 * ic_chain_dependents): every folder holding a disk source, an overlay or
 * a frozen image of the domain or its snapshots.  Free with
 * ic_domain_names_free. */
int ic_dom_image_dirs(char ***out, size_t *n, const ic_domain *dom, ic_error **errp);
/* Same file (by real path; by name when either cannot be resolved). */
bool ic_dom_same_file(const char *a, const char *b);
/* The images whose recorded backing file is @path (depth 1). */
int ic_dom_children_of(char ***out, size_t *n, const ic_domain *dom, const char *path,
                       ic_error **errp);

/* ---- domain-live.c (a running domain: docs/domain-live.md) ---- */
struct ic_dom_live;
void ic_dom_live_free(struct ic_dom_live *l);
/* 1 when the domain's QMP socket answers, 0 when none is recorded or
 * nothing listens, -errno. */
int ic_dom_live_check(ic_domain *dom, ic_error **errp);
/* -EBUSY "cannot WHAT a running domain ...: stop it first" when running. */
int ic_dom_live_refuse(ic_domain *dom, const char *what, ic_error **errp);
/* ic_domain_snapshot_create() of a running domain. */
int ic_dom_live_snapshot_create(ic_domain *dom, const char *xml, size_t len, unsigned flags,
                                char **name_out, ic_error **errp);
/* Recovers a "snapshot-create-live" journal: *finished says whether the
 * snapshot was finished (qemu had switched) or rolled back; *detail (heap,
 * may stay NULL) what was thawed, removed or unlinked. */
int ic_dom_live_recover(ic_domain *dom, json_object *j, bool *finished, char **detail,
                        ic_error **errp);

/* small json helpers */
const char *ic_dom_jstr(json_object *o, const char *key);
bool ic_dom_jbool(json_object *o, const char *key);

#endif
