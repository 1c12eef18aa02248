/*
 * qed-cluster.c - QED guest I/O: cluster lookup, reads through the chain,
 * allocating writes at EOF with copy-on-write, zero clusters, block status.
 *
 * Design notes:
 *  Owns: the L2 entries (and the L1 entries that point at new L2 tables).
 *  Translation: guest offset = [L1 index | L2 index | offset in cluster];
 *  an L2 entry is 0 (unallocated: backing file or zeroes), 1 (zero cluster,
 *  hides the backing file) or a data cluster offset.
 *  Invariants:
 *   1. Every offset read from a table is validated (aligned, after the
 *      header area, before EOF) before it is used; a bad one is reported as
 *      corruption naming the table and entry, and moves the image to ERROR.
 *   2. Lookups act on one L2 table at a time and return runs: contiguous
 *      host clusters, or clusters of one kind, so a large request costs one
 *      syscall per run, not per cluster.
 *   3. Allocation is only at EOF (s->file_size grows; no free lists), so a
 *      cluster is never handed out twice while the image is open.
 *   4. Allocating write order (qemu's qed_aio_write_alloc; docs/qed.md,
 *      "Allocation"):
 *        a. no opened backing file: NEED_CHECK set durably (qed.c);
 *        b. head COW, data, tail COW written to the new clusters;
 *        c. with a backing file: flush (data durable before it is
 *           referenced, so a crash cannot expose an unwritten cluster whose
 *           untouched part should have come from the backing file);
 *        d. existing L2: write the changed sector(s);
 *           new L2: write the whole table, flush, then the L1 entry.
 *      Crash at any point: before d the new clusters are only leaked; a new
 *      L2 table is durable before the L1 points at it.  Without a backing
 *      file an L2 entry may reach the disk before its data; NEED_CHECK is
 *      then already durable and the next read-write open repairs it.
 *   5. COW of a zero cluster fills zeroes, never backing data.
 *   6. A failed metadata write drops the cached table and moves the image to
 *      ERROR (sticky): memory never claims what the disk may not have.
 *  Follows qemu's QED driver (its cluster lookup and write paths).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"
#include "util/overflow.h"

/* Converts a failed metadata write into the sticky ERROR state. */
static int meta_fail(struct ic_image *img, int ret, const char *what)
{
    img->state = IC_IMAGE_ERROR;
    return ic_image_fail(img, ret, "cannot write the QED %s: %s", what, strerror(-ret));
}

int qed_find_cluster(struct ic_image *img, uint64_t pos, uint64_t len, uint64_t *host,
                     uint64_t *run)
{
    struct qed_state *s = qed_state_of(img);
    const uint64_t cs = s->header.cluster_size;
    /* Requests act on one L2 table at a time. */
    uint64_t l2_end = ((pos >> s->l1_shift) + 1) << s->l1_shift;
    if (len > l2_end - pos)
        len = l2_end - pos;
    uint32_t l1i = qed_l1_index(s, pos);
    uint64_t l2_off = s->l1_table[l1i];
    *host = 0;
    if (l2_off == QED_UNALLOC_CLUSTER) {
        *run = len;
        return QED_CLUSTER_L1;
    }
    if (!qed_check_table_offset(s, l2_off))
        return ic_image_corrupt(img, true, s->header.l1_table_offset + (uint64_t)l1i * 8,
                                "QED L1 entry %" PRIu32 " has an invalid L2 table offset %#" PRIx64,
                                l1i, l2_off);
    uint64_t *t;
    int ret = qed_read_l2_table(img, l2_off, &t);
    if (ret < 0)
        return ic_image_fail(img, ret, "cannot read the QED L2 table at %#" PRIx64 ": %s", l2_off,
                             strerror(-ret));
    uint32_t idx = qed_l2_index(s, pos);
    uint64_t in = qed_offset_into_cluster(s, pos);
    uint64_t n = (in + len + cs - 1) >> s->cluster_bits;
    uint64_t first = t[idx];
    int kind;
    if (first == QED_UNALLOC_CLUSTER)
        kind = QED_CLUSTER_L2;
    else if (first == QED_ZERO_CLUSTER)
        kind = QED_CLUSTER_ZERO;
    else
        kind = QED_CLUSTER_FOUND;
    uint64_t i;
    for (i = 0; i < n; i++) {
        uint64_t e = t[idx + i];
        if (kind == QED_CLUSTER_FOUND) {
            if (e != first + i * cs)
                break;
            if (!qed_check_cluster_offset(s, e)) {
                if (i > 0)
                    break; /* report it when the request reaches it */
                return ic_image_corrupt(img, true, l2_off + (uint64_t)(idx + i) * 8,
                                        "QED L2 entry %" PRIu64 " of the table at %#" PRIx64
                                        " has an invalid cluster offset %#" PRIx64
                                        " (unaligned, inside the header or past the end of the file)",
                                        idx + i, l2_off, e);
            }
        } else if (e != first) {
            break;
        }
    }
    uint64_t bytes = i * cs - in;
    *run = bytes < len ? bytes : len;
    if (kind == QED_CLUSTER_FOUND)
        *host = first + in;
    return kind;
}

