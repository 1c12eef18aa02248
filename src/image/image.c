/*
 * image.c - the generic image handle: driver registry, probing, one-layer
 * open, guest I/O dispatch through the chain, block status, create, info
 * and check entry points.
 *
 * Design notes:
 *  1. Drivers see only struct ic_image and the ic_io wrappers; they never
 *     open other files themselves except through ic_image_open_file().
 *  2. Public data-path functions validate ranges and state, call the driver,
 *     and turn a negative return into an ic_error: the detail recorded with
 *     ic_image_corrupt()/ic_image_fail() when there is one, strerror
 *     otherwise.  Every message starts with the file name.
 *  3. The state machine is documented in image.h; ERROR is sticky: reads
 *     stay allowed so data can be rescued, writes fail with EIO.
 *  4. Backing reads clamp to the backing image's size: a backing file
 *     shorter than its overlay reads as zeroes past its end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "util/overflow.h"
#include "util/path.h"

static const struct ic_driver *const drivers[] = {
    &ic_driver_qcow2,
    &ic_driver_qed,
    &ic_driver_raw,
};

const struct ic_driver *ic_driver_find(const char *name)
{
    for (size_t i = 0; i < IC_ARRAY_SIZE(drivers); i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

const struct ic_driver *ic_driver_probe(const uint8_t *buf, size_t len)
{
    const struct ic_driver *best = &ic_driver_raw;
    int best_score = 0;
    for (size_t i = 0; i < IC_ARRAY_SIZE(drivers); i++) {
        if (!drivers[i]->probe)
            continue;
        int s = drivers[i]->probe(buf, len);
        if (s > best_score) {
            best_score = s;
            best = drivers[i];
        }
    }
    return best;
}

const char *ic_probe_format(const uint8_t *buf, size_t len, const char *filename,
                            const struct ic_driver **drv)
{
    const struct ic_driver *own = &ic_driver_raw;
    int own_score = 0;
    for (size_t i = 0; i < IC_ARRAY_SIZE(drivers); i++) {
        int s = drivers[i]->probe ? drivers[i]->probe(buf, len) : 0;
        if (s > own_score) {
            own_score = s;
            own = drivers[i];
        }
    }
    /* The foreign probes see qemu's 512-byte, zero-padded buffer. */
    uint8_t sec[IC_PROBE_SECTOR] = { 0 };
    memcpy(sec, buf, len < sizeof(sec) ? len : sizeof(sec));
    int foreign_score = 0;
    const char *foreign = ic_foreign_probe(sec, sizeof(sec), filename, &foreign_score);
    if (foreign && foreign_score > own_score) {
        *drv = NULL;
        return foreign;
    }
    *drv = own;
    return own->name;
}

int ic_image_probe_file(ic_io *file, const struct ic_driver **drv, ic_error **errp)
{
    uint8_t buf[4096];
    *drv = NULL;
    int64_t n = ic_io_pread_upto(file, buf, sizeof(buf), 0);
    if (n < 0)
        return ic_error_set(errp, IC_ERR_IO, (int)-n, "%s: cannot read header: %s",
                            ic_io_name(file), strerror((int)-n));
    if (n == 0) {
        /* an empty file is raw, whatever its name (qemu's rule) */
        *drv = &ic_driver_raw;
        return 0;
    }
    const char *name = ic_probe_format(buf, (size_t)n, ic_io_name(file), drv);
    if (!*drv)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: %s images are not supported", ic_io_name(file), name);
    return 0;
}

/* ---- errors ------------------------------------------------------------ */

static void set_last_error(struct ic_image *img, ic_error_kind kind, int err, const char *msg)
{
    ic_error_free(img->last_error);
    img->last_error = NULL;
    ic_error_set(&img->last_error, kind, err, "%s", msg);
}

