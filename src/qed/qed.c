/*
 * qed.c - the QED driver: header, probe, open/create, NEED_CHECK handling,
 * flush/close, resize, info, backing-file changes, and the driver table.
 *
 * Design notes:
 *  Owns: the 64-byte little-endian header in cluster 0 and the backing file
 *  name stored after it inside the header area (header_size clusters).
 *
 *      0        64             header_size*cs  l1_table_offset (cluster 1)
 *      +--------+--------------+---------------+-------------------------+
 *      | header | backing name | (header area) | L1 (table_size clusters)|
 *      +--------+--------------+---------------+-------------------------+
 *      | data clusters and L2 tables, allocated at EOF, in write order ...
 *
 *  Invariants:
 *   1. Every header field is validated before use, with the rules of
 *      docs/qed.md, "Header" (the named limits are in qed.h): sizes and
 *      their product, L1 inside the file after the header area, backing
 *      name inside the header area.  Unknown feature bits refuse the open
 *      (ENOTSUP).
 *   2. The header is rewritten only as its first 64 bytes (one sector, so a
 *      crash leaves it old or new) except by change_backing, which rewrites
 *      header and name with one synced write, as qemu does.
 *   3. NEED_CHECK (docs/qed.md, "Need-check flag"): set durably (header
 *      write, then flush) before the first allocating write of an image
 *      without an opened backing file; cleared only after a flush made
 *      every write it covered durable.  With a backing file, data is
 *      flushed before each L2 update instead (qed-cluster.c), so the bit
 *      is not needed.
 *   4. A read-write open of an image with NEED_CHECK runs the check with
 *      repair (as qemu); it fails only when the check hits an I/O error.  If
 *      corruptions remain (clusters referenced twice cannot be repaired)
 *      the image opens in the ERROR state: reads work, writes are refused.
 *   5. Unknown autoclear bits are cleared on a read-write open (header
 *      write, then flush); unknown compat bits are kept.
 *   6. QED records no backing format: "raw" when BACKING_FORMAT_NO_PROBE is
 *      set, otherwise none (the chain layer probes).
 *   7. create refuses a geometry qemu 7.2 cannot size (its largest-image
 *      computation wraps to 0: qed_geometry_qemu_sizes), as qemu-img
 *      does, unless force_large_clusters=on; open reads such images all
 *      the same.
 *  Follows qemu's QED driver.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"
#include "util/endian.h"
#include "util/overflow.h"

/* ---- header ----------------------------------------------------------------- */

static bool is_pow2_in(uint64_t v, uint64_t lo, uint64_t hi)
{
    return IC_IS_POW2(v) && v >= lo && v <= hi;
}

/* qemu's qed_max_image_size, saturating instead of wrapping. */
static uint64_t qed_max_image_size(uint32_t cluster_size, uint32_t table_size)
{
    uint64_t entries = (uint64_t)table_size * cluster_size / sizeof(uint64_t);
    uint64_t l2_span, max;
    if (ic_mul_overflow(entries, (uint64_t)cluster_size, &l2_span) ||
        ic_mul_overflow(l2_span, entries, &max) || max > QED_MAX_IMAGE_SIZE)
        return QED_MAX_IMAGE_SIZE;
    return max;
}

/* Whether qemu 7.2 can size a QED image of this geometry.  It computes the
 * largest image (table entries squared times the cluster size) in 64 bits
 * without an overflow check: where the product reaches 2^64 it wraps to 0,
 * and qemu-img refuses to create, and qemu to open, any image of that
 * geometry (2 MiB clusters with 16-cluster tables, 4 MiB with the default
 * 4, 8 MiB with 2, everything from 16 MiB). */
static bool qed_geometry_qemu_sizes(uint32_t cluster_size, uint32_t table_size)
{
    uint64_t entries = (uint64_t)table_size * cluster_size / sizeof(uint64_t);
    uint64_t l2_span, max;
    return !ic_mul_overflow(entries, (uint64_t)cluster_size, &l2_span) &&
           !ic_mul_overflow(l2_span, entries, &max);
}

