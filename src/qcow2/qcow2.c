/*
 * qcow2.c - the qcow2 driver: header and extensions, open, create, info,
 * dirty and corrupt bits, flush, close, and the driver table.
 *
 * Design notes:
 *  Owns cluster 0 (header, header extensions, backing file name) and the
 *  snapshot table as read at open.
 *  1. Parse, then validate every field before any is used: each size,
 *     offset and count read from disk is checked with overflow-checked
 *     arithmetic against a named limit (qcow2.h) and the error names the
 *     field.  Nothing is written during validation, so a refused image is
 *     never modified.
 *  2. The in-memory header is CPU-endian; qcow2_header_parse() and
 *     qcow2_header_serialize() are the only byte-order boundary for it.
 *  3. Unknown header bytes (between the known header and header_length)
 *     and unknown extensions are kept and written back unchanged, in
 *     qemu's order (docs/qcow2.md, "Header extensions").  Cluster 0 is
 *     rewritten with one write.
 *  4. The dirty bit is set with one 8-byte write + flush before the first
 *     write whose refcounts may be stale (lazy refcounts), and cleared
 *     only after all metadata is flushed.  A dirty image opened read-write
 *     is repaired first (refcount rebuild, qcow2-refcount.c), as qemu does
 *     (docs/qcow2.md, "Dirty and corrupt bits").
 *  5. A corrupt image opens read-only only; corruption detected while
 *     writing sets the corrupt bit (best effort) and moves the image to
 *     the sticky ERROR state.
 *  6. Unknown autoclear bits are cleared on a read-write open, before any
 *     guest write.  The bitmaps bit stays where a bitmaps extension backs
 *     it: those bitmaps are kept true (qcow2-bitmap.c design note 6), and
 *     the driver ops that change guest data record each change in them
 *     first (the wrappers at the driver table).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "qcow2-check.h"
#include "qcow2-snapshot.h"
#include "util/endian.h"
#include "util/overflow.h"
#include "util/path.h"

/* Open flag private to create(): the L1 may still be smaller than the
 * virtual size needs (create grows it right after). */
#define QCOW2_OPEN_CREATING (1u << 30)
/* What open reads of cluster 0 when the header and the backing name fit
 * in it (qcow2_open). */
#define QCOW2_HDR_PAGE 4096u

/* ---- header parse / serialize ------------------------------------------- */

void qcow2_header_parse(struct qcow2_header *h, const uint8_t *b, size_t len)
{
    memset(h, 0, sizeof(*h));
    h->version = ic_load_be32(b + QCOW2_HDR_VERSION);
    h->backing_file_offset = ic_load_be64(b + QCOW2_HDR_BACKING_OFFSET);
    h->backing_file_size = ic_load_be32(b + QCOW2_HDR_BACKING_SIZE);
    h->cluster_bits = ic_load_be32(b + QCOW2_HDR_CLUSTER_BITS);
    h->size = ic_load_be64(b + QCOW2_HDR_SIZE);
    h->crypt_method = ic_load_be32(b + QCOW2_HDR_CRYPT_METHOD);
    h->l1_size = ic_load_be32(b + QCOW2_HDR_L1_SIZE);
    h->l1_table_offset = ic_load_be64(b + QCOW2_HDR_L1_OFFSET);
    h->refcount_table_offset = ic_load_be64(b + QCOW2_HDR_REFTABLE_OFFSET);
    h->refcount_table_clusters = ic_load_be32(b + QCOW2_HDR_REFTABLE_CLUSTERS);
    h->nb_snapshots = ic_load_be32(b + QCOW2_HDR_NB_SNAPSHOTS);
    h->snapshots_offset = ic_load_be64(b + QCOW2_HDR_SNAPSHOTS_OFFSET);
    if (h->version < 3 || len < QCOW2_HDR_V3_MIN_LEN) {
        h->refcount_order = 4;
        h->header_length = QCOW2_HDR_V2_LEN;
        return;
    }
    h->incompatible_features = ic_load_be64(b + QCOW2_HDR_INCOMPAT);
    h->compatible_features = ic_load_be64(b + QCOW2_HDR_COMPAT);
    h->autoclear_features = ic_load_be64(b + QCOW2_HDR_AUTOCLEAR);
    h->refcount_order = ic_load_be32(b + QCOW2_HDR_REFCOUNT_ORDER);
    h->header_length = ic_load_be32(b + QCOW2_HDR_HEADER_LENGTH);
    if (h->header_length > QCOW2_HDR_COMPRESSION_TYPE && len > QCOW2_HDR_COMPRESSION_TYPE)
        h->compression_type = b[QCOW2_HDR_COMPRESSION_TYPE];
}

void qcow2_header_serialize(const struct qcow2_header *h, uint8_t *b)
{
    size_t len = h->version >= 3 ? IC_MIN(h->header_length, (uint32_t)QCOW2_HDR_V3_LEN)
                                 : QCOW2_HDR_V2_LEN;
    memset(b, 0, len);
    ic_store_be32(b + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
    ic_store_be32(b + QCOW2_HDR_VERSION, h->version);
    ic_store_be64(b + QCOW2_HDR_BACKING_OFFSET, h->backing_file_offset);
    ic_store_be32(b + QCOW2_HDR_BACKING_SIZE, h->backing_file_size);
    ic_store_be32(b + QCOW2_HDR_CLUSTER_BITS, h->cluster_bits);
    ic_store_be64(b + QCOW2_HDR_SIZE, h->size);
    ic_store_be32(b + QCOW2_HDR_CRYPT_METHOD, h->crypt_method);
    ic_store_be32(b + QCOW2_HDR_L1_SIZE, h->l1_size);
    ic_store_be64(b + QCOW2_HDR_L1_OFFSET, h->l1_table_offset);
    ic_store_be64(b + QCOW2_HDR_REFTABLE_OFFSET, h->refcount_table_offset);
    ic_store_be32(b + QCOW2_HDR_REFTABLE_CLUSTERS, h->refcount_table_clusters);
    ic_store_be32(b + QCOW2_HDR_NB_SNAPSHOTS, h->nb_snapshots);
    ic_store_be64(b + QCOW2_HDR_SNAPSHOTS_OFFSET, h->snapshots_offset);
    if (h->version < 3)
        return;
    ic_store_be64(b + QCOW2_HDR_INCOMPAT, h->incompatible_features);
    ic_store_be64(b + QCOW2_HDR_COMPAT, h->compatible_features);
    ic_store_be64(b + QCOW2_HDR_AUTOCLEAR, h->autoclear_features);
    ic_store_be32(b + QCOW2_HDR_REFCOUNT_ORDER, h->refcount_order);
    ic_store_be32(b + QCOW2_HDR_HEADER_LENGTH, h->header_length);
    if (len > QCOW2_HDR_COMPRESSION_TYPE)
        b[QCOW2_HDR_COMPRESSION_TYPE] = h->compression_type;
}

/* ---- names of features ------------------------------------------------ */

struct known_feature {
    uint8_t type, bit;
    const char *name;
};

/* What qemu writes into the feature-name table. */
static const struct known_feature known_features[] = {
    { 0, QCOW2_INCOMPAT_DIRTY_BITNR, "dirty bit" },
    { 0, QCOW2_INCOMPAT_CORRUPT_BITNR, "corrupt bit" },
    { 0, QCOW2_INCOMPAT_DATA_FILE_BITNR, "external data file" },
    { 0, QCOW2_INCOMPAT_COMPRESSION_BITNR, "compression type" },
    { 0, QCOW2_INCOMPAT_EXTL2_BITNR, "extended L2 entries" },
    { 1, QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR, "lazy refcounts" },
    { 2, QCOW2_AUTOCLEAR_BITMAPS_BITNR, "bitmaps" },
    { 2, QCOW2_AUTOCLEAR_DATA_FILE_RAW_BITNR, "raw external data" },
};

static int report_unsupported(struct qcow2_state *s, uint64_t mask, ic_error **errp)
{
    char msg[512];
    size_t n = 0;
    uint64_t unnamed = 0;
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(mask & (1ull << bit)))
            continue;
        const char *name = NULL;
        for (size_t i = 0; i < s->nb_feature_names; i++)
            if (s->feature_names[i].type == 0 && s->feature_names[i].bit == bit)
                name = s->feature_names[i].name;
        if (name && n < sizeof(msg))
            n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s%s", n ? ", " : "", name);
        else
            unnamed |= 1ull << bit;
    }
    if (unnamed && n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - n, "%sUnknown incompatible feature: %" PRIx64,
                 n ? ", " : "", unnamed);
    return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Unsupported qcow2 feature(s): %s",
                        msg);
}

/* ---- header extensions ---------------------------------------------------- */

