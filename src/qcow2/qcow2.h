/*
 * qcow2.h - private interface of the qcow2 driver.
 *
 * Holds the on-disk layout (byte offsets, masks, feature bits), the named
 * limits with the reason for each value, the in-memory state kept at
 * img->opaque, and the prototypes shared between the qcow2-*.c files,
 * grouped by the file that defines them.
 *
 * On-disk structures are never cast: they are parsed from and serialized
 * to byte buffers with util/endian.h at the boundary (qcow2.c for the
 * header, qcow2-cluster.c for L1/L2, qcow2-refcount.c for refcounts).
 * The per-entry accessors of L2 tables and refcount blocks are inline
 * below: metadata walks call them once per cluster.
 * Every in-memory field below is CPU-endian.
 *
 * The format is qcow2 as qemu 7.2's qcow2 driver implements it;
 * docs/qcow2.md states the facts this driver relies on, one section per
 * on-disk structure.
 */
#ifndef IC_QCOW2_QCOW2_H
#define IC_QCOW2_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "util/endian.h"

/* ---- header layout (docs/qcow2.md, "Header") ---------------------------- */

#define QCOW2_MAGIC 0x514649FBu /* "QFI\xfb" */

enum {
    QCOW2_HDR_MAGIC = 0,
    QCOW2_HDR_VERSION = 4,
    QCOW2_HDR_BACKING_OFFSET = 8,
    QCOW2_HDR_BACKING_SIZE = 16,
    QCOW2_HDR_CLUSTER_BITS = 20,
    QCOW2_HDR_SIZE = 24,
    QCOW2_HDR_CRYPT_METHOD = 32,
    QCOW2_HDR_L1_SIZE = 36,
    QCOW2_HDR_L1_OFFSET = 40,
    QCOW2_HDR_REFTABLE_OFFSET = 48,
    QCOW2_HDR_REFTABLE_CLUSTERS = 56,
    QCOW2_HDR_NB_SNAPSHOTS = 60,
    QCOW2_HDR_SNAPSHOTS_OFFSET = 64,
    QCOW2_HDR_V2_LEN = 72,           /* a v2 header ends here */
    QCOW2_HDR_INCOMPAT = 72,
    QCOW2_HDR_COMPAT = 80,
    QCOW2_HDR_AUTOCLEAR = 88,
    QCOW2_HDR_REFCOUNT_ORDER = 96,
    QCOW2_HDR_HEADER_LENGTH = 100,
    QCOW2_HDR_V3_MIN_LEN = 104,      /* shortest valid v3 header */
    QCOW2_HDR_COMPRESSION_TYPE = 104,
    QCOW2_HDR_V3_LEN = 112,          /* what qemu >= 5.1 writes */
};

/* Header extension magics (docs/qcow2.md, "Header extensions"). */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xE2792ACAu
#define QCOW2_EXT_FEATURE_TABLE  0x6803F857u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537BE77u
#define QCOW2_EXT_DATA_FILE      0x44415441u

#define QCOW2_FEATURE_NAME_ENTRY 48 /* type u8, bit u8, name[46] */
#define QCOW2_FEATURE_NAME_LEN   46
#define QCOW2_BITMAPS_EXT_LEN    24
#define QCOW2_CRYPTO_EXT_LEN     16

/* Feature bits (incompatible, compatible, autoclear): _BITNR and mask
 * (docs/qcow2.md, "Feature bits"). */
enum {
    QCOW2_INCOMPAT_DIRTY_BITNR = 0,
    QCOW2_INCOMPAT_CORRUPT_BITNR = 1,
    QCOW2_INCOMPAT_DATA_FILE_BITNR = 2,
    QCOW2_INCOMPAT_COMPRESSION_BITNR = 3,
    QCOW2_INCOMPAT_EXTL2_BITNR = 4,
    QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR = 0,
    QCOW2_AUTOCLEAR_BITMAPS_BITNR = 0,
    QCOW2_AUTOCLEAR_DATA_FILE_RAW_BITNR = 1,
};
#define QCOW2_INCOMPAT_DIRTY        (1ull << QCOW2_INCOMPAT_DIRTY_BITNR)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << QCOW2_INCOMPAT_CORRUPT_BITNR)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << QCOW2_INCOMPAT_DATA_FILE_BITNR)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << QCOW2_INCOMPAT_COMPRESSION_BITNR)
#define QCOW2_INCOMPAT_EXTL2        (1ull << QCOW2_INCOMPAT_EXTL2_BITNR)
#define QCOW2_INCOMPAT_MASK                                                       \
    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE |  \
     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << QCOW2_AUTOCLEAR_BITMAPS_BITNR)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << QCOW2_AUTOCLEAR_DATA_FILE_RAW_BITNR)
