/*
 * test-qcow2-cluster.c - qcow2 guest I/O against a raw reference model
 * (blkverify): random writes, zero writes, discards and compressed writes
 * across cluster sizes, compat levels, refcount widths, extended L2,
 * backing files and external data files; every image must read exactly
 * as the model and pass `qemu-img check` (no errors, no leaks) and
 * `qemu-img compare` with the model.  Also L2 lookup details: block
 * status runs, subcluster bitmaps, COPIED flags.
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
#include "rec-io.h"

/* Images live in the chain fixture's temp directory (cf_dir), one per
 * test group, and are named relative to it. */

/* qemu-img compare of image @name with the model must find them equal. */
static void assert_qemu_equal(const char *name, const struct tu_model *m)
{
    if (!tu_have_prog("qemu-img"))
        return;
    assert_int_equal(tu_model_save(m, cf_path("model.raw")), 0);
    char *out = NULL;
    int rc = tu_sh_out(&out, "qemu-img compare -f raw -F qcow2 '%s' '%s' 2>&1",
                       cf_path("model.raw"), cf_path(name));
    if (rc != 0)
        fail_msg("qemu-img compare %s: exit %d\n%s", name, rc, out);
    free(out);
}

/* Random writes / zero writes / discards / compressed writes on @img and
 * the model. */
static void random_ops(ic_image *img, struct tu_model *m, unsigned nops, uint64_t seed,
                       bool compressed, bool zero_ops)
{
    uint64_t st = seed;
    uint64_t size = ic_image_size(img);
    uint32_t cs = ic_image_cluster_size(img);
    uint8_t *buf = malloc(IC_MAX(1u << 20, cs));
    assert_non_null(buf);
    ic_error *err = NULL;
    for (unsigned i = 0; i < nops; i++) {
        unsigned kind = (unsigned)(tu_rand(&st) % 10);
        uint64_t off = tu_rand(&st) % size;
        uint64_t len = 1 + tu_rand(&st) % (kind < 2 ? (1u << 20) : 3 * (uint64_t)cs + 1000);
        if (off + len > size)
            len = size - off;
        if (len > (1u << 20) && (kind < 6 || !zero_ops))
            len = 1u << 20;
        if (kind < 6 || !zero_ops) {
            tu_fill_pattern(buf, (size_t)len, seed * 1000 + i);
            TU_ASSERT_OK(ic_image_pwrite(img, buf, (size_t)len, off, &err), err);
            tu_model_write(m, buf, (size_t)len, off);
        } else if (kind < 8) {
            unsigned fl = kind == 7 ? IC_ZERO_MAY_UNMAP : 0;
            TU_ASSERT_OK(ic_image_pwrite_zeroes(img, off, len, fl, &err), err);
            tu_model_zero(m, off, len);
        } else if (kind == 8 || !compressed) {
            /* discard: whole clusters read as zero (no backing in these runs) */
            TU_ASSERT_OK(ic_image_discard(img, off, len, &err), err);
            uint64_t a = IC_ALIGN_UP(off, (uint64_t)cs), b = off + len == size ? size
                                                                              : IC_ALIGN_DOWN(off + len, (uint64_t)cs);
            if (a < b)
                tu_model_zero(m, a, b - a);
        } else {
            uint64_t c = IC_ALIGN_DOWN(off, (uint64_t)cs);
            uint64_t n = IC_MIN((uint64_t)cs, size - c);
            /* half compressible, half random */
            tu_fill_pattern(buf, (size_t)n, seed + i);
            memset(buf, (int)(i & 0xff), (size_t)n / 2);
            TU_ASSERT_OK(ic_image_pwrite_compressed(img, buf, (size_t)n, c, &err), err);
            tu_model_write(m, buf, (size_t)n, c);
        }
        if (i % 16 == 15)
            TU_ASSERT_OK(ic_image_flush(img, &err), err);
    }
    free(buf);
}