static bool qed_image_size_valid(uint64_t size, uint32_t cluster_size, uint32_t table_size)
{
    return size % 512 == 0 && size <= qed_max_image_size(cluster_size, table_size);
}

int qed_header_parse(struct qed_header *h, const uint8_t *buf, ic_error **errp)
{
    h->magic = ic_load_le32(buf + QED_HDR_MAGIC);
    h->cluster_size = ic_load_le32(buf + QED_HDR_CLUSTER_SIZE);
    h->table_size = ic_load_le32(buf + QED_HDR_TABLE_SIZE);
    h->header_size = ic_load_le32(buf + QED_HDR_HEADER_SIZE);
    h->features = ic_load_le64(buf + QED_HDR_FEATURES);
    h->compat_features = ic_load_le64(buf + QED_HDR_COMPAT_FEATURES);
    h->autoclear_features = ic_load_le64(buf + QED_HDR_AUTOCLEAR_FEATURES);
    h->l1_table_offset = ic_load_le64(buf + QED_HDR_L1_TABLE_OFFSET);
    h->image_size = ic_load_le64(buf + QED_HDR_IMAGE_SIZE);
    h->backing_filename_offset = ic_load_le32(buf + QED_HDR_BACKING_NAME_OFFSET);
    h->backing_filename_size = ic_load_le32(buf + QED_HDR_BACKING_NAME_SIZE);

    if (h->magic != QED_MAGIC)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "image is not in QED format");
    if (h->features & ~QED_FEATURE_MASK)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "unsupported QED features: %#" PRIx64,
                            h->features & ~QED_FEATURE_MASK);
    if (!is_pow2_in(h->cluster_size, QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED cluster size %" PRIu32 " is invalid (a power of 2 from %u to %u)",
                            h->cluster_size, QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    if (!is_pow2_in(h->table_size, QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED table size %" PRIu32 " is invalid (a power of 2 from %u to %u clusters)",
                            h->table_size, QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    if ((uint64_t)h->table_size * h->cluster_size > QED_MAX_TABLE_BYTES)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "QED tables of %" PRIu64 " bytes exceed the supported %u bytes",
                            (uint64_t)h->table_size * h->cluster_size, QED_MAX_TABLE_BYTES);
    if (h->header_size == 0)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "QED header size is zero");
    /* header_size * cluster_size must fit in u32 (qemu's overflow check). */
    if (h->header_size > UINT32_MAX / h->cluster_size)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED header size of %" PRIu32 " clusters is too large", h->header_size);
    if (!qed_image_size_valid(h->image_size, h->cluster_size, h->table_size))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED image size %" PRIu64 " is invalid (a multiple of 512 up to %" PRIu64 ")",
                            h->image_size, qed_max_image_size(h->cluster_size, h->table_size));
    if (h->features & QED_F_BACKING_FILE) {
        uint64_t end = (uint64_t)h->backing_filename_offset + h->backing_filename_size;
        if (end > (uint64_t)h->header_size * h->cluster_size)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "QED backing file name (offset %" PRIu32 ", %" PRIu32
                                " bytes) lies outside the header area",
                                h->backing_filename_offset, h->backing_filename_size);
        if (h->backing_filename_size > QED_MAX_BACKING_NAME)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                                "QED backing file name of %" PRIu32 " bytes is too long",
                                h->backing_filename_size);
    }
    return 0;
}

