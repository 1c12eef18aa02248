/*
 * copy-engine.c - reader threads filling slot buffers for one writer (see
 * copy-engine.h for the interface).
 *
 * Design notes:
 *  1. What it owns: the slots, their buffers and states, the reader
 *     threads, the first failure, the lending of slot buffers to the
 *     target's backend, and the statistics.  What is read (the stripe or
 *     fill function and its handles) and what is written belong to the
 *     caller: convert (chain-convert.c), commit (chain-copy.c), rebase
 *     (chain-rebase.c).
 *  2. Slots, every transition under `lock`:
 *       stripes: FREE -> (a reader) FILLING -> READY -> (writer) WRITING
 *       queue:   FREE -> (writer) QUEUED -> (a reader, or the writer
 *                without readers) FILLING -> READY -> (writer) WRITING
 *     then WRITING -> FREE, or -> HELD -> FREE when the target's backend
 *     kept parts of the buffer for write-behind: `holds` counts them, and
 *     the backend's worker that gives back the last one frees the slot.
 *     In queue mode readers take the queued slot with the lowest offset,
 *     so reads go out roughly in order and the kernel's readahead works.
 *  3. Invariants:
 *     a. A reader's context (its image handles) is used by that reader
 *        only; the writer's context and the target by the writer only.
 *     b. The first failure is kept with its error object and stops the
 *        copy; the others notice `stop` at their next wait and report
 *        -ECANCELED, which never replaces the first failure.
 *     c. A slot is refilled only when it is FREE: neither the writer nor
 *        the backend still reads its buffer.
 *     d. Memory is bounded: nslots x nbufs buffers, whatever the image.
 *     e. The buffers come from ic_bigbuf_alloc: aligned for O_DIRECT, and
 *        on huge pages where the kernel has them, so a slot's direct write
 *        reaches the device as few large requests (src/util/bigbuf.c).
 *  4. `writing` counts the slots in WRITING or HELD, `filling` those in
 *     FILLING.  A fill that begins while a write is in flight, or a write
 *     that begins while a fill is, is a read overlapping a write, which the
 *     statistics count: the engine exists for that overlap.
 *  5. Stripe mode ends when every reader is done and no slot is FILLING or
 *     READY.  Skipped runs need no slot: readers add them to `skipped`,
 *     which the writer turns into progress when it wakes; readers wake it
 *     at least every COPY_SKIP_WAKE skipped bytes so progress moves over a
 *     long sparse stretch.
 *  6. In queue mode the writer takes every ready slot at once: when the
 *     readers are slower than the writer (a cold source), the slots still
 *     filling are read while the ready ones are written; when they are
 *     faster, everything is ready by then and there is nothing to overlap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "copy-engine.h"
#include "util/bigbuf.h"
#include "util/error.h"
#include "util/overflow.h"

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_FILLING, SLOT_READY, SLOT_WRITING, SLOT_HELD };

/* Skipped bytes after which a reader wakes the writer to report them. */
#define COPY_SKIP_WAKE ((uint64_t)1 << 30)

/* ---- write-behind lender ---------------------------------------------- */

/* The slot whose buffers hold [p, p+len), or NULL (the target driver's own
 * buffers, which it may free as soon as its write returns). */
static struct ic_copy_slot *slot_of(struct ic_copy_engine *e, const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    size_t sz = e->cfg.slot_size;
    for (unsigned i = 0; i < e->nslots; i++) {
        for (unsigned b = 0; b < e->cfg.nbufs; b++) {
            uintptr_t base = (uintptr_t)e->slots[i].buf[b];
            if (a >= base && a - base <= sz && len <= sz - (a - base))
                return &e->slots[i];
        }
    }
    return NULL;
}

