/*
 * test-snap-meta.c - the snapshot metadata store (src/snap/snap-meta.c) and
 * its atomic file writes (src/io/io-dir.c).
 *
 * Each case works in a fresh temporary folder.  The crash cases install
 * io-dir's hook to stop an operation dead at its Nth file-system step, for
 * N = 1, 2, ... until the operation completes, and after every crash
 * reopen the store from disk and check that it loads, that every file
 * holds a complete old or new document, and that at most one snapshot is
 * current (the crash loop of docs/architecture.md, after SQLite's).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "imgchain/snapmeta.h"
#include "io/io-dir.h"
#include "util/error.h"

#define DOMAIN "vm1"

struct ctx {
    char root[64];
    char dir[128];
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    snprintf(c->root, sizeof(c->root), "/tmp/ic-snapmeta.XXXXXX");
    if (!mkdtemp(c->root))
        return -1;
    snprintf(c->dir, sizeof(c->dir), "%s/" DOMAIN, c->root);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    ic_dir_set_hook(NULL, NULL);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->root);
    int rc = system(cmd);
    free(c);
    return rc == 0 ? 0 : -1;
}

/* A redefinable snapshot named @name under @parent (NULL: root). */
static ic_snapshot_def *mk(const char *name, const char *parent, const char *desc)
{
    char xml[1024];
    snprintf(xml, sizeof(xml),
             "<domainsnapshot><name>%s</name>%s%s%s<description>%s</description>"
             "<state>shutoff</state><creationTime>1700000000</creationTime>"
             "<disks><disk name='vda' snapshot='external'><source file='/img/vm.%s'/></disk>"
             "</disks><domain><uuid>11111111-2222-3333-4444-555555555555</uuid></domain>"
             "</domainsnapshot>",
             name, parent ? "<parent><name>" : "", parent ? parent : "",
             parent ? "</name></parent>" : "", desc ? desc : "d", name);
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    if (ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, &err) < 0)
        fail_msg("%s", ic_error_message(err));
    return def;
}

static char *metadata_text(const char *name, const char *parent, const char *desc, bool current)
{
    ic_snapshot_def *def = mk(name, parent, desc);
    char *out = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_format_metadata(&out, def, current, &err), 0);
    ic_snapshot_def_free(def);
    return out;
}

