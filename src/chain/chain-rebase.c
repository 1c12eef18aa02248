/*
 * chain-rebase.c - ic_chain_rebase(): change an image's backing file,
 * keeping its guest content (safe mode) or only its header (unsafe mode).
 *
 * Design notes (reference: qcow2-qed.md section 3.7, qemu-img's img_rebase):
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
 *     SWITCH -> DONE                 drv->change_backing, flush, ic_journal_finish
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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain-journal.h"
#include "util/path.h"

/* Compare granularity for formats without clusters (raw overlays cannot
 * have backing files, so this is a fallback only). */
#define IC_REBASE_DEFAULT_GRAIN (64u << 10)
/* Old and new views are read side by side in chunks of this size: two
 * buffers of 2 MiB, as qemu-img's IO_BUF_SIZE, keep peak memory at
 * qemu-img's level while the reads stay large. */
#define IC_REBASE_CHUNK (2u << 20)

struct rebase {
    struct ic_image *top;
    struct ic_image *old;      /* old backing chain (top->backing) or NULL */
    struct ic_image *new;      /* new backing chain view, or NULL for none */
    struct ic_image *new_in_old; /* the new backing's layer inside the old chain */
    uint8_t *obuf, *nbuf;
    uint32_t grain;
    const ic_rebase_options *o;
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

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* Writes FILE where the views differ within [off, off+len) (len <= chunk). */
static int compare_and_write(struct rebase *rb, uint64_t off, uint64_t len, bool old_zero,
                             bool new_zero, ic_error **errp)
{
    int ret;
    if (old_zero)
        memset(rb->obuf, 0, (size_t)len);
    else if ((ret = read_view(rb->old, rb->obuf, (size_t)len, off, errp)) < 0)
        return ret;
    if (new_zero)
        memset(rb->nbuf, 0, (size_t)len);
    else if ((ret = read_view(rb->new, rb->nbuf, (size_t)len, off, errp)) < 0)
        return ret;
    uint64_t end = off + len;
    uint64_t b = off;
    while (b < end) {
        /* first differing grain */
        uint64_t ge = IC_MIN(IC_ALIGN_DOWN(b, rb->grain) + rb->grain, end);
        if (!memcmp(rb->obuf + (b - off), rb->nbuf + (b - off), (size_t)(ge - b))) {
            b = ge;
            continue;
        }
        /* extend over following differing grains of the same kind */
        bool zero = all_zero(rb->obuf + (b - off), (size_t)(ge - b));
        uint64_t we = ge;
        while (we < end) {
            uint64_t ne = IC_MIN(we + rb->grain, end);
            const uint8_t *op = rb->obuf + (we - off), *np = rb->nbuf + (we - off);
            if (!memcmp(op, np, (size_t)(ne - we)) || all_zero(op, (size_t)(ne - we)) != zero)
                break;
            we = ne;
        }
        /* FILE still reads the old chain here, so writing the old chain's
         * bytes leaves its guest view unchanged. */
        if (zero)
            ret = ic_image_pwrite_zeroes(rb->top, b, we - b, 0, errp);
        else
            ret = ic_image_pwrite(rb->top, rb->obuf + (b - off), (size_t)(we - b), b, errp);
        if (ret < 0)
            return ret;
        b = we;
    }
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
            oz = oz && r1 >= n;
            nz = nz && r2 >= n;
            if ((ret = compare_and_write(rb, off, n, oz, nz, errp)) < 0)
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
        ret = top->drv->block_status(top, off, n, &pnum, &flags, &map, &file);
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
            o->progress(off, size, o->payload);
    }
    return ic_image_flush(top, errp);
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
    ic_image *top = NULL;
    int ret = ic_image_open(&top, path, &oo, errp);
    if (ret < 0)
        return ret;
    if (!top->drv->change_backing) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: format %s does not record a backing file", path, top->drv->name);
        ic_image_close(top);
        return ret;
    }
    top->state = IC_IMAGE_DIRTY;
    ret = top->drv->change_backing(top, backing, backing ? o->backing_format : NULL, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s: could not change the backing file", path);
    if (ret == 0)
        ret = ic_image_flush(top, errp);
    int cret = ic_image_close(top);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret, "%s: close failed: %s",
                           path, strerror(-cret));
    return ret;
}