static int add_unknown_ext(struct qcow2_state *s, uint32_t magic, const uint8_t *data,
                           uint32_t len)
{
    struct qcow2_unknown_ext *nv =
        realloc(s->unknown_exts, (s->nb_unknown_exts + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    s->unknown_exts = nv;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    nv[s->nb_unknown_exts++] = (struct qcow2_unknown_ext){ magic, len, copy };
    return 0;
}

static int nomem(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* Parses the extension area [start, end) of cluster 0. */
static int read_extensions(struct ic_image *img, const uint8_t *c0, uint64_t start,
                           uint64_t end, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    bool seen_fmt = false, seen_table = false, seen_bitmaps = false, seen_crypto = false,
         seen_data = false;
    uint64_t pos = start;
    while (pos < end) {
        if (end - pos < 8)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "header extension at offset %" PRIu64 " is truncated", pos);
        uint32_t magic = ic_load_be32(c0 + pos);
        uint32_t len = ic_load_be32(c0 + pos + 4);
        pos += 8;
        /* the length is checked before the end marker, as qemu does: an
         * end marker with a length past the header area is refused */
        if (len > end - pos)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "header extension %#" PRIx32 " (length %" PRIu32
                                ") runs past the end of the header area", magic, len);
        if (magic == QCOW2_EXT_END)
            return 0;
        const uint8_t *d = c0 + pos;
        bool dup = false;
        switch (magic) {
        case QCOW2_EXT_BACKING_FORMAT:
            dup = seen_fmt;
            seen_fmt = true;
            if (len > QCOW2_MAX_BACKING_FMT)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "backing format extension too long (%" PRIu32 " bytes)", len);
            free(s->backing_fmt_ext);
            s->backing_fmt_ext = strndup((const char *)d, len);
            if (!s->backing_fmt_ext)
                return nomem(errp);
            if (strlen(s->backing_fmt_ext) != len)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "backing format name contains a NUL byte");
            break;
        case QCOW2_EXT_FEATURE_TABLE: {
            dup = seen_table;
            seen_table = true;
            size_t n = len / QCOW2_FEATURE_NAME_ENTRY;
            free(s->feature_names);
            s->feature_names = calloc(n ? n : 1, sizeof(*s->feature_names));
            if (!s->feature_names)
                return nomem(errp);
            for (size_t i = 0; i < n; i++) {
                const uint8_t *e = d + i * QCOW2_FEATURE_NAME_ENTRY;
                s->feature_names[i].type = e[0];
                s->feature_names[i].bit = e[1];
                memcpy(s->feature_names[i].name, e + 2, QCOW2_FEATURE_NAME_LEN);
                s->feature_names[i].name[QCOW2_FEATURE_NAME_LEN] = '\0';
            }
            s->nb_feature_names = n;
            break;
        }
        case QCOW2_EXT_BITMAPS:
            dup = seen_bitmaps;
            seen_bitmaps = true;
            if (len != QCOW2_BITMAPS_EXT_LEN)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "bitmaps extension has length %" PRIu32 ", not 24", len);
            memcpy(s->bitmaps_ext, d, QCOW2_BITMAPS_EXT_LEN);
            s->has_bitmaps_ext = true;
            s->nb_bitmaps = ic_load_be32(d);
            s->bitmap_dir_size = ic_load_be64(d + 8);
            s->bitmap_dir_offset = ic_load_be64(d + 16);
            /* without autoclear bit 0 qemu ignores the rest of the
             * extension (qcow2-bitmap.c design note 1) */
            if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
                break;
            if (s->nb_bitmaps == 0 || s->nb_bitmaps > QCOW2_MAX_BITMAPS)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "invalid number of bitmaps %" PRIu32, s->nb_bitmaps);
            if (ic_load_be32(d + 4) != 0)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "bitmaps extension reserved field is not zero");
            if (s->bitmap_dir_size == 0 || s->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "invalid bitmap directory size %" PRIu64, s->bitmap_dir_size);
            if (s->bitmap_dir_offset & s->cluster_offset_mask ||
                s->bitmap_dir_offset > QCOW2_MAX_HOST_OFFSET)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "invalid bitmap directory offset %#" PRIx64,
                                    s->bitmap_dir_offset);
            break;
        case QCOW2_EXT_CRYPTO:
            dup = seen_crypto;
            seen_crypto = true;
            if (len != QCOW2_CRYPTO_EXT_LEN)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "encryption header extension has length %" PRIu32, len);
            memcpy(s->crypto_ext, d, QCOW2_CRYPTO_EXT_LEN);
            s->has_crypto_ext = true;
            break;
        case QCOW2_EXT_DATA_FILE:
            dup = seen_data;
            seen_data = true;
            if (len > QCOW2_MAX_DATA_FILE_NAME || len == 0)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "invalid data file name length %" PRIu32, len);
            free(s->data_file_name);
            s->data_file_name = strndup((const char *)d, len);
            if (!s->data_file_name)
                return nomem(errp);
            if (strlen(s->data_file_name) != len)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                    "data file name contains a NUL byte");
            break;
        default:
            if (add_unknown_ext(s, magic, d, len) < 0)
                return nomem(errp);
            break;
        }
        if (dup)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "header extension %#" PRIx32 " appears twice", magic);
        uint64_t padded = IC_ALIGN_UP((uint64_t)len, 8);
        if (padded > end - pos)
            padded = end - pos;
        pos += padded;
    }
    return 0;
}

static size_t put_ext(uint8_t *b, size_t pos, uint32_t magic, const void *data, uint32_t len)
{
    ic_store_be32(b + pos, magic);
    ic_store_be32(b + pos + 4, len);
    memcpy(b + pos + 8, data, len);
    size_t padded = IC_ALIGN_UP((size_t)len, 8);
    memset(b + pos + 8 + len, 0, padded - len);
    return pos + 8 + padded;
}

/* Room needed in cluster 0 for the header, extensions and backing name. */
static uint64_t header_space(struct ic_image *img, bool with_table)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t n = s->h.version >= 3 ? s->h.header_length : QCOW2_HDR_V2_LEN;
    if (img->backing_fmt)
        n += 8 + IC_ALIGN_UP(strlen(img->backing_fmt), 8);
    if (s->data_file_name)
        n += 8 + IC_ALIGN_UP(strlen(s->data_file_name), 8);
    if (s->has_crypto_ext)
        n += 8 + QCOW2_CRYPTO_EXT_LEN;
    if (with_table)
        n += 8 + IC_ARRAY_SIZE(known_features) * QCOW2_FEATURE_NAME_ENTRY;
    if (s->has_bitmaps_ext)
        n += 8 + QCOW2_BITMAPS_EXT_LEN;
    for (size_t i = 0; i < s->nb_unknown_exts; i++)
        n += 8 + IC_ALIGN_UP((uint64_t)s->unknown_exts[i].len, 8);
    n += 8;
    if (img->backing_name)
        n += strlen(img->backing_name);
    return n;
}

int qcow2_update_header(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    bool table = s->h.version >= 3 && s->cluster_size > 4096;
    if (header_space(img, table) > s->cluster_size)
        return ic_image_fail(img, -ENOSPC, "header, extensions and backing name do not fit in "
                             "one cluster");
    uint8_t *b = calloc(1, s->cluster_size);
    if (!b)
        return -ENOMEM;
    struct qcow2_header h = s->h;
    size_t pos = h.version >= 3 ? h.header_length : QCOW2_HDR_V2_LEN;
    if (img->backing_name) {
        /* filled below once the extension area is laid out */
        h.backing_file_size = (uint32_t)strlen(img->backing_name);
    } else {
        h.backing_file_offset = 0;
        h.backing_file_size = 0;
    }
    qcow2_header_serialize(&h, b);
    if (s->unknown_header_len)
        memcpy(b + QCOW2_HDR_V3_LEN, s->unknown_header, s->unknown_header_len);
    if (img->backing_fmt)
        pos = put_ext(b, pos, QCOW2_EXT_BACKING_FORMAT, img->backing_fmt,
                      (uint32_t)strlen(img->backing_fmt));
    if (s->data_file_name)
        pos = put_ext(b, pos, QCOW2_EXT_DATA_FILE, s->data_file_name,
                      (uint32_t)strlen(s->data_file_name));
    if (s->has_crypto_ext)
        pos = put_ext(b, pos, QCOW2_EXT_CRYPTO, s->crypto_ext, QCOW2_CRYPTO_EXT_LEN);
    if (table) {
        uint8_t t[IC_ARRAY_SIZE(known_features) * QCOW2_FEATURE_NAME_ENTRY];
        memset(t, 0, sizeof(t));
        for (size_t i = 0; i < IC_ARRAY_SIZE(known_features); i++) {
            uint8_t *e = t + i * QCOW2_FEATURE_NAME_ENTRY;
            e[0] = known_features[i].type;
            e[1] = known_features[i].bit;
            memcpy(e + 2, known_features[i].name, strlen(known_features[i].name));
        }
        pos = put_ext(b, pos, QCOW2_EXT_FEATURE_TABLE, t, (uint32_t)sizeof(t));
    }
    if (s->has_bitmaps_ext)
        pos = put_ext(b, pos, QCOW2_EXT_BITMAPS, s->bitmaps_ext, QCOW2_BITMAPS_EXT_LEN);
    for (size_t i = 0; i < s->nb_unknown_exts; i++)
        pos = put_ext(b, pos, s->unknown_exts[i].magic, s->unknown_exts[i].data,
                      s->unknown_exts[i].len);
    pos += 8; /* end marker: zeroes */
    if (img->backing_name) {
        size_t n = strlen(img->backing_name);
        memcpy(b + pos, img->backing_name, n);
        h.backing_file_offset = pos;
        ic_store_be64(b + QCOW2_HDR_BACKING_OFFSET, pos);
        pos += n;
    }
    /* One write of the whole cluster: a crash leaves either the old or the
     * new header (sector writes are atomic in practice; qemu relies on the
     * same). */
    ic_io_event(img->file, IC_EV_HEADER_UPDATE);
    int ret = ic_io_pwrite(img->file, b, s->cluster_size, 0);
    free(b);
    if (ret < 0)
        return ret;
    s->h.backing_file_offset = h.backing_file_offset;
    s->h.backing_file_size = h.backing_file_size;
    return 0;
}

