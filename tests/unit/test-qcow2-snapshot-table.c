/*
 * test-qcow2-snapshot-table.c - damaged qcow2 snapshot tables (the reader in
 * src/qcow2/qcow2.c, the check and repair in src/qcow2/qcow2-check.c).
 *
 * Each case damages one thing in the table of an image with one snapshot:
 * a normal open refuses it with the exact message (or opens it, as qemu
 * does) and leaves the file unchanged; a check-mode open counts it with the
 * exact line and counters qemu-img check gives, or
 * stops with the exact error where qemu's check stops; `-r all` repairs
 * what it can and a second check is clean.  Nothing may crash: the suite
 * also runs under `make check SANITIZE=address,undefined`.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/snapshot.h"
#include "util/endian.h"

#define CS 65536u           /* cluster size of the test images */
#define DISK (4u << 20)
#define MAX_LINES 4096

struct img {
    uint8_t *b;
    size_t len;
};

struct fx {
    char *dir, *path;
    struct img m;               /* the image as damaged, in memory */
    char *lines[MAX_LINES];     /* report lines of the last check */
    size_t nlines;
};

/* ---- building the image ------------------------------------------------- */

static void make_base(const char *path, const char *opts)
{
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.options = opts;
    co.size = DISK;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR | IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    uint8_t buf[65536];
    tu_fill_pattern(buf, sizeof(buf), 7);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 65536, &err), err);
    TU_ASSERT_OK(ic_snapshot_create(img, "s1", &err), err);
    TU_ASSERT_OK(ic_image_pwrite(img, buf, 4096, 65536, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

static int fx_setup_opts(void **state, const char *opts)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cf_setup(NULL); /* the one test-folder fixture */
    f->dir = strdup(cf_dir);
    assert_non_null(f->dir);
    f->path = tu_path(f->dir, "a.qcow2");
    make_base(f->path, opts);
    assert_int_equal(tu_read_file(f->path, &f->m.b, &f->m.len), 0);
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_opts(state, NULL);
}

static int fx_setup_v2(void **state)
{
    return fx_setup_opts(state, "compat=0.10");
}

static void clear_lines(struct fx *f)
{
    for (size_t i = 0; i < f->nlines; i++)
        free(f->lines[i]);
    f->nlines = 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    clear_lines(f);
    cf_teardown(NULL);
    free(f->dir);
    free(f->path);
    free(f->m.b);
    free(f);
    return 0;
}

static uint64_t table_offset(const struct img *m)
{
    return ic_load_be64(m->b + 64);
}

/* Sets a 16-bit refcount (the default width) in refcount block 0. */
static void set_rc(struct img *m, uint64_t cluster, uint16_t v)
{
    uint64_t rt = ic_load_be64(m->b + 48);
    uint64_t rb = ic_load_be64(m->b + rt) & ~0x1ffull;
    assert_true(rb && cluster < CS / 2);
    ic_store_be16(m->b + rb + 2 * cluster, v);
}

static void grow(struct img *m, size_t len)
{
    if (len <= m->len)
        return;
    m->b = realloc(m->b, len);
    assert_non_null(m->b);
    memset(m->b + m->len, 0, len - m->len);
    m->len = len;
}

/* Serializes one entry at @p (zeroed, 8-aligned); returns its length.  The
 * extra data holds the disk size at bytes 8..15 when it is that long. */
static size_t put_entry(uint8_t *p, uint64_t l1off, uint32_t l1size, const char *id,
                        uint16_t id_len, const char *name, uint16_t name_len, uint32_t extra)
{
    size_t len = (40 + (size_t)extra + id_len + name_len + 7) & ~(size_t)7;
    memset(p, 0, len);
    ic_store_be64(p, l1off);
    ic_store_be32(p + 8, l1size);
    ic_store_be16(p + 12, id_len);
    ic_store_be16(p + 14, name_len);
    ic_store_be32(p + 36, extra);
    if (extra >= 16)
        ic_store_be64(p + 48, DISK);
    for (uint32_t i = 24; i < extra; i++)
        p[40 + i] = (uint8_t)i;
    memcpy(p + 40 + extra, id, strlen(id));
    memcpy(p + 40 + extra + id_len, name, strlen(name));
    return len;
}

/* Puts @tab (@len bytes, @nb entries) at the cluster-aligned end of the
 * image, refcounted, frees the old table and switches the header to it. */
static uint64_t replace_table(struct img *m, const uint8_t *tab, size_t len, uint32_t nb)
{
    uint64_t old = table_offset(m);
    set_rc(m, old / CS, 0);
    uint64_t off = (m->len + CS - 1) / CS * CS;
    grow(m, off + (len + CS - 1) / CS * CS);
    memcpy(m->b + off, tab, len);
    for (uint64_t c = off / CS; c < (off + len + CS - 1) / CS; c++)
        set_rc(m, c, 1);
    ic_store_be32(m->b + 60, nb);
    ic_store_be64(m->b + 64, off);
    return off;
}

/* The L1 offset and size of the image's one snapshot. */
static void snap_l1(const struct img *m, uint64_t *off, uint32_t *size)
{
    *off = ic_load_be64(m->b + table_offset(m));
    *size = ic_load_be32(m->b + table_offset(m) + 8);
}

static void save(struct fx *f)
{
    assert_int_equal(tu_write_file(f->path, f->m.b, f->m.len), 0);
}

static void assert_unchanged(struct fx *f)
{
    uint8_t *b;
    size_t len;
    assert_int_equal(tu_read_file(f->path, &b, &len), 0);
    assert_int_equal(len, f->m.len);
    assert_memory_equal(b, f->m.b, len);
    free(b);
}

/* ---- opening and checking ---------------------------------------------- */

/* A normal open, read-only and read-write: refused with @errnum and @msg. */
static void expect_open_refused(struct fx *f, int errnum, const char *msg)
{
    for (int rw = 0; rw < 2; rw++) {
        ic_open_options o = IC_OPEN_OPTIONS_INIT;
        o.flags = IC_OPEN_NO_LOCK | (rw ? IC_OPEN_RDWR : 0);
        ic_image *img = NULL;
        ic_error *err = NULL;
        int ret = ic_image_open(&img, f->path, &o, &err);
        if (ret == 0)
            ic_image_close(img);
        TU_ASSERT_ERR(ret, err, errnum, msg);
    }
    assert_unchanged(f);
}

static void collect(void *payload, const char *line)
{
    struct fx *f = payload;
    assert_true(strlen(line) > 0);
    if (f->nlines < MAX_LINES)
        f->lines[f->nlines++] = strdup(line);
}

/* Opens in check mode (read-write when @fix repairs) and checks. */
static int check(struct fx *f, unsigned fix, ic_check_result *r, ic_error **err)
{
    clear_lines(f);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK | IC_OPEN_CHECK |
              ((fix && !(fix & IC_CHECK_DRY_RUN)) ? IC_OPEN_RDWR : 0);
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, err), *err);
    int ret = ic_image_check(img, fix, collect, f, r, err);
    assert_int_equal(ic_image_close(img), 0);
    return ret;
}

