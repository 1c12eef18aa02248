/*
 * chain-convert.c - ic_image_convert(): copy or flatten a backing chain into
 * a new image (qemu-img convert), and read-only snapshot views (-l).
 *
 * Design notes:
 *  1. The engine walks the source with ic_image_block_status() over long
 *     runs (up to CONVERT_STATUS_MAX per query).  A run that reads as zero
 *     (unallocated in every layer, a zero cluster, past the end of a short
 *     backing file, or a hole in the host file behind a data cluster) is
 *     never read nor written: the target is created fresh and reads it as
 *     zeroes already (qemu's has_zero_init).
 *  2. Data runs are copied in windows aligned to the write granule G =
 *     max(4 KiB, target cluster size) (the cluster size with -c).  Reads
 *     go through ic_image_pread() in CONVERT_BUF_SIZE pieces; every granule
 *     that turns out to be all zero is skipped (qemu-img's default -S 4k),
 *     the rest is written in as few ic_image_pwrite() calls as possible.
 *     Windows never overlap, so every guest byte is written at most once.
 *  3. With -c each granule is one target cluster written with
 *     ic_image_pwrite_compressed() (the last one may be shorter).
 *  4. The target is created with ic_image_create() (which validates the -o
 *     options before touching the file) and opened without its backing
 *     chain.  A target that did not exist before is removed if anything
 *     fails afterwards, so a failed convert leaves nothing behind.
 *  5. Refused before anything is created: a target that is the source or
 *     one of its backing files (same real path), -c for a format without
 *     compression, backing_file in -o (convert flattens; see
 *     docs of qemu-img -B, not supported).
 *  6. -t none: the target is opened on the aio backend with IC_IO_DIRECT
 *     (ic_io_open_aio); data goes out from aligned buffers (posix_memalign,
 *     CONVERT_ALIGN) in granule-aligned lengths, and whatever is unaligned
 *     (qcow2/QED metadata, a disk tail) goes through its bounce buffers.
 *  7. Progress is reported after every window and skipped run, in guest
 *     bytes handled, from 0 to the virtual size.
 *  8. The target is flushed at the end: its data is durable when convert
 *     returns (qemu-img convert's default cache mode, unsafe, skips that;
 *     closing an image flushes it here anyway, see image.c).
 *  9. Reading and writing overlap: a reader thread fills a ring of
 *     CONVERT_SLOTS buffers, the caller's thread writes them (see the
 *     comment above struct copy_state for the protocol).
 *
 * Reference: qcow2-qed.md section 5 (convert), qemu-img.c img_convert.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/chain.h"
#include "chain.h"
#include "util/overflow.h"

/* Bytes read per ic_image_pread() call: large enough that per-call costs
 * vanish against the copy, small enough to stay in L2/L3-ish territory and
 * keep peak RSS low (qemu-img uses 2 MiB buffers x 8 coroutines). */
#define CONVERT_BUF_SIZE ((size_t)4 << 20)
/* Longest range asked of block status at once (qemu-img map uses 1 GiB). */
#define CONVERT_STATUS_MAX ((uint64_t)1 << 30)
/* Smallest zero-detection granule: qemu-img convert's default -S 4k. */
#define CONVERT_MIN_GRANULE ((uint64_t)4096)
/* Buffer alignment for O_DIRECT (largest common logical block size). */
#define CONVERT_ALIGN ((size_t)4096)
/* Largest granule we accept: QED allows 64 MiB clusters. */
#define CONVERT_MAX_GRANULE ((uint64_t)64 << 20)

/* ---- helpers ------------------------------------------------------------ */

/* True when all @len bytes are zero: check a head, then compare the buffer
 * with itself shifted by the head (memcmp is vectorised by libc). */
static bool buf_is_zero(const uint8_t *p, size_t len)
{
    size_t head = len < 64 ? len : 64;
    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    if (len <= head)
        return true;
    return memcmp(p, p + head, len - head) == 0;
}

static struct ic_image *layer_at(struct ic_image *top, unsigned depth)
{
    struct ic_image *l = top;
    while (l && depth--)
        l = l->backing;
    return l;
}