int ic_image_corrupt(struct ic_image *img, bool fatal, uint64_t offset, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char full[640];
    if (offset != UINT64_MAX)
        snprintf(full, sizeof(full), "image is corrupt: %s (offset %#" PRIx64 ")", msg, offset);
    else
        snprintf(full, sizeof(full), "image is corrupt: %s", msg);
    set_last_error(img, IC_ERR_CORRUPT, EIO, full);
    if (fatal)
        img->state = IC_IMAGE_ERROR;
    return -EIO;
}

int ic_image_fail(struct ic_image *img, int ret, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    set_last_error(img, ic_error_kind_from_errno(-ret), -ret, msg);
    return ret;
}

/* Turns a data-path failure into the caller's error, once. */
static int report(struct ic_image *img, int ret, ic_error **errp, const char *what, uint64_t off)
{
    if (img->last_error) {
        ic_error_set(errp, img->last_error->kind, img->last_error->errnum, "%s: %s",
                     img->filename, img->last_error->msg);
        ic_error_free(img->last_error);
        img->last_error = NULL;
        return ret;
    }
    if (ret == -ENOTSUP)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: %s is not supported by format %s",
                            img->filename, what, img->drv->name);
    return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: %s at offset %" PRIu64
                        " failed: %s", img->filename, what, off, strerror(-ret));
}

/* ---- opening one layer ------------------------------------------------- */

int ic_image_open_file(ic_open_file_fn fn, void *payload, ic_io **out, const char *path,
                       unsigned io_flags, ic_error **errp)
{
    return ic_image_open_file_cache(fn, payload, out, path, io_flags, IC_CACHE_DEFAULT, errp);
}

int ic_image_open_layer(struct ic_image **out, ic_io *file, const char *filename,
                        const struct ic_driver *drv, unsigned flags,
                        ic_open_file_fn open_file, void *payload, ic_error **errp)
{
    *out = NULL;
    struct ic_image *img = calloc(1, sizeof(*img));
    if (!img) {
        ic_io_close(file);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", filename);
    }
    img->filename = strdup(filename);
    img->opaque = drv->instance_size ? calloc(1, drv->instance_size) : NULL;
    if (!img->filename || (drv->instance_size && !img->opaque)) {
        free(img->filename);
        free(img->opaque);
        free(img);
        ic_io_close(file);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", filename);
    }
    img->drv = drv;
    img->file = file;
    img->flags = flags;
    img->read_only = !(flags & IC_OPEN_RDWR);
    img->open_file = open_file;
    img->payload = payload;
    int ret = drv->open(img, flags, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s", filename);
        ic_io_close(img->file);
        free(img->backing_name);
        free(img->backing_fmt);
        free(img->filename);
        free(img->opaque);
        free(img);
        return ret;
    }
    *out = img;
    return 0;
}

void ic_image_free_chain(struct ic_image *img)
{
    while (img) {
        struct ic_image *next = img->backing;
        img->drv->close(img);
        ic_io_close(img->file);
        ic_error_free(img->last_error);
        free(img->backing_name);
        free(img->backing_fmt);
        free(img->backing_path);
        free(img->filename);
        free(img->opaque);
        free(img);
        img = next;
    }
}

/* Writes the layer's metadata and flushes its file; in the unsafe cache
 * mode the trailing flush of the file is deferred (ic_image_set_cache). */
static int flush_layer(struct ic_image *img)
{
    return img->drv->flush ? img->drv->flush(img) : ic_io_flush(img->file);
}

int ic_image_close(ic_image *img)
{
    if (!img)
        return 0;
    int ret = 0;
    /* Every writable layer is flushed, dirty or not: drivers keep state such
     * as QED's need-check bit or qcow2's dirty bit that a clean close clears
     * only after everything before it is durable.  A writable backing layer
     * (commit's base) is finished here too, so its errors are reported. */
    for (struct ic_image *l = img; l; l = l->backing) {
        if (l->read_only || l->state == IC_IMAGE_ERROR)
            continue;
        int r = l->drv->finish ? l->drv->finish(l)
                : flush_layer(l);
        if (r < 0 && ret == 0)
            ret = r;
    }
    ic_image_free_chain(img);
    return ret;
}