static void check_ok(struct fx *f, unsigned fix, ic_check_result *r)
{
    ic_error *err = NULL;
    TU_ASSERT_OK(check(f, fix, r, &err), err);
}

/* A report line starting with @prefix and containing @part (if any). */
static void assert_line(struct fx *f, const char *prefix, const char *part)
{
    for (size_t i = 0; i < f->nlines; i++)
        if (!strncmp(f->lines[i], prefix, strlen(prefix)) && (!part || strstr(f->lines[i], part)))
            return;
    for (size_t i = 0; i < f->nlines; i++)
        print_message("  line: %s\n", f->lines[i]);
    fail_msg("no line '%s...%s'", prefix, part ? part : "");
}

static void assert_clean(struct fx *f)
{
    ic_check_result r;
    check_ok(f, 0, &r);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(r.check_errors, 0);
}

/* Repairs with -r all after a dry run that writes nothing; returns the
 * repair's counters. */
static void repair(struct fx *f, ic_check_result *r)
{
    ic_check_result d;
    check_ok(f, IC_FIX_LEAKS | IC_FIX_ERRORS | IC_CHECK_DRY_RUN, &d);
    assert_int_equal(d.corruptions_fixed + d.leaks_fixed, 0);
    assert_unchanged(f);
    check_ok(f, IC_FIX_LEAKS | IC_FIX_ERRORS, r);
}

