/*
 * imgchain/error.h - the error object of the control path.
 *
 * Every fallible public function returns 0 (or a non-negative quantity) on
 * success and -errno on failure, and takes `ic_error **errp` as its last
 * parameter.  On failure *errp receives a new error object that the caller
 * owns and frees with ic_error_free(); errp may be NULL when the caller only
 * wants the code.  A return value < 0 happens exactly when *errp was set.
 *
 * The message is one line without trailing punctuation.  Public entry points
 * prefix it with the API name and the file concerned, e.g.
 * "ic_image_open: disk.qcow2: unsupported qcow2 version 4".
 */
#ifndef IMGCHAIN_ERROR_H
#define IMGCHAIN_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ic_error_kind {
    IC_ERR_OTHER = 0,   /* none of the below */
    IC_ERR_INVALID,     /* bad argument or option from the caller */
    IC_ERR_NOTFOUND,    /* file, snapshot or backing image missing */
    IC_ERR_IO,          /* the OS reported an I/O error */
    IC_ERR_CORRUPT,     /* on-disk data violates the format */
    IC_ERR_UNSUPPORTED, /* valid but not supported (feature bit, encryption) */
    IC_ERR_BUSY,        /* image locked by another process (only this: retrying may help) */
    IC_ERR_NOMEM,       /* allocation failed or a limit was hit */
    IC_ERR_EXISTS,      /* name or file already exists */
    IC_ERR_PENDING,     /* an interrupted operation's journal must be finished first */
} ic_error_kind;

typedef struct ic_error ic_error;

/** The errno value (positive) carried by @p err; 0 for NULL. */
IC_EXTERN int ic_error_errno(const ic_error *err);
/** The error kind; IC_ERR_OTHER for NULL. */
IC_EXTERN ic_error_kind ic_error_kind_of(const ic_error *err);
/** The one-line message; borrowed, valid until ic_error_free(). "" for NULL. */
IC_EXTERN const char *ic_error_message(const ic_error *err);
/** Frees @p err; NULL is a no-op. */
IC_EXTERN void ic_error_free(ic_error *err);

#ifdef __cplusplus
}
#endif
#endif