static int write_incompat(struct ic_image *img, uint64_t v)
{
    uint8_t b[8];
    ic_store_be64(b, v);
    ic_io_event(img->file, IC_EV_HEADER_UPDATE);
    int ret = ic_io_pwrite(img->file, b, 8, QCOW2_HDR_INCOMPAT);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    return ret;
}

int qcow2_mark_dirty(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (s->dirty_on_disk || s->h.version < 3)
        return 0;
    /* Synced before the first write whose refcount update may be delayed:
     * a crash afterwards leaves an image marked for repair. */
    int ret = write_incompat(img, s->h.incompatible_features | QCOW2_INCOMPAT_DIRTY);
    if (ret < 0)
        return ret;
    s->h.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    s->dirty_on_disk = true;
    return 0;
}

int qcow2_mark_clean(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!s->dirty_on_disk)
        return 0;
    /* Only after every refcount reached disk (the caller flushed). */
    int ret = write_incompat(img, s->h.incompatible_features & ~QCOW2_INCOMPAT_DIRTY);
    if (ret < 0)
        return ret;
    s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    s->dirty_on_disk = false;
    return 0;
}

int qcow2_signal_corruption(struct ic_image *img, bool fatal, uint64_t offset, const char *fmt,
                            ...)
{
    struct qcow2_state *s = qcow2_state(img);
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (fatal && !img->read_only && !s->corrupt && s->h.version >= 3) {
        /* Best effort, as qemu's qcow2_mark_corrupt: the message below is
         * what matters to the caller. */
        s->corrupt = true;
        if (write_incompat(img, s->h.incompatible_features | QCOW2_INCOMPAT_CORRUPT) == 0)
            s->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    }
    return ic_image_corrupt(img, fatal, offset, "%s", msg);
}

/* ---- snapshot table (reading) ------------------------------------------- */

void qcow2_free_snapshots(struct qcow2_state *s)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id_str);
        free(s->snapshots[i].name);
        free(s->snapshots[i].unknown_extra);
    }
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

/* Reads one table entry at @pos: fixed part, at most 1024 bytes of extra
 * data (the rest is skipped, check mode only), id and name.  *end is the
 * end of the name on disk.  @check: IC_OPEN_CHECK. */
static int read_snapshot_entry(struct ic_image *img, uint32_t i, uint64_t pos, bool check,
                               struct qcow2_snapshot *sn, uint64_t *end, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t h[QCOW2_SNAPSHOT_HEADER_LEN], x[QCOW2_MAX_SNAPSHOT_EXTRA];
    int ret = ic_io_pread(img->file, h, sizeof(h), pos);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read snapshot table entry %" PRIu32
                            " at %#" PRIx64 ": %s", i, pos, strerror(-ret));
    sn->entry_offset = pos;
    sn->l1_table_offset = ic_load_be64(h);
    sn->l1_size = ic_load_be32(h + 8);
    uint16_t id_len = ic_load_be16(h + 12), name_len = ic_load_be16(h + 14);
    sn->date_sec = ic_load_be32(h + 16);
    sn->date_nsec = ic_load_be32(h + 20);
    sn->vm_clock_nsec = ic_load_be64(h + 24);
    sn->vm_state_size = ic_load_be32(h + 32);
    sn->extra_data_size = ic_load_be32(h + 36);
    sn->icount = -1;
    /* limit: qemu's QCOW_MAX_SNAPSHOT_EXTRA_DATA; check -r all cuts the rest */
    uint32_t ex = sn->extra_data_size;
    if (ex > QCOW2_MAX_SNAPSHOT_EXTRA) {
        if (!check)
            return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG,
                                "snapshot table entry %" PRIu32 " at %#" PRIx64 " has too much "
                                "extra data (%" PRIu32 " bytes, at most %u); run 'imgchain check "
                                "-r all' to cut it", i, pos, ex, QCOW2_MAX_SNAPSHOT_EXTRA);
        s->snap_extra_cut++;
        ex = QCOW2_MAX_SNAPSHOT_EXTRA;
    }
    /* pos <= INT64_MAX (validated table offset + bounded span), so these
     * sums of 32- and 16-bit sizes cannot wrap; checked all the same */
    uint64_t xoff, idoff, tail;
    if (ic_add_overflow(pos, (uint64_t)QCOW2_SNAPSHOT_HEADER_LEN, &xoff) ||
        ic_add_overflow(xoff, (uint64_t)sn->extra_data_size, &idoff) ||
        ic_add_overflow(idoff, (uint64_t)id_len + name_len, &tail))
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "snapshot table entry %" PRIu32
                            " at %#" PRIx64 " runs past the largest file offset", i, pos);
    if (ex && (ret = ic_io_pread(img->file, x, ex, xoff)) < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read snapshot table entry %" PRIu32
                            " at %#" PRIx64 ": %s", i, pos, strerror(-ret));
    if (ex >= 8)
        sn->vm_state_size = ic_load_be64(x);
    if (ex >= 16) {
        sn->has_disk_size = true;
        sn->disk_size = ic_load_be64(x + 8);
    }
    if (ex >= 24) {
        sn->has_icount = true;
        sn->icount = (int64_t)ic_load_be64(x + 16);
    }
    if (ex > QCOW2_SNAPSHOT_EXTRA_QEMU) {
        sn->unknown_extra_size = ex - QCOW2_SNAPSHOT_EXTRA_QEMU;
        sn->unknown_extra = malloc(sn->unknown_extra_size);
        if (!sn->unknown_extra)
            return nomem(errp);
        memcpy(sn->unknown_extra, x + QCOW2_SNAPSHOT_EXTRA_QEMU, sn->unknown_extra_size);
    }
    /* id and name: at most 2 x 64 KiB (16-bit sizes) */
    uint8_t *str = malloc((size_t)id_len + name_len + 1);
    if (!str)
        return nomem(errp);
    if (id_len + name_len && (ret = ic_io_pread(img->file, str, (size_t)id_len + name_len,
                                                idoff)) < 0) {
        free(str);
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read snapshot table entry %" PRIu32
                            " at %#" PRIx64 ": %s", i, pos, strerror(-ret));
    }
    sn->id_str = strndup((const char *)str, id_len);
    sn->name = strndup((const char *)str + id_len, name_len);
    free(str);
    if (!sn->id_str || !sn->name)
        return nomem(errp);
    /* check reports (and -r all drops) a broken entry, as qemu opens it */
    if ((sn->l1_table_offset & s->cluster_offset_mask) && !check)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "snapshot %" PRIu32 ": L1 table offset %#" PRIx64 " unaligned "
                            "(snapshot table entry at %#" PRIx64 "); run 'imgchain check -r all' "
                            "to drop the snapshot", i, sn->l1_table_offset, pos);
    if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES && !check)
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG,
                            "snapshot %" PRIu32 ": L1 table is too large (%" PRIu32 " entries, "
                            "snapshot table entry at %#" PRIx64 "); run 'imgchain check -r all' "
                            "to drop the snapshot", i, sn->l1_size, pos);
    *end = tail;
    return 0;
}

/* qemu's qcow2_do_read_snapshots.  A normal open refuses a table qemu
 * refuses; an IC_OPEN_CHECK open loads what qemu's repair keeps (the first
 * 65536 entries, the entries within 64 MiB, 1024 bytes of extra data each)
 * and records the rest in snap_* for check to count and repair. */
