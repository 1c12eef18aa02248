/*
 * imgchain/chain-edit.h - editing and inspecting backing chains: commit,
 * rebase, chain check, dependents.
 *
 * Commit and safe rebase are crash-safe multi-image operations.  Before the
 * first byte of any image is written, a small journal file is made durable
 * next to the top image ("FILE.imgchain-journal"); it names the operation,
 * its images and its phase, and is removed when the operation is complete.
 * While it exists:
 *   - ic_chain_commit()/ic_chain_rebase() on FILE refuse to start a new
 *     operation (-EBUSY) unless `resume` is set, which finishes the
 *     recorded one (resuming is explicit, never automatic: the caller must
 *     ask for it, see the CLI's --resume);
 *   - ic_chain_check() reports an IC_CHAIN_INTERRUPTED finding.
 *
 * All functions return 0 on success and -errno on failure with *errp set
 * (imgchain/error.h).  Messages start with the API name and the file.
 */
#ifndef IMGCHAIN_CHAIN_EDIT_H
#define IMGCHAIN_CHAIN_EDIT_H

#include "common.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The progress callback of imgchain/image.h under the name the chain
 * editing options have always used. */
typedef ic_progress_fn ic_chain_progress_fn;
/** A warning for the user (one line, no newline), e.g. an image that other
 * overlays still use. */
typedef void (*ic_chain_warn_fn)(const char *line, void *payload);

/* ---- commit ----------------------------------------------------------- */

#define IC_COMMIT_OPTIONS_VERSION 3
typedef struct ic_commit_options {
    unsigned version;          /* IC_COMMIT_OPTIONS_VERSION; 1 has no cache field,
                                * 2 no rate_limit */
    const char *format;        /* FILE's format; NULL = probe */
    const char *base;          /* -b: the base image: a backing name as the chain records
                                * it, relative to the folder of the image naming it
                                * (qemu-img's rule, tried first), or a path from the
                                * current folder (imgchain's extension); NULL = the immediate
                                * backing file.  Giving it implies drop (as qemu-img). */
    bool drop;                 /* -d: leave FILE as it is (else it is emptied) */
    bool resume;               /* finish the interrupted commit recorded in FILE's journal */
    bool no_dependents_scan;   /* skip the scan of FILE's directory for other users */
    unsigned flags;            /* extra IC_OPEN_* (IC_OPEN_NO_LOCK) */
    ic_chain_progress_fn progress; /* NULL: none */
    ic_chain_warn_fn warn;     /* NULL: warnings are dropped */
    ic_open_file_fn open_file; /* NULL: the cache mode picks the backend */
    void *payload;             /* passed to progress, warn and open_file */
    ic_cache_mode cache;       /* -t, for every image of the chain; the default
                                * writes the base O_DIRECT where it can */
    uint64_t rate_limit;       /* -r: bytes per second copied; 0 = unlimited */
} ic_commit_options;
#define IC_COMMIT_OPTIONS_INIT \
    { IC_COMMIT_OPTIONS_VERSION, NULL, NULL, false, false, false, 0, NULL, NULL, NULL, NULL, \
      IC_CACHE_DEFAULT, 0 }

/**
 * Writes the data of @p path (and of every image between it and the base)
 * into the base, as `qemu-img commit`: only ranges allocated above the base
 * are copied, zero ranges are written as zeroes, the base grows to FILE's
 * size when it is smaller.  Without drop, FILE is then emptied (the
 * driver's make_empty; formats without one, such as QED, are left as they
 * are, as qemu-img does).  The base is reopened read-write with a write
 * lock for the duration.
 * @return 0; -ENOENT file, backing file or base missing; -EINVAL base not in
 *   the chain, bad options; -ELOOP backing loop; -EBUSY an image is locked,
 *   or an interrupted operation must be resumed first; -ENOTSUP a format
 *   cannot be written; -EIO I/O error or corruption.  Everything that can be
 *   refused is refused before any image or journal is written.
 */
IC_EXTERN int ic_chain_commit(const char *path, const ic_commit_options *opts, ic_error **errp);

/* ---- rebase ----------------------------------------------------------- */

