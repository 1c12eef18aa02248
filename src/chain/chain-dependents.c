/*
 * chain-dependents.c - which images use a given image as (part of) their
 * backing chain: ic_chain_dependents() and the scan commit uses for its
 * warning.
 *
 * Design notes:
 *  1. What it owns: nothing on disk; it reads headers only.  Each file under
 *     the scanned folders is probed (first 4 KiB); raw files end the walk at
 *     once.  For an image, the recorded backing name is resolved against
 *     the image's folder (qemu's rule) and followed header by
 *     header, with the recorded format (probing only when none is
 *     recorded), up to max_depth levels.
 *  2. Matching is by real path (symlinks and "..", "./" resolved), so every
 *     spelling of the target matches; an image is never its own dependent.
 *  3. Images are opened read-only with force-share locks (-U) and with
 *     IC_OPEN_CHECK, so running VMs and dirty images do not stop the scan.
 *     A file that cannot be followed counts as unreadable; the scan goes on.
 *  4. Bounded: folder recursion and chain walks both stop at max_depth
 *     (default 64), and symlinked folders are never entered (src/io/io-dir.c),
 *     so link cycles end; a backing loop is found by the walker every
 *     chain walk shares (src/image/image-walk.c) and counts as unreadable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chain-journal.h"
#include "io/io-dir.h"
#include "util/path.h"

/* Folder depth and chain length limit when the caller gives none: deeper
 * than any real layout, small enough to end loops quickly. */
#define IC_DEPENDENTS_DEFAULT_DEPTH 64u
/* Bytes read to probe a file's format (the drivers' probe contract). */
#define IC_PROBE_BYTES 4096u

struct scan {
    const char *const *targets;
    size_t nt;
    const char *const *stops;
    size_t ns;
    unsigned max_depth;
    ic_open_file_fn open_file;
    void *payload;
    struct ic_dep_hit *hits;
    size_t nhits, cap;
    size_t scanned, unreadable;
    int err; /* -ENOMEM */
};

static long find_str(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && !strcmp(list[i], s))
            return (long)i;
    return -1;
}

/* Opens the header of @path; *out NULL for a file that ends the walk
 * (raw).  Returns 0, or -errno when it cannot be read as an image. */
static int open_header(struct scan *sc, const char *path, const char *fmt, struct ic_image **out)
{
    *out = NULL;
    ic_io *io = NULL;
    int ret = ic_image_open_file(sc->open_file, sc->payload, &io, path, IC_IO_SHARE, NULL);
    if (ret < 0)
        return ret;
    const struct ic_driver *drv;
    if (fmt) {
        drv = ic_driver_find(fmt);
        if (!drv) {
            ic_io_close(io);
            return -ENOTSUP;
        }
    } else {
        uint8_t buf[IC_PROBE_BYTES];
        int64_t n = ic_io_pread_upto(io, buf, sizeof(buf), 0);
        if (n < 0) {
            ic_io_close(io);
            return (int)n;
        }
        drv = ic_driver_probe(buf, (size_t)n);
    }
    if (ic_driver_headerless(drv)) {
        ic_io_close(io);
        return 0;
    }
    return ic_image_open_layer(out, io, path, drv,
                               IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE | IC_OPEN_CHECK,
                               sc->open_file, sc->payload, NULL);
}

static int add_hit(struct scan *sc, size_t target, const char *file, unsigned depth)
{
    if (sc->nhits == sc->cap) {
        size_t nc = sc->cap ? sc->cap * 2 : 8;
        struct ic_dep_hit *nh = realloc(sc->hits, nc * sizeof(*nh));
        if (!nh)
            return -ENOMEM;
        sc->hits = nh;
        sc->cap = nc;
    }
    char *f = strdup(file);
    if (!f)
        return -ENOMEM;
    sc->hits[sc->nhits++] = (struct ic_dep_hit){ .target = target, .file = f, .depth = depth };
    return 0;
}

/* Follows @path's chain by headers; records the first target it reaches. */
static int examine(struct scan *sc, const char *path)
{
    sc->scanned++;
    char *cur = strdup(path);
    char *fmt = NULL;
    int ret = cur ? 0 : -ENOMEM;
    /* the walk every chain walker shares (src/image/image-walk.c) */
    struct ic_walk w;
    ic_walk_init(&w, sc->max_depth);
    for (unsigned depth = 0; ret == 0; depth++) {
        char *real = ic_dir_realpath(cur);
        if (!real) {
            if (depth > 0)
                sc->unreadable++; /* dangling backing name */
            break;
        }
        int wr = ic_walk_visit(&w, real);
        if (wr != IC_WALK_OK) {
            free(real);
            if (wr == IC_WALK_LOOP)
                sc->unreadable++; /* a loop: the chain cannot be followed */
            else if (wr < 0)
                ret = wr;
            break;
        }
        bool stop = find_str(sc->stops, sc->ns, real) >= 0;
        long t = find_str(sc->targets, sc->nt, real);
        free(real);
        if (stop)
            break;
        if (depth > 0 && t >= 0) {
            ret = add_hit(sc, (size_t)t, path, depth);
            break;
        }
        struct ic_image *l = NULL;
        int r = open_header(sc, cur, fmt, &l);
        if (r < 0) {
            if (r == -ENOMEM)
                ret = r;
            else
                sc->unreadable++;
            break;
        }
        if (!l)
            break;
        bool oom = false;
        char *next = ic_walk_next(l, &oom);
        char *nfmt = l->backing_fmt ? strdup(l->backing_fmt) : NULL;
        bool has_backing = next != NULL;
        if (l->backing_fmt && !nfmt)
            oom = true;
        ic_image_free_chain(l);
        free(cur);
        free(fmt);
        cur = next;
        fmt = nfmt;
        if (oom)
            ret = -ENOMEM;
        if (!has_backing)
            break;
    }
    ic_walk_fini(&w);
    free(cur);
    free(fmt);
    return ret;
}