int qcow2_read_snapshots(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    bool check = !!(img->flags & IC_OPEN_CHECK);
    uint32_t n = s->h.nb_snapshots;
    s->snap_dropped = s->snap_extra_cut = 0;
    s->snap_too_many = s->snap_too_big = false;
    s->snapshots_size = 0;
    if (n > QCOW2_MAX_SNAPSHOTS) {
        if (!check)
            return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "too many snapshots (%" PRIu32
                                ", at most %u); run 'imgchain check -r all' to drop the %" PRIu32
                                " overhanging ones", n, QCOW2_MAX_SNAPSHOTS,
                                n - QCOW2_MAX_SNAPSHOTS);
        s->snap_too_many = true;
        s->snap_dropped = n - QCOW2_MAX_SNAPSHOTS;
        n = QCOW2_MAX_SNAPSHOTS;
    }
    if (n == 0)
        return 0;
    s->snapshots = calloc(n, sizeof(*s->snapshots));
    if (!s->snapshots)
        return nomem(errp);
    uint64_t pos = s->h.snapshots_offset, end = pos, prev_end = pos, table_length = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        s->nb_snapshots = i + 1;
        prev_end = end;
        int ret = read_snapshot_entry(img, i, pos, check, sn, &end, errp);
        if (ret < 0)
            return ret;
        /* qemu's table_length: the extra data as kept, entries 8-aligned */
        table_length = IC_ALIGN_UP(table_length, 8) + QCOW2_SNAPSHOT_HEADER_LEN +
                       IC_MIN(sn->extra_data_size, QCOW2_MAX_SNAPSHOT_EXTRA) +
                       (end - pos - QCOW2_SNAPSHOT_HEADER_LEN - sn->extra_data_size);
        /* limits: QCOW_MAX_SNAPSHOTS_SIZE, and qemu's INT_MAX span */
        if (table_length > QCOW2_MAX_SNAPSHOTS_BYTES ||
            end - s->h.snapshots_offset > (uint64_t)INT32_MAX) {
            if (!check)
                return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG,
                                    "snapshot table is too big (over %llu bytes from entry %"
                                    PRIu32 " on); run 'imgchain check -r all' to drop the %"
                                    PRIu32 " overhanging snapshots",
                                    (unsigned long long)QCOW2_MAX_SNAPSHOTS_BYTES, i, n - i);
            /* an entry cut and then dropped counts twice, as in qemu */
            free(sn->id_str);
            free(sn->name);
            free(sn->unknown_extra);
            memset(sn, 0, sizeof(*sn));
            s->nb_snapshots = i;
            s->snap_too_big = true;
            s->snap_dropped += n - i;
            end = prev_end;
            break;
        }
        pos = IC_ALIGN_UP(end, 8);
    }
    /* as qemu: up to the end of the last name kept */
    s->snapshots_size = end - s->h.snapshots_offset;
    return 0;
}

/* ---- open ------------------------------------------------------------------ */

static int init_geometry(struct qcow2_state *s, ic_error **errp)
{
    s->cluster_bits = s->h.cluster_bits;
    s->cluster_size = 1u << s->cluster_bits;
    s->cluster_offset_mask = s->cluster_size - 1;
    s->ext_l2 = !!(s->h.incompatible_features & QCOW2_INCOMPAT_EXTL2);
    s->l2_entry_size = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1u << s->l2_bits;
    s->subcluster_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
    s->subcluster_size = 1u << s->subcluster_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;
    s->refcount_order = s->h.refcount_order;
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refblock_entries = 1u << s->refblock_bits;
    s->compression_type = s->h.compression_type;
    (void)errp;
    return 0;
}

/* Checks that a table of @bytes at @offset is aligned and addressable. */
static int validate_table(struct qcow2_state *s, uint64_t offset, uint64_t entries,
                          uint64_t entry_len, uint64_t max_bytes, const char *what,
                          ic_error **errp)
{
    uint64_t bytes, end;
    if (ic_mul_overflow(entries, entry_len, &bytes) || bytes > max_bytes)
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "%s is too large (%" PRIu64 " entries)",
                            what, entries);
    if (offset & s->cluster_offset_mask)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s offset %#" PRIx64 " is not "
                            "cluster aligned", what, offset);
    if (ic_add_overflow(offset, bytes, &end) || end > (uint64_t)INT64_MAX ||
        offset > QCOW2_MAX_HOST_OFFSET)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s offset %#" PRIx64 " is invalid",
                            what, offset);
    return 0;
}

static int open_data_file(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!(s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE)) {
        if (s->data_file_name)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "data file name extension present without the data file feature");
        if (s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "raw external data bit set without an external data file");
        return 0;
    }
    if (!s->data_file_name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "image uses an external data file but names none ('data-file' is "
                            "required)");
    s->data_file_raw = !!(s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    char *path = ic_path_resolve_backing(img->filename, s->data_file_name);
    if (!path)
        return nomem(errp);
    unsigned f = img->read_only ? 0 : IC_IO_RDWR;
    if (img->flags & IC_OPEN_NO_LOCK)
        f |= IC_IO_NOLOCK;
    if (img->flags & IC_OPEN_FORCE_SHARE)
        f |= IC_IO_SHARE;
    int ret = ic_image_open_file(img->open_file, img->payload, &s->data_file, path, f, errp);
    if (ret < 0)
        ic_error_prepend(errp, "could not open data file %s", path);
    free(path);
    return ret;
}

static void free_state(struct qcow2_state *s)
{
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->l2_slices);
    qcow2_cache_destroy(&s->refblock_cache);
    free(s->l1);
    s->l1 = NULL;
    free(s->reftable);
    s->reftable = NULL;
    free(s->unknown_header);
    s->unknown_header = NULL;
    free(s->backing_fmt_ext);
    s->backing_fmt_ext = NULL;
    free(s->feature_names);
    s->feature_names = NULL;
    for (size_t i = 0; i < s->nb_unknown_exts; i++)
        free(s->unknown_exts[i].data);
    free(s->unknown_exts);
    s->unknown_exts = NULL;
    s->nb_unknown_exts = 0;
    free(s->data_file_name);
    s->data_file_name = NULL;
    if (s->data_file)
        ic_io_close(s->data_file);
    s->data_file = NULL;
    qcow2_free_snapshots(s);
    free(s->pending_free);
    s->pending_free = NULL;
    free(s->cbuf);
    s->cbuf = NULL;
    qcow2_bitmaps_free(s);
}

