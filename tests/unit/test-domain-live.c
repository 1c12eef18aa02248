/*
 * test-domain-live.c - the running-domain API of imgchain/domain.h without
 * qemu: recorded sockets, "running" decided by the QMP socket only (a
 * fake QMP peer in a thread answers or misbehaves), refusals of revert and
 * delete while it runs, the flag rules of a live create, and the whole
 * live sequence against a fake qemu and a fake agent: the only place the
 * "freeze every file system" path (guest-fsfreeze-freeze) runs, since the
 * real agent of tests/live/live.sh runs on the host.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"
#include "imgchain/domain.h"
#include "io/io-dir.h"
#include <json-c/json.h>

struct fake {
    int lfd;
    const char *greeting;  /* NULL: a QMP greeting and {} to everything */
    int clients;           /* connections to serve */
};

/* Answers each client as qemu would (greeting, then {"return": {}} with
 * the id of every command), or with @greeting and nothing else. */
static void *serve(void *arg)
{
    struct fake *f = arg;
    for (int n = 0; n < f->clients; n++) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        const char *g = f->greeting ? f->greeting
                                    : "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";
        if (write(fd, g, strlen(g)) < 0) {
            close(fd);
            continue;
        }
        char buf[4096];
        ssize_t r;
        while (!f->greeting && (r = read(fd, buf, sizeof(buf) - 1)) > 0) {
            buf[r] = 0;
            const char *id = strstr(buf, "\"id\":\"");
            char out[128];
            int len = snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%.*s\"}\n",
                               id ? (int)strcspn(id + 6, "\"") : 0, id ? id + 6 : "");
            if (write(fd, out, (size_t)len) < 0)
                break;
        }
        close(fd);
    }
    return NULL;
}

static int listen_at(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    /* a fake waiting for a client that never comes gives up (accept
     * fails) instead of hanging the test */
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}


/* ---- a fake qemu and a fake agent that answer by command ------------------ */

/* Serves connections one after the other until @stop, answering each
 * command as qemu or qemu-ga would for a one-disk VM whose active node
 * "nvda" is @image; records the commands, in order, in @log. */
struct fakevm {
    int lfd;
    bool agent;
    const char *image;
    bool fail_transaction;
    volatile bool stop;
    bool frozen;
    char log[4096];
};

static void logcmd(struct fakevm *f, const char *cmd)
{
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof(f->log) - n, "%s%s", n ? " " : "", cmd);
}

static char *answer(struct fakevm *f, json_object *msg)
{
    json_object *ex = NULL, *args = NULL, *id = NULL;
    json_object_object_get_ex(msg, "execute", &ex);
    json_object_object_get_ex(msg, "arguments", &args);
    json_object_object_get_ex(msg, "id", &id);
    const char *cmd = ex ? json_object_get_string(ex) : "?";
    logcmd(f, cmd);
    char ret[1024];
    const char *err = NULL;
    bool delim = false;
    if (!strcmp(cmd, "query-block")) {
        snprintf(ret, sizeof(ret),
                 "[{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda/virtio-backend\", "
                 "\"inserted\": {\"node-name\": \"nvda\", \"file\": \"%s\", \"image\": "
                 "{\"filename\": \"%s\", \"format\": \"qcow2\", \"virtual-size\": 1048576, "
                 "\"cluster-size\": 65536}}}]", f->image, f->image);
    } else if (!strcmp(cmd, "query-named-block-nodes")) {
        snprintf(ret, sizeof(ret), "[{\"node-name\": \"nvda\", \"dirty-bitmaps\": "
                 "[{\"name\": \"inc\", \"persistent\": true, \"recording\": true, "
                 "\"granularity\": 65536}]}]");
    } else if (!strcmp(cmd, "transaction") && f->fail_transaction) {
        err = "Transaction failed (test)";
    } else if (!strcmp(cmd, "guest-sync-delimited")) {
        json_object *v = NULL;
        json_object_object_get_ex(args, "id", &v);
        snprintf(ret, sizeof(ret), "%lld", (long long)json_object_get_int64(v));
        delim = true;
    } else if (!strcmp(cmd, "guest-fsfreeze-status")) {
        snprintf(ret, sizeof(ret), "\"%s\"", f->frozen ? "frozen" : "thawed");
    } else if (!strcmp(cmd, "guest-fsfreeze-freeze")) {
        f->frozen = true;
        snprintf(ret, sizeof(ret), "2");
    } else if (!strcmp(cmd, "guest-fsfreeze-thaw")) {
        f->frozen = false;
        snprintf(ret, sizeof(ret), "2");
    } else {
        snprintf(ret, sizeof(ret), "{}");
    }
    char *out = NULL;
    const char *ids = id ? json_object_get_string(id) : NULL;
    int r;
    if (err)
        r = asprintf(&out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"%s\"}%s%s%s}\n",
                     err, ids ? ", \"id\": \"" : "", ids ? ids : "", ids ? "\"" : "");
    else
        r = asprintf(&out, "%s{\"return\": %s%s%s%s}\n", delim ? "\xff" : "", ret,
                     ids ? ", \"id\": \"" : "", ids ? ids : "", ids ? "\"" : "");
    return r < 0 ? NULL : out;
}