/* ---- properties ---------------------------------------------------------- */

uint64_t ic_image_size(const ic_image *img) { return img->size; }
const char *ic_image_filename(const ic_image *img) { return img->filename; }
const char *ic_image_format(const ic_image *img) { return img->drv->name; }
uint32_t ic_image_cluster_size(const ic_image *img) { return img->cluster_size; }
ic_image *ic_image_backing(const ic_image *img) { return img->backing; }
const char *ic_image_backing_name(const ic_image *img) { return img->backing_name; }
const char *ic_image_backing_format(const ic_image *img) { return img->backing_fmt; }
const char *ic_image_backing_path(const ic_image *img) { return img->backing_path; }
ic_io *ic_image_file(const ic_image *img) { return img->file; }

/* ---- guest I/O ----------------------------------------------------------- */

static int check_range(struct ic_image *img, uint64_t off, uint64_t len, ic_error **errp)
{
    if (!ic_range_within(off, len, img->size))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: range %" PRIu64 "+%" PRIu64 " is beyond the virtual size %" PRIu64,
                            img->filename, off, len, img->size);
    return 0;
}

static int check_writable(struct ic_image *img, ic_error **errp)
{
    if (img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: image is opened read-only",
                            img->filename);
    if (img->state == IC_IMAGE_ERROR)
        return ic_error_set(errp, IC_ERR_CORRUPT, EIO,
                            "%s: image is in an error state after an earlier failure; writes refused",
                            img->filename);
    return 0;
}

int ic_image_backing_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    struct ic_image *bk = img->backing;
    if (!bk) {
        /* A recorded but unopened backing file (IC_OPEN_NO_BACKING) must not
         * read as zeroes: a copy-on-write would then lose its data. */
        if (img->backing_name)
            return ic_image_fail(img, -EINVAL,
                                 "backing file '%s' is not open; cannot read through it",
                                 img->backing_name);
        memset(buf, 0, len);
        return 0;
    }
    size_t n = 0;
    if (off < bk->size) {
        uint64_t avail = bk->size - off;
        n = avail < len ? (size_t)avail : len;
        int ret = bk->drv->pread(bk, buf, n, off);
        if (ret < 0) {
            /* carry the backing layer's detail up to the top's report */
            if (bk->last_error && !img->last_error) {
                ic_error_set(&img->last_error, bk->last_error->kind, bk->last_error->errnum,
                             "backing file %s: %s", bk->filename, bk->last_error->msg);
                ic_error_free(bk->last_error);
                bk->last_error = NULL;
            }
            return ret;
        }
    }
    if (n < len)
        memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

int ic_image_pread(ic_image *img, void *buf, size_t len, uint64_t off, ic_error **errp)
{
    int ret = check_range(img, off, len, errp);
    if (ret < 0 || len == 0)
        return ret;
    ret = img->drv->pread(img, buf, len, off);
    if (ret < 0)
        return report(img, ret, errp, "read", off);
    return 0;
}

int ic_image_pwrite(ic_image *img, const void *buf, size_t len, uint64_t off, ic_error **errp)
{
    int ret = check_range(img, off, len, errp);
    if (ret < 0 || len == 0)
        return ret;
    if ((ret = check_writable(img, errp)) < 0)
        return ret;
    if (!img->drv->pwrite)
        return report(img, -ENOTSUP, errp, "write", off);
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->pwrite(img, buf, len, off);
    if (ret < 0)
        return report(img, ret, errp, "write", off);
    return 0;
}

