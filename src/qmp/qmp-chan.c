/*
 * qmp-chan.c - JSON lines over a unix stream socket, with deadlines.
 *
 * Design notes
 * ------------
 * Owns: the socket of one QMP or guest-agent connection.
 * Invariants:
 *  1. No call blocks past its deadline: every read and write is preceded
 *     by poll() with the time left, and the socket never blocks a send
 *     longer than poll said it may (MSG_DONTWAIT).
 *  2. Input is kept in one buffer; a document is a line (QMP and the agent
 *     end every message with a newline and never put one inside), so a
 *     message split across reads or several messages in one read are the
 *     same case.  A line that is not a JSON object is the peer breaking the
 *     protocol: an error naming the socket and the awaited reply, with the
 *     start of the line.
 *  3. A closed peer (EOF, EPIPE) is -ECONNRESET, never SIGPIPE.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp-chan.h"

int64_t ic_qmp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ic_qmp_chan_dial(const char *path, ic_error **errp)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return ic_error_set(errp, IC_ERR_INVALID, ENAMETOOLONG,
                            "%s: socket path too long (at most %zu bytes)", path,
                            sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ic_error_set_errno(errp, -errno, "%s: socket", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return ic_error_set_errno(errp, -e, "%s: connect", path);
    }
    return fd;
}

int ic_qmp_chan_init(ic_qmp_chan *c, int fd, const char *name, int timeout_ms, ic_error **errp)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    if (!(c->name = strdup(name ? name : "socket"))) {
        close(fd);
        c->fd = -1;
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    return 0;
}

void ic_qmp_chan_fini(ic_qmp_chan *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->name);
    free(c->buf);
    c->name = NULL;
    c->buf = NULL;
}

/* poll() for @events until @deadline: 1 ready, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - ic_qmp_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

int ic_qmp_chan_send_raw(ic_qmp_chan *c, const char *data, size_t n, int64_t deadline,
                         const char *what, ic_error **errp)
{
    size_t off = 0;
    while (off < n) {
        int r = wait_fd(c->fd, POLLOUT, deadline);
        if (r == -ETIMEDOUT)
            return ic_error_set(errp, IC_ERR_IO, ETIMEDOUT,
                                "%s: %s: timed out sending the command", c->name, what);
        if (r < 0)
            return ic_error_set_errno(errp, r, "%s: %s: poll", c->name, what);
        ssize_t w = send(c->fd, data + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            int e = errno == EPIPE ? ECONNRESET : errno;
            return ic_error_set(errp, IC_ERR_IO, e, "%s: %s: the peer closed the connection",
                                c->name, what);
        }
        off += (size_t)w;
    }
    return 0;
}

int ic_qmp_chan_send(ic_qmp_chan *c, json_object *msg, int64_t deadline, const char *what,
                     ic_error **errp)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(msg, JSON_C_TO_STRING_PLAIN, &n);
    if (!s)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    char *line = malloc(n + 2);
    if (!line)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    memcpy(line, s, n);
    line[n] = '\n';
    int ret = ic_qmp_chan_send_raw(c, line, n + 1, deadline, what, errp);
    free(line);
    return ret;
}

/* Reads more input into the buffer: 0, or -errno with *errp set. */
static int fill(ic_qmp_chan *c, int64_t deadline, const char *what, ic_error **errp)
{
    if (c->len >= IC_QMP_MAX_MSG)
        return ic_error_set(errp, IC_ERR_IO, EPROTO,
                            "%s: %s: a message larger than %u bytes: not the protocol",
                            c->name, what, IC_QMP_MAX_MSG);
    if (c->cap - c->len < 4096) {
        size_t ncap = c->cap ? c->cap * 2 : 8192;
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        c->buf = nb;
        c->cap = ncap;
    }
    for (;;) {
        int r = wait_fd(c->fd, POLLIN, deadline);
        if (r == -ETIMEDOUT)
            return ic_error_set(errp, IC_ERR_IO, ETIMEDOUT,
                                "%s: %s: no reply (timed out)", c->name, what);
        if (r < 0)
            return ic_error_set_errno(errp, r, "%s: %s: poll", c->name, what);
        ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (got > 0) {
            c->len += (size_t)got;
            return 0;
        }
        if (got == 0)
            return ic_error_set(errp, IC_ERR_IO, ECONNRESET,
                                "%s: %s: the peer closed the connection", c->name, what);
        if (errno != EINTR && errno != EAGAIN)
            return ic_error_set_errno(errp, -errno, "%s: %s: recv", c->name, what);
    }
}

static void consume(ic_qmp_chan *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

int ic_qmp_chan_recv(ic_qmp_chan *c, json_object **out, int64_t deadline, const char *what,
                     ic_error **errp)
{
    *out = NULL;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (!nl) {
            int ret = fill(c, deadline, what, errp);
            if (ret < 0)
                return ret;
            continue;
        }
        size_t n = (size_t)(nl - c->buf);
        size_t s = 0;
        while (s < n && strchr(" \t\r", c->buf[s]))
            s++;
        size_t e = n;
        while (e > s && strchr(" \t\r", c->buf[e - 1]))
            e--;
        if (e == s) {
            consume(c, n + 1);
            continue;
        }
        json_tokener *tok = json_tokener_new();
        if (!tok)
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        json_object *o = json_tokener_parse_ex(tok, c->buf + s, (int)(e - s));
        bool whole = o && json_tokener_get_error(tok) == json_tokener_success &&
                     json_tokener_get_parse_end(tok) == e - s;
        json_tokener_free(tok);
        if (!whole || !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            int shown = (int)(e - s > 60 ? 60 : e - s);
            for (int i = 0; i < shown; i++)
                if ((unsigned char)c->buf[s + i] < 0x20 || (unsigned char)c->buf[s + i] >= 0x7f)
                    c->buf[s + i] = '?';
            int ret = ic_error_set(errp, IC_ERR_IO, EPROTO,
                                   "%s: %s: not a JSON object in the reply: '%.*s'", c->name,
                                   what, shown, c->buf + s);
            consume(c, n + 1);
            return ret;
        }
        consume(c, n + 1);
        *out = o;
        return 0;
    }
}

int ic_qmp_chan_skip_delim(ic_qmp_chan *c, int64_t deadline, const char *what, ic_error **errp)
{
    for (;;) {
        char *d = c->len ? memchr(c->buf, 0xff, c->len) : NULL;
        if (d) {
            consume(c, (size_t)(d - c->buf) + 1);
            return 0;
        }
        c->len = 0;
        int ret = fill(c, deadline, what, errp);
        if (ret < 0)
            return ret;
    }
}

void ic_qmp_error_text(json_object *err, char *out, size_t n)
{
    json_object *d = NULL, *k = NULL;
    const char *desc = "(no description)", *cls = "?";
    if (json_object_object_get_ex(err, "desc", &d) && json_object_is_type(d, json_type_string))
        desc = json_object_get_string(d);
    if (json_object_object_get_ex(err, "class", &k) && json_object_is_type(k, json_type_string))
        cls = json_object_get_string(k);
    snprintf(out, n, "%s (%s)", desc, cls);
}