/* Autoclear bits we keep on a read-write open, whatever else is set.  The
 * bitmaps bit is kept only where a bitmaps extension backs it (the bitmaps
 * are then kept true, qcow2-bitmap.c); alone it is cleared. */
#define QCOW2_AUTOCLEAR_KNOWN       QCOW2_AUTOCLEAR_DATA_FILE_RAW

enum { QCOW2_CRYPT_NONE = 0, QCOW2_CRYPT_AES = 1, QCOW2_CRYPT_LUKS = 2 };
enum { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 };

/* ---- table entries: reftable, refblocks, L1, L2 ------------------------ */
/* docs/qcow2.md, "L1 entries", "L2 entries", "Extended L2 entries" and
 * "Refcounts". */

#define QCOW2_OFLAG_COPIED      (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED  (1ull << 62)
#define QCOW2_OFLAG_ZERO        (1ull << 0)
#define QCOW2_L1E_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L1E_RESERVED_MASK 0x7f000000000001ffull
#define QCOW2_L2E_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L2E_STD_RESERVED  0x3f000000000001feull
#define QCOW2_REFT_OFFSET_MASK  0xfffffffffffffe00ull
#define QCOW2_REFT_RESERVED     0x1ffull
#define QCOW2_SUBCLUSTERS       32   /* per cluster with extended L2 */
#define QCOW2_BITMAP_ALL_ALLOC  0x00000000ffffffffull
#define QCOW2_BITMAP_ALL_ZERO   0xffffffff00000000ull

/* ---- limits ------------------------------------------------------------ */

/* 512 B .. 2 MiB: the spec's minimum and qemu's maximum; larger clusters
 * would make single L2 tables and COW buffers unreasonably large. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* Extended L2 needs subclusters of at least 512 bytes: 32 x 512 = 16 KiB. */
#define QCOW2_MIN_EXTL2_CLUSTER_BITS 14
/* qemu's QCOW_MAX_L1_SIZE: 32 MiB of L1 addresses 4 Mi L2 tables, enough
 * for any disk qemu can create; bounds the L1 allocation. */
#define QCOW2_MAX_L1_BYTES     (32ull << 20)
/* qemu's QCOW_MAX_REFTABLE_SIZE: 8 MiB of reftable. */
#define QCOW2_MAX_REFTABLE_BYTES (8ull << 20)
/* qemu's snapshot limits: count, extra data per entry, whole table. */
#define QCOW2_MAX_SNAPSHOTS          65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA     1024u
#define QCOW2_MAX_SNAPSHOTS_BYTES    (64ull << 20)
#define QCOW2_SNAPSHOT_HEADER_LEN    40   /* fixed part of a table entry */
#define QCOW2_SNAPSHOT_EXTRA_V3_MIN  16   /* vm_state_size_large + disk_size */
#define QCOW2_SNAPSHOT_EXTRA_QEMU    24   /* + icount, what qemu writes */
/* Backing names: qemu stores at most 1023 bytes; format names < 16. */
#define QCOW2_MAX_BACKING_NAME  1023u
#define QCOW2_MAX_BACKING_FMT   15u
/* A data-file name longer than PATH_MAX cannot be opened anyway. */
#define QCOW2_MAX_DATA_FILE_NAME 4095u
/* Host offsets are 56 bits wide in L1/L2 entries (QCOW_MAX_CLUSTER_OFFSET). */
#define QCOW2_MAX_HOST_OFFSET   ((1ull << 56) - 1)
/* qemu's bitmap limits (QCOW2_MAX_BITMAPS, QCOW2_MAX_BITMAP_DIRECTORY_SIZE). */
#define QCOW2_MAX_BITMAPS       65535u
#define QCOW2_MAX_BITMAP_DIR    (64ull << 20)
/* Guest sizes: qemu refuses images larger than 2^63 - 512 (INT64_MAX
 * rounded to sectors); we refuse more than 2^61 so that every guest
 * offset + cluster sum fits comfortably in 64 bits. */
