/*
 * chain-convert.c - ic_image_copy(): copy an image's guest view into
 * another image through the copy engine (copy-engine.c), the data path of
 * convert (convert-target.c).
 *
 * Design notes:
 *  1. The engine runs in stripe mode: each reader claims the next stripe
 *     of the guest range and walks it with ic_image_block_status() over
 *     long runs (up to CONVERT_STATUS_MAX per query) on its own handle.  A
 *     run that reads as zero (unallocated in every layer, a zero cluster,
 *     past the end of a short backing file, or a hole in the host file
 *     behind a data cluster, copy-zero.c) is never read nor written: the
 *     target is created fresh and reads it as zeroes already (qemu's
 *     has_zero_init).  A zero run that goes on past the reader's stripe
 *     extends the stripe over it when nobody claimed what follows, so a
 *     sparse disk costs one query per run, not one per stripe.
 *  2. Data runs are copied in windows aligned to the write granule G =
 *     max(4 KiB, target cluster size) (the cluster size with -c), read
 *     with ic_image_pread() into slot buffers of CONVERT_BUF_SIZE.  The
 *     writer skips every granule that is all zero (qemu-img's default
 *     -S 4k) and writes the rest in as few ic_image_pwrite() calls as
 *     possible.  Windows never overlap, so every guest byte is written at
 *     most once and the writes commute: slots are written in any order.
 *  3. With -c each granule is one target cluster, compressed by the
 *     workers of copy-compress.c and stored in guest order.
 *  4. Each image handle is touched by one thread: every reader has its own
 *     handle on the source chain, the writer (the caller's thread) alone
 *     writes the target.  The extra readers start, and open their handles,
 *     only when the first data arrives, so a source without data costs one
 *     open; ic_image_copy's caller gives one handle, so it runs one reader.
 *  5. On an O_DIRECT target (not with -c) the engine lends the backend its
 *     slot buffers (write-behind, io-aio.c invariants 6 to 8): a window
 *     goes to the device from the slot it was read into, up to the
 *     backend's lend depth of them at once, and the slot is refilled only
 *     when the device is done with it, so none of the target's data passes
 *     through the page cache.  Whatever is unaligned (qcow2/QED metadata, a
 *     disk tail) goes through the backend's bounce buffers.
 *  6. Progress is reported after every window written, and for skipped
 *     runs whenever the writer wakes, in guest bytes handled, from 0 to the
 *     virtual size.
 *  7. The target is flushed at the end (ic_image_flush_final): its data is
 *     durable when the copy returns, except with -t unsafe, which skips
 *     that final flush only (qemu-img convert's default mode).
 *  8. -S SIZE (qemu-img's sparse threshold): inside data runs, zeroes are
 *     skipped only in whole windows of SIZE bytes aligned in the guest
 *     (clipped to the slot), as qemu-img's output shows it: a window with
 *     any data is written whole.  SIZE is rounded up to a power of two at
 *     least the granule, which gives qemu's windows for the power-of-two
 *     sizes.  Runs the block status calls zero are skipped whatever SIZE,
 *     as in qemu-img; -S 0 writes every byte, those runs included
 *     (fully_allocate), qemu-img's fully allocated output.  -c ignores -S
 *     (its clusters are written or skipped whole).
 *  9. --salvage: a read that fails is retried sector by sector; each
 *     sector that still fails reads as zeroes and is reported through
 *     opts->salvage_warn (from the reader thread that met it), as
 *     qemu-img reports every sector it could not read.  Block-status
 *     errors still fail the convert.
 * 10. -r RATE: the writer accounts each slot it writes to the rate limiter
 *     (chain-ratelimit.c) and waits there; zero runs it skips do not
 *     count.
 * 11. -C (copy offloading): into a headerless (raw) target, the reader
 *     hands each data run to ic_image_copy_range(), which copies it from
 *     the source layer's file in the kernel (a reflink where the file
 *     system shares extents) without reading it; the run then counts as
 *     handled like a skipped one, and is not zero-scanned (qemu-img -C
 *     does not scan either).  A run it cannot offload (compressed, not in
 *     a plain file, refused by the kernel) goes through the slots as
 *     without -C.  The reader writes into the target's file then, which
 *     invariant 4 otherwise keeps to the writer: only the descriptor is
 *     used, and the range is the reader's own (windows never overlap;
 *     where a later window's granule rounding reaches back into an
 *     offloaded run, both write the same bytes).  With -r nothing is
 *     offloaded, so that the limit sees every byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain-convert.h"
#include "chain-ratelimit.h"
#include "copy-compress.h"
#include "copy-zero.h"
#include "util/overflow.h"

/* Bytes read per ic_image_pread() call (one slot buffer): large enough
 * that per-call costs vanish, small enough that all slots together stay
 * below qemu-img's footprint (it uses 2 MiB buffers x 8 coroutines). */