int ic_image_pwrite_zeroes(ic_image *img, uint64_t off, uint64_t len, unsigned flags,
                           ic_error **errp)
{
    int ret = check_range(img, off, len, errp);
    if (ret < 0 || len == 0)
        return ret;
    if ((ret = check_writable(img, errp)) < 0)
        return ret;
    img->state = IC_IMAGE_DIRTY;
    if (img->drv->pwrite_zeroes) {
        ret = img->drv->pwrite_zeroes(img, off, len, flags);
        if (ret != -ENOTSUP) {
            if (ret < 0)
                return report(img, ret, errp, "write zeroes", off);
            return 0;
        }
    }
    if (!img->drv->pwrite)
        return report(img, -ENOTSUP, errp, "write zeroes", off);
    size_t chunk = 1u << 20;
    uint8_t *zero = calloc(1, chunk);
    if (!zero)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", img->filename);
    while (len > 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ret = img->drv->pwrite(img, zero, n, off);
        if (ret < 0) {
            free(zero);
            return report(img, ret, errp, "write zeroes", off);
        }
        off += n;
        len -= n;
    }
    free(zero);
    return 0;
}

int ic_image_discard(ic_image *img, uint64_t off, uint64_t len, ic_error **errp)
{
    int ret = check_range(img, off, len, errp);
    if (ret < 0 || len == 0)
        return ret;
    if ((ret = check_writable(img, errp)) < 0)
        return ret;
    if (!img->drv->discard)
        return 0;
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->discard(img, off, len);
    if (ret < 0)
        return report(img, ret, errp, "discard", off);
    return 0;
}

int ic_image_pwrite_compressed(ic_image *img, const void *buf, size_t len, uint64_t off,
                               ic_error **errp)
{
    int ret = check_range(img, off, len, errp);
    if (ret < 0)
        return ret;
    if ((ret = check_writable(img, errp)) < 0)
        return ret;
    if (!img->drv->pwrite_compressed)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support compression", img->filename,
                            img->drv->name);
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->pwrite_compressed(img, buf, len, off);
    if (ret < 0)
        return report(img, ret, errp, "compressed write", off);
    return 0;
}

bool ic_image_can_precompress(const struct ic_image *img)
{
    return img->drv->compress && img->drv->pwrite_precompressed;
}

int64_t ic_image_compress_cluster(const struct ic_image *img, void *dst, size_t dst_len,
                                  const void *src, size_t len)
{
    if (!img->drv->compress)
        return -ENOTSUP;
    return img->drv->compress(img, dst, dst_len, src, len);
}

int ic_image_pwrite_precompressed(struct ic_image *img, const void *cbuf, size_t clen,
                                  uint64_t off, ic_error **errp)
{
    int ret = check_range(img, off, 1, errp);
    if (ret < 0)
        return ret;
    if ((ret = check_writable(img, errp)) < 0)
        return ret;
    if (!img->drv->pwrite_precompressed)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support compression", img->filename,
                            img->drv->name);
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->pwrite_precompressed(img, cbuf, clen, off);
    if (ret < 0)
        return report(img, ret, errp, "compressed write", off);
    return 0;
}

int ic_image_flush(ic_image *img, ic_error **errp)
{
    if (img->read_only)
        return 0;
    int ret = flush_layer(img);
    /* An explicit flush is an ordering point against other files (a
     * journal, another image): durable now in every cache mode. */
    if (ret == 0)
        ret = ic_io_flush_pending(img->file);
    if (ret < 0) {
        img->state = IC_IMAGE_ERROR;
        return report(img, ret, errp, "flush", 0);
    }
    if (img->state == IC_IMAGE_DIRTY)
        img->state = IC_IMAGE_OPEN;
    return 0;
}

int ic_image_flush_final(ic_image *img, ic_error **errp)
{
    if (img->read_only || img->cache != IC_CACHE_UNSAFE)
        return ic_image_flush(img, errp);
    int ret = flush_layer(img);
    if (ret < 0) {
        img->state = IC_IMAGE_ERROR;
        return report(img, ret, errp, "flush", 0);
    }
    if (img->state == IC_IMAGE_DIRTY)
        img->state = IC_IMAGE_OPEN;
    return 0;
}