struct walk {
    struct scan *sc;
    unsigned level;
};

static int walk_dir(struct scan *sc, const char *dir, unsigned level);

static int walk_cb(void *payload, const char *path, int kind)
{
    struct walk *w = payload;
    if (kind == IC_DIRENT_DIR) {
        if (w->level < w->sc->max_depth)
            return walk_dir(w->sc, path, w->level + 1);
        return 0;
    }
    if (kind == IC_DIRENT_FILE)
        return examine(w->sc, path);
    return 0;
}

static int walk_dir(struct scan *sc, const char *dir, unsigned level)
{
    struct walk w = { sc, level };
    int ret = ic_dir_foreach(dir, walk_cb, &w, NULL);
    /* An unreadable subfolder is skipped; only ENOMEM stops the scan. */
    if (ret < 0 && ret != -ENOMEM && level > 0)
        return 0;
    return ret;
}

void ic_dep_hits_free(struct ic_dep_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(hits[i].file);
    free(hits);
}

int ic_chain_scan_users(const char *const *targets, size_t nb_targets,
                        const char *const *stops, size_t nb_stops,
                        const char *const *dirs, size_t nb_dirs, unsigned max_depth,
                        ic_open_file_fn open_file, void *payload,
                        struct ic_dep_hit **hits, size_t *nb_hits,
                        size_t *scanned, size_t *unreadable, ic_error **errp)
{
    *hits = NULL;
    *nb_hits = 0;
    struct scan sc = {
        .targets = targets, .nt = nb_targets, .stops = stops, .ns = nb_stops,
        .max_depth = max_depth ? max_depth : IC_DEPENDENTS_DEFAULT_DEPTH,
        .open_file = open_file, .payload = payload,
    };
    int ret = 0;
    for (size_t i = 0; i < nb_dirs && ret == 0; i++) {
        ret = walk_dir(&sc, dirs[i], 0);
        if (ret < 0 && ret != -ENOMEM)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: cannot read: %s",
                               dirs[i], strerror(-ret));
    }
    if (ret == -ENOMEM)
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    if (ret < 0) {
        ic_dep_hits_free(sc.hits, sc.nhits);
        return ret;
    }
    *hits = sc.hits;
    *nb_hits = sc.nhits;
    if (scanned)
        *scanned = sc.scanned;
    if (unreadable)
        *unreadable = sc.unreadable;
    return 0;
}

static int cmp_dep(const void *a, const void *b)
{
    const ic_dependent *x = a, *y = b;
    return strcmp(x->filename, y->filename);
}

void ic_dependents_free(ic_dependents *deps)
{
    if (!deps)
        return;
    for (size_t i = 0; i < deps->nb; i++)
        free(deps->list[i].filename);
    free(deps->list);
    free(deps);
}

int ic_chain_dependents(ic_dependents **out, const char *target, const char *const *dirs,
                        size_t nb_dirs, const ic_dependents_options *opts, ic_error **errp)
{
    static const ic_dependents_options defaults = IC_DEPENDENTS_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    *out = NULL;
    if (!target || !*target || !nb_dirs)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_dependents: a target and at least one folder are needed");
    if (opts->version != IC_DEPENDENTS_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_dependents: unknown options version %u", opts->version);
    char *real = ic_dir_realpath(target);
    if (!real) {
        int e = errno ? errno : ENOENT;
        return ic_error_set(errp, ic_error_kind_from_errno(e), e, "%s: %s",
                            target, strerror(e));
    }
    for (size_t i = 0; i < nb_dirs; i++) {
        int k = ic_io_file_kind(dirs[i]);
        if (k != IC_FILE_DIR) {
            int e = k < 0 ? -k : ENOTDIR;
            free(real);
            return ic_error_set(errp, ic_error_kind_from_errno(e), e,
                                "%s: %s", dirs[i],
                                k < 0 ? strerror(e) : "not a folder");
        }
    }
    ic_dependents *d = calloc(1, sizeof(*d));
    if (!d) {
        free(real);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "ic_chain_dependents: out of memory");
    }
    const char *targets[1] = { real };
    struct ic_dep_hit *hits = NULL;
    size_t nh = 0;
    int ret = ic_chain_scan_users(targets, 1, NULL, 0, dirs, nb_dirs, opts->max_depth,
                                  opts->open_file, opts->payload, &hits, &nh, &d->scanned,
                                  &d->unreadable, errp);
    free(real);
    if (ret < 0) {
        free(d);
        return ret;
    }
    d->list = calloc(nh ? nh : 1, sizeof(*d->list));
    if (!d->list) {
        ic_dep_hits_free(hits, nh);
        free(d);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "ic_chain_dependents: out of memory");
    }
    /* The same image found through two folders (or two links) counts once. */
    for (size_t i = 0; i < nh; i++) {
        bool dup = false;
        for (size_t k = 0; k < d->nb && !dup; k++)
            dup = ic_chain_same_file(d->list[k].filename, hits[i].file);
        if (dup) {
            free(hits[i].file);
            continue;
        }
        d->list[d->nb].filename = hits[i].file;
        d->list[d->nb].depth = hits[i].depth;
        d->nb++;
    }
    free(hits);
    qsort(d->list, d->nb, sizeof(*d->list), cmp_dep);
    *out = d;
    return 0;
}
