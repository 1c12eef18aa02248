/*
 * io-journal.c - file-system calls for chain editing that ic_io does not
 * cover: real paths, folder fsync, folder listing.
 *
 * Design notes:
 *  1. This file holds no state; each call is one small wrapper so the rest
 *     of the library stays free of OS file API calls (lint-layers).
 *  2. The journal itself is written through ic_io (so crash and fault
 *     backends see it); only the folder fsync that makes its creation and
 *     removal durable lives here.  It uses opendir()+dirfd() so it needs no
 *     <fcntl.h>.
 *  3. Folder listing never follows a symlinked folder: a scan of a tree
 *     with a link cycle still ends.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io-journal.h"

char *ic_io_realpath(const char *path)
{
    return realpath(path, NULL);
}

int ic_io_sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? (slash == path ? strdup("/") : strndup(path, (size_t)(slash - path)))
                      : strdup(".");
    if (!dir)
        return -ENOMEM;
    DIR *d = opendir(dir);
    free(dir);
    if (!d)
        return -errno;
    int ret = 0;
    if (fsync(dirfd(d)) < 0 && errno != EINVAL && errno != EROFS)
        ret = -errno;
    closedir(d);
    return ret;
}

int ic_io_dir_foreach(const char *dir, int (*fn)(void *payload, const char *path, int kind),
                      void *payload)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int ret = 0;
    size_t dlen = strlen(dir);
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                ret = -errno;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        size_t n = dlen + 1 + strlen(de->d_name) + 1;
        char *p = malloc(n);
        if (!p) {
            ret = -ENOMEM;
            break;
        }
        snprintf(p, n, "%s%s%s", dir, dlen && dir[dlen - 1] == '/' ? "" : "/", de->d_name);
        int kind;
        switch (de->d_type) {
        case DT_REG:
            kind = IC_DIRENT_FILE;
            break;
        case DT_DIR:
            kind = IC_DIRENT_DIR;
            break;
        case DT_LNK: {
            int k = ic_io_file_kind(p);
            kind = (k == IC_FILE_REGULAR || k == IC_FILE_BLOCK) ? IC_DIRENT_FILE : IC_DIRENT_OTHER;
            break;
        }
        case DT_UNKNOWN: {
            int k = ic_io_file_kind(p);
            kind = k == IC_FILE_REGULAR ? IC_DIRENT_FILE : k == IC_FILE_DIR ? IC_DIRENT_DIR
                                                                          : IC_DIRENT_OTHER;
            break;
        }
        default:
            kind = IC_DIRENT_OTHER;
            break;
        }
        ret = fn(payload, p, kind);
        free(p);
        if (ret)
            break;
    }
    closedir(d);
    return ret;
}
