/*
 * qcow2-amend.c - qemu-img amend for qcow2 (qemu's qcow2_amend_options,
 * qcow2_upgrade and qcow2_downgrade).
 *
 * Design notes:
 *  1. The keys are taken in qemu's option order (size, compat,
 *     backing_file, backing_fmt, data_file, data_file_raw, lazy_refcounts,
 *     refcount_bits), each refused with qemu's message; creation-only
 *     keys are refused by name.  Then every refusal of the steps runs
 *     before anything is written (qemu checks some of them between steps,
 *     so it can refuse half-way through; imgchain refuses all or nothing).
 *  2. The steps run in qemu's order: upgrade, refcount width, lazy
 *     refcounts, data file name and raw flag, size, downgrade last (so the
 *     earlier steps may still use v3 features).
 *  3. Upgrade to v3: the snapshot table is rewritten first if an entry
 *     lacks the extra data v3 requires (it is valid v2 as well), then one
 *     header write switches the version.
 *  4. Refcount width: the references are counted from the metadata, a new
 *     refcount table and refblocks of the new width are written past
 *     everything in use and flushed, and one write of header bytes 48..100
 *     (in the first sector) switches the table and refcount_order together
 *     (qcow2-refcount.c); the old structure's clusters are free in the new
 *     one.  A crash leaves the old or the new structure, intact.
 *  5. Downgrade to v2: refused with qemu's messages for an external data
 *     file, a refcount width other than 16, zstd compression with
 *     compressed clusters and other incompatible features; beyond qemu
 *     (which exits 0 and leaves them unreadable), also for persistent
 *     dirty bitmaps, naming them.  Zero clusters, which v2 cannot hold, are
 *     expanded in the active tables as qemu does (plain ones without a
 *     backing file become unallocated, the others explicit zeroes); a zero
 *     cluster reachable from an internal snapshot is refused instead, as
 *     imgchain does not rewrite snapshot tables in place.  Everything is
 *     flushed, the dirty bit is clear, then one header write makes it v2.
 *  6. Lazy refcounts off flushes every refcount first, so the image is
 *     clean when the bit goes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/util.h"

#include "qcow2-bitmap.h"
#include "qcow2-snapshot.h"
#include "qcow2.h"

struct amend_req {
    bool has_size, has_compat, has_data_file, has_dfraw, has_lazy, has_rbits;
    uint64_t size;
    uint32_t version;
    const char *data_file;
    bool dfraw, lazy;
    uint64_t rbits;
};

/* Keys qemu-img accepts for create but not for amend. */
static const char *const create_only[] = {
    "cluster_size", "preallocation", "compression_type", "extended_l2", "encryption",
    "encrypt.format", "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
    "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.key-secret", "nocow",
};

/* Keys amend changes. */
static const char *const amendable[] = {
    "size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw",
    "lazy_refcounts", "refcount_bits",
};

/* qemu-img validates the key names before any value: a key that is
 * neither amendable nor a creation option is refused first. */
static int check_keys(ic_opts *opts, ic_error **errp)
{
    const char *v;
    for (size_t i = 0; i < sizeof(amendable) / sizeof(amendable[0]); i++)
        (void)ic_opts_take_str(opts, amendable[i], &v);
    for (size_t i = 0; i < sizeof(create_only) / sizeof(create_only[0]); i++)
        (void)ic_opts_take_str(opts, create_only[i], &v);
    ic_error *e = NULL;
    if (ic_opts_check_unused(opts, "qcow2", &e) == 0)
        return 0;
    /* name the first key nobody took, in qemu-img's words */
    const char *m = ic_error_message(e);
    const char *q1 = strchr(m, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    int ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Invalid parameter '%.*s'",
                           q1 && q2 ? (int)(q2 - q1 - 1) : 0, q1 ? q1 + 1 : "");
    ic_error_free(e);
    return ret;
}

static int bad_bool(const char *key, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Parameter '%s' expects 'on' or 'off'",
                        key);
}

