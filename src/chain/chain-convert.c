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
 *     compression, backing_file in -o (use -B, design note 12).
 *  6. The target is opened by ic_image_open() as bulk output
 *     (IC_OPEN_STREAM) in the -t cache mode, which picks its backend
 *     (src/image/image-cache.c note 1): by default O_DIRECT where the file
 *     system has it.  Data goes out from aligned buffers (posix_memalign,
 *     CONVERT_ALIGN) in granule-aligned lengths, and whatever is unaligned
 *     (qcow2/QED metadata, a disk tail) goes through the backend's bounce
 *     buffers, or the page cache while lending (6b).  With -c and the
 *     default mode the target is written through the streamed page cache
 *     (writeback), since compressed clusters are small unaligned writes
 *     that O_DIRECT would turn into read-modify-writes.
 *  6b. On the O_DIRECT target (not with -c), the engine lends the
 *     backend its slot buffers (write-behind, io-aio.c invariants 6 to
 *     8): a window goes to the device from the slot it was read into, up
 *     to the backend's lend depth of them at once, and the slot is refilled
 *     only when the device is done with it.  None of the target's data
 *     passes through the page cache: on the bench VM, copying it there
 *     (into pages the host has to fault in) was most of the writer's
 *     time, 0.6 to 1.9 s of system time per 1 GiB convert
 *     depending on the host; with write-behind the whole process uses
 *     about 0.45 s.  Wall time is the disk's there: paired runs of
 *     convert -O qcow2 of the 1 GiB chain came out between 0.95 and 1.14
 *     times the page-cache path's, depending on the minute.
 *  7. Progress is reported after every window written, and for skipped
 *     runs whenever the writer wakes (readers wake it at least every
 *     CONVERT_SKIP_WAKE skipped bytes), in guest bytes handled, from 0 to
 *     the virtual size.
 *  8. The target is flushed at the end (ic_image_flush_final): its data is
 *     durable when convert returns, except with -t unsafe, which skips that
 *     final flush only (qemu-img convert's default mode).
 *  9. Reading and writing overlap, and several reads are in flight: up to
 *     CONVERT_READERS reader threads, each with its own handle on the
 *     source chain, fill CONVERT_SLOTS buffers; the caller's thread writes
 *     them (see the comment above struct copy_state for the protocol).
 *     The extra readers start, and open their handles, only when the
 *     first data arrives, so a source without data costs one open.
 * 10. With -c, when the target driver splits compression (compress +
 *     pwrite_precompressed), the clusters of each slot are compressed in
 *     parallel: CONVERT_COMPRESSORS helper threads and the writer take
 *     cluster indexes from a shared counter, each result goes to its own
 *     cluster-sized area of one output buffer; then the writer alone
 *     stores them in guest order (so the target's layout is the same as
 *     with one thread).  compress() touches no image state, so it may run
 *     while the writer's image is idle; memory stays bounded: one output
 *     buffer of a slot's size, whatever the number of threads.
 * 11. -n writes into an existing target instead (of -O's format, opened
 *     with its own backing chain left alone): it must be at least as large
 *     as the source; [0, source size) is first made to read as zeroes
 *     (ic_image_pwrite_zeroes, unmapping where it can), so the copy can
 *     skip zero runs as it does for a new image (qemu-img writes zeroes
 *     over those runs instead; the result reads the same, and the target
 *     past the source's size is left as it was).  A failed -n convert
 *     never removes the target.
 * 12. -B BACKING -F FMT makes the target an overlay of BACKING holding
 *     only what the source's top image allocates above its own backing
 *     file (qemu-img's rule); that single-layer copy is
 *     chain-convert-backing.c's.  Refused as qemu-img refuses them: no -F,
 *     a raw target; and -c with -B (not supported).
 * 13. -S SIZE (qemu-img's sparse threshold): inside data runs, zeroes are
 *     skipped only in whole windows of SIZE bytes aligned in the guest
 *     (clipped to the slot), as qemu-img's output shows it: a window with
 *     any data is written whole.  SIZE is rounded up to a power of two at
 *     least the granule, which gives qemu's windows for the power-of-two
 *     sizes.  Runs the block status calls zero are skipped whatever SIZE,
 *     as in qemu-img; -S 0 writes every byte, those runs included
 *     (fully_allocate), qemu-img's fully allocated output.  -c ignores -S
 *     (its clusters are written or skipped whole).
 * 14. --salvage: a read that fails is retried sector by sector; each
 *     sector that still fails reads as zeroes and is reported through
 *     opts->salvage_warn (from the reader thread that met it), as
 *     qemu-img reports every sector it could not read.  Block-status
 *     errors still fail the convert.
 *
 * The behaviour followed is qemu-img.c's img_convert.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgchain/chain.h"
#include "chain.h"
#include "chain-convert-backing.h"
#include "chain-ratelimit.h"
#include "util/overflow.h"

/* Bytes read per ic_image_pread() call (one slot buffer): large enough
 * that per-call costs vanish, small enough that all slots together stay
 * below qemu-img's footprint (it uses 2 MiB buffers x 8 coroutines). */
#define CONVERT_BUF_SIZE ((size_t)2 << 20)
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
 * The copy is a pipeline: reader threads walk block status and read data
 * windows from the source into a pool of slot buffers; the calling thread
 * detects zero granules and writes to the target.  Each image handle is
 * touched by one thread only: every reader has its own handle on the
 * source chain (ic_image_convert lets the writer open one per extra reader
 * once data shows up; ic_image_copy's caller gives one handle, so it runs
 * one reader), the caller's thread alone writes the target.  Several readers keep several reads in flight, which
 * matters when the source is not in the page cache (qemu-img gets the same
 * from its thread pool); reading and writing overlap in any case.
 *
 * Work: the guest range is cut into stripes of `stripe` bytes
 * (CONVERT_STRIPE, or the granule when larger: a multiple of the granule,
 * so no window crosses a stripe); a reader
 * takes the next stripe from `next_stripe` and handles it completely.
 * A zero run that goes on past the end of the reader's stripe extends the
 * stripe over it when nobody has claimed what follows yet, so a sparse
 * disk costs one block status query per run, not one per stripe.
 *
 * Slots (all under `lock`): FREE -> (a reader) FILLING -> READY -> (the
 * writer) WRITING -> FREE, or -> HELD -> FREE when the target's backend
 * kept parts of the buffer for write-behind (design note 6b): `holds`
 * counts them, and the backend's worker that writes the last one frees
 * the slot.  A slot carries data; the writer takes READY
 * slots in any order: writes to different offsets commute.  A zero run
 * needs no slot: its reader adds it to `skipped`, which the writer turns
 * into progress when it wakes.  The writer ends when every reader has
 * finished and no slot is READY or FILLING.  Either side may set `stop`
 * (error); the others notice it at their next wait.
 */
/* Readers ic_image_convert runs (each with its own source handle). */
#define CONVERT_READERS 3
/* Slot buffers in flight: enough for every reader to fill one while the
 * writer writes others, without exceeding qemu-img's memory.  With -c the
 * writer is the bottleneck (compression), so one reader and two slots (one
 * filling while the other is compressed; the compression pool adds one
 * slot-sized output buffer). */
#define CONVERT_SLOTS (2 * CONVERT_READERS + 1)
#define CONVERT_SLOTS_COMPRESS 2
/* With write-behind, as many slots as the backend keeps lent writes in
 * flight (ic_io_lend, at most CONVERT_BEHIND_MAX) wait for the device
 * besides those the readers fill and the one being written; memory stays
 * within qemu-img's for the same convert. */
#define CONVERT_BEHIND_MAX 4
#define CONVERT_SLOTS_MAX (CONVERT_READERS + CONVERT_BEHIND_MAX + 1)
/* Guest bytes a reader claims at once.  Small, so that the readers work
 * close to each other: on the bench VM, three readers 64 MiB apart made
 * the disk serve three distant streams.  Medians of paired runs of the
 * 1 GiB chain convert, speed against 64 MiB stripes: 16 MiB 1.37; 8 MiB
 * 1.05 and 1.29; 4 MiB 1.42 and 1.23; 2 MiB 0.99. */
#define CONVERT_STRIPE ((uint64_t)8 << 20)

enum slot_state { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY, SLOT_WRITING, SLOT_HELD };

struct slot {
    uint8_t *buf;
    uint64_t off;
    uint64_t len;
    unsigned holds;     /* parts of buf the target's backend still writes */
    uint64_t progress;  /* guest bytes it adds to progress: len, less a head
                         * already counted as a skipped zero run */
    enum slot_state state;
};

/* Skipped bytes after which a reader wakes the writer to report them. */
#define CONVERT_SKIP_WAKE ((uint64_t)1 << 30)

/* Helper threads compressing with the writer (design note 10): one per
 * online CPU beyond the first, at least 1, at most this many. */
#define CONVERT_COMPRESSORS_MAX 3

/* One slot's compression job, shared by the writer and the helpers (all
 * fields under `lock`, except the per-index buffers: index i is owned by
 * the thread that took it until it is counted in `finished`). */
struct compress_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* helpers: a job was posted or quit */
    pthread_cond_t done;      /* writer: finished == n */
    const ic_image *dst;
    size_t granule;
    const uint8_t *in;        /* the slot's data */
    size_t in_len;
    uint8_t *out;             /* index i at out + i * granule */
    int64_t *res;             /* 0: all zero, > 0: compressed length, <0: -errno */
    size_t n, next, finished;
    bool quit;
    pthread_t threads[CONVERT_COMPRESSORS_MAX];
    unsigned nthreads;
};

/* Opens one more independent handle on the source (for another reader). */
typedef int (*source_opener)(ic_image **out, void *payload, ic_error **errp);

struct copy_state {
    ic_image *dst;
    unsigned nreaders;       /* started, under lock */
    unsigned max_readers;
    source_opener open_more; /* NULL: one reader only */
    void *open_payload;
    uint64_t size;
    uint64_t granule;
    uint64_t stripe;         /* CONVERT_STRIPE or the granule, the larger */
    bool compress;
    bool fully_allocate;     /* -S 0 (design note 13) */
    uint64_t sparse;         /* zero-detection window: a multiple of granule (note 13) */
    struct ic_ratelimit *rl; /* -r; NULL: no limit */
    size_t buf_size;
    const ic_convert_options *opts;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slot slots[CONVERT_SLOTS_MAX];
    unsigned nslots;         /* slots in use (<= CONVERT_SLOTS_MAX) */
    bool lent;               /* the target's backend takes slot buffers */
    uint64_t next_stripe;    /* guest offset of the next unclaimed stripe */
    unsigned readers_done;
    bool stop;
    int read_ret;            /* first reader failure (0 or -errno) */
    ic_error *read_err;      /* its error, moved to the caller's errp */
    uint64_t skipped;        /* zero bytes readers skipped (under lock) */
    uint64_t skip_woken;     /* `skipped` when a reader last woke the writer */
    uint64_t skip_seen;      /* the part of `skipped` already in `done` */
    uint64_t done;           /* guest bytes handled, for progress */
    struct compress_pool *pool; /* -c with a split compressor, else NULL */
};

struct reader {
    struct copy_state *s;
    ic_image *src;
    bool owned;              /* src was opened by the engine: close it */
    pthread_t thread;
};

static void progress(const struct copy_state *s, uint64_t done)
{
    if (s->opts && s->opts->progress)
        s->opts->progress(done, s->size, s->opts->payload);
}

/* Reader side: claims a free slot (FILLING); NULL when stopped. */
static struct slot *slot_claim(struct copy_state *s)
{
    pthread_mutex_lock(&s->lock);
    struct slot *sl = NULL;
    while (!s->stop) {
        for (unsigned i = 0; i < s->nslots && !sl; i++)
            if (s->slots[i].state == SLOT_FREE)
                sl = &s->slots[i];
        if (sl)
            break;
        pthread_cond_wait(&s->cond, &s->lock);
    }
    if (sl)
        sl->state = SLOT_FILLING;
    pthread_mutex_unlock(&s->lock);
    return sl;
}

static void slot_set(struct copy_state *s, struct slot *sl, enum slot_state st)
{
    pthread_mutex_lock(&s->lock);
    sl->state = st;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Counts a skipped zero run (progress only); wakes the writer now and
 * then so that progress moves over a long sparse stretch. */
static void note_skip(struct copy_state *s, uint64_t len)
{
    pthread_mutex_lock(&s->lock);
    s->skipped += len;
    if (s->skipped - s->skip_woken >= CONVERT_SKIP_WAKE) {
        s->skip_woken = s->skipped;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

/* A zero run from inside the stripe [.., *stripe_end) runs on to @end:
 * claims the stripes it covers when nobody has taken them yet (the next
 * unclaimed stripe starts right at *stripe_end), and moves *stripe_end
 * to the last stripe boundary inside the run (or the disk's end). */
static void extend_stripe(struct copy_state *s, uint64_t *stripe_end, uint64_t end)
{
    uint64_t to = end == s->size ? end : end - end % s->stripe;
    pthread_mutex_lock(&s->lock);
    if (s->next_stripe == *stripe_end && to > *stripe_end) {
        s->next_stripe = to;
        *stripe_end = to;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Reads [start, end) (granule aligned, or ending at the disk's end) into
 * slots of at most buf_size bytes; bytes before @counted were already
 * reported as skipped. */
/* --salvage (design note 14): reads [off, off+n) sector by sector into
 * @buf, zeroes and reports each sector that cannot be read. */
static int read_salvaging(const struct copy_state *s, ic_image *src, uint8_t *buf, size_t n,
                          uint64_t off)
{
    for (size_t pos = 0; pos < n; pos += 512) {
        size_t len = n - pos < 512 ? n - pos : 512;
        ic_error *err = NULL;
        int ret = ic_image_pread(src, buf + pos, len, off + pos, &err);
        ic_error_free(err);
        if (ret < 0) {
            memset(buf + pos, 0, len);
            if (s->opts->salvage_warn)
                s->opts->salvage_warn(off + pos, -ret, s->opts->salvage_payload);
        }
    }
    return 0;
}

static int read_window(struct copy_state *s, ic_image *src, uint64_t start, uint64_t end,
                       uint64_t counted, ic_error **errp)
{
    for (uint64_t off = start; off < end;) {
        size_t n = (size_t)IC_MIN((uint64_t)s->buf_size, end - off);
        struct slot *sl = slot_claim(s);
        if (!sl)
            return -ECANCELED;
        int ret;
        if (s->opts && s->opts->salvage) {
            ic_error *err = NULL;
            ret = ic_image_pread(src, sl->buf, n, off, &err);
            ic_error_free(err);
            if (ret < 0)
                ret = read_salvaging(s, src, sl->buf, n, off);
        } else {
            ret = ic_image_pread(src, sl->buf, n, off, errp);
        }
        if (ret < 0) {
            slot_set(s, sl, SLOT_FREE);
            return ret;
        }
        sl->off = off;
        sl->len = n;
        sl->progress = off + n > counted ? off + n - IC_MAX(off, counted) : 0;
        slot_set(s, sl, SLOT_READY);
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
        *zero = host_hole(src, &st, len);
    return 0;
}

/* One stripe [off, stripe_end): block status over long runs, zero runs
 * skipped (and the stripe extended over them, see above), data runs
 * widened to whole granules (design note 2). */
static int read_stripe(struct copy_state *s, ic_image *src, uint64_t off, uint64_t stripe_end,
                       ic_error **errp)
{
    while (off < stripe_end) {
        uint64_t len;
        bool zero;
        int ret = run_at(src, off, IC_MIN(stripe_end - off, CONVERT_STATUS_MAX), &len, &zero,
                         errp);
        if (ret < 0)
            return ret;
        if (zero && !s->fully_allocate) {
            /* a zero run up to the stripe's end may go on: look further
             * and take the stripes it covers if they are still free */
            uint64_t end = off + len;
            while (end == stripe_end && end < s->size) {
                uint64_t more;
                bool more_zero;
                ret = run_at(src, end, IC_MIN(s->size - end, CONVERT_STATUS_MAX), &more,
                             &more_zero, errp);
                if (ret < 0)
                    return ret;
                uint64_t old_end = stripe_end;
                if (more_zero)
                    extend_stripe(s, &stripe_end, end + more);
                if (stripe_end == old_end)
                    break;
                end = IC_MIN(end + more, stripe_end);
            }
            note_skip(s, end - off);
            off = end;
            continue;
        }
        /* Data: copy the granule-aligned window around it.  The window
         * starts at `off` rounded down, which is at or after the end of the
         * previous window (and of the stripe's start: stripes are granule
         * multiples); when it is before `off`, the head of the granule was
         * a skipped zero run: re-reading it is correct (it reads as zeroes)
         * and keeps whole-cluster writes for -c. */
        uint64_t start = off - off % s->granule;
        uint64_t end;
        if (ic_add_overflow(off, len, &end) || end > stripe_end)
            return ic_error_set(errp, IC_ERR_OTHER, EIO, "%s: block status ran past the end",
                                src->filename);
        if (end % s->granule)
            end = IC_MIN(end - end % s->granule + s->granule, stripe_end);
        if ((ret = read_window(s, src, start, end, off, errp)) < 0)
            return ret;
        off = end;
    }
    return 0;
}

static void *reader_main(void *opaque)
{
    struct reader *r = opaque;
    struct copy_state *s = r->s;
    ic_error *err = NULL;
    int ret = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        uint64_t off = s->next_stripe;
        bool stop = s->stop;
        if (off < s->size)
            s->next_stripe = off + IC_MIN(s->stripe, s->size - off);
        pthread_mutex_unlock(&s->lock);
        if (stop || off >= s->size)
            break;
        ret = read_stripe(s, r->src, off, off + IC_MIN(s->stripe, s->size - off), &err);
        if (ret < 0)
            break;
    }
    pthread_mutex_lock(&s->lock);
    if (ret < 0 && ret != -ECANCELED && s->read_ret == 0) {
        s->read_ret = ret;
        s->read_err = err;
        err = NULL;
        s->stop = true;
    }
    s->readers_done++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    ic_error_free(err);
    return NULL;
}

/* Compresses index @i of the current job (called without the lock). */
static void pool_run_one(struct compress_pool *p, size_t i)
{
    size_t off = i * p->granule;
    size_t len = IC_MIN(p->granule, p->in_len - off);
    if (buf_is_zero(p->in + off, len))
        p->res[i] = 0;
    else
        p->res[i] = ic_image_compress_cluster(p->dst, p->out + off, p->granule, p->in + off,
                                              len);
}

/* Takes and runs indexes of the current job until none is left; called
 * and returns with p->lock held. */
static void pool_work(struct compress_pool *p)
{
    while (p->next < p->n) {
        size_t i = p->next++;
        pthread_mutex_unlock(&p->lock);
        pool_run_one(p, i);
        pthread_mutex_lock(&p->lock);
        if (++p->finished == p->n)
            pthread_cond_signal(&p->done);
    }
}

static void *pool_main(void *opaque)
{
    struct compress_pool *p = opaque;
    pthread_mutex_lock(&p->lock);
    while (!p->quit) {
        if (p->next < p->n)
            pool_work(p);
        else
            pthread_cond_wait(&p->work, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* NULL when the pool cannot be set up (out of memory): the caller falls
 * back to ic_image_pwrite_compressed.  Helpers that fail to start are
 * not fatal either: the writer compresses alone. */
static struct compress_pool *pool_create(const ic_image *dst, size_t granule, size_t buf_size)
{
    struct compress_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    size_t max_n = IC_DIV_ROUND_UP(buf_size, granule);
    p->out = malloc(max_n * granule);
    p->res = calloc(max_n, sizeof(*p->res));
    if (!p->out || !p->res) {
        free(p->out);
        free(p->res);
        free(p);
        return NULL;
    }
    p->dst = dst;
    p->granule = granule;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = cpus > 1 ? (unsigned)IC_MIN(cpus - 1, (long)CONVERT_COMPRESSORS_MAX) : 1;
    for (; p->nthreads < want; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, pool_main, p) != 0)
            break;
    return p;
}

static void pool_destroy(struct compress_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->out);
    free(p->res);
    free(p);
}

/* -c through the pool (design note 10): compress the slot's clusters in
 * parallel, then store them in guest order. */
static int write_slot_pooled(struct copy_state *s, const struct slot *sl, ic_error **errp)
{
    struct compress_pool *p = s->pool;
    pthread_mutex_lock(&p->lock);
    p->in = sl->buf;
    p->in_len = (size_t)sl->len;
    p->n = IC_DIV_ROUND_UP(p->in_len, p->granule);
    p->next = 0;
    p->finished = 0;
    pthread_cond_broadcast(&p->work);
    pool_work(p);
    while (p->finished < p->n)
        pthread_cond_wait(&p->done, &p->lock);
    size_t n = p->n;
    p->n = 0;
    p->next = 0;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        size_t pos = i * p->granule;
        size_t g = IC_MIN(p->granule, (size_t)sl->len - pos);
        int64_t r = p->res[i];
        int ret;
        if (r == 0)
            continue;
        if (r == -ENOSPC)
            ret = ic_image_pwrite(s->dst, sl->buf + pos, g, sl->off + pos, errp);
        else if (r < 0)
            ret = ic_error_set(errp, r == -ENOMEM ? IC_ERR_NOMEM : IC_ERR_OTHER, (int)-r,
                               "%s: cannot compress the cluster at guest offset %#" PRIx64
                               ": %s", s->dst->filename, sl->off + pos, strerror((int)-r));
        else
            ret = ic_image_pwrite_precompressed(s->dst, p->out + pos, (size_t)r, sl->off + pos,
                                                errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Writes one slot's data: zero granules skipped, the rest coalesced into
 * as few writes as possible (one compressed write per cluster with -c). */
static int write_slot(struct copy_state *s, const struct slot *sl, ic_error **errp)
{
    if (s->pool)
        return write_slot_pooled(s, sl, errp);
    size_t n = (size_t)sl->len;
    size_t run_start = 0, run_len = 0;
    int ret;
    for (size_t pos = 0; pos < n;) {
        size_t g = (size_t)IC_MIN(s->granule, (uint64_t)(n - pos));
        if (!s->compress && s->sparse > s->granule) {
            /* the -S window around this granule, clipped to the slot */
            uint64_t goff = sl->off + pos;
            g = (size_t)IC_MIN(s->sparse - goff % s->sparse, (uint64_t)(n - pos));
        }
        bool zero = !s->fully_allocate && buf_is_zero(sl->buf + pos, g);
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

/* ---- write-behind lender (design note 6b) --------------------------------- */

/* The slot whose buffer holds [p, p+len), or NULL (the target driver's own
 * buffers, which it may free as soon as pwrite returns). */
static struct slot *slot_of(struct copy_state *s, const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    for (unsigned i = 0; i < s->nslots; i++) {
        uintptr_t b = (uintptr_t)s->slots[i].buf;
        if (a >= b && a - b <= s->buf_size && len <= s->buf_size - (a - b))
            return &s->slots[i];
    }
    return NULL;
}

static bool lend_hold(void *payload, const void *buf, size_t len)
{
    struct copy_state *s = payload;
    struct slot *sl = slot_of(s, buf, len);
    if (!sl)
        return false;
    pthread_mutex_lock(&s->lock);
    bool ok = sl->state == SLOT_WRITING;
    if (ok)
        sl->holds++;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void lend_release(void *payload, const void *buf)
{
    struct copy_state *s = payload;
    struct slot *sl = slot_of(s, buf, 1);
    if (!sl)
        return;
    pthread_mutex_lock(&s->lock);
    if (sl->holds && --sl->holds == 0 && sl->state == SLOT_HELD) {
        sl->state = SLOT_FREE;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

/* After the writer is done with a slot: free now, or when the backend
 * gives the last part back. */
static void slot_written(struct copy_state *s, struct slot *sl)
{
    pthread_mutex_lock(&s->lock);
    sl->state = sl->holds ? SLOT_HELD : SLOT_FREE;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int start_reader(struct copy_state *s, struct reader *r, ic_error **errp)
{
    pthread_mutex_lock(&s->lock);
    s->nreaders++;
    pthread_mutex_unlock(&s->lock);
    int terr = pthread_create(&r->thread, NULL, reader_main, r);
    if (terr != 0) {
        pthread_mutex_lock(&s->lock);
        s->nreaders--;
        pthread_mutex_unlock(&s->lock);
        return ic_error_set(errp, IC_ERR_NOMEM, terr, "%s: cannot start a reader thread: %s",
                            s->dst->filename, strerror(terr));
    }
    return 0;
}

/* Writer side: consumes READY slots until every reader is done and no
 * slot is pending, or a reader failed (-ECANCELED).  The first data slot
 * starts the other readers: an image without data (a preallocated but
 * empty disk) never pays for opening more handles. */
static int write_all(struct copy_state *s, struct reader *readers, unsigned *started,
                     ic_error **errp)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct slot *sl = NULL;
        bool finished = false;
        uint64_t skipped = 0;
        for (;;) {
            bool pending = false;
            for (unsigned i = 0; i < s->nslots && !sl; i++) {
                if (s->slots[i].state == SLOT_READY)
                    sl = &s->slots[i];
                else if (s->slots[i].state == SLOT_FILLING)
                    pending = true;
            }
            /* with no reader left, `skipped` is final: read below */
            finished = !sl && s->readers_done == s->nreaders && !pending;
            skipped = s->skipped - s->skip_seen;
            if (sl || s->stop || finished || skipped)
                break;
            pthread_cond_wait(&s->cond, &s->lock);
        }
        s->skip_seen = s->skipped;
        bool stopped = s->stop;
        bool more = sl && s->open_more && s->readers_done < s->nreaders;
        if (sl && !stopped)
            sl->state = SLOT_WRITING;
        pthread_mutex_unlock(&s->lock);
        if (stopped)
            return -ECANCELED;
        if (skipped) {
            s->done += skipped;
            progress(s, s->done);
        }
        if (!sl) {
            if (finished)
                return 0;
            continue;
        }
        if (more) {
            /* a failure to add readers is not fatal: the first goes on */
            for (; *started < s->max_readers; (*started)++) {
                struct reader *r = &readers[*started];
                *r = (struct reader){ .s = s, .owned = true };
                if (s->open_more(&r->src, s->open_payload, NULL) < 0)
                    break;
                if (start_reader(s, r, NULL) < 0) {
                    ic_image_close(r->src);
                    break;
                }
            }
            s->open_more = NULL;
        }
        int ret = write_slot(s, sl, errp);
        if (ret < 0)
            return ret;
        if (s->rl)
            ic_ratelimit_account(s->rl, sl->len); /* -r: the data read and written */
        s->done += sl->progress;
        progress(s, s->done);
        slot_written(s, sl);
    }
}

/* The engine.  @open_more (may be NULL) opens further handles on @src for
 * up to CONVERT_READERS readers in all. */
static int copy_image(ic_image *dst, ic_image *src, source_opener open_more, void *open_payload,
                      const ic_convert_options *opts, ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    struct copy_state s = {
        .dst = dst,
        .max_readers = open_more && !opts->compress ? CONVERT_READERS : 1,
        .nslots = opts->compress ? CONVERT_SLOTS_COMPRESS : CONVERT_SLOTS,
        .open_more = opts->compress ? NULL : open_more,
        .open_payload = open_payload,
        .size = ic_image_size(src),
        .compress = opts->compress,
        .opts = opts,
    };
    struct ic_ratelimit rl;
    if (opts && opts->rate_limit) {
        ic_ratelimit_init(&rl, opts->rate_limit, NULL, NULL, NULL);
        s.rl = &rl;
    }
    if (dst->read_only)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS, "%s: target is opened read-only",
                            dst->filename);
    if (ic_image_size(dst) < s.size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: target is smaller (%" PRIu64 " bytes) than the source %s (%" PRIu64
                            " bytes)", dst->filename, ic_image_size(dst), src->filename, s.size);
    uint64_t cs = ic_image_cluster_size(dst);
    if (s.compress) {
        if (!ic_image_can_compress(dst) || cs == 0)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "%s: format %s does not support compression", dst->filename,
                                ic_image_format(dst));
        s.granule = cs;
    } else {
        s.granule = IC_MAX(CONVERT_MIN_GRANULE, cs);
        /* -S (design note 13) */
        if (opts && opts->sparse_size_set && opts->sparse_size == 0)
            s.fully_allocate = true;
        for (s.sparse = s.granule; opts && opts->sparse_size_set &&
                                   s.sparse < opts->sparse_size && s.sparse < CONVERT_MAX_GRANULE;)
            s.sparse <<= 1;
    }
    if (s.granule > CONVERT_MAX_GRANULE || !IC_IS_POW2(s.granule))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: cluster size %" PRIu64 " is not supported for conversion",
                            dst->filename, s.granule);
    s.buf_size = (size_t)IC_MAX((uint64_t)CONVERT_BUF_SIZE, s.granule);
    s.stripe = IC_MAX(CONVERT_STRIPE, s.granule); /* powers of two: a multiple */
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    /* write-behind when the target's backend takes lent buffers (only
     * plain copies: -c writes from the compression buffers) */
    if (!s.compress) {
        const struct ic_io_lender lender = { lend_hold, lend_release, &s };
        int depth = ic_io_lend(dst->file, &lender);
        if (depth > 0) {
            s.lent = true;
            s.nslots = CONVERT_READERS + (unsigned)IC_MIN(depth, CONVERT_BEHIND_MAX) + 1;
        }
    }
    int ret = 0;
    unsigned nbuf = 0;
    for (; nbuf < s.nslots; nbuf++) {
        void *mem = NULL;
        if (posix_memalign(&mem, CONVERT_ALIGN, s.buf_size) != 0) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM,
                               "%s: out of memory for the copy buffers", dst->filename);
            goto out_free;
        }
        s.slots[nbuf].buf = mem;
    }
    if (s.compress && ic_image_can_precompress(dst))
        s.pool = pool_create(dst, (size_t)s.granule, s.buf_size);
    progress(&s, 0);
    struct reader readers[CONVERT_READERS];
    unsigned started = 0;
    readers[0] = (struct reader){ .s = &s, .src = src };
    ret = start_reader(&s, &readers[0], errp);
    if (ret == 0)
        started = 1;
    ic_error *werr = NULL;
    int wret = 0;
    if (ret == 0)
        wret = write_all(&s, readers, &started, &werr);
    pthread_mutex_lock(&s.lock);
    s.stop = true; /* releases readers waiting for a slot */
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(readers[i].thread, NULL);
        if (readers[i].owned)
            ic_image_close(readers[i].src);
    }
    /* The first real failure wins: a side that only saw the other stop
     * reports -ECANCELED and has no error object. */
    if (ret < 0) {
        ic_error_free(werr);
    } else if (s.read_ret < 0) {
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
        ret = ic_image_flush_final(dst, errp);
    pool_destroy(s.pool);
out_free:
    if (s.lent) {
        /* every lent buffer back before they are freed; a write error the
         * flush did not see (there was none on a failure path) is kept */
        int lret = ic_io_lend(dst->file, NULL);
        if (ret == 0 && lret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-lret), -lret,
                               "%s: writing the target failed: %s", dst->filename,
                               strerror(-lret));
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    for (unsigned i = 0; i < nbuf; i++)
        free(s.slots[i].buf);
    return ret;
}

int ic_image_copy(ic_image *dst, ic_image *src, const ic_convert_options *opts, ic_error **errp)
{
    return copy_image(dst, src, NULL, NULL, opts, errp);
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

/* Opens the source chain read-only, with the snapshot view if asked. */
static int open_source(ic_image **out, const char *path, const ic_convert_options *opts,
                       ic_error **errp)
{
    ic_open_options so = IC_OPEN_OPTIONS_INIT;
    so.format = opts->src_format;
    so.flags = opts->force_share ? IC_OPEN_FORCE_SHARE : 0;
    so.cache = opts->src_cache;
    int ret = ic_image_open(out, path, &so, errp);
    if (ret < 0)
        return ret;
    if (opts->snapshot)
        ret = ic_image_snapshot_load_tmp(*out, opts->snapshot, NULL, true, errp);
    else if (opts->snapshot_id || opts->snapshot_name)
        ret = ic_image_snapshot_load_tmp(*out, opts->snapshot_id, opts->snapshot_name, false,
                                         errp);
    if (ret < 0) {
        ic_image_close(*out);
        *out = NULL;
    }
    return ret;
}

struct more_sources {
    const char *path;
    const ic_convert_options *opts;
    uint64_t size;
};

/* source_opener for ic_image_convert: the same file, options and snapshot
 * view; a source whose size changed meanwhile is refused. */
static int open_more_source(ic_image **out, void *payload, ic_error **errp)
{
    const struct more_sources *ms = payload;
    int ret = open_source(out, ms->path, ms->opts, errp);
    if (ret == 0 && ic_image_size(*out) != ms->size) {
        ic_image_close(*out);
        *out = NULL;
        ret = ic_error_set(errp, IC_ERR_IO, EAGAIN, "%s: changed while being converted",
                           ms->path);
    }
    return ret;
}

static bool format_compresses(const char *fmt)
{
    const struct ic_driver *drv = ic_driver_find(fmt);
    return drv && ic_driver_can_compress(drv);
}

/* The options of any version as the current struct (a version 1 struct
 * ends before the cache fields; its `direct` meant -t none). */
static int convert_options(ic_convert_options *o, const ic_convert_options *opts, ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    *o = defaults;
    if (!opts)
        return 0;
    if (opts->version < 1 || opts->version > IC_CONVERT_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_image_convert: unknown options version %u", opts->version);
    memcpy(o, opts, opts->version >= 3   ? sizeof(*o)
                    : opts->version == 2 ? offsetof(ic_convert_options, rate_limit)
                                         : offsetof(ic_convert_options, cache));
    if (opts->version < 2 && opts->direct)
        o->cache = IC_CACHE_NONE;
    o->version = IC_CONVERT_OPTIONS_VERSION;
    return 0;
}

/* -n (design note 11): the existing target must hold the source, and
 * reads as zeroes over it before the copy, which then skips zero runs as
 * for a new image. */
static int convert_prepare_existing(ic_image *dst, uint64_t size, ic_error **errp)
{
    if (ic_image_size(dst) < size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: output file is smaller than "
                            "input file", ic_image_filename(dst));
    return ic_image_pwrite_zeroes(dst, 0, size, IC_ZERO_MAY_UNMAP, errp);
}

int ic_image_convert(const char *src_path, const char *dst_path, const ic_convert_options *vopts,
                     ic_error **errp)
{
    ic_convert_options ocur;
    int ret = convert_options(&ocur, vopts, errp);
    if (ret < 0)
        return ret;
    const ic_convert_options *opts = &ocur;
    if (!src_path || !*src_path || !dst_path || !*dst_path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_image_convert: no file name given");
    const char *out_fmt = opts->out_format ? opts->out_format : "raw";
    if (!ic_driver_find(out_fmt))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown output format '%s'",
                            dst_path, out_fmt);
    if (opts->compress && !format_compresses(out_fmt))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support compression (-c)", dst_path, out_fmt);
    if (opts->no_create && opts->options)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: -o has no effect when skipping image creation", dst_path);
    if (opts->backing && !opts->no_create && !opts->backing_format)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Use of backing file requires explicit backing format", dst_path);
    if (opts->backing && ic_driver_find(out_fmt)->headerless)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: Backing file not supported "
                            "for file format '%s'", dst_path, out_fmt);
    if (opts->backing && opts->compress)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: -c with -B is not "
                            "supported", dst_path);
    ret = refuse_backing_option(opts->options, dst_path, errp);
    if (ret < 0)
        return ret;

    ic_image *src = NULL;
    ret = open_source(&src, src_path, opts, errp);
    if (ret < 0)
        return ret;
    if ((ret = check_not_source(src, dst_path, errp)) < 0)
        goto out_src;

    bool existed = ic_io_file_exists(dst_path);
    if (!opts->no_create) {
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.format = out_fmt;
        co.size = ic_image_size(src);
        co.size_set = true;
        co.options = opts->options;
        co.backing_file = opts->backing;
        co.backing_format = opts->backing_format;
        ret = ic_image_create(dst_path, &co, errp);
        if (ret < 0)
            goto out_src;
    }

    ic_image *dst = NULL;
    ic_open_options dop = IC_OPEN_OPTIONS_INIT;
    dop.format = out_fmt;
    /* -n: an existing target keeps its chain, so its zero writes hide it */
    dop.flags = IC_OPEN_RDWR | IC_OPEN_STREAM |
                (opts->no_create || opts->backing ? 0 : IC_OPEN_NO_BACKING);
    /* design note 6: -c keeps the default target in the page cache */
    dop.cache = opts->compress && opts->cache == IC_CACHE_DEFAULT ? IC_CACHE_WRITEBACK
                                                                  : opts->cache;
    ret = ic_image_open(&dst, dst_path, &dop, errp);
    if (ret == 0 && opts->backing) {
        /* design note 12 */
        ret = ic_convert_top_into_overlay(src, dst, opts, errp);
        if (ret == 0)
            ret = ic_image_flush_final(dst, errp);
        int cret = ic_image_close(dst);
        if (ret == 0 && cret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret,
                               "%s: closing the target failed: %s", dst_path, strerror(-cret));
        dst = NULL;
    } else if (ret == 0 && opts->no_create) {
        ret = convert_prepare_existing(dst, ic_image_size(src), errp);
    }
    if (ret == 0 && dst) {
        /* more readers open their own handles (design note 9) */
        struct more_sources ms = { src_path, opts, ic_image_size(src) };
        ret = copy_image(dst, src, open_more_source, &ms, opts, errp);
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
