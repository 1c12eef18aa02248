/*
 * image-walk.c - the one walk down a backing chain: which file comes
 * next, when the walk has come back to a file it visited (a loop), and
 * when it is too deep.  Used by ic_image_open (image-open.c), the chain
 * check (src/chain/chain-check.c) and the dependents scan
 * (src/chain/chain-dependents.c), so all three agree on what a loop is.
 *
 * Design notes:
 *  1. A layer is identified by its real path (symlinks, "." and ".."
 *     resolved): "l.qcow2", "./l.qcow2", "/abs/dir/../l.qcow2" and a
 *     symlink to it are one file, so a loop spelled differently from the
 *     image's own name is found before that file is opened a second time
 *     (a second writable or locked open of the same file would otherwise
 *     fail as if another process held it).  A name that cannot be resolved
 *     (a missing file) is compared as spelled.
 *  2. The depth limit counts backing links below the top: layer
 *     max_depth + 1 is refused.  It bounds the walk also where real paths
 *     cannot tell two names apart (hard links).
 *  3. The next name is the recorded backing name resolved against the
 *     directory of the overlay as it was named (qemu's rule);
 *     a format that cannot record a backing file ends the chain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "io/io-dir.h"
#include "util/path.h"

void ic_walk_init(struct ic_walk *w, unsigned max_depth)
{
    memset(w, 0, sizeof(*w));
    w->max_depth = max_depth ? max_depth : IC_CHAIN_DEFAULT_MAX_DEPTH;
}

int ic_walk_visit(struct ic_walk *w, const char *path)
{
    if (w->n > 0 && w->n > w->max_depth)
        return IC_WALK_TOO_DEEP;
    char *real = ic_dir_realpath(path);
    if (!real)
        real = strdup(path);
    if (!real)
        return -ENOMEM;
    for (size_t i = 0; i < w->n; i++) {
        if (!strcmp(w->seen[i], real)) {
            free(real);
            return IC_WALK_LOOP;
        }
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 8;
        char **ns = realloc(w->seen, nc * sizeof(*ns));
        if (!ns) {
            free(real);
            return -ENOMEM;
        }
        w->seen = ns;
        w->cap = nc;
    }
    w->seen[w->n++] = real;
    return IC_WALK_OK;
}

void ic_walk_fini(struct ic_walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->seen[i]);
    free(w->seen);
    memset(w, 0, sizeof(*w));
}

char *ic_walk_next(const struct ic_image *layer, bool *oom)
{
    *oom = false;
    if (!layer->backing_name || layer->drv->headerless)
        return NULL;
    char *path = ic_path_resolve_backing(layer->filename, layer->backing_name);
    if (!path)
        *oom = true;
    return path;
}