/*
 * Narrows a data run to the part whose host bytes are allocated: a data
 * cluster backed by a hole in the host file (metadata preallocation, a
 * sparse data file) reads as zeroes, and qemu skips it too.  Only done when
 * the data lives in the layer's own file (the name matches); a data file
 * is asked nothing and the run stays data.  Returns true when the narrowed
 * run [off, off+*len) reads as zero.
 */
static bool host_hole(struct ic_image *src, const ic_block_status *st, uint64_t *len)
{
    if (!(st->flags & IC_BS_OFFSET_VALID) || !st->filename)
        return false;
    struct ic_image *l = layer_at(src, st->depth);
    if (!l || strcmp(ic_io_name(l->file), st->filename) != 0)
        return false;
    uint64_t pnum = 0;
    int data = ic_io_block_status(l->file, st->host_offset, *len, &pnum);
    if (data < 0 || pnum == 0 || pnum > *len)
        return false;
    *len = pnum;
    return data == 0;
}

/*
 * The copy is a two-stage pipeline: a reader thread walks block status and
 * reads data windows from the source into a ring of CONVERT_SLOTS buffers;
 * the calling thread detects zero granules and writes to the target.  Each
 * image is touched by one thread only (source: reader, target: caller), so
 * neither needs locking; the ring is the only shared state, under `lock`.
 * Reading chunk N+1 while chunk N is written keeps both cores busy (qemu-img
 * gets the same overlap from its thread pool).
 *
 * Ring protocol: slots are used in order.  The reader waits for
 * `free_slots`, fills slot (head), then publishes it by bumping `filled`;
 * the writer waits for `filled`, consumes slot (tail), then returns it.
 * Either side may set `stop` (error or done); the other side notices it at
 * its next wait.  A slot carries data (len > 0, skip false), a skipped
 * zero run (skip true: progress only), or the end marker (eof).
 */
/* Buffers in flight between reader and writer. */
#define CONVERT_SLOTS 4

struct slot {
    uint8_t *buf;
    uint64_t off;
    uint64_t len;
    bool skip;
    bool eof;
};

struct copy_state {
    ic_image *dst;
    ic_image *src;
    uint64_t size;
    uint64_t granule;
    bool compress;
    size_t buf_size;
    const ic_convert_options *opts;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slot slots[CONVERT_SLOTS];
    unsigned head, tail, filled;
    bool stop;
    int read_ret;          /* reader's result (0 or -errno) */
    ic_error *read_err;    /* reader's error, moved to the caller's errp */
};

static void progress(const struct copy_state *s, uint64_t done)
{
    if (s->opts && s->opts->progress)
        s->opts->progress(done, s->size, s->opts->payload);
}

/* Reader side: waits for a free slot; NULL when the writer stopped. */
static struct slot *slot_get_free(struct copy_state *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->filled == CONVERT_SLOTS && !s->stop)
        pthread_cond_wait(&s->cond, &s->lock);
    struct slot *sl = s->stop ? NULL : &s->slots[s->head];
    pthread_mutex_unlock(&s->lock);
    return sl;
}