static int qcow2_do_open(struct ic_image *img, unsigned flags, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t hb[QCOW2_HDR_V3_LEN];
    int64_t fsize = ic_io_get_size(img->file);
    if (fsize < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-fsize, "cannot get file size: %s",
                            strerror((int)-fsize));
    if (fsize < QCOW2_HDR_V2_LEN)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "file is too small for a qcow2 header (%" PRId64 " bytes)", fsize);
    int ret = ic_io_pread(img->file, hb, sizeof(hb), 0);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read header: %s", strerror(-ret));
    if (ic_load_be32(hb) != QCOW2_MAGIC)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "not a qcow2 image (bad magic)");
    struct qcow2_header *h = &s->h;
    qcow2_header_parse(h, hb, sizeof(hb));
    if (h->version != 2 && h->version != 3)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Unsupported qcow2 version %" PRIu32,
                            h->version);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EINVAL,
                            "Unsupported cluster size: 2^%" PRIu32, h->cluster_bits);
    uint32_t cs = 1u << h->cluster_bits;
    if (h->version == 3) {
        if (h->header_length < QCOW2_HDR_V3_MIN_LEN)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "qcow2 header too short (%" PRIu32
                                " bytes)", h->header_length);
        if (h->header_length > cs)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "qcow2 header exceeds cluster size");
        /* The specification asks for a multiple of 8; qemu 7.2 does not
         * check it and reads the extensions from header_length on, so an
         * odd length opens wherever the extensions it points to parse. */
    }
    if (h->refcount_order > 6)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "Reference count entry width too large; may not exceed 64 bits");
    /* Cluster 0 as far as it is parsed below: the header, the extension
     * area and the backing name.  The extensions are parsed up to the
     * name's offset when there is a name, so when the name and the header
     * end within the first page (every overlay qemu-img creates) that
     * page is all that is read; a chain opens every layer, once per
     * handle.  Otherwise the whole cluster. */
    size_t c0_len = cs;
    uint64_t name_end;
    if (h->backing_file_offset &&
        !ic_add_overflow(h->backing_file_offset, (uint64_t)h->backing_file_size, &name_end) &&
        name_end <= QCOW2_HDR_PAGE && h->header_length <= QCOW2_HDR_PAGE && cs > QCOW2_HDR_PAGE)
        c0_len = QCOW2_HDR_PAGE;
    uint8_t *c0 = malloc(c0_len);
    if (!c0)
        return nomem(errp);
    ret = ic_io_pread(img->file, c0, c0_len, 0);
    if (ret < 0) {
        free(c0);
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read header: %s", strerror(-ret));
    }
    if (h->version == 3 && h->header_length > QCOW2_HDR_V3_LEN) {
        s->unknown_header_len = h->header_length - QCOW2_HDR_V3_LEN;
        s->unknown_header = malloc(s->unknown_header_len);
        if (!s->unknown_header) {
            free(c0);
            return nomem(errp);
        }
        memcpy(s->unknown_header, c0 + QCOW2_HDR_V3_LEN, s->unknown_header_len);
    }
    s->cluster_offset_mask = cs - 1;
    if (h->backing_file_offset) {
        uint64_t end;
        if (h->backing_file_offset > cs || h->backing_file_size > QCOW2_MAX_BACKING_NAME ||
            ic_add_overflow(h->backing_file_offset, (uint64_t)h->backing_file_size, &end) ||
            end > cs) {
            free(c0);
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "invalid backing file offset or "
                                "size (offset %" PRIu64 ", size %" PRIu32 ")",
                                h->backing_file_offset, h->backing_file_size);
        }
        /* A name inside the header (or its unknown fields) is read where it
         * is, as qemu reads it; a header update moves it after the
         * extensions. */
    }
    uint64_t ext_start = h->version == 3 ? ic_load_be32(c0 + QCOW2_HDR_HEADER_LENGTH)
                                         : QCOW2_HDR_V2_LEN;
    uint64_t ext_end = h->backing_file_offset ? h->backing_file_offset : cs;
    ret = 0;
    if (ext_start < ext_end)
        ret = read_extensions(img, c0, ext_start, ext_end, errp);
    if (ret == 0 && h->backing_file_offset) {
        img->backing_name = strndup((const char *)c0 + h->backing_file_offset,
                                    h->backing_file_size);
        if (!img->backing_name)
            ret = nomem(errp);
        else if (strlen(img->backing_name) != h->backing_file_size)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "backing file name contains a NUL byte");
        else if (h->backing_file_size == 0) {
            free(img->backing_name);
            img->backing_name = NULL;
        }
    }
    free(c0);
    if (ret < 0)
        return ret;
    if (s->backing_fmt_ext && img->backing_name) {
        img->backing_fmt = strdup(s->backing_fmt_ext);
        if (!img->backing_fmt)
            return nomem(errp);
    }
    /* features */
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_MASK;
    if (unknown)
        return report_unsupported(s, unknown, errp);
    if (h->crypt_method > QCOW2_CRYPT_LUKS)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "invalid encryption method %" PRIu32,
                            h->crypt_method);
    if (h->crypt_method != QCOW2_CRYPT_NONE)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "image is encrypted (%s); encrypted images are not supported",
                            h->crypt_method == QCOW2_CRYPT_AES ? "AES" : "LUKS");
    if (s->has_crypto_ext)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "encryption header extension present in an unencrypted image");
    if (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
        if (h->header_length <= QCOW2_HDR_COMPRESSION_TYPE || h->compression_type == 0)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "compression type bit set but the compression type is zlib");
    } else if (h->compression_type != QCOW2_COMPRESSION_ZLIB) {
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "compression type %u without the compression type feature bit",
                            h->compression_type);
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "unknown compression type %u",
                            h->compression_type);
    if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) &&
        h->cluster_bits < QCOW2_MIN_EXTL2_CLUSTER_BITS)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "extended L2 entries need a cluster size of at least 16 KiB");
    if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && !img->read_only &&
        !(flags & IC_OPEN_CHECK))
        return ic_error_set(errp, IC_ERR_CORRUPT, EACCES,
                            "image is corrupt; cannot be opened read/write");
    s->corrupt = !!(h->incompatible_features & QCOW2_INCOMPAT_CORRUPT);
    s->dirty_on_disk = !!(h->incompatible_features & QCOW2_INCOMPAT_DIRTY);
    s->lazy_refcounts = !!(h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
    init_geometry(s, errp);
    /* sizes and tables */
    if (h->size > QCOW2_MAX_VIRTUAL_SIZE)
        return ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "virtual size %" PRIu64 " is too large",
                            h->size);
    if (h->refcount_table_clusters == 0 && !(flags & IC_OPEN_CHECK))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "Image does not contain a reference count table");
    if ((ret = validate_table(s, h->refcount_table_offset, h->refcount_table_clusters, cs,
                              QCOW2_MAX_REFTABLE_BYTES, "reference count table", errp)) < 0)
        return ret;
    if ((ret = validate_table(s, h->l1_table_offset, h->l1_size, 8, QCOW2_MAX_L1_BYTES,
                              "active L1 table", errp)) < 0)
        return ret;
    /* more than 65536 snapshots: refused by qcow2_read_snapshots, or left
     * to check in check mode (only the first 65536 are read) */
    if ((ret = validate_table(s, h->snapshots_offset, IC_MIN(h->nb_snapshots, QCOW2_MAX_SNAPSHOTS),
                              QCOW2_SNAPSHOT_HEADER_LEN + QCOW2_SNAPSHOT_EXTRA_V3_MIN - 16,
                              QCOW2_MAX_SNAPSHOTS_BYTES, "snapshot table", errp)) < 0)
        return ret;
    uint64_t need_l1 = qcow2_size_to_l1(s, h->size);
    if (need_l1 > h->l1_size && !(flags & QCOW2_OPEN_CREATING))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "L1 table is too small");
    if (h->l1_size && h->l1_table_offset == 0)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "active L1 table offset is zero");
    s->l1_vm_state_index = (uint32_t)need_l1;
    s->reftable_offset = h->refcount_table_offset;
    s->reftable_clusters = h->refcount_table_clusters;
    s->reftable_size = (uint32_t)(((uint64_t)h->refcount_table_clusters << s->cluster_bits) / 8);
    /* qemu keeps the size in whole 512-byte sectors, rounded down, and
     * writes that back on its next header update: a header size that is
     * not a multiple of 512 is a disk that many bytes shorter. */
    img->size = h->size & ~UINT64_C(511);
    img->cluster_size = cs;
    /* before anything is written (qcow2-bitmap.c design notes 2, 4, 6): a
     * normal open maintains the bitmaps, an open for repair guards them;
     * either needs bitmaps qemu can load */
    if (!img->read_only && qcow2_bitmaps_present(s)) {
        ic_error *berr = NULL;
        struct qcow2_bitmap_dir d = { 0 };
        if (flags & IC_OPEN_CHECK)
            ret = qcow2_bitmaps_load(img, &d, &berr);
        else
            ret = qcow2_bitmaps_load_rw(img, &berr);
        qcow2_bitmap_dir_free(&d);
        if (ret < 0) {
            ret = ic_error_set(errp, ic_error_kind_of(berr), ic_error_errno(berr),
                               "cannot load the persistent dirty bitmaps, so the image "
                               "cannot be written: %s", ic_error_message(berr));
            ic_error_free(berr);
            return ret;
        }
        s->bitmaps_guard = !!(flags & IC_OPEN_CHECK);
    }
    /* L1 */
    s->l1_size = h->l1_size;
    s->l1_offset = h->l1_table_offset;
    if (s->l1_size) {
        ret = qcow2_read_l1(img, s->l1_offset, s->l1_size, &s->l1);
        if (ret < 0)
            return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                                "cannot read the L1 table: %s", strerror(-ret));
    }
    /* snapshots */
    s->snapshots_offset = h->snapshots_offset;
    if ((ret = qcow2_read_snapshots(img, errp)) < 0)
        return ret;
    if (s->nb_snapshots && (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "snapshots are not allowed with an external data file");
    if ((ret = open_data_file(img, errp)) < 0)
        return ret;
    if (s->data_file_raw && img->backing_name)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "a raw external data file cannot have a backing file");
    /* caches: enough L2 tables to cover the disk, bounded */
    uint64_t tables = need_l1 ? need_l1 : 1;
    uint64_t cap = QCOW2_L2_CACHE_BYTES >> s->cluster_bits;
    if (cap < QCOW2_MIN_L2_CACHE)
        cap = QCOW2_MIN_L2_CACHE;
    if (tables > cap)
        tables = cap;
    if (tables < 4)
        tables = 4;
    if (qcow2_cache_init(&s->l2_cache, tables, s->cluster_size, IC_EV_L2_UPDATE,
                         "L2 table") < 0 ||
        qcow2_cache_init(&s->refblock_cache, QCOW2_REFBLOCK_CACHE, s->cluster_size,
                         IC_EV_REFBLOCK_UPDATE, "refcount block") < 0)
        return nomem(errp);
    s->l2_cache.depends = &s->refblock_cache;
    s->l2_cache.depends_on_flush = true;
    /* read-write preparation: dirty-bit repair, unknown autoclear bits cleared */
    if (!img->read_only) {
        bool rewrite = false;
        uint64_t clear = h->autoclear_features & ~QCOW2_AUTOCLEAR_KNOWN;
        if (qcow2_bitmaps_present(s))
            clear &= ~QCOW2_AUTOCLEAR_BITMAPS; /* kept: they are kept true */
        if (h->version >= 3 && clear) {
            h->autoclear_features &= ~clear;
            rewrite = true;
        }
        if (s->has_bitmaps_ext && !qcow2_bitmaps_present(s)) {
            /* an extension qemu ignores: dropped, as qemu drops it */
            s->has_bitmaps_ext = false;
            s->nb_bitmaps = 0;
            rewrite = true;
        }
        if (s->dirty_on_disk && !(flags & IC_OPEN_CHECK)) {
            ret = qcow2_repair_refcounts(img, errp);
            if (ret < 0) {
                ic_error_prepend(errp, "could not repair the dirty image");
                return ret;
            }
        }
        if (rewrite) {
            ret = qcow2_update_header(img);
            if (ret == 0)
                ret = ic_io_flush(img->file);
            if (ret < 0)
                return ic_error_set(errp, IC_ERR_IO, -ret, "cannot update the header: %s",
                                    strerror(-ret));
        }
    }
    return 0;
}

static int qcow2_open(struct ic_image *img, unsigned flags, ic_error **errp)
{
    int ret = qcow2_do_open(img, flags, errp);
    if (ret < 0) {
        free_state(qcow2_state(img));
        free(img->backing_name);
        img->backing_name = NULL;
        free(img->backing_fmt);
        img->backing_fmt = NULL;
    }
    return ret;
}

