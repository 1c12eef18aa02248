/*
 * chain-rebase.c - ic_chain_rebase(): change an image's backing file,
 * keeping its guest content (safe mode) or only its header (unsafe mode).
 *
 * Design notes (qemu-img's img_rebase is the behaviour followed):
 *  1. What it owns: the copy of differing ranges into FILE and the order of
 *     that copy against the header switch, and the journal phases of a
 *     rebase.
 *  2. State machine (sticky ERROR: the journal stays, --resume finishes):
 *
 *       validate ---> JOURNALED ---> COPY ---(FILE flushed)---> SWITCH ---> DONE
 *          | refuse                   |                           |   (journal removed)
 *          v                          +---------> ERROR <---------+
 *       nothing written                       (journal kept)
 *
 *     transition                     function
 *     validate -> JOURNALED          open_new_chain, ic_image_open, ic_journal_create
 *     JOURNALED -> COPY              rebase_copy
 *     COPY -> SWITCH                 ic_journal_set_phase after flushing FILE
 *     SWITCH -> DONE                 ic_image_change_backing, flush, ic_journal_finish
 *  3. Invariants:
 *     a. Refusals (missing -F, missing or looping new backing, locked
 *        image, a format that records no backing, an unfinished journal)
 *        happen before anything is written.
 *     b. During COPY, FILE still points at the old chain and only receives,
 *        in ranges it did not allocate, the bytes the old chain already
 *        showed there: FILE's guest view never changes.  A crash during
 *        COPY leaves FILE valid with its old backing.
 *     c. The header switch is one driver-level update made after FILE is
 *        flushed: if we crash after this point FILE reads the same through
 *        its new chain.
 *     d. COPY is idempotent (ranges already allocated are skipped), so a
 *        resumed rebase repeats it, unless FILE already records the new
 *        backing, in which case only the journal is removed.
 *  4. Ranges are skipped without reading when block status proves both
 *     views equal: allocated in FILE; not allocated between the old and new
 *     backing when the new one is in the old chain; reading as zeroes in
 *     both chains.  Otherwise both views are read in large chunks and
 *     compared per cluster of FILE (64 KiB for formats without clusters);
 *     differing clusters get the old view's bytes, or zeroes written
 *     without unmapping (so the new backing cannot show through).
 *  5. The chunks to compare go through the read pipeline (copy-engine.c, queue mode):
 *     up to IC_COPY_MAX_READERS reader threads, each with its own
 *     read-only handles on the old and the new backing chains, read both
 *     views of a chunk into the slot's two buffers while the caller's
 *     thread plans, compares and writes FILE (the only thread that touches
 *     FILE).  The readers never read FILE, so its writes cannot race
 *     them.  With a custom opener (tests' fault, crash and memory
 *     backends), or when no handle can be had, the caller reads the
 *     chunks itself with its own chains: the same work in one stream.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "chain-journal.h"
#include "chain-rebase.h"
#include "copy-engine.h"
#include "copy-zero.h"
#include "util/path.h"

/* Compare granularity for formats without clusters (raw overlays cannot
 * have backing files, so this is a fallback only). */
#define IC_REBASE_DEFAULT_GRAIN (64u << 10)
/* Old and new views are read side by side in chunks of this size, one
 * slot (two buffers) per chunk: 512 KiB x 2 x REBASE_SLOTS = 4 MiB of
 * buffers keeps peak memory below qemu-img's (bench/bench-chain.sh's
 * rebase row reports both); larger chunks only cost memory, since a
 * rebase compares more than it writes. */
#define IC_REBASE_CHUNK (512u << 10)
#define REBASE_SLOTS 4
/* Slot flags: the view reads as zeroes by block status, no read needed. */
#define RB_OLD_ZERO 1u
#define RB_NEW_ZERO 2u

/* One thread's handles on the two views (NULL: no backing, all zeroes). */
struct rebase_views {
    struct ic_image *old;
    struct ic_image *new;
};

