/*
 * test-domain-revert.c - snapshot-revert and snapshot-delete through the
 * library (src/snap/domain-revert.c, domain-delete.c): a crash at every
 * file-system step of each operation (io-dir's hook: the journal, the
 * overlays made by a revert, the files removed by a delete, every metadata
 * file) followed by the recovery a writer's open runs, which must leave
 * the whole operation done or not started, with every image passing
 * qemu-img check and reading the data of the snapshot it should.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/domain.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"

struct ctx {
    char *dir, *state, *a, *b;
};

static void write_byte(const char *path, int byte, uint64_t off)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    char buf[65536];
    memset(buf, byte, sizeof(buf));
    TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), off, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

static int read_byte(const char *path, uint64_t off)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
    unsigned char buf[65536];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), off, &err), err);
    ic_image_close(img);
    for (size_t i = 1; i < sizeof(buf); i++)
        if (buf[i] != buf[0])
            return -1;
    return buf[0];
}

static struct ctx *fixture(void)
{
    struct ctx *c = calloc(1, sizeof(*c));
    cf_setup(NULL); /* the one test-folder fixture */
    c->dir = strdup(cf_dir);
    assert_non_null(c->dir);
    c->state = tu_path(c->dir, "state");
    c->a = tu_path(c->dir, "a.qcow2");
    c->b = tu_path(c->dir, "b.qcow2");
    const char *disks[2] = { c->a, c->b };
    for (int i = 0; i < 2; i++) {
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.format = "qcow2";
        co.size = 4 << 20;
        co.size_set = true;
        ic_error *err = NULL;
        TU_ASSERT_OK(ic_image_create(disks[i], &co, &err), err);
        write_byte(disks[i], 'A' + i, 0);
    }
    char *xml = NULL;
    assert_true(asprintf(&xml,
                         "<domain type='kvm'><name>vm</name>"
                         "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
                         "<memory unit='KiB'>65536</memory><devices>"
                         "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                         "<source file='%s'/><target dev='vda' bus='virtio'/></disk>"
                         "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                         "<source file='%s'/><target dev='vdb' bus='virtio'/></disk>"
                         "</devices></domain>", c->a, c->b) > 0);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_define(c->state, xml, strlen(xml), NULL, &err), err);
    free(xml);
    return c;
}

static void fixture_free(struct ctx *c)
{
    ic_dir_set_hook(NULL, NULL);
    cf_teardown(NULL);
    free(c->dir);
    free(c->state);
    free(c->a);
    free(c->b);
    free(c);
}

static ic_domain *open_dom(const struct ctx *c)
{
    ic_domain *dom = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_open(&dom, c->state, "vm", IC_DOMAIN_OPEN_WRITE, &err), err);
    return dom;
}

static void snap(const struct ctx *c, const char *name, bool external)
{
    ic_domain *dom = open_dom(c);
    char xml[128];
    snprintf(xml, sizeof(xml), "<domainsnapshot><name>%s</name></domainsnapshot>", name);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_snapshot_create(dom, xml, strlen(xml),
                                           external ? IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY : 0,
                                           NULL, &err), err);
    ic_domain_close(dom);
}

/* The active layer of disk @i (heap copy). */
static char *active(const struct ctx *c, size_t i)
{
    ic_domain *dom = open_dom(c);
    char *p = strdup(ic_domain_get_def(dom)->disks[i].src->path);
    ic_domain_close(dom);
    return p;
}

static char *current(const struct ctx *c)
{
    ic_domain *dom = open_dom(c);
    const ic_snapshot_def *d = ic_domain_snapshot_current(dom);
    char *n = d ? strdup(d->name) : NULL;
    ic_domain_close(dom);
    return n;
}

static bool listed(const struct ctx *c, const char *name)
{
    ic_domain *dom = open_dom(c);
    bool there = ic_domain_snapshot_lookup(dom, name) != NULL;
    ic_domain_close(dom);
    return there;
}

