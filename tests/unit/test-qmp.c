/*
 * test-qmp.c - the QMP and guest-agent clients (src/qmp) against fake
 * peers run in a thread of the test: each fake follows a script of reads
 * (recording the line the client sent) and raw writes, over a socketpair
 * or a unix socket in a temporary folder.  The "freeze everything" path is
 * exercised only here, against the fake agent: no real agent is ever asked
 * to freeze everything.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp/qmp.h"
#include "testutil.h"

enum { OP_END, OP_WRITE, OP_READ, OP_SLEEP, OP_ECHO_SYNC, OP_CLOSE };
struct op {
    int kind;
    const char *text;   /* OP_WRITE: bytes to send; OP_ECHO_SYNC: bytes sent before 0xff */
    int ms;
};

#define MAXREAD 16
struct fake {
    int fd;
    int listen_fd;       /* >= 0: accept one client first */
    const struct op *ops;
    char *got[MAXREAD];  /* the lines read, in order */
    int ngot;
};

static char *read_line(int fd)
{
    size_t cap = 256, n = 0;
    char *s = malloc(cap);
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r <= 0) {
            if (n == 0) {
                free(s);
                return NULL;
            }
            break;
        }
        if (ch == '\n')
            break;
        if (n + 2 > cap)
            s = realloc(s, cap *= 2);
        s[n++] = ch;
    }
    s[n] = 0;
    return s;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    if (f->listen_fd >= 0)
        f->fd = accept(f->listen_fd, NULL, NULL);
    for (const struct op *o = f->ops; o->kind != OP_END; o++) {
        switch (o->kind) {
        case OP_WRITE:
            write_all(f->fd, o->text, strlen(o->text));
            break;
        case OP_READ: {
            char *l = read_line(f->fd);
            if (f->ngot < MAXREAD)
                f->got[f->ngot++] = l;
            else
                free(l);
            break;
        }
        case OP_SLEEP: {
            struct timespec ts = { o->ms / 1000, (long)(o->ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
            break;
        }
        case OP_ECHO_SYNC: {
            char *l = read_line(f->fd);
            const char *p = l ? strstr(l, "\"id\":") : NULL;
            long long id = p ? atoll(p + 5) : -1;
            char out[160];
            /* a stale reply for an earlier client, the sentinel, a reply
             * with a wrong id, then the right one */
            write_all(f->fd, o->text, strlen(o->text));
            int n = snprintf(out, sizeof(out), "\xff{\"return\": %lld}\n{\"return\": %lld}\n",
                             id + 1, id);
            write_all(f->fd, out, (size_t)n);
            if (f->ngot < MAXREAD)
                f->got[f->ngot++] = l;
            else
                free(l);
            break;
        }
        case OP_CLOSE:
            close(f->fd);
            f->fd = -1;
            break;
        default:
            break;
        }
    }
    return NULL;
}

struct peer {
    struct fake f;
    pthread_t th;
    int client_fd;
};

static void peer_start(struct peer *p, const struct op *ops)
{
    int sv[2];
    memset(p, 0, sizeof(*p));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    p->f.fd = sv[1];
    p->f.listen_fd = -1;
    p->f.ops = ops;
    p->client_fd = sv[0];
    assert_int_equal(pthread_create(&p->th, NULL, fake_run, &p->f), 0);
}

static void peer_join(struct peer *p)
{
    pthread_join(p->th, NULL);
    if (p->f.fd >= 0)
        close(p->f.fd);
}

static void peer_free(struct peer *p)
{
    for (int i = 0; i < p->f.ngot; i++)
        free(p->f.got[i]);
}

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\r\n"
#define CAPS_OK "{\"return\": {}, \"id\": \"ic-1\"}\r\n"

static void test_qmp__negotiates_and_returns_the_reply_carrying_the_command_id(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 }, { OP_WRITE, CAPS_OK, 0 },
        { OP_READ, NULL, 0 },
        /* a stale reply of an abandoned command first */
        { OP_WRITE, "{\"return\": 7, \"id\": \"ic-0\"}\n", 0 },
        { OP_WRITE, "{\"return\": {\"status\": \"running\"}, \"id\": \"ic-2\"}\n", 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 2000, &err), err);
    json_object *r = NULL;
    TU_ASSERT_OK(ic_qmp_execute(q, "query-status", NULL, &r, &err), err);
    json_object *st = NULL;
    assert_true(json_object_object_get_ex(r, "status", &st));
    assert_string_equal(json_object_get_string(st), "running");
    json_object_put(r);
    ic_qmp_close(q);
    peer_join(&p);
    assert_int_equal(p.f.ngot, 2);
    assert_non_null(strstr(p.f.got[0], "\"execute\":\"qmp_capabilities\""));
    assert_non_null(strstr(p.f.got[1], "\"execute\":\"query-status\""));
    assert_non_null(strstr(p.f.got[1], "\"id\":\"ic-2\""));
    peer_free(&p);
}