static int take_bool(ic_opts *opts, const char *key, bool *has, bool *out, ic_error **errp)
{
    const char *v;
    if (ic_opts_take_str(opts, key, &v) <= 0)
        return 0;
    if (!*v || !strcmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "off"))
        *out = false;
    else
        return bad_bool(key, errp);
    *has = true;
    return 0;
}

static int parse_req(ic_opts *opts, struct amend_req *r, ic_error **errp)
{
    const char *v;
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < sizeof(create_only) / sizeof(create_only[0]); i++)
        if (ic_opts_take_str(opts, create_only[i], &v) > 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Invalid parameter '%s': this "
                                "option is only supported for image creation", create_only[i]);
    if (ic_opts_take_str(opts, "size", &v) > 0) {
        if (*v == '-' || ic_parse_size(v, &r->size) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Parameter 'size' expects a "
                                "non-negative number below 2^64");
        r->has_size = true;
    }
    if (ic_opts_take_str(opts, "compat", &v) > 0) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            r->version = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            r->version = 3;
        else
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Unknown compatibility level %s",
                                v);
        r->has_compat = true;
    }
    if (ic_opts_take_str(opts, "backing_file", &v) > 0 ||
        ic_opts_take_str(opts, "backing_fmt", &v) > 0)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Cannot amend the backing file; "
                            "you can use 'imgchain rebase' instead");
    if (ic_opts_take_str(opts, "data_file", &r->data_file) > 0)
        r->has_data_file = true;
    int ret = take_bool(opts, "data_file_raw", &r->has_dfraw, &r->dfraw, errp);
    if (ret == 0)
        ret = take_bool(opts, "lazy_refcounts", &r->has_lazy, &r->lazy, errp);
    if (ret < 0)
        return ret;
    if (ic_opts_take_str(opts, "refcount_bits", &v) > 0) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-')
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "Parameter 'refcount_bits' expects a number");
        if (n == 0 || n > 64 || (n & (n - 1)))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Refcount width must be a power "
                                "of two and may not exceed 64 bits");
        r->rbits = n;
        r->has_rbits = true;
    }
    return 0;
}

static uint32_t order_of(uint64_t bits)
{
    uint32_t o = 0;
    while ((1ull << o) < bits)
        o++;
    return o;
}

/* Calls @fn on every L2 entry of the L1 table @l1 (@n entries). */
typedef int (*l2_entry_fn)(struct ic_image *img, uint64_t entry, void *payload);

static int walk_l1(struct ic_image *img, const uint64_t *l1, uint32_t n, l2_entry_fn fn,
                   void *payload)
{
    struct qcow2_state *s = qcow2_state(img);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        uint8_t *l2;
        int ret = qcow2_get_l2(img, l2off, &l2);
        if (ret < 0)
            return ret;
        for (uint32_t j = 0; j < s->l2_entries && ret == 0; j++)
            ret = fn(img, qcow2_l2_get(s, l2, j), payload);
        qcow2_cache_put(&s->l2_cache, &l2);
        if (ret != 0)
            return ret;
    }
    return 0;
}

/* Every L1 table: the active one, then each snapshot's. */
static int walk_all(struct ic_image *img, bool snapshots_only, l2_entry_fn fn, void *payload)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = snapshots_only ? 0 : walk_l1(img, s->l1, s->l1_size, fn, payload);
    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        uint64_t *l1 = NULL;
        if (!s->snapshots[i].l1_size)
            continue;
        ret = qcow2_read_l1(img, s->snapshots[i].l1_table_offset, s->snapshots[i].l1_size, &l1);
        if (ret == 0)
            ret = walk_l1(img, l1, s->snapshots[i].l1_size, fn, payload);
        free(l1);
    }
    return ret;
}

/* Returns 1 (stop) on a compressed entry. */
static int is_compressed(struct ic_image *img, uint64_t e, void *payload)
{
    (void)payload;
    return qcow2_cluster_type(qcow2_state(img), e) == QCOW2_CT_COMPRESSED;
}