static void run_matrix(const char *opts, uint64_t size, bool compressed, unsigned nops)
{
    cf_create("m.qcow2", "qcow2", size, NULL, NULL, opts);
    struct tu_model *m = tu_model_new(size);
    ic_image *img = cf_open("m.qcow2", IC_OPEN_RDWR);
    random_ops(img, m, nops, 42, compressed, true);
    TU_MODEL_ASSERT_IMAGE(m, img);
    assert_int_equal(ic_image_close(img), 0);
    TU_MODEL_ASSERT_FILE(m, cf_path("m.qcow2"));
    cf_assert_qemu_clean("m.qcow2");
    assert_qemu_equal("m.qcow2", m);
    /* and once more after a reopen (tables read back from disk) */
    img = cf_open("m.qcow2", IC_OPEN_RDWR);
    random_ops(img, m, nops / 2, 7, compressed, true);
    assert_int_equal(ic_image_close(img), 0);
    TU_MODEL_ASSERT_FILE(m, cf_path("m.qcow2"));
    cf_assert_qemu_clean("m.qcow2");
    tu_model_free(m);
}

static void test_qcow2_cluster__random_io_matches_model_with_512_byte_clusters(void **state)
{
    (void)state;
    run_matrix("cluster_size=512", 3u << 20, true, 120);
}

static void test_qcow2_cluster__random_io_matches_model_on_v2_images(void **state)
{
    (void)state;
    run_matrix("compat=0.10,cluster_size=4096", 8u << 20, true, 120);
}

static void test_qcow2_cluster__random_io_matches_model_with_default_clusters(void **state)
{
    (void)state;
    run_matrix(NULL, 32u << 20, true, 120);
}

static void test_qcow2_cluster__random_io_matches_model_with_2m_clusters(void **state)
{
    (void)state;
    run_matrix("cluster_size=2M", 16u << 20, true, 40);
}

static void test_qcow2_cluster__random_io_matches_model_for_every_refcount_width(void **state)
{
    (void)state;
    static const char *const w[] = { "1", "2", "4", "8", "16", "32", "64" };
    for (size_t i = 0; i < IC_ARRAY_SIZE(w); i++) {
        char o[80];
        snprintf(o, sizeof(o), "cluster_size=1024,refcount_bits=%s", w[i]);
        run_matrix(o, 2u << 20, true, 50);
    }
}

static void test_qcow2_cluster__random_io_matches_model_with_extended_l2(void **state)
{
    (void)state;
    run_matrix("extended_l2=on,cluster_size=16384", 8u << 20, true, 100);
}

static void test_qcow2_cluster__random_io_matches_model_with_zstd(void **state)
{
    (void)state;
    run_matrix("compression_type=zstd,cluster_size=4096", 4u << 20, true, 100);
}

static void test_qcow2_cluster__random_io_matches_model_with_lazy_refcounts(void **state)
{
    (void)state;
    run_matrix("lazy_refcounts=on,cluster_size=4096", 4u << 20, false, 100);
}

static void test_qcow2_cluster__unaligned_virtual_size_reads_and_writes_its_tail(void **state)
{
    (void)state;
    run_matrix("cluster_size=4096", 3u * 1048576 + 1536, true, 60);
}

static void test_qcow2_cluster__writes_over_a_backing_chain_copy_on_write(void **state)
{
    (void)state;
    uint64_t size = 4u << 20;
    struct tu_model *m = tu_model_new(size);
    tu_fill_pattern(m->data, size, 99);
    assert_int_equal(tu_model_save(m, cf_path("base.raw")), 0);
    cf_create("mid.qcow2", "qcow2", 0, "base.raw", "raw", "compat=0.10,cluster_size=4096");
    ic_image *img = cf_open("mid.qcow2", IC_OPEN_RDWR);
    random_ops(img, m, 40, 5, false, false);
    assert_int_equal(ic_image_close(img), 0);
    cf_create("top.qcow2", "qcow2", 0, "mid.qcow2", "qcow2", "cluster_size=65536");
    img = cf_open("top.qcow2", IC_OPEN_RDWR);
    random_ops(img, m, 60, 6, false, false);
    /* zero writes and discards over a backing file must hide it */
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 65536, 3 * 65536 + 100, 0, &err), err);
    tu_model_zero(m, 65536, 3 * 65536 + 100);
    TU_ASSERT_OK(ic_image_discard(img, 1u << 20, 2 * 65536, &err), err);
    tu_model_zero(m, 1u << 20, 2 * 65536);
    TU_MODEL_ASSERT_IMAGE(m, img);
    assert_int_equal(ic_image_close(img), 0);
    TU_MODEL_ASSERT_FILE(m, cf_path("top.qcow2"));
    cf_assert_qemu_clean("mid.qcow2");
    cf_assert_qemu_clean("top.qcow2");
    assert_qemu_equal("top.qcow2", m);
    tu_model_free(m);
}

