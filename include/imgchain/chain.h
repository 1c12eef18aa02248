/*
 * imgchain/chain.h - whole-chain operations: convert (copy or flatten a
 * chain into a new image) and read-only snapshot views.
 *
 * Chain editing (commit, rebase, stream) adds its entry points here too.
 * All functions return 0 on success and -errno on failure with *errp set
 * (see imgchain/error.h).
 */
#ifndef IMGCHAIN_CHAIN_H
#define IMGCHAIN_CHAIN_H

#include "common.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IC_CONVERT_OPTIONS_VERSION 4
typedef struct ic_convert_options {
    unsigned version;          /* IC_CONVERT_OPTIONS_VERSION; 1 has no cache fields,
                                * 2 no rate_limit, 3 no copy_range */
    const char *src_format;    /* format of the source's top image; NULL = probe */
    const char *out_format;    /* "raw" (default, as qemu-img), "qcow2", "qed" */
    const char *options;       /* -o string for the new image (no backing_file) */
    bool compress;             /* -c: write each cluster compressed (qcow2) */
    bool direct;               /* version 1 only: -t none (version 2 reads cache) */
    bool force_share;          /* -U: open the source with force-share locks */
    const char *snapshot_id;   /* -l snapshot.id=: export an internal snapshot */
    const char *snapshot_name; /* -l snapshot.name= (either or both) */
    const char *snapshot;      /* -l ID_OR_NAME: tried as an id, then as a name */
    ic_progress_fn progress;   /* NULL: no progress reports */
    void *payload;             /* passed to progress */
    ic_cache_mode cache;       /* -t: the target's; the default writes it O_DIRECT
                                * where it can (the page cache with compress) */
    ic_cache_mode src_cache;   /* -T: the source chain's */
    uint64_t rate_limit;       /* -r: guest bytes per second; 0 = unlimited */
    bool no_create;            /* -n: write into the existing @dst (of out_format, at
                                * least as large as the source) instead of creating it;
                                * `options` must then be NULL */
    const char *backing;       /* -B: the target is an overlay of this file (recorded as
                                * given), holding only what the source's top image
                                * allocates above its own backing file (qemu-img's rule) */
    const char *backing_format; /* -F: the format of `backing` (required with it) */
    bool sparse_size_set;      /* -S given: */
    uint64_t sparse_size;      /* zero runs of at least this many bytes (taken as aligned
                                * windows of the next power of two, at least 4 KiB and
                                * the target's cluster) are not written; 0 writes every
                                * byte (a fully allocated target) */
    bool salvage;              /* --salvage: a source sector that cannot be read reads
                                * as zeroes, and is reported to salvage_warn */
    void (*salvage_warn)(uint64_t offset, int errnum, void *payload); /* may be called
                                * from several threads at once; NULL: not reported */
    void *salvage_payload;
    bool copy_range;           /* -C (copy offloading, as qemu-img's): into a raw target,
                                * data runs stored in a plain file are copied in the
                                * kernel (copy_file_range: a reflink where the file system
                                * shares extents) without reading them, so zeroes inside
                                * them are written too; other runs, or where the kernel
                                * refuses, are copied as without -C.  Not with compress,
                                * sparse_size_set or salvage */
} ic_convert_options;
#define IC_CONVERT_OPTIONS_INIT \
    { IC_CONVERT_OPTIONS_VERSION, NULL, NULL, NULL, false, false, false, NULL, NULL, NULL, \
      NULL, NULL, IC_CACHE_DEFAULT, IC_CACHE_DEFAULT, 0, false, NULL, \
      NULL, false, 0, false, NULL, NULL, false }

/**
 * Copies the guest view of @p src (the whole backing chain, flattened) into
 * a new image @p dst of opts->out_format.  Ranges that are unallocated in
 * every layer, or read as zeroes, are not written: the new image reads them
 * as zeroes already.  Data blocks that turn out to be all zero are skipped
 * too (as qemu-img convert's default -S 4k).  The target is flushed before
 * this returns, except with opts->cache IC_CACHE_UNSAFE (qemu-img's default
 * for convert), which skips that final flush only.  A
 * target that did not exist before is removed when the conversion fails.
 * @return 0; -ENOENT source (or a backing file) missing; -EINVAL bad
 *   options, or @p dst is the source or one of its backing files;
 *   -ENOTSUP compression for a format without it, unknown snapshot
 *   support; -EBUSY an image is locked by another process; -EIO, -ENOSPC.
 */
IC_EXTERN int ic_image_convert(const char *src, const char *dst,
                               const ic_convert_options *opts, ic_error **errp);

/**
 * Copies every guest byte of @p src into @p dst (opened writable, at least
 * as large, and reading as zeroes where it was not written), skipping
 * unallocated and zero ranges.  The engine behind ic_image_convert(), for
 * callers that open the images themselves.  Flushes @p dst at the end
 * unless it was opened with IC_CACHE_UNSAFE.
 */
IC_EXTERN int ic_image_copy(ic_image *dst, ic_image *src, const ic_convert_options *opts,
                            ic_error **errp);

/**
 * Switches the open, read-only @p img to a read-only view of its internal
 * snapshot with @p id and/or @p name (NULL = any).  With @p either, the one
 * string given (@p id or @p name) is tried as an id first, then as a name
 * (qemu-img's -l ID_OR_NAME).  Reads and block status then see the
 * snapshot; nothing is written.
 * @return 0; -ENOENT no such snapshot; -ENOTSUP the format has no internal
 *   snapshots; -EINVAL the image is writable.
 */
IC_EXTERN int ic_image_snapshot_load_tmp(ic_image *img, const char *id, const char *name,
                                         bool either, ic_error **errp);

#ifdef __cplusplus
}
#endif
#endif
