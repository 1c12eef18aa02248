/*
 * test-qcow2-refcount.c - refcount entries of every width, cluster
 * allocation, self-describing refblocks, refcount table growth, refcount
 * overflow on compressed packing, and the rebuild that repairs a dirty
 * image.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "qcow2/qcow2.h"
#include "util/endian.h"

/* Images live in the chain fixture's temp directory (cf_dir) and are
 * named relative to it. */

/* Creates qcow2 image @name and opens it read-write. */
static ic_image *create_open(const char *name, uint64_t size, const char *opts)
{
    cf_create(name, "qcow2", size, NULL, NULL, opts);
    return cf_open(name, IC_OPEN_RDWR);
}

static void test_qcow2_refcount__entries_of_every_width_round_trip(void **state)
{
    (void)state;
    uint8_t rb[512];
    for (uint32_t order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_bits = 1u << order };
        uint32_t n = 512 * 8 / s.refcount_bits;
        uint64_t max = s.refcount_bits == 64 ? UINT64_MAX : (1ull << s.refcount_bits) - 1;
        memset(rb, 0, sizeof(rb));
        for (uint32_t i = 0; i < n; i++)
            qcow2_refblock_set(&s, rb, i, (i * 2654435761u) & max);
        for (uint32_t i = 0; i < n; i++)
            assert_int_equal(qcow2_refblock_get(&s, rb, i), (i * 2654435761u) & max);
    }
    /* layout: sub-byte widths LSB first, wide ones big-endian */
    struct qcow2_state s1 = { .refcount_bits = 1 }, s16 = { .refcount_bits = 16 };
    memset(rb, 0, sizeof(rb));
    qcow2_refblock_set(&s1, rb, 1, 1);
    assert_int_equal(rb[0], 0x02);
    qcow2_refblock_set(&s16, rb, 2, 0x1234);
    assert_int_equal(ic_load_be16(rb + 4), 0x1234);
}

/* The per-entry rule qcow2_refblock_add_run must match: entries updated in
 * order until the first one that cannot take @delta. */
static uint32_t add_entry_by_entry(const struct qcow2_state *s, uint8_t *rb, uint32_t i,
                                   uint32_t n, int64_t delta, uint64_t *freed)
{
    for (uint32_t k = 0; k < n; k++) {
        uint64_t v = qcow2_refblock_get(s, rb, i + k), mag = delta < 0 ? (uint64_t)-delta
                                                                       : (uint64_t)delta;
        if (delta < 0 ? v < mag : mag > s->refcount_max - v)
            return k;
        v = delta < 0 ? v - mag : v + mag;
        if (delta < 0 && v == 0)
            freed[(i + k) / 64] |= 1ull << ((i + k) % 64);
        qcow2_refblock_set(s, rb, i + k, v);
    }
    return n;
}

static void test_qcow2_refcount__a_run_update_matches_entry_by_entry_updates_for_every_width(
    void **state)
{
    (void)state;
    enum { BYTES = 512 };
    uint8_t a[BYTES], b[BYTES];
    uint64_t fa[BYTES * 8 / 64], fb[BYTES * 8 / 64];
    uint64_t seed = 12345;
    for (uint32_t order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_bits = 1u << order };
        s.refcount_max = s.refcount_bits == 64 ? UINT64_MAX : (1ull << s.refcount_bits) - 1;
        uint32_t entries = BYTES * 8 / s.refcount_bits;
        uint32_t stopped = 0, completed = 0;
        for (int round = 0; round < 400; round++) {
            /* values mostly small, some at 0 and at the maximum */
            for (uint32_t k = 0; k < entries; k++) {
                uint64_t r = tu_rand(&seed), v;
                switch (r % 8) {
                case 0: v = 0; break;
                case 1: v = s.refcount_max; break;
                case 2: v = s.refcount_max - (s.refcount_max > 0); break;
                default: v = (r >> 8) % 4 & s.refcount_max; break;
                }
                qcow2_refblock_set(&s, a, k, v);
            }
            /* long quiet stretches so that most runs complete */
            if (round % 2) {
                for (uint32_t k = 0; k < entries; k++)
                    qcow2_refblock_set(&s, a, k, s.refcount_max > 2 ? 2 : 1);
            }
            memcpy(b, a, BYTES);
            memset(fa, 0, sizeof(fa));
            memset(fb, 0, sizeof(fb));
            uint32_t i = (uint32_t)(tu_rand(&seed) % entries);
            uint32_t n = 1 + (uint32_t)(tu_rand(&seed) % (entries - i));
            static const int64_t deltas[] = { 1, -1, 2, -2, 3, -3 };
            int64_t d = deltas[tu_rand(&seed) % 6];
            uint32_t want = add_entry_by_entry(&s, a, i, n, d, fa);
            uint32_t got = qcow2_refblock_add_run(&s, b, i, n, d, fb);
            assert_int_equal(got, want);
            assert_memory_equal(b, a, BYTES);
            assert_memory_equal(fb, fa, sizeof(fa));
            if (got < n)
                stopped++;
            else
                completed++;
        }
        /* both outcomes were exercised at this width */
        assert_true(stopped > 0);
        assert_true(completed > 0);
    }
}