static int nsnapshots(struct fx *f)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_LOCK;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, f->path, &o, &err), err);
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    TU_ASSERT_OK(n, err);
    ic_snapshot_list_free(v, (size_t)n);
    assert_int_equal(ic_image_close(img), 0);
    return n;
}

/* ---- the cases ------------------------------------------------------------ */

static void test_qcow2_snapshot_table__unaligned_l1_is_refused_counted_and_dropped(void **state)
{
    struct fx *f = *state;
    uint64_t l1;
    uint32_t n;
    snap_l1(&f->m, &l1, &n);
    uint64_t tab = table_offset(&f->m);
    ic_store_be64(f->m.b + tab, l1 + 512);
    save(f);
    char msg[160];
    snprintf(msg, sizeof(msg), "snapshot 0: L1 table offset %#" PRIx64 " unaligned (snapshot "
             "table entry at %#" PRIx64 "); run 'imgchain check -r all'", l1 + 512, tab);
    expect_open_refused(f, EINVAL, msg);

    ic_check_result r;
    check_ok(f, 0, &r);
    snprintf(msg, sizeof(msg), "l1_offset=%#" PRIx64 ": L1 table is not cluster aligned; "
             "snapshot table entry corrupted (entry 0 at 0x%" PRIx64 ")", l1 + 512, tab);
    assert_line(f, "ERROR snapshot 1 (s1) ", msg);
    assert_int_equal(r.corruptions, 1);
    assert_true(r.leaks > 0);  /* what only the snapshot referenced */
    assert_unchanged(f);

    repair(f, &r);
    assert_line(f, "Dropping snapshot 1 (s1) ", NULL);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.corruptions_fixed, 1);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 0);
}

static void test_qcow2_snapshot_table__oversized_l1_is_refused_and_counted(void **state)
{
    struct fx *f = *state;
    uint64_t tab = table_offset(&f->m);
    ic_store_be32(f->m.b + tab + 8, 0x400001); /* 32 MiB + 8 bytes of L1 */
    save(f);
    expect_open_refused(f, EFBIG, "snapshot 0: L1 table is too large (4194305 entries, "
                        "snapshot table entry at 0x");
    ic_check_result r;
    check_ok(f, 0, &r);
    assert_line(f, "ERROR snapshot 1 (s1) l1_size=0x400001: L1 table is too large; snapshot "
                "table entry corrupted (entry 0 at 0x", NULL);
    assert_int_equal(r.corruptions, 1);
    assert_unchanged(f);
    repair(f, &r);
    assert_int_equal(r.corruptions, 0);
    assert_clean(f);
}

static void test_qcow2_snapshot_table__extra_data_over_1024_is_refused_until_repair_cuts_it(
    void **state)
{
    struct fx *f = *state;
    uint64_t l1;
    uint32_t n;
    snap_l1(&f->m, &l1, &n);
    uint8_t e[2048];
    size_t len = put_entry(e, l1, n, "1", 1, "s1", 2, 1100);
    uint64_t tab = replace_table(&f->m, e, len, 1);
    save(f);
    char msg[200];
    snprintf(msg, sizeof(msg), "snapshot table entry 0 at %#" PRIx64 " has too much extra data "
             "(1100 bytes, at most 1024); run 'imgchain check -r all' to cut it", tab);
    expect_open_refused(f, EFBIG, msg);

    /* qemu's check cannot read the table without repair and stops */
    ic_check_result r;
    ic_error *err = NULL;
    snprintf(msg, sizeof(msg), "failed to read the snapshot table: too much extra metadata in "
             "snapshot table entry 0 at 0x%" PRIx64 " (1100 > 1024 bytes); run 'imgchain check "
             "-r all' to cut it", tab);
    TU_ASSERT_ERR(check(f, 0, &r, &err), err, EFBIG, msg);
    TU_ASSERT_ERR(check(f, IC_FIX_LEAKS, &r, &err), err, EFBIG, msg);
    assert_unchanged(f);

    check_ok(f, IC_FIX_LEAKS | IC_FIX_ERRORS | IC_CHECK_DRY_RUN, &r);
    snprintf(msg, sizeof(msg), "Would discard too much extra metadata in snapshot table entry 0 "
             "(1100 > 1024; entry at 0x%" PRIx64, tab);
    assert_line(f, msg, NULL);
    assert_int_equal(r.corruptions, 1);
    repair(f, &r);
    assert_line(f, "Discarding too much extra metadata in snapshot table entry 0 (1100 > 1024",
                NULL);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.corruptions_fixed, 1);
    assert_clean(f);
    /* the first 1024 bytes of extra data are kept, the snapshot too */
    assert_int_equal(nsnapshots(f), 1);
    uint8_t *b;
    size_t blen;
    assert_int_equal(tu_read_file(f->path, &b, &blen), 0);
    uint64_t t = ic_load_be64(b + 64);
    assert_int_equal(ic_load_be32(b + t + 36), 1024);
    for (uint32_t i = 24; i < 1024; i++)
        assert_int_equal(b[t + 40 + i], (uint8_t)i);
    assert_memory_equal(b + t + 40 + 1024, "1s1", 3);
    free(b);
}

