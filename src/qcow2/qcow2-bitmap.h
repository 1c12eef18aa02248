/*
 * qcow2-bitmap.h - persistent dirty bitmaps of the qcow2 driver: the
 * bitmap directory and the bitmap tables (on-disk layout, qemu's limits,
 * the parsed in-memory form).
 */
#ifndef IC_QCOW2_BITMAP_H
#define IC_QCOW2_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imgchain/bitmap.h"
#include "qcow2.h"

/* ---- bitmap directory entry (docs/qcow2.md, "Bitmaps") */

enum {
    QCOW2_BME_TABLE_OFFSET = 0,    /* u64, cluster aligned */
    QCOW2_BME_TABLE_SIZE = 8,      /* u32, entries */
    QCOW2_BME_FLAGS = 12,          /* u32 */
    QCOW2_BME_TYPE = 16,           /* u8 */
    QCOW2_BME_GRANULARITY = 17,    /* u8, log2 of the bytes per bit */
    QCOW2_BME_NAME_SIZE = 18,      /* u16 */
    QCOW2_BME_EXTRA_SIZE = 20,     /* u32 */
    QCOW2_BME_HEADER_LEN = 24,     /* then extra data, name, padding to 8 */
};

#define QCOW2_BME_FLAG_IN_USE    (1u << 0)
#define QCOW2_BME_FLAG_AUTO      (1u << 1)
/* qemu knows no extra data, so it refuses the extra_data_compatible bit
 * (bit 2) with the reserved ones. */
#define QCOW2_BME_RESERVED_FLAGS 0xfffffffcu
#define QCOW2_BME_TYPE_DIRTY     1u

/* qemu's constraints on an entry (its BME_* limits): tables of
 * at most 2^27 entries, at most 512 MiB of bitmap data, granularity 512 B
 * to 2 GiB, names of at most 1023 bytes. */
#define QCOW2_BME_MAX_TABLE_SIZE     0x8000000u
#define QCOW2_BME_MAX_PHYS_SIZE      0x20000000ull
#define QCOW2_BME_MIN_GRANULARITY    9u
#define QCOW2_BME_MAX_GRANULARITY    31u
#define QCOW2_BME_MAX_NAME           1023u
/* imgchain's bound on the tables of all bitmaps together, so that a
 * directory of 65535 entries with 8 MiB tables each cannot make a check
 * read 512 GiB: 1 GiB of tables describes 128 bitmaps of qemu's largest
 * size even with 512-byte clusters. */
#define QCOW2_BME_MAX_TABLES_BYTES   (1ull << 30)

/* ---- bitmap table entry (docs/qcow2.md, "Bitmaps") ------------------------- */

#define QCOW2_BMT_RESERVED_MASK 0xff000000000001feull
#define QCOW2_BMT_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_BMT_ALL_ONES      1ull

/* ---- in-memory form -------------------------------------------------------- */

struct qcow2_bitmap_bits; /* qcow2-bitmap-data.c */

/* One directory entry as read (CPU-endian). */
struct qcow2_bitmap {
    char *name;                 /* up to the first NUL of the name field */
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    uint32_t flags;             /* QCOW2_BME_FLAG_* */
    uint8_t granularity_bits;
    uint64_t entry_pos;         /* byte offset of the entry in the directory */
};

struct qcow2_bitmap_dir {
    struct qcow2_bitmap *bm;
    uint32_t nb;
};

/* True when the image holds bitmaps qemu loads: a v3 image with autoclear
 * bit 0 set and a bitmaps extension.  An extension without the bit is
 * what a program lacking bitmap support left behind: qemu ignores it
 * (every bitmap in it is inconsistent) and drops it on its next
 * read-write open. */
bool qcow2_bitmaps_present(const struct qcow2_state *s);

/* Parses the directory in @dir (@size bytes, as read from the image) as
 * qemu's bitmap_list_load does: exactly @nb_bitmaps entries filling
 * @size, no extra data, every entry within qemu's constraints for an image
 * of @cluster_size and @virtual_size.  On success fills @out (free with
 * qcow2_bitmap_dir_free); on failure sets @errp (IC_ERR_CORRUPT) with
 * qemu's wording and leaves @out empty. */
int qcow2_bitmap_dir_parse(const uint8_t *dir, uint64_t size, uint32_t nb_bitmaps,
                           uint32_t cluster_size, uint64_t virtual_size,
                           struct qcow2_bitmap_dir *out, ic_error **errp);

/* Reads the directory the header extension points to and parses it. */
int qcow2_bitmap_dir_load(struct ic_image *img, struct qcow2_bitmap_dir *out, ic_error **errp);

void qcow2_bitmap_dir_free(struct qcow2_bitmap_dir *d);

/* qemu's qcow2_load_dirty_bitmaps without loading any data: the
 * directory (qcow2_bitmap_dir_load), unique names, and for every bitmap
 * not in use a table whose entries are valid and whose size is what the
 * disk needs.  An image failing this is one qemu refuses to open; its
 * error names the bitmap in qemu's words. */
int qcow2_bitmaps_load(struct ic_image *img, struct qcow2_bitmap_dir *out, ic_error **errp);

/* The refusal of a change of guest data in an open for check and repair
 * (bitmaps_guard, design note 4): always sets @errp (IC_ERR_UNSUPPORTED,
 * naming the bitmaps) and returns -ENOTSUP.  Reads the directory for the
 * names; writes nothing. */
int qcow2_bitmaps_refuse_write(struct ic_image *img, ic_error **errp);

