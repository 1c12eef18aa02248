/*
 * test-domain.c - the domain API (imgchain/domain.h): define, undefine,
 * list, snapshot create over several disks, list filters, redefine rules,
 * atomicity, and recovery from a crash at every file-system step of a
 * create (io-dir's hook: journal, overlay creation, metadata, private
 * file, domain document), each followed by a reopen that must find all or
 * nothing of the snapshot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/domain.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"

struct ctx {
    char *dir;     /* temp dir */
    char *state;   /* DIR/state */
    char *a, *b;   /* the two disks */
};

static void mkimg(const char *path, const char *pattern_byte)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = 4 << 20;
    co.size_set = true;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    char buf[65536];
    memset(buf, pattern_byte[0], sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

static char *domain_xml(const struct ctx *c, const char *name)
{
    char *x = NULL;
    int n = asprintf(&x,
                     "<domain type='kvm'><name>%s</name>"
                     "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
                     "<memory unit='KiB'>65536</memory><devices>"
                     "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                     "<source file='%s'/><target dev='vda' bus='virtio'/></disk>"
                     "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                     "<source file='%s'/><target dev='vdb' bus='virtio'/></disk>"
                     "</devices></domain>",
                     name, c->a, c->b);
    assert_true(n > 0);
    return x;
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    cf_setup(NULL); /* the one test-folder fixture */
    c->dir = strdup(cf_dir);
    assert_non_null(c->dir);
    c->state = tu_path(c->dir, "state");
    c->a = tu_path(c->dir, "a.qcow2");
    c->b = tu_path(c->dir, "b.qcow2");
    mkimg(c->a, "A");
    mkimg(c->b, "B");
    char *xml = domain_xml(c, "vm");
    ic_error *err = NULL;
    char *name = NULL;
    TU_ASSERT_OK(ic_domain_define(c->state, xml, strlen(xml), &name, &err), err);
    assert_string_equal(name, "vm");
    free(name);
    free(xml);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    ic_dir_set_hook(NULL, NULL);
    cf_teardown(NULL);
    free(c->dir);
    free(c->state);
    free(c->a);
    free(c->b);
    free(c);
    return 0;
}

static ic_domain *open_dom(const struct ctx *c, bool write)
{
    ic_domain *dom = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_open(&dom, c->state, "vm", write ? IC_DOMAIN_OPEN_WRITE : 0, &err),
                 err);
    return dom;
}

static int create(ic_domain *dom, const char *xml, unsigned flags, ic_error **err)
{
    return ic_domain_snapshot_create(dom, xml, strlen(xml), flags, NULL, err);
}

static bool has_internal(const char *path, const char *name)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    TU_ASSERT_OK(n, err);
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= !strcmp(v[i].name, name);
    ic_snapshot_list_free(v, (size_t)n);
    ic_image_close(img);
    return found;
}

static bool exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static const char *disk_source(const ic_domain *dom, size_t i)
{
    return ic_domain_get_def(dom)->disks[i].src->path;
}

/* The image snapshot @name froze on vda (its <domain> source). */
static const char *ic_dom_test_point(const ic_domain *dom, const char *name)
{
    const ic_snapshot_def *d = ic_domain_snapshot_lookup(dom, name);
    assert_non_null(d);
    assert_non_null(d->dom);
    return d->dom->disks[0].src->path;
}

/* ---- cases ------------------------------------------------------------ */

static void test_domain__defines_lists_and_refuses_to_undefine_with_snapshots(void **state)
{
    struct ctx *c = *state;
    char **names = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_list(&names, &n, c->state, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "vm");
    ic_domain_names_free(names, n);

    /* a redefinition must keep the UUID */
    char *xml = domain_xml(c, "vm");
    char *other = strdup(xml);
    memcpy(strstr(other, "11111111"), "99999999", 8);
    TU_ASSERT_ERR(ic_domain_define(c->state, other, strlen(other), NULL, &err), err, EEXIST,
                  "domain 'vm' already exists with uuid 11111111-2222-3333-4444-555555555555");
    free(other);
    /* another name with the same UUID is refused too */
    char *twin = domain_xml(c, "twin");
    TU_ASSERT_ERR(ic_domain_define(c->state, twin, strlen(twin), NULL, &err), err, EEXIST,
                  "domain 'vm' is already defined with uuid 11111111-2222-3333-4444-555555555555");
    free(twin);
    char *twin_lock = tu_path(c->state, "twin.lock");
    assert_false(exists(twin_lock));   /* a refused define leaves nothing */
    free(twin_lock);
    free(xml);

    ic_domain *dom = open_dom(c, true);
    assert_string_equal(ic_domain_uuid(dom), "11111111-2222-3333-4444-555555555555");
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>s1</name></domainsnapshot>", 0, &err), err);
    ic_domain_close(dom);
    TU_ASSERT_ERR(ic_domain_undefine(c->state, "vm", 0, &err), err, EINVAL,
                  "cannot delete inactive domain with 1 snapshots");
    TU_ASSERT_OK(ic_domain_undefine(c->state, "vm", IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, &err),
                 err);
    TU_ASSERT_ERR(ic_domain_open(&dom, c->state, "vm", 0, &err), err, ENOENT,
                  "failed to get domain 'vm'");
    /* the images are the user's: still there, s1 inside */
    assert_true(has_internal(c->a, "s1"));
}