void qed_header_serialize(const struct qed_header *h, uint8_t *buf)
{
    ic_store_le32(buf + QED_HDR_MAGIC, h->magic);
    ic_store_le32(buf + QED_HDR_CLUSTER_SIZE, h->cluster_size);
    ic_store_le32(buf + QED_HDR_TABLE_SIZE, h->table_size);
    ic_store_le32(buf + QED_HDR_HEADER_SIZE, h->header_size);
    ic_store_le64(buf + QED_HDR_FEATURES, h->features);
    ic_store_le64(buf + QED_HDR_COMPAT_FEATURES, h->compat_features);
    ic_store_le64(buf + QED_HDR_AUTOCLEAR_FEATURES, h->autoclear_features);
    ic_store_le64(buf + QED_HDR_L1_TABLE_OFFSET, h->l1_table_offset);
    ic_store_le64(buf + QED_HDR_IMAGE_SIZE, h->image_size);
    ic_store_le32(buf + QED_HDR_BACKING_NAME_OFFSET, h->backing_filename_offset);
    ic_store_le32(buf + QED_HDR_BACKING_NAME_SIZE, h->backing_filename_size);
}

bool qed_check_cluster_offset(const struct qed_state *s, uint64_t off)
{
    if (off & ((uint64_t)s->header.cluster_size - 1))
        return false;
    return off >= s->header_bytes && off < s->file_size;
}

bool qed_check_table_offset(const struct qed_state *s, uint64_t off)
{
    uint64_t last;
    if (ic_add_overflow(off, (uint64_t)(s->header.table_size - 1) * s->header.cluster_size, &last))
        return false;
    return qed_check_cluster_offset(s, off) && qed_check_cluster_offset(s, last);
}

int qed_write_header(struct ic_image *img, enum ic_event ev)
{
    struct qed_state *s = qed_state_of(img);
    uint8_t buf[QED_HEADER_BYTES];
    qed_header_serialize(&s->header, buf);
    ic_io_event(img->file, ev);
    return ic_io_pwrite(img->file, buf, sizeof(buf), 0);
}

int qed_set_need_check(struct ic_image *img)
{
    struct qed_state *s = qed_state_of(img);
    if (s->header.features & QED_F_NEED_CHECK)
        return 0;
    s->header.features |= QED_F_NEED_CHECK;
    int ret = qed_write_header(img, IC_EV_QED_NEED_CHECK_SET);
    /* The bit must be durable before any allocation it covers can reach
     * the disk: otherwise a crash could leave an L2 entry pointing past EOF
     * in an image that nobody checks. */
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        /* The bit may or may not be on disk: keep it set in memory so we
         * never skip the flush that makes it durable. */
        img->state = IC_IMAGE_ERROR;
        return ic_image_fail(img, ret, "cannot set the QED need-check flag: %s", strerror(-ret));
    }
    return 0;
}

int qed_clear_need_check(struct ic_image *img)
{
    struct qed_state *s = qed_state_of(img);
    int ret = ic_io_flush(img->file);
    if (ret < 0 || !(s->header.features & QED_F_NEED_CHECK))
        return ret;
    /* Every write covered by the bit is durable now: clearing it only loses
     * the hint that the image needs a check, which it no longer does. */
    s->header.features &= ~QED_F_NEED_CHECK;
    ret = qed_write_header(img, IC_EV_QED_NEED_CHECK_CLEAR);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0)
        s->header.features |= QED_F_NEED_CHECK;
    return ret;
}

/* ---- probe / open / close ------------------------------------------------------ */

static int qed_probe(const uint8_t *buf, size_t len)
{
    if (len < QED_HEADER_BYTES)
        return 0;
    return ic_load_le32(buf) == QED_MAGIC ? 100 : 0;
}

static int read_backing_name(struct ic_image *img, ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    const struct qed_header *h = &s->header;
    if (!(h->features & QED_F_BACKING_FILE) || h->backing_filename_size == 0)
        return 0;
    char *name = malloc((size_t)h->backing_filename_size + 1);
    if (!name)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = ic_io_pread_exact(img->file, name, h->backing_filename_size,
                                h->backing_filename_offset);
    if (ret < 0) {
        free(name);
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read the QED backing file name: %s",
                            strerror(-ret));
    }
    name[h->backing_filename_size] = '\0';
    if (strlen(name) != h->backing_filename_size) {
        free(name);
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED backing file name contains a NUL byte");
    }
    img->backing_name = name;
    if (h->features & QED_F_BACKING_FORMAT_NO_PROBE) {
        img->backing_fmt = strdup("raw");
        if (!img->backing_fmt)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    return 0;
}