static void slot_publish(struct copy_state *s)
{
    pthread_mutex_lock(&s->lock);
    s->head = (s->head + 1) % CONVERT_SLOTS;
    s->filled++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int publish_skip(struct copy_state *s, uint64_t off, uint64_t len)
{
    struct slot *sl = slot_get_free(s);
    if (!sl)
        return -ECANCELED;
    sl->off = off;
    sl->len = len;
    sl->skip = true;
    sl->eof = false;
    slot_publish(s);
    return 0;
}

/* Reads [start, end) (granule aligned, or ending at the disk's end) into
 * slots of at most buf_size bytes. */
static int read_window(struct copy_state *s, uint64_t start, uint64_t end, ic_error **errp)
{
    for (uint64_t off = start; off < end;) {
        size_t n = (size_t)IC_MIN((uint64_t)s->buf_size, end - off);
        struct slot *sl = slot_get_free(s);
        if (!sl)
            return -ECANCELED;
        int ret = ic_image_pread(s->src, sl->buf, n, off, errp);
        if (ret < 0)
            return ret;
        sl->off = off;
        sl->len = n;
        sl->skip = false;
        sl->eof = false;
        slot_publish(s);
        off += n;
    }
    return 0;
}

/* The reader's plan: block status over long runs, zero runs skipped, data
 * runs widened to whole granules (see design note 2). */
static int read_all(struct copy_state *s, ic_error **errp)
{
    uint64_t off = 0;
    while (off < s->size) {
        ic_block_status st;
        int ret = ic_image_block_status(s->src, NULL, off,
                                        IC_MIN(s->size - off, CONVERT_STATUS_MAX), &st, errp);
        if (ret < 0)
            return ret;
        uint64_t len = st.length;
        bool zero = (st.flags & IC_BS_ZERO) != 0;
        if (!zero && (st.flags & IC_BS_DATA))
            zero = host_hole(s->src, &st, &len);
        if (zero) {
            if ((ret = publish_skip(s, off, len)) < 0)
                return ret;
            off += len;
            continue;
        }
        /* Data: copy the granule-aligned window around it.  The window
         * starts at `off` rounded down, which is at or after the end of the
         * previous window; when it is before `off`, the head of the first
         * granule was a skipped zero run: re-reading it is correct (it
         * reads as zeroes) and keeps whole-cluster writes for -c. */
        uint64_t start = off - off % s->granule;
        uint64_t end;
        if (ic_add_overflow(off, len, &end) || end > s->size)
            return ic_error_set(errp, IC_ERR_OTHER, EIO, "%s: block status ran past the end",
                                s->src->filename);
        if (end % s->granule)
            end = IC_MIN(end - end % s->granule + s->granule, s->size);
        if ((ret = read_window(s, start, end, errp)) < 0)
            return ret;
        off = end;
    }
    struct slot *sl = slot_get_free(s);
    if (!sl)
        return -ECANCELED;
    sl->eof = true;
    slot_publish(s);
    return 0;
}

static void *reader_main(void *opaque)
{
    struct copy_state *s = opaque;
    int ret = read_all(s, &s->read_err);
    pthread_mutex_lock(&s->lock);
    s->read_ret = ret;
    if (ret < 0)
        s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Writes one slot's data: zero granules skipped, the rest coalesced into
 * as few writes as possible (one compressed write per cluster with -c). */
static int write_slot(struct copy_state *s, const struct slot *sl, ic_error **errp)
{
    size_t n = (size_t)sl->len;
    size_t run_start = 0, run_len = 0;
    int ret;
    for (size_t pos = 0; pos < n;) {
        size_t g = (size_t)IC_MIN(s->granule, (uint64_t)(n - pos));
        bool zero = buf_is_zero(sl->buf + pos, g);
        if (s->compress) {
            if (!zero) {
                ret = ic_image_pwrite_compressed(s->dst, sl->buf + pos, g, sl->off + pos, errp);
                if (ret < 0)
                    return ret;
            }
        } else if (zero) {
            if (run_len) {
                ret = ic_image_pwrite(s->dst, sl->buf + run_start, run_len,
                                      sl->off + run_start, errp);
                if (ret < 0)
                    return ret;
                run_len = 0;
            }
        } else {
            if (!run_len)
                run_start = pos;
            run_len += g;
        }
        pos += g;
    }
    if (run_len) {
        ret = ic_image_pwrite(s->dst, sl->buf + run_start, run_len, sl->off + run_start, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Writer side: consumes slots until the end marker or an error. */
static int write_all(struct copy_state *s, ic_error **errp)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (s->filled == 0 && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->filled == 0) { /* stopped by a reader error */
            pthread_mutex_unlock(&s->lock);
            return -ECANCELED;
        }
        struct slot *sl = &s->slots[s->tail];
        pthread_mutex_unlock(&s->lock);
        if (sl->eof)
            return 0;
        int ret = sl->skip ? 0 : write_slot(s, sl, errp);
        if (ret < 0)
            return ret;
        progress(s, sl->off + sl->len);
        pthread_mutex_lock(&s->lock);
        s->tail = (s->tail + 1) % CONVERT_SLOTS;
        s->filled--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
}

int ic_image_copy(ic_image *dst, ic_image *src, const ic_convert_options *opts, ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    struct copy_state s = {
        .dst = dst,
        .src = src,
        .size = ic_image_size(src),
        .compress = opts->compress,
        .opts = opts,
    };
    if (dst->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: target is opened read-only",
                            dst->filename);
    if (ic_image_size(dst) < s.size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: target is smaller (%" PRIu64 " bytes) than the source %s (%" PRIu64
                            " bytes)", dst->filename, ic_image_size(dst), src->filename, s.size);
    uint64_t cs = ic_image_cluster_size(dst);
    if (s.compress) {
        if (!dst->drv->pwrite_compressed || cs == 0)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "%s: format %s does not support compression", dst->filename,
                                dst->drv->name);
        s.granule = cs;
    } else {
        s.granule = IC_MAX(CONVERT_MIN_GRANULE, cs);
    }
    if (s.granule > CONVERT_MAX_GRANULE || !IC_IS_POW2(s.granule))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: cluster size %" PRIu64 " is not supported for conversion",
                            dst->filename, s.granule);
    s.buf_size = (size_t)IC_MAX((uint64_t)CONVERT_BUF_SIZE, s.granule);
    int ret = 0;
    unsigned nbuf = 0;
    for (; nbuf < CONVERT_SLOTS; nbuf++) {
        void *mem = NULL;
        if (posix_memalign(&mem, CONVERT_ALIGN, s.buf_size) != 0) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM,
                               "%s: out of memory for the copy buffers", dst->filename);
            goto out_free;
        }
        s.slots[nbuf].buf = mem;
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    progress(&s, 0);
    pthread_t reader;
    int terr = pthread_create(&reader, NULL, reader_main, &s);
    if (terr != 0) {
        ret = ic_error_set(errp, IC_ERR_NOMEM, terr, "%s: cannot start the reader thread: %s",
                           dst->filename, strerror(terr));
        goto out_sync;
    }
    ic_error *werr = NULL;
    int wret = write_all(&s, &werr);
    pthread_mutex_lock(&s.lock);
    s.stop = true; /* releases a reader waiting for a slot */
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    pthread_join(reader, NULL);
    /* The first real failure wins: a side that only saw the other stop
     * reports -ECANCELED and has no error object. */
    if (s.read_ret < 0 && s.read_ret != -ECANCELED) {
        ret = s.read_ret;
        ic_error_propagate(errp, s.read_err);
        s.read_err = NULL;
        ic_error_free(werr);
    } else if (wret < 0) {
        ret = wret;
        ic_error_propagate(errp, werr);
    }
    ic_error_free(s.read_err);
    if (ret == 0)
        ret = ic_image_flush(dst, errp);
out_sync:
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
out_free:
    for (unsigned i = 0; i < nbuf; i++)
        free(s.slots[i].buf);
    return ret;
}

/* ---- snapshot views ----------------------------------------------------- */

int ic_image_snapshot_load_tmp(ic_image *img, const char *id, const char *name, bool either,
                               ic_error **errp)
{
    if (!img->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: a snapshot can only be loaded into a read-only image",
                            img->filename);
    if (!id && !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: no snapshot id or name given",
                            img->filename);
    if (!img->drv->snapshot_load_tmp)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support internal snapshots", img->filename,
                            img->drv->name);
    int ret;
    if (either) {
        /* qemu-img's -l ID_OR_NAME: the id first, then the name. */
        const char *key = id ? id : name;
        ic_error *local = NULL;
        ret = img->drv->snapshot_load_tmp(img, key, NULL, &local);
        if (ret == -ENOENT || ret == -EINVAL) {
            ic_error_free(local);
            ret = img->drv->snapshot_load_tmp(img, NULL, key, errp);
        } else if (ret < 0) {
            ic_error_propagate(errp, local);
        }
    } else {
        ret = img->drv->snapshot_load_tmp(img, id, name, errp);
    }
    if (ret < 0)
        ic_error_prepend(errp, "%s", img->filename);
    return ret;
}

/* ---- convert -------------------------------------------------------------- */

/* Refuses a target that is the source or one of its backing files. */
static int check_not_source(struct ic_image *src, const char *dst, ic_error **errp)
{
    char *rdst = realpath(dst, NULL);
    if (!rdst)
        return 0; /* does not exist (yet): cannot be a source file */
    int ret = 0;
    for (struct ic_image *l = src; l && ret == 0; l = l->backing) {
        char *rl = realpath(l->filename, NULL);
        if (rl && !strcmp(rl, rdst))
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "%s: the target is %s of the conversion", dst,
                               l == src ? "the source" : "a backing file");
        free(rl);
    }
    free(rdst);
    return ret;
}