static int rebase_safe(const char *path, const ic_rebase_options *o, const char *backing,
                       struct ic_journal_rec *resume, ic_error **errp)
{
    struct ic_image *nimg = NULL, *top = NULL;
    struct ic_journal *j = NULL;
    struct rebase rb = { .o = o };
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
    oo.flags = IC_OPEN_RDWR | (o->flags & (IC_OPEN_DIRECT | IC_OPEN_NO_LOCK));
    oo.open_file = o->open_file;
    oo.payload = o->payload;
    if (!o->open_file) {
        /* FILE receives the bulk of the data: the aio backend with O_DIRECT
         * skips the page-cache copy.  Without O_DIRECT support (tmpfs) the
         * POSIX backend is used. */
        ic_io *file = NULL;
        ic_error *derr = NULL;
        unsigned ioflags = IC_IO_RDWR | IC_IO_DIRECT | ((o->flags & IC_OPEN_NO_LOCK) ? IC_IO_NOLOCK : 0);
        ret = ic_io_open_aio(&file, path, ioflags, &derr);
        if (ret == 0) {
            ret = ic_image_open_io(&top, file, &oo, errp);
        } else if (ret == -EINVAL) {
            ic_error_free(derr);
            ret = ic_image_open(&top, path, &oo, errp);
        } else {
            ic_error_propagate(errp, derr);
        }
    } else {
        ret = ic_image_open(&top, path, &oo, errp);
    }
    if (ret < 0)
        goto out;
    if (!top->drv->change_backing) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: format %s does not record a backing file", path, top->drv->name);
        goto out;
    }
    bool switched = false;
    if (resume) {
        bool at_new = streq_null(top->backing_name, resume->new_backing) &&
                      streq_null(top->backing_fmt, resume->new_fmt);
        bool at_old = streq_null(top->backing_name, resume->base) &&
                      streq_null(top->backing_fmt, resume->base_fmt);
        if (!at_new && !at_old) {
            ret = ic_error_set(errp, IC_ERR_BUSY, EBUSY,
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
            .top_fmt = (char *)(uintptr_t)top->drv->name,
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
            if (!strcmp(l->drv->name, nimg->drv->name) && ic_chain_same_file(l->filename, newpath)) {
                rb.new_in_old = l;
                break;
            }
        if (posix_memalign((void **)&rb.obuf, IC_COPY_ALIGN, IC_REBASE_CHUNK) != 0 ||
            posix_memalign((void **)&rb.nbuf, IC_COPY_ALIGN, IC_REBASE_CHUNK) != 0) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory for the copy buffers");
            goto out_journal;
        }
        ret = rebase_copy(&rb, errp);
        /* FILE now holds every range where the chains differ and is
         * flushed: if we crash after this point it reads the same through
         * either chain. */
        if (ret == 0)
            ret = ic_journal_set_phase(j, IC_JOURNAL_SWITCH, errp);
        if (ret == 0) {
            top->state = IC_IMAGE_DIRTY;
            ic_io_event(top->file, IC_EV_CHAIN_SWITCH);
            ret = top->drv->change_backing(top, backing, backing ? o->backing_format : NULL, errp);
            if (ret < 0)
                ic_error_prepend(errp, "%s: could not change the backing file", path);
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
    free(rb.obuf);
    free(rb.nbuf);
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
    static const ic_rebase_options defaults = IC_REBASE_OPTIONS_INIT;
    ic_rebase_options o = opts ? *opts : defaults;
    int ret;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_chain_rebase: no file name given");
    if (o.version != IC_REBASE_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_rebase: unknown options version %u", o.version);
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
        ret = ic_error_set(errp, IC_ERR_BUSY, EBUSY,
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
                   : rebase_safe(path, &o, backing, resume, errp);
    if (ret < 0)
        goto fail;
    ic_journal_rec_clear(&rec);
    return 0;
fail:
    ic_journal_rec_clear(&rec);
    ic_error_prepend(errp, "ic_chain_rebase");
    return ret;
}
