/*
 * driver.h - the format-driver contract (QEMU's struct BlockDriver).
 *
 * A driver is one const table filled with designated initializers and
 * registered in image.c's driver list.  Callers outside src/image never
 * call an op directly: the public wrappers in image.c test each optional
 * op once and apply the default documented on its field (usually
 * -ENOTSUP), so an op left NULL behaves as documented.
 *
 * Conventions for every op:
 *  - returns 0 or -errno (int64_t ops: >= 0 value or -errno);
 *  - control-path ops (open, create, check, snapshot_*, change_backing,
 *    get_info, truncate, make_empty) take ic_error **errp last and set it
 *    exactly when they fail;
 *  - data-path ops (pread, pwrite, ...) return -errno only; when they detect
 *    corruption they call ic_image_corrupt() (image.h), which records the
 *    message the public wrapper reports;
 *  - offsets and lengths are in bytes; the generic layer guarantees that
 *    [off, off+len) lies within the virtual size and that len > 0;
 *  - a driver reads its own file only through ic_io_* (src/io/io.h) on
 *    img->file, and announces metadata writes with ic_io_event().
 */
#ifndef IC_IMAGE_DRIVER_H
#define IC_IMAGE_DRIVER_H

#include "imgchain/bitmap.h"
#include "imgchain/image.h"
#include "util/opts.h"

struct ic_image;

/* What create() receives after the generic layer parsed the request. */
struct ic_create_params {
    const char *filename;        /* path of the new image (for data_file etc.) */
    uint64_t size;               /* virtual size (validated > 0 unless backing) */
    const char *backing_file;    /* to record, or NULL */
    const char *backing_format;  /* to record, or NULL */
    ic_opts *opts;               /* -o options: take yours, leave the rest */
    ic_open_file_fn open_file;   /* to create side files (data_file) */
    void *payload;
};

struct ic_driver {
    const char *name;           /* "qcow2", "qed", "raw" */
    size_t instance_size;       /* private state, zeroed, at img->opaque */

    /* Capability: the file has no header, it is the guest disk itself
     * (raw).  Such a file records no backing file (it ends a chain), its
     * content may carry any format's magic (probing it as a backing file
     * is unsafe), and its block status reports zeroes only from holes in
     * the host file, which qemu treats as data unless asked for zeroes.
     * Callers ask ic_driver_headerless() / ic_image_headerless(). */
    bool headerless;

    /* Score 0..100 for @buf (the first bytes of the file, len >= 512 unless
     * the file is shorter).  NULL: never probed. */
    int (*probe)(const uint8_t *buf, size_t len);

    /* Parses the header of img->file and fills img->size, img->cluster_size,
     * img->backing_name, img->backing_fmt (malloc'd; NULL when absent).
     * Flags: IC_OPEN_* (RDWR, CHECK...).  Must refuse unknown incompatible
     * features, validate every size and offset it will use, and, when
     * writable, prepare the image (repair a dirty image, clear unknown
     * autoclear bits).  The backing chain is opened afterwards by the
     * generic layer.  Required. */
    int (*open)(struct ic_image *img, unsigned flags, ic_error **errp);

    /* Writes back dirty state (if writable) and frees img->opaque contents
     * (not img->opaque itself).  Must not fail: report flush errors through
     * flush() before.  Required. */
    void (*close)(struct ic_image *img);

    /* Formats a new image on @file (already created empty and locked).
     * NULL: the format cannot be created (-ENOTSUP). */
    int (*create)(ic_io *file, const struct ic_create_params *p, ic_error **errp);

    /* Reads guest data.  Ranges this layer does not allocate are read with
     * ic_image_backing_pread() (zeroes without a backing file or past its
     * end).  Required. */
    int (*pread)(struct ic_image *img, void *buf, size_t len, uint64_t off);

    /* Writes guest data: allocates, copies on write partial clusters from
     * the backing chain, orders metadata writes for crash safety.
     * NULL: read-only format (-ENOTSUP). */
    int (*pwrite)(struct ic_image *img, const void *buf, size_t len, uint64_t off);

    /* Makes the range read as zeroes.  flags: IC_ZERO_MAY_UNMAP.
     * NULL: the generic layer writes zero buffers through pwrite. */
    int (*pwrite_zeroes)(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags);

    /* Deallocates whole clusters within the range (see ic_image_discard).
     * NULL: discard is a successful no-op (it is advisory). */
    int (*discard)(struct ic_image *img, uint64_t off, uint64_t len);

