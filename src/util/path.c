/*
 * path.c - backing-file name resolution (qemu's bdrv_get_full_backing_filename
 * rule: a relative backing name is relative to the overlay's directory, as
 * the overlay was named, so a relative overlay path gives a relative result).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

int ic_path_is_absolute(const char *p)
{
    return p && p[0] == '/';
}

char *ic_path_dirname(const char *p)
{
    const char *slash = strrchr(p, '/');
    if (!slash)
        return strdup(".");
    if (slash == p)
        return strdup("/");
    return strndup(p, (size_t)(slash - p));
}

char *ic_path_resolve_backing(const char *image_path, const char *name)
{
    if (ic_path_is_absolute(name) || !image_path)
        return strdup(name);
    const char *slash = strrchr(image_path, '/');
    if (!slash)
        return strdup(name);
    size_t dirlen = (size_t)(slash - image_path) + 1; /* keep the slash */
    size_t n = dirlen + strlen(name) + 1;
    char *r = malloc(n);
    if (!r)
        return NULL;
    memcpy(r, image_path, dirlen);
    strcpy(r + dirlen, name);
    return r;
}