static bool lend_hold(void *payload, const void *buf, size_t len)
{
    struct ic_copy_engine *e = payload;
    struct ic_copy_slot *s = slot_of(e, buf, len);
    if (!s)
        return false;
    pthread_mutex_lock(&e->lock);
    bool ok = s->state == SLOT_WRITING;
    if (ok)
        s->holds++;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

static void lend_release(void *payload, const void *buf)
{
    struct ic_copy_engine *e = payload;
    struct ic_copy_slot *s = slot_of(e, buf, 1);
    if (!s)
        return;
    pthread_mutex_lock(&e->lock);
    if (s->holds && --s->holds == 0 && s->state == SLOT_HELD) {
        s->state = SLOT_FREE;
        e->writing--;
        pthread_cond_broadcast(&e->cond);
    }
    pthread_mutex_unlock(&e->lock);
}

/* ---- set-up and tear-down ------------------------------------------------- */

static void free_buffers(struct ic_copy_engine *e)
{
    for (unsigned i = 0; i < IC_COPY_MAX_SLOTS; i++)
        for (unsigned b = 0; b < IC_COPY_MAX_BUFS; b++) {
            ic_bigbuf_free(e->slots[i].buf[b], e->cfg.slot_size);
            e->slots[i].buf[b] = NULL;
        }
}

int ic_copy_init(struct ic_copy_engine *e, const struct ic_copy_config *cfg, ic_error **errp)
{
    memset(e, 0, sizeof(*e));
    e->cfg = *cfg;
    e->nslots = cfg->nslots;
    if (cfg->nbufs == 0 || cfg->nbufs > IC_COPY_MAX_BUFS || !cfg->slot_size ||
        !cfg->fill == !cfg->stripe)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "copy engine: bad geometry");
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->live = true;
    if (cfg->lend_to) {
        const struct ic_io_lender lender = { lend_hold, lend_release, e };
        int depth = ic_io_lend(cfg->lend_to, &lender);
        if (depth > 0) {
            e->lent = true;
            e->nslots = cfg->lend_base_slots + (unsigned)IC_MIN((unsigned)depth, cfg->lend_max);
        }
    }
    if (e->nslots == 0 || e->nslots > IC_COPY_MAX_SLOTS) {
        ic_copy_fini(e);
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "copy engine: bad geometry");
    }
    for (unsigned i = 0; i < e->nslots; i++) {
        for (unsigned b = 0; b < cfg->nbufs; b++) {
            void *mem = ic_bigbuf_alloc(cfg->slot_size); /* src/util/bigbuf.c note 1 */
            if (!mem) {
                ic_copy_fini(e);
                return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM,
                                    "out of memory for the copy buffers");
            }
            e->slots[i].buf[b] = mem;
        }
    }
    e->stats.slots = e->nslots;
    e->stats.lent = e->lent;
    return 0;
}

/* Under lock: records the first failure (and stops the copy). */
static void set_error(struct ic_copy_engine *e, int ret, ic_error *err)
{
    if (ret == -ECANCELED || e->err_ret < 0) {
        ic_error_free(err);
        return;
    }
    e->err_ret = ret;
    if (!err)
        ic_error_set(&err, ic_error_kind_from_errno(-ret), -ret, "read failed: %s",
                     strerror(-ret));
    e->err = err;
    e->stop = true;
    pthread_cond_broadcast(&e->cond);
}

/* Under lock: @s starts filling (note 4). */
static void begin_fill(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    s->state = SLOT_FILLING;
    e->filling++;
    e->stats.fills++;
    if (e->writing)
        e->stats.fills_while_writing++;
}

/* Under lock: @s is handed to the writer (note 4). */
static void begin_write(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    s->state = SLOT_WRITING;
    e->writing++;
    e->stats.writes++;
    if (e->filling)
        e->stats.writes_while_filling++;
}

/* Queue mode: fills @s with @ctx; takes and returns with the lock held. */
static void fill_slot(struct ic_copy_engine *e, void *ctx, struct ic_copy_slot *s)
{
    begin_fill(e, s);
    pthread_mutex_unlock(&e->lock);
    ic_error *err = NULL;
    int ret = e->cfg.fill(ctx, s, &err);
    pthread_mutex_lock(&e->lock);
    if (ret < 0)
        set_error(e, ret, err);
    else
        ic_error_free(err);
    s->state = SLOT_READY;
    e->filling--;
    pthread_cond_broadcast(&e->cond);
}

/* Under lock: the queued slot with the lowest offset, or NULL. */
static struct ic_copy_slot *next_queued(struct ic_copy_engine *e)
{
    struct ic_copy_slot *best = NULL;
    for (unsigned i = 0; i < e->nslots; i++)
        if (e->slots[i].state == SLOT_QUEUED && (!best || e->slots[i].off < best->off))
            best = &e->slots[i];
    return best;
}

static void queue_reader(struct ic_copy_reader *r)
{
    struct ic_copy_engine *e = r->e;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct ic_copy_slot *s = e->stop ? NULL : next_queued(e);
        if (s) {
            fill_slot(e, r->ctx, s);
            continue;
        }
        if (e->stop)
            break;
        pthread_cond_wait(&e->cond, &e->lock);
    }
    pthread_mutex_unlock(&e->lock);
}