static void test_qcow2_refcount__a_run_update_leaves_the_entry_that_cannot_take_it_unchanged(
    void **state)
{
    (void)state;
    uint8_t rb[128]; /* 16 entries of the widest width */
    uint64_t freed[16];
    for (uint32_t order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_bits = 1u << order };
        s.refcount_max = s.refcount_bits == 64 ? UINT64_MAX : (1ull << s.refcount_bits) - 1;
        memset(rb, 0, sizeof(rb));
        memset(freed, 0, sizeof(freed));
        /* entries 0..9 at 1, entry 6 at the maximum */
        for (uint32_t k = 0; k < 10; k++)
            qcow2_refblock_set(&s, rb, k, 1);
        qcow2_refblock_set(&s, rb, 6, s.refcount_max);
        uint32_t stop = qcow2_refblock_add_run(&s, rb, 2, 8, +1, freed);
        if (s.refcount_bits == 1) {
            assert_int_equal(stop, 0); /* 1 is already the maximum */
            assert_int_equal(qcow2_refblock_get(&s, rb, 2), 1);
            continue;
        }
        assert_int_equal(stop, 4);
        for (uint32_t k = 2; k < 6; k++)
            assert_int_equal(qcow2_refblock_get(&s, rb, k), 2);
        assert_int_equal(qcow2_refblock_get(&s, rb, 6), s.refcount_max);
        for (uint32_t k = 7; k < 10; k++)
            assert_int_equal(qcow2_refblock_get(&s, rb, k), 1);
        /* a decrement frees what reaches 0 and stops at a 0 */
        qcow2_refblock_set(&s, rb, 8, 0);
        stop = qcow2_refblock_add_run(&s, rb, 7, 3, -1, freed);
        assert_int_equal(stop, 1);
        assert_int_equal(qcow2_refblock_get(&s, rb, 7), 0);
        assert_int_equal(freed[0], 1ull << 7);
        assert_int_equal(qcow2_refblock_get(&s, rb, 9), 1);
    }
}

static void test_qcow2_refcount__a_run_count_matches_entry_by_entry_for_every_width(void **state)
{
    (void)state;
    enum { BYTES = 512 };
    uint8_t rb[BYTES];
    uint64_t seed = 777;
    for (uint32_t order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_bits = 1u << order };
        s.refcount_max = s.refcount_bits == 64 ? UINT64_MAX : (1ull << s.refcount_bits) - 1;
        uint32_t entries = BYTES * 8 / s.refcount_bits;
        for (int round = 0; round < 100; round++) {
            for (uint32_t k = 0; k < entries; k++)
                qcow2_refblock_set(&s, rb, k, tu_rand(&seed) % 3 & s.refcount_max);
            uint32_t i = (uint32_t)(tu_rand(&seed) % entries);
            uint32_t n = 1 + (uint32_t)(tu_rand(&seed) % (entries - i));
            for (uint64_t value = 0; value < 3; value++) {
                uint32_t want = 0;
                for (uint32_t k = 0; k < n; k++)
                    want += qcow2_refblock_get(&s, rb, i + k) == value;
                assert_int_equal(qcow2_refblock_count(&s, rb, i, n, value), want);
            }
        }
    }
}

