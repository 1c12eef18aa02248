/*
 * error.c - ic_error implementation.
 *
 * Design notes: an error is a heap object with a kind, a positive errno and a
 * one-line message.  Allocation failure while building an error must not
 * lose the error code, so a static "out of memory" object is used as the
 * fallback; ic_error_free() recognises it and does not free it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static char oom_msg[] = "out of memory";
static ic_error oom_error = { ENOMEM, IC_ERR_NOMEM, oom_msg };

ic_error_kind ic_error_kind_from_errno(int errnum)
{
    switch (errnum) {
    case EINVAL: case ERANGE: case E2BIG: case ENAMETOOLONG:
        return IC_ERR_INVALID;
    case ENOENT: case ENOTDIR:
        return IC_ERR_NOTFOUND;
    case EIO: case ENOSPC: case EROFS: case EFBIG: case EDQUOT:
    /* IC_ERR_BUSY (the CLI's exit 75, "locked, try again") is set only by
     * the lock code (src/io/io-lock.c), never derived from an errno: an
     * EBUSY or EAGAIN from elsewhere is no lock another process holds. */
    case EAGAIN: case EBUSY:
        return IC_ERR_IO;
    case ENOTSUP: case ENOSYS:
        return IC_ERR_UNSUPPORTED;
    case ENOMEM:
        return IC_ERR_NOMEM;
    case EEXIST:
        return IC_ERR_EXISTS;
    default:
        return IC_ERR_OTHER;
    }
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    /* One line: fold any newline a formatted argument brought in. */
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return s;
}

int ic_error_setv(ic_error **errp, ic_error_kind kind, int errnum, const char *fmt, va_list ap)
{
    if (errnum <= 0)
        errnum = errnum < 0 ? -errnum : EIO;
    if (!errp || *errp)
        return -errnum;
    ic_error *e = malloc(sizeof(*e));
    char *msg = vformat(fmt, ap);
    if (!e || !msg) {
        free(e);
        free(msg);
        *errp = &oom_error;
        return -errnum;
    }
    e->errnum = errnum;
    e->kind = kind;
    e->msg = msg;
    *errp = e;
    return -errnum;
}

int ic_error_set(ic_error **errp, ic_error_kind kind, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = ic_error_setv(errp, kind, errnum, fmt, ap);
    va_end(ap);
    return ret;
}

int ic_error_set_errno(ic_error **errp, int neg_errno, const char *fmt, ...)
{
    int errnum = neg_errno < 0 ? -neg_errno : (neg_errno ? neg_errno : EIO);
    if (!errp || *errp)
        return -errnum;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    int ret = ic_error_set(errp, ic_error_kind_from_errno(errnum), errnum, "%s: %s",
                           prefix ? prefix : "error", strerror(errnum));
    free(prefix);
    return ret;
}

void ic_error_prepend(ic_error **errp, const char *fmt, ...)
{
    if (!errp || !*errp || *errp == &oom_error)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    if (!prefix)
        return;
    ic_error *e = *errp;
    size_t n = strlen(prefix) + 2 + strlen(e->msg) + 1;
    char *msg = malloc(n);
    if (msg) {
        snprintf(msg, n, "%s: %s", prefix, e->msg);
        free(e->msg);
        e->msg = msg;
    }
    free(prefix);
}

void ic_error_propagate(ic_error **dst, ic_error *src)
{
    if (!src)
        return;
    if (!dst || *dst) {
        ic_error_free(src);
        return;
    }
    *dst = src;
}

ic_error *ic_error_copy(const ic_error *err)
{
    if (!err)
        return NULL;
    ic_error *e = NULL;
    ic_error_set(&e, err->kind, err->errnum, "%s", err->msg);
    return e;
}

int ic_error_errno(const ic_error *err) { return err ? err->errnum : 0; }
ic_error_kind ic_error_kind_of(const ic_error *err) { return err ? err->kind : IC_ERR_OTHER; }
const char *ic_error_message(const ic_error *err) { return err ? err->msg : ""; }

void ic_error_free(ic_error *err)
{
    if (!err || err == &oom_error)
        return;
    free(err->msg);
    free(err);
}