struct rebase {
    struct ic_image *top;
    struct ic_image *old;      /* old backing chain (top->backing) or NULL */
    struct ic_image *new;      /* new backing chain view, or NULL for none */
    struct ic_image *new_in_old; /* the new backing's layer inside the old chain */
    uint32_t grain;
    const ic_rebase_options *o;
    struct ic_copy_engine pipe;
    struct rebase_views mine;  /* the caller's: old and new above */
    struct rebase_views readers[IC_COPY_MAX_READERS];
    unsigned nreaders;         /* reader views opened */
    struct ic_rebase_stats *stats;
};

static bool streq_null(const char *a, const char *b)
{
    if (!a || !*a)
        return !b || !*b;
    return b && !strcmp(a, b);
}

/* Reads @img's guest view (zeroes past its end, or everywhere for NULL). */
static int read_view(struct ic_image *img, uint8_t *buf, size_t len, uint64_t off,
                     ic_error **errp)
{
    size_t n = 0;
    if (img && off < img->size) {
        n = (size_t)IC_MIN((uint64_t)len, img->size - off);
        int ret = ic_image_pread(img, buf, n, off, errp);
        if (ret < 0)
            return ret;
    }
    if (n < len)
        memset(buf + n, 0, len - n);
    return 0;
}

/* Whether the run of @img's view starting at @off reads as zeroes by block
 * status alone; *run receives its length (<= len). */
static int view_zero(struct ic_image *img, uint64_t off, uint64_t len, bool *zero, uint64_t *run,
                     ic_error **errp)
{
    if (!img || off >= img->size) {
        *zero = true;
        *run = len;
        return 0;
    }
    ic_block_status st;
    int ret = ic_image_block_status(img, NULL, off, IC_MIN(len, img->size - off), &st, errp);
    if (ret < 0)
        return ret;
    *zero = (st.flags & IC_BS_ZERO) && !(st.flags & IC_BS_DATA);
    *run = st.length;
    return 0;
}

/* ic_copy_fill_fn: both views of a chunk, old into buf[0], new into
 * buf[1], with the thread's own handles. */
static int rebase_fill(void *ctx, struct ic_copy_slot *s, ic_error **errp)
{
    struct rebase_views *v = ctx;
    int ret;
    if (s->flags & RB_OLD_ZERO)
        memset(s->buf[0], 0, s->len);
    else if ((ret = read_view(v->old, s->buf[0], s->len, s->off, errp)) < 0)
        return ret;
    if (s->flags & RB_NEW_ZERO)
        memset(s->buf[1], 0, s->len);
    else if ((ret = read_view(v->new, s->buf[1], s->len, s->off, errp)) < 0)
        return ret;
    return 0;
}

/* Writes FILE where the views of a filled slot differ. */
static int compare_and_write(struct rebase *rb, const struct ic_copy_slot *sl, ic_error **errp)
{
    int ret;
    const uint8_t *obuf = sl->buf[0], *nbuf = sl->buf[1];
    uint64_t off = sl->off, end = off + sl->len;
    uint64_t b = off;
    while (b < end) {
        /* first differing grain */
        uint64_t ge = IC_MIN(IC_ALIGN_DOWN(b, rb->grain) + rb->grain, end);
        if (!memcmp(obuf + (b - off), nbuf + (b - off), (size_t)(ge - b))) {
            b = ge;
            continue;
        }
        /* extend over following differing grains of the same kind */
        bool zero = ic_buf_is_zero(obuf + (b - off), (size_t)(ge - b));
        uint64_t we = ge;
        while (we < end) {
            uint64_t ne = IC_MIN(we + rb->grain, end);
            const uint8_t *op = obuf + (we - off), *np = nbuf + (we - off);
            if (!memcmp(op, np, (size_t)(ne - we)) || ic_buf_is_zero(op, (size_t)(ne - we)) != zero)
                break;
            we = ne;
        }
        /* FILE still reads the old chain here, so writing the old chain's
         * bytes leaves its guest view unchanged. */
        if (zero)
            ret = ic_image_pwrite_zeroes(rb->top, b, we - b, 0, errp);
        else
            ret = ic_image_pwrite(rb->top, obuf + (b - off), (size_t)(we - b), b, errp);
        if (ret < 0)
            return ret;
        if (rb->stats)
            rb->stats->written_bytes += we - b;
        b = we;
    }
    return 0;
}