static void write_file(const struct ctx *c, const char *file, const char *text)
{
    char path[256];
    mkdir(c->dir, 0700);
    snprintf(path, sizeof(path), "%s/%s", c->dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const struct ctx *c, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.xml", c->dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static ic_snapmeta *open_ok(const struct ctx *c)
{
    ic_snapmeta *m = NULL;
    ic_error *err = NULL;
    int ret = ic_snapmeta_open(&m, c->root, DOMAIN, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    assert_true(IC_ERR_CONSISTENT(ret, err));
    return m;
}

static void put_ok(ic_snapmeta *m, ic_snapshot_def *def, bool current)
{
    ic_error *err = NULL;
    int ret = ic_snapmeta_put(m, def, current, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
}

static void expect_open_error(const struct ctx *c, const char *msg)
{
    ic_snapmeta *m = NULL;
    ic_error *err = NULL;
    int ret = ic_snapmeta_open(&m, c->root, DOMAIN, &err);
    assert_int_equal(ret, -EINVAL);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_null(m);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    assert_string_equal(ic_error_message(err), msg);
    ic_error_free(err);
}

/* "a b c" */
static const char *joined(const char **v, size_t n)
{
    static char buf[512];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(buf, i ? " " : "");
        strcat(buf, v[i]);
    }
    return buf;
}

static const char *list(const ic_snapmeta *m, const char *parent, bool topo)
{
    const char **v = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_list(&v, &n, m, parent, topo, &err), 0);
    const char *s = joined(v, n);
    free(v);
    return s;
}

static void test_snap_meta__rebuilds_the_tree_and_current_from_files(void **state)
{
    struct ctx *c = *state;
    ic_snapmeta *m = open_ok(c);       /* no folder yet: an empty store */
    assert_int_equal(ic_snapmeta_count(m), 0);
    assert_null(ic_snapmeta_current(m));
    put_ok(m, mk("a", NULL, NULL), true);
    put_ok(m, mk("c", "a", NULL), true);
    put_ok(m, mk("b", "a", NULL), false);
    put_ok(m, mk("d", "c", NULL), false);
    put_ok(m, mk("e", NULL, NULL), false);
    assert_string_equal(ic_snapmeta_current(m)->name, "c");
    ic_snapmeta_free(m);

    m = open_ok(c);
    assert_int_equal(ic_snapmeta_count(m), 5);
    assert_string_equal(ic_snapmeta_current(m)->name, "c");
    assert_string_equal(ic_snapmeta_lookup(m, "d")->parent_name, "c");
    assert_null(ic_snapmeta_lookup(m, "zz"));
    assert_string_equal(list(m, NULL, false), "a e");
    assert_string_equal(list(m, "a", false), "b c");
    assert_string_equal(list(m, "d", false), "");
    assert_string_equal(list(m, NULL, true), "a e b c d");
    const char **v = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_list(&v, &n, m, "zz", false, &err), -ENOENT);
    assert_string_equal(ic_error_message(err),
                        "ic_snapmeta_list: no domain snapshot with matching name 'zz'");
    ic_error_free(err);

    /* the files are libvirt's metadata form, current marked once */
    char *a = read_file(c, "a");
    char *cc = read_file(c, "c");
    char *want = metadata_text("a", NULL, NULL, false);
    assert_string_equal(a, want);
    free(want);
    want = metadata_text("c", "a", NULL, true);
    assert_string_equal(cc, want);
    free(want);
    free(a);
    free(cc);
    struct stat st;
    char path[256];
    snprintf(path, sizeof(path), "%s/c.xml", c->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ic_snapmeta_free(m);
    ic_snapmeta_free(NULL);
}

static void test_snap_meta__refuses_two_current_snapshots(void **state)
{
    struct ctx *c = *state;
    char *a = metadata_text("a", NULL, NULL, true);
    char *b = metadata_text("b", "a", NULL, true);
    write_file(c, "a.xml", a);
    write_file(c, "b.xml", b);
    free(a);
    free(b);
    expect_open_error(c, "Too many snapshots claiming to be current for domain vm1");
}

static void test_snap_meta__refuses_a_missing_parent(void **state)
{
    struct ctx *c = *state;
    char *b = metadata_text("b", "gone", NULL, false);
    write_file(c, "b.xml", b);
    free(b);
    expect_open_error(c, "Snapshots have inconsistent relations for domain vm1: "
                         "snapshot 'b' lacks parent 'gone'");
}

static void test_snap_meta__refuses_a_cycle(void **state)
{
    struct ctx *c = *state;
    char *a = metadata_text("a", "b", NULL, false);
    char *b = metadata_text("b", "a", NULL, false);
    write_file(c, "a.xml", a);
    write_file(c, "b.xml", b);
    free(a);
    free(b);
    expect_open_error(c, "Snapshots have inconsistent relations for domain vm1: "
                         "snapshot 'a' is in a circular chain");
}

static void test_snap_meta__refuses_a_file_under_another_name_or_unparseable(void **state)
{
    struct ctx *c = *state;
    char *a = metadata_text("a", NULL, NULL, false);
    write_file(c, "other.xml", a);
    free(a);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s/other.xml: holds snapshot 'a', not 'other'",
             c->dir);
    expect_open_error(c, msg);
    write_file(c, "other.xml", "<domainsnapshot><name>other</name></domainsnapshot>");
    snprintf(msg, sizeof(msg), "%s/other.xml: missing creationTime from existing snapshot",
             c->dir);
    expect_open_error(c, msg);
    /* a temporary file a crash left behind is not a snapshot */
    unlink(strcat(strcpy(msg, c->dir), "/other.xml"));
    write_file(c, ".a.xml.tmpABCDEF", "<domainsnap");
    ic_snapmeta *m = open_ok(c);
    assert_int_equal(ic_snapmeta_count(m), 0);
    ic_snapmeta_free(m);
    ic_snapmeta *none = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_open(&none, c->root, "../x", &err), -EINVAL);
    assert_string_equal(ic_error_message(err), "invalid domain name '../x'");
    ic_error_free(err);
}

