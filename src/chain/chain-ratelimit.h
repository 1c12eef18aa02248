/*
 * chain-ratelimit.h - the bandwidth limit of commit -r and convert -r
 * (chain-ratelimit.c).
 */
#ifndef IC_CHAIN_CHAIN_RATELIMIT_H
#define IC_CHAIN_CHAIN_RATELIMIT_H

#include <stdint.h>

#include "imgchain/image.h"

/* A monotonic clock in nanoseconds, and a sleep; injectable for tests. */
typedef uint64_t (*ic_clock_fn)(void *payload);
typedef void (*ic_sleep_fn)(uint64_t ns, void *payload);

struct ic_ratelimit {
    uint64_t rate;          /* bytes per second; 0 = unlimited */
    uint64_t slice_ns;      /* accounting period */
    uint64_t slice_quota;   /* bytes per slice (>= 1) */
    uint64_t slice_start;   /* ns */
    uint64_t slice_end;     /* ns; extended while over quota */
    uint64_t dispatched;    /* bytes counted in this slice */
    ic_clock_fn clock;
    ic_sleep_fn sleep;
    void *payload;
};

/* The slice qemu's rate limiter uses: 100 ms. */
#define IC_RATELIMIT_SLICE_NS 100000000ull

/* @clock and @sleep NULL: CLOCK_MONOTONIC and nanosleep. */
void ic_ratelimit_init(struct ic_ratelimit *rl, uint64_t rate, ic_clock_fn clock,
                       ic_sleep_fn sleep, void *payload);
/* Counts @n bytes and returns how long to wait (ns) before the next ones
 * may go, as qemu's ratelimit_calculate_delay: 0 while the slice's quota
 * holds; past it, the slice is stretched to the time the bytes counted
 * in it need at the rate, and the wait is until its end. */
uint64_t ic_ratelimit_delay(struct ic_ratelimit *rl, uint64_t n);
/* ic_ratelimit_delay, then sleeps that long. */
void ic_ratelimit_account(struct ic_ratelimit *rl, uint64_t n);

/* A progress callback that rate-limits on what the counters say was
 * copied since the previous report (the sum of *count_a and *count_b, both
 * maintained by the engine in the thread that reports progress), and
 * passes the report on: for wrapping a copy engine's progress hook. */
struct ic_ratelimit_progress {
    struct ic_ratelimit rl;
    const uint64_t *count_a, *count_b;
    uint64_t last;              /* the sum at the previous report */
    ic_progress_fn progress;    /* the caller's; may be NULL */
    void *payload;
};
void ic_ratelimit_progress_init(struct ic_ratelimit_progress *p, uint64_t rate,
                                const uint64_t *count_a, const uint64_t *count_b,
                                ic_progress_fn progress, void *payload);
void ic_ratelimit_progress_cb(uint64_t done, uint64_t total, void *payload);

#endif