static void stripe_reader(struct ic_copy_reader *r)
{
    struct ic_copy_engine *e = r->e;
    uint64_t size = e->cfg.size, stripe = e->cfg.stripe_size;
    ic_error *err = NULL;
    int ret = 0;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        uint64_t off = e->next_stripe;
        bool stop = e->stop;
        if (off < size)
            e->next_stripe = off + IC_MIN(stripe, size - off);
        pthread_mutex_unlock(&e->lock);
        if (stop || off >= size)
            break;
        ret = e->cfg.stripe(e, r->ctx, off, off + IC_MIN(stripe, size - off), &err);
        if (ret < 0)
            break;
    }
    pthread_mutex_lock(&e->lock);
    if (ret < 0)
        set_error(e, ret, err);
    else
        ic_error_free(err);
    e->readers_done++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void *reader_main(void *opaque)
{
    struct ic_copy_reader *r = opaque;
    if (r->e->cfg.stripe)
        stripe_reader(r);
    else
        queue_reader(r);
    return NULL;
}

bool ic_copy_add_reader(struct ic_copy_engine *e, void *ctx, ic_error **errp)
{
    pthread_mutex_lock(&e->lock);
    unsigned n = e->nreaders;
    pthread_mutex_unlock(&e->lock);
    if (n == IC_COPY_MAX_READERS)
        return false;
    struct ic_copy_reader *r = &e->readers[n];
    r->e = e;
    r->ctx = ctx;
    /* counted before it runs, so the writer never sees every reader done
     * while this one has not started */
    pthread_mutex_lock(&e->lock);
    e->nreaders++;
    pthread_mutex_unlock(&e->lock);
    int terr = pthread_create(&r->thread, NULL, reader_main, r);
    if (terr != 0) {
        pthread_mutex_lock(&e->lock);
        e->nreaders--;
        pthread_mutex_unlock(&e->lock);
        ic_error_set(errp, IC_ERR_NOMEM, terr, "cannot start a reader thread: %s",
                     strerror(terr));
        return false;
    }
    e->stats.readers = n + 1;
    return true;
}

bool ic_copy_readers_busy(struct ic_copy_engine *e)
{
    pthread_mutex_lock(&e->lock);
    bool busy = e->readers_done < e->nreaders;
    pthread_mutex_unlock(&e->lock);
    return busy;
}