int ic_image_truncate(ic_image *img, uint64_t size, ic_error **errp)
{
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->truncate)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s cannot be resized", img->filename, img->drv->name);
    ret = img->drv->truncate(img, size, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

int ic_image_pwrite_batch(struct ic_image *img, struct ic_io_req *reqs, size_t n,
                          ic_error **errp)
{
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].op != IC_IO_REQ_WRITE)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "%s: a write batch holds a request that is not a write",
                                img->filename);
        if ((ret = check_range(img, reqs[i].off, reqs[i].len, errp)) < 0)
            return ret;
    }
    /* A probed raw image checks its first sector in pwrite (raw.c note 4):
     * a batch touching it goes through pwrite. */
    bool batch = img->drv->pwrite_batch != NULL;
    for (size_t i = 0; batch && img->probed && i < n; i++)
        if (reqs[i].off < IC_PROBE_SECTOR)
            batch = false;
    if (!batch) {
        for (size_t i = 0; i < n; i++)
            if ((ret = ic_image_pwrite(img, reqs[i].buf, reqs[i].len, reqs[i].off, errp)) < 0)
                return ret;
        return 0;
    }
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->pwrite_batch(img, reqs, n);
    if (ret < 0) {
        for (size_t i = 0; i < n; i++)
            if (reqs[i].ret < 0)
                return report(img, reqs[i].ret, errp, "write", reqs[i].off);
        return report(img, ret, errp, "write", reqs[0].off);
    }
    return 0;
}

int ic_image_change_backing(struct ic_image *img, const char *name, const char *fmt,
                            ic_error **errp)
{
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->change_backing)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not record a backing file", img->filename,
                            img->drv->name);
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->change_backing(img, name, fmt, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s: could not change the backing file", img->filename);
    return ret;
}

int ic_image_make_empty(struct ic_image *img, ic_error **errp)
{
    int ret = check_writable(img, errp);
    if (ret < 0)
        return ret;
    if (!img->drv->make_empty)
        return ic_image_discard(img, 0, img->size, errp);
    img->state = IC_IMAGE_DIRTY;
    ret = img->drv->make_empty(img, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s: cannot empty the image", img->filename);
    return ret;
}

/* ---- capabilities -------------------------------------------------------- */

const char *ic_driver_name(const struct ic_driver *drv) { return drv->name; }
bool ic_driver_headerless(const struct ic_driver *drv) { return drv->headerless; }
bool ic_driver_can_compress(const struct ic_driver *drv) { return drv->pwrite_compressed != NULL; }
bool ic_image_headerless(const struct ic_image *img) { return img->drv->headerless; }
bool ic_image_can_write(const struct ic_image *img) { return img->drv->pwrite != NULL; }
bool ic_image_can_resize(const struct ic_image *img) { return img->drv->truncate != NULL; }
bool ic_image_can_compress(const struct ic_image *img) { return ic_driver_can_compress(img->drv); }

/* ---- block status ------------------------------------------------------- */

int ic_image_layer_block_status(struct ic_image *img, uint64_t off, uint64_t len,
                                uint64_t *pnum, unsigned *flags, uint64_t *map, ic_io **file)
{
    return img->drv->block_status(img, off, len, pnum, flags, map, file);
}

/* ic_image_block_status, also giving the file behind host_offset (NULL
 * when there is none). */
static int status_walk(ic_image *img, const ic_image *base, uint64_t off, uint64_t len,
                       ic_block_status *out, ic_io **data_file, ic_error **errp)
{
    *data_file = NULL;
    int ret = check_range(img, off, len ? len : 1, errp);
    if (ret < 0)
        return ret;
    if (len == 0)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: zero-length block status",
                            img->filename);
    memset(out, 0, sizeof(*out));
    out->offset = off;
    unsigned depth = 0;
    struct ic_image *layer = img;
    /* host offset a layer knows for a range it does not decide (qcow2's
     * unallocated subclusters of an allocated cluster) */
    uint64_t last_map = 0;
    ic_io *last_file = NULL;
    bool last_offset = false;
    for (; layer && layer != base; layer = layer->backing, depth++) {
        if (off >= layer->size) {
            /* past the end of a shorter backing file: zeroes, decided here */
            out->length = len;
            out->depth = depth;
            out->flags = IC_BS_ZERO;
            if (last_offset) {
                /* the layer above keeps its host offset, as in qemu */
                out->flags |= IC_BS_OFFSET_VALID;
                out->host_offset = last_map;
                out->filename = last_file ? ic_io_name(last_file) : NULL;
                *data_file = last_file;
            }
            return 0;
        }
        uint64_t n = layer->size - off < len ? layer->size - off : len;
        uint64_t pnum = 0, map = 0;
        unsigned flags = 0;
        ic_io *file = NULL;
        ret = layer->drv->block_status(layer, off, n, &pnum, &flags, &map, &file);
        if (ret < 0)
            return report(layer, ret, errp, "block status", off);
        if (pnum == 0 || pnum > n)
            return ic_error_set(errp, IC_ERR_OTHER, EIO,
                                "%s: driver returned an invalid block status length",
                                layer->filename);
        if (flags & IC_BS_ALLOCATED) {
            out->length = pnum;
            out->depth = depth;
            out->flags = flags;
            out->host_offset = map;
            out->filename = (flags & IC_BS_OFFSET_VALID) && file ? ic_io_name(file) : NULL;
            *data_file = (flags & IC_BS_OFFSET_VALID) ? file : NULL;
            return 0;
        }
        len = pnum;
        last_offset = (flags & IC_BS_OFFSET_VALID) != 0;
        last_map = map;
        last_file = file;
    }
    out->length = len;
    out->depth = depth ? depth - 1 : 0;
    /* Nothing above base decides the range.  Without a base it reads as
     * zeroes; with one, the caller asked only about the layers above. */
    out->flags = layer ? 0 : IC_BS_ZERO;
    if (!layer && last_offset) {
        /* as qemu: the bottom layer's host offset stays (not allocated) */
        out->flags |= IC_BS_OFFSET_VALID;
        out->host_offset = last_map;
        out->filename = last_file ? ic_io_name(last_file) : NULL;
        *data_file = last_file;
    }
    return 0;
}