static void test_qcow2_cluster__external_data_files_hold_the_guest_data(void **state)
{
    (void)state;
    for (int raw = 0; raw < 2; raw++) {
        uint64_t size = 4u << 20;
        cf_create("d.qcow2", "qcow2", size, NULL, NULL,
                  raw ? "data_file=d.data,data_file_raw=on" : "data_file=d.data");
        struct tu_model *m = tu_model_new(size);
        ic_image *img = cf_open("d.qcow2", IC_OPEN_RDWR);
        random_ops(img, m, 60, 11, false, true);
        ic_error *err = NULL;
        uint8_t b[16];
        TU_ASSERT_ERR(ic_image_pwrite_compressed(img, b, sizeof(b), 0, &err), err, ENOTSUP,
                      "compression is not supported with an external data file");
        assert_int_equal(ic_image_close(img), 0);
        TU_MODEL_ASSERT_FILE(m, cf_path("d.qcow2"));
        cf_assert_qemu_clean("d.qcow2");
        if (raw) {
            /* the data file alone is the disk */
            uint8_t *d;
            size_t dl;
            assert_int_equal(tu_read_file(cf_path("d.data"), &d, &dl), 0);
            assert_true(dl >= size);
            assert_memory_equal(d, m->data, size);
            free(d);
        }
        tu_model_free(m);
    }
}

static void test_qcow2_cluster__metadata_preallocation_maps_one_contiguous_run(void **state)
{
    (void)state;
    uint64_t size = 1ull << 30;
    cf_create("p.qcow2", "qcow2", size, NULL, NULL, "preallocation=metadata");
    cf_assert_qemu_clean("p.qcow2");
    ic_image *img = cf_open("p.qcow2", 0);
    ic_error *err = NULL;
    struct qcow2_state *s = qcow2_state(img);
    s->metadata_prealloc_checked = true; /* layer status only */
    ic_block_status bs;
    TU_ASSERT_OK(ic_image_block_status(img, NULL, 0, size, &bs, &err), err);
    assert_true(bs.flags & IC_BS_DATA);
    assert_true(bs.flags & IC_BS_OFFSET_VALID);
    /* runs break only where L2 tables sit between data clusters */
    assert_true(bs.length >= (512ull << 20) - 65536);
    ic_image_close(img);
}

/* Block status of a data run counts refcounts once per image (qemu's
 * metadata preallocation test); a read-only image, every backing layer of
 * a chain, must not keep the reftable and refblocks that count loaded. */
static void test_qcow2_cluster__a_read_only_image_keeps_no_refcounts_after_the_prealloc_test(
    void **state)
{
    (void)state;
    cf_create("rc.qcow2", "qcow2", 8u << 20, NULL, NULL, NULL);
    ic_image *img = cf_open("rc.qcow2", IC_OPEN_RDWR);
    uint8_t buf[65536];
    memset(buf, 0x3c, sizeof(buf));
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 1u << 20, &err), err);
    assert_int_equal(ic_image_close(img), 0);

    for (int rw = 0; rw < 2; rw++) {
        img = cf_open("rc.qcow2", rw ? IC_OPEN_RDWR : 0);
        struct qcow2_state *s = qcow2_state(img);
        ic_block_status bs;
        TU_ASSERT_OK(ic_image_block_status(img, NULL, 1u << 20, 65536, &bs, &err), err);
        assert_true(bs.flags & IC_BS_DATA);
        assert_true(s->metadata_prealloc_checked);
        assert_false(s->metadata_prealloc);
        size_t bufs = 0;
        for (size_t i = 0; i < s->refblock_cache.nb; i++)
            bufs += s->refblock_cache.e[i].buf != NULL;
        if (rw) {
            /* a writable image keeps them: it will allocate */
            assert_non_null(s->reftable);
            assert_true(bufs > 0);
        } else {
            assert_null(s->reftable);
            assert_int_equal(bufs, 0);
            /* and the image still reads and answers as before */
            uint8_t got[65536];
            TU_ASSERT_OK(ic_image_pread(img, got, sizeof(got), 1u << 20, &err), err);
            assert_memory_equal(got, buf, sizeof(got));
            uint64_t rc = 0;
            assert_int_equal(qcow2_get_refcount(img, 0, &rc), 0);
            assert_int_equal(rc, 1);
        }
        assert_int_equal(ic_image_close(img), 0);
    }
}

