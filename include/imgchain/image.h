/*
 * imgchain/image.h - images and backing chains: open, read, write, create,
 * inspect.
 *
 * An ic_image is one layer (qcow2, qed or raw) together with its opened
 * backing chain: reads of unallocated ranges fall through to the backing
 * image, or read as zeroes past its end.  ic_image_open() opens the whole
 * chain (see imgchain/chain.h for chain editing).
 *
 * All functions return 0 (or a non-negative quantity) on success and -errno
 * on failure with *errp set (see imgchain/error.h).
 */
#ifndef IMGCHAIN_IMAGE_H
#define IMGCHAIN_IMAGE_H

#include "common.h"
#include "error.h"
#include "sys/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ic_image ic_image;

/**
 * Progress of a long operation (convert, commit, rebase): @p done of
 * @p total guest bytes have been handled (copied, or skipped as
 * unallocated or zero).  Called with done == 0 before the work starts and
 * with done == total at the end.
 */
typedef void (*ic_progress_fn)(uint64_t done, uint64_t total, void *payload);

/* ---- opening ---------------------------------------------------------- */

#define IC_OPEN_RDWR        (1u << 0) /* writable top image (backing files stay read-only) */
#define IC_OPEN_NO_BACKING  (1u << 1) /* do not open the backing chain */
/* bit 2 is reserved: O_DIRECT is chosen by the cache mode (ic_cache_mode) */
#define IC_OPEN_FORCE_SHARE (1u << 3) /* -U: share every permission; read-only only */
#define IC_OPEN_CHECK       (1u << 4) /* for check/repair: tolerate corrupt and dirty images */
#define IC_OPEN_NO_LOCK     (1u << 5) /* take no qemu-compatible locks */
#define IC_OPEN_STREAM      (1u << 6) /* bulk output into the top image: its writes go to the
                                       * disk at once and leave the page cache (IC_IO_STREAM);
                                       * with IC_CACHE_DEFAULT, O_DIRECT where the file
                                       * system has it */

/**
 * Cache modes, named as qemu-img's -t/-T values.  Every mode but unsafe is
 * durable: what an operation wrote is flushed to the disk before it
 * returns (and ic_image_close() flushes).  The flushes that order metadata
 * for crash safety (new structures durable before the pointer to them is
 * written) run in every mode, unsafe included.
 */
typedef enum ic_cache_mode {
    IC_CACHE_DEFAULT = 0,  /* the operation's choice: the page cache, or for bulk
                            * output (IC_OPEN_STREAM) O_DIRECT where the file system
                            * has it and the page cache where it has not; durable */
    IC_CACHE_WRITEBACK,    /* "writeback": the page cache; durable at the end */
    IC_CACHE_WRITETHROUGH, /* "writethrough": the page cache, every write durable
                            * when it completes (O_DSYNC) */
    IC_CACHE_NONE,         /* "none": O_DIRECT (refused where the file system has
                            * none); durable at the end */
    IC_CACHE_DIRECTSYNC,   /* "directsync": O_DIRECT and O_DSYNC */
    IC_CACHE_UNSAFE        /* "unsafe": the page cache; the final flush of each
                            * written image is skipped, ordering flushes stay
                            * (a target convert creates drops them all) */
} ic_cache_mode;

/** Parses a qemu-img cache mode name ("none", "directsync", "writeback",
 * "writethrough", "unsafe") into @p out.  @return 0, or -EINVAL. */
IC_EXTERN int ic_cache_mode_parse(const char *name, ic_cache_mode *out);
/** The qemu-img name of @p mode ("default" for IC_CACHE_DEFAULT). */
IC_EXTERN const char *ic_cache_mode_name(ic_cache_mode mode);

/** Opens the file at @p path for the library; used for every image of a
 * chain.  @p io_flags are IC_IO_* (imgchain/sys/io.h). */
typedef int (*ic_open_file_fn)(ic_io **out, const char *path, unsigned io_flags,
                               void *payload, ic_error **errp);

#define IC_OPEN_OPTIONS_VERSION 2
typedef struct ic_open_options {
    unsigned version;          /* IC_OPEN_OPTIONS_VERSION; 1 has no cache fields */
    const char *format;        /* format of the top image; NULL = probe */
    unsigned flags;            /* IC_OPEN_* */
    unsigned max_depth;        /* backing chain limit; 0 = 256 */
    ic_open_file_fn open_file; /* NULL = the library picks the backend (cache) */
    void *payload;             /* passed to open_file */
    ic_cache_mode cache;       /* the top image's cache mode (qemu-img -t) */
    ic_cache_mode backing_cache; /* the backing chain's (-T); DEFAULT = as cache */
} ic_open_options;
#define IC_OPEN_OPTIONS_INIT \
    { IC_OPEN_OPTIONS_VERSION, NULL, 0, 0, NULL, NULL, IC_CACHE_DEFAULT, IC_CACHE_DEFAULT }

