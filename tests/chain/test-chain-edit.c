/*
 * test-chain-edit.c - commit, rebase, the journal, chain check and
 * dependents through the library API (chains of raw and QED images made
 * by the library itself; qemu-img oracle tests are tests/oracle/chain-*.sh).
 *
 * Every failure case asserts both the errno and the message prefix, and
 * that nothing was written (file bytes unchanged).
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
#include "chain/chain-journal.h"
#include "chain-crash.h"
#include "chain-fixture.h"

#define MiB (1024u * 1024u)

static char empty_str[] = "";
static char qed_str[] = "qed";

static uint8_t *file_bytes(const char *name, size_t *len)
{
    FILE *f = fopen(cf_path(name), "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void assert_file_unchanged(const char *name, const uint8_t *before, size_t len)
{
    size_t n;
    uint8_t *now = file_bytes(name, &n);
    assert_int_equal(n, len);
    assert_memory_equal(now, before, len);
    free(now);
}

static void assert_error(int ret, ic_error *err, int errnum, const char *prefix)
{
    assert_int_equal(ret, -errnum);
    assert_non_null(err);
    assert_int_equal(ic_error_errno(err), errnum);
    if (strncmp(ic_error_message(err), prefix, strlen(prefix)))
        fail_msg("message '%s' does not start with '%s'", ic_error_message(err), prefix);
    ic_error_free(err);
}

/* base.raw (4M, 1s) <- mid.qed (4M: 2s at 1M+1M, zeroes at 3M+256k) <-
 * top.qed (6M: 3s at 1536k+1M, 4s at 5M+512k) */
static void make_chain(void)
{
    cf_reset();
    cf_create("base.raw", "raw", 4 * MiB, NULL, NULL, NULL);
    cf_write_byte("base.raw", 0, 4 * MiB, 1);
    cf_create("mid.qed", "qed", 4 * MiB, "base.raw", "raw", NULL);
    cf_write_byte("mid.qed", 1 * MiB, 1 * MiB, 2);
    cf_write_byte("mid.qed", 3 * MiB, 256 * 1024, 0);
    cf_create("top.qed", "qed", 6 * MiB, "mid.qed", "qed", NULL);
    cf_write_byte("top.qed", 1536 * 1024, 1 * MiB, 3);
    cf_write_byte("top.qed", 5 * MiB, 512 * 1024, 4);
}

/* ---- journal ------------------------------------------------------------- */

static void test_chain_journal__reads_the_newest_valid_slot_after_a_torn_write(void **state)
{
    (void)state;
    make_chain();
    struct ic_journal_rec rec = { .op = IC_JOURNAL_COMMIT, .phase = IC_JOURNAL_COPY,
                                  .top = cf_path("top.qed"), .top_fmt = qed_str,
                                  .base = cf_path("mid.qed") };
    struct ic_journal *j = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_journal_create(&j, &rec, NULL, NULL, &err), 0);
    assert_int_equal(ic_journal_set_phase(j, IC_JOURNAL_EMPTY, &err), 0);
    ic_journal_close(j);

    struct ic_journal_rec got;
    bool stale = true;
    assert_int_equal(ic_journal_load(&got, &stale, cf_path("top.qed"), NULL, NULL, &err), 1);
    assert_false(stale);
    assert_int_equal(got.op, IC_JOURNAL_COMMIT);
    assert_int_equal(got.phase, IC_JOURNAL_EMPTY);
    assert_string_equal(got.base, cf_path("mid.qed"));
    assert_string_equal(got.top_fmt, "qed");
    assert_null(got.new_backing);
    unsigned newest = got.slot;
    ic_journal_rec_clear(&got);

    /* tear the newest slot: the previous record is still there */
    char jp[300];
    snprintf(jp, sizeof(jp), "%s.imgchain-journal", cf_path("top.qed"));
    FILE *f = fopen(jp, "r+b");
    assert_non_null(f);
    fseek(f, (long)newest * 4096 + 100, SEEK_SET);
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(ic_journal_load(&got, &stale, cf_path("top.qed"), NULL, NULL, &err), 1);
    assert_int_equal(got.phase, IC_JOURNAL_COPY);
    ic_journal_rec_clear(&got);

    /* tear both: a journal that never became valid is stale */
    f = fopen(jp, "r+b");
    assert_non_null(f);
    fseek(f, (long)(newest ^ 1u) * 4096 + 20, SEEK_SET);
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(ic_journal_load(&got, &stale, cf_path("top.qed"), NULL, NULL, &err), 0);
    assert_true(stale);
    assert_null(err);
}