static void test_qmp__events_interleaved_with_replies_are_kept_in_order(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 },
        { OP_WRITE, "{\"event\": \"RESUME\", \"timestamp\": {}}\n" CAPS_OK, 0 },
        { OP_READ, NULL, 0 },
        { OP_WRITE, "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"id\": \"j1\", \"status\": "
                    "\"running\"}}\n{\"event\": \"STOP\"}\n", 0 },
        { OP_SLEEP, NULL, 50 },
        { OP_WRITE, "{\"return\": {}, \"id\": \"ic-2\"}\n", 0 },
        { OP_SLEEP, NULL, 50 },
        { OP_WRITE, "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"id\": \"j2\", \"status\": "
                    "\"concluded\"}}\n{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"id\": "
                    "\"j1\", \"status\": \"concluded\"}}\n", 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 2000, &err), err);
    assert_int_equal(ic_qmp_pending_events(q), 1);
    TU_ASSERT_OK(ic_qmp_execute(q, "stop", NULL, NULL, &err), err);
    assert_int_equal(ic_qmp_pending_events(q), 3);
    json_object *e = ic_qmp_take_event(q, "STOP");
    assert_non_null(e);
    json_object_put(e);
    assert_null(ic_qmp_take_event(q, "SHUTDOWN"));
    /* the waited-for job event comes after one of another job */
    json_object *ev = NULL;
    TU_ASSERT_OK(ic_qmp_wait_event(q, "JOB_STATUS_CHANGE", "id", "j1", 2000, &ev, &err), err);
    json_object *data = NULL, *st = NULL;
    assert_true(json_object_object_get_ex(ev, "data", &data));
    assert_true(json_object_object_get_ex(data, "status", &st));
    assert_string_equal(json_object_get_string(st), "running");
    json_object_put(ev);
    TU_ASSERT_OK(ic_qmp_wait_event(q, "JOB_STATUS_CHANGE", "id", "j1", 2000, &ev, &err), err);
    json_object_object_get_ex(ev, "data", &data);
    json_object_object_get_ex(data, "status", &st);
    assert_string_equal(json_object_get_string(st), "concluded");
    json_object_put(ev);
    e = ic_qmp_take_event(q, "RESUME");
    assert_non_null(e);
    json_object_put(e);
    e = ic_qmp_take_event(q, "JOB_STATUS_CHANGE");
    assert_non_null(e);   /* j2's, set aside while waiting for j1 */
    json_object_put(e);
    assert_int_equal(ic_qmp_pending_events(q), 0);
    ic_qmp_close(q);
    peer_join(&p);
    peer_free(&p);
}

static void test_qmp__an_error_reply_names_the_command_and_qemus_description(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 }, { OP_WRITE, CAPS_OK, 0 },
        { OP_READ, NULL, 0 },
        { OP_WRITE, "{\"id\": \"ic-2\", \"error\": {\"class\": \"GenericError\", \"desc\": "
                    "\"Duplicate nodes with node-name='ov0'\"}}\n", 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 2000, &err), err);
    json_object *args = json_object_new_object();
    json_object_object_add(args, "node-name", json_object_new_string("ov0"));
    int ret = ic_qmp_execute(q, "blockdev-add", args, NULL, &err);
    assert_non_null(err);
    assert_string_equal(ic_error_message(err),
                        "fake.qmp: blockdev-add: qemu says: Duplicate nodes with "
                        "node-name='ov0' (GenericError)");
    TU_ASSERT_ERR(ret, err, EIO, "blockdev-add");
    ic_qmp_close(q);
    peer_join(&p);
    peer_free(&p);
}