static void *serve_vm(void *arg)
{
    struct fakevm *f = arg;
    while (!f->stop) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;   /* the accept timeout: look at @stop again */
        const char *g = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";
        if (!f->agent && write(fd, g, strlen(g)) < 0) {
            close(fd);
            continue;
        }
        char buf[8192];
        size_t len = 0;
        ssize_t r;
        while ((r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
            len += (size_t)r;
            buf[len] = 0;
            char *nl;
            while ((nl = strchr(buf, '\n'))) {
                *nl = 0;
                json_object *msg = json_tokener_parse(buf);
                char *out = msg ? answer(f, msg) : NULL;
                json_object_put(msg);
                if (out && write(fd, out, strlen(out)) < 0)
                    r = -1;
                free(out);
                len -= (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, len + 1);
            }
        }
        close(fd);
    }
    return NULL;
}

struct ctx {
    char *dir, *state, *sock;
    ic_domain *dom;
};

static void setup_domain(struct ctx *c)
{
    c->dir = tu_tmpdir();
    c->state = tu_path(c->dir, "state");
    c->sock = tu_path(c->dir, "vm.qmp");
    char *img = tu_path(c->dir, "a.qcow2");
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.size = 1 << 20;
    co.size_set = true;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_create(img, &co, &err), err);
    char xml[1024];
    snprintf(xml, sizeof(xml),
             "<domain type='kvm'><name>vm</name><devices><disk type='file' device='disk'>"
             "<driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda'/>"
             "</disk></devices></domain>", img);
    TU_ASSERT_OK(ic_domain_define(c->state, xml, strlen(xml), NULL, &err), err);
    TU_ASSERT_OK(ic_domain_open(&c->dom, c->state, "vm", IC_DOMAIN_OPEN_WRITE, &err), err);
    free(img);
}

static void teardown_domain(struct ctx *c)
{
    ic_domain_close(c->dom);
    tu_rmtree(c->dir);
    free(c->dir);
    free(c->state);
    free(c->sock);
}

static void test_domain_live__sockets_are_kept_in_the_private_file_and_checked(void **state)
{
    (void)state;
    struct ctx c;
    setup_domain(&c);
    ic_error *err = NULL;
    assert_null(ic_domain_qmp_socket(c.dom));
    TU_ASSERT_ERR(ic_domain_set_sockets(c.dom, "vm.qmp", NULL, &err), err, EINVAL,
                  "socket path 'vm.qmp' must be absolute");
    TU_ASSERT_ERR(ic_domain_set_sockets(c.dom, NULL, "/run/qga", &err), err, EINVAL,
                  "a guest agent socket needs a QMP socket");
    TU_ASSERT_OK(ic_domain_set_sockets(c.dom, c.sock, "/run/vm.qga", &err), err);
    ic_domain_close(c.dom);
    TU_ASSERT_OK(ic_domain_open(&c.dom, c.state, "vm", 0, &err), err);
    assert_string_equal(ic_domain_qmp_socket(c.dom), c.sock);
    assert_string_equal(ic_domain_qga_socket(c.dom), "/run/vm.qga");
    /* the sockets are imgchain's business: never in the libvirt document */
    char *xml = NULL;
    TU_ASSERT_OK(ic_domain_get_xml(c.dom, 0, &xml, &err), err);
    assert_null(strstr(xml, "vm.qmp"));
    free(xml);
    teardown_domain(&c);
}

