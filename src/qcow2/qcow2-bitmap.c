/*
 * qcow2-bitmap.c - persistent dirty bitmaps: the bitmap directory.
 *
 * Design notes:
 *  Owns the bitmap directory (the area the bitmaps header extension points
 *  to) and, with it, the decision whether an image holds bitmaps.
 *  1. An image holds bitmaps when autoclear bit 0 is set and the bitmaps
 *     extension is present (v3 only: a v2 header has no autoclear field;
 *     docs/qcow2.md, "Bitmaps").
 *     That is qemu's rule: with the bit clear, qemu ignores the extension
 *     and its bitmaps are lost to every reader, so there is nothing left
 *     to keep; the read-write open drops such an extension as qemu does
 *     (its clusters are then leaks that check -r frees).
 *  2. Writing guest data under a consistent bitmap without marking it
 *     would make it silently wrong, and clearing the autoclear bit (what
 *     the spec asks of a writer that does not maintain them) would throw
 *     away what a backup tool relies on.  So a read-write open keeps them
 *     true (note 6) and keeps the bit; an image whose bitmaps qemu cannot
 *     load (so neither can we keep them) is not opened read-write at all,
 *     before anything is written.  Read-only opens read the image as
 *     usual whatever its bitmaps.
 *  3. Parsing follows qemu's bitmap_list_load and check_dir_entry: the
 *     entry count must match the extension, the entries must fill the
 *     directory exactly, extra data is refused, and each entry must fit
 *     qemu's limits (qcow2-bitmap.h).  Every size comes from the disk and
 *     is checked before it is used; names are copied up to a NUL, as qemu
 *     copies them.
 *  4. Check and repair (an IC_OPEN_CHECK read-write open) need no
 *     maintenance: the repairs change refcounts, COPIED flags, the snapshot
 *     table and the dirty and corrupt bits, never what the guest reads, so
 *     every bitmap stays true as it is and is kept with its autoclear bit.  Such an
 *     open needs bitmaps qemu can load (the refcount rebuild must count
 *     their clusters) and sets bitmaps_guard: every driver op that would
 *     change guest data or snapshots is refused with the same message.
 *  5. Storing (qcow2_bitmaps_store) never writes over anything the header
 *     reaches: new data clusters, new tables and a new directory go to
 *     free clusters, the refcounts and everything else are flushed, then
 *     one header write switches the extension to the new directory; the
 *     old structures are freed after it.  A crash before the switch leaves
 *     the old directory (and leaked clusters), after it the new one.
 *  6. Maintenance, as qemu does it: a read-write open loads the data of
 *     every enabled (auto) bitmap that is not in use; before the first
 *     change of guest data it flags them in use on disk (a new directory,
 *     one header switch, flushed), every write, zero write, discard and
 *     compressed write then sets the bits of the granules it touches
 *     before it reaches the disk, a snapshot apply or an emptying of the
 *     image marks the whole disk, and the clean close stores them with the
 *     flag cleared (note 5).  A crash anywhere leaves them in use, which
 *     qemu reads as inconsistent, never as clean and wrong.  Disabled
 *     bitmaps record nothing and in-use ones are kept exactly as they
 *     are; neither is rewritten.  An open that changes no guest data
 *     (rebase -u, snapshot -c/-d) writes no bitmap at all.  Resizing is
 *     refused, as qemu refuses it.
 *  7. qemu-img bitmap's operations (qcow2_bitmap_change) first store the
 *     maintained bitmaps (a directory without our in-use flags), then
 *     change the directory in memory and store it (note 5) with new data
 *     for the bitmap they rewrite (add: all clear; clear; merge: the
 *     target's bits ORed with the source's extents), so each is
 *     crash-safe on its own; a removed bitmap's clusters are freed after
 *     the switch (an in-use one's unreadable table leaks, as with qemu).
 *     Removing the last bitmap drops the extension and autoclear bit 0, as
 *     qemu does.  Enabling a bitmap makes this open maintain it (its data
 *     is loaded), disabling stops it.  Errors carry qemu's words.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2-bitmap.h"
#include "util/endian.h"
#include "util/overflow.h"

/* The refusal message names bitmaps up to this many bytes of names, then
 * counts the rest: a directory may hold 65535 names of 1023 bytes. */
#define BITMAP_NAMES_MSG_MAX 240

