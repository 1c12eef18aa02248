/*
 * test-chain-copy.c - the parallel bulk copies: commit's
 * (src/chain/chain-copy.c: reader threads read in parallel, a raw base
 * receives batches with several writes in flight, and the result is the
 * top's view) and safe rebase's (src/chain/chain-rebase.c: reader threads
 * read both views, and the overlay keeps its content), and that the copy
 * engine under convert, commit and rebase (src/chain/copy-engine.c) reads
 * while a write is in flight.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "imgchain/chain-edit.h"
#include "imgchain/image.h"
#include "chain/chain-convert.h"
#include "chain/chain-copy.h"
#include "chain/chain-journal.h"
#include "chain/chain-rebase.h"
#include "chain-fixture.h"
#include "rec-io.h"

#define MiB (1024u * 1024u)
#define SIZE (40u * MiB)

/* Asserts that @name's view is @want (@n bytes, freed here) and that no
 * journal is left next to top.qcow2. */
static void expect_view(const char *name, uint8_t *want, uint64_t n)
{
    uint64_t got_n = 0;
    uint8_t *got = cf_view(name, &got_n);
    assert_int_equal(got_n, n);
    assert_memory_equal(want, got, n);
    free(want);
    free(got);
    assert_int_equal(access(cf_path("top.qcow2.imgchain-journal"), F_OK), -1);
}

/* base (@bfmt, old data everywhere but a hole) <- top.qcow2 with data
 * runs, a zeroed run over base data, and unallocated gaps. */
static void make_chain(const char *base, const char *bfmt)
{
    cf_create(base, bfmt, SIZE, NULL, NULL, NULL);
    cf_write_pattern(base, 0, 30u * MiB, 0x40);
    cf_create("top.qcow2", "qcow2", SIZE, base, bfmt, NULL);
    cf_write_pattern("top.qcow2", 1u * MiB, 13u * MiB, 0x90);
    cf_write_pattern("top.qcow2", 16u * MiB, 4u * MiB, 0);
    cf_write_pattern("top.qcow2", 21u * MiB + 65536, 12u * MiB, 0xc3);
    cf_write_pattern("top.qcow2", 36u * MiB, 4u * MiB, 0x17);
}

/* Runs the copy engine directly on the opened chain and checks @base's
 * view equals the top's view from before. */
static void copy_and_compare(const char *base, struct ic_copy_stats *st)
{
    uint64_t n1 = 0;
    uint8_t *want = cf_view("top.qcow2", &n1);
    ic_image *top = cf_open("top.qcow2", IC_OPEN_RDWR);
    ic_error *err = NULL;
    if (ic_image_reopen_backing_rw(top, IC_CACHE_DEFAULT, &err) < 0)
        fail_msg("reopen base: %s", ic_error_message(err));
    int ret = ic_copy_above_base(top, top->backing, IC_ZERO_MAY_UNMAP, NULL, NULL, st, &err);
    if (ret < 0)
        fail_msg("copy: %s", ic_error_message(err));
    assert_int_equal(ic_image_flush(top->backing, &err), 0);
    assert_int_equal(ic_image_close(top), 0);
    expect_view(base, want, n1);
}

static void test_chain_copy__keeps_several_writes_in_flight_into_a_raw_base(void **state)
{
    (void)state;
    make_chain("base.raw", "raw");
    struct ic_copy_stats st;
    copy_and_compare("base.raw", &st);
    assert_true(st.readers > 1);
    assert_true(st.max_batch > 1);
    assert_true(st.max_in_flight > 1);
    /* 13 + 12 + 4 MiB of data runs; one 4 MiB run of zeroes. */
    assert_int_equal(st.data_bytes, 29u * MiB);
    assert_int_equal(st.zero_bytes, 4u * MiB);
    /* 13 + 12 + 4 one-MiB slots, each read once and written once */
    assert_int_equal(st.fills, 29);
}

/* The engine's reader issues reads while the writer has a write in
 * flight: the target is a disk whose every write takes 5 ms, so a reader
 * that waited for the writer would show no fill begun during a write. */