int qed_co_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        uint64_t host, run;
        int kind = qed_find_cluster(img, off, len, &host, &run);
        if (kind < 0)
            return kind;
        int ret = 0;
        switch ((enum qed_cluster_kind)kind) {
        case QED_CLUSTER_FOUND:
            ret = ic_io_pread(img->file, p, (size_t)run, host);
            break;
        case QED_CLUSTER_ZERO:
            memset(p, 0, (size_t)run);
            break;
        case QED_CLUSTER_L2:
        case QED_CLUSTER_L1:
            ret = ic_image_backing_pread(img, p, (size_t)run, off);
            break;
        }
        if (ret < 0)
            return ret;
        p += run;
        off += run;
        len -= (size_t)run;
    }
    return 0;
}

/* Fills @buf with what [pos, pos+len) reads as before the write: zeroes for
 * a zero cluster, the backing chain otherwise. */
static int cow_read(struct ic_image *img, int kind, uint8_t *buf, uint64_t len, uint64_t pos)
{
    if (kind == QED_CLUSTER_ZERO) {
        memset(buf, 0, (size_t)len);
        return 0;
    }
    ic_io_event(img->file, IC_EV_COW_READ);
    return ic_image_backing_pread(img, buf, (size_t)len, pos);
}

static int cow_write(struct ic_image *img, int kind, uint64_t pos, uint64_t len, uint64_t host)
{
    if (len == 0)
        return 0;
    uint8_t *buf = malloc((size_t)len);
    if (!buf)
        return -ENOMEM;
    int ret = cow_read(img, kind, buf, len, pos);
    if (ret == 0) {
        ic_io_event(img->file, IC_EV_COW_WRITE);
        ret = ic_io_pwrite(img->file, buf, (size_t)len, host);
    }
    free(buf);
    return ret;
}

/* Reserves @bytes at EOF; -EFBIG if the file would pass the offset limit. */
static int alloc_at_eof(struct ic_image *img, uint64_t bytes, uint64_t *out)
{
    struct qed_state *s = qed_state_of(img);
    uint64_t end;
    /* Host offsets are int64_t for the OS: stay below INT64_MAX. */
    if (ic_add_overflow(s->file_size, bytes, &end) || end > (uint64_t)INT64_MAX)
        return ic_image_fail(img, -EFBIG, "QED image file would exceed the maximum file size");
    *out = s->file_size;
    s->file_size = end;
    return 0;
}

/* Points @n L2 entries starting at @pos to @cluster (contiguous clusters)
 * or to QED_ZERO_CLUSTER (all of them); allocates the L2 table when
 * @kind is QED_CLUSTER_L1. */
