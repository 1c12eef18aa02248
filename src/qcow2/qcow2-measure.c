/*
 * qcow2-measure.c - qemu-img measure -O qcow2 (qemu's qcow2_measure).
 *
 * Design notes:
 *  1. Options are read as qemu's measure reads them, not as create does:
 *     extended_l2, cluster_size (power of two, 512..2M; 16K at least with
 *     extended L2), compat (0.10 or 1.1), refcount_bits (a power of two up
 *     to 64; 16 for 0.10), preallocation, backing_file; every other create
 *     option of qcow2 (and the file protocol's) is accepted and ignored, as
 *     qemu does, except encryption, which imgchain does not support.
 *  2. fully_allocated is qemu's qcow2_calc_prealloc_size: one header
 *     cluster, the L2 tables and L1 table for the cluster-aligned size, the
 *     refcount structure found as the fixed point where it counts every
 *     cluster including itself, and the data.
 *  3. required = fully_allocated - virtual size + the data: with a source,
 *     every cluster holding a byte that reads as data (not zero) through
 *     the whole chain; all of it with a backing_file option (qemu cannot
 *     know what a backing file shares) or with falloc/full preallocation.
 *  4. "bitmaps" is reported when the target is v3 and the source is a v3
 *     qcow2 image: for each persistent bitmap in the source's directory,
 *     its data clusters (one bit per granule of the source's size), its
 *     bitmap table rounded to clusters, and the directory entries rounded
 *     to a cluster (qcow2_get_persistent_dirty_bitmap_size).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util/endian.h"
#include "util/overflow.h"

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint64_t round_up(uint64_t a, uint64_t b)
{
    return div_up(a, b) * b;
}

/* qemu's qcow2_refcount_metadata_size (without the generous increase). */
static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                       unsigned refcount_order)
{
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t per_block = cluster_size * 8 / (1u << refcount_order);
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

/* qemu's qcow2_calc_prealloc_size. */
static uint64_t prealloc_size(uint64_t total, uint64_t cs, unsigned refcount_order, bool ext_l2)
{
    uint64_t aligned = round_up(total, cs), meta = cs;
    uint64_t l2e = ext_l2 ? 16 : 8;
    uint64_t nl2e = round_up(aligned / cs, cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = round_up(nl2e * l2e / cs, cs / 8);
    meta += nl1e * 8;
    meta += refcount_metadata_size((meta + aligned) / cs, cs, refcount_order);
    return meta + aligned;
}

static unsigned ctz64(uint64_t v)
{
    unsigned n = 0;
    while (v && !(v & 1)) {
        v >>= 1;
        n++;
    }
    return n;
}

/* Bytes of data to copy: whole clusters of @cs touched by data that does
 * not read as zeroes (qemu's block-status loop). */
static int data_clusters(struct ic_image *src, uint64_t cs, uint64_t *out, ic_error **errp)
{
    uint64_t size = ic_image_size(src), req = 0, counted_end = 0;
    for (uint64_t off = 0; off < size;) {
        ic_block_status st;
        int ret = ic_image_block_status(src, NULL, off, size - off, &st, errp);
        if (ret < 0)
            return ret;
        uint64_t end = off + st.length;
        if (!(st.flags & IC_BS_ZERO) && (st.flags & IC_BS_DATA) && (st.flags & IC_BS_ALLOCATED)) {
            uint64_t first = off - off % cs;
            if (first < counted_end)
                first = counted_end;
            uint64_t last = round_up(end, cs);
            if (last > first)
                req += last - first;
            counted_end = last;
            end = last;
        }
        off = end;
    }
    *out = req;
    return 0;
}

/* Room the source's persistent bitmaps take in a target with clusters of
 * @cs (design note 4). */
static int bitmaps_size(struct ic_image *src, uint64_t cs, uint64_t *out, ic_error **errp)
{
    struct qcow2_state *s = qcow2_state(src);
    *out = 0;
    if (!s->nb_bitmaps)
        return 0;
    uint64_t dsz = s->bitmap_dir_size;
    uint8_t *d = malloc((size_t)dsz);
    if (!d)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = ic_io_pread_exact(src->file, d, (size_t)dsz, s->bitmap_dir_offset);
    if (ret < 0) {
        free(d);
        return ic_error_set(errp, IC_ERR_IO, -ret, "%s: cannot read the bitmap directory: %s",
                            src->filename, strerror(-ret));
    }
    uint64_t total = 0, dir = 0, pos = 0, vsize = src->size;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (dsz - pos < 24) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: bitmap directory entry %" PRIu32
                               " is truncated", src->filename, i);
            break;
        }
        unsigned gbits = d[pos + 17];
        uint64_t name = ic_load_be16(d + pos + 18), extra = ic_load_be32(d + pos + 20);
        uint64_t esize = round_up(24 + extra + name, 8);
        if (gbits > 63 || esize > dsz - pos) {
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%s: bitmap directory entry %" PRIu32
                               " is invalid", src->filename, i);
            break;
        }
        uint64_t bytes = div_up(div_up(vsize, 1ull << gbits), 8);
        uint64_t clusters = div_up(bytes, cs);
        total += clusters * cs + round_up(clusters * 8, cs);
        dir += round_up(24 + name, 8);
        pos += esize;
    }
    free(d);
    if (ret < 0)
        return ret;
    *out = total + round_up(dir, cs);
    return 0;
}

