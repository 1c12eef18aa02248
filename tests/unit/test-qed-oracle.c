/*
 * test-qed-oracle.c - QED against qemu-img/qemu-io 7.2 as the oracle.
 *
 *  - the matrix: cluster sizes 4 KiB, 64 KiB, 1 MiB x table sizes 1, 2, 4,
 *    16 x backing raw, qcow2, qed.  In each cell imgchain reads exactly
 *    what qemu-io wrote (compared with qemu-img convert's raw output), and
 *    what imgchain wrote checks clean and compares equal under qemu-img.
 *    qemu 7.2 cannot open QED images whose tables are one cluster ("QED
 *    table offset is invalid": an off-by-one in qed_check_table_offset), so
 *    table_size 1 cells assert that refusal and check imgchain's own writes
 *    with imgchain instead.
 *  - create: the file imgchain creates is byte-identical to qemu-img's.
 *  - damaged images (tests/helpers/qed-damage): imgchain's check counters
 *    equal qemu-img check --output=json's, and after imgchain's repair
 *    qemu-img check finds the image clean.
 * qemu runs under a timeout and a memory limit, on closed images only.
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
#include "qed-damage.h"

#define QIMG "ulimit -v 4000000; timeout 120 qemu-img"
#define QIO "ulimit -v 4000000; timeout 120 qemu-io"

static const uint64_t disk = 8 << 20;

static ic_image *open_img(const char *path, unsigned flags)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    return img;
}

/* Value of "key": N in qemu-img's JSON; 0 when absent (qemu omits zeros). */
static int64_t json_int(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : 0;
}

static ic_check_result ic_check_file(const char *path, unsigned fix)
{
    ic_image *img = open_img(path, (fix ? IC_OPEN_RDWR : 0) | IC_OPEN_CHECK | IC_OPEN_NO_BACKING);
    ic_check_result res;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_check(img, fix, NULL, NULL, &res, &err), err);
    TU_ASSERT_OK(ic_image_close(img), err);
    return res;
}

/* qemu-img check --output=json; returns its exit code, JSON in *out. */
static int qemu_check(const char *path, char **out)
{
    return tu_sh_out(out, QIMG " check -f qed --output=json '%s' 2>/dev/null", path);
}

static void write_both(ic_image *img, struct tu_model *m, uint64_t off, size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tu_fill_pattern(buf, len, seed);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, buf, len, off, &err), err);
    tu_model_write(m, buf, len, off);
    free(buf);
}

static void assert_file_equals_image(const char *raw, ic_image *img)
{
    uint8_t *want;
    size_t len;
    assert_int_equal(tu_read_file(raw, &want, &len), 0);
    assert_int_equal(len, ic_image_size(img));
    struct tu_model m = { want, len };
    TU_MODEL_ASSERT_IMAGE(&m, img);
    free(want);
}

static const char *ext_of(const char *fmt)
{
    return !strcmp(fmt, "raw") ? "raw" : !strcmp(fmt, "qcow2") ? "qcow2" : "qed";
}

static void make_base(const char *dir, const char *fmt)
{
    assert_int_equal(tu_sh("cd '%s' && " QIMG " create -q -f %s base.%s %" PRIu64
                           " && " QIO " -f %s -c 'write -P 0x11 0 3M' -c 'write -P 0x22 5M 1M'"
                           " -c 'write -P 0x23 7M 4k' base.%s >/dev/null",
                           dir, fmt, ext_of(fmt), disk, fmt, ext_of(fmt)), 0);
}