bool qcow2_bitmaps_present(const struct qcow2_state *s)
{
    return s->h.version >= 3 && (s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
           s->has_bitmaps_ext;
}

void qcow2_bitmap_dir_free(struct qcow2_bitmap_dir *d)
{
    for (uint32_t i = 0; i < d->nb; i++)
        free(d->bm[i].name);
    free(d->bm);
    d->bm = NULL;
    d->nb = 0;
}

/* qemu's check_dir_entry: true when the entry may be loaded. */
static bool entry_ok(const struct qcow2_bitmap *b, uint8_t type, uint16_t name_size,
                     uint32_t cluster_size, uint64_t virtual_size)
{
    if (b->table_size == 0 || b->table_offset == 0 || b->table_offset % cluster_size ||
        b->table_size > QCOW2_BME_MAX_TABLE_SIZE ||
        b->granularity_bits > QCOW2_BME_MAX_GRANULARITY ||
        b->granularity_bits < QCOW2_BME_MIN_GRANULARITY || (b->flags & QCOW2_BME_RESERVED_FLAGS) ||
        name_size > QCOW2_BME_MAX_NAME || type != QCOW2_BME_TYPE_DIRTY)
        return false;
    /* <= 2^27 entries x 2 MiB clusters: no overflow; then <= 2^29 bytes */
    uint64_t phys = (uint64_t)b->table_size * cluster_size;
    if (phys > QCOW2_BME_MAX_PHYS_SIZE)
        return false;
    /* A consistent bitmap must cover the disk; an in-use one may have a
     * stale size (an unfinished resize).  2^32 bits << 31 fits in 64 bits. */
    if (!(b->flags & QCOW2_BME_FLAG_IN_USE) &&
        virtual_size > ((phys * 8) << b->granularity_bits))
        return false;
    return true;
}

int qcow2_bitmap_dir_parse(const uint8_t *dir, uint64_t size, uint32_t nb_bitmaps,
                           uint32_t cluster_size, uint64_t virtual_size,
                           struct qcow2_bitmap_dir *out, ic_error **errp)
{
    out->bm = NULL;
    out->nb = 0;
    if (size == 0)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "Requested bitmap directory size is zero");
    if (size > QCOW2_MAX_BITMAP_DIR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "Requested bitmap directory size is too big");
    if (nb_bitmaps == 0 || nb_bitmaps > QCOW2_MAX_BITMAPS)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "invalid number of bitmaps %" PRIu32,
                            nb_bitmaps);
    /* each entry takes at least 24 bytes, so a directory bounded to 64 MiB
     * bounds the count before the array is sized by it */
    if ((uint64_t)nb_bitmaps * QCOW2_BME_HEADER_LEN > size)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "Less bitmaps found than specified in header extension");
    out->bm = calloc(nb_bitmaps, sizeof(*out->bm));
    if (!out->bm)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    uint64_t pos = 0;
    int ret = 0;
    while (pos < size) {
        if (size - pos < QCOW2_BME_HEADER_LEN) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "Broken bitmap directory");
            break;
        }
        if (out->nb == nb_bitmaps) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                               "More bitmaps found than specified in header extension");
            break;
        }
        const uint8_t *e = dir + pos;
        struct qcow2_bitmap b = {
            .table_offset = ic_load_be64(e + QCOW2_BME_TABLE_OFFSET),
            .table_size = ic_load_be32(e + QCOW2_BME_TABLE_SIZE),
            .flags = ic_load_be32(e + QCOW2_BME_FLAGS),
            .granularity_bits = e[QCOW2_BME_GRANULARITY],
            .entry_pos = pos,
        };
        uint8_t type = e[QCOW2_BME_TYPE];
        uint16_t name_size = ic_load_be16(e + QCOW2_BME_NAME_SIZE);
        uint32_t extra = ic_load_be32(e + QCOW2_BME_EXTRA_SIZE);
        /* 24 + 2^32 + 2^16 cannot wrap a uint64_t */
        uint64_t elen = IC_ALIGN_UP((uint64_t)QCOW2_BME_HEADER_LEN + extra + name_size, 8);
        if (elen > size - pos) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "Broken bitmap directory");
            break;
        }
        const char *name = (const char *)e + QCOW2_BME_HEADER_LEN + extra;
        if (extra != 0) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, ENOTSUP, "Bitmap extra data is not supported");
            break;
        }
        if (!entry_ok(&b, type, name_size, cluster_size, virtual_size)) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                               "Bitmap '%.*s' doesn't satisfy the constraints",
                               (int)IC_MIN(name_size, (uint16_t)QCOW2_BME_MAX_NAME), name);
            break;
        }
        b.name = strndup(name, name_size);
        if (!b.name) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            break;
        }
        out->bm[out->nb++] = b;
        pos += elen;
    }
    if (ret == 0 && out->nb != nb_bitmaps)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                           "Less bitmaps found than specified in header extension");
    uint64_t tables = 0;
    for (uint32_t i = 0; ret == 0 && i < out->nb; i++)
        tables += (uint64_t)out->bm[i].table_size * 8; /* <= 2^16 * 2^30: no overflow */
    if (ret == 0 && tables > QCOW2_BME_MAX_TABLES_BYTES)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EFBIG, "the bitmap tables take %" PRIu64
                           " bytes together, more than imgchain reads (%llu)", tables,
                           (unsigned long long)QCOW2_BME_MAX_TABLES_BYTES);
    if (ret < 0)
        qcow2_bitmap_dir_free(out);
    return ret;
}