int qcow2_measure(ic_opts *opts, struct ic_image *src, uint64_t size, ic_measure_info *out,
                  ic_error **errp)
{
    uint64_t v, cs = 65536, refcount_bits = 16, osize = 0;
    unsigned version = 3;
    bool b, ext_l2 = false;
    const char *str;
    int ret;
    ic_prealloc prealloc = IC_PREALLOC_OFF;
    if ((ret = ic_opts_take_bool(opts, "extended_l2", &ext_l2, errp)) < 0)
        return ret;
    if ((ret = ic_opts_take_size(opts, "cluster_size", &v, errp)) < 0)
        return ret;
    if (ret > 0) {
        if (!IC_IS_POW2(v) || v < 512 || v > (2u << 20))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Cluster size must be a power of "
                                "two between 512 and 2048k");
        cs = v;
    }
    if (ext_l2 && cs < (1u << QCOW2_MIN_EXTL2_CLUSTER_BITS))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Extended L2 entries are only supported "
                            "with cluster sizes of at least %u bytes",
                            1u << QCOW2_MIN_EXTL2_CLUSTER_BITS);
    if (ic_opts_take_str(opts, "compat", &str) > 0) {
        if (!strcmp(str, "0.10"))
            version = 2;
        else if (!strcmp(str, "1.1"))
            version = 3;
        else
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Invalid compatibility level: '%s'",
                                str);
    }
    if ((ret = ic_opts_take_uint(opts, "refcount_bits", &v, errp)) < 0)
        return ret;
    if (ret > 0)
        refcount_bits = v;
    if (refcount_bits > 64 || !IC_IS_POW2(refcount_bits))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Refcount width must be a power of "
                            "two and may not exceed 64 bits");
    if (version < 3 && refcount_bits != 16)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Different refcount widths than 16 bits "
                            "require compatibility level 1.1 or above (use compat=1.1 or greater)");
    if (ic_opts_take_str(opts, "preallocation", &str) > 0 && ic_prealloc_parse(str, &prealloc) < 0)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid parameter value: %s", str);
    bool has_backing = ic_opts_take_str(opts, "backing_file", &str) > 0;
    if (ic_opts_take_str(opts, "encrypt.format", &str) > 0 ||
        ic_opts_take_str(opts, "encryption", &str) > 0)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "encrypted images are not supported");
    if ((ret = ic_opts_take_size(opts, "size", &osize, errp)) < 0)
        return ret;
    /* accepted and without effect on the size, as in qemu */
    static const char *const ignored_str[] = { "backing_fmt", "data_file", "compression_type" };
    for (size_t i = 0; i < sizeof(ignored_str) / sizeof(ignored_str[0]); i++)
        (void)ic_opts_take_str(opts, ignored_str[i], &str);
    static const char *const ignored_bool[] = { "data_file_raw", "lazy_refcounts", "nocow" };
    for (size_t i = 0; i < sizeof(ignored_bool) / sizeof(ignored_bool[0]); i++)
        if ((ret = ic_opts_take_bool(opts, ignored_bool[i], &b, errp)) < 0)
            return ret;
    if ((ret = ic_opts_take_size(opts, "extent_size_hint", &v, errp)) < 0)
        return ret;

    /* the size the options give (--size, else -o size) is checked even
     * when a source then decides the size, as qemu does */
    uint64_t vsize = src ? osize : size;
    uint64_t l2e = ext_l2 ? 16 : 8;
    if (vsize > UINT64_MAX - cs || div_up(round_up(vsize, cs) / cs, cs / l2e) * 8 >
                                       QCOW2_MAX_L1_BYTES)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG,
                            "The image size is too large (try using a larger cluster size)");
    if (src)
        vsize = ic_image_size(src);
    if (vsize > UINT64_MAX - cs)
        return ic_error_set(errp, IC_ERR_INVALID, EFBIG,
                            "The image size is too large (try using a larger cluster size)");
    vsize = round_up(vsize, cs);
    uint64_t required = 0;
    if (src && has_backing)
        required = vsize;
    else if (src && (ret = data_clusters(src, cs, &required, errp)) < 0)
        return ret;
    if (prealloc == IC_PREALLOC_FULL || prealloc == IC_PREALLOC_FALLOC)
        required = vsize;
    out->fully_allocated = prealloc_size(vsize, cs, ctz64(refcount_bits), ext_l2);
    out->required = out->fully_allocated - vsize + required;
    out->has_bitmaps = version >= 3 && src && src->drv == &ic_driver_qcow2 &&
                       qcow2_state(src)->h.version >= 3;
    if (out->has_bitmaps && (ret = bitmaps_size(src, cs, &out->bitmaps, errp)) < 0)
        return ret;
    return 0;
}