/* qemu-io writes an overlay; imgchain must read what qemu-img convert reads. */
static void cell_qemu_writes(const char *dir, uint32_t cs, uint32_t ts, const char *bfmt)
{
    int rc = tu_sh("cd '%s' && " QIMG " create -q -f qed -o cluster_size=%u,table_size=%u "
                   "-b base.%s -F %s a.qed", dir, cs, ts, ext_of(bfmt), bfmt);
    assert_int_equal(rc, 0);
    char *out = NULL;
    rc = tu_sh_out(&out, "cd '%s' && " QIO " -c 'write -P 0x33 1000 5000' -c 'write -P 0x44 2M 1M'"
                   " -c 'write -z 6M 1M' -c 'write -P 0x55 7340100 100' -c 'write -P 0x66 8380416 8192'"
                   " a.qed", dir);
    if (ts == 1) {
        /* qemu 7.2 refuses every QED image with one-cluster tables */
        assert_non_null(strstr(out, "table offset is invalid"));
        free(out);
        return;
    }
    assert_int_equal(rc, 0);
    free(out);
    assert_int_equal(tu_sh("cd '%s' && " QIMG " convert -O raw a.qed a.raw", dir), 0);
    char *a = tu_path(dir, "a.qed"), *araw = tu_path(dir, "a.raw");
    ic_image *img = open_img(a, 0);
    assert_file_equals_image(araw, img);
    ic_image_close(img);
    /* imgchain's check counters equal qemu's on qemu's image */
    ic_check_result r = ic_check_file(a, 0);
    rc = qemu_check(a, &out);
    assert_int_equal(rc, 0);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(r.total_clusters, json_int(out, "total-clusters"));
    assert_int_equal(r.allocated_clusters, json_int(out, "allocated-clusters"));
    assert_int_equal(r.fragmented_clusters, json_int(out, "fragmented-clusters"));
    free(out);
    free(a);
    free(araw);
}

/* imgchain writes an overlay; qemu-img must find it clean and equal. */
static void cell_imgchain_writes(const char *dir, uint32_t cs, uint32_t ts, const char *bfmt)
{
    char *b = tu_path(dir, "b.qed"), *model = tu_path(dir, "b-model.raw");
    char bname[32], opts[64];
    snprintf(bname, sizeof(bname), "base.%s", ext_of(bfmt));
    snprintf(opts, sizeof(opts), "cluster_size=%u,table_size=%u", cs, ts);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qed";
    co.options = opts;
    co.backing_file = bname;
    co.backing_format = bfmt;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(b, &co, &err), err);
    ic_image *img = open_img(b, IC_OPEN_RDWR);
    struct tu_model *m = tu_model_from_image(img);
    write_both(img, m, 1000, 5000, 1);
    write_both(img, m, (2 << 20) - 777, (1 << 20) + 1554, 2);
    write_both(img, m, 4096, 100, 3); /* in place or COW again */
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, 5 << 20, 1 << 20, 0, &err), err);
    tu_model_zero(m, 5 << 20, 1 << 20);
    TU_ASSERT_OK(ic_image_pwrite_zeroes(img, (6 << 20) + 100, 300000, 0, &err), err);
    tu_model_zero(m, (6 << 20) + 100, 300000);
    write_both(img, m, disk - 10, 10, 4);
    TU_MODEL_ASSERT_IMAGE(m, img);
    TU_ASSERT_OK(ic_image_close(img), err);
    assert_int_equal(tu_model_save(m, model), 0);
    ic_check_result r = ic_check_file(b, 0);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    if (ts == 1) {
        TU_MODEL_ASSERT_FILE(m, b);
    } else {
        char *out = NULL;
        int rc = qemu_check(b, &out);
        if (rc != 0)
            print_error("qemu-img check: %s\n", out);
        assert_int_equal(rc, 0);
        assert_int_equal(json_int(out, "allocated-clusters"), r.allocated_clusters);
        assert_int_equal(json_int(out, "fragmented-clusters"), r.fragmented_clusters);
        free(out);
        assert_int_equal(tu_sh("cd '%s' && " QIMG " compare -q -f qed -F raw b.qed b-model.raw",
                               dir), 0);
    }
    tu_model_free(m);
    free(b);
    free(model);
}