/* Returns 1 (stop) on a zero entry. */
static int is_zero(struct ic_image *img, uint64_t e, void *payload)
{
    (void)payload;
    enum qcow2_ctype t = qcow2_cluster_type(qcow2_state(img), e);
    return t == QCOW2_CT_ZERO_PLAIN || t == QCOW2_CT_ZERO_ALLOC;
}

static int io_error(ic_error **errp, int ret, const char *what)
{
    return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: %s", what,
                        strerror(-ret));
}

/* The refusals of a downgrade (design note 5), in qemu's order. */
static int downgrade_check(struct ic_image *img, uint32_t rorder, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    if (rorder != 4)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "compat=0.10 requires refcount_bits=16");
    if (s->data_file_name)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Cannot downgrade an image with a data file");
    if (s->has_bitmaps_ext && s->nb_bitmaps) {
        struct qcow2_bitmap_dir d = { NULL, 0 };
        ic_error *derr = NULL;
        char names[512] = "";
        if (qcow2_bitmap_dir_load(img, &d, &derr) == 0) {
            size_t len = 0;
            for (uint32_t i = 0; i < d.nb && len + 8 < sizeof(names); i++) {
                int n = snprintf(names + len, sizeof(names) - len, "%s'%s'", i ? ", " : "",
                                 d.bm[i].name);
                len = n < 0 ? len : IC_MIN(len + (size_t)n, sizeof(names) - 1);
            }
        }
        ic_error_free(derr);
        qcow2_bitmap_dir_free(&d);
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Cannot downgrade an image with persistent dirty bitmaps (%s): "
                            "compat=0.10 cannot keep them; remove them first",
                            *names ? names : "unreadable directory");
    }
    uint64_t incompat = s->h.incompatible_features & ~QCOW2_INCOMPAT_DIRTY;
    if (incompat & QCOW2_INCOMPAT_COMPRESSION) {
        int r = walk_all(img, false, is_compressed, NULL);
        if (r < 0)
            return io_error(errp, r, "cannot read the L2 tables");
        if (r > 0)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Cannot downgrade an image "
                                "with zstd compression type and existing compressed clusters");
        incompat &= ~QCOW2_INCOMPAT_COMPRESSION;
    }
    if (incompat)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Cannot downgrade an image with "
                            "incompatible features %#" PRIx64 " set", incompat);
    int r = walk_all(img, true, is_zero, NULL);
    if (r < 0)
        return io_error(errp, r, "cannot read the snapshot L2 tables");
    if (r > 0)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Cannot downgrade: an internal "
                            "snapshot holds zero clusters, which imgchain does not expand");
    return 0;
}

/* Expands the zero clusters of the active tables (design note 5). */
static int expand_zero_clusters(struct ic_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t *zeroes = calloc(1, s->cluster_size);
    if (!zeroes)
        return -ENOMEM;
    int ret = 0;
    for (uint32_t i = 0; i < s->l1_size && ret == 0; i++) {
        for (uint32_t j = 0; j < s->l2_entries && ret == 0; j++) {
            uint64_t l2off = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
            if (!l2off)
                break;
            uint64_t guest = (((uint64_t)i << s->l2_bits) + j) << s->cluster_bits;
            if (guest >= img->size)
                break;
            uint8_t *l2;
            if ((ret = qcow2_get_l2(img, l2off, &l2)) < 0)
                break;
            uint64_t e = qcow2_l2_get(s, l2, j);
            enum qcow2_ctype t = qcow2_cluster_type(s, e);
            if (t == QCOW2_CT_ZERO_PLAIN && !img->backing) {
                /* reads as zeroes unallocated too: no data to write */
                qcow2_l2_set(s, l2, j, 0);
                qcow2_cache_mark_dirty(&s->l2_cache, l2);
                qcow2_cache_put(&s->l2_cache, &l2);
                continue;
            }
            qcow2_cache_put(&s->l2_cache, &l2);
            if (t != QCOW2_CT_ZERO_PLAIN && t != QCOW2_CT_ZERO_ALLOC)
                continue;
            uint64_t len = IC_MIN((uint64_t)s->cluster_size, img->size - guest);
            ret = qcow2_cluster_pwrite(img, zeroes, (size_t)len, guest);
        }
    }
    free(zeroes);
    if (ret == 0)
        ret = qcow2_flush_metadata(img);
    return ret;
}