static void qed_free_state(struct qed_state *s)
{
    free(s->l1_table);
    s->l1_table = NULL;
    qed_l2_cache_destroy(&s->l2_cache);
}

static int qed_open(struct ic_image *img, unsigned flags, ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    uint8_t buf[QED_HEADER_BYTES];
    int64_t fsize = ic_io_get_size(img->file);
    if (fsize < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-fsize, "cannot get file size: %s",
                            strerror((int)-fsize));
    if (fsize < QED_HEADER_BYTES)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED header is truncated (file is %" PRId64 " bytes)", fsize);
    int ret = ic_io_pread_exact(img->file, buf, sizeof(buf), 0);
    if (ret < 0)
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read the QED header: %s", strerror(-ret));
    ret = qed_header_parse(&s->header, buf, errp);
    if (ret < 0)
        return ret;
    const struct qed_header *h = &s->header;
    s->cluster_bits = (uint32_t)__builtin_ctz(h->cluster_size);
    s->table_bytes = (size_t)h->table_size * h->cluster_size;
    s->table_nelems = (uint32_t)(s->table_bytes / sizeof(uint64_t));
    s->l2_mask = s->table_nelems - 1;
    s->l1_shift = s->cluster_bits + (uint32_t)__builtin_ctz(s->table_nelems);
    s->header_bytes = (uint64_t)h->header_size * h->cluster_size;
    s->file_size = qed_start_of_cluster(s, (uint64_t)fsize);
    if (!qed_check_table_offset(s, h->l1_table_offset))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL,
                            "QED L1 table offset %#" PRIx64 " is invalid (unaligned, inside the "
                            "header or past the end of the file)", h->l1_table_offset);

    img->size = h->image_size;
    img->cluster_size = h->cluster_size;
    ret = read_backing_name(img, errp);
    if (ret < 0)
        return ret;

    if (img->read_only == false && (h->autoclear_features & ~QED_AUTOCLEAR_FEATURE_MASK)) {
        /* From here on only known autoclear bits are valid. */
        s->header.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
        ret = qed_write_header(img, IC_EV_HEADER_UPDATE);
        if (ret == 0)
            ret = ic_io_flush(img->file);
        if (ret < 0)
            return ic_error_set(errp, IC_ERR_IO, -ret, "cannot clear autoclear features: %s",
                                strerror(-ret));
    }

    s->l1_table = malloc(s->table_bytes);
    if (!s->l1_table || qed_l2_cache_init(&s->l2_cache, s->table_bytes) < 0) {
        qed_free_state(s);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory for QED tables");
    }
    ret = qed_read_l1_table(img);
    if (ret < 0) {
        qed_free_state(s);
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot read the QED L1 table: %s",
                            strerror(-ret));
    }

    /* If the image was not closed cleanly, check and repair it (qemu does
     * the same).  Read-only opens cannot corrupt anything and are allowed,
     * which helps rescue data; IC_OPEN_CHECK leaves it to the caller. */
    if (!img->read_only && !(flags & IC_OPEN_CHECK) && (s->header.features & QED_F_NEED_CHECK)) {
        ic_check_result res;
        memset(&res, 0, sizeof(res));
        ret = qed_check(img, IC_FIX_ERRORS, NULL, NULL, &res);
        if (ret < 0 || res.check_errors > 0) {
            qed_free_state(s);
            return ic_error_set(errp, IC_ERR_IO, ret < 0 ? -ret : EIO,
                                "the automatic check of an image with the need-check flag failed: %s",
                                strerror(ret < 0 ? -ret : EIO));
        }
        if (res.corruptions > 0) {
            s->corrupt_unfixed = true;
            ic_image_corrupt(img, true, UINT64_MAX,
                             "%" PRId64 " corruptions remain after the automatic check; "
                             "writes are refused (run check)", res.corruptions);
        }
    }
    return 0;
}

