/*
 * chain-copy.h - the parallel bulk copy of commit (chain-copy.c).
 */
#ifndef IC_CHAIN_CHAIN_COPY_H
#define IC_CHAIN_CHAIN_COPY_H

#include "imgchain/chain-edit.h"
#include "chain.h"

/* Statistics of one copy (for tests and benchmarks). */
struct ic_copy_stats {
    unsigned readers;        /* reader threads used (0: the caller read inline) */
    unsigned max_batch;      /* largest batch of writes handed to the base at once */
    unsigned max_in_flight;  /* the base's aio backend: most requests in flight */
    uint64_t data_bytes;     /* bytes read and written */
    uint64_t zero_bytes;     /* bytes written as zeroes */
    uint64_t fills;          /* slots read by the copy engine */
    uint64_t fills_while_writing; /* of which begun while the base was being written */
    uint64_t writes_while_filling; /* writes begun while a reader was filling */
};

/* Makes every range allocated above @base in @top's view read the same in
 * @base (data ranges copied, zero ranges written as zeroes with
 * @zero_flags).  @base must be open read-write and at least as large as
 * @top.  When @top was opened without a custom opener, reader threads with
 * their own read-only handles on @top's chain read in parallel; a raw base
 * receives batches of writes (ic_io_submit: several in flight on the aio
 * backend).  Does not flush @base.  @stats may be NULL. */
int ic_copy_above_base(struct ic_image *top, struct ic_image *base, unsigned zero_flags,
                       ic_chain_progress_fn progress, void *payload,
                       struct ic_copy_stats *stats, ic_error **errp);

#endif