void ic_copy_stop(struct ic_copy_engine *e)
{
    pthread_mutex_lock(&e->lock);
    e->stop = true;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

int ic_copy_take_error(struct ic_copy_engine *e, ic_error **errp)
{
    pthread_mutex_lock(&e->lock);
    int ret = e->err_ret;
    ic_error *err = e->err;
    e->err = NULL;
    e->err_ret = 0;
    pthread_mutex_unlock(&e->lock);
    if (ret < 0)
        ic_error_propagate(errp, err);
    else
        ic_error_free(err);
    return ret;
}

int ic_copy_fini(struct ic_copy_engine *e)
{
    if (!e->live)
        return 0; /* never set up, or already torn down */
    ic_copy_stop(e);
    for (unsigned i = 0; i < e->nreaders; i++)
        pthread_join(e->readers[i].thread, NULL);
    e->nreaders = 0;
    int ret = 0;
    if (e->lent) {
        /* every lent buffer back before they are freed */
        ret = ic_io_lend(e->cfg.lend_to, NULL);
        e->lent = false;
    }
    e->cfg.lend_to = NULL;
    free_buffers(e);
    ic_error_free(e->err);
    e->err = NULL;
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    e->live = false;
    return ret < 0 ? ret : 0;
}

/* ---- stripe mode ----------------------------------------------------------- */

struct ic_copy_slot *ic_copy_claim(struct ic_copy_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct ic_copy_slot *s = NULL;
    while (!e->stop) {
        for (unsigned i = 0; i < e->nslots && !s; i++)
            if (e->slots[i].state == SLOT_FREE)
                s = &e->slots[i];
        if (s)
            break;
        pthread_cond_wait(&e->cond, &e->lock);
    }
    if (s)
        begin_fill(e, s);
    pthread_mutex_unlock(&e->lock);
    return s;
}

/* Ends a fill in stripe mode. */
static void slot_set(struct ic_copy_engine *e, struct ic_copy_slot *s, int state)
{
    pthread_mutex_lock(&e->lock);
    s->state = state;
    e->filling--;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

void ic_copy_ready(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    slot_set(e, s, SLOT_READY);
}

void ic_copy_unclaim(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    slot_set(e, s, SLOT_FREE);
}

void ic_copy_skip(struct ic_copy_engine *e, uint64_t len)
{
    pthread_mutex_lock(&e->lock);
    e->skipped += len;
    if (e->skipped - e->skip_woken >= COPY_SKIP_WAKE) {
        e->skip_woken = e->skipped;
        pthread_cond_broadcast(&e->cond);
    }
    pthread_mutex_unlock(&e->lock);
}

void ic_copy_extend_stripe(struct ic_copy_engine *e, uint64_t *stripe_end, uint64_t end)
{
    uint64_t size = e->cfg.size;
    uint64_t to = end == size ? end : end - end % e->cfg.stripe_size;
    pthread_mutex_lock(&e->lock);
    if (e->next_stripe == *stripe_end && to > *stripe_end) {
        e->next_stripe = to;
        *stripe_end = to;
    }
    pthread_mutex_unlock(&e->lock);
}

static void progress(struct ic_copy_engine *e)
{
    if (e->cfg.progress)
        e->cfg.progress(e->done, e->cfg.size, e->cfg.payload);
}

int ic_copy_next(struct ic_copy_engine *e, struct ic_copy_slot **out)
{
    *out = NULL;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        struct ic_copy_slot *s = NULL;
        bool finished = false;
        uint64_t skipped = 0;
        for (;;) {
            bool pending = false;
            for (unsigned i = 0; i < e->nslots && !s; i++) {
                if (e->slots[i].state == SLOT_READY)
                    s = &e->slots[i];
                else if (e->slots[i].state == SLOT_FILLING)
                    pending = true;
            }
            /* with no reader left, `skipped` is final (note 5) */
            finished = !s && e->readers_done == e->nreaders && !pending;
            skipped = e->skipped - e->skip_seen;
            if (s || e->stop || finished || skipped)
                break;
            pthread_cond_wait(&e->cond, &e->lock);
        }
        e->skip_seen = e->skipped;
        bool stopped = e->stop;
        if (s && !stopped)
            begin_write(e, s);
        pthread_mutex_unlock(&e->lock);
        if (stopped)
            return -ECANCELED;
        if (skipped) {
            e->done += skipped;
            progress(e);
        }
        if (s || finished) {
            *out = s;
            return 0;
        }
    }
}

/* Under lock: the writer is done with @s (note 2). */
static void written_locked(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    if (s->holds) {
        s->state = SLOT_HELD;
    } else {
        s->state = SLOT_FREE;
        e->writing--;
    }
    pthread_cond_broadcast(&e->cond);
}

void ic_copy_written(struct ic_copy_engine *e, struct ic_copy_slot *s)
{
    e->done += s->progress;
    progress(e);
    pthread_mutex_lock(&e->lock);
    written_locked(e, s);
    pthread_mutex_unlock(&e->lock);
}

/* ---- queue mode ------------------------------------------------------------ */

void ic_copy_queue(struct ic_copy_engine *e, uint64_t off, size_t len, unsigned flags)
{
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct ic_copy_slot *s = NULL;
        for (unsigned i = 0; i < e->nslots && !s; i++)
            if (e->slots[i].state == SLOT_FREE)
                s = &e->slots[i];
        if (s) {
            s->state = SLOT_QUEUED;
            s->off = off;
            s->len = len;
            s->flags = flags;
            e->outstanding++;
            break;
        }
        /* a released slot the backend still writes from (note 2) */
        pthread_cond_wait(&e->cond, &e->lock);
    }
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

int ic_copy_collect(struct ic_copy_engine *e, struct ic_copy_slot **ready, unsigned *n,
                    unsigned want, ic_error **errp)
{
    *n = 0;
    if (want > e->outstanding)
        want = e->outstanding;
    int ret = 0;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        if (e->err_ret < 0) {
            ret = e->err_ret;
            ic_error_propagate(errp, e->err);
            e->err = NULL;
            break;
        }
        if (e->nreaders == 0) {
            struct ic_copy_slot *s = next_queued(e);
            if (s) {
                fill_slot(e, e->cfg.inline_ctx, s);
                continue;
            }
        }
        *n = 0;
        for (unsigned i = 0; i < e->nslots; i++)
            if (e->slots[i].state == SLOT_READY)
                ready[(*n)++] = &e->slots[i];
        if (*n >= want)
            break;
        pthread_cond_wait(&e->cond, &e->lock);
    }
    if (ret < 0) {
        *n = 0;
    } else {
        for (unsigned i = 0; i < *n; i++)
            begin_write(e, ready[i]);
    }
    pthread_mutex_unlock(&e->lock);
    return ret;
}

void ic_copy_release(struct ic_copy_engine *e, struct ic_copy_slot **ready, unsigned n)
{
    pthread_mutex_lock(&e->lock);
    for (unsigned i = 0; i < n; i++)
        written_locked(e, ready[i]);
    e->outstanding -= n;
    pthread_mutex_unlock(&e->lock);
}

uint64_t ic_copy_done_below(struct ic_copy_engine *e, uint64_t planned)
{
    uint64_t done = planned;
    pthread_mutex_lock(&e->lock);
    for (unsigned i = 0; i < e->nslots; i++)
        if (e->slots[i].state != SLOT_FREE && e->slots[i].off < done)
            done = e->slots[i].off;
    pthread_mutex_unlock(&e->lock);
    return done;
}