static int l2_update(struct ic_image *img, int kind, uint64_t pos, uint64_t n, uint64_t cluster)
{
    struct qed_state *s = qed_state_of(img);
    const uint64_t cs = s->header.cluster_size;
    uint32_t l1i = qed_l1_index(s, pos), l2i = qed_l2_index(s, pos);
    uint64_t *t;
    uint64_t l2_off = 0;
    int ret;
    if (kind == QED_CLUSTER_L1) {
        if ((ret = alloc_at_eof(img, s->table_bytes, &l2_off)) < 0)
            return ret;
        t = qed_l2_cache_insert(&s->l2_cache, l2_off);
        if (!t)
            return -ENOMEM;
        memset(t, 0, s->table_bytes);
    } else {
        l2_off = s->l1_table[l1i];
        ret = qed_read_l2_table(img, l2_off, &t);
        if (ret < 0)
            return ic_image_fail(img, ret, "cannot read the QED L2 table at %#" PRIx64 ": %s",
                                 l2_off, strerror(-ret));
    }
    for (uint64_t i = 0; i < n; i++)
        t[l2i + i] = cluster == QED_ZERO_CLUSTER ? QED_ZERO_CLUSTER : cluster + i * cs;
    if (kind != QED_CLUSTER_L1) {
        /* Write only the changed sector(s): each entry lands old or new. */
        ret = qed_write_table(img, l2_off, t, l2i, (uint32_t)n, false, IC_EV_QED_L2_UPDATE);
        if (ret < 0) {
            qed_l2_cache_drop(&s->l2_cache, l2_off);
            return meta_fail(img, ret, "L2 table");
        }
        return 0;
    }
    /* A new table is written whole and flushed before the L1 points at it:
     * if we crash before the L1 update, the table and data only leak. */
    ret = qed_write_table(img, l2_off, t, 0, s->table_nelems, true, IC_EV_QED_L2_ALLOC);
    if (ret < 0) {
        qed_l2_cache_drop(&s->l2_cache, l2_off);
        return meta_fail(img, ret, "new L2 table");
    }
    s->l1_table[l1i] = l2_off;
    ret = qed_write_l1_table(img, l1i, 1, IC_EV_QED_L1_UPDATE);
    if (ret < 0) {
        s->l1_table[l1i] = QED_UNALLOC_CLUSTER;
        qed_l2_cache_drop(&s->l2_cache, l2_off);
        return meta_fail(img, ret, "L1 table");
    }
    return 0;
}

/* Writes [pos, pos+len) (within one L2 table, all of @kind, not FOUND) to
 * new clusters at EOF.  @buf NULL: make the clusters zero clusters (pos and
 * len cluster aligned). */
static int write_alloc(struct ic_image *img, int kind, const uint8_t *buf, uint64_t len,
                       uint64_t pos)
{
    struct qed_state *s = qed_state_of(img);
    const uint64_t cs = s->header.cluster_size;
    uint64_t start = qed_start_of_cluster(s, pos);
    uint64_t head = pos - start;
    uint64_t end = pos + len;
    uint64_t aligned_end = IC_ALIGN_UP(end, cs);
    uint64_t tail = aligned_end - end;
    uint64_t n = (aligned_end - start) >> s->cluster_bits;
    bool has_backing = img->backing != NULL;
    int ret;

    if (!buf && kind == QED_CLUSTER_ZERO)
        return 0; /* already zero clusters */
    if (buf && kind != QED_CLUSTER_ZERO && (head || tail) && img->backing_name && !has_backing)
        return ic_image_fail(img, -ENOTSUP,
                             "a partial-cluster write needs the backing file '%s', which is "
                             "not open", img->backing_name);
    if (!has_backing && (ret = qed_set_need_check(img)) < 0)
        return ret;
    if (!buf)
        return l2_update(img, kind, pos, n, QED_ZERO_CLUSTER);

    uint64_t cluster = 0;
    if ((ret = alloc_at_eof(img, n * cs, &cluster)) < 0)
        return ret;
    if ((ret = cow_write(img, kind, start, head, cluster)) < 0)
        return ret;
    ic_io_event(img->file, IC_EV_DATA_WRITE);
    if ((ret = ic_io_pwrite(img->file, buf, (size_t)len, cluster + head)) < 0)
        return ret;
    if ((ret = cow_write(img, kind, end, tail, cluster + head + len)) < 0)
        return ret;
    if (has_backing && (ret = ic_io_flush(img->file)) < 0)
        return ret;
    /* If we crash before the L2 update below reaches the disk, the new
     * clusters are only leaked. */
    return l2_update(img, kind, pos, n, cluster);
}

