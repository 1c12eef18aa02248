/*
 * io-dir.h - whole files and directories: the OS side of the snapshot
 * metadata store (src/snap/snap-meta.c), and the real paths, folder fsync
 * and folder scans of chain editing (journals, loop detection, the
 * dependents scan).
 *
 * Small and generic: atomic replacement of a file, reading a file whole,
 * listing a directory, mkdir -p, unlink, and asking what a path is.  Image
 * data never goes through here (that is ic_io).
 *
 * Test hook: every step of ic_dir_write_atomic() and ic_dir_unlink() first
 * calls the hook installed with ic_dir_set_hook() (none by default, so it
 * costs one pointer test).  The hook may let the step run (0), fail it like
 * the OS would (-errno: the operation cleans up and reports it), or
 * "crash" there (IC_DIR_HOOK_CRASH: the operation stops dead, leaving the
 * files exactly as a killed process would; a crash at the WRITE step
 * first writes half the data).  Unit tests use it to prove that the store
 * holds the old or the new document after a crash at any step.
 */
#ifndef IC_IO_IO_DIR_H
#define IC_IO_IO_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include "imgchain/error.h"

enum ic_dir_step {
    IC_DIR_STEP_CREATE,     /* create the temporary file */
    IC_DIR_STEP_WRITE,      /* write the new content into it */
    IC_DIR_STEP_FSYNC,      /* fsync the temporary file */
    IC_DIR_STEP_RENAME,     /* rename it over the target */
    IC_DIR_STEP_FSYNC_DIR,  /* fsync the directory (makes the rename durable) */
    IC_DIR_STEP_UNLINK,     /* unlink a file */
    IC_DIR_STEP__MAX
};

#define IC_DIR_HOOK_CRASH 1

typedef int (*ic_dir_hook_fn)(enum ic_dir_step step, const char *path, void *opaque);

/* Installs @fn (NULL removes it).  Not thread-safe: tests only. */
void ic_dir_set_hook(ic_dir_hook_fn fn, void *opaque);
/* Name of a step ("rename"). */
const char *ic_dir_step_name(enum ic_dir_step step);

/* What a path is (stat, following symlinks). */
enum ic_dir_path_type {
    IC_DIR_PATH_MISSING = 0,   /* does not exist or cannot be inspected */
    IC_DIR_PATH_REGULAR,
    IC_DIR_PATH_BLOCK,
    IC_DIR_PATH_DIRECTORY,
    IC_DIR_PATH_OTHER,
};
enum ic_dir_path_type ic_dir_path_type(const char *path);

/* Creates @path and its missing parents with @mode (before umask); the
 * parent of each created directory is fsynced.  0 or -errno. */
int ic_dir_mkdir_p(const char *path, unsigned mode, ic_error **errp);

/*
 * Replaces @path with @len bytes of @data atomically: a temporary file
 * ".<name>.tmpXXXXXX" in the same directory is written and fsynced, renamed
 * over @path, and the directory is fsynced.  A reader (or a reboot) sees
 * the old content or the new one, never a mix.  @mode is the new file's
 * permission.  0 or -errno (-EIO for a simulated crash).
 */
int ic_dir_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                        ic_error **errp);

/* Reads a regular file whole into a NUL-terminated buffer (@max bytes at
 * most: -EFBIG beyond).  0 or -errno. */
int ic_dir_read_file(char **out, size_t *len_out, const char *path, size_t max,
                     ic_error **errp);

/*
 * Lists the entries of @dir whose names end with @suffix (NULL: all) and
 * do not start with '.', sorted with strcmp.  A missing directory is an
 * empty list when @missing_ok, else -ENOENT.  Free with ic_dir_list_free().
 */
int ic_dir_list(char ***names_out, size_t *n_out, const char *dir, const char *suffix,
                bool missing_ok, ic_error **errp);
void ic_dir_list_free(char **names, size_t n);

/* Creates @path, which must not exist, empty with exactly @mode (umask
 * not applied), and fsyncs its directory: a private file another module
 * then fills (the overlays of domain snapshots, 0600).  0 or -errno
 * (-EEXIST when it exists). */
int ic_dir_create_empty(const char *path, unsigned mode, ic_error **errp);

/* Unlinks @path and fsyncs its directory.  0 or -errno (-ENOENT if missing). */
int ic_dir_unlink(const char *path, ic_error **errp);

/* The canonical absolute path of @path (symlinks resolved), malloc'd; a
 * query: NULL with errno set when it cannot be resolved (missing: ENOENT). */
char *ic_dir_realpath(const char *path);

/* Makes the entries of the folder containing @path durable (fsync of the
 * folder), after a file there was created or removed.  0 or -errno. */
int ic_dir_sync_parent(const char *path, ic_error **errp);

/* What ic_dir_foreach reports for one entry. */
enum { IC_DIRENT_FILE = 1, IC_DIRENT_DIR, IC_DIRENT_OTHER };

/* Calls @fn for every entry of folder @dir except "." and "..", with the
 * joined path and IC_DIRENT_*.  A symlink to a file counts as a file, a
 * symlink to a folder as OTHER (callers never recurse through links).
 * Stops at the first non-zero return of @fn and returns it (no error set);
 * -errno with *errp set when the folder cannot be read. */
int ic_dir_foreach(const char *dir, int (*fn)(void *payload, const char *path, int kind),
                   void *payload, ic_error **errp);

#endif