#define QCOW2_MAX_VIRTUAL_SIZE  (1ull << 61)
/* Caches: qemu 7.2 uses up to 32 MiB of L2 cache; we bound ours to 8 MiB
 * (enough to stream a 256 GiB image's tables) and at least 16 tables. */
#define QCOW2_L2_CACHE_BYTES     (8u << 20)
#define QCOW2_MIN_L2_CACHE       16u
#define QCOW2_REFBLOCK_CACHE     16u
/* A backing layer caches its L2 tables in slices of this many bytes (at
 * most a cluster), QCOW2_L2_SLICES of them: its memory stays small
 * whatever the disk size, once per layer of a chain and per handle on it
 * (convert's readers each open the whole chain).  A scan needs one or
 * two slices per layer at a time. */
#define QCOW2_L2_SLICE_BYTES     4096u
#define QCOW2_L2_SLICES          8u

/* ---- in-memory state ---------------------------------------------------- */

struct qcow2_bitmaps; /* qcow2-bitmap.c */

/* The header, CPU-endian (parse/serialize in qcow2.c). */
struct qcow2_header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;       /* bytes of the table as read */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
};

/* A header extension imgchain does not interpret: kept verbatim. */
struct qcow2_unknown_ext {
    uint32_t magic;
    uint32_t len;
    uint8_t *data;
};

/* One feature-name table entry as read from the image. */
struct qcow2_feature_name {
    uint8_t type;   /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[QCOW2_FEATURE_NAME_LEN + 1];
};

/* One snapshot table entry with every field, for the
 * snapshot engine: unknown extra data beyond the fields we know is kept. */
struct qcow2_snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;    /* the large field when present */
    uint32_t extra_data_size;  /* as read */
    bool has_disk_size;
    uint64_t disk_size;
    bool has_icount;
    int64_t icount;            /* -1 when absent */
    uint8_t *unknown_extra;    /* extra data past byte 24 of the extra area */
    uint32_t unknown_extra_size;
    uint64_t entry_offset;     /* host offset the entry was read from (messages) */
};

/* A cached table (qcow2-cache.c). */
struct qcow2_cache_entry {
    uint64_t offset;   /* host offset of the cluster; 0 = slot empty */
    uint8_t *buf;      /* the cache's size bytes, allocated on first use */
    uint64_t lru;
    int ref;
    bool dirty;
};

struct qcow2_cache {
    size_t nb;
    size_t size;       /* bytes per entry */
    struct qcow2_cache_entry *e;
    uint64_t lru_clock;
    size_t last_hit;
    /* Flushed (then the file flushed) before this cache writes anything:
     * the L2 cache depends on the refblock cache so refcount increments
     * reach disk before the entries that reference the clusters. */
    struct qcow2_cache *depends;
    bool depends_on_flush;     /* also fsync before writing (lazy off) */
    enum ic_event ev_write;
    const char *what;          /* "L2 table", "refcount block" */
    /* the reader streams through tables (qcow2-cache.c design note 5) */
    bool recycle;
};

struct qcow2_state {
    struct qcow2_header h;
    uint8_t *unknown_header;       /* bytes [known header end, header_length) */
    uint32_t unknown_header_len;

    /* geometry */
    uint32_t cluster_bits;
    uint32_t cluster_size;
    uint64_t cluster_offset_mask;  /* cluster_size - 1 */
    bool ext_l2;
    uint32_t l2_entry_size;        /* 8, or 16 with extended L2 */
    uint32_t l2_bits;
    uint32_t l2_entries;
    uint32_t subcluster_bits;
    uint32_t subcluster_size;
    /* compressed descriptors (docs/qcow2.md, "Compressed clusters") */
    uint32_t csize_shift;          /* 62 - (cluster_bits - 8) */
    uint64_t csize_mask;
    uint64_t coffset_mask;

    /* active L1 (entries CPU-endian, flags included) */
    uint64_t *l1;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint32_t l1_vm_state_index;

    /* refcounts (qcow2-refcount.c); the table is loaded lazily */
    uint32_t refcount_order;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t refblock_bits;        /* log2(entries per refblock) */
    uint32_t refblock_entries;
    uint64_t *reftable;            /* NULL until loaded */
    uint32_t reftable_size;        /* entries */
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t free_cluster_index;   /* no free cluster below this */
    uint64_t free_byte_offset;     /* compressed packing; 0 = none */