/* The metadata preallocation test counts refcounts from the file on a
 * read-only image and through the caches on a writable one: both decide
 * alike, for every refcount width, with and without preallocation. */
static void test_qcow2_cluster__the_prealloc_test_decides_alike_read_only_and_writable(
    void **state)
{
    (void)state;
    static const char *widths[] = { "1", "4", "16", "64" };
    char name[64], opts[96];
    for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
        for (int prealloc = 0; prealloc < 2; prealloc++) {
            snprintf(name, sizeof(name), "pw%s-%d.qcow2", widths[w], prealloc);
            snprintf(opts, sizeof(opts), "refcount_bits=%s%s", widths[w],
                     prealloc ? ",preallocation=metadata" : "");
            cf_create(name, "qcow2", 64u << 20, NULL, NULL, opts);
            cf_write_byte(name, 1u << 20, 65536, 0x5a);
            bool decided[2];
            for (int rw = 0; rw < 2; rw++) {
                ic_image *img = cf_open(name, rw ? IC_OPEN_RDWR : 0);
                ic_error *err = NULL;
                ic_block_status bs;
                TU_ASSERT_OK(ic_image_block_status(img, NULL, 1u << 20, 65536, &bs, &err), err);
                struct qcow2_state *s = qcow2_state(img);
                assert_true(s->metadata_prealloc_checked);
                decided[rw] = s->metadata_prealloc;
                if (!rw)
                    assert_null(s->reftable);
                assert_int_equal(ic_image_close(img), 0);
            }
            assert_int_equal(decided[0], decided[1]);
            assert_int_equal(decided[0], prealloc);
        }
    }
}

/* A backing layer looks its clusters up in slices of its L2 tables, a
 * few of them cached, never whole tables (design note 8 of
 * src/qcow2/qcow2-cluster.c); reads and block status through the chain
 * still see every layer's data, with standard and extended L2 entries. */
static void test_qcow2_cluster__a_backing_layer_looks_up_clusters_in_l2_slices(void **state)
{
    (void)state;
    const uint64_t size = 1ull << 30, step = 40ull << 20; /* > one slice apart */
    for (int ext = 0; ext < 2; ext++) {
        const char *bname = ext ? "sb-ext.qcow2" : "sb.qcow2";
        const char *tname = ext ? "st-ext.qcow2" : "st.qcow2";
        cf_create(bname, "qcow2", size, NULL, NULL, ext ? "extended_l2=on" : NULL);
        for (uint64_t off = 65536; off < size; off += step)
            cf_write_byte(bname, off, 65536 + 4096, 0x11);
        cf_create(tname, "qcow2", 0, bname, "qcow2", NULL);
        cf_write_byte(tname, 2 * step + 65536, 4096, 0x22);
        ic_image *img = cf_open(tname, 0);
        ic_image *base = img->backing;
        assert_non_null(base);
        ic_error *err = NULL;
        /* block status: one data run per write, the top's inside one */
        unsigned data_runs = 0;
        for (uint64_t off = 0; off < size;) {
            ic_block_status bs;
            TU_ASSERT_OK(ic_image_block_status(img, NULL, off, size - off, &bs, &err), err);
            if (bs.flags & IC_BS_DATA) {
                data_runs++;
                assert_true(off % step >= 65536 && off % step < 65536 + 65536 + 4096);
            }
            off += bs.length;
        }
        assert_true(data_runs >= size / step);
        /* reads: every piece through the top, the top's bytes over it */
        uint8_t buf[65536 + 12288];
        for (uint64_t off = 65536; off < size; off += step) {
            TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), off - 4096, &err), err);
            assert_int_equal(buf[0], 0);
            assert_int_equal(buf[4096], off == 2 * step + 65536 ? 0x22 : 0x11);
            assert_int_equal(buf[4096 + 8192], 0x11);
            assert_int_equal(buf[4096 + 65536 + 4095], 0x11);
            assert_int_equal(buf[sizeof(buf) - 1], 0);
        }
        struct qcow2_state *bst = qcow2_state(base), *tst = qcow2_state(img);
        size_t tables = 0, slices = 0, top_tables = 0;
        for (size_t i = 0; i < bst->l2_cache.nb; i++)
            tables += bst->l2_cache.e[i].buf != NULL;
        for (size_t i = 0; i < bst->l2_slices.nb; i++)
            slices += bst->l2_slices.e[i].buf != NULL;
        for (size_t i = 0; i < tst->l2_cache.nb; i++)
            top_tables += tst->l2_cache.e[i].buf != NULL;
        assert_int_equal(tables, 0);
        assert_true(slices > 0 && slices <= QCOW2_L2_SLICES);
        assert_int_equal(bst->l2_slices.size, QCOW2_L2_SLICE_BYTES);
        assert_true(top_tables > 0); /* the top keeps whole tables */
        assert_int_equal(ic_image_close(img), 0);
    }
}