static void test_domain__internal_then_external_snapshots_move_the_active_layer(void **state)
{
    struct ctx *c = *state;
    ic_domain *dom = open_dom(c, true);
    ic_error *err = NULL;
    char *name = NULL;
    const char *s1 = "<domainsnapshot><name>s1</name></domainsnapshot>";
    TU_ASSERT_OK(ic_domain_snapshot_create(dom, s1, strlen(s1), 0, &name, &err), err);
    assert_string_equal(name, "s1");
    free(name);
    assert_true(has_internal(c->a, "s1"));
    assert_true(has_internal(c->b, "s1"));
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>s2</name></domainsnapshot>",
                        IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, &err), err);
    char *oa = tu_path(c->dir, "a.s2");
    assert_true(exists(oa));
    struct stat st;
    assert_int_equal(stat(oa, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_string_equal(disk_source(dom, 0), oa);
    assert_true(ic_domain_image_owned(dom, oa));
    assert_false(ic_domain_image_owned(dom, c->a));
    const ic_snapshot_def *d = ic_domain_snapshot_lookup(dom, "s2");
    assert_non_null(d);
    assert_string_equal(d->parent_name, "s1");
    assert_true(ic_domain_snapshot_is_external(d));
    assert_false(ic_domain_snapshot_is_external(ic_domain_snapshot_lookup(dom, "s1")));
    assert_string_equal(ic_domain_snapshot_current(dom)->name, "s2");
    ic_domain_close(dom);

    /* what was written loads back; the overlay sits on the frozen image */
    dom = open_dom(c, false);
    assert_string_equal(disk_source(dom, 0), oa);
    assert_string_equal(ic_domain_snapshot_current(dom)->name, "s2");
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, oa, NULL, &err), err);
    assert_string_equal(ic_image_backing_name(img), c->a);
    assert_string_equal(ic_image_backing_format(img), "qcow2");
    char buf[512];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), 0, &err), err);
    assert_int_equal(buf[0], 'A');
    ic_image_close(img);
    /* a reader cannot change anything */
    TU_ASSERT_ERR(create(dom, "<domainsnapshot/>", 0, &err), err, EROFS, "read-only");
    ic_domain_close(dom);
    free(oa);
}

static void test_domain__a_failure_on_the_second_disk_undoes_the_first(void **state)
{
    struct ctx *c = *state;
    ic_domain *dom = open_dom(c, true);
    ic_error *err = NULL;
    char *xml = NULL;
    char *oa = tu_path(c->dir, "new.a");
    assert_true(asprintf(&xml,
                         "<domainsnapshot><name>x</name><disks>"
                         "<disk name='vda' snapshot='external'><source file='%s'/></disk>"
                         "<disk name='vdb' snapshot='external'><source file='%s/no/new.b'/></disk>"
                         "</disks></domainsnapshot>",
                         oa, c->dir) > 0);
    TU_ASSERT_ERR_PREFIX(create(dom, xml, 0, &err), err, ENOENT, "vm: disk 'vdb'");
    assert_false(exists(oa));
    assert_int_equal(ic_domain_snapshot_count(dom), 0);
    assert_string_equal(disk_source(dom, 0), c->a);
    ic_domain_close(dom);
    char *journal = tu_path(c->state, "vm.journal");
    assert_false(exists(journal));
    free(journal);
    free(xml);
    free(oa);
}