int qed_co_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        uint64_t host, run;
        int kind = qed_find_cluster(img, off, len, &host, &run);
        if (kind < 0)
            return kind;
        int ret;
        if (kind == QED_CLUSTER_FOUND) {
            ic_io_event(img->file, IC_EV_DATA_WRITE);
            ret = ic_io_pwrite(img->file, p, (size_t)run, host);
        } else {
            ret = write_alloc(img, kind, p, run, off);
        }
        if (ret < 0)
            return ret;
        p += run;
        off += run;
        len -= (size_t)run;
    }
    return 0;
}

static int write_zero_buffer(struct ic_image *img, uint64_t off, uint64_t len)
{
    uint8_t *z = calloc(1, (size_t)len);
    if (!z)
        return -ENOMEM;
    int ret = qed_co_pwrite(img, z, (size_t)len, off);
    free(z);
    return ret;
}

int qed_co_pwrite_zeroes(struct ic_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qed_state *s = qed_state_of(img);
    const uint64_t cs = s->header.cluster_size;
    int ret;
    /* Unaligned edges (less than a cluster each) are written as data; the
     * end of the disk counts as aligned (the last cluster may be partial). */
    uint64_t head = qed_offset_into_cluster(s, off);
    if (head) {
        uint64_t n = IC_MIN(cs - head, len);
        if ((ret = write_zero_buffer(img, off, n)) < 0)
            return ret;
        off += n;
        len -= n;
    }
    uint64_t mid = off + len == img->size ? len : IC_ALIGN_DOWN(len, cs);
    uint64_t tail = len - mid;
    while (mid > 0) {
        uint64_t host, run;
        int kind = qed_find_cluster(img, off, mid, &host, &run);
        if (kind < 0)
            return kind;
        if (kind == QED_CLUSTER_FOUND) {
            /* Keep the cluster (QED cannot free it without leaking it);
             * punch the host range when allowed so it costs no space. */
            ret = -ENOTSUP;
            if (flags & IC_ZERO_MAY_UNMAP)
                ret = ic_io_punch_hole(img->file, host, run);
            if (ret < 0)
                ret = ic_io_pwrite_zeroes(img->file, host, run);
        } else if (!img->backing_name && kind != QED_CLUSTER_ZERO) {
            ret = 0; /* nothing can show through: it already reads as zeroes */
        } else {
            ret = write_alloc(img, kind, NULL, run, off);
        }
        if (ret < 0)
            return ret;
        off += run;
        mid -= run;
    }
    if (tail)
        return write_zero_buffer(img, off, tail);
    return 0;
}

int qed_co_block_status(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                        unsigned *flags, uint64_t *map, ic_io **file)
{
    uint64_t done = 0, first_host = 0;
    int first_kind = -1;
    while (done < len) {
        uint64_t host, run;
        int kind = qed_find_cluster(img, off + done, len - done, &host, &run);
        if (kind < 0) {
            if (done > 0)
                break; /* report what we have; the next call hits the error */
            return kind;
        }
        if (kind == QED_CLUSTER_L1)
            kind = QED_CLUSTER_L2; /* both are "not allocated in this layer" */
        if (first_kind < 0) {
            first_kind = kind;
            first_host = host;
        } else if (kind != first_kind ||
                   (kind == QED_CLUSTER_FOUND && host != first_host + done)) {
            break;
        }
        done += run;
    }
    *pnum = done;
    *map = 0;
    *file = NULL;
    switch ((enum qed_cluster_kind)first_kind) {
    case QED_CLUSTER_FOUND:
        *flags = IC_BS_ALLOCATED | IC_BS_DATA | IC_BS_OFFSET_VALID;
        *map = first_host;
        *file = img->file;
        break;
    case QED_CLUSTER_ZERO:
        *flags = IC_BS_ALLOCATED | IC_BS_ZERO;
        break;
    case QED_CLUSTER_L2:
    case QED_CLUSTER_L1:
        *flags = 0;
        break;
    }
    return 0;
}
