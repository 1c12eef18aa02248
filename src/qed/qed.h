/*
 * qed.h - private interface of the QED driver (the files in src/qed).
 *
 * Holds the on-disk layout (byte offsets of the little-endian header; no
 * struct is ever cast over disk bytes), the CPU-endian in-memory header and
 * state, feature bits, the named limits with their justification, and the
 * prototypes shared between the QED files, grouped by file.
 *
 * The format is QED as qemu's driver implements it; docs/qed.md states the
 * facts this driver relies on.
 */
#ifndef IC_QED_QED_H
#define IC_QED_QED_H

#include <stdbool.h>
#include <stdint.h>

#include "image/image.h"

/* ---- on-disk header: 64 bytes, all fields little-endian ----------------- */
/* docs/qed.md, "Header". */

#define QED_MAGIC 0x00444551u /* "QED\0" read as le32 */

enum {
    QED_HDR_MAGIC = 0,              /* u32 */
    QED_HDR_CLUSTER_SIZE = 4,       /* u32 */
    QED_HDR_TABLE_SIZE = 8,         /* u32, in clusters */
    QED_HDR_HEADER_SIZE = 12,       /* u32, in clusters */
    QED_HDR_FEATURES = 16,          /* u64 */
    QED_HDR_COMPAT_FEATURES = 24,   /* u64 */
    QED_HDR_AUTOCLEAR_FEATURES = 32,/* u64 */
    QED_HDR_L1_TABLE_OFFSET = 40,   /* u64 */
    QED_HDR_IMAGE_SIZE = 48,        /* u64 */
    QED_HDR_BACKING_NAME_OFFSET = 56, /* u32 */
    QED_HDR_BACKING_NAME_SIZE = 60, /* u32 */
    QED_HEADER_BYTES = 64,          /* sizeof(QEDHeader) in qemu */
};

/* features: an unknown bit makes the image unreadable (docs/qed.md,
 * "Feature bits"). */
#define QED_F_BACKING_FILE            UINT64_C(0x01)
#define QED_F_NEED_CHECK              UINT64_C(0x02)
#define QED_F_BACKING_FORMAT_NO_PROBE UINT64_C(0x04)
#define QED_FEATURE_MASK \
    (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE)
/* No compat or autoclear feature is defined yet. */
#define QED_COMPAT_FEATURE_MASK    UINT64_C(0)
#define QED_AUTOCLEAR_FEATURE_MASK UINT64_C(0)

/* ---- limits --------------------------------------------------------------- */

/* The spec's cluster size range (qemu QED_MIN/MAX_CLUSTER_SIZE). */
#define QED_MIN_CLUSTER_SIZE (4u * 1024)
#define QED_MAX_CLUSTER_SIZE (64u * 1024 * 1024)
#define QED_DEFAULT_CLUSTER_SIZE (64u * 1024)
/* Table size in clusters: the spec's range (qemu QED_MIN/MAX_TABLE_SIZE). */
#define QED_MIN_TABLE_SIZE 1u
#define QED_MAX_TABLE_SIZE 16u
#define QED_DEFAULT_TABLE_SIZE 4u
/* Bytes of one L1 or L2 table we are willing to hold in memory.  qemu's own
 * maximum-size computation wraps for every table larger than 8 MiB, so it
 * opens no image with a non-zero size and larger tables; 64 MiB keeps a
 * margin above that while bounding what a hostile header can make us
 * allocate per table. */
#define QED_MAX_TABLE_BYTES (64u * 1024 * 1024)
/* Virtual sizes are byte counts in int64_t throughout the block layer (and
 * in qemu); a header claiming more is refused. */
#define QED_MAX_IMAGE_SIZE ((uint64_t)INT64_MAX & ~UINT64_C(511))
/* qemu reads the backing name into a PATH_MAX buffer and refuses longer
 * names; a longer name could not have been written by qemu either. */
#define QED_MAX_BACKING_NAME 4095u
/* Memory budget of the L2 cache; at least QED_L2_CACHE_MIN tables are kept
 * whatever their size, at most QED_L2_CACHE_MAX (qemu keeps 50). */
#define QED_L2_CACHE_BUDGET (16u * 1024 * 1024)
#define QED_L2_CACHE_MIN 2u
#define QED_L2_CACHE_MAX 32u

/* L2 entry values with a special meaning (docs/qed.md, "Tables"). */
#define QED_UNALLOC_CLUSTER UINT64_C(0) /* read the backing file (or zeroes) */
#define QED_ZERO_CLUSTER    UINT64_C(1) /* reads as zeroes, hides the backing */

/* ---- in-memory state ------------------------------------------------------ */

/* The header, CPU-endian (parsed by qed_header_parse). */
struct qed_header {
    uint32_t magic;
    uint32_t cluster_size;
    uint32_t table_size;
    uint32_t header_size;
    uint64_t features;
    uint64_t compat_features;
    uint64_t autoclear_features;
    uint64_t l1_table_offset;
    uint64_t image_size;
    uint32_t backing_filename_offset;
    uint32_t backing_filename_size;
};

/* One cached L2 table (qed-l2-cache.c).  Tables are written through: the
 * cache never holds data that is not on disk, so eviction is free. */
struct qed_l2_slot {
    uint64_t offset;   /* host offset of the table; 0 = slot empty */
    uint64_t lru;      /* last use tick */
    uint64_t *table;   /* table_nelems CPU-endian entries */
};

struct qed_l2_cache {
    struct qed_l2_slot *slots;
    unsigned nslots;
    uint64_t tick;
    size_t table_bytes;
};