static int qed_flush(struct ic_image *img)
{
    struct qed_state *s = qed_state_of(img);
    if (img->read_only)
        return 0;
    if (img->state == IC_IMAGE_ERROR || s->corrupt_unfixed)
        return ic_io_flush(img->file);
    return qed_clear_need_check(img);
}

static void qed_close(struct ic_image *img)
{
    struct qed_state *s = qed_state_of(img);
    if (!img->read_only && s->l1_table && img->state != IC_IMAGE_ERROR && !s->corrupt_unfixed &&
        (s->header.features & QED_F_NEED_CHECK))
        (void)qed_clear_need_check(img); /* errors were reported by flush() */
    qed_free_state(s);
}

/* ---- create --------------------------------------------------------------------- */

static int take_u32_size(ic_opts *o, const char *key, uint32_t def, uint32_t *out,
                         bool as_size, ic_error **errp)
{
    uint64_t v = def;
    int ret = as_size ? ic_opts_take_size(o, key, &v, errp) : ic_opts_take_uint(o, key, &v, errp);
    if (ret < 0)
        return ret;
    *out = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return 0;
}

static int qed_create(ic_io *file, const struct ic_create_params *p, ic_error **errp)
{
    uint32_t cluster_size = 0, table_size = 0;
    int ret = take_u32_size(p->opts, "cluster_size", QED_DEFAULT_CLUSTER_SIZE, &cluster_size, true,
                            errp);
    if (ret == 0)
        ret = take_u32_size(p->opts, "table_size", QED_DEFAULT_TABLE_SIZE, &table_size, false,
                            errp);
    if (ret < 0)
        return ret;
    bool force_large = false;
    if ((ret = ic_opts_take_bool(p->opts, "force_large_clusters", &force_large, errp)) < 0)
        return ret;
    const char *prealloc = NULL;
    /* As qemu: falloc and full concern only the file qemu creates (the
     * header and L1 table, which are written anyway); metadata is refused. */
    if (ic_opts_take_str(p->opts, "preallocation", &prealloc) > 0 && strcmp(prealloc, "off") &&
        strcmp(prealloc, "falloc") && strcmp(prealloc, "full"))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Unsupported preallocation mode: %s", prealloc);
    if ((ret = ic_opts_check_unused(p->opts, "qed", errp)) < 0)
        return ret;
    if (!is_pow2_in(cluster_size, QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "QED cluster size must be within range [%u, %u] and power of 2",
                            QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    if (!is_pow2_in(table_size, QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "QED table size must be within range [%u, %u] and power of 2",
                            QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    if ((uint64_t)table_size * cluster_size > QED_MAX_TABLE_BYTES)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "QED tables of %u clusters of %u bytes exceed the supported %u bytes",
                            table_size, cluster_size, QED_MAX_TABLE_BYTES);
    if (!force_large && !qed_geometry_qemu_sizes(cluster_size, table_size))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "QED clusters of %u bytes with tables of %u clusters make an image "
                            "qemu 7.2 cannot open; use smaller clusters or tables, or "
                            "-o force_large_clusters=on to create it anyway",
                            cluster_size, table_size);
    /* qemu-img rounds the size up to whole sectors. */
    uint64_t size;
    if (ic_add_overflow(p->size, UINT64_C(511), &size))
        size = UINT64_MAX;
    size &= ~UINT64_C(511);
    if (!qed_image_size_valid(size, cluster_size, table_size))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "QED image size must be a multiple of 512 and at most %" PRIu64 " bytes",
                            qed_max_image_size(cluster_size, table_size));
    size_t name_len = p->backing_file ? strlen(p->backing_file) : 0;
    if (QED_HEADER_BYTES + name_len > cluster_size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "backing file name of %zu bytes does not fit in a QED header cluster",
                            name_len);

    struct qed_header h = {
        .magic = QED_MAGIC,
        .cluster_size = cluster_size,
        .table_size = table_size,
        .header_size = 1,
        .l1_table_offset = cluster_size,
        .image_size = size,
    };
    if (p->backing_file) {
        h.features |= QED_F_BACKING_FILE;
        h.backing_filename_offset = QED_HEADER_BYTES;
        h.backing_filename_size = (uint32_t)name_len;
        if (p->backing_format && !strcmp(p->backing_format, "raw"))
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }

    /* Layout as qemu: header, name at 64, zeroed L1 at cluster 1.  QED ties
     * allocation to the file length, so the file starts empty. */
    size_t l1_bytes = (size_t)table_size * cluster_size;
    size_t total = (size_t)cluster_size + l1_bytes;
    uint8_t *buf = calloc(1, total);
    if (!buf)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    qed_header_serialize(&h, buf);
    if (name_len)
        memcpy(buf + QED_HEADER_BYTES, p->backing_file, name_len);
    ret = ic_io_truncate(file, 0);
    if (ret == 0)
        ret = ic_io_pwrite(file, buf, total, 0);
    free(buf);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "cannot write the QED image: %s", strerror(-ret));
    return 0;
}