static void test_domain__redefine_follows_libvirt_rules(void **state)
{
    struct ctx *c = *state;
    ic_domain *dom = open_dom(c, true);
    ic_error *err = NULL;
#define HEAD "<domainsnapshot><name>%s</name><state>shutoff</state>%s" \
             "<creationTime>1700000000</creationTime><memory snapshot='no'/>" \
             "<domain type='kvm'><name>vm</name><uuid>%s</uuid></domain>" \
             "</domainsnapshot>"
    char x[1024];
    snprintf(x, sizeof(x), HEAD, "r1", "", "99999999-2222-3333-4444-555555555555");
    TU_ASSERT_ERR(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE, &err), err, EINVAL,
                  "definition for snapshot r1 must use uuid 11111111-2222-3333-4444-555555555555");
    snprintf(x, sizeof(x), HEAD, "r1", "", "11111111-2222-3333-4444-555555555555");
    TU_ASSERT_OK(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE, &err), err);
    assert_null(ic_domain_snapshot_current(dom));   /* no CURRENT: unchanged */
    snprintf(x, sizeof(x), HEAD, "r2", "<parent><name>nope</name></parent>",
             "11111111-2222-3333-4444-555555555555");
    TU_ASSERT_ERR(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE, &err), err, EINVAL,
                  "parent nope for moment r2 not found");
    snprintf(x, sizeof(x), HEAD, "r2", "<parent><name>r1</name></parent>",
             "11111111-2222-3333-4444-555555555555");
    TU_ASSERT_OK(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE | IC_DOMAIN_SNAPSHOT_CREATE_CURRENT,
                        &err), err);
    assert_string_equal(ic_domain_snapshot_current(dom)->name, "r2");
    TU_ASSERT_ERR(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_CURRENT, &err), err, EINVAL,
                  "Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' is required by flag "
                  "'VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT'");
    /* redefine touches no image */
    assert_false(has_internal(c->a, "r1"));
    ic_domain_close(dom);
}

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

static const char *list(ic_domain *dom, const char *from, unsigned flags)
{
    const char **v = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_snapshot_list(&v, &n, dom, from, flags, &err), err);
    const char *s = joined(v, n);
    free(v);
    return s;
}

static void test_domain__list_filters_combine_as_libvirt_combines_them(void **state)
{
    struct ctx *c = *state;
    ic_domain *dom = open_dom(c, true);
    ic_error *err = NULL;
    /* a (internal) -> b (external) -> c (internal); current back to a; d (internal) */
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>a</name></domainsnapshot>", 0, &err), err);
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>b</name></domainsnapshot>",
                        IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, &err), err);
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>c</name></domainsnapshot>", 0, &err), err);
    TU_ASSERT_OK(ic_domain_snapshot_set_current(dom, "a", &err), err);
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>d</name></domainsnapshot>", 0, &err), err);
    assert_string_equal(list(dom, NULL, 0), "a b c d");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_ROOTS), "a");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_LEAVES), "c d");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_NO_LEAVES), "a b");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_LEAVES |
                                            IC_DOMAIN_SNAPSHOT_LIST_NO_LEAVES), "");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL), "b");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_INTERNAL |
                                            IC_DOMAIN_SNAPSHOT_LIST_LEAVES), "c d");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_INTERNAL |
                                            IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL), "a b c d");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_NO_METADATA), "");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_ACTIVE), "");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_INACTIVE), "a b c d");
    assert_string_equal(list(dom, "a", 0), "b d");
    assert_string_equal(list(dom, "a", IC_DOMAIN_SNAPSHOT_LIST_DESCENDANTS), "b c d");
    assert_string_equal(list(dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL), "a b c d");
    assert_int_equal(ic_domain_snapshot_num_children(dom, "a", false), 2);
    assert_int_equal(ic_domain_snapshot_num_children(dom, "a", true), 3);
    /* d was taken from a: it is internal in the overlays b made */
    char *ob = tu_path(c->dir, "b.b");
    assert_true(has_internal(ob, "d"));
    assert_true(has_internal(ob, "c"));
    free(ob);
    const char **v = NULL;
    size_t n = 0;
    TU_ASSERT_ERR(ic_domain_snapshot_list(&v, &n, dom, "zz", 0, &err), err, ENOENT,
                  "no domain snapshot with matching name 'zz'");
    ic_domain_close(dom);
}

/* ---- crash at every file-system step --------------------------------- */