static void test_qed_oracle__matrix_of_cluster_sizes_table_sizes_and_backing_formats(void **state)
{
    (void)state;
    static const uint32_t cluster_sizes[] = { 4096, 65536, 1 << 20 };
    static const uint32_t table_sizes[] = { 1, 2, 4, 16 };
    static const char *const formats[] = { "raw", "qcow2", "qed" };
    for (size_t f = 0; f < IC_ARRAY_SIZE(formats); f++) {
        cf_reset(); /* each backing format in an empty folder */
        const char *dir = cf_dir;
        make_base(dir, formats[f]);
        for (size_t c = 0; c < IC_ARRAY_SIZE(cluster_sizes); c++) {
            for (size_t t = 0; t < IC_ARRAY_SIZE(table_sizes); t++) {
                print_message("cell: cluster %u, table %u, backing %s\n", cluster_sizes[c],
                              table_sizes[t], formats[f]);
                cell_qemu_writes(dir, cluster_sizes[c], table_sizes[t], formats[f]);
                cell_imgchain_writes(dir, cluster_sizes[c], table_sizes[t], formats[f]);
            }
        }
    }
}

static void test_qed_oracle__create_writes_the_same_bytes_as_qemu_img(void **state)
{
    (void)state;
    const char *dir = cf_dir;
    assert_int_equal(tu_sh("cd '%s' && " QIMG " create -q -f raw base.raw 3M && "
                           QIMG " create -q -f qcow2 base.qcow2 3M", dir), 0);
    static const struct {
        const char *opts, *backing, *bfmt;
        uint64_t size;
    } cases[] = {
        { "", NULL, NULL, 64 << 20 },
        { "cluster_size=4096,table_size=2", NULL, NULL, 1000 },
        { "cluster_size=1M,table_size=16", NULL, NULL, 1 << 30 },
        { "", "base.raw", "raw", 0 },
        { "cluster_size=8192", "base.qcow2", "qcow2", 5 << 20 },
    };
    for (size_t i = 0; i < IC_ARRAY_SIZE(cases); i++) {
        char *mine = tu_path(dir, "mine.qed"), *theirs = tu_path(dir, "theirs.qed");
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.format = "qed";
        co.options = cases[i].opts;
        co.size = cases[i].size;
        co.size_set = cases[i].size != 0;
        co.backing_file = cases[i].backing;
        co.backing_format = cases[i].bfmt;
        ic_error *err = NULL;
        TU_ASSERT_OK(ic_image_create(mine, &co, &err), err);
        char extra[128] = "";
        if (cases[i].backing)
            snprintf(extra, sizeof(extra), "-b %s -F %s", cases[i].backing, cases[i].bfmt);
        char size[32] = "";
        if (cases[i].size)
            snprintf(size, sizeof(size), "%" PRIu64, cases[i].size);
        assert_int_equal(tu_sh("cd '%s' && " QIMG " create -q -f qed %s%s %s theirs.qed %s", dir,
                               *cases[i].opts ? "-o " : "", cases[i].opts, extra, size), 0);
        assert_int_equal(tu_sh("cmp '%s' '%s'", mine, theirs), 0);
        free(mine);
        free(theirs);
    }
}

/* One damaged image: counters equal qemu's, repair leaves it clean. */
struct damage {
    const char *what;
    int (*apply)(const char *path);
    bool repairable;
    bool leaks_may_remain; /* a table blocks compaction (see qed-check.c) */
};

static int dmg_l2_past_eof(const char *p) { return qd_set_l2(p, 8192, UINT64_C(1) << 32); }
static int dmg_l2_unaligned(const char *p) { return qd_set_l2(p, 40960, 0x3010); }
static int dmg_l2_at_l1(const char *p) { return qd_set_l2(p, 40960, 4096); }
static int dmg_l1_past_eof(const char *p) { return qd_set_l1(p, 5, UINT64_C(1) << 40); }
static int dmg_leaks_at_end(const char *p) { return qd_append_clusters(p, 4); }
static int dmg_leak_in_middle(const char *p) { return qd_set_l2(p, 4096, 0); }
static int dmg_double_ref(const char *p) { return qd_double_reference(p, 0, 40960); }
static int dmg_need_check(const char *p) { return qd_set_need_check(p, true); }
static int dmg_many(const char *p)
{
    int ret = qd_set_l2(p, 8192, UINT64_C(1) << 32);
    if (ret == 0)
        ret = qd_set_l2(p, 12288, 0);
    if (ret == 0)
        ret = qd_append_clusters(p, 2);
    if (ret == 0)
        ret = qd_set_need_check(p, true);
    return ret;
}