/* ---- flush / close ----------------------------------------------------------- */

static int qcow2_flush(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (img->read_only)
        return 0;
    int ret = qcow2_flush_pending_frees(img);
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret == 0 && s->dirty_on_disk && !(img->flags & IC_OPEN_CHECK))
        ret = qcow2_mark_clean(img);
    return ret;
}

/* The last step of a clean close: everything flushed, then the maintained
 * bitmaps stored with their in-use flag cleared, then the frees that
 * follow flushed.  A failure leaves them flagged in use (inconsistent, so
 * never trusted), and is reported. */
static int qcow2_finish(struct ic_image *img)
{
    int ret = qcow2_flush(img);
    if (ret == 0 && qcow2_state(img)->bitmaps) {
        ic_error *err = NULL;
        ret = qcow2_bitmaps_finish(img, &err);
        if (ret < 0) {
            ic_image_fail(img, ret, "%s", ic_error_message(err));
            ic_error_free(err);
        }
        if (ret == 0)
            ret = qcow2_flush(img);
    }
    return ret;
}

static void qcow2_close(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!img->read_only && img->state != IC_IMAGE_ERROR) {
        /* Errors were reported by the finish the generic layer ran before
         * (a layer it did not finish still stores its bitmaps here). */
        int ret = qcow2_finish(img);
        (void)ret;
    }
    free_state(s);
}

/* ---- probe ------------------------------------------------------------------- */

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    if (len >= 8 && ic_load_be32(buf) == QCOW2_MAGIC && ic_load_be32(buf + 4) >= 2)
        return 100;
    return 0;
}

/* ---- info ------------------------------------------------------------------ */

static int fill_snapshot_infos(struct qcow2_state *s, uint64_t cur_size, ic_snapshot_info **out)
{
    *out = NULL;
    if (!s->nb_snapshots)
        return 0;
    ic_snapshot_info *v = calloc(s->nb_snapshots, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        v[i].id = strdup(sn->id_str);
        v[i].name = strdup(sn->name);
        if (!v[i].id || !v[i].name) {
            for (uint32_t j = 0; j <= i; j++)
                ic_snapshot_info_clear(&v[j]);
            free(v);
            return -ENOMEM;
        }
        v[i].vm_state_size = sn->vm_state_size;
        v[i].date_sec = sn->date_sec;
        v[i].date_nsec = sn->date_nsec;
        v[i].vm_clock_nsec = sn->vm_clock_nsec;
        v[i].icount = sn->has_icount ? sn->icount : -1;
        v[i].disk_size = sn->has_disk_size ? sn->disk_size : cur_size;
    }
    *out = v;
    return (int)s->nb_snapshots;
}

static int qcow2_snapshot_list(struct ic_image *img, ic_snapshot_info **out, ic_error **errp)
{
    int ret = fill_snapshot_infos(qcow2_state(img), img->size, out);
    if (ret < 0)
        return nomem(errp);
    return ret;
}

/* The "bitmaps" list of qemu-img info.  A set of bitmaps qemu cannot load
 * is an error, as it is for qemu-img, which cannot open such an image. */
static int bitmap_infos(struct ic_image *img, ic_image_info *info, ic_error **errp)
{
    struct qcow2_bitmap_dir d;
    int ret = qcow2_bitmaps_load(img, &d, errp);
    if (ret < 0)
        return ret;
    ic_bitmap_info *v = calloc(d.nb, sizeof(*v));
    if (!v) {
        qcow2_bitmap_dir_free(&d);
        return nomem(errp);
    }
    for (uint32_t i = 0; i < d.nb; i++) {
        v[i] = (ic_bitmap_info){
            .name = d.bm[i].name,
            .granularity = 1ull << d.bm[i].granularity_bits,
            .in_use = !!(d.bm[i].flags & QCOW2_BME_FLAG_IN_USE),
            .enabled = !!(d.bm[i].flags & QCOW2_BME_FLAG_AUTO),
        };
        d.bm[i].name = NULL; /* moved */
    }
    uint32_t n = d.nb;
    qcow2_bitmap_dir_free(&d);
    if (ic_info_add_bitmaps(info, "bitmaps", v, n) < 0)
        return nomem(errp);
    return 0;
}

static int qcow2_get_info(struct ic_image *img, ic_image_info *info, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    info->cluster_size = s->cluster_size;
    info->dirty = !!(s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY);
    info->encrypted = s->h.crypt_method != 0;
    int ret = fill_snapshot_infos(s, img->size, &info->snapshots);
    if (ret < 0)
        return nomem(errp);
    info->nb_snapshots = (size_t)ret;
    bool v3 = s->h.version >= 3;
    ret = ic_info_add_str(info, "compat", v3 ? "1.1" : "0.10");
    if (ret == 0)
        ret = ic_info_add_str(info, "compression-type",
                              s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (ret == 0 && v3)
        ret = ic_info_add_bool(info, "lazy-refcounts", s->lazy_refcounts);
    if (ret == 0 && qcow2_bitmaps_present(s)) {
        int r = bitmap_infos(img, info, errp);
        if (r < 0)
            return r;
    }
    if (ret == 0)
        ret = ic_info_add_int(info, "refcount-bits", s->refcount_bits);
    if (ret == 0 && v3)
        ret = ic_info_add_bool(info, "corrupt", s->corrupt);
    if (ret == 0 && v3)
        ret = ic_info_add_bool(info, "extended-l2", s->ext_l2);
    if (ret == 0 && s->data_file_name)
        ret = ic_info_add_str(info, "data-file", s->data_file_name);
    if (ret == 0 && s->data_file_name)
        ret = ic_info_add_bool(info, "data-file-raw", s->data_file_raw);
    if (ret < 0)
        return nomem(errp);
    return 0;
}

/* ---- backing file, snapshot view, make_empty ------------------------------ */

static int qcow2_change_backing(struct ic_image *img, const char *name, const char *fmt,
                                ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (name && strlen(name) > QCOW2_MAX_BACKING_NAME)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "backing file name is too long");
    if (fmt && strlen(fmt) > QCOW2_MAX_BACKING_FMT)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "backing format name is too long");
    if (name && s->data_file_raw)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "a raw external data file cannot have a backing file");
    char *nn = name ? strdup(name) : NULL, *nf = name && fmt ? strdup(fmt) : NULL;
    if ((name && !nn) || (name && fmt && !nf)) {
        free(nn);
        free(nf);
        return nomem(errp);
    }
    char *on = img->backing_name, *of = img->backing_fmt;
    img->backing_name = nn;
    img->backing_fmt = nf;
    /* Everything written so far is durable before the header changes what
     * unallocated clusters read. */
    int ret = qcow2_flush(img);
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_BACKING_CHANGE);
        ret = qcow2_update_header(img);
    }
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        img->backing_name = on;
        img->backing_fmt = of;
        free(nn);
        free(nf);
        if (img->last_error)
            return ic_error_set(errp, img->last_error->kind, -ret, "%s", img->last_error->msg);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot rewrite the header: %s", strerror(-ret));
    }
    free(on);
    free(of);
    return 0;
}

static int qcow2_snapshot_load_tmp(struct ic_image *img, const char *id, const char *name,
                                   ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "a snapshot can only be loaded on a read-only image");
    struct qcow2_snapshot *sn = NULL;
    for (uint32_t i = 0; i < s->nb_snapshots && !sn; i++) {
        struct qcow2_snapshot *c = &s->snapshots[i];
        if ((!id || !strcmp(c->id_str, id)) && (!name || !strcmp(c->name, name)) && (id || name))
            sn = c;
    }
    if (!sn)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "snapshot '%s' not found",
                            id ? id : name ? name : "");
    uint64_t size = sn->has_disk_size ? sn->disk_size : img->size;
    if (size > QCOW2_MAX_VIRTUAL_SIZE || qcow2_size_to_l1(s, size) > sn->l1_size)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "snapshot '%s': L1 table is too small for its disk size", sn->id_str);
    uint64_t *l1 = NULL;
    int ret = qcow2_read_l1(img, sn->l1_table_offset, sn->l1_size, &l1);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot read the L1 table of snapshot '%s': %s", sn->id_str,
                            strerror(-ret));
    qcow2_cache_reset(&s->l2_cache);
    qcow2_cache_reset(&s->l2_slices);
    s->unalloc_start = s->unalloc_end = 0;
    free(s->l1);
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    s->l1_offset = sn->l1_table_offset;
    s->cbuf_entry = 0;
    img->size = size;
    return 0;
}

static int qcow2_driver_make_empty(struct ic_image *img, ic_error **errp)
{
    int ret = qcow2_make_empty(img);
    if (ret < 0) {
        if (img->last_error)
            return ic_error_set(errp, img->last_error->kind, -ret, "%s", img->last_error->msg);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot empty the image: %s",
                            strerror(-ret));
    }
    return 0;
}

/* ---- truncate (grow) --------------------------------------------------------- */