int qcow2_bitmap_dir_load(struct ic_image *img, struct qcow2_bitmap_dir *out, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    out->bm = NULL;
    out->nb = 0;
    if (!s->has_bitmaps_ext)
        return 0;
    /* the extension's size was bounded to QCOW2_MAX_BITMAP_DIR at open */
    if (s->bitmap_dir_size == 0 || s->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "invalid bitmap directory size %" PRIu64, s->bitmap_dir_size);
    uint8_t *dir = malloc((size_t)s->bitmap_dir_size);
    if (!dir)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM,
                            "Failed to allocate space for bitmap directory");
    int ret = ic_io_pread(img->file, dir, (size_t)s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret < 0) {
        free(dir);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "Failed to read bitmap directory: %s", strerror(-ret));
    }
    ret = qcow2_bitmap_dir_parse(dir, s->bitmap_dir_size, s->nb_bitmaps, s->cluster_size,
                                 img->size, out, errp);
    free(dir);
    return ret;
}

/* A bitmap's name with its directory position, for sorting. */
struct named {
    const char *name;
    uint32_t pos;
    bool in_use;
};

static int by_name(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* qemu loads bitmaps in directory order: an in-use bitmap whose name was
 * loaded before is skipped, any other repeated name is an error.  Sorting
 * keeps this linearithmic for 65535 names. */
static int check_names(const struct qcow2_bitmap_dir *d, ic_error **errp)
{
    if (d->nb < 2)
        return 0;
    struct named *v = malloc(d->nb * sizeof(*v));
    if (!v)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    for (uint32_t i = 0; i < d->nb; i++)
        v[i] = (struct named){ d->bm[i].name, i, !!(d->bm[i].flags & QCOW2_BME_FLAG_IN_USE) };
    qsort(v, d->nb, sizeof(*v), by_name);
    int ret = 0;
    for (uint32_t i = 1; i < d->nb && ret == 0; i++)
        if (!strcmp(v[i - 1].name, v[i].name) && !v[i].in_use)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EEXIST, "Bitmap already exists: %s",
                               v[i].name);
    free(v);
    return ret;
}

int qcow2_bitmaps_load(struct ic_image *img, struct qcow2_bitmap_dir *out, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = qcow2_bitmap_dir_load(img, out, errp);
    if (ret == 0)
        ret = check_names(out, errp);
    for (uint32_t i = 0; ret == 0 && i < out->nb; i++) {
        const struct qcow2_bitmap *bm = &out->bm[i];
        if (bm->flags & QCOW2_BME_FLAG_IN_USE)
            continue; /* its data is not used, so qemu does not read it */
        uint64_t *table = NULL;
        ret = qcow2_bitmap_table_load(img, bm, &table, errp);
        free(table);
        if (ret == 0 && qcow2_bitmap_table_clusters(img->size, bm->granularity_bits,
                                                    s->cluster_size) != bm->table_size)
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "Could not read bitmap '%s' from "
                               "image: its table has %" PRIu32 " entries, the disk needs %"
                               PRIu64, bm->name, bm->table_size,
                               qcow2_bitmap_table_clusters(img->size, bm->granularity_bits,
                                                           s->cluster_size));
    }
    if (ret < 0)
        qcow2_bitmap_dir_free(out);
    return ret;
}

/* Appends @name to @buf, control bytes shown as '?' so the message stays
 * one line. */