static void qemu_check(const char *path)
{
    if (tu_have_prog("qemu-img") && tu_sh("qemu-img check -q '%s'", path) != 0)
        fail_msg("qemu-img check %s", path);
}

/* ---- the crash loop ------------------------------------------------------ */

struct crash {
    int calls, crash_at;
    bool crashed;
};

static int crash_hook(enum ic_dir_step step, const char *path, void *opaque)
{
    struct crash *cr = opaque;
    (void)step;
    (void)path;
    if (cr->crashed || ++cr->calls == cr->crash_at) {
        cr->crashed = true;
        return IC_DIR_HOOK_CRASH;
    }
    return 0;
}

struct scenario {
    void (*prepare)(struct ctx *c);
    int (*run)(ic_domain *dom, ic_error **err);
    /* checks the state after recovery: the whole operation or nothing */
    void (*verify)(struct ctx *c, int step);
};

static void crash_loop(const struct scenario *s)
{
    int step;
    for (step = 1; step < 300; step++) {
        struct ctx *c = fixture();
        s->prepare(c);
        ic_domain *dom = open_dom(c);
        struct crash cr = { .crash_at = step };
        ic_dir_set_hook(crash_hook, &cr);
        ic_error *err = NULL;
        int ret = s->run(dom, &err);
        ic_dir_set_hook(NULL, NULL);
        if (!cr.crashed && ret < 0)
            fail_msg("step %d: %s", step, ic_error_message(err));
        ic_error_free(err);
        ic_domain_close(dom);
        /* a writer's open finishes a pending journal */
        dom = open_dom(c);
        assert_null(ic_domain_pending(dom));
        ic_domain_close(dom);
        s->verify(c, step);
        bool done = !cr.crashed;
        fixture_free(c);
        if (done)
            break;
    }
    assert_true(step > 3);
}

/* internal revert: s1 (A,B), s2 (a,b): revert to s1 */
static void prep_internal(struct ctx *c)
{
    snap(c, "s1", false);
    write_byte(c->a, 'a', 0);
    write_byte(c->b, 'b', 0);
    snap(c, "s2", false);
}

static int run_revert_s1(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_revert(dom, "s1", 0, err);
}

static void verify_internal_revert(struct ctx *c, int step)
{
    char *cur = current(c);
    bool done = cur && !strcmp(cur, "s1");
    int da = read_byte(c->a, 0), db = read_byte(c->b, 0);
    if (done ? (da != 'A' || db != 'B') : (da != 'a' || db != 'b'))
        fail_msg("step %d: current %s, disks read %c %c", step, cur ? cur : "-", da, db);
    qemu_check(c->a);
    qemu_check(c->b);
    free(cur);
}

/* external revert: e1 freezes (A,B), the overlays get (x,y), e2: revert to e1 */
static void prep_external(struct ctx *c)
{
    snap(c, "e1", true);
    char *oa = active(c, 0), *ob = active(c, 1);
    write_byte(oa, 'x', 0);
    write_byte(ob, 'y', 0);
    free(oa);
    free(ob);
    snap(c, "e2", true);
}

static int run_revert_e1(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_revert(dom, "e1", 0, err);
}

static void verify_external_revert(struct ctx *c, int step)
{
    char *cur = current(c);
    bool done = cur && !strcmp(cur, "e1");
    char *oa = active(c, 0), *ob = active(c, 1);
    int da = read_byte(oa, 0), db = read_byte(ob, 0);
    if (done ? (da != 'A' || db != 'B') : (da != 'x' || db != 'y'))
        fail_msg("step %d: current %s, disks read %c %c", step, cur ? cur : "-", da, db);
    if (done) {
        ic_domain *dom = open_dom(c);
        if (!ic_domain_image_owned(dom, oa) || !ic_domain_image_owned(dom, ob))
            fail_msg("step %d: the revert overlays are not recorded as imgchain's", step);
        ic_domain_close(dom);
    }
    qemu_check(oa);
    qemu_check(ob);
    free(oa);
    free(ob);
    free(cur);
}

