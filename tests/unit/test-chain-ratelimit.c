/*
 * test-chain-ratelimit.c - the commit/convert rate limiter
 * (src/chain/chain-ratelimit.c) against a fake clock: the sleeps it asks
 * for advance the clock, so the tests measure simulated time only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chain/chain-ratelimit.h"

struct fake {
    uint64_t now;       /* ns */
    uint64_t slept;     /* total ns slept */
    unsigned sleeps;
    uint64_t reported;  /* progress passed on */
    unsigned reports;
};

static uint64_t fake_clock(void *payload)
{
    return ((struct fake *)payload)->now;
}

static void fake_sleep(uint64_t ns, void *payload)
{
    struct fake *f = payload;
    f->now += ns;
    f->slept += ns;
    f->sleeps++;
}

#define MIB (1ull << 20)
#define SEC 1000000000ull

/* Sends @total bytes in @chunk pieces; returns the simulated duration. */
static uint64_t send(struct ic_ratelimit *rl, struct fake *f, uint64_t total, uint64_t chunk)
{
    uint64_t start = f->now;
    for (uint64_t done = 0; done < total; done += chunk)
        ic_ratelimit_account(rl, chunk);
    return f->now - start;
}

static void test_ratelimit__a_transfer_takes_its_size_divided_by_the_rate(void **state)
{
    (void)state;
    struct fake f = { .now = 5 * SEC };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 1 * MIB, fake_clock, fake_sleep, &f);
    uint64_t t = send(&rl, &f, 10 * MIB, 64 * 1024);
    /* 10 MiB at 1 MiB/s: 10 s, less at most the last slice not waited for */
    assert_true(t >= 10 * SEC - IC_RATELIMIT_SLICE_NS);
    assert_true(t <= 10 * SEC);
    assert_true(f.sleeps > 0);
}

static void test_ratelimit__chunks_within_the_slice_quota_do_not_wait(void **state)
{
    (void)state;
    struct fake f = { .now = 1 };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 10 * MIB, fake_clock, fake_sleep, &f);
    /* the quota of one 100 ms slice is 1 MiB */
    assert_int_equal(rl.slice_quota, MIB);
    for (int i = 0; i < 15; i++)
        assert_int_equal(ic_ratelimit_delay(&rl, 64 * 1024), 0);
    /* the 16th chunk reaches the quota: wait for the end of the slice */
    assert_int_equal(ic_ratelimit_delay(&rl, 64 * 1024), IC_RATELIMIT_SLICE_NS);
}

static void test_ratelimit__one_huge_chunk_waits_as_long_as_it_needs(void **state)
{
    (void)state;
    struct fake f = { .now = 100 };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 2 * MIB, fake_clock, fake_sleep, &f);
    /* 8 MiB at 2 MiB/s: 4 s */
    assert_int_equal(ic_ratelimit_delay(&rl, 8 * MIB), 4 * SEC);
}

static void test_ratelimit__idle_time_starts_a_new_slice_without_banking_it(void **state)
{
    (void)state;
    struct fake f = { .now = 0 };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 1 * MIB, fake_clock, fake_sleep, &f);
    ic_ratelimit_account(&rl, 1 * MIB);
    uint64_t after_first = f.now;
    assert_int_equal(after_first, SEC);
    f.now += 60 * SEC; /* a long pause */
    /* the pause is not credited beyond one slice: 1 MiB again takes 1 s */
    uint64_t t0 = f.now;
    ic_ratelimit_account(&rl, 1 * MIB);
    assert_int_equal(f.now - t0, SEC);
}

static void test_ratelimit__rate_zero_never_waits(void **state)
{
    (void)state;
    struct fake f = { 0 };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 0, fake_clock, fake_sleep, &f);
    assert_int_equal(send(&rl, &f, 1ull << 40, 1ull << 30), 0);
    assert_int_equal(f.sleeps, 0);
}

static void test_ratelimit__tiny_rates_and_huge_counts_do_not_wrap(void **state)
{
    (void)state;
    struct fake f = { .now = 7 };
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, 1, fake_clock, fake_sleep, &f);
    assert_int_equal(rl.slice_quota, 1);
    /* 3 bytes at 1 byte/s: 3 s */
    assert_int_equal(ic_ratelimit_delay(&rl, 3), 3 * SEC);
    uint64_t d = ic_ratelimit_delay(&rl, UINT64_MAX);
    assert_true(d > 3 * SEC); /* saturated, not wrapped to something small */
    ic_ratelimit_init(&rl, UINT64_MAX, fake_clock, fake_sleep, &f);
    assert_true(rl.slice_quota > (1ull << 60));
    assert_int_equal(ic_ratelimit_delay(&rl, 1ull << 40), 0);
}

static void pass_on(uint64_t done, uint64_t total, void *payload)
{
    struct fake *f = payload;
    (void)total;
    f->reported = done;
    f->reports++;
}

static void test_ratelimit__the_progress_hook_limits_on_what_the_counters_say_was_copied(
    void **state)
{
    (void)state;
    struct fake f = { .now = 3 };
    uint64_t data = 0, zero = 0;
    struct ic_ratelimit_progress p;
    ic_ratelimit_progress_init(&p, 1 * MIB, &data, &zero, pass_on, &f);
    p.rl.clock = fake_clock;
    p.rl.sleep = fake_sleep;
    p.rl.payload = &f;
    uint64_t total = 1024 * MIB; /* a large disk ... */
    ic_ratelimit_progress_cb(0, total, &p);
    /* ... of which 3 MiB of data and 1 MiB of zeroes are written */
    for (int i = 0; i < 12; i++) {
        data += 256 * 1024;
        ic_ratelimit_progress_cb((uint64_t)(i + 1) * 64 * MIB, total, &p);
    }
    zero += 1 * MIB;
    ic_ratelimit_progress_cb(total, total, &p);
    /* a report that adds nothing waits for nothing more */
    ic_ratelimit_progress_cb(total, total, &p);
    assert_int_equal(f.reported, total);
    assert_int_equal(f.reports, 15);
    /* 4 MiB counted at 1 MiB/s: 4 s, not the 1024 s the disk would take */
    assert_int_equal(f.slept, 4 * SEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit__a_transfer_takes_its_size_divided_by_the_rate),
        cmocka_unit_test(test_ratelimit__chunks_within_the_slice_quota_do_not_wait),
        cmocka_unit_test(test_ratelimit__one_huge_chunk_waits_as_long_as_it_needs),
        cmocka_unit_test(test_ratelimit__idle_time_starts_a_new_slice_without_banking_it),
        cmocka_unit_test(test_ratelimit__rate_zero_never_waits),
        cmocka_unit_test(test_ratelimit__tiny_rates_and_huge_counts_do_not_wrap),
        cmocka_unit_test(test_ratelimit__the_progress_hook_limits_on_what_the_counters_say_was_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