/* Collects at least @want filled chunks (all outstanding ones when it is
 * larger), compares and writes them, and frees their slots. */
static int rebase_drain(struct rebase *rb, unsigned want, ic_error **errp)
{
    struct ic_copy_slot *ready[IC_COPY_MAX_SLOTS];
    unsigned n = 0;
    int ret = ic_copy_collect(&rb->pipe, ready, &n, want, errp);
    for (unsigned i = 0; ret == 0 && i < n; i++) {
        ret = compare_and_write(rb, ready[i], errp);
        if (rb->stats)
            rb->stats->compared_bytes += ready[i]->len;
    }
    ic_copy_release(&rb->pipe, ready, n);
    return ret;
}

/* Hands one chunk to the pipeline, writing finished ones when it is full. */
static int rebase_queue(struct rebase *rb, uint64_t off, uint64_t len, unsigned flags,
                        ic_error **errp)
{
    if (ic_copy_full(&rb->pipe)) {
        int ret = rebase_drain(rb, 1, errp);
        if (ret < 0)
            return ret;
    }
    ic_copy_queue(&rb->pipe, off, (size_t)len, flags);
    return 0;
}

/* Handles [off, off+len), a range FILE does not allocate. */
static int rebase_range(struct rebase *rb, uint64_t off, uint64_t len, ic_error **errp)
{
    int ret;
    while (len > 0) {
        uint64_t n = IC_MIN(len, (uint64_t)IC_REBASE_CHUNK);
        if (rb->new_in_old && rb->old && off < rb->old->size) {
            /* Only layers between the old and the new backing can differ. */
            ic_block_status st;
            ret = ic_image_block_status(rb->old, rb->new_in_old, off,
                                        IC_MIN(n, rb->old->size - off), &st, errp);
            if (ret < 0)
                return ret;
            if (!(st.flags & (IC_BS_ALLOCATED | IC_BS_ZERO))) {
                off += st.length;
                len -= st.length;
                continue;
            }
            n = st.length;
        }
        bool oz, nz;
        uint64_t r1, r2;
        if ((ret = view_zero(rb->old, off, n, &oz, &r1, errp)) < 0 ||
            (ret = view_zero(rb->new, off, n, &nz, &r2, errp)) < 0)
            return ret;
        /* Ranges that are zero in both chains need no read; otherwise read
         * the whole chunk and compare. */
        if (oz && nz) {
            n = IC_MIN(r1, r2);
        } else {
            unsigned flags = (oz && r1 >= n ? RB_OLD_ZERO : 0) | (nz && r2 >= n ? RB_NEW_ZERO : 0);
            if ((ret = rebase_queue(rb, off, n, flags, errp)) < 0)
                return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int rebase_copy(struct rebase *rb, ic_error **errp)
{
    struct ic_image *top = rb->top;
    uint64_t size = top->size;
    const ic_rebase_options *o = rb->o;
    if (o->progress)
        o->progress(0, size, o->payload);
    int ret = 0;
    uint64_t off = 0;
    while (off < size) {
        uint64_t n = IC_MIN((uint64_t)IC_COPY_STATUS_MAX, size - off);
        uint64_t pnum = 0, map = 0;
        unsigned flags = 0;
        ic_io *file = NULL;
        ret = ic_image_layer_block_status(top, off, n, &pnum, &flags, &map, &file);
        if (ret < 0)
            return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                                "%s: block status at %" PRIu64 " failed: %s", top->filename, off,
                                strerror(-ret));
        if (pnum == 0 || pnum > n)
            return ic_error_set(errp, IC_ERR_OTHER, EIO,
                                "%s: driver returned an invalid block status length",
                                top->filename);
        /* Ranges FILE allocates hide both chains: nothing to do. */
        if (!(flags & IC_BS_ALLOCATED) && (ret = rebase_range(rb, off, pnum, errp)) < 0)
            return ret;
        off += pnum;
        if (o->progress)
            o->progress(ic_copy_done_below(&rb->pipe, off), size, o->payload);
    }
    while (!ic_copy_empty(&rb->pipe))
        if ((ret = rebase_drain(rb, IC_COPY_MAX_SLOTS, errp)) < 0)
            return ret;
    if (o->progress)
        o->progress(size, size, o->payload);
    return ic_image_flush(top, errp);
}

/* Opens one reader's read-only handles on both views, the same files and
 * formats as the caller's; false when they cannot be had (or do not look
 * like the caller's), which only means one reader fewer. */
static bool open_reader_views(struct rebase_views *v, const struct rebase *rb)
{
    struct ic_image *src[2] = { rb->old, rb->new }, *dst[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++) {
        if (!src[i])
            continue;
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.format = ic_image_format(src[i]);
        oo.flags = IC_OPEN_NO_LOCK;
        oo.cache = rb->o->src_cache;
        ic_error *err = NULL;
        if (ic_image_open(&dst[i], src[i]->filename, &oo, &err) < 0 ||
            dst[i]->size != src[i]->size) {
            ic_error_free(err);
            ic_image_close(dst[0]);
            ic_image_close(dst[1]);
            return false;
        }
    }
    v->old = dst[0];
    v->new = dst[1];
    return true;
}

/* Sets up the read pipeline (design note 5). */
static int rebase_pipe_start(struct rebase *rb, ic_error **errp)
{
    rb->mine = (struct rebase_views){ rb->old, rb->new };
    const struct ic_copy_config cfg = { .nslots = REBASE_SLOTS, .slot_size = IC_REBASE_CHUNK,
                                        .nbufs = 2, .fill = rebase_fill, .inline_ctx = &rb->mine };
    int ret = ic_copy_init(&rb->pipe, &cfg, errp);
    if (ret < 0)
        return ret;
    if (!rb->top->open_file && !rb->o->open_file) {
        while (rb->nreaders < IC_COPY_MAX_READERS &&
               open_reader_views(&rb->readers[rb->nreaders], rb)) {
            if (!ic_copy_add_reader(&rb->pipe, &rb->readers[rb->nreaders], NULL)) {
                ic_image_close(rb->readers[rb->nreaders].old);
                ic_image_close(rb->readers[rb->nreaders].new);
                break;
            }
            rb->nreaders++;
        }
    }
    if (rb->stats)
        rb->stats->readers = rb->pipe.stats.readers;
    return 0;
}

static void rebase_pipe_stop(struct rebase *rb)
{
    if (rb->stats) {
        rb->stats->fills = rb->pipe.stats.fills;
        rb->stats->fills_while_writing = rb->pipe.stats.fills_while_writing;
        rb->stats->writes_while_filling = rb->pipe.stats.writes_while_filling;
    }
    ic_copy_fini(&rb->pipe);
    for (unsigned i = 0; i < rb->nreaders; i++) {
        ic_image_close(rb->readers[i].old);
        ic_image_close(rb->readers[i].new);
    }
    rb->nreaders = 0;
}

/* Opens the new backing chain read-only and refuses one that contains
 * FILE (a loop). */
static int open_new_chain(struct ic_image **out, const char *path, const char *newpath,
                          const ic_rebase_options *o, ic_error **errp)
{
    *out = NULL;
    if (ic_chain_same_file(newpath, path))
        return ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                            "%s: cannot be its own backing file", path);
    ic_open_options no = IC_OPEN_OPTIONS_INIT;
    no.format = o->backing_format;
    no.flags = o->flags & IC_OPEN_NO_LOCK;
    no.cache = o->src_cache;
    no.open_file = o->open_file;
    no.payload = o->payload;
    ic_image *nimg = NULL;
    int ret = ic_image_open(&nimg, newpath, &no, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "could not open new backing file '%s'", newpath);
        return ret;
    }
    for (struct ic_image *l = nimg->backing; l; l = l->backing) {
        if (ic_chain_same_file(l->filename, path)) {
            ic_image_close(nimg);
            return ic_error_set(errp, IC_ERR_INVALID, ELOOP,
                                "new backing file '%s' has %s in its chain (a loop)", newpath,
                                path);
        }
    }
    *out = nimg;
    return 0;
}