static void test_qcow2_refcount__the_first_zero_entry_is_found_at_every_width(void **state)
{
    (void)state;
    enum { BYTES = 512 };
    uint8_t rb[BYTES];
    uint64_t seed = 4242;
    for (uint32_t order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_bits = 1u << order };
        uint64_t max = s.refcount_bits == 64 ? UINT64_MAX : (1ull << s.refcount_bits) - 1;
        uint32_t entries = BYTES * 8 / s.refcount_bits;
        for (int round = 0; round < 200; round++) {
            /* nonzero entries with values whose bytes hold zeroes (0x100,
             * 0x10000...) and a few zero entries, or none at all */
            for (uint32_t k = 0; k < entries; k++) {
                uint64_t v = 1ull << (tu_rand(&seed) % s.refcount_bits);
                if (round % 4 && tu_rand(&seed) % 97 == 0)
                    v = 0;
                qcow2_refblock_set(&s, rb, k, v & max);
            }
            uint32_t i = (uint32_t)(tu_rand(&seed) % entries);
            uint32_t n = 1 + (uint32_t)(tu_rand(&seed) % (entries - i));
            uint32_t want = 0;
            while (want < n && qcow2_refblock_get(&s, rb, i + want))
                want++;
            assert_int_equal(qcow2_refblock_find_zero(&s, rb, i, n), want);
        }
    }
}

static void test_qcow2_refcount__allocation_counts_clusters_and_skips_used_ones(void **state)
{
    (void)state;
    ic_image *img = create_open("a.qcow2", 1u << 20, "cluster_size=4096");
    struct qcow2_state *s = qcow2_state(img);
    uint64_t rc;
    /* header, reftable, refblock, L1 */
    for (uint64_t c = 0; c < 4; c++) {
        assert_int_equal(qcow2_get_refcount(img, c, &rc), 0);
        assert_int_equal(rc, 1);
    }
    int64_t a = qcow2_alloc_clusters(img, 3);
    assert_int_equal(a, 4 * 4096);
    int64_t b = qcow2_alloc_clusters(img, 1);
    assert_int_equal(b, 7 * 4096);
    assert_int_equal(qcow2_free_clusters(img, (uint64_t)a, 2 * 4096), 0);
    assert_int_equal(qcow2_get_refcount(img, 4, &rc), 0);
    assert_int_equal(rc, 0);
    /* a hole of two fits two, not three */
    assert_int_equal(qcow2_alloc_clusters(img, 2), 4 * 4096);
    assert_int_equal(qcow2_alloc_clusters(img, 3), 8 * 4096);
    /* decrementing a free cluster is corruption */
    assert_int_equal(qcow2_update_refcount(img, 100 * 4096, 4096, -1), -EIO);
    (void)s;
    ic_image_close(img);
}

static void test_qcow2_refcount__grows_table_when_last_block_full(void **state)
{
    (void)state;
    /* 512-byte clusters, 64-bit refcounts: 64 clusters per refblock, one
     * reftable cluster covers 64 refblocks = 2 MiB of file */
    ic_image *img = create_open("g.qcow2", 8u << 20, "cluster_size=512,refcount_bits=64");
    struct qcow2_state *s = qcow2_state(img);
    ic_error *err = NULL;
    assert_int_equal(s->reftable_clusters, 1);
    uint64_t old_off = s->reftable_offset;
    uint8_t *buf = malloc(3u << 20);
    assert_non_null(buf);
    tu_fill_pattern(buf, 3u << 20, 5);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, 3u << 20, 0, &err), err);
    assert_true(s->reftable_clusters >= 2);
    assert_true(s->reftable_offset != old_off);
    /* every refblock the table names describes itself */
    for (uint32_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK, rc;
        if (!off)
            continue;
        assert_int_equal(qcow2_get_refcount(img, off >> s->cluster_bits, &rc), 0);
        assert_int_equal(rc, 1);
    }
    /* (the old table was freed: qemu-img check below finds no leak) */
    uint8_t *back = malloc(3u << 20);
    TU_ASSERT_OK(ic_image_pread(img, back, 3u << 20, 0, &err), err);
    assert_memory_equal(back, buf, 3u << 20);
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("g.qcow2");
    free(buf);
    free(back);
}

static void test_qcow2_refcount__a_run_longer_than_a_refblock_range_is_allocated_with_its_blocks_after_it(void **state)
{
    (void)state;
    /* 512-byte clusters, 64-bit refcounts: a refblock covers 64 clusters.
     * Growing to 256 MiB needs an L1 of 128 clusters in one run, which the
     * self-describing blocks of the ranges it spans would break. */
    ic_image *img = create_open("big-l1.qcow2", 1u << 20, "cluster_size=512,refcount_bits=64");
    struct qcow2_state *s = qcow2_state(img);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_truncate(img, 256u << 20, &err), err);
    assert_true((uint64_t)s->l1_size * 8 >= 128u * 512);
    /* the L1's clusters and every refblock are counted once */
    for (uint64_t c = s->l1_offset >> s->cluster_bits;
         c < (s->l1_offset + (uint64_t)s->l1_size * 8 + 511) >> s->cluster_bits; c++) {
        uint64_t rc;
        assert_int_equal(qcow2_get_refcount(img, c, &rc), 0);
        assert_int_equal(rc, 1);
    }
    for (uint32_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK, rc;
        if (!off)
            continue;
        assert_int_equal(qcow2_get_refcount(img, off >> s->cluster_bits, &rc), 0);
        assert_int_equal(rc, 1);
    }
    uint8_t buf[4096], back[4096];
    tu_fill_pattern(buf, sizeof(buf), 9);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), (256u << 20) - sizeof(buf), &err), err);
    TU_ASSERT_OK(ic_image_pread(img, back, sizeof(back), (256u << 20) - sizeof(back), &err), err);
    assert_memory_equal(back, buf, sizeof(buf));
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("big-l1.qcow2");
}