/* ---- resize, info, backing change, make_empty ----------------------------------- */

static int qed_truncate(struct ic_image *img, uint64_t size, ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    if (!qed_image_size_valid(size, s->header.cluster_size, s->header.table_size))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "invalid QED image size %" PRIu64 " (a multiple of 512 up to %" PRIu64 ")",
                            size, qed_max_image_size(s->header.cluster_size, s->header.table_size));
    if (size < s->header.image_size)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "shrinking QED images is not supported");
    uint64_t old = s->header.image_size;
    s->header.image_size = size;
    int ret = qed_write_header(img, IC_EV_HEADER_UPDATE);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    if (ret < 0) {
        s->header.image_size = old;
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot write the QED header: %s",
                            strerror(-ret));
    }
    img->size = size;
    return 0;
}

/* qemu-img resize on QED (bdrv_qed_co_truncate behind bdrv_co_truncate):
 * only growing, without preallocation, and never where the backing file
 * would show through (qemu asks for zeroed new clusters there, which QED's
 * truncate does not offer).  qemu's messages and order. */
static int qed_resize(struct ic_image *img, uint64_t size, ic_prealloc prealloc, bool dry_run,
                      ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    if (size > img->size && ic_resize_backing_shows(img, img->size))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Block driver does not support requested flags");
    if (prealloc != IC_PREALLOC_OFF)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Unsupported preallocation mode '%s'", ic_prealloc_name(prealloc));
    if (!qed_image_size_valid(size, s->header.cluster_size, s->header.table_size))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Invalid image size specified");
    if (size < s->header.image_size)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "Shrinking images is currently not supported");
    if (size == s->header.image_size || dry_run)
        return 0;
    return qed_truncate(img, size, errp);
}

static int qed_get_info(struct ic_image *img, ic_image_info *info, ic_error **errp)
{
    (void)errp;
    struct qed_state *s = qed_state_of(img);
    info->cluster_size = s->header.cluster_size;
    info->dirty = (s->header.features & QED_F_NEED_CHECK) != 0;
    return 0;
}

