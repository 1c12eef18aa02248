/*
 * chain-copy.c - ic_copy_above_base(): commit's bulk copy, with parallel
 * reads and batches of writes in flight.
 *
 * Design notes:
 *  1. What it owns: moving the ranges allocated above the base from the
 *     top's view into the base.  Ordering against the journal and the base
 *     flush stays with chain-commit.c.
 *  2. The caller's thread is the planner and the only writer: it walks
 *     block status on its own chain, writes zero ranges itself, hands data
 *     chunks (at most COPY_SLOT_SIZE each) to the read pipeline
 *     (copy-engine.c, queue mode) and writes the slots the readers filled.  Up to
 *     COPY_READERS reader threads read the slots through their own
 *     handles.
 *  3. Invariants:
 *     a. Every handle is used by one thread only: a reader's chain by its
 *        reader, the caller's chain (top and base) by the caller.
 *     b. Reader handles are opened read-only, without locks (the caller
 *        holds the write locks already; OFD locks of one process conflict),
 *        by the caller before any thread starts or any data goes to the
 *        base, so no reader parses a header while it is being changed.  Readers only read
 *        ranges allocated above the base, so they never read base data.
 *     c. Chunks never overlap, so the writes commute and their order does
 *        not matter; a batch is complete (ic_io_submit waits for all its
 *        requests) before its slots are released for reuse.
 *     d. The first failure stops the planner, the readers finish their
 *        current read and exit; nothing is written after a failure is seen.
 *     e. Memory is bounded: COPY_SLOTS buffers of COPY_SLOT_SIZE plus the
 *        readers' handles, whatever the image size.
 *  4. The ready slots go to the base as one batch (ic_image_pwrite_batch):
 *     a driver with a batch op (raw: one ic_io_submit on its file) keeps
 *     them in flight together, the others write them one after the other.
 *  5. With a custom opener (fault, crash and memory backends in tests) no
 *     extra handle is opened, and when no reader handle or thread can be
 *     had the copy does without: the caller reads the slots itself, in
 *     order, which is the old one-stream copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "copy-engine.h"

/* Bytes per slot: 1 MiB; the batch (COPY_BATCH_MIN slots and more), not
 * the slot, keeps the device busy, and small slots keep commit's peak
 * memory low (bench/bench-chain.sh's commit row reports it). */
#define COPY_SLOT_SIZE ((size_t)1 << 20)
/* Slots in the pipeline: 8 x 1 MiB keeps peak memory well under qemu-img
 * commit's (~25 MiB) while half of them can be written as one batch. */
#define COPY_SLOTS IC_COPY_MAX_SLOTS
/* Reader threads (as convert's CONVERT_READERS). */
#define COPY_READERS IC_COPY_MAX_READERS
/* The writer waits for this many ready slots (or every outstanding one)
 * before writing, so a batch keeps several requests in flight. */
#define COPY_BATCH_MIN 4

/* ic_copy_fill_fn: a reader's context is its handle on the top's chain. */
static int copy_fill(void *ctx, struct ic_copy_slot *s, ic_error **errp)
{
    return ic_image_pread(ctx, s->buf[0], s->len, s->off, errp);
}

/* Opens up to COPY_READERS read-only handles on @top's chain into @imgs;
 * returns how many.  A handle that cannot be opened (descriptor limit,
 * memory) only means fewer readers: with none, the caller reads through
 * its own chain (note 5), which is the same copy. */
static unsigned open_readers(struct ic_image **imgs, struct ic_image *top)
{
    if (top->open_file)
        return 0;
    unsigned n = 0;
    for (; n < COPY_READERS; n++) {
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.format = ic_image_format(top);
        oo.flags = IC_OPEN_NO_LOCK;
        oo.cache = top->cache;
        oo.backing_cache = top->backing_cache;
        ic_image *img = NULL;
        ic_error *err = NULL;
        if (ic_image_open(&img, top->filename, &oo, &err) < 0) {
            ic_error_free(err);
            break;
        }
        if (img->size != top->size) {
            /* Not the chain the caller has open: read through that one. */
            ic_image_close(img);
            break;
        }
        imgs[n] = img;
    }
    return n;
}

