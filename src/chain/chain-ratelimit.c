/*
 * chain-ratelimit.c - the bandwidth limit of `commit -r` and `convert -r`
 * (qemu's util/throttle ratelimit: slices of 100 ms).
 *
 * Design notes:
 *  1. Accounting is per slice: a slice's quota is rate * 100 ms (at least
 *     one byte).  Bytes are counted when they are reported; while the
 *     count stays under the quota nothing waits.  Once over, the slice is
 *     stretched to the time the bytes counted need at the rate and the
 *     caller waits until its end, so the average stays at the rate however
 *     large each chunk is.  A new slice starts when the clock passes the
 *     end of the current one, so idle time is not banked beyond a slice.
 *  2. The clock and the sleep are injectable (a fake clock in the unit
 *     tests); the defaults are CLOCK_MONOTONIC and nanosleep.
 *  3. Only what is copied counts (qemu's commit counts the ranges
 *     allocated above the base, not the whole disk): convert accounts each
 *     slot it writes (chain-convert.c) and each range -B copies
 *     (chain-convert-backing.c); commit's engine (chain-copy.c) is not
 *     changed: the limit hooks into its progress callback
 *     (ic_ratelimit_progress_cb), which it calls after each batch, and
 *     counts what its statistics say was written since; the wait there
 *     holds the engine back.  The caller's own progress callback is still
 *     called.
 *  4. Arithmetic saturates: a huge rate or byte count never wraps.
 *  5. One limiter is used by one thread: the engines account from a
 *     single thread (chain-copy.c's caller loop, chain-convert.c's
 *     writer).
 */
#include <errno.h>
#include <time.h>

#include "chain-ratelimit.h"
#include "util/overflow.h"

static uint64_t mono_ns(void *payload)
{
    (void)payload;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void mono_sleep(uint64_t ns, void *payload)
{
    (void)payload;
    struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return ic_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

void ic_ratelimit_init(struct ic_ratelimit *rl, uint64_t rate, ic_clock_fn clock,
                       ic_sleep_fn sleep, void *payload)
{
    rl->rate = rate;
    rl->slice_ns = IC_RATELIMIT_SLICE_NS;
    /* rate * 0.1 s, computed without overflow */
    rl->slice_quota = rate / 1000000000ull * rl->slice_ns +
                      rate % 1000000000ull * rl->slice_ns / 1000000000ull;
    if (rl->slice_quota == 0)
        rl->slice_quota = 1;
    rl->clock = clock ? clock : mono_ns;
    rl->sleep = sleep ? sleep : mono_sleep;
    rl->payload = payload;
    rl->slice_start = rl->slice_end = 0;
    rl->dispatched = 0;
}

uint64_t ic_ratelimit_delay(struct ic_ratelimit *rl, uint64_t n)
{
    if (rl->rate == 0)
        return 0;
    uint64_t now = rl->clock(rl->payload);
    if (rl->slice_end < now) {
        rl->slice_start = now;
        rl->slice_end = sat_add(now, rl->slice_ns);
        rl->dispatched = 0;
    }
    rl->dispatched = sat_add(rl->dispatched, n);
    if (rl->dispatched < rl->slice_quota)
        return 0;
    /* the time the counted bytes need at the rate, in ns (128-bit: no
     * overflow before the saturation) */
    __extension__ typedef unsigned __int128 u128;
    u128 need = (u128)rl->dispatched * 1000000000u / rl->rate;
    uint64_t span = need > UINT64_MAX ? UINT64_MAX : (uint64_t)need;
    rl->slice_end = sat_add(rl->slice_start, span);
    return rl->slice_end > now ? rl->slice_end - now : 0;
}

void ic_ratelimit_account(struct ic_ratelimit *rl, uint64_t n)
{
    uint64_t d = ic_ratelimit_delay(rl, n);
    if (d)
        rl->sleep(d, rl->payload);
}

void ic_ratelimit_progress_init(struct ic_ratelimit_progress *p, uint64_t rate,
                                const uint64_t *count_a, const uint64_t *count_b,
                                ic_progress_fn progress, void *payload)
{
    ic_ratelimit_init(&p->rl, rate, NULL, NULL, NULL);
    p->count_a = count_a;
    p->count_b = count_b;
    p->last = 0;
    p->progress = progress;
    p->payload = payload;
}

void ic_ratelimit_progress_cb(uint64_t done, uint64_t total, void *payload)
{
    struct ic_ratelimit_progress *p = payload;
    uint64_t now = sat_add(*p->count_a, *p->count_b);
    if (now > p->last) {
        ic_ratelimit_account(&p->rl, now - p->last);
        p->last = now;
    }
    if (p->progress)
        p->progress(done, total, p->payload);
}