struct crash {
    int calls, crash_at;
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
        cr->crashed = true;
        return IC_DIR_HOOK_CRASH;
    }
    return 0;
}

/* After recovery the snapshot is all there or not at all. */
static void check_all_or_nothing(const struct ctx *c, const char *name, bool external, int step)
{
    ic_domain *dom = open_dom(c, true);    /* recovers a pending journal */
    ic_domain_close(dom);
    dom = open_dom(c, false);
    assert_null(ic_domain_pending(dom));
    bool there = ic_domain_snapshot_lookup(dom, name) != NULL;
    char *oa = NULL, *ob = NULL;
    assert_true(asprintf(&oa, "%s/a.%s", c->dir, name) > 0);
    assert_true(asprintf(&ob, "%s/b.%s", c->dir, name) > 0);
    if (external) {
        if (exists(oa) != there || exists(ob) != there)
            fail_msg("step %d: snapshot %s, overlays %d %d", step, there ? "kept" : "gone",
                     exists(oa), exists(ob));
        assert_string_equal(disk_source(dom, 0), there ? oa : c->a);
        assert_string_equal(disk_source(dom, 1), there ? ob : c->b);
        assert_int_equal(ic_domain_image_owned(dom, oa), there);
        if (there)
            assert_string_equal(ic_domain_snapshot_current(dom)->name, name);
    } else {
        if (has_internal(c->a, name) != there || has_internal(c->b, name) != there)
            fail_msg("step %d: snapshot %s, internal %d %d", step, there ? "kept" : "gone",
                     has_internal(c->a, name), has_internal(c->b, name));
    }
    ic_domain_close(dom);
    free(oa);
    free(ob);
}

static void crash_loop(struct ctx *c, bool external)
{
    int step;
    for (step = 1; step < 200; step++) {
        char name[32];
        snprintf(name, sizeof(name), "c%d", step);
        ic_domain *dom = open_dom(c, true);
        struct crash cr = { .crash_at = step };
        ic_dir_set_hook(crash_hook, &cr);
        char xml[128];
        snprintf(xml, sizeof(xml), "<domainsnapshot><name>%s</name></domainsnapshot>", name);
        ic_error *err = NULL;
        int ret = create(dom, xml, external ? IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY : 0, &err);
        ic_dir_set_hook(NULL, NULL);
        ic_error_free(err);
        ic_domain_close(dom);
        check_all_or_nothing(c, name, external, step);
        if (!cr.crashed) {
            assert_int_equal(ret, 0);
            break;
        }
        if (external) {
            /* the next round freezes the same images again: put the domain
             * back on the originals when the snapshot stayed */
            ic_domain *d = open_dom(c, false);
            bool kept = ic_domain_snapshot_lookup(d, name) != NULL;
            ic_domain_close(d);
            if (kept) {
                char *xml2 = domain_xml(c, "vm");
                ic_error *e = NULL;
                TU_ASSERT_OK(ic_domain_define(c->state, xml2, strlen(xml2), NULL, &e), e);
                free(xml2);
            }
        }
    }
    assert_true(step > 3);   /* the loop crashed at several steps before finishing */
}

static void test_domain__a_crash_at_any_file_step_of_an_external_create_leaves_all_or_nothing(
    void **state)
{
    crash_loop(*state, true);
}

static void test_domain__a_crash_at_any_file_step_of_an_internal_create_leaves_all_or_nothing(
    void **state)
{
    crash_loop(*state, false);
}

static void test_domain__a_prepare_journal_is_rolled_back_with_the_internal_snapshots_it_made(
    void **state)
{
    struct ctx *c = *state;
    /* what a process killed between the two disks leaves: s on vda only */
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, c->a, &oo, &err), err);
    TU_ASSERT_OK(ic_snapshot_create(img, "s", &err), err);
    ic_image_close(img);
    char *j = NULL;
    assert_true(asprintf(&j,
                         "{\"version\":1,\"op\":\"snapshot-create\",\"snapshot\":\"s\","
                         "\"phase\":\"prepare\",\"steps\":["
                         "{\"disk\":\"vda\",\"kind\":\"internal\",\"image\":\"%s\"},"
                         "{\"disk\":\"vdb\",\"kind\":\"internal\",\"image\":\"%s\"}]}",
                         c->a, c->b) > 0);
    char *jp = tu_path(c->state, "vm.journal");
    assert_int_equal(tu_write_file(jp, j, strlen(j)), 0);
    ic_domain *dom = open_dom(c, false);
    assert_string_equal(ic_domain_pending(dom), "interrupted snapshot-create of 's' (phase prepare)");
    ic_domain_close(dom);
    assert_true(has_internal(c->a, "s"));
    dom = open_dom(c, true);
    assert_string_equal(ic_domain_recovered(dom), "rolled back interrupted snapshot-create of 's'");
    ic_domain_close(dom);
    assert_false(has_internal(c->a, "s"));
    assert_false(has_internal(c->b, "s"));
    assert_false(exists(jp));
    free(jp);
    free(j);
}