static void test_qmp__a_silent_peer_times_out_instead_of_hanging(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 }, { OP_WRITE, CAPS_OK, 0 },
        { OP_READ, NULL, 0 }, { OP_SLEEP, NULL, 600 }, { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 200, &err), err);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int ret = ic_qmp_execute(q, "query-block", NULL, NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    TU_ASSERT_ERR(ret, err, ETIMEDOUT, "fake.qmp: query-block: no reply (timed out)");
    assert_true(ms >= 150 && ms < 550);
    json_object *ev = NULL;
    ret = ic_qmp_wait_event(q, "JOB_STATUS_CHANGE", NULL, NULL, 100, &ev, &err);
    TU_ASSERT_ERR(ret, err, ETIMEDOUT, "JOB_STATUS_CHANGE");
    ic_qmp_close(q);
    peer_join(&p);
    peer_free(&p);
}

static void test_qmp__garbage_and_a_closed_peer_are_clear_errors(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 }, { OP_WRITE, CAPS_OK, 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": {}, \"id\" \x01 garbage\n", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "[1, 2]\n", 0 },
        { OP_READ, NULL, 0 }, { OP_CLOSE, NULL, 0 }, { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 2000, &err), err);
    int ret = ic_qmp_execute(q, "query-block", NULL, NULL, &err);
    TU_ASSERT_ERR(ret, err, EPROTO, "query-block: not a JSON object in the reply: "
                                    "'{\"return\": {}, \"id\" ? garbage'");
    ret = ic_qmp_execute(q, "query-status", NULL, NULL, &err);
    TU_ASSERT_ERR(ret, err, EPROTO, "query-status: not a JSON object");
    ret = ic_qmp_execute(q, "cont", NULL, NULL, &err);
    TU_ASSERT_ERR(ret, err, ECONNRESET, "fake.qmp: cont: the peer closed the connection");
    ic_qmp_close(q);
    peer_join(&p);
    peer_free(&p);
}

static void test_qmp__a_peer_that_does_not_greet_as_qemu_is_refused(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_WRITE, "{\"hello\": 1}\n", 0 }, { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    int ret = ic_qmp_connect_fd(&q, p.client_fd, "fake.qmp", 2000, &err);
    TU_ASSERT_ERR(ret, err, EPROTO, "fake.qmp: not a QMP socket");
    assert_null(q);
    peer_join(&p);
    peer_free(&p);
}

