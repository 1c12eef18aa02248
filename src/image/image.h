/*
 * image.h - the generic image handle, as seen by drivers and src/chain.
 */
#ifndef IC_IMAGE_IMAGE_H
#define IC_IMAGE_IMAGE_H

#include "imgchain/image.h"
#include "io/io.h"
#include "util/compiler.h"
#include "util/error.h"
#include "driver.h"

/*
 * Image state machine (sticky ERROR, as SQLite's pager):
 *
 *      open()           first write            fatal corruption / failed
 *   ---------> OPEN -----------------> DIRTY ----------------------------+
 *               ^  \                     | flush()                        |
 *               |   \____________________v_______________________        v
 *               +-------------------- OPEN                        ERROR (reads
 *                                                                 allowed, writes
 *   close(): any state -> CLOSED (flushes when OPEN or DIRTY)      refused EIO)
 *
 *   transition            function
 *   OPEN  -> DIRTY        ic_image_pwrite / pwrite_zeroes / discard / compressed
 *   DIRTY -> OPEN         ic_image_flush
 *   any   -> ERROR        ic_image_corrupt(fatal=true), failed metadata write
 *   any   -> CLOSED       ic_image_close
 */
enum ic_image_state {
    IC_IMAGE_OPEN = 0,
    IC_IMAGE_DIRTY,
    IC_IMAGE_ERROR,
};

struct ic_image {
    const struct ic_driver *drv;
    void *opaque;                 /* drv->instance_size bytes */
    ic_io *file;                  /* this layer's file (owned) */
    char *filename;               /* as given by the caller or the overlay */
    unsigned flags;               /* IC_OPEN_* this layer was opened with */
    bool read_only;
    bool probed;                  /* format probed, not named: raw guards sector 0 */
    enum ic_image_state state;

    uint64_t size;                /* virtual size (set by drv->open) */
    uint32_t cluster_size;        /* 0 for raw */
    char *backing_name;           /* recorded backing name or NULL */
    char *backing_fmt;            /* recorded backing format or NULL */
    char *backing_path;           /* resolved path or NULL */
    struct ic_image *backing;     /* opened backing layer (owned) or NULL */
    unsigned depth;               /* 0 = top */

    ic_error *last_error;         /* detail of the last data-path failure */
    ic_open_file_fn open_file;
    void *payload;
    ic_cache_mode cache;          /* this layer's cache mode */
    ic_cache_mode backing_cache;  /* the mode its backing chain is opened with */
};

/* Reads [off, off+len) of the backing chain as seen from @img: zeroes
 * without a backing image and past its end. */
int ic_image_backing_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
    IC_WARN_UNUSED;

/* Records corruption found at @offset (a host offset in img->file, or
 * UINT64_MAX when not applicable), moves the image to ERROR when @fatal and
 * returns -EIO.  The message names the file and the structure. */
int ic_image_corrupt(struct ic_image *img, bool fatal, uint64_t offset, const char *fmt, ...)
    IC_PRINTF(4, 5);
/* Records a data-path error message (like ic_image_corrupt without the
 * corrupt state) and returns @ret. */
int ic_image_fail(struct ic_image *img, int ret, const char *fmt, ...) IC_PRINTF(3, 4);

/* Compression in worker threads (driver ops compress and
 * pwrite_precompressed).  ic_image_can_precompress: the driver has both.
 * ic_image_compress_cluster: thread-safe (may run while another thread
 * uses @img), no error object; the compressed length, -ENOSPC when the
 * cluster does not compress (write it with ic_image_pwrite), or -errno.
 * ic_image_pwrite_precompressed: stores its output for the cluster at
 * @off, from the image's single writer thread. */
bool ic_image_can_precompress(const struct ic_image *img);
int64_t ic_image_compress_cluster(const struct ic_image *img, void *dst, size_t dst_len,
                                  const void *src, size_t len) IC_WARN_UNUSED;
int ic_image_pwrite_precompressed(struct ic_image *img, const void *cbuf, size_t clen,
                                  uint64_t off, ic_error **errp) IC_WARN_UNUSED;

/* ---- what callers outside src/image may know of a driver -------------- */
const char *ic_driver_name(const struct ic_driver *drv);
/* Copy offloading (convert -C): copies the run of @src's guest view that
 * starts at @off (at most @len bytes, *done of them) into the same guest
 * range of @dst in the kernel (ic_io_copy_range: a reflink where the file
 * system shares extents), without reading it.  -ENOTSUP, with no error
 * set, when that cannot be done: @dst is not headerless (raw), the run is
 * not stored data at a host offset of a plain file (zero, compressed, a
 * test backend), or the kernel refuses; the caller copies the run through
 * memory.  Other errors set @errp.  Only descriptors are used: callable
 * from a reader thread while another thread writes other ranges of @dst. */
int ic_image_copy_range(ic_image *dst, ic_image *src, uint64_t off, uint64_t len, uint64_t *done,
                        ic_error **errp) IC_WARN_UNUSED;
/* The driver's headerless capability (driver.h). */
bool ic_driver_headerless(const struct ic_driver *drv);
/* The format can write compressed clusters. */
bool ic_driver_can_compress(const struct ic_driver *drv);
bool ic_image_headerless(const struct ic_image *img);
/* The format can write guest data / change the virtual size. */
bool ic_image_can_write(const struct ic_image *img);
bool ic_image_can_resize(const struct ic_image *img);
bool ic_image_can_compress(const struct ic_image *img);