static void test_snap_meta__refuses_bad_names_and_parents_on_put(void **state)
{
    struct ctx *c = *state;
    ic_snapmeta *m = open_ok(c);
    put_ok(m, mk("a", NULL, NULL), true);
    put_ok(m, mk("b", "a", NULL), true);
    static const struct { const char *name, *parent, *msg; } cases[] = {
        { "x/y", NULL, "invalid snapshot name 'x/y': name can't contain '/'" },
        { ".hidden", NULL, "invalid snapshot name '.hidden': name can't start with '.'" },
        { "z", "nope", "parent nope for moment z not found" },
        { "z", "z", "cannot set moment z as its own parent" },
        { "a", "b", "parent b would create cycle to a" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ic_error *err = NULL;
        int ret = ic_snapmeta_put(m, mk(cases[i].name, cases[i].parent, NULL), false, &err);
        assert_int_equal(ret, -EINVAL);
        assert_true(IC_ERR_CONSISTENT(ret, err));
        assert_string_equal(ic_error_message(err), cases[i].msg);
        ic_error_free(err);
    }
    assert_int_equal(ic_snapmeta_count(m), 2);
    assert_string_equal(ic_snapmeta_current(m)->name, "b");
    ic_snapmeta_free(m);
}

static void test_snap_meta__moves_the_current_marker(void **state)
{
    struct ctx *c = *state;
    ic_snapmeta *m = open_ok(c);
    put_ok(m, mk("a", NULL, NULL), true);
    put_ok(m, mk("b", "a", NULL), true);
    char *a = read_file(c, "a");
    assert_non_null(strstr(a, "<active>0</active>"));
    free(a);
    /* replacing the current one keeps it current */
    put_ok(m, mk("b", "a", "new text"), false);
    assert_string_equal(ic_snapmeta_current(m)->description, "new text");
    char *b = read_file(c, "b");
    assert_non_null(strstr(b, "<active>1</active>"));
    free(b);
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_set_current(m, "a", &err), 0);
    assert_string_equal(ic_snapmeta_current(m)->name, "a");
    assert_int_equal(ic_snapmeta_set_current(m, NULL, &err), 0);
    assert_null(ic_snapmeta_current(m));
    assert_int_equal(ic_snapmeta_set_current(m, "zz", &err), -ENOENT);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_NOTFOUND);
    assert_string_equal(ic_error_message(err),
                        "no domain snapshot with matching name 'zz'");
    ic_error_free(err);
    ic_snapmeta_free(m);
    m = open_ok(c);
    assert_null(ic_snapmeta_current(m));
    ic_snapmeta_free(m);
}

static void test_snap_meta__remove_reparents_children_and_moves_current(void **state)
{
    struct ctx *c = *state;
    ic_snapmeta *m = open_ok(c);
    put_ok(m, mk("a", NULL, NULL), true);
    put_ok(m, mk("b", "a", NULL), true);
    put_ok(m, mk("c", "b", NULL), false);
    put_ok(m, mk("d", "b", NULL), false);
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_remove(m, "b", &err), 0);
    assert_string_equal(list(m, "a", false), "c d");
    assert_string_equal(ic_snapmeta_current(m)->name, "a");
    ic_snapmeta_free(m);
    m = open_ok(c);
    assert_int_equal(ic_snapmeta_count(m), 3);
    assert_null(read_file(c, "b"));
    assert_string_equal(ic_snapmeta_lookup(m, "c")->parent_name, "a");
    assert_string_equal(ic_snapmeta_current(m)->name, "a");
    /* removing a root makes its children roots */
    assert_int_equal(ic_snapmeta_remove(m, "a", &err), 0);
    assert_string_equal(list(m, NULL, false), "c d");
    assert_null(ic_snapmeta_current(m));
    assert_int_equal(ic_snapmeta_remove(m, "a", &err), -ENOENT);
    assert_string_equal(ic_error_message(err),
                        "no domain snapshot with matching name 'a'");
    ic_error_free(err);
    ic_snapmeta_free(m);
}