static void test_qmp__connects_over_a_unix_socket_and_reports_one_nobody_listens_on(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "qmp.sock");
    ic_qmp *q = NULL;
    ic_error *err = NULL;
    int ret = ic_qmp_connect(&q, path, 500, &err);
    TU_ASSERT_ERR(ret, err, ENOENT, "qmp.sock: connect");
    static const struct op ops[] = {
        { OP_WRITE, GREETING, 0 }, { OP_READ, NULL, 0 }, { OP_WRITE, CAPS_OK, 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    memset(&p, 0, sizeof(p));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    p.f.listen_fd = lfd;
    p.f.fd = -1;
    p.f.ops = ops;
    assert_int_equal(pthread_create(&p.th, NULL, fake_run, &p.f), 0);
    TU_ASSERT_OK(ic_qmp_connect(&q, path, 2000, &err), err);
    ic_qmp_close(q);
    peer_join(&p);
    assert_int_equal(p.f.ngot, 1);
    peer_free(&p);
    close(lfd);
    /* a socket file with no listener: refused, not a hang */
    ret = ic_qmp_connect(&q, path, 500, &err);
    TU_ASSERT_ERR(ret, err, ECONNREFUSED, "qmp.sock: connect");
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_qga__sync_discards_stale_input_and_freeze_all_goes_to_the_fake_agent(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_ECHO_SYNC, "{\"return\": 3}\n{\"return\": \"frozen\"}\n", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": \"thawed\"}\n", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": 4}\n", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": 4}\n", 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qga *g = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qga_connect_fd(&g, p.client_fd, "fake.qga", 2000, &err), err);
    bool frozen = true;
    TU_ASSERT_OK(ic_qga_fsfreeze_status(g, &frozen, &err), err);
    assert_false(frozen);
    int n = ic_qga_fsfreeze(g, NULL, 0, &err);
    TU_ASSERT_OK(n, err);
    assert_int_equal(n, 4);
    n = ic_qga_fsfreeze_thaw(g, &err);
    assert_int_equal(n, 4);
    ic_qga_close(g);
    peer_join(&p);
    assert_int_equal(p.f.ngot, 4);
    assert_non_null(strstr(p.f.got[0], "\"execute\":\"guest-sync-delimited\""));
    assert_non_null(strstr(p.f.got[1], "guest-fsfreeze-status"));
    assert_string_equal(p.f.got[2], "{\"execute\":\"guest-fsfreeze-freeze\"}");
    assert_string_equal(p.f.got[3], "{\"execute\":\"guest-fsfreeze-thaw\"}");
    peer_free(&p);
}

static void test_qga__freeze_list_sends_exactly_the_mountpoints_and_errors_name_it(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_ECHO_SYNC, "", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": 2}\n", 0 },
        { OP_READ, NULL, 0 },
        { OP_WRITE, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to freeze "
                    "/mnt/a: Device or resource busy\"}}\n", 0 },
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": \"lots\"}\n", 0 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qga *g = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_qga_connect_fd(&g, p.client_fd, "fake.qga", 2000, &err), err);
    const char *mp[] = { "/mnt/a", "/mnt/b" };
    assert_int_equal(ic_qga_fsfreeze(g, mp, 2, &err), 2);
    int ret = ic_qga_fsfreeze(g, mp, 1, &err);
    TU_ASSERT_ERR(ret, err, EIO, "fake.qga: guest-fsfreeze-freeze-list: the guest agent says: "
                                 "failed to freeze /mnt/a");
    ret = ic_qga_fsfreeze_thaw(g, &err);
    TU_ASSERT_ERR(ret, err, EPROTO, "guest-fsfreeze-thaw: expected a count");
    ic_qga_close(g);
    peer_join(&p);
    assert_string_equal(p.f.got[1], "{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":"
                                    "{\"mountpoints\":[\"\\/mnt\\/a\",\"\\/mnt\\/b\"]}}");
    assert_string_equal(p.f.got[2], "{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":"
                                    "{\"mountpoints\":[\"\\/mnt\\/a\"]}}");
    peer_free(&p);
}

static void test_qga__an_agent_that_never_syncs_times_out(void **state)
{
    (void)state;
    static const struct op ops[] = {
        { OP_READ, NULL, 0 }, { OP_WRITE, "{\"return\": 1}\n", 0 }, { OP_SLEEP, NULL, 500 },
        { OP_END, NULL, 0 },
    };
    struct peer p;
    peer_start(&p, ops);
    ic_qga *g = NULL;
    ic_error *err = NULL;
    int ret = ic_qga_connect_fd(&g, p.client_fd, "fake.qga", 200, &err);
    TU_ASSERT_ERR(ret, err, ETIMEDOUT, "fake.qga: guest-sync-delimited: no reply");
    assert_null(g);
    peer_join(&p);
    peer_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qmp__negotiates_and_returns_the_reply_carrying_the_command_id),
        cmocka_unit_test(test_qmp__events_interleaved_with_replies_are_kept_in_order),
        cmocka_unit_test(test_qmp__an_error_reply_names_the_command_and_qemus_description),
        cmocka_unit_test(test_qmp__a_silent_peer_times_out_instead_of_hanging),
        cmocka_unit_test(test_qmp__garbage_and_a_closed_peer_are_clear_errors),
        cmocka_unit_test(test_qmp__a_peer_that_does_not_greet_as_qemu_is_refused),
        cmocka_unit_test(test_qmp__connects_over_a_unix_socket_and_reports_one_nobody_listens_on),
        cmocka_unit_test(test_qga__sync_discards_stale_input_and_freeze_all_goes_to_the_fake_agent),
        cmocka_unit_test(test_qga__freeze_list_sends_exactly_the_mountpoints_and_errors_name_it),
        cmocka_unit_test(test_qga__an_agent_that_never_syncs_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