static void test_chain_journal__refuses_a_second_journal(void **state)
{
    (void)state;
    make_chain();
    struct ic_journal_rec rec = { .op = IC_JOURNAL_REBASE, .phase = IC_JOURNAL_COPY,
                                  .top = cf_path("top.qed"), .new_backing = empty_str };
    struct ic_journal *j = NULL, *j2 = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_journal_create(&j, &rec, NULL, NULL, &err), 0);
    int ret = ic_journal_create(&j2, &rec, NULL, NULL, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_PENDING);
    assert_error(ret, err, EEXIST, cf_path("top.qed.imgchain-journal"));
    assert_int_equal(ic_journal_finish(j, NULL), 0);
    assert_int_equal(access(cf_path("top.qed.imgchain-journal"), F_OK), -1);
}

/* ---- commit ---------------------------------------------------------------- */

static void test_chain_commit__writes_only_allocated_ranges_and_keeps_zeroes(void **state)
{
    (void)state;
    make_chain();
    uint64_t tsize, bsize;
    uint8_t *want = cf_view("top.qed", &tsize);
    ic_error *err = NULL;
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.base = cf_path("base.raw");
    int ret = ic_chain_commit(cf_path("top.qed"), &o, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    uint8_t *base = cf_view("base.raw", &bsize);
    /* the raw base grew to the top's size and reads the top's view */
    assert_int_equal(bsize, 6 * MiB);
    assert_memory_equal(base, want, tsize);
    /* mid's zero range became zeroes in the base */
    assert_int_equal(base[3 * MiB], 0);
    assert_int_equal(base[3 * MiB + 256 * 1024 - 1], 0);
    assert_int_equal(base[3 * MiB + 256 * 1024], 1);
    uint64_t s2;
    uint8_t *top = cf_view("top.qed", &s2);
    assert_memory_equal(top, want, tsize);
    free(want);
    free(base);
    free(top);
}

static void test_chain_commit__refuses_a_base_outside_the_chain_before_writing(void **state)
{
    (void)state;
    make_chain();
    cf_create("other.raw", "raw", 4 * MiB, NULL, NULL, NULL);
    size_t nt, nm;
    uint8_t *t = file_bytes("top.qed", &nt), *m = file_bytes("mid.qed", &nm);
    ic_error *err = NULL;
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.base = cf_path("other.raw");
    int ret = ic_chain_commit(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, EINVAL, "did not find");
    err = NULL;
    ret = ic_chain_commit(cf_path("base.raw"), NULL, &err);
    assert_error(ret, err, EINVAL, cf_path("base.raw: image does not have a backing file"));
    assert_file_unchanged("top.qed", t, nt);
    assert_file_unchanged("mid.qed", m, nm);
    assert_int_equal(access(cf_path("top.qed.imgchain-journal"), F_OK), -1);
    free(t);
    free(m);
}

static void test_chain_commit__refuses_a_missing_backing_file_before_writing(void **state)
{
    (void)state;
    make_chain();
    size_t nt;
    uint8_t *t = file_bytes("top.qed", &nt);
    assert_int_equal(rename(cf_path("base.raw"), cf_path("gone.raw")), 0);
    ic_error *err = NULL;
    int ret = ic_chain_commit(cf_path("top.qed"), NULL, &err);
    assert_error(ret, err, ENOENT, cf_path("mid.qed: could not open backing file: "));
    assert_file_unchanged("top.qed", t, nt);
    free(t);
}

static void test_chain_commit__refuses_to_start_while_an_operation_is_unfinished(void **state)
{
    (void)state;
    make_chain();
    struct ic_journal_rec rec = { .op = IC_JOURNAL_REBASE, .phase = IC_JOURNAL_COPY,
                                  .top = cf_path("top.qed"), .new_backing = empty_str };
    struct ic_journal *j = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_journal_create(&j, &rec, NULL, NULL, &err), 0);
    ic_journal_close(j);
    int ret = ic_chain_commit(cf_path("top.qed"), NULL, &err);
    /* pending, not busy: the CLI's exit 75 means only "locked" */
    assert_int_equal(ic_error_kind_of(err), IC_ERR_PENDING);
    assert_error(ret, err, EINPROGRESS, cf_path("top.qed: an interrupted rebase was found"));
    err = NULL;
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.resume = true;
    ret = ic_chain_commit(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, EINVAL, cf_path("top.qed: "));
    err = NULL;
    ic_rebase_options ro = IC_REBASE_OPTIONS_INIT;
    ro.backing = "";
    ret = ic_chain_rebase(cf_path("top.qed"), &ro, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_PENDING);
    assert_error(ret, err, EINPROGRESS, cf_path("top.qed: an interrupted rebase was found"));
}

