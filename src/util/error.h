/*
 * error.h - the internal side of ic_error (see include/imgchain/error.h).
 *
 * Rules (QEMU's Error, libgit2's message rules):
 *  1. Set an error once, where the problem is detected, with ic_error_set().
 *     It returns -errnum so the idiom is `return ic_error_set(errp, ...)`.
 *  2. Callers pass it up unchanged or add context with ic_error_prepend().
 *  3. Never overwrite a set error: ic_error_set() on an already-set *errp
 *     keeps the first one (the first detection point is the useful one).
 *  4. errp may be NULL: the error is then simply dropped.
 */
#ifndef IC_UTIL_ERROR_H
#define IC_UTIL_ERROR_H

#include <stdarg.h>
#include "imgchain/error.h"
#include "compiler.h"

struct ic_error {
    int errnum;          /* positive errno */
    ic_error_kind kind;
    char *msg;           /* one line, no trailing punctuation */
};

/* Sets *errp (if errp and *errp is unset) and returns -errnum. */
int ic_error_set(ic_error **errp, ic_error_kind kind, int errnum, const char *fmt, ...)
    IC_PRINTF(4, 5);
int ic_error_setv(ic_error **errp, ic_error_kind kind, int errnum, const char *fmt, va_list ap)
    IC_PRINTF(4, 0);
/* Sets an error from a -errno code with a message "<prefix>: strerror". */
int ic_error_set_errno(ic_error **errp, int neg_errno, const char *fmt, ...) IC_PRINTF(3, 4);
/* Prefixes the message of *errp (if set) with "<fmt...>: ". */
void ic_error_prepend(ic_error **errp, const char *fmt, ...) IC_PRINTF(2, 3);
/* Moves @src into *dst (freeing src if dst is NULL or already set). */
void ic_error_propagate(ic_error **dst, ic_error *src);
/* Maps an errno value to the error kind used when no better one is known. */
ic_error_kind ic_error_kind_from_errno(int errnum);
/* Duplicates an error (for storing a copy in a handle). */
ic_error *ic_error_copy(const ic_error *err);

/* Test helper: ret < 0 exactly when *errp is set. */
#define IC_ERR_CONSISTENT(ret, err) (((ret) < 0) == ((err) != NULL))

#endif
