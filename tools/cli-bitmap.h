/*
 * cli-bitmap.h - convert --bitmaps (tools/cmd-bitmap.c): the persistent
 * dirty bitmaps of a conversion's source image copied into its target, as
 * qemu-img convert --bitmaps copies them.
 */
#ifndef IC_TOOLS_CLI_BITMAP_H
#define IC_TOOLS_CLI_BITMAP_H

#include <stdbool.h>

/* Before the conversion: the target format must hold bitmaps (qcow2) and,
 * unless @skip_broken, no bitmap of the source (not its backing files)
 * may be in use.  Prints the error and returns 1, or returns 0. */
int cli_bitmaps_check(const char *src, const char *src_fmt, bool share, const char *out_fmt,
                      bool skip_broken);

/* After it: each consistent bitmap of @src added to @dst with its
 * granularity, its bits merged in, disabled if it was; in-use ones are
 * skipped with a warning.  Prints the error and returns 1, or returns 0. */
int cli_bitmaps_copy(const char *src, const char *src_fmt, bool share, const char *dst);

#endif