#define CONVERT_BUF_SIZE ((size_t)2 << 20)
/* Longest range asked of block status at once (qemu-img map uses 1 GiB). */
#define CONVERT_STATUS_MAX ((uint64_t)1 << 30)
/* Smallest zero-detection granule: qemu-img convert's default -S 4k. */
#define CONVERT_MIN_GRANULE ((uint64_t)4096)
/* Largest granule we accept: QED allows 64 MiB clusters. */
#define CONVERT_MAX_GRANULE ((uint64_t)64 << 20)
/* Readers (each with its own source handle). */
#define CONVERT_READERS 3
/* Slot buffers: enough for every reader to fill one while the writer
 * writes others, without exceeding qemu-img's memory.  With -c the writer
 * is the bottleneck (compression), so one reader and two slots (one
 * filling while the other is compressed). */
#define CONVERT_SLOTS (2 * CONVERT_READERS + 1)
#define CONVERT_SLOTS_COMPRESS 2
/* With write-behind, as many slots as the backend keeps lent writes in
 * flight (at most CONVERT_BEHIND_MAX) wait for the device besides those the
 * readers fill and the one being written. */
#define CONVERT_BEHIND_MAX 4
/* Guest bytes a reader claims at once: small, so that the readers work
 * close to each other and the disk serves one stream, not several distant
 * ones. */
#define CONVERT_STRIPE ((uint64_t)8 << 20)

struct convert_copy {
    ic_image *dst;
    uint64_t granule;
    bool compress;
    bool fully_allocate;     /* -S 0 (design note 8) */
    bool offload;            /* -C into a raw target without -r (design note 11) */
    uint64_t sparse;         /* -S window: a power-of-two multiple of granule (note 8) */
    const ic_convert_options *opts;
    struct ic_ratelimit *rl; /* -r (design note 10); NULL: no limit */
    struct ic_copy_compress *pool; /* -c with a split compressor, else NULL */
};

struct convert_reader {
    ic_image *src;
    bool owned;              /* src was opened here: close it */
};

/* Reads [start, end) (granule aligned, or ending at the disk's end) into
 * slots; bytes before @counted were already reported as skipped. */
/* --salvage (design note 9): reads [off, off+n) sector by sector into
 * @buf, zeroes and reports each sector that cannot be read. */
static void read_salvaging(const struct convert_copy *c, ic_image *src, uint8_t *buf, size_t n,
                           uint64_t off)
{
    for (size_t pos = 0; pos < n; pos += 512) {
        size_t len = n - pos < 512 ? n - pos : 512;
        ic_error *err = NULL;
        int ret = ic_image_pread(src, buf + pos, len, off + pos, &err);
        ic_error_free(err);
        if (ret < 0) {
            memset(buf + pos, 0, len);
            if (c->opts->salvage_warn)
                c->opts->salvage_warn(off + pos, -ret, c->opts->salvage_payload);
        }
    }
}