/* Writes the @n ready slots @ready into @base. */
static int write_batch(struct ic_image *base, struct ic_copy_slot **ready, unsigned n,
                       struct ic_copy_stats *st, ic_error **errp)
{
    struct ic_io_req reqs[COPY_SLOTS];
    for (unsigned i = 0; i < n; i++)
        reqs[i] = (struct ic_io_req){ .op = IC_IO_REQ_WRITE, .buf = ready[i]->buf[0],
                                      .len = ready[i]->len, .off = ready[i]->off };
    int ret = ic_image_pwrite_batch(base, reqs, n, errp);
    if (ret < 0)
        return ret;
    if (n > st->max_batch)
        st->max_batch = n;
    for (unsigned i = 0; i < n; i++)
        st->data_bytes += ready[i]->len;
    return 0;
}

int ic_copy_above_base(struct ic_image *top, struct ic_image *base, unsigned zero_flags,
                       ic_chain_progress_fn progress, void *payload,
                       struct ic_copy_stats *stats, ic_error **errp)
{
    struct ic_copy_stats st_local;
    struct ic_copy_stats *st = stats ? stats : &st_local;
    memset(st, 0, sizeof(*st));
    struct ic_copy_engine pipe;
    const struct ic_copy_config cfg = { .nslots = COPY_SLOTS, .slot_size = COPY_SLOT_SIZE,
                                        .nbufs = 1, .fill = copy_fill, .inline_ctx = top };
    int ret = ic_copy_init(&pipe, &cfg, errp);
    if (ret < 0)
        return ret;
    struct ic_image *rimg[COPY_READERS];
    unsigned nimg = open_readers(rimg, top);
    /* Handles whose thread did not start stay idle (closed at the end);
     * without any reader the caller reads (note 5). */
    for (unsigned i = 0; i < nimg && ic_copy_add_reader(&pipe, rimg[i], NULL); i++)
        ;
    st->readers = pipe.stats.readers;

    uint64_t size = top->size;
    uint64_t pos = 0;                  /* planned up to here */
    uint64_t run_off = 0, run_len = 0; /* data still to hand to slots */
    if (progress)
        progress(0, size, payload);
    while (ret == 0) {
        /* Plan: hand data chunks to free slots; zero ranges directly. */
        while (ret == 0 && !ic_copy_full(&pipe) && (run_len > 0 || pos < size)) {
            if (run_len == 0) {
                ic_block_status bs;
                ret = ic_image_block_status(top, base, pos, IC_MIN(IC_COPY_STATUS_MAX, size - pos),
                                            &bs, errp);
                if (ret < 0)
                    break;
                /* ALLOCATED: a layer above the base decides the range.
                 * ZERO without ALLOCATED: past the end of a shorter image
                 * above the base, which reads as zeroes (qemu treats that
                 * as allocated). */
                if (bs.flags & (IC_BS_ALLOCATED | IC_BS_ZERO)) {
                    if ((bs.flags & IC_BS_ZERO) && !(bs.flags & IC_BS_DATA)) {
                        ret = ic_image_pwrite_zeroes(base, pos, bs.length, zero_flags, errp);
                        st->zero_bytes += bs.length;
                    } else {
                        run_off = pos;
                        run_len = bs.length;
                    }
                }
                pos += bs.length;
                continue;
            }
            size_t n = (size_t)IC_MIN(run_len, (uint64_t)COPY_SLOT_SIZE);
            ic_copy_queue(&pipe, run_off, n, 0);
            run_off += n;
            run_len -= n;
        }
        if (ret < 0 || ic_copy_empty(&pipe))
            break;
        /* A batch of filled slots (the caller reads when there are no
         * readers), written together. */
        struct ic_copy_slot *ready[IC_COPY_MAX_SLOTS];
        unsigned nready = 0;
        ret = ic_copy_collect(&pipe, ready, &nready, COPY_BATCH_MIN, errp);
        if (ret < 0)
            break;
        ret = write_batch(base, ready, nready, st, errp);
        ic_copy_release(&pipe, ready, nready);
        uint64_t done = ic_copy_done_below(&pipe, run_len > 0 ? run_off : pos);
        if (ret == 0 && progress)
            progress(done, size, payload);
    }
    if (ret == 0 && progress)
        progress(size, size, payload);
    struct ic_io_stats as;
    if (ic_io_get_stats(base->file, &as))
        st->max_in_flight = as.max_in_flight;
    st->fills = pipe.stats.fills;
    st->fills_while_writing = pipe.stats.fills_while_writing;
    st->writes_while_filling = pipe.stats.writes_while_filling;
    ic_copy_fini(&pipe);
    for (unsigned i = 0; i < nimg; i++)
        ic_image_close(rimg[i]);
    return ret;
}