static void test_domain__a_second_writer_is_refused_while_the_first_holds_the_lock(void **state)
{
    struct ctx *c = *state;
    ic_domain *dom = open_dom(c, true);
    /* OFD locks conflict between two opens in one process as between two
     * processes */
    ic_domain *second = NULL;
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_domain_open(&second, c->state, "vm", IC_DOMAIN_OPEN_WRITE, &err), err,
                  EBUSY, "vm: domain is locked by another process");
    TU_ASSERT_ERR(ic_domain_open(&second, c->state, "vm", 0, &err), err, EBUSY,
                  "vm: domain is locked by another process");
    ic_domain_close(dom);
    second = open_dom(c, false);
    ic_domain *third = open_dom(c, false);   /* readers share */
    ic_domain_close(third);
    ic_domain_close(second);
}


/* The first byte the guest reads from @path's chain at offset 0. */
static char first_byte(const char *path)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_FORCE_SHARE;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    char b[512];
    TU_ASSERT_OK(ic_image_pread(img, b, sizeof(b), 0, &err), err);
    ic_image_close(img);
    return b[0];
}

static void write_byte(const char *path, char c)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    char b[65536];
    memset(b, c, sizeof(b));
    TU_ASSERT_OK(ic_image_pwrite(img, b, sizeof(b), 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

static void write_active(struct ctx *c, char ca, char cb)
{
    ic_domain *dom = open_dom(c, false);
    char *a = strdup(disk_source(dom, 0)), *b = strdup(disk_source(dom, 1));
    ic_domain_close(dom);
    write_byte(a, ca);
    write_byte(b, cb);
    free(a);
    free(b);
}

/* Files of @dir (sorted, '\n'-joined), to compare before and after. */
static char *listing(const char *dir)
{
    char *cmd = NULL, *out = NULL;
    assert_true(asprintf(&cmd, "ls '%s' | grep -v '^state$'", dir) > 0);
    FILE *f = popen(cmd, "r");
    free(cmd);
    assert_non_null(f);
    out = calloc(1, 8192);
    size_t n = fread(out, 1, 8191, f);
    out[n] = '\0';
    pclose(f);
    return out;
}

static void test_domain__a_crash_at_any_file_step_of_a_revert_leaves_it_undone_or_done(
    void **state)
{
    struct ctx *c = *state;
    ic_error *err = NULL;
    ic_domain *dom = open_dom(c, true);
    TU_ASSERT_OK(create(dom, "<domainsnapshot><name>s1</name></domainsnapshot>",
                        IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, &err), err);
    ic_domain_close(dom);
    write_active(c, 'X', 'Y');     /* uncaptured: the revert needs FORCE */
    char *before = listing(c->dir);
    int step;
    for (step = 1; step < 200; step++) {
        dom = open_dom(c, true);
        char *was_a = strdup(disk_source(dom, 0));
        struct crash cr = { .crash_at = step };
        ic_dir_set_hook(crash_hook, &cr);
        int ret = ic_domain_snapshot_revert(dom, "s1", IC_DOMAIN_SNAPSHOT_REVERT_FORCE, &err);
        ic_dir_set_hook(NULL, NULL);
        ic_error_free(err);
        err = NULL;
        ic_domain_close(dom);
        dom = open_dom(c, true);    /* recovery */
        ic_domain_close(dom);
        dom = open_dom(c, false);
        assert_null(ic_domain_pending(dom));
        const char *now_a = disk_source(dom, 0);
        bool done = strcmp(now_a, was_a) != 0;
        /* done: the domain reads s1's point from a fresh overlay; undone:
         * it reads what it read, and no new file is left behind */
        assert_true(exists(now_a));
        assert_int_equal(first_byte(now_a), done ? 'A' : 'X');
        assert_int_equal(first_byte(disk_source(dom, 1)), done ? 'B' : 'Y');
        assert_string_equal(ic_domain_snapshot_current(dom)->name, "s1");
        if (done) {
            assert_true(ic_domain_image_owned(dom, now_a));
        } else {
            char *after = listing(c->dir);
            if (strcmp(before, after))
                fail_msg("step %d: files changed:\n%s---\n%s", step, before, after);
            free(after);
        }
        ic_domain_close(dom);
        free(was_a);
        if (!cr.crashed) {
            assert_int_equal(ret, 0);
            break;
        }
        if (done) {
            /* back to the uncaptured state for the next round */
            write_active(c, 'X', 'Y');
            free(before);
            before = listing(c->dir);
        }
    }
    assert_true(step > 3);
    free(before);
}

static void test_domain__a_crash_at_any_file_step_of_a_delete_finishes_on_recovery(void **state)
{
    struct ctx *c = *state;
    int step;
    for (step = 1; step < 200; step++) {
        /* a fresh pair of snapshots each round: s1 then s2 on s1's overlay */
        char n1[32], n2[32], x[128];
        snprintf(n1, sizeof(n1), "d%da", step);
        snprintf(n2, sizeof(n2), "d%db", step);
        ic_error *err = NULL;
        ic_domain *dom = open_dom(c, true);
        snprintf(x, sizeof(x), "<domainsnapshot><name>%s</name></domainsnapshot>", n1);
        TU_ASSERT_OK(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, &err), err);
        ic_domain_close(dom);
        write_active(c, 'P', 'Q');
        dom = open_dom(c, true);
        snprintf(x, sizeof(x), "<domainsnapshot><name>%s</name></domainsnapshot>", n2);
        TU_ASSERT_OK(create(dom, x, IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, &err), err);
        const char *s1_frozen = ic_dom_test_point(dom, n1);
        char *F = strdup(s1_frozen);
        char *O = strdup(ic_dom_test_point(dom, n2));
        const char *pp = ic_domain_snapshot_lookup(dom, n1)->parent_name;
        char *grand = pp ? strdup(pp) : NULL;
        ic_domain_close(dom);
        write_active(c, 'R', 'S');

        dom = open_dom(c, true);
        struct crash cr = { .crash_at = step };
        ic_dir_set_hook(crash_hook, &cr);
        int ret = ic_domain_snapshot_delete(dom, n1, 0, &err);
        ic_dir_set_hook(NULL, NULL);
        ic_error_free(err);
        err = NULL;
        ic_domain_close(dom);
        dom = open_dom(c, true);    /* recovery: a delete only ever finishes */
        ic_domain_close(dom);
        dom = open_dom(c, false);
        assert_null(ic_domain_pending(dom));
        bool gone = ic_domain_snapshot_lookup(dom, n1) == NULL;
        if (cr.crashed && !gone) {
            /* crashed before the commit record: nothing happened */
            assert_true(exists(O));
        } else {
            assert_true(gone);
            /* commit down: s2 now froze F, whose content is s2's point */
            assert_string_equal(ic_dom_test_point(dom, n2), F);
            assert_false(exists(O));
            assert_int_equal(first_byte(F), 'P');
            const char *np = ic_domain_snapshot_lookup(dom, n2)->parent_name;
            if (grand)
                assert_string_equal(np, grand);
            else
                assert_null(np);
        }
        assert_int_equal(first_byte(disk_source(dom, 0)), 'R');
        assert_int_equal(first_byte(disk_source(dom, 1)), 'S');
        ic_domain_close(dom);
        free(F);
        free(O);
        free(grand);
        if (!cr.crashed) {
            assert_int_equal(ret, 0);
            break;
        }
    }
    assert_true(step > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_domain__defines_lists_and_refuses_to_undefine_with_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__internal_then_external_snapshots_move_the_active_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_failure_on_the_second_disk_undoes_the_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain__redefine_follows_libvirt_rules, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__list_filters_combine_as_libvirt_combines_them, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_crash_at_any_file_step_of_an_external_create_leaves_all_or_nothing,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_crash_at_any_file_step_of_an_internal_create_leaves_all_or_nothing,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_prepare_journal_is_rolled_back_with_the_internal_snapshots_it_made,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_second_writer_is_refused_while_the_first_holds_the_lock, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_crash_at_any_file_step_of_a_revert_leaves_it_undone_or_done, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_domain__a_crash_at_any_file_step_of_a_delete_finishes_on_recovery, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