static size_t put_name(char *buf, size_t cap, size_t n, const char *name)
{
    for (const char *p = name; *p && n + 1 < cap; p++)
        buf[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
    buf[n] = '\0';
    return n;
}

int qcow2_bitmaps_refuse_write(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_bitmap_dir d;
    ic_error *derr = NULL;
    if (qcow2_bitmap_dir_load(img, &d, &derr) < 0) {
        int r = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                             "image has %" PRIu32 " persistent dirty bitmap(s) (bitmap directory "
                             "unreadable: %s) and is open for check and repair only; refusing "
                             "to change its guest data", s->nb_bitmaps, ic_error_message(derr));
        ic_error_free(derr);
        return r;
    }
    char names[BITMAP_NAMES_MSG_MAX + 64];
    size_t n = 0;
    uint32_t shown = 0;
    names[0] = '\0';
    for (; shown < d.nb; shown++) {
        size_t len = strlen(d.bm[shown].name);
        if (shown && n + 2 + len > BITMAP_NAMES_MSG_MAX)
            break;
        if (shown)
            n = put_name(names, BITMAP_NAMES_MSG_MAX + 1, n, ", ");
        /* a first name longer than the limit is cut */
        n = put_name(names, BITMAP_NAMES_MSG_MAX + 1, n, d.bm[shown].name);
    }
    if (shown < d.nb)
        snprintf(names + n, sizeof(names) - n, ", and %" PRIu32 " more", d.nb - shown);
    qcow2_bitmap_dir_free(&d);
    return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                        "image has persistent dirty bitmaps (%s) and is open for check and "
                        "repair only; refusing to change its guest data", names);
}

int qcow2_bitmaps_guard(struct ic_image *img, ic_error **errp)
{
    if (!qcow2_state(img)->bitmaps_guard)
        return 0;
    ic_error *err = NULL;
    int ret = qcow2_bitmaps_refuse_write(img, &err);
    if (errp)
        ic_error_propagate(errp, err);
    else {
        ic_image_fail(img, ret, "%s", ic_error_message(err));
        ic_error_free(err);
    }
    return ret;
}

/* Serialized size of @d (entries padded to 8 bytes, no extra data). */
static uint64_t dir_bytes(const struct qcow2_bitmap_dir *d)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < d->nb; i++)
        n += IC_ALIGN_UP((uint64_t)QCOW2_BME_HEADER_LEN + strlen(d->bm[i].name), 8);
    return n;
}

static void dir_serialize(const struct qcow2_bitmap_dir *d, uint8_t *buf)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < d->nb; i++) {
        const struct qcow2_bitmap *b = &d->bm[i];
        size_t nlen = strlen(b->name);
        uint8_t *e = buf + pos;
        ic_store_be64(e + QCOW2_BME_TABLE_OFFSET, b->table_offset);
        ic_store_be32(e + QCOW2_BME_TABLE_SIZE, b->table_size);
        ic_store_be32(e + QCOW2_BME_FLAGS, b->flags);
        e[QCOW2_BME_TYPE] = QCOW2_BME_TYPE_DIRTY;
        e[QCOW2_BME_GRANULARITY] = b->granularity_bits;
        ic_store_be16(e + QCOW2_BME_NAME_SIZE, (uint16_t)nlen);
        ic_store_be32(e + QCOW2_BME_EXTRA_SIZE, 0);
        memcpy(e + QCOW2_BME_HEADER_LEN, b->name, nlen);
        pos += IC_ALIGN_UP((uint64_t)QCOW2_BME_HEADER_LEN + nlen, 8);
    }
}

