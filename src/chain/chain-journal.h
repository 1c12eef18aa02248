/*
 * chain-journal.h - the journal of multi-image chain operations (commit,
 * safe rebase) and helpers shared by chain-commit.c, chain-rebase.c,
 * chain-check.c and chain-dependents.c.
 */
#ifndef IC_CHAIN_JOURNAL_H
#define IC_CHAIN_JOURNAL_H

#include "imgchain/chain-edit.h"
#include "chain.h"

enum ic_journal_op {
    IC_JOURNAL_COMMIT = 1,
    IC_JOURNAL_REBASE = 2,
};

enum ic_journal_phase {
    IC_JOURNAL_COPY = 1,   /* data is being copied (commit: into the base;
                            * rebase: into FILE); the guest view of FILE is
                            * unchanged throughout */
    IC_JOURNAL_EMPTY = 2,  /* commit: the base is complete and flushed; FILE
                            * is being emptied */
    IC_JOURNAL_SWITCH = 3, /* rebase: FILE holds every differing range and is
                            * flushed; the header is being switched */
};

#define IC_JOURNAL_F_DROP 1u  /* commit: leave FILE as it is */

/* One journal record (in memory; strings malloc'd, NULL when absent). */
struct ic_journal_rec {
    enum ic_journal_op op;
    enum ic_journal_phase phase;
    unsigned flags;
    uint64_t seq;          /* write sequence; the newest valid slot wins */
    unsigned slot;         /* (load) the slot it was read from */
    char *top;             /* FILE as named by the caller */
    char *top_fmt;         /* FILE's format */
    char *base;            /* commit: base path (as the chain resolves it);
                            * rebase: the old recorded backing name */
    char *base_fmt;        /* rebase: the old recorded backing format */
    char *new_backing;     /* rebase: the new name ("" = none) */
    char *new_fmt;         /* rebase: the new format */
};

struct ic_journal;

/* "<image>.imgchain-journal" (malloc'd) or NULL on allocation failure. */
char *ic_journal_path(const char *image);

/* Creates the journal of @rec->top and makes it durable (file flushed,
 * folder synced) before returning.  -EEXIST when one exists already. */
int ic_journal_create(struct ic_journal **out, const struct ic_journal_rec *rec,
                      ic_open_file_fn open_file, void *payload, ic_error **errp);
/* Records a new phase durably. */
int ic_journal_set_phase(struct ic_journal *j, enum ic_journal_phase phase, ic_error **errp);
/* The operation is complete: closes and removes the journal durably. */
int ic_journal_finish(struct ic_journal *j, ic_error **errp);
/* Closes the handle and leaves the file (the operation did not finish). */
void ic_journal_close(struct ic_journal *j);

/* Reads the journal of @image.  Returns 1 and fills @out when a valid one
 * exists, 0 when there is none (or only an unreadable one that was never
 * completed: see chain-journal.c note 3, then *stale is set), -errno on
 * failure. */
int ic_journal_load(struct ic_journal_rec *out, bool *stale, const char *image,
                    ic_open_file_fn open_file, void *payload, ic_error **errp);
/* Takes over the existing journal of @image whose newest record @rec was
 * loaded by ic_journal_load (to resume the operation). */
int ic_journal_reopen(struct ic_journal **out, const struct ic_journal_rec *rec,
                      const char *image, ic_open_file_fn open_file, void *payload,
                      ic_error **errp);
/* Removes a stale journal (one with no valid record). */
int ic_journal_remove(const char *image, ic_error **errp);
void ic_journal_rec_clear(struct ic_journal_rec *rec);
const char *ic_journal_op_name(enum ic_journal_op op);

/* ---- helpers shared by the chain-edit files ----------------------------- */

/* The real path of @path or, when it cannot be resolved, a copy of @path. */
char *ic_chain_realpath(const char *path);
/* True when @a and @b name the same file (by real path). */
bool ic_chain_same_file(const char *a, const char *b);

/* Tells the user something through opts' warn callback (may be NULL). */
void ic_chain_warnf(ic_chain_warn_fn fn, void *payload, const char *fmt, ...) IC_PRINTF(3, 4);

/* ---- users of images (chain-dependents.c) --------------------------------- */

struct ic_dep_hit {
    size_t target;   /* index into the targets */
    char *file;      /* the image whose chain reaches it */
    unsigned depth;  /* 1 = direct overlay */
};

/* Scans @dirs for images whose chains reach one of @targets (real paths)
 * without passing through one of @stops (real paths).  Reports the first
 * target each image reaches.  max_depth 0 = 64. */
int ic_chain_scan_users(const char *const *targets, size_t nb_targets,
                        const char *const *stops, size_t nb_stops,
                        const char *const *dirs, size_t nb_dirs, unsigned max_depth,
                        ic_open_file_fn open_file, void *payload,
                        struct ic_dep_hit **hits, size_t *nb_hits,
                        size_t *scanned, size_t *unreadable, ic_error **errp);
void ic_dep_hits_free(struct ic_dep_hit *hits, size_t n);

#endif