static void test_chain_commit__resumes_an_interrupted_commit_to_the_same_result(void **state)
{
    (void)state;
    /* the uninterrupted result */
    make_chain();
    ic_error *err = NULL;
    assert_int_equal(ic_chain_commit(cf_path("top.qed"), NULL, &err), 0);
    uint64_t n1, n2, n3;
    uint8_t *mid_want = cf_view("mid.qed", &n1);
    uint8_t *top_want = cf_view("top.qed", &n2);
    /* the same commit cut by a power failure at every 3rd flush, resumed */
    unsigned resumed = 0;
    for (unsigned n = 2; n < 40; n += 3) {
        make_chain();
        struct chain_crash_world *w = chain_crash_world_new(n, 42 + n);
        ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
        o.open_file = chain_crash_open;
        o.payload = w;
        o.flags = IC_OPEN_NO_LOCK;
        int ret = ic_chain_commit(cf_path("top.qed"), &o, &err);
        bool crashed = chain_crash_happened(w);
        chain_crash_world_free(w);
        if (!crashed) {
            assert_int_equal(ret, 0);
            break;
        }
        assert_true(ret < 0);
        ic_error_free(err);
        err = NULL;
        if (access(cf_path("top.qed.imgchain-journal"), F_OK) != 0)
            continue;
        ic_commit_options ro = IC_COMMIT_OPTIONS_INIT;
        ro.resume = true;
        ret = ic_chain_commit(cf_path("top.qed"), &ro, &err);
        if (ret < 0)
            fail_msg("N=%u: resume: %s", n, ic_error_message(err));
        resumed++;
        uint8_t *mid = cf_view("mid.qed", &n3);
        assert_int_equal(n3, n1);
        assert_memory_equal(mid, mid_want, n1);
        free(mid);
        uint8_t *top = cf_view("top.qed", &n3);
        assert_memory_equal(top, top_want, n2);
        free(top);
    }
    assert_true(resumed > 0);
    free(mid_want);
    free(top_want);
}

static void warn_collect(const char *line, void *payload)
{
    char *buf = payload;
    strncat(buf, line, 1023 - strlen(buf));
    strncat(buf, "\n", 1023 - strlen(buf));
}

static void test_chain_commit__names_other_users_of_the_images_it_changes(void **state)
{
    (void)state;
    make_chain();
    cf_create("other.qed", "qed", 4 * MiB, "mid.qed", "qed", NULL);
    cf_create("overtop.qed", "qed", 6 * MiB, "top.qed", "qed", NULL);
    char warnings[1024] = "";
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.base = cf_path("base.raw");
    o.warn = warn_collect;
    o.payload = warnings;
    ic_error *err = NULL;
    assert_int_equal(ic_chain_commit(cf_path("top.qed"), &o, &err), 0);
    assert_non_null(strstr(warnings, "mid.qed is also used by"));
    assert_non_null(strstr(warnings, "other.qed"));
    /* an overlay of the top reads the same after the commit: no warning */
    assert_null(strstr(warnings, "overtop.qed"));
}

/* ---- rebase ---------------------------------------------------------------- */