/**
 * Opens an image and its backing chain.
 * Backing names are resolved relative to the directory of the image that
 * records them; the recorded backing format is used, and only an image
 * whose overlay records no format is probed (never one recorded as raw).
 * Without opts->open_file, the cache mode picks the I/O backend of every
 * file: O_DIRECT modes the libaio backend, the others the POSIX backend
 * (see ic_cache_mode).  Backing files are opened read-only.
 * @param opts NULL for defaults (read-only, probe, depth 256)
 * @return 0; -ENOENT missing file (or backing file); -EINVAL bad options;
 *   -ELOOP backing loop or chain deeper than max_depth; -EIO corrupt image;
 *   -ENOTSUP unsupported feature; -EBUSY locked by another process.
 */
IC_EXTERN int ic_image_open(ic_image **out, const char *path,
                            const ic_open_options *opts, ic_error **errp);

/**
 * Opens an image on an I/O backend the caller made (tests, embedders).
 * Takes ownership of @p file whatever the result.  Backing files are opened
 * through opts->open_file (or the POSIX backend).
 */
IC_EXTERN int ic_image_open_io(ic_image **out, ic_io *file,
                               const ic_open_options *opts, ic_error **errp);

/** Flushes and closes the image and its chain.  Returns the first flush
 * error (-errno), the handle is freed regardless.  NULL is a no-op. */
IC_EXTERN int ic_image_close(ic_image *img);

/* ---- properties (borrowed, valid while the image is open) -------------- */
IC_EXTERN uint64_t ic_image_size(const ic_image *img);
IC_EXTERN const char *ic_image_filename(const ic_image *img);
IC_EXTERN const char *ic_image_format(const ic_image *img);
/** Cluster size of the format (0 for raw). */
IC_EXTERN uint32_t ic_image_cluster_size(const ic_image *img);
/** The opened backing image, or NULL. */
IC_EXTERN ic_image *ic_image_backing(const ic_image *img);
/** Backing name as recorded in the header, or NULL. */
IC_EXTERN const char *ic_image_backing_name(const ic_image *img);
/** Backing format as recorded in the header, or NULL. */
IC_EXTERN const char *ic_image_backing_format(const ic_image *img);
/** The backing name resolved against the image's directory, or NULL. */
IC_EXTERN const char *ic_image_backing_path(const ic_image *img);
/** The file-level I/O handle of this layer (borrowed). */
IC_EXTERN ic_io *ic_image_file(const ic_image *img);

/* ---- guest I/O (through the chain) ------------------------------------ */

/** Reads guest data.  [off, off+len) must lie within the virtual size. */
IC_EXTERN int ic_image_pread(ic_image *img, void *buf, size_t len, uint64_t off,
                             ic_error **errp);
/** Writes guest data, allocating and copying-on-write as needed. */
IC_EXTERN int ic_image_pwrite(ic_image *img, const void *buf, size_t len, uint64_t off,
                              ic_error **errp);

#define IC_ZERO_MAY_UNMAP (1u << 0) /* deallocate where the format can */
/** Makes [off, off+len) read as zeroes (zero clusters where possible). */
IC_EXTERN int ic_image_pwrite_zeroes(ic_image *img, uint64_t off, uint64_t len,
                                     unsigned flags, ic_error **errp);
/** Discards [off, off+len): afterwards it reads from the backing file, or
 * as zeroes (v3 qcow2 and QED use zero clusters when a backing file would
 * otherwise show through).  Unaligned edges are left as they are. */
IC_EXTERN int ic_image_discard(ic_image *img, uint64_t off, uint64_t len, ic_error **errp);
/** Writes one whole cluster compressed (@p off and @p len cluster aligned,
 * len = cluster size or the tail of the disk).  -ENOTSUP for formats
 * without compression. */
IC_EXTERN int ic_image_pwrite_compressed(ic_image *img, const void *buf, size_t len,
                                         uint64_t off, ic_error **errp);
IC_EXTERN int ic_image_flush(ic_image *img, ic_error **errp);
/** Changes the virtual size (grow; shrinking is refused with -ENOTSUP
 * where data would be lost). */
IC_EXTERN int ic_image_truncate(ic_image *img, uint64_t size, ic_error **errp);

/** How the new area of a growing resize is allocated (qemu's
 * PreallocMode): off, L2 tables and data clusters reserved (metadata),
 * reserved and fallocated in the file (falloc), or written with zeroes
 * (full). */
typedef enum ic_prealloc {
    IC_PREALLOC_OFF,
    IC_PREALLOC_METADATA,
    IC_PREALLOC_FALLOC,
    IC_PREALLOC_FULL,
} ic_prealloc;