int ic_image_block_status(ic_image *img, const ic_image *base, uint64_t off, uint64_t len,
                          ic_block_status *out, ic_error **errp)
{
    ic_io *file;
    return status_walk(img, base, off, len, out, &file, errp);
}

int ic_image_copy_range(ic_image *dst, ic_image *src, uint64_t off, uint64_t len, uint64_t *done,
                        ic_error **errp)
{
    *done = 0;
    if (!dst->drv->headerless || src->size < off || len > src->size - off ||
        dst->size < off || len > dst->size - off)
        return -ENOTSUP;
    int ret = check_writable(dst, errp);
    if (ret < 0)
        return ret;
    ic_block_status st;
    ic_io *file;
    if ((ret = status_walk(src, NULL, off, len, &st, &file, errp)) < 0)
        return ret;
    if (!file || (st.flags & (IC_BS_ZERO | IC_BS_COMPRESSED)) ||
        (st.flags & (IC_BS_DATA | IC_BS_OFFSET_VALID)) != (IC_BS_DATA | IC_BS_OFFSET_VALID))
        return -ENOTSUP;
    ret = ic_io_copy_range(dst->file, off, file, st.host_offset, st.length);
    if (ret == -ENOTSUP)
        return ret;
    if (ret < 0) /* not report(): dst->last_error belongs to the writer's thread */
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "%s: copy_range at offset %" PRIu64 " failed: %s", dst->filename,
                            off, strerror(-ret));
    *done = st.length;
    return 0;
}

/* ---- info --------------------------------------------------------------- */

void ic_snapshot_info_clear(ic_snapshot_info *sn)
{
    free(sn->id);
    free(sn->name);
    sn->id = sn->name = NULL;
}