/* Lookup results (qemu's QED_CLUSTER_*). */
enum qed_cluster_kind {
    QED_CLUSTER_FOUND = 0, /* data cluster(s) at *host */
    QED_CLUSTER_ZERO,      /* zero cluster(s) */
    QED_CLUSTER_L2,        /* L2 exists, entries unallocated */
    QED_CLUSTER_L1,        /* no L2 table for this range */
};

struct qed_state {
    struct qed_header header;
    uint32_t cluster_bits;
    uint32_t table_nelems;   /* entries per table */
    uint32_t l1_shift;       /* guest offset >> l1_shift = L1 index */
    uint64_t l2_mask;        /* (guest offset >> cluster_bits) & l2_mask = L2 index */
    size_t table_bytes;      /* table_size * cluster_size */
    uint64_t header_bytes;   /* header_size * cluster_size */
    uint64_t file_size;      /* cluster aligned end of file = next allocation */
    uint64_t *l1_table;      /* CPU-endian */
    struct qed_l2_cache l2_cache;
    bool corrupt_unfixed;    /* open-time check left corruptions behind */
};

static inline struct qed_state *qed_state_of(struct ic_image *img)
{
    return (struct qed_state *)img->opaque;
}

static inline uint64_t qed_start_of_cluster(const struct qed_state *s, uint64_t off)
{
    return off & ~((uint64_t)s->header.cluster_size - 1);
}

static inline uint64_t qed_offset_into_cluster(const struct qed_state *s, uint64_t off)
{
    return off & ((uint64_t)s->header.cluster_size - 1);
}

static inline uint32_t qed_l1_index(const struct qed_state *s, uint64_t pos)
{
    return (uint32_t)(pos >> s->l1_shift);
}

static inline uint32_t qed_l2_index(const struct qed_state *s, uint64_t pos)
{
    return (uint32_t)((pos >> s->cluster_bits) & s->l2_mask);
}

/* ---- qed.c ---------------------------------------------------------------- */

/* Parses and validates the fixed header fields that do not depend on the
 * file (magic, sizes, features); errors name the problem. */
int qed_header_parse(struct qed_header *h, const uint8_t *buf, ic_error **errp);
void qed_header_serialize(const struct qed_header *h, uint8_t *buf);
/* True when the table (table_size clusters at @off) lies after the header
 * area and inside the file (qemu's qed_check_table_offset, without its
 * off-by-one that refuses every table of one cluster). */
bool qed_check_table_offset(const struct qed_state *s, uint64_t off);
/* True for an aligned cluster offset after the header area and before EOF. */
bool qed_check_cluster_offset(const struct qed_state *s, uint64_t off);
/* Writes the 64-byte header (one sector: atomic), with @ev announced. */
int qed_write_header(struct ic_image *img, enum ic_event ev);
/* Sets NEED_CHECK durably (header write + flush) if it is not set. */
int qed_set_need_check(struct ic_image *img);
/* Flushes, then clears NEED_CHECK and writes the header (when set). */
int qed_clear_need_check(struct ic_image *img);

/* ---- qed-table.c ---------------------------------------------------------- */

int qed_read_table(struct ic_image *img, uint64_t offset, uint64_t *table);
/* Writes entries [index, index+n) of @table (sector-aligned slice) at the
 * table's host @offset; flushes afterwards when @flush. */
int qed_write_table(struct ic_image *img, uint64_t offset, const uint64_t *table,
                    uint32_t index, uint32_t n, bool flush, enum ic_event ev);
int qed_read_l1_table(struct ic_image *img);
int qed_write_l1_table(struct ic_image *img, uint32_t index, uint32_t n, enum ic_event ev);
/* Returns the cached L2 table at @offset (borrowed until the next cache
 * call), reading it on a miss. */
int qed_read_l2_table(struct ic_image *img, uint64_t offset, uint64_t **table);

/* ---- qed-l2-cache.c ------------------------------------------------------- */

int qed_l2_cache_init(struct qed_l2_cache *c, size_t table_bytes);
void qed_l2_cache_destroy(struct qed_l2_cache *c);
uint64_t *qed_l2_cache_find(struct qed_l2_cache *c, uint64_t offset);
/* A slot for @offset (evicting the least recently used); its contents are
 * undefined until the caller fills them.  NULL on allocation failure. */
uint64_t *qed_l2_cache_insert(struct qed_l2_cache *c, uint64_t offset);
void qed_l2_cache_drop(struct qed_l2_cache *c, uint64_t offset);
void qed_l2_cache_clear(struct qed_l2_cache *c);

/* ---- qed-cluster.c -------------------------------------------------------- */

/* Looks up [pos, pos+len) up to the end of its L2 table: returns the kind of
 * the first cluster (>= 0) and sets *run to the bytes (<= len) sharing it
 * (for FOUND: host-contiguous) and *host to the host offset of pos. */
int qed_find_cluster(struct ic_image *img, uint64_t pos, uint64_t len, uint64_t *host,
                     uint64_t *run);
int qed_co_pread(struct ic_image *img, void *buf, size_t len, uint64_t off);
int qed_co_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off);
int qed_co_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags);
int qed_co_block_status(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                        unsigned *flags, uint64_t *map, ic_io **file);

/* ---- qed-check.c ---------------------------------------------------------- */

/* qemu's qed_check (+ leak repair with IC_FIX_LEAKS).  Returns 0 when the
 * scan completed, -errno (without errp) only when it could not run or an
 * I/O error stopped it (then res->check_errors > 0). */
int qed_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
              ic_check_result *res);
int qed_co_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
                 ic_check_result *res, ic_error **errp);

#endif
