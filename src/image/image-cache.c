/*
 * image-cache.c - cache modes: the parser of qemu-img's -t/-T values, and
 * the one place where a cache mode becomes an I/O backend and descriptor
 * flags (for ic_image_open, image-open.c, and commit's reopen of its base).
 *
 * Design notes:
 *  1. none and directsync get the libaio backend with O_DIRECT (directsync
 *     adds O_DSYNC), refused where the file system has no O_DIRECT;
 *     writeback, writethrough (O_DSYNC) and unsafe the POSIX backend; the
 *     default the POSIX backend, except for bulk output into a writable
 *     file (IC_IO_STREAM), which gets O_DIRECT where the file system has
 *     it and the streamed page cache where it has not.
 *  2. An unsafe layer's file defers its flushes (src/io/io.c note 5): a
 *     flush runs just before the next write, so only the final one, with
 *     no write after it, is skipped.
 *  3. A new target in the unsafe mode (ic_image_drop_flushes): a file
 *     the operation creates is incomplete until the operation returns, so
 *     a crash leaves it useless in any write order and its ordering
 *     flushes protect nothing; they are all dropped, as qemu's unsafe mode
 *     drops them (src/io/io.c note 6).  Files that existed before keep the
 *     ordering flushes of note 2.
 *  4. Bulk output through the page cache (IC_IO_STREAM opens that do not
 *     get O_DIRECT) also gets IC_IO_BULK: the POSIX backend allocates each
 *     large write's range before writing it (src/io/io-posix.c note 9).
 *  5. A caller's opener (open_file: tests, embedders) receives the flags
 *     the mode asks for (IC_IO_DIRECT, IC_IO_DSYNC) and picks its own
 *     backend.
 *  6. A file opened read-only in the default mode also gets
 *     IC_IO_MISS_DIRECT: its large reads of data the page cache does not
 *     hold go to the device directly, the cached rest from the cache
 *     (src/io/io-posix.c note 11).  The explicit modes keep their
 *     meaning: writeback and unsafe always read through the cache, none
 *     and directsync never do.
 */
#include <errno.h>
#include <string.h>

#include "image.h"