static int upgrade(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!s->snapshots[i].has_disk_size) {
            int ret = qcow2_snapshot_rewrite_table(img, errp);
            if (ret < 0)
                return ret;
            break;
        }
    struct qcow2_header old = s->h;
    s->h.version = 3;
    s->h.header_length = QCOW2_HDR_V3_LEN;
    s->h.refcount_order = 4;
    s->h.compression_type = QCOW2_COMPRESSION_ZLIB;
    int ret = qcow2_update_header(img);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        s->h = old;
        return io_error(errp, ret, "cannot write the header");
    }
    return 0;
}

static int downgrade(struct ic_image *img, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = expand_zero_clusters(img);
    if (ret == 0)
        ret = qcow2_mark_clean(img);
    if (ret < 0)
        return io_error(errp, ret, "cannot expand the zero clusters");
    struct qcow2_header old = s->h;
    bool old_lazy = s->lazy_refcounts, old_bm = s->has_bitmaps_ext;
    s->h.version = 2;
    s->h.header_length = QCOW2_HDR_V2_LEN;
    s->h.incompatible_features = 0;
    s->h.compatible_features = 0;
    s->h.autoclear_features = 0;
    s->h.compression_type = QCOW2_COMPRESSION_ZLIB;
    s->lazy_refcounts = false;
    s->has_bitmaps_ext = false; /* empty: downgrade_check refused any bitmap */
    ret = qcow2_update_header(img);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        s->h = old;
        s->lazy_refcounts = old_lazy;
        s->has_bitmaps_ext = old_bm;
        return io_error(errp, ret, "cannot write the header");
    }
    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    s->l2_cache.depends_on_flush = true;
    free(s->unknown_header);
    s->unknown_header = NULL;
    s->unknown_header_len = 0;
    return 0;
}

/* Refuses a width that cannot hold a refcount of @imrt, with qemu's
 * message. */
static int check_width(struct ic_image *img, const uint32_t *imrt, uint64_t nb, uint32_t order,
                       ic_error **errp)
{
    uint64_t max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
    for (uint64_t c = 0; c < nb; c++)
        if (imrt[c] > max)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ERANGE, "Cannot decrease refcount "
                                "entry width to %u bits: Cluster at offset %#" PRIx64 " has a "
                                "refcount of %" PRIu32, 1u << order,
                                c << qcow2_state(img)->cluster_bits, imrt[c]);
    return 0;
}

/* The refusal of a narrower width, on an image that may be read-only. */
static int refcount_width_check(struct ic_image *img, uint32_t order, ic_error **errp)
{
    uint32_t *imrt = NULL;
    uint64_t nb = 0;
    int ret = qcow2_calculate_refcounts(img, &imrt, &nb, errp);
    if (ret == 0)
        ret = check_width(img, imrt, nb, order, errp);
    free(imrt);
    return ret;
}

static int change_refcount_width(struct ic_image *img, uint32_t order, ic_error **errp)
{
    int ret = qcow2_flush_metadata(img);
    if (ret < 0)
        return io_error(errp, ret, "cannot flush");
    uint32_t *imrt = NULL;
    uint64_t nb = 0;
    if ((ret = qcow2_calculate_refcounts(img, &imrt, &nb, errp)) < 0)
        return ret;
    ret = check_width(img, imrt, nb, order, errp);
    if (ret == 0)
        ret = qcow2_rebuild_refcount_structure_order(img, imrt, nb, order, errp);
    free(imrt);
    return ret;
}