static int add_field(ic_image_info *info, const char *key, ic_info_field f)
{
    ic_info_field *nv = realloc(info->specific, (info->nb_specific + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    info->specific = nv;
    f.key = strdup(key);
    if (!f.key)
        return -ENOMEM;
    info->specific[info->nb_specific++] = f;
    return 0;
}

int ic_info_add_bool(ic_image_info *info, const char *key, bool v)
{
    return add_field(info, key, (ic_info_field){ .type = IC_INFO_BOOL, .b = v });
}

int ic_info_add_int(ic_image_info *info, const char *key, int64_t v)
{
    return add_field(info, key, (ic_info_field){ .type = IC_INFO_INT, .i = v });
}

int ic_info_add_str(ic_image_info *info, const char *key, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return -ENOMEM;
    int ret = add_field(info, key, (ic_info_field){ .type = IC_INFO_STRING, .s = s });
    if (ret < 0)
        free(s);
    return ret;
}

static void free_bitmap_infos(ic_bitmap_info *bm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(bm[i].name);
    free(bm);
}

int ic_info_add_bitmaps(ic_image_info *info, const char *key, ic_bitmap_info *bm, size_t n)
{
    free_bitmap_infos(info->bitmaps, info->nb_bitmaps);
    info->bitmaps = bm;
    info->nb_bitmaps = n;
    return add_field(info, key, (ic_info_field){ .type = IC_INFO_BITMAPS });
}

void ic_image_info_free(ic_image_info *info)
{
    if (!info)
        return;
    free(info->filename);
    free(info->format);
    free(info->backing_filename);
    free(info->full_backing_filename);
    free(info->backing_format);
    for (size_t i = 0; i < info->nb_snapshots; i++)
        ic_snapshot_info_clear(&info->snapshots[i]);
    free(info->snapshots);
    for (size_t i = 0; i < info->nb_specific; i++) {
        free(info->specific[i].key);
        free(info->specific[i].s);
    }
    free(info->specific);
    free_bitmap_infos(info->bitmaps, info->nb_bitmaps);
    free(info);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

int ic_image_get_info(ic_image *img, ic_image_info **out, ic_error **errp)
{
    *out = NULL;
    ic_image_info *info = calloc(1, sizeof(*info));
    if (!info)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", img->filename);
    bool oom = false;
    info->filename = dup_or_null(img->filename, &oom);
    info->format = dup_or_null(img->drv->name, &oom);
    info->virtual_size = img->size;
    info->actual_size = ic_io_allocated_size(img->file);
    if (info->actual_size < 0)
        info->actual_size = -1;
    info->cluster_size = img->cluster_size;
    info->backing_filename = dup_or_null(img->backing_name, &oom);
    info->backing_format = dup_or_null(img->backing_fmt, &oom);
    if (img->backing_name) {
        if (img->backing_path) {
            info->full_backing_filename = dup_or_null(img->backing_path, &oom);
        } else {
            /* not opened (NO_BACKING): resolve the name the same way */
            info->full_backing_filename = ic_path_resolve_backing(img->filename, img->backing_name);
            if (!info->full_backing_filename)
                oom = true;
        }
    }
    if (oom) {
        ic_image_info_free(info);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", img->filename);
    }
    if (img->drv->get_info) {
        int ret = img->drv->get_info(img, info, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "%s", img->filename);
            ic_image_info_free(info);
            return ret;
        }
    }
    *out = info;
    return 0;
}

/* ---- check -------------------------------------------------------------- */

int ic_image_check(ic_image *img, unsigned fix, ic_check_report_fn report_fn, void *payload,
                   ic_check_result *out, ic_error **errp)
{
    memset(out, 0, sizeof(*out));
    if (fix && !(fix & IC_CHECK_DRY_RUN) && img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "%s: repair needs the image opened read-write", img->filename);
    if (!img->drv->check)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support checks", img->filename,
                            img->drv->name);
    int ret = img->drv->check(img, fix, report_fn, payload, out, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}