/* ---- crash simulation -------------------------------------------------- */

struct crash {
    int calls;
    int crash_at;       /* 1-based step to crash at; 0 = never */
    int fail_errno;     /* instead of crashing, fail the step like the OS */
    bool crashed;
};

static int crash_hook(enum ic_dir_step step, const char *path, void *opaque)
{
    struct crash *cr = opaque;
    (void)step;
    (void)path;
    if (cr->crashed)
        return IC_DIR_HOOK_CRASH;   /* a dead process does nothing more */
    if (++cr->calls == cr->crash_at) {
        if (cr->fail_errno)
            return -cr->fail_errno;
        cr->crashed = true;
        return IC_DIR_HOOK_CRASH;
    }
    return 0;
}

/* What each file may hold after a crash: one of the listed texts, or
 * nothing when @absent_ok. */
struct allowed {
    const char *name;
    bool absent_ok;
    char *texts[2];
};

static void check_files(const struct ctx *c, const struct allowed *allow, size_t n, int step)
{
    for (size_t i = 0; i < n; i++) {
        char *got = read_file(c, allow[i].name);
        bool ok = !got && allow[i].absent_ok;
        for (size_t k = 0; k < 2 && got && !ok; k++)
            ok = allow[i].texts[k] && !strcmp(got, allow[i].texts[k]);
        if (!ok)
            fail_msg("crash at step %d: %s.xml holds neither the old nor the new document:\n%s",
                     step, allow[i].name, got ? got : "(absent)");
        free(got);
    }
}

static size_t count_current(const ic_snapmeta *m)
{
    size_t n = 0;
    const char **v = NULL;
    size_t k = 0;
    ic_error *err = NULL;
    assert_int_equal(ic_snapmeta_list(&v, &k, m, NULL, true, &err), 0);
    for (size_t i = 0; i < k; i++)
        if (ic_snapmeta_lookup(m, v[i]) == ic_snapmeta_current(m))
            n++;
    free(v);
    return n;
}

/* Runs @op after a fresh @prepare for N = 1, 2, ... crashing at step N;
 * returns how many steps the operation has. */
static int crash_loop(struct ctx *c, void (*prepare)(struct ctx *),
                      int (*op)(ic_snapmeta *, ic_error **), const struct allowed *allow,
                      size_t nallow, void (*after_full)(ic_snapmeta *))
{
    for (int n = 1; n < 100; n++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        prepare(c);
        ic_snapmeta *m = open_ok(c);
        struct crash cr = { .crash_at = n };
        ic_dir_set_hook(crash_hook, &cr);
        ic_error *err = NULL;
        int ret = op(m, &err);
        ic_dir_set_hook(NULL, NULL);
        assert_true(IC_ERR_CONSISTENT(ret, err));
        ic_snapmeta_free(m);
        if (!cr.crashed) {
            if (ret < 0)
                fail_msg("uncrashed run failed: %s", ic_error_message(err));
            m = open_ok(c);
            check_files(c, allow, nallow, n);
            after_full(m);
            ic_snapmeta_free(m);
            return n - 1;
        }
        assert_int_equal(ret, -EIO);
        assert_non_null(strstr(ic_error_message(err), "simulated crash at step"));
        ic_error_free(err);
        /* "reboot": the store must load, each file old or new, <= 1 current */
        m = open_ok(c);
        check_files(c, allow, nallow, n);
        assert_true(count_current(m) <= 1);
        ic_snapmeta_free(m);
    }
    fail_msg("operation never completed");
    return -1;
}