static int set_header_field(struct ic_image *img, ic_error **errp)
{
    int ret = qcow2_update_header(img);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    return ret < 0 ? io_error(errp, ret, "cannot write the header") : 0;
}

int qcow2_amend(struct ic_image *img, ic_opts *opts, bool dry_run, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(img);
    struct amend_req r;
    int ret = check_keys(opts, errp);
    if (ret == 0)
        ret = parse_req(opts, &r, errp);
    if (ret < 0)
        return ret;
    uint32_t old_version = s->h.version;
    uint32_t new_version = r.has_compat ? r.version : old_version;
    uint32_t order = r.has_rbits ? order_of(r.rbits) : s->refcount_order;
    /* qemu's checks, all before the first write (design note 1) */
    if (r.has_data_file && !s->data_file_name)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "data-file can only be set for images that use an external data file");
    if (r.has_dfraw && r.dfraw && !s->data_file_raw)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "data-file-raw cannot be set on existing images");
    if (r.has_rbits && order != s->refcount_order && new_version < 3 && order != 4)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Refcount widths other than 16 "
                            "bits require compatibility level 1.1 or above (use compat=1.1 or "
                            "greater)");
    bool lazy = r.has_lazy ? r.lazy : s->lazy_refcounts;
    if (r.has_lazy && lazy && new_version < 3)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "Lazy refcounts only supported "
                            "with compatibility level 1.1 and above (use compat=1.1 or greater)");
    if (!r.has_lazy && new_version < 3)
        lazy = false;
    if (r.has_size && r.size != img->size &&
        (ret = qcow2_resize(img, r.size, IC_PREALLOC_OFF, true, errp)) < 0)
        return ret;
    if (order < s->refcount_order && (ret = refcount_width_check(img, order, errp)) < 0)
        return ret;
    if (new_version < old_version && (ret = downgrade_check(img, order, errp)) < 0)
        return ret;
    if (dry_run)
        return 0;

    if (new_version > old_version && (ret = upgrade(img, errp)) < 0)
        return ret;
    if (order != s->refcount_order && (ret = change_refcount_width(img, order, errp)) < 0)
        return ret;
    if (lazy != s->lazy_refcounts && new_version >= 3) {
        if (!lazy) {
            /* every refcount on disk before the bit goes (design note 6) */
            ret = qcow2_flush_metadata(img);
            if (ret == 0)
                ret = qcow2_mark_clean(img);
            if (ret < 0)
                return io_error(errp, ret, "cannot flush the refcounts");
        }
        uint64_t old = s->h.compatible_features;
        s->h.compatible_features = lazy ? old | QCOW2_COMPAT_LAZY_REFCOUNTS
                                        : old & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        if ((ret = set_header_field(img, errp)) < 0) {
            s->h.compatible_features = old;
            return ret;
        }
        s->lazy_refcounts = lazy;
        s->l2_cache.depends_on_flush = !lazy;
    }
    if (r.has_data_file && strcmp(r.data_file, s->data_file_name)) {
        char *name = strdup(r.data_file), *old = s->data_file_name;
        if (!name)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        s->data_file_name = name;
        if ((ret = set_header_field(img, errp)) < 0) {
            s->data_file_name = old;
            free(name);
            return ret;
        }
        free(old);
    }
    if (r.has_dfraw && !r.dfraw && s->data_file_raw) {
        s->h.autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
        if ((ret = set_header_field(img, errp)) < 0) {
            s->h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
            return ret;
        }
        s->data_file_raw = false;
    }
    if (r.has_size && r.size != img->size &&
        (ret = qcow2_resize(img, r.size, IC_PREALLOC_OFF, false, errp)) < 0)
        return ret;
    if (new_version < old_version && (ret = downgrade(img, errp)) < 0)
        return ret;
    return 0;
}