/* convert flattens: a backing file in -o would make the target read
 * through to it (qemu-img -B semantics), which this engine does not do. */
static int refuse_backing_option(const char *options, const char *dst, ic_error **errp)
{
    ic_opts *o = NULL;
    int ret = ic_opts_parse(&o, options, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s", dst);
        return ret;
    }
    const char *v;
    if (ic_opts_take_str(o, "backing_file", &v) > 0 || ic_opts_take_str(o, "backing_fmt", &v) > 0)
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: convert flattens the chain; the backing_file and backing_fmt "
                           "options are not supported", dst);
    ic_opts_free(o);
    return ret;
}

static bool format_compresses(const char *fmt)
{
    const struct ic_driver *drv = ic_driver_find(fmt);
    return drv && drv->pwrite_compressed;
}

int ic_image_convert(const char *src_path, const char *dst_path, const ic_convert_options *opts,
                     ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    if (!src_path || !*src_path || !dst_path || !*dst_path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_image_convert: no file name given");
    const char *out_fmt = opts->out_format ? opts->out_format : "raw";
    if (!ic_driver_find(out_fmt))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown output format '%s'",
                            dst_path, out_fmt);
    if (opts->compress && !format_compresses(out_fmt))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support compression (-c)", dst_path, out_fmt);
    int ret = refuse_backing_option(opts->options, dst_path, errp);
    if (ret < 0)
        return ret;

    ic_open_options so = IC_OPEN_OPTIONS_INIT;
    so.format = opts->src_format;
    so.flags = opts->force_share ? IC_OPEN_FORCE_SHARE : 0;
    ic_image *src = NULL;
    ret = ic_image_open(&src, src_path, &so, errp);
    if (ret < 0)
        return ret;
    if (opts->snapshot)
        ret = ic_image_snapshot_load_tmp(src, opts->snapshot, NULL, true, errp);
    else if (opts->snapshot_id || opts->snapshot_name)
        ret = ic_image_snapshot_load_tmp(src, opts->snapshot_id, opts->snapshot_name, false,
                                         errp);
    if (ret < 0)
        goto out_src;
    if ((ret = check_not_source(src, dst_path, errp)) < 0)
        goto out_src;

    bool existed = ic_io_file_exists(dst_path);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = out_fmt;
    co.size = ic_image_size(src);
    co.size_set = true;
    co.options = opts->options;
    ret = ic_image_create(dst_path, &co, errp);
    if (ret < 0)
        goto out_src;

    ic_image *dst = NULL;
    ic_open_options dop = IC_OPEN_OPTIONS_INIT;
    dop.format = out_fmt;
    dop.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING | (opts->direct ? IC_OPEN_DIRECT : 0);
    if (opts->direct) {
        /* The aio backend does O_DIRECT for every format: aligned data
         * goes straight to the device, unaligned metadata writes through
         * its bounce buffers. */
        ic_io *file = NULL;
        ret = ic_io_open_aio(&file, dst_path, IC_IO_RDWR | IC_IO_DIRECT, errp);
        if (ret == 0)
            ret = ic_image_open_io(&dst, file, &dop, errp);
    } else {
        ret = ic_image_open(&dst, dst_path, &dop, errp);
    }
    if (ret == 0) {
        ret = ic_image_copy(dst, src, opts, errp);
        int cret = ic_image_close(dst);
        if (ret == 0 && cret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret,
                               "%s: closing the target failed: %s", dst_path, strerror(-cret));
    }
    if (ret < 0 && !existed)
        ic_io_remove(dst_path);
out_src:
    ic_image_close(src);
    return ret;
}