/* Clears the remembered unallocated run of every layer of @img. */
static void forget_unalloc_runs(ic_image *img)
{
    for (ic_image *l = img; l; l = l->backing)
        qcow2_state(l)->unalloc_start = qcow2_state(l)->unalloc_end = 0;
}

/* Block status answered from a layer's remembered unallocated run (design
 * note 9 of src/qcow2/qcow2-cluster.c) is the answer a fresh lookup gives,
 * for scans and for questions in any order. */
static void test_qcow2_cluster__remembered_unallocated_runs_answer_as_a_lookup_would(
    void **state)
{
    (void)state;
    const uint64_t size = 256ull << 20;
    cf_create("ua0.qcow2", "qcow2", size, NULL, NULL, "cluster_size=4096");
    cf_create("ua1.qcow2", "qcow2", 0, "ua0.qcow2", "qcow2", NULL);
    cf_create("ua2.qcow2", "qcow2", 0, "ua1.qcow2", "qcow2", "extended_l2=on");
    uint64_t st = 42;
    const char *names[] = { "ua0.qcow2", "ua1.qcow2", "ua2.qcow2" };
    for (unsigned i = 0; i < 60; i++) {
        uint64_t off = tu_rand(&st) % size, len = 512 + tu_rand(&st) % (3u << 20);
        if (off + len > size)
            len = size - off;
        cf_write_byte(names[i % 3], off, len, (uint8_t)(1 + i));
    }
    ic_image *a = cf_open("ua2.qcow2", 0), *b = cf_open("ua2.qcow2", 0);
    ic_error *err = NULL;
    /* a scan in guest order, then 2000 questions anywhere */
    uint64_t off = 0;
    for (unsigned q = 0; q < 2000 || off < size; q++) {
        bool scan = off < size;
        if (!scan)
            off = tu_rand(&st) % size;
        uint64_t len = scan ? size - off : 1 + tu_rand(&st) % (8u << 20);
        if (off + len > size)
            len = size - off;
        ic_block_status x, y;
        TU_ASSERT_OK(ic_image_block_status(a, NULL, off, len, &x, &err), err);
        forget_unalloc_runs(b);
        TU_ASSERT_OK(ic_image_block_status(b, NULL, off, len, &y, &err), err);
        assert_int_equal(x.length, y.length);
        assert_int_equal(x.flags, y.flags);
        assert_int_equal(x.depth, y.depth);
        assert_int_equal(x.host_offset, y.host_offset);
        off = scan ? off + x.length : size;
    }
    /* the scan did use remembered runs */
    bool used = false;
    for (ic_image *l = a; l; l = l->backing)
        used |= qcow2_state(l)->unalloc_end > 0;
    assert_true(used);
    assert_int_equal(ic_image_close(a), 0);
    assert_int_equal(ic_image_close(b), 0);
}