    /* Writes one cluster compressed (off cluster aligned; len = cluster
     * size, or less for the last cluster of the disk).  NULL: -ENOTSUP. */
    int (*pwrite_compressed)(struct ic_image *img, const void *buf, size_t len, uint64_t off);

    /* Compression split in two, so callers can compress in worker threads
     * (optional; both or neither; a driver with them keeps
     * pwrite_compressed).  compress: THREAD-SAFE, touches no image state,
     * a pure function of parameters fixed at open (cluster size,
     * compression type): compresses one cluster's data @src (@len <=
     * cluster size; a shorter last cluster is padded with zeroes) into
     * @dst (@dst_len >= cluster size) and returns the compressed length,
     * -ENOSPC when it does not compress (the caller then writes @src
     * uncompressed with pwrite), or another -errno.
     * pwrite_precompressed: single-threaded like every other op; stores
     * @clen bytes from compress() as the cluster at @off (cluster
     * aligned): allocation, payload write, L2 update. */
    int64_t (*compress)(const struct ic_image *img, void *dst, size_t dst_len, const void *src,
                        size_t len);
    int (*pwrite_precompressed)(struct ic_image *img, const void *cbuf, size_t clen,
                                uint64_t off);

    /* Writes @n guest ranges (every reqs[i].op is IC_IO_REQ_WRITE; the
     * ranges lie within the virtual size and do not overlap), possibly
     * several at once; sets every reqs[i].ret and returns 0 or the first
     * failed request's -errno.  NULL: the generic layer writes them one
     * after the other through pwrite. */
    int (*pwrite_batch)(struct ic_image *img, struct ic_io_req *reqs, size_t n);

    /* Writes cached metadata in dependency order, then flushes img->file
     * (and a data file).  NULL: ic_io_flush(img->file). */
    int (*flush)(struct ic_image *img);

    /* The flush of a clean close (ic_image_close, every writable layer):
     * flush, then write what is kept up to date only until a clean close
     * (qcow2's persistent dirty bitmaps).  NULL: flush. */
    int (*finish)(struct ic_image *img);

    /* Status of [off, off+len) in THIS layer only.  Sets *pnum (0 < *pnum
     * <= len) to the length of the run that shares the status, *flags to
     * IC_BS_* bits and, with IC_BS_OFFSET_VALID, *map to the host offset in
     * *file (a borrowed ic_io: img->file or a data file).  A run the layer
     * does not decide has no IC_BS_ALLOCATED: the caller looks further down
     * the chain.  Required. */
    int (*block_status)(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                        unsigned *flags, uint64_t *map, ic_io **file);

    /* Grows (or shrinks, where safe) the virtual size.  NULL: -ENOTSUP. */
    int (*truncate)(struct ic_image *img, uint64_t size, ic_error **errp);

    /* qemu-img resize: sets the virtual size to @size (smaller drops the
     * tail) with @prealloc for the new area; refuses what the format
     * cannot do with qemu's message before writing anything.  With
     * @dry_run only the refusals run (the image may be read-only).  NULL:
     * truncate() for a growing resize without preallocation, else
     * -ENOTSUP. */
    int (*resize)(struct ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                  ic_error **errp);

    /* qemu-img amend: changes what @opts asks (take the keys you know;
     * the caller refuses the rest), refusing with qemu's messages before
     * anything is written.  With @dry_run only the refusals run (the image
     * may be read-only).  NULL: the format cannot be amended. */
    int (*amend)(struct ic_image *img, ic_opts *opts, bool dry_run, ic_error **errp);

    /* qemu-img measure for a new image of this format made with @opts
     * (take what you understand; the caller refuses the rest): of the guest
     * view of @src, or of an empty image of @size bytes when @src is NULL.
     * NULL: the format cannot be measured. */
    int (*measure)(ic_opts *opts, struct ic_image *src, uint64_t size, ic_measure_info *out,
                   ic_error **errp);

    /* Checks the layer's metadata; with IC_FIX_* repairs.  Returns 0 when
     * the scan completed (what it found is in @res).  NULL: -ENOTSUP
     * (qemu-img check's exit code 63). */
    int (*check)(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
                 ic_check_result *res, ic_error **errp);