/* external delete (commit down): e1, overlay written, e2 on top: delete e2 */
static int run_delete_e2(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_delete(dom, "e2", 0, err);
}

static void verify_external_delete(struct ctx *c, int step)
{
    bool gone = !listed(c, "e2");
    char *oa = active(c, 0), *ob = active(c, 1);
    char *e2a = NULL;
    assert_true(asprintf(&e2a, "%s/a.e2", c->dir) > 0);
    char *e1a = NULL;
    assert_true(asprintf(&e1a, "%s/a.e1", c->dir) > 0);
    if (gone) {
        if (access(e2a, F_OK) == 0 || strcmp(oa, e1a))
            fail_msg("step %d: e2 deleted but its overlay stays or is still active (%s)", step,
                     oa);
    } else if (access(e2a, F_OK) != 0 || strcmp(oa, e2a)) {
        fail_msg("step %d: e2 kept but its overlay is missing or not active (%s)", step, oa);
    }
    if (read_byte(oa, 0) != 'x' || read_byte(ob, 0) != 'y')
        fail_msg("step %d: the domain no longer reads its data", step);
    if (gone) {
        char *cur = current(c);
        if (!cur || strcmp(cur, "e1"))
            fail_msg("step %d: current is %s, not e1", step, cur ? cur : "-");
        free(cur);
    }
    qemu_check(oa);
    qemu_check(ob);
    free(oa);
    free(ob);
    free(e2a);
    free(e1a);
}

/* a branch point: e1, e2, then a revert to e2 makes a second reader of
 * e2's frozen image a.e1 (e2's <disks> now name the revert overlays) */
static void prep_branch(struct ctx *c)
{
    prep_external(c);
    ic_domain *dom = open_dom(c);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_snapshot_revert(dom, "e2", 0, &err), err);
    ic_domain_close(dom);
}

/* A delete at a branch point may merge the frozen image away (stream up)
 * or keep the images and drop only the metadata; either way every image
 * still reads its data, and a kept snapshot keeps its frozen image. */
static void verify_branch_delete(struct ctx *c, int step)
{
    bool gone = !listed(c, "e2");
    char *oa = active(c, 0), *ob = active(c, 1);
    char *e1a = NULL, *e2a = NULL;
    assert_true(asprintf(&e1a, "%s/a.e1", c->dir) > 0);
    assert_true(asprintf(&e2a, "%s/a.e2", c->dir) > 0);
    if (!gone && access(e1a, F_OK) != 0)
        fail_msg("step %d: e2 kept but its frozen image is gone", step);
    if (read_byte(oa, 0) != 'x' || read_byte(ob, 0) != 'y')
        fail_msg("step %d: the active layers no longer read their data", step);
    if (access(e2a, F_OK) == 0 && read_byte(e2a, 0) != 'x')
        fail_msg("step %d: the abandoned overlay no longer reads its data", step);
    if (gone) {
        char *cur = current(c);
        if (!cur || strcmp(cur, "e1"))
            fail_msg("step %d: current is %s, not e1", step, cur ? cur : "-");
        free(cur);
    }
    qemu_check(oa);
    qemu_check(ob);
    if (access(e2a, F_OK) == 0)
        qemu_check(e2a);
    free(oa);
    free(ob);
    free(e1a);
    free(e2a);
}

/* --discard: a revert to e1 made R (e1 has a child: <revertDisks>), R got
 * written; a forced revert to e1 with --discard drops R */
static void prep_discard(struct ctx *c)
{
    prep_external(c);
    ic_domain *dom = open_dom(c);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_snapshot_revert(dom, "e1", 0, &err), err);
    ic_domain_close(dom);
    char *r = active(c, 0);
    write_byte(r, 'r', 0);
    char *keep = tu_path(c->dir, "discarded");
    assert_int_equal(tu_write_file(keep, r, strlen(r)), 0);
    free(keep);
    free(r);
}