#define IC_REBASE_OPTIONS_VERSION 2
typedef struct ic_rebase_options {
    unsigned version;           /* IC_REBASE_OPTIONS_VERSION; 1 has no cache fields */
    const char *format;         /* FILE's format; NULL = probe */
    const char *backing;        /* -b: new backing name, recorded as given (relative
                                 * to FILE's directory); NULL or "" = none */
    const char *backing_format; /* -F: required with a backing file (as qemu-img 7.2) */
    bool unsafe;                /* -u: only rewrite the recorded name and format */
    bool resume;                /* finish the interrupted rebase recorded in FILE's journal */
    unsigned flags;             /* extra IC_OPEN_* (IC_OPEN_NO_LOCK) */
    ic_chain_progress_fn progress;
    ic_chain_warn_fn warn;
    ic_open_file_fn open_file;
    void *payload;
    ic_cache_mode cache;        /* -t: FILE's; the default writes it O_DIRECT where it can */
    ic_cache_mode src_cache;    /* -T: the old and new backing chains' */
} ic_rebase_options;
#define IC_REBASE_OPTIONS_INIT \
    { IC_REBASE_OPTIONS_VERSION, NULL, NULL, NULL, false, false, 0, NULL, NULL, NULL, NULL, \
      IC_CACHE_DEFAULT, IC_CACHE_DEFAULT }

/**
 * Changes FILE's backing file.  Safe mode (default) first copies into FILE
 * every range that FILE does not allocate and where the old and new
 * backing chains differ, so FILE's guest content is unchanged, then
 * rewrites the header.  Unsafe mode only rewrites the header.
 * @return 0; -EINVAL missing -F, name too long, new backing is FILE or has
 *   FILE in its chain (-ELOOP); -ENOENT a file is missing; -EBUSY locked or
 *   an interrupted operation must be resumed; -ENOTSUP the format records
 *   no backing file (raw); -EIO.
 */
IC_EXTERN int ic_chain_rebase(const char *path, const ic_rebase_options *opts, ic_error **errp);

/* ---- chain check ------------------------------------------------------ */

typedef enum ic_chain_problem {
    IC_CHAIN_MISSING_BACKING = 1, /* a recorded backing file does not exist */
    IC_CHAIN_UNREADABLE,          /* an image cannot be opened or parsed */
    IC_CHAIN_LOOP,                /* the chain comes back to one of its images */
    IC_CHAIN_TOO_DEEP,            /* longer than max_depth */
    IC_CHAIN_FORMAT_MISMATCH,     /* recorded backing format differs from the probed one */
    IC_CHAIN_FORMAT_UNRECORDED,   /* no backing format recorded: it would be probed */
    IC_CHAIN_BACKING_LARGER,      /* backing file larger than its overlay */
    IC_CHAIN_RELATIVE_NAME,       /* relative name resolving differently from the CWD */
    IC_CHAIN_IMAGE_CORRUPT,       /* the image's own check found corruptions */
    IC_CHAIN_IMAGE_LEAKS,         /* the image's own check found leaked clusters */
    IC_CHAIN_CHECK_ERRORS,        /* the image's check could not complete */
    IC_CHAIN_INTERRUPTED,         /* a journal records an unfinished commit/rebase */
} ic_chain_problem;

typedef enum ic_chain_severity {
    IC_CHAIN_INFO = 0,    /* worth knowing, harmless here */
    IC_CHAIN_WARNING,     /* works now, but is fragile or wastes space */
    IC_CHAIN_ERROR,       /* the chain is broken or corrupt */
} ic_chain_severity;

typedef struct ic_chain_finding {
    ic_chain_problem kind;
    ic_chain_severity severity;
    unsigned depth;       /* 0 = top image; the image the finding is about */
    char *file;           /* that image's path */
    char *message;        /* one line naming the file and the problem */
} ic_chain_finding;

typedef struct ic_chain_image_report {
    char *filename;           /* as resolved through the chain */
    char *format;             /* format used to open it (NULL if it could not be) */
    uint64_t virtual_size;
    bool checked;             /* the format supports check and it ran */
    ic_check_result check;    /* valid when checked */
} ic_chain_image_report;