    struct qcow2_cache l2_cache;
    struct qcow2_cache l2_slices;  /* backing layers' lookups (qcow2-cluster.c) */
    struct qcow2_cache refblock_cache;
    /* L2 readahead (qcow2-cluster.c design note 7): the L1 index looked
     * up last, and the first one no prefetch hint was issued for yet. */
    uint64_t ra_last_l1;
    uint64_t ra_next_l1;

    /* header extensions */
    char *backing_fmt_ext;         /* as read (also in img->backing_fmt) */
    struct qcow2_feature_name *feature_names;
    size_t nb_feature_names;
    bool has_bitmaps_ext;
    /* opened read-write for check and repair while holding bitmaps: every
     * op that changes guest data or snapshots is refused (qcow2-bitmap.c
     * design note 4) */
    bool bitmaps_guard;
    /* persistent dirty bitmaps maintained by this read-write open
     * (qcow2-bitmap.c design note 6); NULL otherwise */
    struct qcow2_bitmaps *bitmaps;
    uint8_t bitmaps_ext[QCOW2_BITMAPS_EXT_LEN];
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_size;
    uint64_t bitmap_dir_offset;
    bool has_crypto_ext;
    uint8_t crypto_ext[QCOW2_CRYPTO_EXT_LEN];
    struct qcow2_unknown_ext *unknown_exts;
    size_t nb_unknown_exts;

    /* external data file */
    char *data_file_name;
    ic_io *data_file;              /* owned; NULL = guest data in img->file */
    bool data_file_raw;

    /* snapshots (read at open; written by qcow2-snapshot.c) */
    struct qcow2_snapshot *snapshots;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;       /* bytes of the table as read */
    /* Table damage accepted by an IC_OPEN_CHECK open and left to check to
     * count and repair (as qemu opens an image for check); always
     * 0 otherwise, because such an image is refused. */
    uint32_t snap_dropped;         /* entries not loaded: past 65536 or 64 MiB */
    bool snap_too_many;            /* the header counts more than 65536 */
    bool snap_too_big;             /* the entries overhang 64 MiB */
    uint32_t snap_extra_cut;       /* entries whose extra data > 1024 was cut */

    uint8_t compression_type;
    /* qemu's qcow2_detect_metadata_preallocation heuristic, computed on
     * the first block status: data runs then also report host holes */
    bool metadata_prealloc_checked;
    /* A read-only image's last unallocated run found by block status:
     * [unalloc_start, unalloc_end), which ends there for certain when
     * unalloc_final (qcow2-cluster.c design note 9). */
    uint64_t unalloc_start, unalloc_end;
    bool unalloc_final;
    bool metadata_prealloc;
    bool lazy_refcounts;
    bool dirty_on_disk;            /* incompat dirty bit as last written */
    bool corrupt;

    /* active L1 entries changed in memory but not written yet */
    uint32_t l1_dirty_lo, l1_dirty_hi;   /* [lo, hi); lo == hi: clean */
    /* decrements waiting for their referencing metadata to reach disk */
    struct { uint64_t offset, length; } *pending_free;
    size_t nb_pending_free, cap_pending_free;

    /* decompression cache: one cluster */
    uint8_t *cbuf;                 /* decompressed data */
    uint64_t cbuf_entry;           /* L2 entry it came from; 0 = empty */
};

static inline struct qcow2_state *qcow2_state(struct ic_image *img)
{
    return img->opaque;
}

/* The file holding guest data: the data file or the image itself. */
static inline ic_io *qcow2_data_io(struct ic_image *img)
{
    struct qcow2_state *s = img->opaque;
    return s->data_file ? s->data_file : img->file;
}