static void test_domain_live__running_means_the_qmp_socket_answers(void **state)
{
    (void)state;
    struct ctx c;
    setup_domain(&c);
    ic_error *err = NULL;
    /* no socket recorded, then a socket nobody listens on: offline */
    assert_int_equal(ic_domain_is_running(c.dom, &err), 0);
    TU_ASSERT_OK(ic_domain_set_sockets(c.dom, c.sock, NULL, &err), err);
    assert_int_equal(ic_domain_is_running(c.dom, &err), 0);
    assert_null(err);
    /* a qemu answering: running, and revert/delete are refused */
    struct fake f = { .lfd = listen_at(c.sock), .clients = 3 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve, &f), 0);
    assert_int_equal(ic_domain_is_running(c.dom, &err), 1);
    TU_ASSERT_ERR(ic_domain_snapshot_revert(c.dom, "s1", 0, &err), err, EBUSY,
                  "vm: cannot revert a running domain (qemu holds its images): stop it first");
    TU_ASSERT_ERR(ic_domain_snapshot_delete(c.dom, "s1", 0, &err), err, EBUSY, "stop it first");
    pthread_join(th, NULL);
    close(f.lfd);
    unlink(c.sock);
    /* a socket answering as something else: an error, not "offline" */
    struct fake g = { .lfd = listen_at(c.sock), .greeting = "hello\n", .clients = 1 };
    assert_int_equal(pthread_create(&th, NULL, serve, &g), 0);
    int ret = ic_domain_is_running(c.dom, &err);
    TU_ASSERT_ERR(ret, err, EPROTO, "vm: is the domain running? its QMP socket");
    pthread_join(th, NULL);
    close(g.lfd);
    teardown_domain(&c);
}

static void test_domain_live__quiesce_mountpoints_need_quiesce_and_absolute_paths(void **state)
{
    (void)state;
    struct ctx c;
    setup_domain(&c);
    ic_error *err = NULL;
    const char *rel[] = { "data" };
    TU_ASSERT_ERR(ic_domain_set_quiesce_mountpoints(c.dom, rel, 1, &err), err, EINVAL,
                  "quiesce mountpoint 'data' must be an absolute path");
    const char *mp[] = { "/data" };
    TU_ASSERT_OK(ic_domain_set_quiesce_mountpoints(c.dom, mp, 1, &err), err);
    TU_ASSERT_OK(ic_domain_set_sockets(c.dom, c.sock, NULL, &err), err);
    struct fake f = { .lfd = listen_at(c.sock), .clients = 2 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve, &f), 0);
    const char *doc = "<domainsnapshot><name>s1</name></domainsnapshot>";
    TU_ASSERT_ERR(ic_domain_snapshot_create(c.dom, doc, strlen(doc),
                                            IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, NULL, &err),
                  err, EINVAL, "quiesce mountpoints need --quiesce");
    TU_ASSERT_ERR(ic_domain_snapshot_create(c.dom, doc, strlen(doc),
                                            IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY |
                                                IC_DOMAIN_SNAPSHOT_CREATE_LIVE, NULL, &err),
                  err, ENOTSUP, "supported only during full system snapshots");
    pthread_join(th, NULL);
    close(f.lfd);
    assert_int_equal(ic_domain_snapshot_count(c.dom), 0);
    assert_false(ic_domain_snapshot_quiesced(c.dom, "s1"));
    teardown_domain(&c);
}

/* Runs a quiesced live create (no mountpoints: every guest file system,
 * which only this fake agent is ever asked) against fakes. */