/* ---- wrappers of the driver ops callers outside src/image need ---------
 * Each tests its op once and applies the default driver.h documents. */

/* Rewrites the recorded backing name and format (NULL name: none).
 * -ENOTSUP when the format records no backing file. */
int ic_image_change_backing(struct ic_image *img, const char *name, const char *fmt,
                            ic_error **errp) IC_WARN_UNUSED;
/* Empties the layer: every range reads through to the backing file. */
int ic_image_make_empty(struct ic_image *img, ic_error **errp) IC_WARN_UNUSED;
/* Block status of THIS layer only (the driver op's contract, driver.h):
 * data path, -errno only. */
int ic_image_layer_block_status(struct ic_image *img, uint64_t off, uint64_t len,
                                uint64_t *pnum, unsigned *flags, uint64_t *map, ic_io **file)
    IC_WARN_UNUSED;
/* Writes a batch of non-overlapping guest ranges (all IC_IO_REQ_WRITE),
 * several at once where the driver can (pwrite_batch). */
int ic_image_pwrite_batch(struct ic_image *img, struct ic_io_req *reqs, size_t n,
                          ic_error **errp) IC_WARN_UNUSED;

/* Opens one layer (no backing chain) on @file (ownership taken). */
int ic_image_open_layer(struct ic_image **out, ic_io *file, const char *filename,
                        const struct ic_driver *drv, unsigned flags,
                        ic_open_file_fn open_file, void *payload, ic_error **errp);
/* Closes one layer and its backing chain. */
void ic_image_free_chain(struct ic_image *img);

#define IC_CHAIN_DEFAULT_MAX_DEPTH 256

/* One walk down a backing chain (image-walk.c): loops by real path and a
 * depth limit, shared by every walker. */
struct ic_walk {
    unsigned max_depth;  /* backing links allowed below the top */
    size_t n, cap;
    char **seen;         /* real paths of the layers visited, top first */
};
enum { IC_WALK_OK = 0, IC_WALK_LOOP = 1, IC_WALK_TOO_DEEP = 2 };
/* @max_depth 0 = IC_CHAIN_DEFAULT_MAX_DEPTH. */
void ic_walk_init(struct ic_walk *w, unsigned max_depth);
/* Visits the next layer (the top first): IC_WALK_OK, IC_WALK_LOOP when its
 * real path was visited already, IC_WALK_TOO_DEEP when it would be layer
 * max_depth + 1, or -ENOMEM. */
int ic_walk_visit(struct ic_walk *w, const char *path);
void ic_walk_fini(struct ic_walk *w);
/* The path of @layer's backing file (resolved against @layer's name), or
 * NULL when it has none or its format ends the chain (*oom set when the
 * NULL is an allocation failure). */
char *ic_walk_next(const struct ic_image *layer, bool *oom);

/* Opens the backing chain below @img (which is open), following recorded
 * names and formats, at most @max_depth layers below it (0: the default). */
int ic_chain_open_backing(struct ic_image *img, unsigned max_depth, ic_error **errp);

/* Frees the strings inside one snapshot info. */
void ic_snapshot_info_clear(ic_snapshot_info *sn);
/* Appends a format-specific field to @info. */
int ic_info_add_bool(ic_image_info *info, const char *key, bool v);
int ic_info_add_int(ic_image_info *info, const char *key, int64_t v);
int ic_info_add_str(ic_image_info *info, const char *key, const char *v);
/* Adds the IC_INFO_BITMAPS field @key and takes @bm (@n entries, malloc'd,
 * names malloc'd) as info->bitmaps, also on failure. */
int ic_info_add_bitmaps(ic_image_info *info, const char *key, ic_bitmap_info *bm, size_t n);

/* Opens a file with the image's opener (open_file, or the backend the
 * default cache mode picks). */
int ic_image_open_file(ic_open_file_fn fn, void *payload, ic_io **out, const char *path,
                       unsigned io_flags, ic_error **errp);
/* A known ic_cache_mode value. */
bool ic_cache_mode_valid(ic_cache_mode mode);
/* The one place a cache mode becomes an I/O backend and IC_IO_* flags
 * (image-cache.c design note 1): @fn when given (with IC_IO_DIRECT and
 * IC_IO_DSYNC as the mode asks), else the libaio backend for O_DIRECT and
 * the POSIX backend otherwise. */
int ic_image_open_file_cache(ic_open_file_fn fn, void *payload, ic_io **out, const char *path,
                             unsigned io_flags, ic_cache_mode cache, ic_error **errp);
/* Sets a freshly opened layer's cache mode (an unsafe layer's file defers
 * its flushes, see ic_io_defer_flush). */
void ic_image_set_cache(struct ic_image *img, ic_cache_mode cache);
/* For a writable layer in the unsafe mode whose file the caller created in
 * this operation: drops all its flushes (image-cache.c note 3); nothing
 * in any other mode. */
void ic_image_drop_flushes(struct ic_image *img);
/* The final flush of an operation that wrote @img: ic_image_flush(), except
 * in the unsafe cache mode, where the metadata is written (with its
 * ordering flushes) and the trailing flush is left out. */
int ic_image_flush_final(ic_image *img, ic_error **errp) IC_WARN_UNUSED;
/* Reopens @parent->backing read-write with a write lock, keeping the chain
 * below it, in cache mode @cache (bulk output: O_DIRECT where it can with
 * the default mode). */
int ic_image_reopen_backing_rw(struct ic_image *parent, ic_cache_mode cache, ic_error **errp);

#endif
