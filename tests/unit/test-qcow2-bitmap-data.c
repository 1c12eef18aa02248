/*
 * test-qcow2-bitmap-data.c - the data of persistent dirty bitmaps made by
 * qemu-img and qemu-io, loaded by the driver and walked as dirty extents,
 * equals what qemu itself exports (qemu-nbd -B and qemu-img map through
 * x-dirty-bitmap, tests/helpers/qemu-dirty-extents.sh): granularities
 * 512 B to 2 MiB, 512 B to 2 MiB clusters, extended L2, a virtual size
 * that ends inside a granule, all-ones table entries; and the in-memory
 * marking of guest ranges.
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
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "qcow2/qcow2.h"
#include "qcow2/qcow2-bitmap.h"
#include "util/error.h"

static const char *top(void)
{
    return getenv("IC_TOP") ? getenv("IC_TOP") : ".";
}

static bool have_qemu(void)
{
    return tu_have_prog("qemu-img") && tu_have_prog("qemu-io") && tu_have_prog("qemu-nbd");
}

/* "START LENGTH\n" per dirty extent of bitmap @name, as the driver reads it. */
static char *our_extents(const char *img_name, const char *name)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, cf_path(img_name), &o, &err), err);
    struct qcow2_bitmap_dir d;
    TU_ASSERT_OK(qcow2_bitmaps_load(img, &d, &err), err);
    const struct qcow2_bitmap *bm = NULL;
    for (uint32_t i = 0; i < d.nb; i++)
        if (!strcmp(d.bm[i].name, name))
            bm = &d.bm[i];
    assert_non_null(bm);
    struct qcow2_bitmap_bits b;
    TU_ASSERT_OK(qcow2_bitmap_data_load(img, bm, &b, &err), err);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    uint64_t pos = 0, s, l;
    while (qcow2_bitmap_next_extent(&b, ic_image_size(img), pos, &s, &l)) {
        assert_true(l > 0);
        if (cap - n < 64) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        n += (size_t)snprintf(out + n, cap - n, "%llu %llu\n", (unsigned long long)s,
                              (unsigned long long)l);
        pos = s + l;
    }
    qcow2_bitmap_bits_free(&b);
    qcow2_bitmap_dir_free(&d);
    ic_image_close(img);
    return out;
}

static void assert_same_as_qemu(const char *img, const char *name)
{
    char *q = NULL;
    assert_int_equal(tu_sh_out(&q, "sh '%s/tests/helpers/qemu-dirty-extents.sh' '%s' '%s'", top(),
                               cf_path(img), name), 0);
    char *m = our_extents(img, name);
    if (strcmp(q, m)) {
        print_error("bitmap %s of %s:\nqemu:\n%s\nimgchain:\n%s\n", name, img, q, m);
        fail();
    }
    /* a bitmap nobody wrote under is allowed to be empty, not this set */
    free(q);
    free(m);
}

/* qemu-io writes of pseudo-random unaligned ranges (a fixed seed). */
static void scatter(const char *img, uint64_t size, uint64_t seed, int n)
{
    uint64_t st = seed;
    char cmd[4096];
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t len = 1 + tu_rand(&st) % (300 * 1024);
        uint64_t off = tu_rand(&st) % (size - len);
        const char *op = i % 7 == 3 ? "write -z" : "write";
        k += (size_t)snprintf(cmd + k, sizeof(cmd) - k, " -c '%s %llu %llu'", op,
                              (unsigned long long)off, (unsigned long long)len);
    }
    assert_int_equal(tu_sh("qemu-io%s '%s' >/dev/null", cmd, cf_path(img)), 0);
}

static void check_image(const char *name, const char *opts, uint64_t size)
{
    const char *p = cf_path(name);
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 -o %s '%s' %llu", opts, p,
                           (unsigned long long)size), 0);
    static const char *const g[] = { "512", "4k", "64k", "1M", "2M" };
    static const char *const nm[] = { "g512", "g4k", "g64k", "g1m", "g2m" };
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tu_sh("qemu-img bitmap --add -g %s '%s' %s", g[i], p, nm[i]), 0);
        scatter(name, size, 17 + (uint64_t)i, 12);
    }
    /* the tail of the disk, partly inside the last granule */
    assert_int_equal(tu_sh("qemu-io -c 'write %llu 512' '%s' >/dev/null",
                           (unsigned long long)(size - 512), p), 0);
    assert_int_equal(tu_sh("qemu-img bitmap --disable '%s' g4k", p), 0);
    for (int i = 0; i < 5; i++)
        assert_same_as_qemu(name, nm[i]);
}