static void live_create(struct ctx *c, struct fakevm *q, struct fakevm *g, int *ret,
                        ic_error **err)
{
    char *img = tu_path(c->dir, "a.qcow2");
    char *ga = tu_path(c->dir, "vm.qga");
    q->lfd = listen_at(c->sock);
    q->image = img;
    g->lfd = listen_at(ga);
    g->agent = true;
    struct timeval tv = { 0, 100000 };
    setsockopt(q->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(g->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ic_error *e = NULL;
    TU_ASSERT_OK(ic_domain_set_sockets(c->dom, c->sock, ga, &e), e);
    pthread_t tq, tg;
    assert_int_equal(pthread_create(&tq, NULL, serve_vm, q), 0);
    assert_int_equal(pthread_create(&tg, NULL, serve_vm, g), 0);
    const char *doc = "<domainsnapshot><name>s1</name></domainsnapshot>";
    *ret = ic_domain_snapshot_create(c->dom, doc, strlen(doc),
                                     IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY |
                                         IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE, NULL, err);
    q->stop = g->stop = true;
    pthread_join(tq, NULL);
    pthread_join(tg, NULL);
    close(q->lfd);
    close(g->lfd);
    free(img);
    free(ga);
}

static void test_domain_live__quiesce_without_mountpoints_freezes_all_then_switches_and_thaws(
    void **state)
{
    (void)state;
    struct ctx c;
    setup_domain(&c);
    struct fakevm q = { 0 }, g = { 0 };
    ic_error *err = NULL;
    int ret;
    live_create(&c, &q, &g, &ret, &err);
    TU_ASSERT_OK(ret, err);
    assert_string_equal(g.log, "guest-sync-delimited guest-fsfreeze-status "
                               "guest-fsfreeze-freeze guest-fsfreeze-thaw");
    assert_false(g.frozen);
    assert_non_null(strstr(q.log, "blockdev-add blockdev-add transaction"));
    assert_null(strstr(q.log, "blockdev-del"));
    assert_true(ic_domain_snapshot_quiesced(c.dom, "s1"));
    assert_int_equal(ic_domain_snapshot_count(c.dom), 1);
    /* the overlay: made natively on the image qemu reported */
    char *ov = tu_path(c.dir, "a.s1");
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING;
    TU_ASSERT_OK(ic_image_open(&img, ov, &oo, &err), err);
    char *base = tu_path(c.dir, "a.qcow2");
    assert_string_equal(ic_image_backing_name(img), base);
    assert_int_equal(ic_image_size(img), 1048576);
    ic_image_close(img);
    assert_string_equal(ic_domain_get_def(c.dom)->disks[0].src->path, ov);
    free(ov);
    free(base);
    teardown_domain(&c);
}

static void test_domain_live__a_failed_transaction_thaws_and_removes_nodes_and_files(void **state)
{
    (void)state;
    struct ctx c;
    setup_domain(&c);
    struct fakevm q = { .fail_transaction = true }, g = { 0 };
    ic_error *err = NULL;
    int ret;
    live_create(&c, &q, &g, &ret, &err);
    TU_ASSERT_ERR(ret, err, EIO, "transaction: qemu says: Transaction failed (test)");
    assert_false(g.frozen);
    assert_non_null(strstr(g.log, "guest-fsfreeze-freeze guest-fsfreeze-status "
                                  "guest-fsfreeze-thaw"));
    assert_non_null(strstr(q.log, "transaction blockdev-del blockdev-del"));
    char *ov = tu_path(c.dir, "a.s1");
    assert_int_equal(ic_dir_path_type(ov), IC_DIR_PATH_MISSING);
    free(ov);
    char *j = tu_path(c.state, "vm.journal");
    assert_int_equal(ic_dir_path_type(j), IC_DIR_PATH_MISSING);
    free(j);
    assert_int_equal(ic_domain_snapshot_count(c.dom), 0);
    assert_false(ic_domain_snapshot_quiesced(c.dom, "s1"));
    teardown_domain(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_live__sockets_are_kept_in_the_private_file_and_checked),
        cmocka_unit_test(test_domain_live__running_means_the_qmp_socket_answers),
        cmocka_unit_test(test_domain_live__quiesce_mountpoints_need_quiesce_and_absolute_paths),
        cmocka_unit_test(
            test_domain_live__quiesce_without_mountpoints_freezes_all_then_switches_and_thaws),
        cmocka_unit_test(test_domain_live__a_failed_transaction_thaws_and_removes_nodes_and_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