static int rebase_unsafe(const char *path, const ic_rebase_options *o, const char *backing,
                         ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = o->format;
    oo.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING | (o->flags & IC_OPEN_NO_LOCK);
    oo.open_file = o->open_file;
    oo.payload = o->payload;
    oo.cache = o->cache;
    ic_image *top = NULL;
    int ret = ic_image_open(&top, path, &oo, errp);
    if (ret < 0)
        return ret;
    ret = ic_image_change_backing(top, backing, backing ? o->backing_format : NULL, errp);
    if (ret == 0)
        ret = ic_image_flush(top, errp);
    int cret = ic_image_close(top);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret, "%s: close failed: %s",
                           path, strerror(-cret));
    return ret;
}

static int rebase_safe(const char *path, const ic_rebase_options *o, const char *backing,
                       struct ic_journal_rec *resume, struct ic_rebase_stats *stats,
                       ic_error **errp)
{
    struct ic_image *nimg = NULL, *top = NULL;
    struct ic_journal *j = NULL;
    struct rebase rb = { .o = o, .stats = stats };
    char *newpath = NULL;
    int ret = 0;
    if (backing) {
        newpath = ic_path_resolve_backing(path, backing);
        if (!newpath)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        /* The new chain is opened (and checked for loops) before FILE is
         * locked for writing, so a loop is reported as one. */
        ret = open_new_chain(&nimg, path, newpath, o, errp);
        if (ret < 0)
            goto out;
    }
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = o->format;
    /* FILE receives the bulk of the data (IC_OPEN_STREAM: with the
     * default cache mode, O_DIRECT where the file system has it). */
    oo.flags = IC_OPEN_RDWR | IC_OPEN_STREAM | (o->flags & IC_OPEN_NO_LOCK);
    oo.open_file = o->open_file;
    oo.payload = o->payload;
    oo.cache = o->cache;
    oo.backing_cache = o->src_cache;
    ret = ic_image_open(&top, path, &oo, errp);
    if (ret < 0)
        goto out;
    if (ic_image_headerless(top)) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: format %s does not record a backing file", path,
                           ic_image_format(top));
        goto out;
    }
    bool switched = false;
    if (resume) {
        bool at_new = streq_null(top->backing_name, resume->new_backing) &&
                      streq_null(top->backing_fmt, resume->new_fmt);
        bool at_old = streq_null(top->backing_name, resume->base) &&
                      streq_null(top->backing_fmt, resume->base_fmt);
        if (!at_new && !at_old) {
            ret = ic_error_set(errp, IC_ERR_OTHER, ESTALE,
                               "%s: its backing file changed since the interrupted rebase", path);
            goto out;
        }
        switched = at_new && !at_old;
        ret = ic_journal_reopen(&j, resume, path, o->open_file, o->payload, errp);
    } else {
        struct ic_journal_rec nr = {
            .op = IC_JOURNAL_REBASE,
            .phase = IC_JOURNAL_COPY,
            .top = (char *)(uintptr_t)path,
            .top_fmt = (char *)(uintptr_t)ic_image_format(top),
            .base = top->backing_name,
            .base_fmt = top->backing_fmt,
            .new_backing = (char *)(uintptr_t)(backing ? backing : ""),
            .new_fmt = (char *)(uintptr_t)(backing ? o->backing_format : NULL),
        };
        ret = ic_journal_create(&j, &nr, o->open_file, o->payload, errp);
    }
    if (ret < 0)
        goto out;
    /* From here on the journal records the operation. */
    if (!switched) {
        rb.top = top;
        rb.old = top->backing;
        rb.new = nimg;
        rb.grain = top->cluster_size && IC_IS_POW2(top->cluster_size) &&
                           top->cluster_size <= IC_REBASE_CHUNK
                       ? top->cluster_size
                       : IC_REBASE_DEFAULT_GRAIN;
        for (struct ic_image *l = rb.old; l && nimg; l = l->backing)
            if (!strcmp(ic_image_format(l), ic_image_format(nimg)) &&
                ic_chain_same_file(l->filename, newpath)) {
                rb.new_in_old = l;
                break;
            }
        ret = rebase_pipe_start(&rb, errp);
        if (ret < 0)
            goto out_journal;
        ret = rebase_copy(&rb, errp);
        rebase_pipe_stop(&rb);
        /* FILE now holds every range where the chains differ and is
         * flushed: if we crash after this point it reads the same through
         * either chain. */
        if (ret == 0)
            ret = ic_journal_set_phase(j, IC_JOURNAL_SWITCH, errp);
        if (ret == 0) {
            ic_io_event(top->file, IC_EV_CHAIN_SWITCH);
            ret = ic_image_change_backing(top, backing, backing ? o->backing_format : NULL,
                                          errp);
        }
        if (ret == 0)
            ret = ic_image_flush(top, errp);
    } else if (o->progress) {
        o->progress(top->size, top->size, o->payload);
    }