static void test_qcow2_snapshot_table__incomplete_v3_entry_opens_and_repair_completes_it(
    void **state)
{
    struct fx *f = *state;
    uint64_t l1;
    uint32_t n;
    snap_l1(&f->m, &l1, &n);
    uint8_t e[256];
    size_t len = put_entry(e, l1, n, "1", 1, "s1", 2, 8);
    uint64_t tab = replace_table(&f->m, e, len, 1);
    save(f);
    /* qemu opens it: only its check complains */
    assert_int_equal(nsnapshots(f), 1);
    assert_unchanged(f);
    ic_check_result r;
    check_ok(f, 0, &r);
    char msg[200];
    snprintf(msg, sizeof(msg), "ERROR snapshot table entry 0 is incomplete (extra_data_size 8 < "
             "16 in a v3 image; entry at 0x%" PRIx64 " in the snapshot table at 0x%" PRIx64 ")",
             tab, tab);
    assert_line(f, msg, NULL);
    assert_int_equal(r.corruptions, 1);
    assert_int_equal(r.leaks, 0);
    repair(f, &r);
    assert_line(f, "Repairing snapshot table entry 0 is incomplete", NULL);
    assert_int_equal(r.corruptions_fixed, 1);
    assert_int_equal(r.corruptions, 0);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 1);
}

static void test_qcow2_snapshot_table__short_v2_entry_is_not_incomplete(void **state)
{
    struct fx *f = *state;
    uint64_t l1;
    uint32_t n;
    snap_l1(&f->m, &l1, &n);
    uint8_t e[256];
    size_t len = put_entry(e, l1, n, "1", 1, "s1", 2, 0);
    replace_table(&f->m, e, len, 1);
    save(f);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 1);
}

static void test_qcow2_snapshot_table__table_past_eof_counts_a_reference_past_the_end(
    void **state)
{
    struct fx *f = *state;
    uint64_t old = table_offset(&f->m);
    uint64_t off = (f->m.len + CS - 1) / CS * CS + 4 * CS;
    ic_store_be64(f->m.b + 64, off);
    save(f);
    /* entries past the end read as zeroes: an empty, disk-only snapshot */
    assert_int_equal(nsnapshots(f), 1);
    assert_unchanged(f);
    ic_check_result r;
    check_ok(f, 0, &r);
    char msg[200];
    snprintf(msg, sizeof(msg), "ERROR: counting reference for region exceeding the end of the file "
             "by one cluster or more: offset 0x%" PRIx64 " size 0x", off);
    assert_line(f, msg, "(snapshot table at 0x");
    snprintf(msg, sizeof(msg), "(host offset 0x%" PRIx64 ", refcount block at", old);
    assert_line(f, "Leaked cluster ", msg);
    /* the zero entry is also an incomplete v3 entry */
    assert_line(f, "ERROR snapshot table entry 0 is incomplete (extra_data_size 0", NULL);
    assert_int_equal(r.corruptions, 2);
    /* the file is not grown for a table (design note 8) but -r all
     * completes the entry into a new table, which fixes both */
    repair(f, &r);
    assert_line(f, "ERROR: counting reference for region exceeding", "(snapshot table at 0x");
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.corruptions_fixed, 2);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 1);
}