static void prepare_ab(struct ctx *c)
{
    ic_snapmeta *m = open_ok(c);
    put_ok(m, mk("a", NULL, NULL), false);
    put_ok(m, mk("b", "a", "old"), true);
    ic_snapmeta_free(m);
}

static int op_put_new_current(ic_snapmeta *m, ic_error **errp)
{
    return ic_snapmeta_put(m, mk("c", "b", NULL), true, errp);
}

static void after_put_new_current(ic_snapmeta *m)
{
    assert_string_equal(ic_snapmeta_current(m)->name, "c");
    assert_int_equal(ic_snapmeta_count(m), 3);
}

static void test_snap_meta__put_survives_a_crash_at_every_step(void **state)
{
    struct ctx *c = *state;
    struct allowed allow[] = {
        { "a", false, { metadata_text("a", NULL, NULL, false), NULL } },
        { "b", false, { metadata_text("b", "a", "old", true), metadata_text("b", "a", "old", false) } },
        { "c", true, { metadata_text("c", "b", NULL, true), NULL } },
    };
    int steps = crash_loop(c, prepare_ab, op_put_new_current, allow, 3, after_put_new_current);
    /* demote b (5 steps) + write c (5 steps) */
    assert_int_equal(steps, 10);
    for (size_t i = 0; i < 3; i++)
        for (size_t k = 0; k < 2; k++)
            free(allow[i].texts[k]);
}

static int op_replace(ic_snapmeta *m, ic_error **errp)
{
    return ic_snapmeta_put(m, mk("b", "a", "new"), false, errp);
}

static void after_replace(ic_snapmeta *m)
{
    assert_string_equal(ic_snapmeta_current(m)->description, "new");
}

static void test_snap_meta__replace_leaves_old_or_new_document_after_a_crash(void **state)
{
    struct ctx *c = *state;
    struct allowed allow[] = {
        { "b", false, { metadata_text("b", "a", "old", true), metadata_text("b", "a", "new", true) } },
    };
    int steps = crash_loop(c, prepare_ab, op_replace, allow, 1, after_replace);
    assert_int_equal(steps, 5);
    for (size_t k = 0; k < 2; k++)
        free(allow[0].texts[k]);
}

static void prepare_abcd(struct ctx *c)
{
    ic_snapmeta *m = open_ok(c);
    put_ok(m, mk("a", NULL, NULL), false);
    put_ok(m, mk("b", "a", NULL), true);
    put_ok(m, mk("c", "b", NULL), false);
    ic_snapmeta_free(m);
}

static int op_remove(ic_snapmeta *m, ic_error **errp)
{
    return ic_snapmeta_remove(m, "b", errp);
}

static void after_remove(ic_snapmeta *m)
{
    assert_string_equal(ic_snapmeta_current(m)->name, "a");
    assert_string_equal(ic_snapmeta_lookup(m, "c")->parent_name, "a");
}

static void test_snap_meta__remove_survives_a_crash_at_every_step(void **state)
{
    struct ctx *c = *state;
    struct allowed allow[] = {
        { "a", false, { metadata_text("a", NULL, NULL, false), metadata_text("a", NULL, NULL, true) } },
        { "c", false, { metadata_text("c", "b", NULL, false), metadata_text("c", "a", NULL, false) } },
    };
    /* rewrite c (5) + unlink b (2) + promote a (5) */
    int steps = crash_loop(c, prepare_abcd, op_remove, allow, 2, after_remove);
    assert_int_equal(steps, 12);
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 2; k++)
            free(allow[i].texts[k]);
}