out_journal:
    if (ret < 0) {
        ic_journal_close(j);
        goto out;
    }
    ret = ic_journal_finish(j, errp);
out:
    if (top) {
        int cret = ic_image_close(top);
        if (ret == 0 && cret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret,
                               "%s: close failed: %s", path, strerror(-cret));
    }
    ic_image_close(nimg);
    free(newpath);
    return ret;
}

int ic_chain_rebase(const char *path, const ic_rebase_options *opts, ic_error **errp)
{
    return ic_chain_rebase_stats(path, opts, NULL, errp);
}

int ic_chain_rebase_stats(const char *path, const ic_rebase_options *opts,
                          struct ic_rebase_stats *stats, ic_error **errp)
{
    if (stats)
        memset(stats, 0, sizeof(*stats));
    static const ic_rebase_options defaults = IC_REBASE_OPTIONS_INIT;
    ic_rebase_options o = defaults;
    int ret;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_chain_rebase: no file name given");
    if (opts && (opts->version < 1 || opts->version > IC_REBASE_OPTIONS_VERSION))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_rebase: unknown options version %u", opts->version);
    /* a version 1 struct ends before the cache fields */
    if (opts)
        memcpy(&o, opts, opts->version >= 2 ? sizeof(o) : offsetof(ic_rebase_options, cache));
    struct ic_journal_rec rec;
    bool stale = false;
    ret = ic_journal_load(&rec, &stale, path, o.open_file, o.payload, errp);
    if (ret < 0)
        goto fail;
    struct ic_journal_rec *resume = NULL;
    if (o.resume) {
        if (ret == 0) {
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "%s: there is no interrupted operation to resume", path);
            goto fail;
        }
        if (rec.op != IC_JOURNAL_REBASE) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "%s: the interrupted operation is a %s; resume it with commit",
                               path, ic_journal_op_name(rec.op));
            goto fail;
        }
        resume = &rec;
        o.backing = rec.new_backing;
        o.backing_format = rec.new_fmt;
        o.format = rec.top_fmt;
        o.unsafe = false;
    } else if (ret == 1) {
        ret = ic_error_set(errp, IC_ERR_PENDING, EINPROGRESS,
                           "%s: an interrupted %s was found; finish it with --resume first",
                           path, ic_journal_op_name(rec.op));
        goto fail;
    } else if (stale && (ret = ic_journal_remove(path, errp)) < 0) {
        goto fail;
    }
    const char *backing = o.backing && *o.backing ? o.backing : NULL;
    if (backing && (!o.backing_format || !*o.backing_format)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "could not change the backing file to '%s': backing format must be "
                           "specified", backing);
        goto fail;
    }
    if (!backing && o.backing_format && *o.backing_format) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "%s: a backing format was given without a backing file", path);
        goto fail;
    }
    if (backing && !ic_driver_find(o.backing_format)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unknown backing format '%s'",
                           o.backing_format);
        goto fail;
    }
    if (backing && strlen(backing) > 1023) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: backing file name is too long",
                           path);
        goto fail;
    }
    ret = o.unsafe ? rebase_unsafe(path, &o, backing, errp)
                   : rebase_safe(path, &o, backing, resume, stats, errp);
    if (ret < 0)
        goto fail;
    ic_journal_rec_clear(&rec);
    return 0;
fail:
    ic_journal_rec_clear(&rec);
    return ret;
}