static void test_qcow2_cluster__subcluster_bitmaps_decide_each_subcluster(void **state)
{
    (void)state;
    struct qcow2_state s = { .ext_l2 = true };
    uint64_t e = 0x50000 | QCOW2_OFLAG_COPIED;
    uint64_t bm = 0x1ull | (0x2ull << 32);  /* sc0 allocated, sc1 zero */
    assert_int_equal(qcow2_subcluster_type(&s, e, bm, 0), QCOW2_SC_NORMAL);
    assert_int_equal(qcow2_subcluster_type(&s, e, bm, 1), QCOW2_SC_ZERO_ALLOC);
    assert_int_equal(qcow2_subcluster_type(&s, e, bm, 2), QCOW2_SC_UNALLOCATED_ALLOC);
    assert_int_equal(qcow2_subcluster_type(&s, 0, 0x4ull << 32, 2), QCOW2_SC_ZERO_PLAIN);
    assert_int_equal(qcow2_subcluster_type(&s, 0, 0, 2), QCOW2_SC_UNALLOCATED_PLAIN);
    /* allocated and zero at once, allocation bits without a host cluster,
     * a bitmap on a compressed entry: all invalid */
    assert_int_equal(qcow2_subcluster_type(&s, e, 0x1ull | (0x1ull << 32), 0), QCOW2_SC_INVALID);
    assert_int_equal(qcow2_subcluster_type(&s, 0, 0x1, 5), QCOW2_SC_INVALID);
    assert_int_equal(qcow2_subcluster_type(&s, QCOW2_OFLAG_COMPRESSED | 0x1000, 1, 0),
                     QCOW2_SC_INVALID);
}

static void test_qcow2_cluster__cluster_types_follow_the_l2_entry_bits(void **state)
{
    (void)state;
    struct qcow2_state s = { .ext_l2 = false };
    assert_int_equal(qcow2_cluster_type(&s, 0), QCOW2_CT_UNALLOCATED);
    assert_int_equal(qcow2_cluster_type(&s, QCOW2_OFLAG_ZERO), QCOW2_CT_ZERO_PLAIN);
    assert_int_equal(qcow2_cluster_type(&s, 0x30000 | QCOW2_OFLAG_ZERO), QCOW2_CT_ZERO_ALLOC);
    assert_int_equal(qcow2_cluster_type(&s, 0x30000), QCOW2_CT_NORMAL);
    assert_int_equal(qcow2_cluster_type(&s, QCOW2_OFLAG_COMPRESSED | 5), QCOW2_CT_COMPRESSED);
    /* offset 0 + COPIED is a data cluster only with a data file */
    assert_int_equal(qcow2_cluster_type(&s, QCOW2_OFLAG_COPIED), QCOW2_CT_UNALLOCATED);
}

static void test_qcow2_cluster__new_clusters_and_tables_carry_the_copied_flag(void **state)
{
    (void)state;
    cf_create("c.qcow2", "qcow2", 8u << 20, NULL, NULL, "cluster_size=4096");
    ic_image *img = cf_open("c.qcow2", IC_OPEN_RDWR);
    ic_error *err = NULL;
    uint8_t buf[5000];
    memset(buf, 0xab, sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 10000, &err), err);
    struct qcow2_state *s = qcow2_state(img);
    assert_true(s->l1[0] & QCOW2_OFLAG_COPIED);
    uint8_t *l2;
    assert_int_equal(qcow2_get_l2(img, s->l1[0] & QCOW2_L1E_OFFSET_MASK, &l2), 0);
    for (uint32_t i = 2; i <= 3; i++) {
        uint64_t e = qcow2_l2_get(s, l2, i);
        assert_true(e & QCOW2_OFLAG_COPIED);
        assert_int_equal(qcow2_cluster_type(s, e), QCOW2_CT_NORMAL);
    }
    assert_int_equal(qcow2_l2_get(s, l2, 4), 0);
    qcow2_cache_put(&s->l2_cache, &l2);
    assert_int_equal(ic_image_close(img), 0);
    cf_assert_qemu_clean("c.qcow2");
}

/* Whether every byte of [off, off+len) lies in an L2 table of @s. */
static bool inside_l2_tables(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    for (uint64_t p = off; p < off + len; p += s->cluster_size) {
        bool found = false;
        for (uint32_t i = 0; i < s->l1_size && !found; i++)
            found = (s->l1[i] & QCOW2_L1E_OFFSET_MASK) == (p & ~s->cluster_offset_mask);
        if (!found)
            return false;
    }
    return true;
}

