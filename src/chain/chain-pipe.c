/*
 * chain-pipe.c - reader threads filling slot buffers for one writer (see
 * chain-pipe.h for the interface).
 *
 * Design notes (the pipeline follows chain-convert.c note 9):
 *  1. What it owns: the slots, their buffers and states, the reader
 *     threads and the first read failure.  What is read (the fill
 *     function and its handles) and what is done with it belong to the
 *     caller.
 *  2. Slots: FREE -> (caller) QUEUED -> (a reader, or the caller without
 *     readers) FILLING -> READY -> (caller, after collect and its writes)
 *     FREE.  Every transition is made under `lock`.  Readers take the
 *     queued slot with the lowest offset, so reads go out roughly in
 *     order and the kernel's readahead keeps working.
 *  3. Invariants:
 *     a. A reader's context (its image handles) is used by that reader
 *        only; the caller's context only by the caller's thread.
 *     b. The first failure is kept with its error object; collect returns
 *        it and the caller stops queueing.  Readers finish the fill they
 *        are in and exit at ic_pipe_fini.
 *     c. Memory is bounded: nslots x nbufs buffers, whatever the image.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chain-pipe.h"
#include "util/error.h"

enum { SLOT_FREE, SLOT_QUEUED, SLOT_FILLING, SLOT_READY };

int ic_pipe_init(struct ic_pipe *p, unsigned nslots, size_t slot_size, unsigned nbufs,
                 ic_pipe_fill_fn fill, void *inline_ctx, ic_error **errp)
{
    memset(p, 0, sizeof(*p));
    if (nslots == 0 || nslots > IC_PIPE_MAX_SLOTS || nbufs == 0 || nbufs > IC_PIPE_MAX_BUFS)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "copy pipeline: bad geometry");
    p->nslots = nslots;
    p->nbufs = nbufs;
    p->fill = fill;
    p->inline_ctx = inline_ctx;
    for (unsigned i = 0; i < nslots; i++) {
        for (unsigned b = 0; b < nbufs; b++) {
            void *mem = NULL;
            if (posix_memalign(&mem, IC_PIPE_ALIGN, slot_size) != 0) {
                for (unsigned j = 0; j <= i; j++)
                    for (unsigned k = 0; k < nbufs; k++)
                        free(p->slots[j].buf[k]);
                memset(p, 0, sizeof(*p));
                return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM,
                                    "out of memory for the copy buffers");
            }
            p->slots[i].buf[b] = mem;
        }
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    return 0;
}

/* Under lock: the queued slot with the lowest offset, or NULL. */
static struct ic_pipe_slot *next_queued(struct ic_pipe *p)
{
    struct ic_pipe_slot *best = NULL;
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].state == SLOT_QUEUED && (!best || p->slots[i].off < best->off))
            best = &p->slots[i];
    return best;
}

/* Fills @s with @ctx; takes and returns with the lock held. */
static void fill_slot(struct ic_pipe *p, void *ctx, struct ic_pipe_slot *s)
{
    s->state = SLOT_FILLING;
    pthread_mutex_unlock(&p->lock);
    ic_error *err = NULL;
    int ret = p->fill(ctx, s, &err);
    pthread_mutex_lock(&p->lock);
    s->ret = ret;
    if (ret < 0 && !p->read_err && err)
        p->read_err = err;
    else if (ret < 0 && !p->read_err)
        ic_error_set(&p->read_err, ic_error_kind_from_errno(-ret), -ret, "read failed: %s",
                     strerror(-ret));
    else
        ic_error_free(err);
    s->state = SLOT_READY;
    pthread_cond_broadcast(&p->cond);
}

static void *reader_main(void *opaque)
{
    struct ic_pipe_reader *r = opaque;
    struct ic_pipe *p = r->pipe;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct ic_pipe_slot *s = p->quit ? NULL : next_queued(p);
        if (s) {
            fill_slot(p, r->ctx, s);
            continue;
        }
        if (p->quit)
            break;
        pthread_cond_wait(&p->cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

bool ic_pipe_add_reader(struct ic_pipe *p, void *ctx)
{
    if (p->nreaders == IC_PIPE_MAX_READERS)
        return false;
    struct ic_pipe_reader *r = &p->readers[p->nreaders];
    r->pipe = p;
    r->ctx = ctx;
    if (pthread_create(&r->thread, NULL, reader_main, r) != 0)
        return false;
    p->nreaders++;
    return true;
}

void ic_pipe_queue(struct ic_pipe *p, uint64_t off, size_t len, unsigned flags)
{
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < p->nslots; i++) {
        struct ic_pipe_slot *s = &p->slots[i];
        if (s->state == SLOT_FREE) {
            s->state = SLOT_QUEUED;
            s->off = off;
            s->len = len;
            s->flags = flags;
            s->ret = 0;
            p->outstanding++;
            break;
        }
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int ic_pipe_collect(struct ic_pipe *p, struct ic_pipe_slot **ready, unsigned *n, unsigned want,
                    ic_error **errp)
{
    *n = 0;
    if (want > p->outstanding)
        want = p->outstanding;
    int ret = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->read_err) {
            ret = ic_error_errno(p->read_err) ? -ic_error_errno(p->read_err) : -EIO;
            ic_error_propagate(errp, p->read_err);
            p->read_err = NULL;
            break;
        }
        if (p->nreaders == 0) {
            struct ic_pipe_slot *s = next_queued(p);
            if (s) {
                fill_slot(p, p->inline_ctx, s);
                continue;
            }
        }
        *n = 0;
        for (unsigned i = 0; i < p->nslots; i++)
            if (p->slots[i].state == SLOT_READY)
                ready[(*n)++] = &p->slots[i];
        if (*n >= want)
            break;
        pthread_cond_wait(&p->cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    if (ret < 0)
        *n = 0;
    return ret;
}

void ic_pipe_release(struct ic_pipe *p, struct ic_pipe_slot **ready, unsigned n)
{
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < n; i++)
        ready[i]->state = SLOT_FREE;
    p->outstanding -= n;
    pthread_mutex_unlock(&p->lock);
}

uint64_t ic_pipe_done_below(struct ic_pipe *p, uint64_t planned)
{
    uint64_t done = planned;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].state != SLOT_FREE && p->slots[i].off < done)
            done = p->slots[i].off;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void ic_pipe_fini(struct ic_pipe *p)
{
    if (p->nslots == 0)
        return; /* init failed: nothing was set up */
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nreaders; i++)
        pthread_join(p->readers[i].thread, NULL);
    for (unsigned i = 0; i < p->nslots; i++)
        for (unsigned b = 0; b < p->nbufs; b++)
            free(p->slots[i].buf[b]);
    ic_error_free(p->read_err);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    p->nslots = 0;
}