static void test_qcow2_bitmap_data__extents_equal_qemus_with_64k_clusters(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    check_image("c64k.qcow2", "cluster_size=65536", 64ull << 20);
}

static void test_qcow2_bitmap_data__extents_equal_qemus_with_512_byte_clusters(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    /* 64 MiB at 512 B per bit: 32 data clusters per table */
    check_image("c512.qcow2", "cluster_size=512", 64ull << 20);
}

static void test_qcow2_bitmap_data__extents_equal_qemus_with_2m_clusters_and_odd_size(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    /* ends 512 bytes into a 1 MiB and a 2 MiB granule */
    check_image("c2m.qcow2", "cluster_size=2M", (40ull << 20) + 512);
}

static void test_qcow2_bitmap_data__extents_equal_qemus_with_extended_l2(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    check_image("x16k.qcow2", "cluster_size=16384,extended_l2=on", 48ull << 20);
}

static void test_qcow2_bitmap_data__all_ones_entries_read_as_dirty(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    const char *p = cf_path("ones.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 64M && "
                           "qemu-img bitmap --add -g 512 '%s' b && "
                           "qemu-io -c 'write 0 4k' '%s' >/dev/null && "
                           "python3 '%s/tests/helpers/qcow2-bitmap-poke.py' '%s' all-ones b",
                           p, p, p, top(), p), 0);
    assert_same_as_qemu("ones.qcow2", "b");
    char *m = our_extents("ones.qcow2", "b");
    /* the last entry covers the last 2 MiB of the disk */
    assert_non_null(strstr(m, "65011712 2097152\n"));
    free(m);
}

static void test_qcow2_bitmap_data__marking_covers_every_granule_a_range_touches(void **state)
{
    (void)state;
    struct qcow2_bitmap_bits b;
    assert_int_equal(qcow2_bitmap_bits_init(&b, (1ull << 20) + 100, 16), 0);
    assert_int_equal(b.nbits, 17);
    qcow2_bitmap_bits_mark(&b, 65535, 2); /* straddles granules 0 and 1 */
    assert_true(qcow2_bitmap_bits_get(&b, 0));
    assert_true(qcow2_bitmap_bits_get(&b, 1));
    assert_false(qcow2_bitmap_bits_get(&b, 2));
    qcow2_bitmap_bits_mark(&b, 1ull << 20, 100); /* the partial last granule */
    assert_true(qcow2_bitmap_bits_get(&b, 16));
    qcow2_bitmap_bits_mark(&b, 5 << 16, 0); /* empty: nothing */
    assert_false(qcow2_bitmap_bits_get(&b, 5));
    uint64_t s, l;
    assert_true(qcow2_bitmap_next_extent(&b, (1ull << 20) + 100, 0, &s, &l));
    assert_int_equal(s, 0);
    assert_int_equal(l, 2 << 16);
    assert_true(qcow2_bitmap_next_extent(&b, (1ull << 20) + 100, s + l, &s, &l));
    assert_int_equal(s, 1ull << 20);
    assert_int_equal(l, 100); /* clipped to the virtual size */
    assert_false(qcow2_bitmap_next_extent(&b, (1ull << 20) + 100, s + l, &s, &l));
    qcow2_bitmap_bits_free(&b);
    /* runs across word boundaries */
    assert_int_equal(qcow2_bitmap_bits_init(&b, 1000ull * 512, 9), 0);
    qcow2_bitmap_bits_mark(&b, 60 * 512, 200 * 512);
    assert_true(qcow2_bitmap_next_extent(&b, 1000ull * 512, 0, &s, &l));
    assert_int_equal(s, 60 * 512);
    assert_int_equal(l, 200 * 512);
    qcow2_bitmap_bits_mark(&b, 0, 1000ull * 512);
    assert_true(qcow2_bitmap_next_extent(&b, 1000ull * 512, 0, &s, &l));
    assert_int_equal(l, 1000ull * 512);
    qcow2_bitmap_bits_free(&b);
}

/* ---- storing ------------------------------------------------------------------ */

/* "START LENGTH\n" per extent of @b (malloc'd). */
static char *extents_of(const struct qcow2_bitmap_bits *b, uint64_t size)
{
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    uint64_t pos = 0, s, l;
    while (qcow2_bitmap_next_extent(b, size, pos, &s, &l)) {
        if (cap - n < 64) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        n += (size_t)snprintf(out + n, cap - n, "%llu %llu\n", (unsigned long long)s,
                              (unsigned long long)l);
        pos = s + l;
    }
    return out;
}