static void test_copy_engine__issues_reads_while_a_write_is_in_flight(void **state)
{
    (void)state;
    make_chain("base.qcow2", "qcow2");
    uint64_t n1 = 0;
    uint8_t *want = cf_view("top.qcow2", &n1);
    cf_create("out.raw", "raw", SIZE, NULL, NULL, NULL);
    struct rec_io *slow = rec_io_open(cf_path("out.raw"), true, -1);
    slow->write_delay_us = 5000;
    ic_image *dst = rec_io_image(slow, "raw", true);
    ic_image *src = cf_open("top.qcow2", 0);
    struct ic_copy_engine_stats st;
    ic_error *err = NULL;
    if (ic_copy_image(dst, src, NULL, NULL, NULL, &st, &err) < 0)
        fail_msg("copy: %s", ic_error_message(err));
    unsigned big = slow->big_writes, big_aligned = slow->big_writes_aligned;
    assert_int_equal(ic_image_close(src), 0);
    assert_int_equal(ic_image_close(dst), 0);
    uint64_t n2 = 0;
    uint8_t *got = cf_view("out.raw", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(want, got, n1);
    free(want);
    free(got);
    /* 13 + 12 + 4 MiB of data in 2 MiB slots (runs widened to granules),
     * every one written */
    assert_int_equal(st.readers, 1);
    assert_true(st.fills >= 15);
    assert_int_equal(st.writes, st.fills);
    /* more fills than slots: some slot was refilled, which can only begin
     * after a write, and the writer goes straight on to the next one */
    assert_true(st.fills > st.slots);
    assert_true(st.fills_while_writing > 0);
    /* whole slots go out from buffers on 2 MiB boundaries, so each can be
     * one huge page and one request (src/util/bigbuf.c) */
    assert_true(big >= 10);
    assert_int_equal(big_aligned, big);
}

static void test_chain_copy__reads_in_parallel_for_a_qcow2_base(void **state)
{
    (void)state;
    make_chain("base.qcow2", "qcow2");
    struct ic_copy_stats st;
    copy_and_compare("base.qcow2", &st);
    assert_true(st.readers > 1);
    assert_int_equal(st.data_bytes, 29u * MiB);
}

/* base.raw (data everywhere) <- mid.qcow2 (data in [2, 22) MiB). */
static void make_raw_and_mid(void)
{
    cf_create("base.raw", "raw", SIZE, NULL, NULL, NULL);
    cf_write_pattern("base.raw", 0, SIZE, 0x21);
    cf_create("mid.qcow2", "qcow2", SIZE, "base.raw", "raw", NULL);
    cf_write_pattern("mid.qcow2", 2u * MiB, 20u * MiB, 0x33);
}

static void test_chain_copy__commit_through_two_layers_gives_the_top_view(void **state)
{
    (void)state;
    make_raw_and_mid();
    cf_create("top.qcow2", "qcow2", SIZE, "mid.qcow2", "qcow2", NULL);
    cf_write_pattern("top.qcow2", 10u * MiB, 3u * MiB, 0);
    cf_write_pattern("top.qcow2", 18u * MiB, 15u * MiB, 0x5a);
    uint64_t n1 = 0;
    uint8_t *want = cf_view("top.qcow2", &n1);
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.base = cf_path("base.raw");
    o.no_dependents_scan = true;
    ic_error *err = NULL;
    if (ic_chain_commit(cf_path("top.qcow2"), &o, &err) < 0)
        fail_msg("commit: %s", ic_error_message(err));
    expect_view("base.raw", want, n1);
}

/* Safe rebase of top.qcow2 onto @backing (NULL: nothing), checked
 * against the view it had before; returns the statistics. */
static struct ic_rebase_stats rebase_and_compare(const char *backing, const char *bfmt)
{
    uint64_t n1 = 0;
    uint8_t *want = cf_view("top.qcow2", &n1);
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.backing = backing ? backing : "";
    o.backing_format = bfmt;
    struct ic_rebase_stats st;
    ic_error *err = NULL;
    if (ic_chain_rebase_stats(cf_path("top.qcow2"), &o, &st, &err) < 0)
        fail_msg("rebase: %s", ic_error_message(err));
    expect_view("top.qcow2", want, n1);
    return st;
}

static void test_chain_rebase__onto_nothing_reads_both_views_in_parallel(void **state)
{
    (void)state;
    make_chain("base.qcow2", "qcow2");
    struct ic_rebase_stats st = rebase_and_compare(NULL, NULL);
    assert_true(st.readers > 1);
    /* The base's 30 MiB minus what the top allocates (13 MiB of data, a
     * 4 MiB zero run, 9 MiB - 64 KiB of the next data run) is compared
     * and written; the base's hole is zero in both views. */
    uint64_t base_only = 30u * MiB - 13u * MiB - 4u * MiB - (9u * MiB - 65536);
    assert_int_equal(st.compared_bytes, base_only);
    assert_int_equal(st.written_bytes, base_only);
    /* one fill per 512 KiB chunk compared (both views at once) */
    assert_true(st.fills >= base_only / (512u << 10));
}

static void test_chain_rebase__onto_a_lower_image_copies_only_the_layers_between(void **state)
{
    (void)state;
    make_raw_and_mid();
    cf_write_pattern("mid.qcow2", 30u * MiB, 2u * MiB, 0);
    cf_create("top.qcow2", "qcow2", SIZE, "mid.qcow2", "qcow2", NULL);
    cf_write_pattern("top.qcow2", 10u * MiB, 3u * MiB, 0x5a);
    struct ic_rebase_stats st = rebase_and_compare("base.raw", "raw");
    assert_true(st.readers > 1);
    /* mid's 22 MiB differ from the base, less the 3 MiB the top hides;
     * nothing else is even read */
    assert_int_equal(st.compared_bytes, 19u * MiB);
    assert_int_equal(st.written_bytes, 19u * MiB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_chain_copy__keeps_several_writes_in_flight_into_a_raw_base, cf_setup,
            cf_teardown),
        cmocka_unit_test_setup_teardown(test_chain_copy__reads_in_parallel_for_a_qcow2_base,
                                        cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_copy_engine__issues_reads_while_a_write_is_in_flight, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_copy__commit_through_two_layers_gives_the_top_view, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_rebase__onto_nothing_reads_both_views_in_parallel, cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_chain_rebase__onto_a_lower_image_copies_only_the_layers_between, cf_setup,
            cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