static inline uint64_t qcow2_size_to_clusters(const struct qcow2_state *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

/* Number of L1 entries needed for @size bytes of guest data. */
static inline uint64_t qcow2_size_to_l1(const struct qcow2_state *s, uint64_t size)
{
    uint32_t shift = s->cluster_bits + s->l2_bits;
    return (size + (1ull << shift) - 1) >> shift;
}

/* ---- cluster types (docs/qcow2.md, "L2 entries", "Extended L2 entries") */

enum qcow2_ctype {
    QCOW2_CT_UNALLOCATED,
    QCOW2_CT_ZERO_PLAIN,
    QCOW2_CT_ZERO_ALLOC,
    QCOW2_CT_NORMAL,
    QCOW2_CT_COMPRESSED,
};

enum qcow2_sctype {
    QCOW2_SC_UNALLOCATED_PLAIN,
    QCOW2_SC_UNALLOCATED_ALLOC,
    QCOW2_SC_ZERO_PLAIN,
    QCOW2_SC_ZERO_ALLOC,
    QCOW2_SC_NORMAL,
    QCOW2_SC_COMPRESSED,
    QCOW2_SC_INVALID,
};

/* ---- entry accessors (inline: called once per cluster by metadata walks) -- */

/* L2 entry helpers on a raw table buffer. */
static inline uint64_t qcow2_l2_get(const struct qcow2_state *s, const uint8_t *l2, uint32_t i)
{
    return ic_load_be64(l2 + (size_t)i * s->l2_entry_size);
}

static inline uint64_t qcow2_l2_get_bitmap(const struct qcow2_state *s, const uint8_t *l2,
                                           uint32_t i)
{
    return s->ext_l2 ? ic_load_be64(l2 + (size_t)i * 16 + 8) : 0;
}

static inline void qcow2_l2_set(const struct qcow2_state *s, uint8_t *l2, uint32_t i,
                                uint64_t entry)
{
    ic_store_be64(l2 + (size_t)i * s->l2_entry_size, entry);
}

static inline void qcow2_l2_set_bitmap(const struct qcow2_state *s, uint8_t *l2, uint32_t i,
                                       uint64_t bm)
{
    if (s->ext_l2)
        ic_store_be64(l2 + (size_t)i * 16 + 8, bm);
}

static inline enum qcow2_ctype qcow2_cluster_type(const struct qcow2_state *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return QCOW2_CT_COMPRESSED;
    uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
    if ((e & QCOW2_OFLAG_ZERO) && !s->ext_l2)
        return off ? QCOW2_CT_ZERO_ALLOC : QCOW2_CT_ZERO_PLAIN;
    if (off)
        return QCOW2_CT_NORMAL;
    if (s->data_file && (e & QCOW2_OFLAG_COPIED))
        return QCOW2_CT_NORMAL;
    return QCOW2_CT_UNALLOCATED;
}

/* How many entries after entry @j (= @e, an aligned data cluster) of the
 * L2 table @l2 continue it exactly: the same flags, each the host cluster
 * after the one before (never past the largest host offset).  Metadata
 * walks use it to take runs of clusters a table maps one after the other
 * (metadata preallocation, sequential writes) in one step. */
static inline uint32_t qcow2_l2_count_following(const struct qcow2_state *s, const uint8_t *l2,
                                                uint32_t j, uint64_t e)
{
    uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
    uint64_t room = ((QCOW2_L2E_OFFSET_MASK & ~s->cluster_offset_mask) - off) >> s->cluster_bits;
    uint32_t n = s->l2_entries - j - 1, k = 0;
    if (room < n)
        n = (uint32_t)room;
    const uint8_t *p = l2 + (size_t)(j + 1) * s->l2_entry_size;
    uint64_t want = e + s->cluster_size;
    while (k < n && ic_load_be64(p) == want) {
        k++;
        p += s->l2_entry_size;
        want += s->cluster_size;
    }
    return k;
}

/* Refblock entry accessors for any refcount width (1..64 bits): sub-byte
 * widths pack LSB first, widths >= 8 are big-endian. */
static inline uint64_t qcow2_refblock_get(const struct qcow2_state *s, const uint8_t *rb,
                                          uint32_t i)
{
    switch (s->refcount_bits) {
    case 1: case 2: case 4: {
        uint32_t bits = s->refcount_bits;
        uint32_t per = 8 / bits;
        return (rb[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
    }
    case 8:
        return rb[i];
    case 16:
        return ic_load_be16(rb + 2 * (size_t)i);
    case 32:
        return ic_load_be32(rb + 4 * (size_t)i);
    default:
        return ic_load_be64(rb + 8 * (size_t)i);
    }
}

static inline void qcow2_refblock_set(const struct qcow2_state *s, uint8_t *rb, uint32_t i,
                                      uint64_t v)
{
    switch (s->refcount_bits) {
    case 1: case 2: case 4: {
        uint32_t bits = s->refcount_bits;
        uint32_t per = 8 / bits;
        uint32_t shift = (i % per) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        rb[i / per] = (uint8_t)((rb[i / per] & ~mask) | ((v << shift) & mask));
        break;
    }
    case 8:
        rb[i] = (uint8_t)v;
        break;
    case 16:
        ic_store_be16(rb + 2 * (size_t)i, (uint16_t)v);
        break;
    case 32:
        ic_store_be32(rb + 4 * (size_t)i, (uint32_t)v);
        break;
    default:
        ic_store_be64(rb + 8 * (size_t)i, v);
        break;
    }
}

/* ---- qcow2.c ----------------------------------------------------------- */

/* Rewrites cluster 0 (header, extensions, backing name) from the state,
 * with one write. */
int qcow2_update_header(struct ic_image *img) IC_WARN_UNUSED;
/* Sets/clears the dirty bit on disk (8-byte write at offset 72 + flush). */
int qcow2_mark_dirty(struct ic_image *img) IC_WARN_UNUSED;
int qcow2_mark_clean(struct ic_image *img) IC_WARN_UNUSED;
/* Sets the corrupt bit (best effort, when writable) and records the
 * message; returns -EIO (the driver's ic_corrupt). */
int qcow2_signal_corruption(struct ic_image *img, bool fatal, uint64_t offset,
                            const char *fmt, ...) IC_PRINTF(4, 5);
/* Parses a header buffer (>= 72 bytes) into @h without validation. */
void qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len);
/* Serializes @h into @buf (h->header_length bytes, or 72 for v2). */
void qcow2_header_serialize(const struct qcow2_header *h, uint8_t *buf);
/* Frees the parsed snapshot table. */
void qcow2_free_snapshots(struct qcow2_state *s);
/* Reads and validates the snapshot table described by the header. */
int qcow2_read_snapshots(struct ic_image *img, ic_error **errp);

/* ---- qcow2-cluster.c ---------------------------------------------------- */

enum qcow2_sctype qcow2_subcluster_type(const struct qcow2_state *s, uint64_t l2e,
                                        uint64_t bitmap, uint32_t sc);
/* Compressed descriptor <-> (host byte offset, byte length to read). */
void qcow2_parse_compressed(const struct qcow2_state *s, uint64_t l2e, uint64_t *coffset,
                            uint64_t *csize);
uint64_t qcow2_make_compressed(const struct qcow2_state *s, uint64_t coffset, uint64_t len);
/* Reads the L1 table at @offset (@size entries) into a new CPU-endian
 * array (for snapshots and check). */
int qcow2_read_l1(struct ic_image *img, uint64_t offset, uint32_t size, uint64_t **out)
    IC_WARN_UNUSED;
/* Writes L1 entries [first, first+n) of the active L1 to disk. */
int qcow2_write_l1_entries(struct ic_image *img, uint32_t first, uint32_t n) IC_WARN_UNUSED;
/* Writes all cached metadata in dependency order and flushes the files:
 * refblocks, fsync, L2 tables, fsync, dirty L1 entries, fsync. */
int qcow2_flush_metadata(struct ic_image *img) IC_WARN_UNUSED;
/* Reads the L2 table at @offset through the cache; put with
 * qcow2_cache_put(&s->l2_cache, ...). */
int qcow2_get_l2(struct ic_image *img, uint64_t offset, uint8_t **table) IC_WARN_UNUSED;
int qcow2_cluster_pread(struct ic_image *img, void *buf, size_t len, uint64_t off);
int qcow2_cluster_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off);
int qcow2_cluster_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len,
                                unsigned flags);
