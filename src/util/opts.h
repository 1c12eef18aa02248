/*
 * opts.h - qemu-img's "-o key=value,key=value" option strings.
 *
 * Drivers take the keys they understand with ic_opts_take_*(); whatever is
 * left at the end is an error ("invalid option 'x'"), as in qemu-img.
 */
#ifndef IC_UTIL_OPTS_H
#define IC_UTIL_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include "error.h"

typedef struct ic_opts ic_opts;

/* Parses @s (may be NULL or empty).  ",," inside a value is a literal comma.
 * A key given twice keeps the last value, as qemu does. */
int ic_opts_parse(ic_opts **out, const char *s, ic_error **errp);
void ic_opts_free(ic_opts *o);
/* Adds or replaces key=value (used to fold -b/-F/size into the options). */
int ic_opts_set(ic_opts *o, const char *key, const char *value);

/* Each take_* marks the key used.  Returns 0 when absent (out untouched),
 * 1 when present and valid, -EINVAL with *errp set when malformed. */
int ic_opts_take_str(ic_opts *o, const char *key, const char **out);
int ic_opts_take_bool(ic_opts *o, const char *key, bool *out, ic_error **errp);
int ic_opts_take_size(ic_opts *o, const char *key, uint64_t *out, ic_error **errp);
int ic_opts_take_uint(ic_opts *o, const char *key, uint64_t *out, ic_error **errp);
/* -EINVAL naming the first key nobody took. */
int ic_opts_check_unused(const ic_opts *o, const char *format, ic_error **errp);

#endif