static int find_bitmap(const struct qcow2_bitmap_dir *d, const char *name)
{
    for (uint32_t i = 0; i < d->nb; i++)
        if (!strcmp(d->bm[i].name, name))
            return (int)i;
    return -1;
}

/* Opens @path for repair (metadata writes allowed while the guard refuses
 * guest writes), marks [off, off+len) in bitmap @name, and stores it with
 * @flags; *expect gets the extents stored. */
static int mark_and_store(const char *path, ic_open_file_fn of, void *op, const char *name,
                          uint64_t off, uint64_t len, uint32_t flags, char **expect,
                          ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_CHECK | IC_OPEN_NO_BACKING | IC_OPEN_NO_LOCK;
    o.open_file = of;
    o.payload = op;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &o, errp);
    if (ret < 0)
        return ret;
    struct qcow2_bitmap_dir d = { 0 };
    struct qcow2_bitmap_bits b = { 0 };
    ret = qcow2_bitmaps_load(img, &d, errp);
    int i = ret == 0 ? find_bitmap(&d, name) : -1;
    if (ret == 0 && i < 0)
        ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "no bitmap %s", name);
    if (ret == 0)
        ret = qcow2_bitmap_data_load(img, &d.bm[i], &b, errp);
    if (ret == 0) {
        qcow2_bitmap_bits_mark(&b, off, len);
        if (expect)
            *expect = extents_of(&b, ic_image_size(img));
        struct qcow2_bitmap_bits **bits = calloc(d.nb, sizeof(*bits));
        assert_non_null(bits);
        bits[i] = &b;
        d.bm[i].flags = flags;
        ret = qcow2_bitmaps_store(img, &d, bits, errp);
        free(bits);
    }
    qcow2_bitmap_bits_free(&b);
    qcow2_bitmap_dir_free(&d);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set(errp, IC_ERR_IO, -cret, "close failed");
    return ret;
}

static void make_store_image(const char *p)
{
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 '%s' 64M && "
                           "qemu-img bitmap --add -g 512 '%s' fine && "
                           "qemu-img bitmap --add -g 1M '%s' coarse && "
                           "qemu-io -c 'write 1M 70000' -c 'write 40M 3' '%s' >/dev/null && "
                           "qemu-img bitmap --disable '%s' coarse && "
                           "qemu-img bitmap --add '%s' used && "
                           "python3 '%s/tests/helpers/qcow2-bitmap-poke.py' '%s' in-use used",
                           p, p, p, p, p, p, top(), p), 0);
}

static void test_qcow2_bitmap_data__a_stored_bitmap_reads_back_in_qemu_with_its_new_marks(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    const char *p = cf_path("st.qcow2");
    make_store_image(p);
    char *coarse = NULL;
    assert_int_equal(tu_sh_out(&coarse, "sh '%s/tests/helpers/qemu-dirty-extents.sh' '%s' coarse",
                               top(), p), 0);
    char *expect = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(mark_and_store(p, NULL, NULL, "fine", 10000003, 99999, QCOW2_BME_FLAG_AUTO,
                                &expect, &err), err);
    assert_non_null(strstr(expect, "1048576 70144\n"));   /* qemu-io's, kept */
    assert_non_null(strstr(expect, "9999872 100352\n"));  /* ours, 512-byte granules */
    char *q = NULL;
    assert_int_equal(tu_sh_out(&q, "sh '%s/tests/helpers/qemu-dirty-extents.sh' '%s' fine",
                               top(), p), 0);
    assert_string_equal(q, expect);
    free(q);
    /* the disabled bitmap is untouched, the in-use one still in use */
    assert_int_equal(tu_sh_out(&q, "sh '%s/tests/helpers/qemu-dirty-extents.sh' '%s' coarse",
                               top(), p), 0);
    assert_string_equal(q, coarse);
    free(q);
    assert_int_equal(tu_sh("qemu-img check -q '%s'", p), 0);
    assert_int_equal(tu_sh("qemu-img info --output=json '%s' | python3 -c 'import json,sys; "
                           "b=json.load(sys.stdin)[\"format-specific\"][\"data\"][\"bitmaps\"]; "
                           "sys.exit(0 if [(x[\"name\"],x[\"flags\"]) for x in b]==[(\"fine\","
                           "[\"auto\"]),(\"coarse\",[]),(\"used\",[\"in-use\",\"auto\"])] else 1)'",
                           p), 0);
    /* stored again with the in-use flag: qemu sees it in use */
    TU_ASSERT_OK(mark_and_store(p, NULL, NULL, "fine", 0, 1,
                                QCOW2_BME_FLAG_AUTO | QCOW2_BME_FLAG_IN_USE, NULL, &err), err);
    assert_int_equal(tu_sh("qemu-img info '%s' | grep -A4 '\\[0\\]:' | grep -q in-use", p), 0);
    assert_int_equal(tu_sh("qemu-img check -q '%s'", p), 0);
    free(expect);
    free(coarse);
}

