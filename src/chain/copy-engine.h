/*
 * copy-engine.h - the copy engine of convert, commit and rebase: reader
 * threads filling slot buffers for one writer thread (copy-engine.c).
 *
 * One engine, two ways to hand it work:
 *  - stripes (convert): each reader claims the next stripe of the guest
 *    range and plans it itself with its own handles (the stripe function),
 *    claiming slots (ic_copy_claim), filling them and marking them ready
 *    (ic_copy_ready), and counting runs it skips (ic_copy_skip); the
 *    writer takes ready slots in any order (ic_copy_next) and hands them
 *    back (ic_copy_written) until every reader is done;
 *  - queue (commit, rebase): the writer plans, queues ranges
 *    (ic_copy_queue), collects the slots the readers filled with the fill
 *    function (ic_copy_collect) and hands them back (ic_copy_release);
 *    without readers the writer fills them itself inside ic_copy_collect.
 * Either way the slots, their buffers, the reader threads, the first
 * failure, write-behind lending of slot buffers to the target's backend
 * and the statistics are the engine's.
 */
#ifndef IC_CHAIN_COPY_ENGINE_H
#define IC_CHAIN_COPY_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imgchain/error.h"
#include "io/io.h"

#define IC_COPY_MAX_SLOTS 8
#define IC_COPY_MAX_READERS 3
#define IC_COPY_MAX_BUFS 2
/* Writer-side planners ask block status for at most this much at once, so
 * progress moves. */
#define IC_COPY_STATUS_MAX ((uint64_t)64 << 20)

struct ic_copy_slot {
    uint64_t off;
    size_t len;
    unsigned flags;                  /* the planner's, for the fill function */
    uint64_t progress;               /* stripes: guest bytes it adds to progress */
    uint8_t *buf[IC_COPY_MAX_BUFS];  /* nbufs buffers of slot_size bytes */
    int state;                       /* private (under the engine's lock) */
    unsigned holds;                  /* private: parts lent to the target's backend */
};

struct ic_copy_engine;

/* Queue mode: reads @s's range into its buffers with the handles of @ctx;
 * 0, or -errno with *errp set. */
typedef int (*ic_copy_fill_fn)(void *ctx, struct ic_copy_slot *s, ic_error **errp);
/* Stripe mode: plans and reads [off, end) with the handles of @ctx. */
typedef int (*ic_copy_stripe_fn)(struct ic_copy_engine *e, void *ctx, uint64_t off,
                                 uint64_t end, ic_error **errp);
typedef void (*ic_copy_progress_fn)(uint64_t done, uint64_t total, void *payload);

/* What the engine saw (tests and benchmarks). */
struct ic_copy_engine_stats {
    unsigned readers;        /* reader threads started (0: the writer read inline) */
    unsigned slots;          /* slot buffers */
    bool lent;               /* slot buffers were lent to the target's backend */
    uint64_t fills;          /* slots filled */
    uint64_t fills_while_writing; /* fills begun while the writer had a write in flight */
    uint64_t writes;         /* slots handed to the writer */
    uint64_t writes_while_filling; /* of which while a reader was filling another */
};

struct ic_copy_config {
    unsigned nslots;         /* <= IC_COPY_MAX_SLOTS */
    size_t slot_size;
    unsigned nbufs;          /* buffers per slot, <= IC_COPY_MAX_BUFS */
    ic_copy_fill_fn fill;    /* queue mode */
    void *inline_ctx;        /* queue mode: the writer's own context */
    ic_copy_stripe_fn stripe; /* stripe mode (then fill is NULL) */
    uint64_t size;           /* stripe mode: guest bytes */
    uint64_t stripe_size;    /* stripe mode: bytes a reader claims at once */
    ic_copy_progress_fn progress; /* stripe mode: called by the writer */
    void *payload;           /* progress's */
    void *job;               /* stripe mode: what the stripe function shares */
    /* Write-behind: when set and the backend takes lent buffers, slot
     * buffers are lent to it and the engine has lend_base_slots plus
     * min(depth, lend_max) slots instead of nslots. */
    ic_io *lend_to;
    unsigned lend_base_slots;
    unsigned lend_max;
};

struct ic_copy_reader {
    struct ic_copy_engine *e;
    void *ctx;
    pthread_t thread;
};