int qcow2_cluster_discard(struct ic_image *img, uint64_t off, uint64_t len);
int64_t qcow2_cluster_compress(const struct ic_image *img, void *dst, size_t dst_len,
                               const void *src, size_t len);
int qcow2_cluster_pwrite_precompressed(struct ic_image *img, const void *cbuf, size_t clen,
                                       uint64_t off);
int qcow2_cluster_pwrite_compressed(struct ic_image *img, const void *buf, size_t len,
                                    uint64_t off);
int qcow2_cluster_block_status(struct ic_image *img, uint64_t off, uint64_t len,
                               uint64_t *pnum, unsigned *flags, uint64_t *map, ic_io **file);
/* Empties the active L1/L2 tree: every entry unallocated (commit's
 * make_empty, qemu's full discard). */
int qcow2_make_empty(struct ic_image *img) IC_WARN_UNUSED;
/* Builds every L2 table and data cluster for [0, size) in memory-sized
 * batches with large writes (preallocation=metadata). */
int qcow2_preallocate_metadata(struct ic_image *img, ic_error **errp);
/* Grows the active L1 to at least @min_size entries (new table, flush,
 * header switch, free the old one). */
int qcow2_grow_l1(struct ic_image *img, uint64_t min_size) IC_WARN_UNUSED;
/* Resize: deallocates every cluster from @from (rounded up to a cluster)
 * to the L1's reach, unhooks the L2 tables wholly past it, and writes
 * tables, L1 and then the decrements in crash-safe order. */