static int read_window(struct ic_copy_engine *e, ic_image *src, uint64_t start, uint64_t end,
                       uint64_t counted, ic_error **errp)
{
    const struct convert_copy *c = e->cfg.job;
    for (uint64_t off = start; off < end;) {
        size_t n = (size_t)IC_MIN((uint64_t)e->cfg.slot_size, end - off);
        struct ic_copy_slot *sl = ic_copy_claim(e);
        if (!sl)
            return -ECANCELED;
        int ret;
        if (c->opts->salvage) {
            ic_error *err = NULL;
            ret = ic_image_pread(src, sl->buf[0], n, off, &err);
            ic_error_free(err);
            if (ret < 0) {
                read_salvaging(c, src, sl->buf[0], n, off);
                ret = 0;
            }
        } else {
            ret = ic_image_pread(src, sl->buf[0], n, off, errp);
        }
        if (ret < 0) {
            ic_copy_unclaim(e, sl);
            return ret;
        }
        sl->off = off;
        sl->len = n;
        sl->progress = off + n > counted ? off + n - IC_MAX(off, counted) : 0;
        ic_copy_ready(e, sl);
        off += n;
    }
    return 0;
}

/* The run at @off of at most @max bytes; *zero when it reads as zeroes
 * (design note 1).  *len is > 0 and within @max. */
static int run_at(ic_image *src, uint64_t off, uint64_t max, uint64_t *len, bool *zero,
                  ic_error **errp)
{
    ic_block_status st;
    int ret = ic_image_block_status(src, NULL, off, max, &st, errp);
    if (ret < 0)
        return ret;
    *len = st.length;
    if (*len == 0 || *len > max)
        return ic_error_set(errp, IC_ERR_OTHER, EIO, "%s: block status ran past the end",
                            src->filename);
    *zero = (st.flags & IC_BS_ZERO) != 0;
    if (!*zero && (st.flags & IC_BS_DATA))
        *zero = ic_copy_host_hole(src, &st, len);
    return 0;
}

/* ic_copy_stripe_fn: one stripe [off, stripe_end) with a reader's handle:
 * zero runs skipped (and the stripe extended over them), data runs widened
 * to whole granules (design notes 1 and 2). */
static int convert_stripe(struct ic_copy_engine *e, void *ctx, uint64_t off, uint64_t stripe_end,
                          ic_error **errp)
{
    struct convert_reader *r = ctx;
    const struct convert_copy *c = e->cfg.job;
    ic_image *src = r->src;
    uint64_t size = e->cfg.size;
    while (off < stripe_end) {
        uint64_t len;
        bool zero;
        int ret = run_at(src, off, IC_MIN(stripe_end - off, CONVERT_STATUS_MAX), &len, &zero,
                         errp);
        if (ret < 0)
            return ret;
        if (zero && !c->fully_allocate) {
            /* a zero run up to the stripe's end may go on: look further
             * and take the stripes it covers if they are still free */
            uint64_t end = off + len;
            while (end == stripe_end && end < size) {
                uint64_t more;
                bool more_zero;
                ret = run_at(src, end, IC_MIN(size - end, CONVERT_STATUS_MAX), &more,
                             &more_zero, errp);
                if (ret < 0)
                    return ret;
                uint64_t old_end = stripe_end;
                if (more_zero)
                    ic_copy_extend_stripe(e, &stripe_end, end + more);
                if (stripe_end == old_end)
                    break;
                end = IC_MIN(end + more, stripe_end);
            }
            ic_copy_skip(e, end - off);
            off = end;
            continue;
        }
        if (c->offload) {
            /* design note 11 */
            uint64_t done = 0;
            ret = ic_image_copy_range(c->dst, src, off, len, &done, errp);
            if (ret == 0 && done > 0) {
                ic_copy_skip(e, done);
                off += done;
                continue;
            }
            if (ret < 0 && ret != -ENOTSUP)
                return ret;
        }
        /* Data: copy the granule-aligned window around it.  The window
         * starts at `off` rounded down, which is at or after the end of the
         * previous window (and of the stripe's start: stripes are granule
         * multiples); when it is before `off`, the head of the granule was
         * a skipped zero run: re-reading it is correct (it reads as zeroes)
         * and keeps whole-cluster writes for -c. */
        uint64_t start = off - off % c->granule;
        uint64_t end;
        if (ic_add_overflow(off, len, &end) || end > stripe_end)
            return ic_error_set(errp, IC_ERR_OTHER, EIO, "%s: block status ran past the end",
                                src->filename);
        if (end % c->granule)
            end = IC_MIN(end - end % c->granule + c->granule, stripe_end);
        if ((ret = read_window(e, src, start, end, off, errp)) < 0)
            return ret;
        off = end;
    }
    return 0;
}