static int run_revert_discard(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_revert(dom, "e1", IC_DOMAIN_SNAPSHOT_REVERT_FORCE |
                                                    IC_DOMAIN_SNAPSHOT_REVERT_DISCARD, err);
}

static void verify_discard(struct ctx *c, int step)
{
    char *keep = tu_path(c->dir, "discarded");
    uint8_t *r = NULL;
    size_t len = 0;
    assert_int_equal(tu_read_file(keep, &r, &len), 0);
    char *oa = active(c, 0), *ob = active(c, 1);
    bool done = strcmp(oa, (char *)r) != 0;
    if (done) {
        if (access((char *)r, F_OK) == 0)
            fail_msg("step %d: the revert finished but the abandoned overlay %s stays", step, r);
        if (read_byte(oa, 0) != 'A' || read_byte(ob, 0) != 'B')
            fail_msg("step %d: the new overlays do not read e1's point in time", step);
    } else if (read_byte(oa, 0) != 'r') {
        fail_msg("step %d: the revert did not happen but the active layer lost its data", step);
    }
    qemu_check(oa);
    qemu_check(ob);
    free(oa);
    free(ob);
    free(r);
    free(keep);
}

/* --children: e1 then e2, deleted leaves first */
static int run_delete_children(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_delete(dom, "e1", IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN, err);
}

static void verify_delete_children(struct ctx *c, int step)
{
    bool e1 = listed(c, "e1"), e2 = listed(c, "e2");
    if (e2 && !e1)
        fail_msg("step %d: e2 kept without its parent e1", step);
    char *cur = current(c);
    if (e2 ? (!cur || strcmp(cur, "e2")) : e1 ? (!cur || strcmp(cur, "e1")) : cur != NULL)
        fail_msg("step %d: e1 %d, e2 %d, current %s", step, e1, e2, cur ? cur : "-");
    char *oa = active(c, 0), *ob = active(c, 1);
    if (read_byte(oa, 0) != 'x' || read_byte(ob, 0) != 'y')
        fail_msg("step %d: the domain no longer reads its data", step);
    qemu_check(oa);
    qemu_check(ob);
    free(cur);
    free(oa);
    free(ob);
}

/* internal delete: s1, s2: delete s1 from both disks */
static int run_delete_s1(ic_domain *dom, ic_error **err)
{
    return ic_domain_snapshot_delete(dom, "s1", 0, err);
}

static bool has_internal(const char *path, const char *name)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING;
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

static void verify_internal_delete(struct ctx *c, int step)
{
    bool gone = !listed(c, "s1");
    /* once the metadata is gone the images must not hold it either; while
     * the metadata stays, the images may already have lost it only if the
     * journal was past its commit record, which recovery would have
     * finished: so they hold it */
    if (gone && (has_internal(c->a, "s1") || has_internal(c->b, "s1")))
        fail_msg("step %d: s1 deleted from the metadata but not from the images", step);
    if (!gone && (!has_internal(c->a, "s1") || !has_internal(c->b, "s1")))
        fail_msg("step %d: s1 kept in the metadata but missing from an image", step);
    if (!has_internal(c->a, "s2") || read_byte(c->a, 0) != 'a' || read_byte(c->b, 0) != 'b')
        fail_msg("step %d: the rest of the domain changed", step);
    qemu_check(c->a);
    qemu_check(c->b);
}

static void test_a_crash_at_any_step_of_an_internal_revert_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_internal, run_revert_s1, verify_internal_revert };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_an_external_revert_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_external, run_revert_e1, verify_external_revert };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_an_external_delete_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_external, run_delete_e2, verify_external_delete };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_a_delete_at_a_branch_point_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_branch, run_delete_e2, verify_branch_delete };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_a_discarding_revert_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_discard, run_revert_discard, verify_discard };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_a_delete_with_children_leaves_a_consistent_tree(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_external, run_delete_children, verify_delete_children };
    crash_loop(&s);
}