static void test_snap_meta__a_failed_write_changes_nothing(void **state)
{
    struct ctx *c = *state;
    prepare_ab(c);
    char *old_b = read_file(c, "b");
    ic_snapmeta *m = open_ok(c);
    for (int step = 1; step <= 5; step++) {
        struct crash cr = { .crash_at = step, .fail_errno = ENOSPC };
        ic_dir_set_hook(crash_hook, &cr);
        ic_error *err = NULL;
        int ret = ic_snapmeta_put(m, mk("b", "a", "new"), false, &err);
        ic_dir_set_hook(NULL, NULL);
        assert_int_equal(ret, -ENOSPC);
        assert_true(IC_ERR_CONSISTENT(ret, err));
        assert_int_equal(ic_error_kind_of(err), IC_ERR_IO);
        /* the message names the file that could not be written */
        assert_non_null(strstr(ic_error_message(err), c->dir));
        ic_error_free(err);
        /* before the rename the old file stays; no temporary is left */
        if (step <= 4) {
            char *b = read_file(c, "b");
            assert_string_equal(b, old_b);
            free(b);
            assert_string_equal(ic_snapmeta_current(m)->description, "old");
        }
        DIR *d = opendir(c->dir);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                fail_msg("temporary file left after a failure at step %d: %s", step, e->d_name);
        closedir(d);
    }
    free(old_b);
    ic_snapmeta_free(m);
}

static void test_snap_meta__reads_files_and_probes_paths(void **state)
{
    struct ctx *c = *state;
    write_file(c, "f.txt", "0123456789");
    char path[256];
    snprintf(path, sizeof(path), "%s/f.txt", c->dir);
    char *buf = NULL;
    size_t len = 0;
    ic_error *err = NULL;
    assert_int_equal(ic_dir_read_file(&buf, &len, path, 100, &err), 0);
    assert_int_equal(len, 10);
    assert_string_equal(buf, "0123456789");
    free(buf);
    assert_int_equal(ic_dir_read_file(&buf, &len, path, 5, &err), -EFBIG);
    ic_error_free(err);
    err = NULL;
    assert_int_equal(ic_dir_read_file(&buf, &len, c->dir, 100, &err), -EINVAL);
    ic_error_free(err);
    err = NULL;
    assert_int_equal(ic_snapmeta_path_kind(path, NULL), IC_PATH_REGULAR);
    assert_int_equal(ic_snapmeta_path_kind(c->dir, NULL), IC_PATH_OTHER);
    assert_int_equal(ic_snapmeta_path_kind("/nonexistent/x", NULL), IC_PATH_MISSING);
    assert_int_equal(ic_snapmeta_path_kind("/dev/null", NULL), IC_PATH_OTHER);
    char deep[256];
    snprintf(deep, sizeof(deep), "%s/x/y/z", c->root);
    assert_int_equal(ic_dir_mkdir_p(deep, 0700, &err), 0);
    assert_int_equal(ic_dir_path_type(deep), IC_DIR_PATH_DIRECTORY);
    assert_int_equal(ic_dir_mkdir_p(path, 0700, &err), -ENOTDIR);
    ic_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_snap_meta__rebuilds_the_tree_and_current_from_files),
        T(test_snap_meta__refuses_two_current_snapshots),
        T(test_snap_meta__refuses_a_missing_parent),
        T(test_snap_meta__refuses_a_cycle),
        T(test_snap_meta__refuses_a_file_under_another_name_or_unparseable),
        T(test_snap_meta__refuses_bad_names_and_parents_on_put),
        T(test_snap_meta__moves_the_current_marker),
        T(test_snap_meta__remove_reparents_children_and_moves_current),
        T(test_snap_meta__put_survives_a_crash_at_every_step),
        T(test_snap_meta__replace_leaves_old_or_new_document_after_a_crash),
        T(test_snap_meta__remove_survives_a_crash_at_every_step),
        T(test_snap_meta__a_failed_write_changes_nothing),
        T(test_snap_meta__reads_files_and_probes_paths),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