/** Name of a mode as qemu-img spells it ("off", "metadata", ...). */
IC_EXTERN const char *ic_prealloc_name(ic_prealloc mode);
/** Parses "off", "metadata", "falloc" or "full"; -EINVAL otherwise. */
IC_EXTERN int ic_prealloc_parse(const char *s, ic_prealloc *out);

/**
 * Resizes the top image to @p size, as qemu-img resize does (shrinking is
 * the caller's decision: this drops everything past @p size).  When the
 * backing file holds data past the old size, the new area is made to read
 * as zeroes (qcow2 v3), or the resize is refused as qemu refuses it (qcow2
 * v2, QED).  Metadata is ordered so that a crash leaves the old or the new
 * size and at worst leaked clusters.  Refusals (qemu-img's messages) write
 * nothing.
 * @return 0; -EINVAL a size the format cannot hold, or preallocation while
 *   shrinking; -ENOTSUP a mode or shrink the format does not support, a
 *   qcow2 v2 image with snapshots; -EROFS read-only; -EIO, -ENOSPC.
 */
IC_EXTERN int ic_image_resize(ic_image *img, uint64_t size, ic_prealloc prealloc,
                              ic_error **errp);
/** Runs every refusal of ic_image_resize() and nothing else: @p img may be
 * open read-only, so a caller can decide before opening for writing (a
 * read-write open may itself update the header).  Same errors. */
IC_EXTERN int ic_image_resize_check(ic_image *img, uint64_t size, ic_prealloc prealloc,
                                    ic_error **errp);

/* ---- amend -------------------------------------------------------------- */

/**
 * Changes the options of an existing image as `qemu-img amend -o` does
 * (qcow2: compat, lazy_refcounts, refcount_bits, data_file,
 * data_file_raw, size), refusing with qemu's messages before anything is
 * written.  @p img must be open read-write.
 * @return 0; -EINVAL bad or creation-only options; -ENOTSUP a format or a
 *   change that cannot be made; -errno on I/O errors.
 */
IC_EXTERN int ic_image_amend(ic_image *img, const char *options, ic_error **errp);
/** Runs every refusal of ic_image_amend() and nothing else (@p img may be
 * read-only), so a caller can refuse before opening for writing. */
IC_EXTERN int ic_image_amend_check(ic_image *img, const char *options, ic_error **errp);

/* ---- measure ------------------------------------------------------------ */

/** What `qemu-img measure` reports (bytes). */
typedef struct ic_measure_info {
    uint64_t required;         /* file size needed for the data to convert */
    uint64_t fully_allocated;  /* file size with every cluster allocated */
    bool has_bitmaps;          /* both source and target keep persistent bitmaps */
    uint64_t bitmaps;          /* room the source's persistent bitmaps would take */
} ic_measure_info;

/**
 * Measures a new image of @p format created with the -o string @p options
 * (qemu-img measure): holding the guest view of @p src (its whole chain, or
 * the internal snapshot loaded on it), or, when @p src is NULL, empty with
 * @p size bytes.  Figures are qemu's, byte for byte.
 * @return 0; -EINVAL unknown format or bad options; -ENOTSUP a format that
 *   cannot be measured (qemu-img's message), encryption; -EFBIG too large.
 */
IC_EXTERN int ic_image_measure(const char *format, const char *options, ic_image *src,
                               uint64_t size, ic_measure_info *out, ic_error **errp);

/* ---- block status ----------------------------------------------------- */

#define IC_BS_DATA         (1u << 0) /* reads stored data (not known to be zero) */
#define IC_BS_ZERO         (1u << 1) /* reads as zeroes */
#define IC_BS_ALLOCATED    (1u << 2) /* the layer at `depth` decides this range */
#define IC_BS_OFFSET_VALID (1u << 3) /* host_offset is valid */
#define IC_BS_COMPRESSED   (1u << 4) /* stored compressed */

typedef struct ic_block_status {
    uint64_t offset;       /* guest offset of the run */
    uint64_t length;       /* length of the run (> 0) */
    unsigned depth;        /* 0 = top; the layer deciding the range, or the
                            * bottom layer's index + 1... see below */
    unsigned flags;        /* IC_BS_* */
    uint64_t host_offset;  /* byte offset in `file` when OFFSET_VALID */
    const char *filename;  /* file holding the data (borrowed), or NULL */
} ic_block_status;

/**
 * Status of the run starting at @p off (at most @p len bytes) through the
 * chain from @p img down to, but not including, @p base (NULL = the whole
 * chain).  If no layer above @p base allocates the run, flags has no
 * IC_BS_ALLOCATED and depth is the number of layers searched - 1 (as
 * qemu-img map reports the bottom layer); flags then has IC_BS_ZERO when
 * the range reads as zeroes (no base, or past its end).
 */
