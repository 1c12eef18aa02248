/*
 * test-domain-live.c - the running-domain API of imgchain/domain.h without
 * qemu: recorded sockets, "running" decided by the QMP socket only (a
 * fake QMP peer in a thread answers or misbehaves), refusals of revert and
 * delete while it runs, and the flag rules of a live create.  The real
 * qemu sequence is tests/live/live.sh.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_live__sockets_are_kept_in_the_private_file_and_checked),
        cmocka_unit_test(test_domain_live__running_means_the_qmp_socket_answers),
        cmocka_unit_test(test_domain_live__quiesce_mountpoints_need_quiesce_and_absolute_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