static int qcow2_truncate(struct ic_image *img, uint64_t size, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (size < img->size)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "shrinking a qcow2 image is not supported");
    if (size > QCOW2_MAX_VIRTUAL_SIZE)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG, "size %" PRIu64 " is too large", size);
    if (s->nb_snapshots)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "cannot resize an image that has internal snapshots");
    size = IC_ALIGN_UP(size, 512);
    uint64_t need = qcow2_size_to_l1(s, size);
    int ret = 0;
    if (need > s->l1_size)
        ret = qcow2_grow_l1(img, need);
    if (ret == 0 && s->data_file_raw)
        ret = ic_io_truncate(s->data_file, size);
    if (ret == 0) {
        uint8_t b[8];
        ic_store_be64(b, size);
        /* The L1 already covers the new size: the size write is the switch. */
        ic_io_event(img->file, IC_EV_HEADER_UPDATE);
        ret = ic_io_pwrite(img->file, b, 8, QCOW2_HDR_SIZE);
        if (ret == 0)
            ret = ic_io_flush(img->file);
    }
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot resize: %s",
                            strerror(-ret));
    s->h.size = size;
    img->size = size;
    s->l1_vm_state_index = (uint32_t)need;
    return 0;
}

/* ---- create ------------------------------------------------------------------ */

struct create_opts {
    uint32_t cluster_size;
    uint32_t version;
    uint32_t refcount_bits;
    bool lazy_refcounts;
    bool ext_l2;
    uint8_t compression_type;
    bool prealloc_metadata;
    ic_prealloc prealloc_alloc;  /* IC_PREALLOC_FALLOC or FULL; else OFF */
    const char *data_file;
    bool data_file_raw;
};

static int take_create_opts(const struct ic_create_params *p, struct create_opts *o,
                            ic_error **errp)
{
    ic_opts *opts = p->opts;
    uint64_t v;
    bool b;
    const char *str;
    int ret;
    memset(o, 0, sizeof(*o));
    o->cluster_size = 65536;
    o->version = 3;
    o->refcount_bits = 16;
    bool rb_set = false, lazy_set = false, extl2_set = false, ct_set = false;
    if ((ret = ic_opts_take_size(opts, "cluster_size", &v, errp)) < 0)
        return ret;
    if (ret > 0) {
        if (!IC_IS_POW2(v) || v < 512 || v > (2u << 20))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Cluster size must be a power of "
                                "two between 512 and 2048k");
        o->cluster_size = (uint32_t)v;
    }
    if (ic_opts_take_str(opts, "compat", &str) > 0) {
        if (!strcmp(str, "0.10") || !strcmp(str, "v2"))
            o->version = 2;
        else if (!strcmp(str, "1.1") || !strcmp(str, "v3"))
            o->version = 3;
        else
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Invalid parameter '%s' for compat",
                                str);
    }
    if ((ret = ic_opts_take_uint(opts, "refcount_bits", &v, errp)) < 0)
        return ret;
    if (ret > 0) {
        if (v == 0 || v > 64 || !IC_IS_POW2(v))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Refcount width must be a power of "
                                "two and may not exceed 64 bits");
        o->refcount_bits = (uint32_t)v;
        rb_set = true;
    }
    if ((ret = ic_opts_take_bool(opts, "lazy_refcounts", &b, errp)) < 0)
        return ret;
    if (ret > 0) {
        o->lazy_refcounts = b;
        lazy_set = b;
    }
    if ((ret = ic_opts_take_bool(opts, "extended_l2", &b, errp)) < 0)
        return ret;
    if (ret > 0) {
        o->ext_l2 = b;
        extl2_set = b;
    }
    if (ic_opts_take_str(opts, "compression_type", &str) > 0) {
        if (!strcmp(str, "zlib"))
            o->compression_type = QCOW2_COMPRESSION_ZLIB;
        else if (!strcmp(str, "zstd"))
            o->compression_type = QCOW2_COMPRESSION_ZSTD;
        else
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "Invalid parameter '%s' for compression_type", str);
        ct_set = o->compression_type != QCOW2_COMPRESSION_ZLIB;
    }
    if (ic_opts_take_str(opts, "preallocation", &str) > 0) {
        ic_prealloc m;
        if (ic_prealloc_parse(str, &m) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid parameter value: %s", str);
        o->prealloc_metadata = m == IC_PREALLOC_METADATA;
        if (m == IC_PREALLOC_FALLOC || m == IC_PREALLOC_FULL)
            o->prealloc_alloc = m;
    }
    if (ic_opts_take_str(opts, "data_file", &str) > 0 && *str)
        o->data_file = str;
    if ((ret = ic_opts_take_bool(opts, "data_file_raw", &b, errp)) < 0)
        return ret;
    if (ret > 0)
        o->data_file_raw = b;
    if (ic_opts_take_str(opts, "encryption", &str) > 0 ||
        ic_opts_take_str(opts, "encrypt.format", &str) > 0)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "encrypted images are not supported");
    if ((ret = ic_opts_check_unused(opts, "qcow2", errp)) < 0)
        return ret;
    /* combinations (qcow2_co_create) */
    if (o->version == 2) {
        if (lazy_set)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Lazy refcounts only supported with "
                                "compatibility level 1.1 and above (use compat=1.1 or greater)");
        if (rb_set && o->refcount_bits != 16)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Different refcount widths than 16 "
                                "bits require compatibility level 1.1 or above (use compat=1.1 or "
                                "greater)");
        if (extl2_set)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Extended L2 entries are only "
                                "supported with compatibility level 1.1 and above (use compat=1.1 "
                                "or greater)");
        if (ct_set)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Non-zlib compression type is only "
                                "supported with compatibility level 1.1 and above (use compat=1.1 "
                                "or greater)");
        if (o->data_file)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "External data files are only "
                                "supported with compatibility level 1.1 and above");
    }
    if (o->ext_l2 && o->cluster_size < (1u << QCOW2_MIN_EXTL2_CLUSTER_BITS))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Extended L2 entries are only supported "
                            "with cluster sizes of at least 16384 bytes");
    if (o->data_file_raw && !o->data_file)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "data-file-raw requires data-file");
    if (o->data_file_raw && p->backing_file)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Backing file and data-file-raw cannot be used at the same time");
    if (o->prealloc_alloc != IC_PREALLOC_OFF && o->data_file)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "preallocation=%s with an "
                            "external data file is not supported by imgchain",
                            ic_prealloc_name(o->prealloc_alloc));
    if ((o->prealloc_metadata || o->prealloc_alloc != IC_PREALLOC_OFF) && p->backing_file &&
        !o->ext_l2)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Backing file and preallocation can "
                            "only be used at the same time if extended_l2 is on");
    if (o->data_file_raw)
        o->prealloc_metadata = true; /* every cluster must be mapped (qemu does the same) */
    if (p->size > QCOW2_MAX_VIRTUAL_SIZE)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG, "image size is too large");
    return 0;
}

/* Opens a freshly formatted image on @file without taking ownership. */
static int open_temp(struct ic_image **out, ic_io *file, const struct ic_create_params *p,
                     const char *backing_name, const char *backing_fmt, ic_error **errp)
{
    struct ic_image *img = calloc(1, sizeof(*img));
    if (!img)
        return nomem(errp);
    img->opaque = calloc(1, sizeof(struct qcow2_state));
    img->filename = strdup(p->filename);
    if (!img->opaque || !img->filename) {
        free(img->opaque);
        free(img->filename);
        free(img);
        return nomem(errp);
    }
    img->drv = &ic_driver_qcow2;
    img->file = file;
    img->flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING;
    img->read_only = false;
    img->open_file = p->open_file;
    img->payload = p->payload;
    (void)backing_name;
    (void)backing_fmt;
    int ret = qcow2_open(img, IC_OPEN_RDWR | QCOW2_OPEN_CREATING, errp);
    if (ret < 0) {
        free(img->opaque);
        free(img->filename);
        free(img);
        return ret;
    }
    *out = img;
    return 0;
}

static void close_temp(struct ic_image *img)
{
    if (!img)
        return;
    free_state(qcow2_state(img));
    ic_error_free(img->last_error);
    free(img->backing_name);
    free(img->backing_fmt);
    free(img->filename);
    free(img->opaque);
    free(img);
}