    /* Persistent dirty bitmaps (imgchain/bitmap.h).  For IC_BITMAP_MERGE
     * the source's dirty extents come as @ext (@next [start, length]
     * pairs).  NULL: -ENOTSUP. */
    int (*bitmap_change)(struct ic_image *img, ic_bitmap_action action, const char *name,
                         uint64_t granularity, const uint64_t (*ext)[2], size_t next,
                         ic_error **errp);
    int (*bitmap_dump)(struct ic_image *img, const char *name, ic_bitmap_extent_fn fn,
                       void *payload, ic_error **errp);

    /* Internal snapshots.  NULL: -ENOTSUP. */
    int (*snapshot_create)(struct ic_image *img, const ic_snapshot_info *sn, ic_error **errp);
    int (*snapshot_goto)(struct ic_image *img, const char *id_or_name, ic_error **errp);
    int (*snapshot_delete)(struct ic_image *img, const char *id, const char *name,
                           ic_error **errp);
    /* Returns the number of snapshots and a malloc'd array in *out (entries
     * freed with ic_snapshot_info_clear). NULL: 0 snapshots. */
    int (*snapshot_list)(struct ic_image *img, ic_snapshot_info **out, ic_error **errp);
    /* Read-only view of a snapshot (convert -l / map -l). NULL: -ENOTSUP. */
    int (*snapshot_load_tmp)(struct ic_image *img, const char *id, const char *name,
                             ic_error **errp);

    /* Rewrites the recorded backing name and format (NULL name: none).
     * NULL: -ENOTSUP. */
    int (*change_backing)(struct ic_image *img, const char *name, const char *fmt,
                          ic_error **errp);

    /* Adds format-specific data to @info (cluster_size, dirty, specific
     * fields, snapshots).  The generic fields are already filled.  NULL: none. */
    int (*get_info)(struct ic_image *img, ic_image_info *info, ic_error **errp);

    /* Empties the layer (commit without -d): afterwards every range reads
     * through to the backing file.  NULL: the generic layer discards the
     * whole virtual disk (ic_image_discard). */
    int (*make_empty)(struct ic_image *img, ic_error **errp);
};

/* The registered drivers (image.c). */
const struct ic_driver *ic_driver_find(const char *name);
/* Best probe match for the first bytes of a file; never NULL (raw). */
const struct ic_driver *ic_driver_probe(const uint8_t *buf, size_t len);

/* What qemu's probing reads: the first 512 bytes, zero-padded. */
#define IC_PROBE_SECTOR 512

/* The format qemu 7.2 would probe for the first @len bytes @buf of the file
 * named @filename (NULL: the name plays no part): *drv is imgchain's driver
 * for it, or NULL when it is a format imgchain does not implement (its name
 * is returned, "vmdk"...).  Never NULL: raw when nothing matches. */
const char *ic_probe_format(const uint8_t *buf, size_t len, const char *filename,
                            const struct ic_driver **drv);
/* Probes the format of @file (named by ic_io_name) as qemu does, and refuses
 * a format imgchain does not implement ("FILE: vmdk images are not
 * supported"), so a foreign container is never read or written as raw. */
int ic_image_probe_file(ic_io *file, const struct ic_driver **drv, ic_error **errp);
/* The best foreign probe (foreign.c) for 512 bytes @buf, with its score in
 * *score (0 and NULL when none matches). */
const char *ic_foreign_probe(const uint8_t *buf, size_t len, const char *filename, int *score);
/* True when @name is one of those formats ("vmdk"): a format named by the
 * user or recorded as a backing format is then refused as "not supported"
 * rather than as an unknown name. */
bool ic_foreign_is_format(const char *name);

/* Helpers the drivers' resize and create ops share (image-resize.c). */

/* Makes [off, off+len) of @io hold zeroes with its space allocated:
 * IC_PREALLOC_FALLOC asks the file system (fallocate), falling back to
 * writing zeroes when it cannot; IC_PREALLOC_FULL writes zeroes.  Other
 * modes do nothing.  Extends the file when the range ends past it. */
int ic_resize_fill(ic_io *io, uint64_t off, uint64_t len, ic_prealloc mode) IC_WARN_UNUSED;

/* True when @img's backing image holds data past @old_size that a growing
 * resize would let show through (qemu: backing length > old size). */
bool ic_resize_backing_shows(const struct ic_image *img, uint64_t old_size);

extern const struct ic_driver ic_driver_raw;
extern const struct ic_driver ic_driver_qcow2;
extern const struct ic_driver ic_driver_qed;

#endif