int qcow2_cluster_drop_tail(struct ic_image *img, uint64_t from) IC_WARN_UNUSED;
/* Resize: gives every unallocated (or plain zero) cluster of [from, end)
 * (from rounded up to a cluster) a fresh host cluster past the end of the
 * file, reading as before; @mode IC_PREALLOC_FALLOC/FULL also allocates
 * the space (ic_resize_fill).  Ends with qcow2_flush_metadata. */
int qcow2_cluster_preallocate(struct ic_image *img, uint64_t from, uint64_t end,
                              ic_prealloc mode) IC_WARN_UNUSED;

/* ---- qcow2-resize.c ----------------------------------------------------- */

/* The driver's resize op (qemu-img resize). */
int qcow2_resize(struct ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                 ic_error **errp);

/* ---- qcow2-amend.c ------------------------------------------------------- */

/* The driver's amend op (qemu-img amend -o). */
int qcow2_amend(struct ic_image *img, ic_opts *opts, bool dry_run, ic_error **errp);

/* ---- qcow2-measure.c ---------------------------------------------------- */

/* The driver's measure op (qemu-img measure -O qcow2). */
int qcow2_measure(ic_opts *opts, struct ic_image *src, uint64_t size, ic_measure_info *out,
                  ic_error **errp);

/* ---- qcow2-refcount.c --------------------------------------------------- */

/* Loads the reftable (validated) if not loaded yet. */
int qcow2_refcount_load(struct ic_image *img) IC_WARN_UNUSED;
/* Refcount of the cluster with index @cluster (0 when no refblock). */
int qcow2_get_refcount(struct ic_image *img, uint64_t cluster, uint64_t *refcount)
    IC_WARN_UNUSED;
/* How many of the clusters [0, @nclusters) have a nonzero refcount, in
 * *count; stops counting at @limit.  A read-only image whose reftable is
 * not loaded keeps it unloaded (and caches no refblock). */
int qcow2_count_refcounted(struct ic_image *img, uint64_t nclusters, uint64_t limit,
                           uint64_t *count) IC_WARN_UNUSED;
/* Adds @delta to every cluster touched by [offset, offset+length). */
int qcow2_update_refcount(struct ic_image *img, uint64_t offset, uint64_t length,
                          int64_t delta) IC_WARN_UNUSED;
/* Allocates @n contiguous clusters (refcount 1); returns the host offset. */
int64_t qcow2_alloc_clusters(struct ic_image *img, uint64_t n) IC_WARN_UNUSED;
/* The same, always placing the refblocks the run needs right after it
 * (qcow2-refcount.c design note 4b), so consecutive runs pack without the
 * holes self-describing blocks at range starts would leave: for laying out
 * large areas (preallocation). */
int64_t qcow2_alloc_clusters_packed(struct ic_image *img, uint64_t n) IC_WARN_UNUSED;
/* Allocates @n contiguous clusters at or after @min_offset... the first
 * free run at or past the end of everything used (for big batches). */
int64_t qcow2_alloc_clusters_at_end(struct ic_image *img, uint64_t n) IC_WARN_UNUSED;
/* Allocates @size bytes (<= cluster_size) for compressed data, packing
 * into the current partly used cluster; returns the byte offset. */
int64_t qcow2_alloc_bytes(struct ic_image *img, uint64_t size) IC_WARN_UNUSED;
/* Decrements the refcounts of [offset, offset+length) (frees at 0). */
int qcow2_free_clusters(struct ic_image *img, uint64_t offset, uint64_t length) IC_WARN_UNUSED;
/* Frees what an L2 entry references (normal, zero-alloc or compressed). */
int qcow2_free_l2_entry(struct ic_image *img, uint64_t l2e) IC_WARN_UNUSED;
/* Refuses (as corruption) a write or allocation of [off, off+len) over
 * the header, the active L1, the reftable or the snapshot table. */