int qcow2_bitmaps_store(struct ic_image *img, struct qcow2_bitmap_dir *d,
                        struct qcow2_bitmap_bits *const *bits, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    bool had_ext = s->has_bitmaps_ext;
    uint64_t old_dir_off = s->bitmap_dir_offset, old_dir_size = s->bitmap_dir_size;
    struct qcow2_bitmap *old = calloc(d->nb ? d->nb : 1, sizeof(*old));
    if (!old)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    memcpy(old, d->bm, d->nb * sizeof(*old));
    int ret = s->h.version >= 3 ? 0 : -ENOTSUP;
    /* 1. new data and tables, in free clusters */
    for (uint32_t i = 0; i < d->nb && ret == 0; i++) {
        if (!bits[i])
            continue;
        struct qcow2_bitmap *b = &d->bm[i];
        uint64_t *table = calloc(b->table_size, sizeof(*table));
        if (!table) {
            ret = -ENOMEM;
            break;
        }
        ret = qcow2_bitmap_data_store(img, bits[i], table, b->table_size);
        if (ret == 0)
            ret = qcow2_bitmap_table_store(img, table, b->table_size, &b->table_offset);
        free(table);
    }
    /* 2. the new directory (none when no bitmap is left) */
    uint64_t size = dir_bytes(d);
    int64_t dir_off = 0;
    if (ret == 0 && (size > QCOW2_MAX_BITMAP_DIR || d->nb > QCOW2_MAX_BITMAPS))
        ret = -EFBIG;
    if (ret == 0 && d->nb) {
        uint8_t *buf = calloc(1, (size_t)IC_ALIGN_UP(size, (uint64_t)s->cluster_size));
        if (!buf)
            ret = -ENOMEM;
        if (ret == 0) {
            dir_serialize(d, buf);
            dir_off = qcow2_alloc_clusters(img, qcow2_size_to_clusters(s, size));
            if (dir_off < 0)
                ret = (int)dir_off;
        }
        if (ret == 0) {
            ic_io_event(img->file, IC_EV_BITMAP_DIR_WRITE);
            ret = ic_io_pwrite(img->file, buf, (size_t)size, (uint64_t)dir_off);
        }
        free(buf);
    }
    /* 3. everything the new directory reaches is durable, refcounts first */
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    if (ret < 0) {
        /* the header still names the old directory: new clusters leak */
        memcpy(d->bm, old, d->nb * sizeof(*old));
        free(old);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot store the persistent dirty bitmaps: %s",
                            ret == -ENOTSUP ? "Cannot store dirty bitmaps in qcow2 v2 files"
                                            : strerror(-ret));
    }
    /* 4. the switch: one header write (extension and autoclear bit 0) */
    uint8_t ext[QCOW2_BITMAPS_EXT_LEN];
    uint64_t autoclear = s->h.autoclear_features;
    memcpy(ext, s->bitmaps_ext, sizeof(ext));
    ic_store_be32(s->bitmaps_ext, d->nb);
    ic_store_be32(s->bitmaps_ext + 4, 0);
    ic_store_be64(s->bitmaps_ext + 8, size);
    ic_store_be64(s->bitmaps_ext + 16, (uint64_t)dir_off);
    s->has_bitmaps_ext = d->nb != 0;
    if (d->nb)
        s->h.autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
    else
        s->h.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    ic_io_event(img->file, IC_EV_HEADER_EXT_UPDATE);
    ret = qcow2_update_header(img);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        memcpy(s->bitmaps_ext, ext, sizeof(ext));
        s->has_bitmaps_ext = had_ext;
        s->h.autoclear_features = autoclear;
        memcpy(d->bm, old, d->nb * sizeof(*old));
        free(old);
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot store the persistent dirty bitmaps: %s", strerror(-ret));
    }
    s->nb_bitmaps = d->nb;
    s->bitmap_dir_size = size;
    s->bitmap_dir_offset = (uint64_t)dir_off;
    /* 5. the old structures are unreferenced now */
    ret = had_ext && old_dir_size ? qcow2_free_clusters(img, old_dir_off, old_dir_size) : 0;
    for (uint32_t i = 0; i < d->nb && ret == 0; i++)
        if (bits[i] && old[i].table_offset)
            ret = qcow2_bitmap_table_free(img, &old[i]);
    free(old);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "the old bitmaps could "
                            "not be freed (they leak): %s", strerror(-ret));
    return 0;
}

/* ---- maintenance (design note 6) -------------------------------------------- */

struct qcow2_bitmaps {
    struct qcow2_bitmap_dir dir;
    struct qcow2_bitmap_bits **bits;   /* [dir.nb]: the maintained ones, else NULL */
    uint32_t nb_maintained;
    bool in_use_on_disk;               /* the maintained ones are flagged in use */
};

void qcow2_bitmaps_free(struct qcow2_state *s)
{
    struct qcow2_bitmaps *m = s->bitmaps;
    if (!m)
        return;
    for (uint32_t i = 0; i < m->dir.nb; i++)
        if (m->bits[i]) {
            qcow2_bitmap_bits_free(m->bits[i]);
            free(m->bits[i]);
        }
    free(m->bits);
    qcow2_bitmap_dir_free(&m->dir);
    free(m);
    s->bitmaps = NULL;
}

int qcow2_bitmaps_load_rw(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_bitmaps *m = calloc(1, sizeof(*m));
    if (!m)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    s->bitmaps = m;
    int ret = qcow2_bitmaps_load(img, &m->dir, errp);
    if (ret == 0 && !(m->bits = calloc(m->dir.nb, sizeof(*m->bits))))
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    for (uint32_t i = 0; ret == 0 && i < m->dir.nb; i++) {
        const struct qcow2_bitmap *bm = &m->dir.bm[i];
        /* disabled bitmaps record nothing and in-use ones are kept as
         * they are: only enabled, consistent ones are maintained */
        if (!(bm->flags & QCOW2_BME_FLAG_AUTO) || (bm->flags & QCOW2_BME_FLAG_IN_USE))
            continue;
        m->bits[i] = calloc(1, sizeof(*m->bits[i]));
        if (!m->bits[i])
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        else
            ret = qcow2_bitmap_data_load(img, bm, m->bits[i], errp);
        if (ret == 0)
            m->nb_maintained++;
    }
    if (ret < 0)
        qcow2_bitmaps_free(s);
    return ret;
}