static void test_qcow2_snapshot_table__v2_table_past_eof_is_not_repaired(void **state)
{
    struct fx *f = *state;
    uint64_t off = (f->m.len + CS - 1) / CS * CS + 4 * CS;
    ic_store_be64(f->m.b + 64, off);
    save(f);
    ic_check_result r;
    check_ok(f, 0, &r);
    assert_line(f, "ERROR: counting reference for region exceeding", "(snapshot table at 0x");
    assert_int_equal(r.corruptions, 1);
    repair(f, &r);
    assert_int_equal(r.corruptions, 1);
    assert_line(f, "ERROR: counting reference for region exceeding", "(snapshot table at 0x");
    assert_int_equal(nsnapshots(f), 1);
}

static void test_qcow2_snapshot_table__count_past_the_table_reads_what_follows(void **state)
{
    struct fx *f = *state;
    /* 2000 entries of which one was written: the next ones are read from
     * the clusters after the table, here L1/L2/data bytes, until one of
     * them claims more than 1024 bytes of extra data */
    ic_store_be32(f->m.b + 60, 2000);
    save(f);
    expect_open_refused(f, EFBIG, "has too much extra data (");
}

static void test_qcow2_snapshot_table__count_past_eof_reads_empty_entries(void **state)
{
    struct fx *f = *state;
    /* the table moved to the end of the file: the 1999 entries past the
     * one written read as zeroes (disk-only, no L1, empty id and name) */
    uint64_t tab = table_offset(&f->m);
    uint8_t e[72]; /* 40 + 24 + "1" + "s1", aligned */
    memcpy(e, f->m.b + tab, sizeof(e));
    uint64_t off = replace_table(&f->m, e, sizeof(e), 1);
    f->m.len = off + sizeof(e); /* the file ends inside the table's cluster */
    ic_store_be32(f->m.b + 60, 2000);
    save(f);
    assert_int_equal(nsnapshots(f), 2000);
    ic_check_result r;
    check_ok(f, 0, &r);
    assert_int_equal(r.check_errors, 0);
    char msg[200];
    snprintf(msg, sizeof(msg), "ERROR: counting reference for region exceeding the end of the file "
             "by one cluster or more: offset 0x%" PRIx64 " size 0x%x (snapshot table at 0x%"
             PRIx64 ", 2000 entries; file size %zu)", off, 72 + 1999 * 40, off, f->m.len);
    assert_line(f, msg, NULL);
    /* and each zero entry is an incomplete v3 entry, as qemu counts them */
    assert_line(f, "ERROR snapshot table entry 1999 is incomplete (extra_data_size 0 < 16", NULL);
    assert_int_equal(r.corruptions, 1 + 1999);
    assert_unchanged(f);
    /* -r all completes them into a new table inside the file */
    repair(f, &r);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.corruptions_fixed, 1 + 1999);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 2000);
}

static void test_qcow2_snapshot_table__name_running_past_the_table_is_counted(void **state)
{
    struct fx *f = *state;
    uint64_t tab = table_offset(&f->m);
    ic_store_be16(f->m.b + tab + 14, 0xffff); /* name of 64 KiB - 1 */
    save(f);
    /* the name reads up to its first zero byte, as qemu's C string */
    assert_int_equal(nsnapshots(f), 1);
    ic_check_result r;
    check_ok(f, 0, &r);
    assert_int_equal(r.check_errors, 0);
    assert_true(r.corruptions >= 1);
    /* the table's last bytes lie in the next cluster: referenced twice, or
     * past the end of the file */
    bool twice = false, past = false;
    for (size_t i = 0; i < f->nlines; i++) {
        twice |= !strncmp(f->lines[i], "ERROR cluster ", 14);
        past |= strstr(f->lines[i], "(snapshot table at 0x") != NULL;
    }
    assert_true(twice || past);
    assert_unchanged(f);
}

