/*
 * rec-io.h - a pass-through I/O backend that records what a driver asks of
 * the file: the write that follows a chosen metadata event, and prefetch
 * hints.  For tests of write granularity and readahead; it can also
 * make every write slow.
 */
#ifndef IC_TEST_REC_IO_H
#define IC_TEST_REC_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "testutil.h"

#define REC_IO_MAX 64

struct rec_io {
    ic_io base;
    ic_io *inner;
    int watch_event;   /* record the write after this IC_EV_* (-1: none) */
    bool armed;
    unsigned nwrites;  /* writes recorded (at most REC_IO_MAX kept) */
    uint64_t write_off[REC_IO_MAX], write_len[REC_IO_MAX];
    unsigned nprefetch; /* prefetch hints (at most REC_IO_MAX kept) */
    uint64_t prefetch_off[REC_IO_MAX], prefetch_len[REC_IO_MAX];
    unsigned write_delay_us; /* every write sleeps this long first (a slow disk) */
    /* writes of at least 2 MiB, and how many of them came from a buffer
     * that starts on a 2 MiB boundary (a huge page: src/util/bigbuf.c) */
    unsigned big_writes, big_writes_aligned;
};

/* Opens @path (POSIX backend, no locks; read-write with @rdwr) wrapped in
 * a recorder watching @watch_event; asserts.  Closing the returned io
 * closes the file and frees the recorder. */
struct rec_io *rec_io_open(const char *path, bool rdwr, int watch_event);
/* Opens an image of @format on @r (no backing chain); asserts. */
ic_image *rec_io_image(struct rec_io *r, const char *format, bool rdwr);

#endif