int ic_cache_mode_parse(const char *name, ic_cache_mode *out)
{
    static const struct { const char *name; ic_cache_mode mode; } modes[] = {
        { "none", IC_CACHE_NONE },
        { "directsync", IC_CACHE_DIRECTSYNC },
        { "writeback", IC_CACHE_WRITEBACK },
        { "writethrough", IC_CACHE_WRITETHROUGH },
        { "unsafe", IC_CACHE_UNSAFE },
    };
    for (size_t i = 0; name && i < IC_ARRAY_SIZE(modes); i++) {
        if (!strcmp(name, modes[i].name)) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return -EINVAL;
}

const char *ic_cache_mode_name(ic_cache_mode mode)
{
    switch (mode) {
    case IC_CACHE_DEFAULT: return "default";
    case IC_CACHE_WRITEBACK: return "writeback";
    case IC_CACHE_WRITETHROUGH: return "writethrough";
    case IC_CACHE_NONE: return "none";
    case IC_CACHE_DIRECTSYNC: return "directsync";
    case IC_CACHE_UNSAFE: return "unsafe";
    }
    return "unknown";
}

bool ic_cache_mode_valid(ic_cache_mode mode)
{
    return mode >= IC_CACHE_DEFAULT && mode <= IC_CACHE_UNSAFE;
}

int ic_image_open_file_cache(ic_open_file_fn fn, void *payload, ic_io **out, const char *path,
                             unsigned io_flags, ic_cache_mode cache, ic_error **errp)
{
    unsigned f = io_flags & ~(IC_IO_DIRECT | IC_IO_DSYNC);
    bool direct = cache == IC_CACHE_NONE || cache == IC_CACHE_DIRECTSYNC;
    if (cache == IC_CACHE_WRITETHROUGH || cache == IC_CACHE_DIRECTSYNC)
        f |= IC_IO_DSYNC;
    if ((f & IC_IO_STREAM) && (f & IC_IO_RDWR) && !direct)
        f |= IC_IO_BULK; /* design note 4 */
    if (cache == IC_CACHE_UNSAFE)
        f &= ~IC_IO_STREAM; /* streaming starts writeback at once: not unsafe's point */
    if (cache == IC_CACHE_DEFAULT && !(f & IC_IO_RDWR))
        f |= IC_IO_MISS_DIRECT; /* design note 6 */
    if (fn)
        return fn(out, path, f | (direct ? IC_IO_DIRECT : 0), payload, errp);
    if (direct)
        return ic_io_open_aio(out, path, f | IC_IO_DIRECT, errp);
    if (cache == IC_CACHE_DEFAULT && (f & IC_IO_STREAM) && (f & IC_IO_RDWR)) {
        ic_error *derr = NULL;
        int ret = ic_io_open_aio(out, path, (f & ~IC_IO_BULK) | IC_IO_DIRECT, &derr);
        if (ret != -EINVAL || !derr || derr->kind != IC_ERR_UNSUPPORTED) {
            ic_error_propagate(errp, derr);
            return ret;
        }
        ic_error_free(derr); /* no O_DIRECT here: the streamed page cache */
    }
    return ic_io_open_file(out, path, f, errp);
}

void ic_image_drop_flushes(struct ic_image *img)
{
    if (img->cache == IC_CACHE_UNSAFE && !img->read_only)
        ic_io_drop_flushes(img->file);
}

void ic_image_set_cache(struct ic_image *img, ic_cache_mode cache)
{
    img->cache = cache;
    if (cache == IC_CACHE_UNSAFE && !img->read_only)
        ic_io_defer_flush(img->file, true);
}

int ic_image_reopen_backing_rw(struct ic_image *parent, ic_cache_mode cache, ic_error **errp)
{
    struct ic_image *old = parent->backing;
    if (!old->read_only)
        return 0;
    unsigned ioflags = IC_IO_RDWR | IC_IO_STREAM;
    if (old->flags & IC_OPEN_NO_LOCK)
        ioflags |= IC_IO_NOLOCK;
    /* Our own shared lock is dropped first, because OFD locks of two
     * descriptions of one file conflict even within one process. */
    ic_io_lock(old->file, IC_LOCK_NONE, NULL);
    ic_io *file = NULL;
    int ret = ic_image_open_file_cache(old->open_file, old->payload, &file, old->filename,
                                       ioflags, cache, errp);
    struct ic_image *nl = NULL;
    if (ret == 0)
        ret = ic_image_open_layer(&nl, file, old->filename, old->drv,
                                  (old->flags | IC_OPEN_RDWR) & ~IC_OPEN_FORCE_SHARE,
                                  old->open_file, old->payload, errp);
    if (ret < 0) {
        if (!(old->flags & IC_OPEN_NO_LOCK))
            ic_io_lock(old->file, (old->flags & IC_OPEN_FORCE_SHARE) ? IC_LOCK_FORCE_SHARE
                                                                     : IC_LOCK_SHARED, NULL);
        ic_error_prepend(errp, "%s: cannot reopen read-write", old->filename);
        return ret;
    }
    if ((nl->backing_name == NULL) != (old->backing_name == NULL) ||
        (nl->backing_name && strcmp(nl->backing_name, old->backing_name))) {
        ic_image_free_chain(nl);
        return ic_error_set(errp, IC_ERR_OTHER, ESTALE,
                            "%s: its backing file changed while it was open", old->filename);
    }
    ic_image_set_cache(nl, cache);
    nl->backing_cache = old->backing_cache;
    nl->backing = old->backing;
    nl->backing_path = old->backing_path;
    nl->depth = old->depth;
    nl->probed = old->probed;
    old->backing = NULL;
    old->backing_path = NULL;
    parent->backing = nl;
    ic_image_free_chain(old);
    return 0;
}