static void test_qcow2_snapshot_table__more_than_65536_entries_are_refused_then_dropped(
    void **state)
{
    struct fx *f = *state;
    uint32_t nb = 65537;
    size_t cap = (size_t)nb * 80; /* 40 + 24 + id and name of at most 6 bytes each */
    uint8_t *tab = calloc(1, cap);
    assert_non_null(tab);
    size_t len = 0;
    for (uint32_t i = 0; i < nb; i++) {
        char id[16], name[16];
        snprintf(id, sizeof(id), "%" PRIu32, i + 1);
        snprintf(name, sizeof(name), "n%" PRIu32, i + 1);
        len += put_entry(tab + len, 0, 0, id, (uint16_t)strlen(id), name, (uint16_t)strlen(name),
                         24);
    }
    assert_true(len <= cap);
    uint64_t off = replace_table(&f->m, tab, len, nb);
    free(tab);
    /* the one real snapshot is gone: its L1 and data leak, which is fine */
    save(f);
    expect_open_refused(f, EFBIG, "too many snapshots (65537, at most 65536); run 'imgchain "
                        "check -r all' to drop the 1 overhanging ones");
    ic_check_result r;
    ic_error *err = NULL;
    char msg[200];
    snprintf(msg, sizeof(msg), "snapshot table at 0x%" PRIx64 " too large: 65537 snapshots (at "
             "most 65536); run 'imgchain check -r all' to drop the 1 overhanging snapshots", off);
    TU_ASSERT_ERR(check(f, 0, &r, &err), err, EFBIG, msg);
    assert_unchanged(f);
    repair(f, &r);
    assert_line(f, "Discarding 1 overhanging snapshots (snapshot table at 0x", "counts 65537");
    assert_int_equal(r.corruptions, 0);
    assert_true(r.corruptions_fixed >= 1);
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 65536);
}

static void test_qcow2_snapshot_table__table_over_64_mib_drops_the_overhanging_entries(
    void **state)
{
    struct fx *f = *state;
    /* 512 entries with 64 KiB ids and names: the last one ends past 64 MiB */
    uint32_t nb = 512;
    size_t elen = (40 + 24 + 2 * 65535 + 7) & ~(size_t)7;
    size_t len = nb * elen;
    uint8_t *tab = calloc(1, len);
    assert_non_null(tab);
    for (uint32_t i = 0; i < nb; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%" PRIu32, i + 1);
        put_entry(tab + i * elen, 0, 0, id, 0xffff, "", 0xffff, 24);
    }
    uint64_t off = replace_table(&f->m, tab, len, nb);
    free(tab);
    save(f);
    char msg[200];
    snprintf(msg, sizeof(msg), "snapshot table is too big (over 67108864 bytes from entry 511 "
             "on); run 'imgchain check -r all' to drop the 1 overhanging snapshots");
    expect_open_refused(f, EFBIG, msg);
    ic_check_result r;
    ic_error *err = NULL;
    snprintf(msg, sizeof(msg), "snapshot table at 0x%" PRIx64 " is too big (over 67108864 bytes "
             "from entry 511 on)", off);
    TU_ASSERT_ERR(check(f, 0, &r, &err), err, EFBIG, msg);
    repair(f, &r);
    assert_line(f, "Discarding 1 overhanging snapshots (snapshot table is too big: entries 511 on",
                NULL);
    assert_int_equal(r.corruptions, 0);
    assert_true(r.corruptions_fixed >= 1);
    assert_true(r.leaks_fixed >= 1); /* the table's tail */
    assert_clean(f);
    assert_int_equal(nsnapshots(f), 511);
}

int main(void)
{
#define T(name) \
    cmocka_unit_test_setup_teardown(test_qcow2_snapshot_table__##name, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(unaligned_l1_is_refused_counted_and_dropped),
        T(oversized_l1_is_refused_and_counted),
        T(extra_data_over_1024_is_refused_until_repair_cuts_it),
        T(incomplete_v3_entry_opens_and_repair_completes_it),
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot_table__short_v2_entry_is_not_incomplete,
                                        fx_setup_v2, fx_teardown),
        T(table_past_eof_counts_a_reference_past_the_end),
        cmocka_unit_test_setup_teardown(test_qcow2_snapshot_table__v2_table_past_eof_is_not_repaired,
                                        fx_setup_v2, fx_teardown),
        T(count_past_the_table_reads_what_follows),
        T(count_past_eof_reads_empty_entries),
        T(name_running_past_the_table_is_counted),
        T(more_than_65536_entries_are_refused_then_dropped),
        T(table_over_64_mib_drops_the_overhanging_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