static int qcow2_create(ic_io *file, const struct ic_create_params *p, ic_error **errp)
{
    struct create_opts o;
    int ret = take_create_opts(p, &o, errp);
    if (ret < 0)
        return ret;
    uint64_t size = IC_ALIGN_UP(p->size, 512);
    uint32_t cs = o.cluster_size;
    uint32_t cbits = (uint32_t)__builtin_ctz(cs);
    uint32_t rorder = (uint32_t)__builtin_ctz(o.refcount_bits);
    /* The data file first: a failure leaves the image file untouched. */
    ic_io *data = NULL;
    if (o.data_file) {
        char *dpath = ic_path_resolve_backing(p->filename, o.data_file);
        if (!dpath)
            return nomem(errp);
        ret = ic_image_open_file(p->open_file, p->payload, &data, dpath,
                                 IC_IO_RDWR | IC_IO_CREATE, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "could not create data file %s", dpath);
            free(dpath);
            return ret;
        }
        free(dpath);
        ret = ic_io_truncate(data, 0);
        if (ret == 0 && o.data_file_raw)
            ret = ic_io_truncate(data, size);
        if (ret == 0)
            ret = ic_io_flush(data);
        ic_io_close(data);
        if (ret < 0)
            return ic_error_set(errp, IC_ERR_IO, -ret, "cannot format data file: %s",
                                strerror(-ret));
    }
    /* Step 1 (qemu's qcow2_co_create): header, reftable at cluster 1 with
     * one refblock at cluster 2 counting clusters 0-2, no L1 yet. */
    ret = ic_io_truncate(file, 0);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot truncate: %s", strerror(-ret));
    uint8_t *buf = calloc(3, cs);
    if (!buf)
        return nomem(errp);
    struct qcow2_header h = {
        .version = o.version,
        .cluster_bits = cbits,
        .size = size,
        .refcount_table_offset = cs,
        .refcount_table_clusters = 1,
        .refcount_order = o.version >= 3 ? rorder : 4,
        .header_length = o.version >= 3 ? QCOW2_HDR_V3_LEN : QCOW2_HDR_V2_LEN,
        .compression_type = o.compression_type,
    };
    if (o.version >= 3) {
        if (o.lazy_refcounts)
            h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        if (o.ext_l2)
            h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
        if (o.compression_type != QCOW2_COMPRESSION_ZLIB)
            h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
        if (o.data_file)
            h.incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
        if (o.data_file_raw)
            h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    }
    qcow2_header_serialize(&h, buf);
    if (o.data_file) {
        /* the name must be in the header before the first open */
        size_t pos = h.header_length;
        put_ext(buf, pos, QCOW2_EXT_DATA_FILE, o.data_file, (uint32_t)strlen(o.data_file));
    }
    ic_store_be64(buf + cs, 2ull * cs);
    struct qcow2_state tmp = { .refcount_bits = 1u << h.refcount_order };
    for (uint32_t i = 0; i < 3; i++)
        qcow2_refblock_set(&tmp, buf + 2ull * cs, i, 1);
    ic_io_event(file, IC_EV_HEADER_UPDATE);
    ret = ic_io_pwrite(file, buf, 3ull * cs, 0);
    free(buf);
    if (ret == 0)
        ret = ic_io_flush(file);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot write the new image: %s",
                            strerror(-ret));
    /* Step 2: open it, record backing file and extensions, allocate the L1
     * through the normal allocator (it lands at cluster 3), preallocate. */
    struct ic_image *img = NULL;
    ret = open_temp(&img, file, p, p->backing_file, p->backing_format, errp);
    if (ret < 0)
        return ret;
    struct qcow2_state *s = qcow2_state(img);
    if (p->backing_file) {
        img->backing_name = strdup(p->backing_file);
        if (!img->backing_name) {
            close_temp(img);
            return nomem(errp);
        }
        if (p->backing_format && !(img->backing_fmt = strdup(p->backing_format))) {
            close_temp(img);
            return nomem(errp);
        }
    }
    ret = qcow2_update_header(img);
    if (ret < 0) {
        ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "cannot write the header: %s",
                     img->last_error ? img->last_error->msg : strerror(-ret));
        close_temp(img);
        return ret;
    }
    uint64_t need = qcow2_size_to_l1(s, size);
    if (need)
        ret = qcow2_grow_l1(img, need);
    if (ret == 0 && o.prealloc_metadata && size)
        ret = qcow2_preallocate_metadata(img, errp);
    if (ret == 0 && o.prealloc_alloc != IC_PREALLOC_OFF && size) {
        /* every cluster allocated in the file (fallocated or written) */
        ret = qcow2_cluster_preallocate(img, 0, size, o.prealloc_alloc);
        if (ret == 0 && s->dirty_on_disk)
            ret = qcow2_mark_clean(img);
    }
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret < 0) {
        if (!errp || !*errp)
            ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                         "cannot format the new image: %s",
                         img->last_error ? img->last_error->msg : strerror(-ret));
        close_temp(img);
        return ret;
    }
    close_temp(img);
    return 0;
}

/* ---- ops that change guest data: refused while bitmaps_guard is set
 * (qcow2-bitmap.c note 4), else recorded in the maintained bitmaps before
 * the change (note 6) ------------------------------------------------------ */

/* Before a change of guest data at [off, off+len): refused while the
 * guard is set; the maintained bitmaps flagged in use on disk before the
 * first change (a no-op after it, or without bitmaps); the range marked
 * dirty in them. */
static int bitmaps_record(struct ic_image *img, uint64_t off, uint64_t len)
{
    int ret = qcow2_bitmaps_guard(img, NULL);
    if (ret < 0)
        return ret;
    ic_error *err = NULL;
    if ((ret = qcow2_bitmaps_begin(img, &err)) < 0) {
        ic_image_fail(img, ret, "%s", ic_error_message(err));
        ic_error_free(err);
        return ret;
    }
    qcow2_bitmaps_mark(img, off, len);
    return 0;
}

static int guarded_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    int ret = bitmaps_record(img, off, len);
    if (ret < 0)
        return ret;
    return qcow2_cluster_pwrite(img, buf, len, off);
}

static int guarded_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = bitmaps_record(img, off, len);
    if (ret < 0)
        return ret;
    return qcow2_cluster_pwrite_zeroes(img, off, len, flags);
}

static int guarded_discard(struct ic_image *img, uint64_t off, uint64_t len)
{
    int ret = bitmaps_record(img, off, len);
    if (ret < 0)
        return ret;
    return qcow2_cluster_discard(img, off, len);
}

static int guarded_pwrite_compressed(struct ic_image *img, const void *buf, size_t len,
                                     uint64_t off)
{
    int ret = bitmaps_record(img, off, len);
    if (ret < 0)
        return ret;
    return qcow2_cluster_pwrite_compressed(img, buf, len, off);
}

static int guarded_pwrite_precompressed(struct ic_image *img, const void *cbuf, size_t clen,
                                        uint64_t off)
{
    /* one cluster (or the shorter last one) */
    int ret = bitmaps_record(img, off, IC_MIN((uint64_t)img->cluster_size, img->size - off));
    if (ret < 0)
        return ret;
    return qcow2_cluster_pwrite_precompressed(img, cbuf, clen, off);
}

static int guarded_truncate(struct ic_image *img, uint64_t size, ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    if (ret == 0 && qcow2_bitmaps_present(qcow2_state(img)))
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "Can't resize an image which has bitmaps");
    return ret < 0 ? ret : qcow2_truncate(img, size, errp);
}

static int guarded_snapshot_create(struct ic_image *img, const ic_snapshot_info *info,
                                   ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    return ret < 0 ? ret : qcow2_snapshot_create(img, info, errp);
}

static int guarded_snapshot_goto(struct ic_image *img, const char *id_or_name, ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    if (ret < 0)
        return ret;
    /* any cluster may change: all of the disk is dirty */
    if ((ret = qcow2_bitmaps_begin(img, errp)) < 0)
        return ret;
    qcow2_bitmaps_mark(img, 0, img->size);
    return qcow2_snapshot_goto(img, id_or_name, errp);
}

static int guarded_snapshot_delete(struct ic_image *img, const char *id, const char *name,
                                   ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    return ret < 0 ? ret : qcow2_snapshot_delete(img, id, name, errp);
}

static int guarded_change_backing(struct ic_image *img, const char *name, const char *fmt,
                                  ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    return ret < 0 ? ret : qcow2_change_backing(img, name, fmt, errp);
}

static int guarded_make_empty(struct ic_image *img, ic_error **errp)
{
    int ret = qcow2_bitmaps_guard(img, errp);
    if (ret < 0)
        return ret;
    /* what the guest reads stays (the base holds it now), but every
     * cluster of this layer changes: marked, as over-marking is safe */
    if ((ret = qcow2_bitmaps_begin(img, errp)) < 0)
        return ret;
    qcow2_bitmaps_mark(img, 0, img->size);
    return qcow2_driver_make_empty(img, errp);
}

const struct ic_driver ic_driver_qcow2 = {
    .name = "qcow2",
    .instance_size = sizeof(struct qcow2_state),
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .pread = qcow2_cluster_pread,
    .pwrite = guarded_pwrite,
    .pwrite_zeroes = guarded_pwrite_zeroes,
    .discard = guarded_discard,
    .pwrite_compressed = guarded_pwrite_compressed,
    .compress = qcow2_cluster_compress,
    .pwrite_precompressed = guarded_pwrite_precompressed,
    .flush = qcow2_flush,
    .finish = qcow2_finish,
    .block_status = qcow2_cluster_block_status,
    .truncate = guarded_truncate,
    .resize = qcow2_resize,
    .amend = qcow2_amend,
    .measure = qcow2_measure,
    .check = qcow2_check,
    .snapshot_create = guarded_snapshot_create,
    .snapshot_goto = guarded_snapshot_goto,
    .snapshot_delete = guarded_snapshot_delete,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .change_backing = guarded_change_backing,
    .make_empty = guarded_make_empty,
    .bitmap_change = qcow2_bitmap_change,
    .bitmap_dump = qcow2_bitmap_dump,
    .get_info = qcow2_get_info,
};