/* Writes one slot's data (design notes 2 and 3). */
static int write_slot(const struct convert_copy *c, const struct ic_copy_slot *sl,
                      ic_error **errp)
{
    if (c->compress)
        return ic_copy_compress_write(c->pool, c->dst, sl->buf[0], sl->len, sl->off,
                                      (size_t)c->granule, errp);
    if (c->fully_allocate) /* -S 0 (design note 8) */
        return ic_image_pwrite(c->dst, sl->buf[0], sl->len, sl->off, errp);
    if (c->sparse > c->granule) {
        /* -S: zero windows aligned in the guest (design note 8); the slot
         * starts on a granule, so its head goes up to the next window */
        size_t head = (size_t)IC_MIN(c->sparse - sl->off % c->sparse, (uint64_t)sl->len);
        int ret = ic_copy_write_nonzero(c->dst, sl->buf[0], head, sl->off, head, errp);
        if (ret < 0 || head == sl->len)
            return ret;
        return ic_copy_write_nonzero(c->dst, sl->buf[0] + head, sl->len - head, sl->off + head,
                                     (size_t)c->sparse, errp);
    }
    return ic_copy_write_nonzero(c->dst, sl->buf[0], sl->len, sl->off, (size_t)c->granule, errp);
}

/* The writer: writes ready slots until every reader is done.  The first
 * data slot starts the other readers (design note 4); failing to add one
 * is not fatal, the first goes on. */
static int write_all(struct ic_copy_engine *e, const struct convert_copy *c,
                     struct convert_reader *readers, unsigned *nreaders, unsigned max_readers,
                     ic_copy_source_opener open_more, void *payload, ic_error **errp)
{
    for (;;) {
        struct ic_copy_slot *sl;
        int ret = ic_copy_next(e, &sl);
        if (ret < 0)
            return ret;
        if (!sl)
            return 0;
        if (open_more && ic_copy_readers_busy(e)) {
            for (; *nreaders < max_readers; (*nreaders)++) {
                struct convert_reader *r = &readers[*nreaders];
                *r = (struct convert_reader){ .owned = true };
                if (open_more(&r->src, payload, NULL) < 0)
                    break;
                if (!ic_copy_add_reader(e, r, NULL)) {
                    ic_image_close(r->src);
                    break;
                }
            }
            open_more = NULL;
        }
        ret = write_slot(c, sl, errp);
        if (ret < 0)
            return ret;
        if (c->rl)
            ic_ratelimit_account(c->rl, sl->len); /* -r: the data read and written */
        ic_copy_written(e, sl);
    }
}