typedef struct ic_chain_check_result {
    size_t nb_images;                /* images reached, top first */
    ic_chain_image_report *images;
    size_t nb_findings;
    ic_chain_finding *findings;
    size_t errors, warnings, infos;  /* findings per severity */
} ic_chain_check_result;

/** Called once per finding, as it is found (before ic_chain_check returns). */
typedef void (*ic_chain_report_fn)(const ic_chain_finding *finding, void *payload);

#define IC_CHAIN_CHECK_OPTIONS_VERSION 2
typedef struct ic_chain_check_options {
    unsigned version;            /* IC_CHAIN_CHECK_OPTIONS_VERSION; 1 has no cache */
    const char *format;          /* top image's format; NULL = probe */
    unsigned flags;              /* IC_OPEN_FORCE_SHARE, IC_OPEN_NO_LOCK */
    unsigned max_depth;          /* 0 = 256 */
    bool skip_image_checks;      /* links only: no per-image ic_image_check */
    ic_chain_report_fn report;   /* NULL: collect only */
    ic_check_report_fn image_report; /* per-image check lines; NULL: none */
    ic_open_file_fn open_file;
    void *payload;               /* passed to report, image_report and open_file */
    ic_cache_mode cache;         /* -T: how every image is read */
} ic_chain_check_options;
#define IC_CHAIN_CHECK_OPTIONS_INIT \
    { IC_CHAIN_CHECK_OPTIONS_VERSION, NULL, 0, 0, false, NULL, NULL, NULL, NULL, \
      IC_CACHE_DEFAULT }

/**
 * Checks every image of @p path's chain and the links between them without
 * opening the chain as a whole (so a broken link is reported, not just
 * refused): missing or unreadable backing files, loops, recorded formats
 * that differ from the probed ones, backing files larger than their
 * overlay, relative names that resolve differently from the current
 * directory, per-image check results (formats with a check), and
 * interrupted commit/rebase journals.  Nothing is written.
 * @param out receives the result (free with ic_chain_check_result_free),
 *   also when problems were found
 * @return 0 when the scan completed, whatever it found; -ENOENT / -EBUSY /
 *   -EINVAL when the top image itself cannot be opened; -ENOMEM.
 */
IC_EXTERN int ic_chain_check(ic_chain_check_result **out, const char *path,
                             const ic_chain_check_options *opts, ic_error **errp);
IC_EXTERN void ic_chain_check_result_free(ic_chain_check_result *res);
/** Short name of a problem kind ("missing-backing", "loop", ...). */
IC_EXTERN const char *ic_chain_problem_name(ic_chain_problem kind);

/* ---- dependents ------------------------------------------------------- */

typedef struct ic_dependent {
    char *filename;   /* the overlay found (as found under the scanned folder) */
    unsigned depth;   /* 1 = its backing file is the target; 2 = one image between... */
} ic_dependent;

typedef struct ic_dependents {
    size_t nb;
    ic_dependent *list;   /* sorted by filename */
    size_t scanned;       /* files looked at */
    size_t unreadable;    /* image files whose header or chain could not be followed */
} ic_dependents;

#define IC_DEPENDENTS_OPTIONS_VERSION 1
typedef struct ic_dependents_options {
    unsigned version;
    unsigned max_depth;          /* folder recursion and chain length; 0 = 64 */
    ic_open_file_fn open_file;
    void *payload;
} ic_dependents_options;
#define IC_DEPENDENTS_OPTIONS_INIT { IC_DEPENDENTS_OPTIONS_VERSION, 0, NULL, NULL }

/**
 * Lists the images under @p dirs (searched recursively, symlinked folders
 * not followed) whose backing chains use @p target.  Only headers are read:
 * recorded backing names are followed and compared with the target by
 * resolved real path, so any spelling of the path matches.  Images are
 * opened read-only sharing every permission, so running VMs do not block
 * the scan.
 * @return 0; -ENOENT target or a folder missing; -ENOTDIR not a folder;
 *   -ENOMEM.
 */
IC_EXTERN int ic_chain_dependents(ic_dependents **out, const char *target,
                                  const char *const *dirs, size_t nb_dirs,
                                  const ic_dependents_options *opts, ic_error **errp);
IC_EXTERN void ic_dependents_free(ic_dependents *deps);

#ifdef __cplusplus
}
#endif
#endif