IC_EXTERN int ic_image_block_status(ic_image *img, const ic_image *base, uint64_t off,
                                    uint64_t len, ic_block_status *out, ic_error **errp);

/* ---- create ----------------------------------------------------------- */

#define IC_CREATE_OPTIONS_VERSION 1
typedef struct ic_create_options {
    unsigned version;
    const char *format;          /* "qcow2" (default), "qed", "raw" */
    uint64_t size;               /* virtual size; see size_set */
    bool size_set;               /* false: take it from the backing file */
    const char *backing_file;    /* recorded as given (relative to FILE's dir) */
    const char *backing_format;  /* required with backing_file unless it is probed */
    const char *options;         /* qemu-img -o string: "k=v,k=v" (",," escapes a comma) */
    bool no_backing_open;        /* -u: do not open the backing file */
    ic_open_file_fn open_file;   /* NULL = POSIX backend */
    void *payload;
} ic_create_options;
#define IC_CREATE_OPTIONS_INIT { IC_CREATE_OPTIONS_VERSION, NULL, 0, false, NULL, NULL, NULL, false, NULL, NULL }

/**
 * Creates an image file.  The file is created or truncated only after its
 * options have been validated and its lock taken.
 * @return 0; -EINVAL bad option or size; -ENOENT backing file missing;
 *   -EBUSY target locked; -ENOTSUP unknown format or option value; -errno.
 */
IC_EXTERN int ic_image_create(const char *path, const ic_create_options *opts,
                              ic_error **errp);

/* ---- info ------------------------------------------------------------- */

typedef enum ic_info_type {
    IC_INFO_BOOL,
    IC_INFO_INT,
    IC_INFO_STRING,
    IC_INFO_BITMAPS,    /* the place of ic_image_info.bitmaps in the field order */
} ic_info_type;

/** One persistent dirty bitmap (qcow2), as qemu-img info lists it. */
typedef struct ic_bitmap_info {
    char *name;
    uint64_t granularity;  /* bytes per bit */
    bool in_use;           /* flag "in-use": inconsistent, kept as it is */
    bool enabled;          /* flag "auto": every write is recorded in it */
} ic_bitmap_info;

/** One format-specific field, named as qemu-img's JSON names it. */
typedef struct ic_info_field {
    char *key;
    ic_info_type type;
    bool b;
    int64_t i;
    char *s;
} ic_info_field;

typedef struct ic_snapshot_info {
    char *id;
    char *name;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    int64_t icount;        /* -1: not recorded */
    uint64_t disk_size;    /* virtual size when the snapshot was taken */
} ic_snapshot_info;

typedef struct ic_image_info {
    char *filename;
    char *format;
    uint64_t virtual_size;
    int64_t actual_size;            /* bytes allocated on the host; -1 unknown */
    uint32_t cluster_size;          /* 0: the format has none */
    bool dirty;                     /* qcow2 dirty bit / QED need-check */
    bool encrypted;
    char *backing_filename;         /* as recorded, or NULL */
    char *full_backing_filename;    /* resolved, or NULL */
    char *backing_format;           /* recorded, or NULL */
    size_t nb_snapshots;
    ic_snapshot_info *snapshots;
    size_t nb_specific;             /* format-specific fields, in order */
    ic_info_field *specific;
    size_t nb_bitmaps;              /* persistent dirty bitmaps, directory order */
    ic_bitmap_info *bitmaps;
} ic_image_info;

/** Describes this layer (not its backing files). Free with ic_image_info_free(). */
IC_EXTERN int ic_image_get_info(ic_image *img, ic_image_info **out, ic_error **errp);
IC_EXTERN void ic_image_info_free(ic_image_info *info);

/* ---- check ------------------------------------------------------------ */

#define IC_FIX_LEAKS  (1u << 0)
#define IC_FIX_ERRORS (1u << 1)
#define IC_CHECK_DRY_RUN (1u << 2) /* with FIX_*: report each change, write nothing */

typedef struct ic_check_result {
    int64_t corruptions;
    int64_t leaks;
    int64_t check_errors;
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    uint64_t image_end_offset;     /* 0 when the format reports none */
    uint64_t total_clusters;
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
} ic_check_result;

/** Receives one line per problem found or change made (no newline). */
typedef void (*ic_check_report_fn)(void *payload, const char *line);

/**
 * Checks (and with IC_FIX_* repairs) this layer's metadata.  Returns 0 when
 * the scan completed, whatever it found; -ENOTSUP when the format has no
 * check; -errno on internal failure.
 */
IC_EXTERN int ic_image_check(ic_image *img, unsigned fix, ic_check_report_fn report,
                             void *payload, ic_check_result *out, ic_error **errp);

#ifdef __cplusplus
}
#endif
#endif