struct store_crash {
    char *before;   /* extents of "fine" before the store */
    char *after;    /* extents it was stored with */
};

static int sc_setup(struct tu_loop_ctx *ctx, ic_error **errp)
{
    (void)errp;
    make_store_image(ctx->path);
    return 0;
}

static int sc_run(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct store_crash *sc = ctx->payload;
    char *exp = NULL;
    int ret = mark_and_store(ctx->path, ctx->open_file, ctx->open_payload, "fine", 5000000, 3000000,
                             QCOW2_BME_FLAG_AUTO, &exp, errp);
    if (exp && !sc->after)
        sc->after = exp;
    else
        free(exp);
    return ret;
}

/* The survivor: no corruption, and "fine" is wholly the old or the new
 * bitmap, never a mix and never unreadable. */
static int sc_verify(struct tu_loop_ctx *ctx, ic_error **errp)
{
    struct store_crash *sc = ctx->payload;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_BACKING | IC_OPEN_CHECK | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, ctx->path, &o, errp);
    if (ret < 0)
        return ret;
    ic_check_result r;
    ret = ic_image_check(img, 0, NULL, NULL, &r, errp);
    if (ret == 0 && (r.corruptions || r.check_errors))
        ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "%" PRId64 " corruptions after a crash",
                           r.corruptions);
    struct qcow2_bitmap_dir d = { 0 };
    struct qcow2_bitmap_bits b = { 0 };
    if (ret == 0)
        ret = qcow2_bitmaps_load(img, &d, errp);
    int i = ret == 0 ? find_bitmap(&d, "fine") : -1;
    if (ret == 0 && i < 0)
        ret = ic_error_set(errp, IC_ERR_CORRUPT, ENOENT, "bitmap lost after a crash");
    if (ret == 0)
        ret = qcow2_bitmap_data_load(img, &d.bm[i], &b, errp);
    if (ret == 0) {
        char *now = extents_of(&b, ic_image_size(img));
        if (strcmp(now, sc->before) && (!sc->after || strcmp(now, sc->after)))
            ret = ic_error_set(errp, IC_ERR_CORRUPT, EIO, "bitmap is neither the old nor the "
                               "new one after a crash at flush %u", ctx->n);
        free(now);
    }
    qcow2_bitmap_bits_free(&b);
    qcow2_bitmap_dir_free(&d);
    ic_image_close(img);
    return ret;
}

static void test_qcow2_bitmap_data__a_crash_at_any_flush_of_a_store_leaves_old_or_new(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    struct store_crash sc = { 0 };
    make_store_image(cf_path("ref.qcow2"));
    sc.before = our_extents("ref.qcow2", "fine");
    struct tu_crash_loop cfg = {
        .name = "bitmap store",
        .target = "target.qcow2",
        .setup = sc_setup,
        .run = sc_run,
        .verify = sc_verify,
        .payload = &sc,
        .seeds = 2,
    };
    struct tu_crash_summary sum;
    tu_crash_loop_run(&cfg, &sum);
    assert_true(sum.crash_points >= 3);
    free(sc.before);
    free(sc.after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_bitmap_data__extents_equal_qemus_with_64k_clusters),
        cmocka_unit_test(test_qcow2_bitmap_data__extents_equal_qemus_with_512_byte_clusters),
        cmocka_unit_test(test_qcow2_bitmap_data__extents_equal_qemus_with_2m_clusters_and_odd_size),
        cmocka_unit_test(test_qcow2_bitmap_data__extents_equal_qemus_with_extended_l2),
        cmocka_unit_test(test_qcow2_bitmap_data__all_ones_entries_read_as_dirty),
        cmocka_unit_test(test_qcow2_bitmap_data__marking_covers_every_granule_a_range_touches),
        cmocka_unit_test(test_qcow2_bitmap_data__a_stored_bitmap_reads_back_in_qemu_with_its_new_marks),
        cmocka_unit_test(test_qcow2_bitmap_data__a_crash_at_any_flush_of_a_store_leaves_old_or_new),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