static void rebase_keeps_view(const char *backing, const char *fmt, bool expect_backing)
{
    make_chain();
    uint64_t n1, n2;
    uint8_t *want = cf_view("top.qed", &n1);
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.backing = backing;
    o.backing_format = fmt;
    ic_error *err = NULL;
    int ret = ic_chain_rebase(cf_path("top.qed"), &o, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    uint8_t *got = cf_view("top.qed", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(got, want, n1);
    ic_image *img = cf_open("top.qed", IC_OPEN_NO_BACKING);
    if (expect_backing)
        assert_string_equal(ic_image_backing_name(img), backing);
    else
        assert_null(ic_image_backing_name(img));
    ic_image_close(img);
    free(want);
    free(got);
}

static void test_chain_rebase__onto_a_lower_image_keeps_the_guest_view(void **state)
{
    (void)state;
    rebase_keeps_view("base.raw", "raw", true);
}

static void test_chain_rebase__onto_nothing_keeps_the_guest_view(void **state)
{
    (void)state;
    rebase_keeps_view("", NULL, false);
}

static void test_chain_rebase__onto_an_unrelated_image_keeps_the_guest_view(void **state)
{
    (void)state;
    make_chain();
    cf_create("other.qed", "qed", 5 * MiB, NULL, NULL, NULL);
    cf_write_byte("other.qed", 0, 2 * MiB, 9);
    cf_write_byte("other.qed", 3 * MiB, 64 * 1024, 1);
    uint64_t n1, n2;
    uint8_t *want = cf_view("top.qed", &n1);
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.backing = "other.qed";
    o.backing_format = "qed";
    ic_error *err = NULL;
    assert_int_equal(ic_chain_rebase(cf_path("top.qed"), &o, &err), 0);
    uint8_t *got = cf_view("top.qed", &n2);
    assert_memory_equal(got, want, n1);
    free(want);
    free(got);
}

static void test_chain_rebase__unsafe_changes_only_the_header(void **state)
{
    (void)state;
    make_chain();
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.unsafe = true;
    o.backing = "base.raw";
    o.backing_format = "raw";
    ic_error *err = NULL;
    assert_int_equal(ic_chain_rebase(cf_path("top.qed"), &o, &err), 0);
    uint64_t n;
    uint8_t *got = cf_view("top.qed", &n);
    /* mid's 2s are gone from the view: nothing was copied */
    assert_int_equal(got[1 * MiB], 1);
    assert_int_equal(got[1536 * 1024], 3);
    free(got);
}

static void test_chain_rebase__refuses_bad_input_before_writing(void **state)
{
    (void)state;
    make_chain();
    size_t nt;
    uint8_t *t = file_bytes("top.qed", &nt);
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    ic_error *err = NULL;
    o.backing = "base.raw";
    int ret = ic_chain_rebase(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, EINVAL, "could not change the backing file to 'base.raw'");
    err = NULL;
    o.backing_format = "raw";
    o.backing = "missing.raw";
    ret = ic_chain_rebase(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, ENOENT, "could not open new backing file");
    err = NULL;
    o.backing = "top.qed";
    o.backing_format = "qed";
    ret = ic_chain_rebase(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, ELOOP, cf_path("top.qed: cannot be its own backing file"));
    cf_create("over.qed", "qed", 6 * MiB, "top.qed", "qed", NULL);
    err = NULL;
    o.backing = "over.qed";
    ret = ic_chain_rebase(cf_path("top.qed"), &o, &err);
    assert_error(ret, err, ELOOP, "new backing file");
    err = NULL;
    o.backing = "";
    o.backing_format = NULL;
    ret = ic_chain_rebase(cf_path("base.raw"), &o, &err);
    assert_error(ret, err, ENOTSUP, cf_path("base.raw: "));
    assert_file_unchanged("top.qed", t, nt);
    assert_int_equal(access(cf_path("top.qed.imgchain-journal"), F_OK), -1);
    free(t);
}

/* ---- chain check ------------------------------------------------------------ */

struct seen {
    unsigned n;
    ic_chain_problem kinds[16];
};

static void record(const ic_chain_finding *f, void *payload)
{
    struct seen *s = payload;
    if (s->n < 16)
        s->kinds[s->n++] = f->kind;
}

static const ic_chain_finding *find(const ic_chain_check_result *r, ic_chain_problem kind)
{
    for (size_t i = 0; i < r->nb_findings; i++)
        if (r->findings[i].kind == kind)
            return &r->findings[i];
    return NULL;
}

static ic_chain_check_result *check(const char *name, struct seen *s)
{
    ic_chain_check_options o = IC_CHAIN_CHECK_OPTIONS_INIT;
    o.report = record;
    o.payload = s;
    ic_chain_check_result *r = NULL;
    ic_error *err = NULL;
    int ret = ic_chain_check(&r, cf_path(name), &o, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    assert_int_equal(s->n, r->nb_findings);
    return r;
}

static void test_chain_check__finds_nothing_wrong_in_a_sound_chain(void **state)
{
    (void)state;
    make_chain();
    struct seen s = { 0 };
    ic_chain_check_result *r = check("top.qed", &s);
    assert_int_equal(r->nb_images, 3);
    assert_int_equal(r->errors, 0);
    assert_int_equal(r->warnings, 0);
    assert_true(r->images[0].checked);
    assert_string_equal(r->images[2].format, "raw");
    ic_chain_check_result_free(r);
}

static void test_chain_check__reports_a_missing_backing_file_and_checks_the_rest(void **state)
{
    (void)state;
    make_chain();
    assert_int_equal(rename(cf_path("base.raw"), cf_path("gone.raw")), 0);
    struct seen s = { 0 };
    ic_chain_check_result *r = check("top.qed", &s);
    const ic_chain_finding *f = find(r, IC_CHAIN_MISSING_BACKING);
    assert_non_null(f);
    assert_int_equal(f->severity, IC_CHAIN_ERROR);
    assert_int_equal(f->depth, 1);
    assert_non_null(strstr(f->message, "base.raw"));
    assert_int_equal(r->nb_images, 2);
    ic_chain_check_result_free(r);
}

static void test_chain_check__reports_a_loop(void **state)
{
    (void)state;
    make_chain();
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.unsafe = true;
    o.backing = "top.qed";
    o.backing_format = "qed";
    ic_error *err = NULL;
    assert_int_equal(ic_chain_rebase(cf_path("mid.qed"), &o, &err), 0);
    struct seen s = { 0 };
    ic_chain_check_result *r = check("top.qed", &s);
    const ic_chain_finding *f = find(r, IC_CHAIN_LOOP);
    assert_non_null(f);
    assert_non_null(strstr(f->message, "infinite loop"));
    ic_chain_check_result_free(r);
}

static void test_chain_check__reports_format_and_size_problems(void **state)
{
    (void)state;
    make_chain();
    /* mid records its new backing file as raw although it is a QED image;
     * a backing file larger than its overlay */
    cf_create("base2.qed", "qed", 4 * MiB, NULL, NULL, NULL);
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    o.unsafe = true;
    o.backing = "base2.qed";
    o.backing_format = "raw";
    ic_error *err = NULL;
    assert_int_equal(ic_chain_rebase(cf_path("mid.qed"), &o, &err), 0);
    cf_create("small.qed", "qed", 1 * MiB, "top.qed", "qed", NULL);
    struct seen s = { 0 };
    ic_chain_check_result *r = check("small.qed", &s);
    const ic_chain_finding *f = find(r, IC_CHAIN_BACKING_LARGER);
    assert_non_null(f);
    assert_int_equal(f->depth, 1);
    f = find(r, IC_CHAIN_FORMAT_MISMATCH);
    assert_non_null(f);
    assert_int_equal(f->severity, IC_CHAIN_WARNING);
    assert_non_null(strstr(f->message, "recorded as raw but its content looks like qed"));
    assert_true(r->warnings >= 2);
    assert_int_equal(r->errors, 0);
    ic_chain_check_result_free(r);
}

static void test_chain_check__reports_relative_names_that_depend_on_the_folder(void **state)
{
    (void)state;
    make_chain();
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* from / the name "mid.qed" resolves nowhere: only from top's folder */
    assert_int_equal(chdir("/"), 0);
    struct seen s = { 0 };
    ic_chain_check_result *r = check("top.qed", &s);
    const ic_chain_finding *f = find(r, IC_CHAIN_RELATIVE_NAME);
    assert_non_null(f);
    assert_int_equal(f->severity, IC_CHAIN_INFO);
    ic_chain_check_result_free(r);
    /* from the images' own folder it is the same file: nothing to say */
    assert_int_equal(chdir(cf_dir), 0);
    struct seen s2 = { 0 };
    r = check("top.qed", &s2);
    assert_null(find(r, IC_CHAIN_RELATIVE_NAME));
    ic_chain_check_result_free(r);
    assert_int_equal(chdir(cwd), 0);
}

static void test_chain_check__reports_an_interrupted_operation(void **state)
{
    (void)state;
    make_chain();
    struct ic_journal_rec rec = { .op = IC_JOURNAL_COMMIT, .phase = IC_JOURNAL_COPY,
                                  .top = cf_path("top.qed"), .base = cf_path("mid.qed") };
    struct ic_journal *j = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_journal_create(&j, &rec, NULL, NULL, &err), 0);
    ic_journal_close(j);
    struct seen s = { 0 };
    ic_chain_check_result *r = check("top.qed", &s);
    const ic_chain_finding *f = find(r, IC_CHAIN_INTERRUPTED);
    assert_non_null(f);
    assert_int_equal(f->severity, IC_CHAIN_ERROR);
    assert_non_null(strstr(f->message, "commit --resume"));
    ic_chain_check_result_free(r);
    /* resuming finishes it and the report goes away */
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.resume = true;
    assert_int_equal(ic_chain_commit(cf_path("top.qed"), &o, &err), 0);
    struct seen s2 = { 0 };
    r = check("top.qed", &s2);
    assert_null(find(r, IC_CHAIN_INTERRUPTED));
    ic_chain_check_result_free(r);
}

static void test_chain_check__fails_only_when_the_top_cannot_be_opened(void **state)
{
    (void)state;
    ic_chain_check_result *r = NULL;
    ic_error *err = NULL;
    int ret = ic_chain_check(&r, cf_path("nothere.qed"), NULL, &err);
    assert_null(r);
    assert_error(ret, err, ENOENT, cf_path("nothere.qed: No such file or directory"));
}

/* ---- dependents --------------------------------------------------------------- */

static void test_chain_dependents__finds_overlays_by_real_path(void **state)
{
    (void)state;
    make_chain();
    cf_create("other.qed", "qed", 4 * MiB, "base.raw", "raw", NULL);
    cf_create("lone.qed", "qed", 4 * MiB, NULL, NULL, NULL);
    char target[300];
    snprintf(target, sizeof(target), "%s/./base.raw", cf_dir);
    const char *dirs[1] = { cf_dir };
    ic_dependents *d = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_chain_dependents(&d, target, dirs, 1, NULL, &err), 0);
    assert_int_equal(d->nb, 3);
    assert_string_equal(d->list[0].filename, cf_path("mid.qed"));
    assert_int_equal(d->list[0].depth, 1);
    assert_string_equal(d->list[1].filename, cf_path("other.qed"));
    assert_string_equal(d->list[2].filename, cf_path("top.qed"));
    assert_int_equal(d->list[2].depth, 2);
    ic_dependents_free(d);
    d = NULL;
    const char *bad[1] = { cf_path("nofolder") };
    int ret = ic_chain_dependents(&d, target, bad, 1, NULL, &err);
    assert_error(ret, err, ENOENT, cf_path("nofolder: No such file or directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_journal__reads_the_newest_valid_slot_after_a_torn_write),
        cmocka_unit_test(test_chain_journal__refuses_a_second_journal),
        cmocka_unit_test(test_chain_commit__writes_only_allocated_ranges_and_keeps_zeroes),
        cmocka_unit_test(test_chain_commit__refuses_a_base_outside_the_chain_before_writing),
        cmocka_unit_test(test_chain_commit__refuses_a_missing_backing_file_before_writing),
        cmocka_unit_test(test_chain_commit__refuses_to_start_while_an_operation_is_unfinished),
        cmocka_unit_test(test_chain_commit__resumes_an_interrupted_commit_to_the_same_result),
        cmocka_unit_test(test_chain_commit__names_other_users_of_the_images_it_changes),
        cmocka_unit_test(test_chain_rebase__onto_a_lower_image_keeps_the_guest_view),
        cmocka_unit_test(test_chain_rebase__onto_nothing_keeps_the_guest_view),
        cmocka_unit_test(test_chain_rebase__onto_an_unrelated_image_keeps_the_guest_view),
        cmocka_unit_test(test_chain_rebase__unsafe_changes_only_the_header),
        cmocka_unit_test(test_chain_rebase__refuses_bad_input_before_writing),
        cmocka_unit_test(test_chain_check__finds_nothing_wrong_in_a_sound_chain),
        cmocka_unit_test(test_chain_check__reports_a_missing_backing_file_and_checks_the_rest),
        cmocka_unit_test(test_chain_check__reports_a_loop),
        cmocka_unit_test(test_chain_check__reports_format_and_size_problems),
        cmocka_unit_test(test_chain_check__reports_relative_names_that_depend_on_the_folder),
        cmocka_unit_test(test_chain_check__reports_an_interrupted_operation),
        cmocka_unit_test(test_chain_check__fails_only_when_the_top_cannot_be_opened),
        cmocka_unit_test(test_chain_dependents__finds_overlays_by_real_path),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