int qcow2_bitmaps_begin(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_bitmaps *m = s->bitmaps;
    if (!m || !m->nb_maintained || m->in_use_on_disk)
        return 0;
    for (uint32_t i = 0; i < m->dir.nb; i++)
        if (m->bits[i])
            m->dir.bm[i].flags |= QCOW2_BME_FLAG_IN_USE;
    struct qcow2_bitmap_bits **none = calloc(m->dir.nb, sizeof(*none));
    if (!none)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    /* a new directory with the flags, no new data: one header switch */
    int ret = qcow2_bitmaps_store(img, &m->dir, none, errp);
    free(none);
    if (ret < 0) {
        for (uint32_t i = 0; i < m->dir.nb; i++)
            if (m->bits[i])
                m->dir.bm[i].flags &= ~QCOW2_BME_FLAG_IN_USE;
        return ret;
    }
    m->in_use_on_disk = true;
    return 0;
}

void qcow2_bitmaps_mark(struct ic_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_bitmaps *m = qcow2_state(img)->bitmaps;
    if (!m)
        return;
    for (uint32_t i = 0; i < m->dir.nb; i++)
        if (m->bits[i])
            qcow2_bitmap_bits_mark(m->bits[i], off, len);
}

int qcow2_bitmaps_finish(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_bitmaps *m = s->bitmaps;
    if (!m || !m->in_use_on_disk)
        return 0;
    for (uint32_t i = 0; i < m->dir.nb; i++)
        if (m->bits[i])
            m->dir.bm[i].flags &= ~QCOW2_BME_FLAG_IN_USE;
    int ret = qcow2_bitmaps_store(img, &m->dir, m->bits, errp);
    if (ret < 0) {
        for (uint32_t i = 0; i < m->dir.nb; i++)
            if (m->bits[i])
                m->dir.bm[i].flags |= QCOW2_BME_FLAG_IN_USE;
        return ret;
    }
    m->in_use_on_disk = false;
    return 0;
}

/* ---- qemu-img bitmap's operations (design note 7) ---------------------------- */

static int find_bitmap(const struct qcow2_bitmap_dir *d, const char *name)
{
    for (uint32_t i = 0; i < d->nb; i++)
        if (!strcmp(d->bm[i].name, name))
            return (int)i;
    return -1;
}

static int walk(const struct qcow2_bitmap_bits *b, uint64_t size, ic_bitmap_extent_fn fn,
                void *payload)
{
    uint64_t pos = 0, s, l;
    while (qcow2_bitmap_next_extent(b, size, pos, &s, &l)) {
        int r = fn(s, l, payload);
        if (r)
            return r;
        pos = s + l;
    }
    return 0;
}

static int not_found(const char *name, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "Dirty bitmap '%s' not found", name);
}

static int inconsistent(const char *name, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                        "Bitmap '%s' is inconsistent and cannot be used", name);
}

int qcow2_bitmap_dump(struct ic_image *img, const char *name, ic_bitmap_extent_fn fn,
                      void *payload, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_bitmaps *m = s->bitmaps;
    int i = m ? find_bitmap(&m->dir, name) : -1;
    if (i >= 0 && m->bits[i]) /* maintained: memory is ahead of the disk */
        return walk(m->bits[i], img->size, fn, payload);
    if (!qcow2_bitmaps_present(s))
        return not_found(name, errp);
    struct qcow2_bitmap_dir d;
    int ret = qcow2_bitmaps_load(img, &d, errp);
    if (ret < 0)
        return ret;
    i = find_bitmap(&d, name);
    struct qcow2_bitmap_bits b = { 0 };
    if (i < 0)
        ret = not_found(name, errp);
    else if (d.bm[i].flags & QCOW2_BME_FLAG_IN_USE)
        ret = inconsistent(name, errp);
    else if ((ret = qcow2_bitmap_data_load(img, &d.bm[i], &b, errp)) == 0)
        ret = walk(&b, img->size, fn, payload);
    qcow2_bitmap_bits_free(&b);
    qcow2_bitmap_dir_free(&d);
    return ret;
}