int ic_copy_image(ic_image *dst, ic_image *src, ic_copy_source_opener open_more, void *payload,
                  const ic_convert_options *opts, struct ic_copy_engine_stats *stats,
                  ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    struct convert_copy c = { .dst = dst, .compress = opts->compress, .opts = opts };
    struct ic_ratelimit rl;
    if (opts->rate_limit) {
        ic_ratelimit_init(&rl, opts->rate_limit, NULL, NULL, NULL);
        c.rl = &rl;
    }
    uint64_t size = ic_image_size(src);
    if (dst->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: target is opened read-only",
                            dst->filename);
    if (ic_image_size(dst) < size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: target is smaller (%" PRIu64 " bytes) than the source %s (%" PRIu64
                            " bytes)", dst->filename, ic_image_size(dst), src->filename, size);
    uint64_t cs = ic_image_cluster_size(dst);
    if (c.compress) {
        if (!ic_image_can_compress(dst) || cs == 0)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "%s: format %s does not support compression", dst->filename,
                                ic_image_format(dst));
        c.granule = cs;
    } else {
        c.granule = IC_MAX(CONVERT_MIN_GRANULE, cs);
        /* -S (design note 8) */
        c.fully_allocate = opts->sparse_size_set && opts->sparse_size == 0;
        for (c.sparse = c.granule; opts->sparse_size_set && c.sparse < opts->sparse_size &&
                                   c.sparse < CONVERT_MAX_GRANULE;)
            c.sparse <<= 1;
    }
    c.offload = opts->copy_range && !c.compress && !c.rl && ic_image_headerless(dst);
    if (c.granule > CONVERT_MAX_GRANULE || !IC_IS_POW2(c.granule))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: cluster size %" PRIu64 " is not supported for conversion",
                            dst->filename, c.granule);
    if (c.compress)
        open_more = NULL;
    struct ic_copy_config cfg = {
        .nslots = c.compress ? CONVERT_SLOTS_COMPRESS : CONVERT_SLOTS,
        .slot_size = (size_t)IC_MAX((uint64_t)CONVERT_BUF_SIZE, c.granule),
        .nbufs = 1,
        .stripe = convert_stripe,
        .size = size,
        /* powers of two: a multiple of the granule */
        .stripe_size = IC_MAX(CONVERT_STRIPE, c.granule),
        .progress = opts->progress,
        .payload = opts->payload,
        .job = &c,
        /* write-behind only for plain copies: -c writes from the
         * compression buffers (design note 5) */
        .lend_to = c.compress ? NULL : dst->file,
        .lend_base_slots = CONVERT_READERS + 1,
        .lend_max = CONVERT_BEHIND_MAX,
    };
    struct ic_copy_engine e;
    int ret = ic_copy_init(&e, &cfg, errp);
    if (ret < 0)
        return ret;
    if (c.compress)
        c.pool = ic_copy_compress_create(dst, (size_t)c.granule, cfg.slot_size);
    if (opts->progress)
        opts->progress(0, size, opts->payload);
    struct convert_reader readers[CONVERT_READERS];
    unsigned nreaders = 1;
    readers[0] = (struct convert_reader){ .src = src };
    ic_error *werr = NULL;
    int wret = 0;
    if (!ic_copy_add_reader(&e, &readers[0], NULL)) {
        ret = ic_error_set(errp, IC_ERR_NOMEM, EAGAIN, "%s: cannot start a reader thread",
                           dst->filename);
        nreaders = 0;
    } else {
        wret = write_all(&e, &c, readers, &nreaders,
                         open_more ? CONVERT_READERS : 1, open_more, payload, &werr);
    }
    ic_copy_stop(&e);
    /* The first real failure wins: a side that only saw the other stop
     * reports -ECANCELED and has no error object. */
    int rret = ic_copy_take_error(&e, ret < 0 ? NULL : errp);
    if (ret < 0) {
        ic_error_free(werr);
    } else if (rret < 0) {
        ret = rret;
        ic_error_free(werr);
    } else if (wret < 0) {
        ret = wret;
        ic_error_propagate(errp, werr);
    }
    if (ret == 0)
        ret = ic_image_flush_final(dst, errp);
    if (stats)
        *stats = e.stats;
    int lret = ic_copy_fini(&e);
    /* a write-behind failure the flush did not see is kept */
    if (ret == 0 && lret < 0)
        ret = ic_error_set(errp, ic_error_kind_from_errno(-lret), -lret,
                           "%s: writing the target failed: %s", dst->filename, strerror(-lret));
    for (unsigned i = 0; i < nreaders; i++)
        if (readers[i].owned)
            ic_image_close(readers[i].src);
    ic_copy_compress_destroy(c.pool);
    return ret;
}

int ic_image_copy(ic_image *dst, ic_image *src, const ic_convert_options *opts, ic_error **errp)
{
    return ic_copy_image(dst, src, NULL, NULL, opts, NULL, errp);
}