static void test_qed_oracle__check_counts_damage_like_qemu_and_repair_makes_it_clean(void **state)
{
    (void)state;
    static const struct damage cases[] = {
        { "L2 entry past EOF", dmg_l2_past_eof, true, false },
        { "L2 entry unaligned", dmg_l2_unaligned, true, false },
        { "L2 entry pointing at the L1 table", dmg_l2_at_l1, false, false },
        { "L1 entry past EOF", dmg_l1_past_eof, true, false },
        { "leaked clusters at the end", dmg_leaks_at_end, true, false },
        { "leaked cluster in the middle", dmg_leak_in_middle, true, false },
        { "cluster referenced twice", dmg_double_ref, false, false },
        { "need-check left set", dmg_need_check, true, false },
        { "several at once", dmg_many, true, true },
    };
    for (size_t i = 0; i < IC_ARRAY_SIZE(cases); i++) {
        print_message("damage: %s\n", cases[i].what);
        cf_reset(); /* each damage on a fresh image */
        const char *dir = cf_dir;
        char *path = tu_path(dir, "d.qed");
        assert_int_equal(tu_sh("cd '%s' && " QIMG " create -q -f qed -o cluster_size=4096,"
                               "table_size=2 d.qed 16M && " QIO " -c 'write -P 1 0 16k' "
                               "-c 'write -P 2 40k 8k' -c 'write -P 3 4M 8k' -c 'write -P 4 16k 4k' "
                               "d.qed >/dev/null", dir), 0);
        assert_int_equal(cases[i].apply(path), 0);
        char *out = NULL;
        int rc = qemu_check(path, &out);
        ic_check_result r = ic_check_file(path, 0);
        int want_rc = r.corruptions ? 2 : r.leaks ? 3 : 0;
        assert_int_equal(rc, want_rc);
        assert_int_equal(r.corruptions, json_int(out, "corruptions"));
        assert_int_equal(r.leaks, json_int(out, "leaks"));
        assert_int_equal(r.check_errors, json_int(out, "check-errors"));
        assert_int_equal(r.total_clusters, json_int(out, "total-clusters"));
        assert_int_equal(r.allocated_clusters, json_int(out, "allocated-clusters"));
        assert_int_equal(r.fragmented_clusters, json_int(out, "fragmented-clusters"));
        free(out);
        r = ic_check_file(path, IC_FIX_ERRORS | IC_FIX_LEAKS);
        rc = qemu_check(path, &out);
        if (cases[i].repairable) {
            if (rc != 0)
                print_error("after repair: %s\n", out);
            assert_int_equal(json_int(out, "corruptions"), 0);
            /* what imgchain says it could not repair is what qemu finds */
            assert_int_equal(json_int(out, "leaks"), r.leaks);
            if (!cases[i].leaks_may_remain)
                assert_int_equal(r.leaks, 0);
            assert_int_equal(rc, r.leaks ? 3 : 0);
            uint64_t f;
            assert_int_equal(qd_peek_le64(path, 16, &f), 0);
            assert_int_equal(f & 2, 0);
        } else {
            assert_int_equal(rc, 2);
        }
        free(out);
        free(path);
    }
}

int main(void)
{
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io")) {
        printf("qemu-img/qemu-io missing: install qemu-utils (make deps)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_qed_oracle__create_writes_the_same_bytes_as_qemu_img,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_oracle__check_counts_damage_like_qemu_and_repair_makes_it_clean,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_qed_oracle__matrix_of_cluster_sizes_table_sizes_and_backing_formats,
            cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