/* qemu's check_constraints_on_bitmap and qcow2_co_can_store_new_dirty_bitmap. */
static int check_new(struct ic_image *img, const struct qcow2_bitmaps *m, const char *name,
                     uint64_t granularity, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (granularity < 512 || (granularity & (granularity - 1)))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Granularity must be power of 2 and at least 512");
    if (granularity > (1ull << QCOW2_BME_MAX_GRANULARITY))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Granularity exceeds maximum (%llu bytes)",
                            1ull << QCOW2_BME_MAX_GRANULARITY);
    if (strlen(name) > QCOW2_BME_MAX_NAME)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Name length exceeds maximum (%u characters)", QCOW2_BME_MAX_NAME);
    uint8_t gbits = (uint8_t)__builtin_ctzll(granularity);
    uint64_t bytes = ((img->size + granularity - 1) >> gbits) / 8 + 1;
    uint64_t clusters = qcow2_bitmap_table_clusters(img->size, gbits, s->cluster_size);
    if (bytes > QCOW2_BME_MAX_PHYS_SIZE || clusters > QCOW2_BME_MAX_TABLE_SIZE ||
        clusters * s->cluster_size > QCOW2_BME_MAX_PHYS_SIZE)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Too much space will be occupied by "
                            "the bitmap. Use larger granularity");
    if (m->dir.nb >= QCOW2_MAX_BITMAPS)
        return ic_error_set(errp, IC_ERR_NOMEM, EFBIG,
                            "Maximum number of persistent bitmaps is already reached");
    if (dir_bytes(&m->dir) + IC_ALIGN_UP((uint64_t)QCOW2_BME_HEADER_LEN + strlen(name), 8) >
        QCOW2_MAX_BITMAP_DIR)
        return ic_error_set(errp, IC_ERR_NOMEM, EFBIG,
                            "Not enough space in the bitmap directory");
    return 0;
}

static struct qcow2_bitmap_bits *new_bits(uint64_t size, uint8_t gbits)
{
    struct qcow2_bitmap_bits *b = calloc(1, sizeof(*b));
    if (b && qcow2_bitmap_bits_init(b, size, gbits) < 0) {
        free(b);
        b = NULL;
    }
    return b;
}

static void drop_bits(struct qcow2_bitmap_bits **b)
{
    if (*b) {
        qcow2_bitmap_bits_free(*b);
        free(*b);
        *b = NULL;
    }
}

/* Stores m->dir with new data for entry @i from @b (or none, i < 0). */
static int store_one(struct ic_image *img, struct qcow2_bitmaps *m, int i,
                     struct qcow2_bitmap_bits *b, ic_error **errp)
{
    struct qcow2_bitmap_bits **v = calloc(m->dir.nb ? m->dir.nb : 1, sizeof(*v));
    if (!v)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    if (i >= 0)
        v[i] = b;
    int ret = qcow2_bitmaps_store(img, &m->dir, v, errp);
    free(v);
    return ret;
}