static int qed_change_backing(struct ic_image *img, const char *name, const char *fmt,
                              ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    if (img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "image is opened read-only");
    /* With unknown compat features we may not know what follows the header
     * and cannot safely overwrite it (qemu refuses the same way). */
    if (name && (s->header.compat_features & ~QED_COMPAT_FEATURE_MASK))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "cannot change the backing file: unknown QED compat features %#" PRIx64,
                            s->header.compat_features);
    struct qed_header nh = s->header;
    nh.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    size_t len = name ? strlen(name) : 0;
    if (name) {
        nh.features |= QED_F_BACKING_FILE;
        if (fmt && !strcmp(fmt, "raw"))
            nh.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    nh.backing_filename_offset = QED_HEADER_BYTES;
    nh.backing_filename_size = (uint32_t)len;
    if (QED_HEADER_BYTES + len > s->header_bytes || len > QED_MAX_BACKING_NAME)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOSPC,
                            "backing file name of %zu bytes does not fit in the QED header area",
                            len);
    char *new_name = name ? strdup(name) : NULL;
    char *new_fmt = (nh.features & QED_F_BACKING_FORMAT_NO_PROBE) ? strdup("raw") : NULL;
    uint8_t *buf = malloc(QED_HEADER_BYTES + len);
    if (!buf || (name && !new_name) || ((nh.features & QED_F_BACKING_FORMAT_NO_PROBE) && !new_fmt)) {
        free(buf);
        free(new_name);
        free(new_fmt);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    qed_header_serialize(&nh, buf);
    if (len)
        memcpy(buf + QED_HEADER_BYTES, name, len);
    /* One synced write of header + name, as qemu. */
    ic_io_event(img->file, IC_EV_BACKING_CHANGE);
    int ret = ic_io_pwrite(img->file, buf, QED_HEADER_BYTES + len, 0);
    if (ret == 0)
        ret = ic_io_flush(img->file);
    free(buf);
    if (ret < 0) {
        free(new_name);
        free(new_fmt);
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot write the QED header: %s",
                            strerror(-ret));
    }
    s->header = nh;
    free(img->backing_name);
    free(img->backing_fmt);
    img->backing_name = new_name;
    img->backing_fmt = new_fmt;
    return 0;
}

static int qed_make_empty(struct ic_image *img, ic_error **errp)
{
    struct qed_state *s = qed_state_of(img);
    /* Zero the L1 and make it durable first: from then on every L2 table
     * and data cluster is unreferenced, so a crash before the truncate
     * below only leaks them. */
    memset(s->l1_table, 0, s->table_bytes);
    qed_l2_cache_clear(&s->l2_cache);
    int ret = qed_write_table(img, s->header.l1_table_offset, s->l1_table, 0, s->table_nelems,
                              true, IC_EV_QED_L1_UPDATE);
    if (ret < 0) {
        img->state = IC_IMAGE_ERROR;
        return ic_error_set(errp, IC_ERR_IO, -ret, "cannot write the QED L1 table: %s",
                            strerror(-ret));
    }
    uint64_t end = s->header.l1_table_offset + s->table_bytes;
    if (end < s->header_bytes)
        end = s->header_bytes;
    if (end < s->file_size) {
        ret = ic_io_truncate(img->file, end);
        if (ret == 0)
            ret = ic_io_flush(img->file);
        if (ret < 0)
            return ic_error_set(errp, IC_ERR_IO, -ret, "cannot shrink the QED file: %s",
                                strerror(-ret));
        s->file_size = end;
    }
    return 0;
}

static int qed_check_op(struct ic_image *img, unsigned fix, ic_check_report_fn report,
                        void *payload, ic_check_result *res, ic_error **errp)
{
    return qed_co_check(img, fix, report, payload, res, errp);
}

const struct ic_driver ic_driver_qed = {
    .name = "qed",
    .instance_size = sizeof(struct qed_state),
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .create = qed_create,
    .pread = qed_co_pread,
    .pwrite = qed_co_pwrite,
    .pwrite_zeroes = qed_co_pwrite_zeroes,
    .flush = qed_flush,
    .block_status = qed_co_block_status,
    .truncate = qed_truncate,
    .resize = qed_resize,
    .check = qed_check_op,
    .change_backing = qed_change_backing,
    .get_info = qed_get_info,
    .make_empty = qed_make_empty,
};
