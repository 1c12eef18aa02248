/*
 * path.h - backing-file name resolution.
 */
#ifndef IC_UTIL_PATH_H
#define IC_UTIL_PATH_H

/* Joins @name to the directory of @image_path unless @name is absolute
 * (or image_path has no directory), as qemu does for backing names.
 * Returns a new string or NULL on allocation failure. */
char *ic_path_resolve_backing(const char *image_path, const char *name);
/* True for an absolute path. */
int ic_path_is_absolute(const char *p);
/* Directory part of @p ("." when none); new string. */
char *ic_path_dirname(const char *p);

#endif