static void test_qcow2_cluster__a_scan_prefetches_the_l2_tables_ahead_and_random_reads_do_not(
    void **state)
{
    (void)state;
    /* 4 KiB clusters: one L2 table per 2 MiB; 24 tables, each with data */
    const uint64_t tbl = 2u << 20, n = 24;
    cf_create("ra.qcow2", "qcow2", n * tbl, NULL, NULL, "cluster_size=4096");
    ic_image *img = cf_open("ra.qcow2", IC_OPEN_RDWR);
    uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    ic_error *err = NULL;
    for (uint64_t i = 0; i < n; i++)
        TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), i * tbl + 8192, &err), err);
    assert_int_equal(ic_image_close(img), 0);

    /* a scan in guest order: once it moves from the table of entry 0 to
     * the next, the tables of entries 2..n-1 are hinted (entry 1's is being
     * read), and nothing but L2 tables is hinted */
    struct rec_io *r = rec_io_open(cf_path("ra.qcow2"), false, -1);
    img = rec_io_image(r, "qcow2", false);
    struct qcow2_state *s = qcow2_state(img);
    for (uint64_t off = 0; off < n * tbl;) {
        ic_block_status st;
        TU_ASSERT_OK(ic_image_block_status(img, NULL, off, n * tbl - off, &st, &err), err);
        off += st.length;
    }
    assert_true(r->nprefetch >= 1 && r->nprefetch <= REC_IO_MAX);
    for (unsigned h = 0; h < r->nprefetch; h++)
        assert_true(inside_l2_tables(s, r->prefetch_off[h], r->prefetch_len[h]));
    for (uint64_t i = 2; i < n; i++) {
        uint64_t t = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        bool hinted = false;
        for (unsigned h = 0; h < r->nprefetch && !hinted; h++)
            hinted = t >= r->prefetch_off[h] && t < r->prefetch_off[h] + r->prefetch_len[h];
        assert_true(hinted);
    }
    assert_int_equal(ic_image_close(img), 0);

    /* lookups that jump around issue no hint */
    r = rec_io_open(cf_path("ra.qcow2"), false, -1);
    img = rec_io_image(r, "qcow2", false);
    static const uint64_t order[] = { 20, 3, 11, 7, 17, 0, 22, 5 };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), order[i] * tbl + 8192, &err), err);
        assert_int_equal(buf[0], 0x5a);
    }
    assert_int_equal(r->nprefetch, 0);
    assert_int_equal(ic_image_close(img), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_cluster__cluster_types_follow_the_l2_entry_bits),
        cmocka_unit_test(test_qcow2_cluster__subcluster_bitmaps_decide_each_subcluster),
        cmocka_unit_test(test_qcow2_cluster__new_clusters_and_tables_carry_the_copied_flag),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_512_byte_clusters),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_on_v2_images),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_default_clusters),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_2m_clusters),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_for_every_refcount_width),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_extended_l2),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_zstd),
        cmocka_unit_test(test_qcow2_cluster__random_io_matches_model_with_lazy_refcounts),
        cmocka_unit_test(test_qcow2_cluster__unaligned_virtual_size_reads_and_writes_its_tail),
        cmocka_unit_test(test_qcow2_cluster__writes_over_a_backing_chain_copy_on_write),
        cmocka_unit_test(test_qcow2_cluster__external_data_files_hold_the_guest_data),
        cmocka_unit_test(test_qcow2_cluster__metadata_preallocation_maps_one_contiguous_run),
        cmocka_unit_test(
            test_qcow2_cluster__a_read_only_image_keeps_no_refcounts_after_the_prealloc_test),
        cmocka_unit_test(
            test_qcow2_cluster__the_prealloc_test_decides_alike_read_only_and_writable),
        cmocka_unit_test(test_qcow2_cluster__a_backing_layer_looks_up_clusters_in_l2_slices),
        cmocka_unit_test(
            test_qcow2_cluster__remembered_unallocated_runs_answer_as_a_lookup_would),
        cmocka_unit_test(
            test_qcow2_cluster__a_scan_prefetches_the_l2_tables_ahead_and_random_reads_do_not),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