int qcow2_check_overlap(struct ic_image *img, uint64_t off, uint64_t len) IC_WARN_UNUSED;
/* Host clusters covered by the file now (EOF rounded up). */
int64_t qcow2_file_clusters(struct ic_image *img);
/* Adds @delta to entries [i, i + n) of refblock @rb, in order, as
 * qcow2_refblock_get/set entry by entry would (every width).  Stops at the
 * first entry whose value would drop below 0 or exceed refcount_max,
 * leaving it and the entries after it unchanged, and returns its position
 * relative to @i; returns @n when every entry was updated.  An entry that
 * drops to 0 gets its bit set in @freed (a bit per entry of the block)
 * unless @freed is NULL.  Requires i + n <= refblock_entries. */
uint32_t qcow2_refblock_add_run(const struct qcow2_state *s, uint8_t *rb, uint32_t i, uint32_t n,
                                int64_t delta, uint64_t *freed);
/* Position of the first entry of [i, i + n) of refblock @rb that is 0,
 * relative to @i; @n when none is. */
uint32_t qcow2_refblock_find_zero(const struct qcow2_state *s, const uint8_t *rb, uint32_t i,
                                  uint32_t n);
/* Number of entries in [i, i + n) of refblock @rb equal to @value. */
uint32_t qcow2_refblock_count(const struct qcow2_state *s, const uint8_t *rb, uint32_t i,
                              uint32_t n, uint64_t value);
/* Clusters queued for a refcount decrement once the metadata that stopped
 * referencing them is on disk (see qcow2_flush_pending_frees). */
int qcow2_queue_free(struct ic_image *img, uint64_t offset, uint64_t length) IC_WARN_UNUSED;
/* Writes all metadata in order (refblocks, fsync, L2, fsync, L1, fsync),
 * then applies the queued decrements. */
int qcow2_flush_pending_frees(struct ic_image *img) IC_WARN_UNUSED;
/* Computes the expected refcount of every host cluster from the metadata
 * (header, L1s, L2s, data, snapshots, reftable excluded, bitmaps) into a
 * new array of *nb entries (calculate_refcounts without the reftable and
 * refblocks, which the rebuild places itself). */
int qcow2_calculate_refcounts(struct ic_image *img, uint32_t **imrt, uint64_t *nb,
                              ic_error **errp);
/* Writes a new refcount structure for @imrt after its end, switches the
 * header to it with one write and flushes (rebuild_refcount_structure). */
int qcow2_rebuild_refcount_structure(struct ic_image *img, uint32_t *imrt, uint64_t nb,
                                     ic_error **errp);
/* The same with entries of 2^@order bits (amend's refcount_bits change):
 * the header switch then also writes refcount_order, in the same write. */
int qcow2_rebuild_refcount_structure_order(struct ic_image *img, uint32_t *imrt, uint64_t nb,
                                           uint32_t order, ic_error **errp);
/* Sets or clears COPIED in the active L1 and its L2 tables to match the
 * refcounts (check_oflag_copied); returns the number of entries fixed. */
int64_t qcow2_fix_copied(struct ic_image *img) IC_WARN_UNUSED;
/* Dirty-image repair: calculate + rebuild + fix COPIED + clear dirty. */
int qcow2_repair_refcounts(struct ic_image *img, ic_error **errp);

/* ---- qcow2-cache.c ------------------------------------------------------- */

/* @size: bytes per entry (a cluster, or a slice of an L2 table). */
int qcow2_cache_init(struct qcow2_cache *c, size_t nb, size_t size, enum ic_event ev_write,
                     const char *what);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Returns the cached table at @offset, reading it unless @fresh (then it
 * is zero-filled; for new tables).  The entry is pinned until put. */
int qcow2_cache_get(struct ic_image *img, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **table) IC_WARN_UNUSED;
void qcow2_cache_put(struct qcow2_cache *c, uint8_t **table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, const uint8_t *table);
/* Writes every dirty entry (after its dependency) without flushing the file. */
int qcow2_cache_write(struct ic_image *img, struct qcow2_cache *c) IC_WARN_UNUSED;
/* Forgets a table (the cluster was freed); drops unwritten changes. */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);
/* Empties the cache (all entries must be clean or are lost). */
void qcow2_cache_reset(struct qcow2_cache *c);

/* ---- qcow2-compress.c ---------------------------------------------------- */

/* Compresses @src into @dst; returns the compressed size, or -ENOSPC when
 * it does not fit in @dst_len (store uncompressed then). */
int64_t qcow2_compress(uint8_t type, void *dst, size_t dst_len, const void *src, size_t src_len);
/* Decompresses until @dst_len bytes are produced; -EIO on bad data. */
int qcow2_decompress(uint8_t type, void *dst, size_t dst_len, const void *src, size_t src_len);

#endif
