/*
 * io-journal.h - the few file-system calls beyond ic_io that chain editing
 * needs (journal durability, real paths, folder scans).  Implemented in
 * io-journal.c so that only src/io touches the OS file API.
 */
#ifndef IC_IO_JOURNAL_H
#define IC_IO_JOURNAL_H

#include "io.h"

/* The canonical absolute path of @path (symlinks resolved), malloc'd; NULL
 * with errno set when it cannot be resolved (missing file: ENOENT). */
char *ic_io_realpath(const char *path);

/* Makes the directory entries of the folder containing @path durable
 * (fsync of the folder), after a file there was created or removed.
 * Returns 0 or -errno. */
int ic_io_sync_parent_dir(const char *path);

/* What ic_io_dir_foreach reports for one entry. */
enum { IC_DIRENT_FILE = 1, IC_DIRENT_DIR, IC_DIRENT_OTHER };

/* Calls @fn for every entry of folder @dir except "." and "..", with the
 * joined path and IC_DIRENT_*.  A symlink to a file counts as a file, a
 * symlink to a folder as OTHER (callers never recurse through links).
 * Stops at the first non-zero return of @fn and returns it; -errno when the
 * folder cannot be read. */
int ic_io_dir_foreach(const char *dir, int (*fn)(void *payload, const char *path, int kind),
                      void *payload);

#endif
