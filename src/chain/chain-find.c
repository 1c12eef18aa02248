/*
 * chain-find.c - finding an image of an open chain by a name the user gave
 * (commit -b BASE, and any other option that names an image of the chain).
 *
 * Design notes:
 *  1. qemu-img's rule first (bdrv_find_backing_image): for each image of
 *     the chain that has a backing file, NAME is taken relative to that
 *     image's folder (unless absolute) and compared, as a canonical real
 *     path, with the image's own backing name resolved the same way.  The
 *     first image whose backing file matches wins, walking from the top.
 *     So `commit -b sub/mid.qed /elsewhere/top.qcow2` finds the layer that
 *     mid2.qcow2 names `sub/mid.qed`, whatever the current folder is.  A
 *     name that does not resolve to an existing file, from a given image's
 *     folder, simply does not match there (qemu skips it the same way).
 *  2. imgchain's extension, tried only when the rule above found nothing:
 *     NAME as a path from the current folder (or the exact string the chain
 *     opened the layer by), compared by real path.  qemu-img does not do
 *     this; it lets `-b` take the path a user would type in a shell.
 *  3. The top image itself is never a match: only its backing files are
 *     images "of the chain" that an option can name as a base.
 */
#include <stdlib.h>
#include <string.h>

#include "chain-find.h"
#include "chain-journal.h"
#include "io/io-dir.h"
#include "util/path.h"

/* True when @name, taken relative to @overlay's folder, is the file that
 * @overlay's backing layer was opened from (by canonical real path). */
static bool names_backing_of(const struct ic_image *overlay, const char *name)
{
    if (!overlay->backing || !overlay->backing_name)
        return false;
    char *cand = ic_path_resolve_backing(overlay->filename, name);
    char *want = ic_path_resolve_backing(overlay->filename, overlay->backing_name);
    char *rc = cand ? ic_dir_realpath(cand) : NULL;
    char *rw = want ? ic_dir_realpath(want) : NULL;
    bool same = rc && rw && !strcmp(rc, rw);
    free(rc);
    free(rw);
    free(cand);
    free(want);
    return same;
}

struct ic_image *ic_chain_find_backing(struct ic_image *top, const char *name,
                                       struct ic_image **parent)
{
    if (!top || !name || !*name)
        return NULL;
    for (struct ic_image *l = top; l->backing; l = l->backing)
        if (names_backing_of(l, name)) {
            if (parent)
                *parent = l;
            return l->backing;
        }
    for (struct ic_image *l = top; l->backing; l = l->backing)
        if (!strcmp(l->backing->filename, name) ||
            ic_chain_same_file(l->backing->filename, name)) {
            if (parent)
                *parent = l;
            return l->backing;
        }
    return NULL;
}