static void test_qcow2_refcount__one_bit_refcounts_never_pack_compressed_clusters(void **state)
{
    (void)state;
    ic_image *img = create_open("c.qcow2", 1u << 20, "cluster_size=4096,refcount_bits=1");
    ic_error *err = NULL;
    uint8_t buf[4096];
    memset(buf, 3, sizeof(buf));
    for (uint64_t off = 0; off < 8 * 4096; off += 4096)
        TU_ASSERT_OK(ic_image_pwrite_compressed(img, buf, sizeof(buf), off, &err), err);
    struct qcow2_state *s = qcow2_state(img);
    assert_int_equal(s->refcount_max, 1);
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("c.qcow2");
    /* with 16-bit refcounts the same clusters share host clusters */
    img = create_open("c16.qcow2", 1u << 20, "cluster_size=4096");
    int64_t before = ic_io_get_size(ic_image_file(img));
    for (uint64_t off = 0; off < 8 * 4096; off += 4096)
        TU_ASSERT_OK(ic_image_pwrite_compressed(img, buf, sizeof(buf), off, &err), err);
    int64_t after = ic_io_get_size(ic_image_file(img));
    assert_true(after - before <= 3 * 4096);
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("c16.qcow2");
}

static void test_qcow2_refcount__dirty_image_is_rebuilt_on_read_write_open(void **state)
{
    (void)state;
    ic_image *img = create_open("d.qcow2", 4u << 20, "cluster_size=4096,lazy_refcounts=on");
    ic_error *err = NULL;
    uint8_t buf[20000];
    memset(buf, 9, sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 12345, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    /* wreck the refblock (cluster 2) and set the dirty bit */
    uint8_t *b;
    size_t len;
    assert_int_equal(tu_read_file(cf_path("d.qcow2"), &b, &len), 0);
    memset(b + 2 * 4096 + 8, 0, 4096 - 8);
    ic_store_be64(b + 72, ic_load_be64(b + 72) | QCOW2_INCOMPAT_DIRTY);
    assert_int_equal(tu_write_file(cf_path("d.qcow2"), b, len), 0);
    free(b);
    img = cf_open("d.qcow2", IC_OPEN_RDWR);
    struct qcow2_state *s = qcow2_state(img);
    assert_false(s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY);
    uint8_t back[20000];
    TU_ASSERT_OK(ic_image_pread(img, back, sizeof(back), 12345, &err), err);
    assert_memory_equal(back, buf, sizeof(back));
    /* writing after the repair allocates only free clusters */
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 2u << 20, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("d.qcow2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_refcount__entries_of_every_width_round_trip),
        cmocka_unit_test(
            test_qcow2_refcount__a_run_update_matches_entry_by_entry_updates_for_every_width),
        cmocka_unit_test(
            test_qcow2_refcount__a_run_update_leaves_the_entry_that_cannot_take_it_unchanged),
        cmocka_unit_test(test_qcow2_refcount__a_run_count_matches_entry_by_entry_for_every_width),
        cmocka_unit_test(test_qcow2_refcount__the_first_zero_entry_is_found_at_every_width),
        cmocka_unit_test(test_qcow2_refcount__allocation_counts_clusters_and_skips_used_ones),
        cmocka_unit_test(test_qcow2_refcount__grows_table_when_last_block_full),
        cmocka_unit_test(test_qcow2_refcount__a_run_longer_than_a_refblock_range_is_allocated_with_its_blocks_after_it),
        cmocka_unit_test(test_qcow2_refcount__one_bit_refcounts_never_pack_compressed_clusters),
        cmocka_unit_test(test_qcow2_refcount__dirty_image_is_rebuilt_on_read_write_open),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
