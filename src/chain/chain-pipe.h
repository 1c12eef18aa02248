/*
 * chain-pipe.h - reader threads filling slot buffers for one writer: the
 * read side of commit's bulk copy (chain-copy.c) and of rebase's compare
 * (chain-rebase.c).
 *
 * The caller's thread plans and writes: it queues ranges (ic_pipe_queue),
 * collects the slots the readers filled (ic_pipe_collect), writes them
 * and releases them (ic_pipe_release).  Readers call the fill function
 * with their own context (their own image handles); without readers the
 * caller fills the slots itself inside ic_pipe_collect, with its context,
 * which is the same work in one stream.  See chain-pipe.c for the design
 * notes.
 */
#ifndef IC_CHAIN_CHAIN_PIPE_H
#define IC_CHAIN_CHAIN_PIPE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imgchain/error.h"

#define IC_PIPE_MAX_SLOTS 8
#define IC_PIPE_MAX_READERS 3
#define IC_PIPE_MAX_BUFS 2
/* Buffer alignment (O_DIRECT). */
#define IC_PIPE_ALIGN ((size_t)4096)

struct ic_pipe_slot {
    uint64_t off;
    size_t len;
    unsigned flags;                  /* the planner's, for the fill function */
    uint8_t *buf[IC_PIPE_MAX_BUFS];  /* nbufs buffers of slot_size bytes */
    int state;                       /* private (under the pipe's lock) */
    int ret;                         /* private: the fill's result */
};

/* Reads @s's range into its buffers with the handles of @ctx; 0, or
 * -errno with *errp set. */
typedef int (*ic_pipe_fill_fn)(void *ctx, struct ic_pipe_slot *s, ic_error **errp);

struct ic_pipe_reader {
    struct ic_pipe *pipe;
    void *ctx;
    pthread_t thread;
};

struct ic_pipe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ic_pipe_slot slots[IC_PIPE_MAX_SLOTS];
    unsigned nslots;
    unsigned nbufs;
    ic_pipe_fill_fn fill;
    void *inline_ctx;            /* the caller's context (no readers) */
    struct ic_pipe_reader readers[IC_PIPE_MAX_READERS];
    unsigned nreaders;           /* started threads */
    unsigned outstanding;        /* slots not free (caller's thread only) */
    bool quit;
    ic_error *read_err;          /* first fill failure, under lock */
};

/* Sets up @nslots (<= IC_PIPE_MAX_SLOTS) slots of @nbufs buffers of
 * @slot_size bytes each; no reader yet.  0 or -ENOMEM (then nothing is
 * left to free). */
int ic_pipe_init(struct ic_pipe *p, unsigned nslots, size_t slot_size, unsigned nbufs,
                 ic_pipe_fill_fn fill, void *inline_ctx, ic_error **errp);
/* Starts a reader thread filling slots with @ctx (which the caller keeps
 * and frees after ic_pipe_fini); false when no more can start. */
bool ic_pipe_add_reader(struct ic_pipe *p, void *ctx);
static inline bool ic_pipe_full(const struct ic_pipe *p)
{
    return p->outstanding == p->nslots;
}
static inline bool ic_pipe_empty(const struct ic_pipe *p)
{
    return p->outstanding == 0;
}
/* Queues [off, off+len) (len <= slot_size) with @flags; the pipe must not
 * be full. */
void ic_pipe_queue(struct ic_pipe *p, uint64_t off, size_t len, unsigned flags);
/* Waits until min(@want, outstanding) slots are filled and stores them in
 * @ready (room for IC_PIPE_MAX_SLOTS), *n their number; fills queued
 * slots itself when no reader runs.  0, or the first fill failure. */
int ic_pipe_collect(struct ic_pipe *p, struct ic_pipe_slot **ready, unsigned *n, unsigned want,
                    ic_error **errp);
/* Frees collected slots for new ranges. */
void ic_pipe_release(struct ic_pipe *p, struct ic_pipe_slot **ready, unsigned n);
/* The lowest offset still in the pipe, or @planned when it is empty:
 * everything below is done (for progress). */
uint64_t ic_pipe_done_below(struct ic_pipe *p, uint64_t planned);
/* Stops and joins the readers and frees the buffers. */
void ic_pipe_fini(struct ic_pipe *p);

#endif