/* For an image opened with bitmaps_guard set: 0 otherwise; else the
 * refusal of an op that would change guest data, set in @errp when given
 * and recorded as the data-path error (ic_image_fail) when not. */
int qcow2_bitmaps_guard(struct ic_image *img, ic_error **errp);

/* Makes @d the image's bitmap directory, crash-safely (design note 5):
 * each bitmap with bits[i] gets new data clusters and a new table written
 * from bits[i] (d->bm[i].table_offset is updated); the others keep their
 * table.  Flags, granularities and names are written as @d has them.  The
 * old directory, and the old tables and data of the re-stored bitmaps,
 * are freed once the header names the new directory. */
int qcow2_bitmaps_store(struct ic_image *img, struct qcow2_bitmap_dir *d,
                        struct qcow2_bitmap_bits *const *bits, ic_error **errp);

/* Maintenance for a read-write open (design note 6), state at
 * s->bitmaps.  load_rw: loads the directory and the data of every enabled,
 * consistent bitmap (writes nothing; fails as qemu's open fails).  begin:
 * flags those in use on disk (new directory, one header switch) before
 * the first change of guest data.  mark: records guest bytes [off,
 * off+len) in each of them.  finish: stores them with the flag cleared
 * (qcow2_bitmaps_store).  free: drops the state (a bitmap still flagged
 * in use stays so on disk: inconsistent, never wrong). */
int qcow2_bitmaps_load_rw(struct ic_image *img, ic_error **errp);
int qcow2_bitmaps_begin(struct ic_image *img, ic_error **errp);
void qcow2_bitmaps_mark(struct ic_image *img, uint64_t off, uint64_t len);
int qcow2_bitmaps_finish(struct ic_image *img, ic_error **errp);
void qcow2_bitmaps_free(struct qcow2_state *s);

/* The driver ops bitmap_change and bitmap_dump (imgchain/bitmap.h). */
int qcow2_bitmap_change(struct ic_image *img, ic_bitmap_action action, const char *name,
                        uint64_t granularity, const uint64_t (*ext)[2], size_t next,
                        ic_error **errp);
int qcow2_bitmap_dump(struct ic_image *img, const char *name, ic_bitmap_extent_fn fn,
                      void *payload, ic_error **errp);

/* ---- qcow2-bitmap-table.c ---------------------------------------------------- */

/* qemu's check_table_entry: true when @entry may appear in a bitmap table
 * of an image with @cluster_size. */
bool qcow2_bitmap_table_entry_ok(uint64_t entry, uint32_t cluster_size);
/* Clusters of bitmap data a bitmap of 2^@granularity_bits bytes per bit
 * needs for @virtual_size bytes (qemu's serialization size rounded up to
 * clusters). */
uint64_t qcow2_bitmap_table_clusters(uint64_t virtual_size, uint8_t granularity_bits,
                                     uint32_t cluster_size);
/* qemu's bitmap_table_load: reads @bm's table into a new CPU-endian array
 * of bm->table_size entries; -EINVAL (with @errp naming the entry) when an
 * entry is invalid. */
int qcow2_bitmap_table_load(struct ic_image *img, const struct qcow2_bitmap *bm,
                            uint64_t **table, ic_error **errp);
/* Writes @table (@n entries) big-endian to newly allocated clusters;
 * the offset in *offset.  No flush. */
int qcow2_bitmap_table_store(struct ic_image *img, const uint64_t *table, uint32_t n,
                             uint64_t *offset);
/* Frees @bm's data clusters and table (once nothing on disk refers to
 * them). */
int qcow2_bitmap_table_free(struct ic_image *img, const struct qcow2_bitmap *bm);

/* ---- qcow2-bitmap-data.c ----------------------------------------------------- */

/* One bitmap in memory: bit n (of nbits) covers guest bytes
 * [n << granularity_bits, (n + 1) << granularity_bits). */
struct qcow2_bitmap_bits {
    uint64_t *w;                /* bit n is bit n % 64 of w[n / 64] */
    uint64_t nbits;
    uint8_t granularity_bits;
};

/* All bits clear, sized for @virtual_size; -ENOMEM. */
int qcow2_bitmap_bits_init(struct qcow2_bitmap_bits *b, uint64_t virtual_size,
                           uint8_t granularity_bits);
void qcow2_bitmap_bits_free(struct qcow2_bitmap_bits *b);
bool qcow2_bitmap_bits_get(const struct qcow2_bitmap_bits *b, uint64_t n);
/* Marks guest bytes [off, off + len) dirty: every granule they touch. */
void qcow2_bitmap_bits_mark(struct qcow2_bitmap_bits *b, uint64_t off, uint64_t len);
/* Reads consistent bitmap @bm's data (qemu's load_bitmap_data). */
int qcow2_bitmap_data_load(struct ic_image *img, const struct qcow2_bitmap *bm,
                           struct qcow2_bitmap_bits *out, ic_error **errp);
/* Writes @b's data to newly allocated clusters, one per table entry whose
 * bits are not all zero, and fills @table (@table_size entries; all-zero
 * chunks get entry 0).  No flush. */
int qcow2_bitmap_data_store(struct ic_image *img, const struct qcow2_bitmap_bits *b,
                            uint64_t *table, uint32_t table_size);
/* The first dirty extent at or after guest byte @from, clipped to
 * @virtual_size: false when there is none. */
bool qcow2_bitmap_next_extent(const struct qcow2_bitmap_bits *b, uint64_t virtual_size,
                              uint64_t from, uint64_t *start, uint64_t *len);

#endif