int qcow2_bitmap_change(struct ic_image *img, ic_bitmap_action action, const char *name,
                        uint64_t granularity, const uint64_t (*ext)[2], size_t next,
                        ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = qcow2_bitmaps_guard(img, errp);
    if (ret < 0)
        return ret;
    if (s->h.version < 3)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Cannot store dirty bitmaps in qcow2 v2 files");
    if (!s->bitmaps && !(s->bitmaps = calloc(1, sizeof(*s->bitmaps))))
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    struct qcow2_bitmaps *m = s->bitmaps;
    /* the maintained bitmaps stored first, so a change starts from a
     * directory without in-use flags of ours (the next write sets them) */
    if ((ret = qcow2_bitmaps_finish(img, errp)) < 0)
        return ret;
    int i = find_bitmap(&m->dir, name);
    if (action == IC_BITMAP_ADD) {
        if (i >= 0)
            return ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "Bitmap already exists: %s", name);
        if (!granularity) /* qemu's default: the cluster size within 4 KiB..64 KiB */
            granularity = IC_MIN(IC_MAX(4096u, s->cluster_size), 65536u);
        if ((ret = check_new(img, m, name, granularity, errp)) < 0)
            return ret;
        uint8_t gbits = (uint8_t)__builtin_ctzll(granularity);
        struct qcow2_bitmap *nbm = realloc(m->dir.bm, (m->dir.nb + 1) * sizeof(*nbm));
        if (nbm)
            m->dir.bm = nbm;
        struct qcow2_bitmap_bits **nbits = realloc(m->bits, (m->dir.nb + 1) * sizeof(*nbits));
        if (nbits)
            m->bits = nbits;
        struct qcow2_bitmap_bits *b = new_bits(img->size, gbits);
        char *copy = strdup(name);
        if (!nbm || !nbits || !b || !copy) {
            drop_bits(&b);
            free(copy);
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        }
        uint32_t n = m->dir.nb;
        m->dir.bm[n] = (struct qcow2_bitmap){
            .name = copy,
            .table_size = (uint32_t)qcow2_bitmap_table_clusters(img->size, gbits,
                                                                s->cluster_size),
            .flags = QCOW2_BME_FLAG_AUTO,
            .granularity_bits = gbits,
        };
        m->bits[n] = NULL;
        m->dir.nb++;
        ret = store_one(img, m, (int)n, b, errp);
        if (ret < 0) {
            m->dir.nb--;
            free(copy);
            drop_bits(&b);
            return ret;
        }
        m->bits[n] = b; /* enabled: maintained from now on */
        m->nb_maintained++;
        return 0;
    }
    if (i < 0)
        return not_found(name, errp);
    struct qcow2_bitmap *bm = &m->dir.bm[i];
    if (action == IC_BITMAP_REMOVE) {
        struct qcow2_bitmap gone = *bm;
        struct qcow2_bitmap_bits *gone_bits = m->bits[i];
        memmove(bm, bm + 1, (m->dir.nb - (uint32_t)i - 1) * sizeof(*bm));
        memmove(&m->bits[i], &m->bits[i + 1], (m->dir.nb - (uint32_t)i - 1) * sizeof(*m->bits));
        m->dir.nb--;
        ret = store_one(img, m, -1, NULL, errp);
        if (ret < 0) {
            memmove(bm + 1, bm, (m->dir.nb - (uint32_t)i) * sizeof(*bm));
            memmove(&m->bits[i + 1], &m->bits[i], (m->dir.nb - (uint32_t)i) * sizeof(*m->bits));
            m->dir.bm[i] = gone;
            m->bits[i] = gone_bits;
            m->dir.nb++;
            return ret;
        }
        if (gone_bits)
            m->nb_maintained--;
        drop_bits(&gone_bits);
        /* unreferenced now; an in-use bitmap's table may be invalid: then
         * its clusters leak, as with qemu */
        (void)qcow2_bitmap_table_free(img, &gone);
        free(gone.name);
        return 0;
    }
    if (bm->flags & QCOW2_BME_FLAG_IN_USE)
        return inconsistent(name, errp);
    uint32_t flags = bm->flags;
    struct qcow2_bitmap_bits *b = NULL;
    switch (action) {
    case IC_BITMAP_CLEAR:
        if (!(b = new_bits(img->size, bm->granularity_bits)))
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        ret = store_one(img, m, i, b, errp);
        break;
    case IC_BITMAP_MERGE:
        if (!(b = calloc(1, sizeof(*b))))
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        if ((ret = qcow2_bitmap_data_load(img, bm, b, errp)) < 0) {
            free(b);
            return ret;
        }
        for (size_t k = 0; k < next; k++)
            qcow2_bitmap_bits_mark(b, ext[k][0], ext[k][1]);
        ret = store_one(img, m, i, b, errp);
        break;
    case IC_BITMAP_ENABLE:
        if (flags & QCOW2_BME_FLAG_AUTO)
            return 0;
        if (!(b = calloc(1, sizeof(*b))))
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        if ((ret = qcow2_bitmap_data_load(img, bm, b, errp)) < 0) {
            free(b);
            return ret;
        }
        bm->flags |= QCOW2_BME_FLAG_AUTO;
        ret = store_one(img, m, -1, NULL, errp);
        break;
    case IC_BITMAP_DISABLE:
        if (!(flags & QCOW2_BME_FLAG_AUTO))
            return 0;
        bm->flags &= ~QCOW2_BME_FLAG_AUTO;
        ret = store_one(img, m, -1, NULL, errp);
        break;
    case IC_BITMAP_ADD:    /* handled above */
    case IC_BITMAP_REMOVE:
    default:
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unknown bitmap action");
    }
    if (ret < 0) {
        bm->flags = flags;
        drop_bits(&b);
        return ret;
    }
    /* what is maintained now: the enabled ones, with the bits stored */
    bool enabled = bm->flags & QCOW2_BME_FLAG_AUTO;
    if (b && enabled) {
        if (m->bits[i])
            drop_bits(&m->bits[i]);
        else
            m->nb_maintained++;
        m->bits[i] = b;
    } else {
        drop_bits(&b);
        if (!enabled && m->bits[i]) {
            drop_bits(&m->bits[i]);
            m->nb_maintained--;
        }
    }
    return 0;
}