static void test_a_crash_at_any_step_of_an_internal_delete_finishes_or_changes_nothing(
    void **state)
{
    (void)state;
    const struct scenario s = { prep_internal, run_delete_s1, verify_internal_delete };
    crash_loop(&s);
}

/* ---- API rules ------------------------------------------------------------- */

static void test_revert_and_delete_refuse_a_read_only_handle_and_bad_flags(void **state)
{
    (void)state;
    struct ctx *c = fixture();
    prep_internal(c);
    ic_domain *dom = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_open(&dom, c->state, "vm", 0, &err), err);
    TU_ASSERT_ERR(ic_domain_snapshot_revert(dom, "s1", 0, &err), err, EROFS, "read-only");
    TU_ASSERT_ERR(ic_domain_snapshot_delete(dom, "s1", 0, &err), err, EROFS, "read-only");
    ic_domain_close(dom);
    dom = open_dom(c);
    TU_ASSERT_ERR(ic_domain_snapshot_revert(dom, "s1", 0x100u, &err), err, EINVAL,
                  "unsupported flags");
    TU_ASSERT_ERR(ic_domain_snapshot_delete(dom, "s1",
                                            IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN |
                                                IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY,
                                            &err),
                  err, EINVAL, "mutually exclusive");
    TU_ASSERT_ERR(ic_domain_snapshot_revert(dom, "s1", IC_DOMAIN_SNAPSHOT_REVERT_PAUSED, &err),
                  err, ENOTSUP, "never starts");
    ic_domain_close(dom);
    fixture_free(c);
}

static void test_delete_children_moves_current_to_the_snapshot_as_libvirt_does(void **state)
{
    (void)state;
    struct ctx *c = fixture();
    snap(c, "r", false);
    snap(c, "k1", false);
    snap(c, "k2", false);
    ic_domain *dom = open_dom(c);
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_domain_snapshot_delete(dom, "r", IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY |
                                                         IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY,
                                           &err), err);
    assert_string_equal(ic_domain_snapshot_current(dom)->name, "r");
    assert_int_equal(ic_domain_snapshot_count(dom), 1);
    ic_domain_close(dom);
    /* metadata only: the images keep every internal snapshot */
    assert_true(has_internal(c->a, "k1") && has_internal(c->a, "k2"));
    dom = open_dom(c);
    TU_ASSERT_OK(ic_domain_snapshot_delete(dom, "r", IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN, &err),
                 err);
    assert_int_equal(ic_domain_snapshot_count(dom), 0);
    assert_null(ic_domain_snapshot_current(dom));
    ic_domain_close(dom);
    assert_false(has_internal(c->a, "r"));
    fixture_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_crash_at_any_step_of_an_internal_revert_finishes_or_changes_nothing),
        cmocka_unit_test(test_a_crash_at_any_step_of_an_external_revert_finishes_or_changes_nothing),
        cmocka_unit_test(test_a_crash_at_any_step_of_an_external_delete_finishes_or_changes_nothing),
        cmocka_unit_test(test_a_crash_at_any_step_of_a_delete_at_a_branch_point_finishes_or_changes_nothing),
        cmocka_unit_test(test_a_crash_at_any_step_of_a_discarding_revert_finishes_or_changes_nothing),
        cmocka_unit_test(test_a_crash_at_any_step_of_a_delete_with_children_leaves_a_consistent_tree),
        cmocka_unit_test(test_a_crash_at_any_step_of_an_internal_delete_finishes_or_changes_nothing),
        cmocka_unit_test(test_revert_and_delete_refuse_a_read_only_handle_and_bad_flags),
        cmocka_unit_test(test_delete_children_moves_current_to_the_snapshot_as_libvirt_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