struct ic_copy_engine {
    struct ic_copy_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ic_copy_slot slots[IC_COPY_MAX_SLOTS];
    unsigned nslots;
    struct ic_copy_reader readers[IC_COPY_MAX_READERS];
    unsigned nreaders;           /* started threads (under lock) */
    unsigned readers_done;       /* stripe mode (under lock) */
    unsigned outstanding;        /* queue mode: slots not free (writer only) */
    unsigned writing;            /* slots the writer or the backend still writes */
    unsigned filling;            /* slots being filled */
    uint64_t next_stripe;        /* stripe mode: next unclaimed guest offset */
    uint64_t skipped, skip_woken, skip_seen; /* stripe mode: skipped bytes */
    uint64_t done;               /* stripe mode: progress (writer only) */
    bool live;                   /* set up and not torn down */
    bool stop;
    bool lent;
    int err_ret;                 /* first failure (0 or -errno) */
    ic_error *err;
    struct ic_copy_engine_stats stats;
};

/* Sets up the slots (and lending); no reader yet.  0 or -errno (then
 * nothing is left to free). */
int ic_copy_init(struct ic_copy_engine *e, const struct ic_copy_config *cfg, ic_error **errp);
/* Starts a reader thread with @ctx (which the caller keeps and frees after
 * ic_copy_fini); false when no more can start. */
bool ic_copy_add_reader(struct ic_copy_engine *e, void *ctx, ic_error **errp);
/* Whether a reader is still running (stripe mode). */
bool ic_copy_readers_busy(struct ic_copy_engine *e);

/* ---- stripe mode, reader side ---- */
/* A free slot, now FILLING; NULL when the copy stopped. */
struct ic_copy_slot *ic_copy_claim(struct ic_copy_engine *e);
/* Hands a filled slot to the writer. */
void ic_copy_ready(struct ic_copy_engine *e, struct ic_copy_slot *s);
/* Gives a claimed slot back unfilled. */
void ic_copy_unclaim(struct ic_copy_engine *e, struct ic_copy_slot *s);
/* Counts @len skipped guest bytes as progress. */
void ic_copy_skip(struct ic_copy_engine *e, uint64_t len);
/* A run skipped from inside the stripe [.., *stripe_end) goes on to @end:
 * claims the stripes it covers when nobody took them yet and moves
 * *stripe_end to the last stripe boundary inside it (or the end). */
void ic_copy_extend_stripe(struct ic_copy_engine *e, uint64_t *stripe_end, uint64_t end);

/* ---- stripe mode, writer side ---- */
/* The next ready slot (now WRITING) in *out, or NULL when every reader is
 * done; reports progress of skipped runs.  -ECANCELED after a failure. */
int ic_copy_next(struct ic_copy_engine *e, struct ic_copy_slot **out);
/* The writer is done with @s: free now, or when the backend gives back
 * the last part lent to it; reports its progress. */
void ic_copy_written(struct ic_copy_engine *e, struct ic_copy_slot *s);

/* ---- queue mode (writer's thread) ---- */
static inline bool ic_copy_full(const struct ic_copy_engine *e)
{
    return e->outstanding == e->nslots;
}
static inline bool ic_copy_empty(const struct ic_copy_engine *e)
{
    return e->outstanding == 0;
}
/* Queues [off, off+len) (len <= slot_size) with @flags; not when full. */
void ic_copy_queue(struct ic_copy_engine *e, uint64_t off, size_t len, unsigned flags);
/* Waits until min(@want, outstanding) slots are filled and stores every
 * filled one (now WRITING) in @ready (room for IC_COPY_MAX_SLOTS), *n their
 * number; fills queued slots itself when no reader runs.  0, or the first
 * failure. */
int ic_copy_collect(struct ic_copy_engine *e, struct ic_copy_slot **ready, unsigned *n,
                    unsigned want, ic_error **errp);
/* Frees collected slots for new ranges. */
void ic_copy_release(struct ic_copy_engine *e, struct ic_copy_slot **ready, unsigned n);
/* The lowest offset still in the engine, or @planned when it is empty. */
uint64_t ic_copy_done_below(struct ic_copy_engine *e, uint64_t planned);

/* ---- both ---- */
/* Stops the readers (they finish the fill they are in). */
void ic_copy_stop(struct ic_copy_engine *e);
/* The first reader failure: 0, or -errno with its error moved to *errp. */
int ic_copy_take_error(struct ic_copy_engine *e, ic_error **errp);
/* Joins the readers, takes every lent buffer back and frees the buffers;
 * returns a write-behind failure the backend kept (0 or -errno).  Does
 * nothing on an engine whose ic_copy_init failed or that is torn down. */
int ic_copy_fini(struct ic_copy_engine *e);

#endif
