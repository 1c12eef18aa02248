/*
 * qmp.c - a small QMP client: greeting, capabilities negotiation, commands
 * matched to their replies by id, events set aside.
 *
 * Design notes
 * ------------
 * Owns: one QMP connection (src/qmp/qmp-chan.c carries the bytes).
 * Invariants:
 *  1. Every command carries a fresh id "ic-N"; a reply with another id
 *     (a late answer to an abandoned command) is dropped, and an event
 *     arriving before the reply is queued, in order, for the caller
 *     (ic_qmp_take_event / ic_qmp_wait_event) instead of being lost.
 *  2. An error reply becomes one message naming the socket, the command
 *     and qemu's description and class; its errno is EIO so callers can
 *     tell "qemu refused" from a broken connection (ECONNRESET), a silent
 *     one (ETIMEDOUT) or garbage (EPROTO).
 *  3. The connection is usable only after the greeting and
 *     qmp_capabilities; a peer that greets with anything but {"QMP":...}
 *     is not qemu and is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmp-chan.h"
#include "qmp.h"

struct ic_qmp {
    ic_qmp_chan chan;
    unsigned long next_id;
    json_object *events;  /* array of event objects, oldest first */
};

void ic_qmp_set_timeout(ic_qmp *q, int timeout_ms)
{
    if (q && timeout_ms > 0)
        q->chan.timeout_ms = timeout_ms;
}

void ic_qmp_close(ic_qmp *q)
{
    if (!q)
        return;
    ic_qmp_chan_fini(&q->chan);
    json_object_put(q->events);
    free(q);
}

static int queue_event(ic_qmp *q, json_object *msg)
{
    return json_object_array_add(q->events, msg) < 0 ? -ENOMEM : 0;
}

int ic_qmp_execute(ic_qmp *q, const char *cmd, json_object *args, json_object **ret_out,
                   ic_error **errp)
{
    if (ret_out)
        *ret_out = NULL;
    char id[32];
    snprintf(id, sizeof(id), "ic-%lu", ++q->next_id);
    json_object *msg = json_object_new_object();
    if (!msg) {
        json_object_put(args);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    json_object_object_add(msg, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(msg, "arguments", args);
    json_object_object_add(msg, "id", json_object_new_string(id));
    int64_t deadline = ic_qmp_now_ms() + q->chan.timeout_ms;
    int ret = ic_qmp_chan_send(&q->chan, msg, deadline, cmd, errp);
    json_object_put(msg);
    while (ret == 0) {
        json_object *r = NULL;
        if ((ret = ic_qmp_chan_recv(&q->chan, &r, deadline, cmd, errp)) < 0)
            break;
        json_object *v = NULL;
        if (json_object_object_get_ex(r, "event", NULL)) {
            if (queue_event(q, r) < 0) {
                json_object_put(r);
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            }
            continue;
        }
        json_object *rid = NULL;
        bool has_id = json_object_object_get_ex(r, "id", &rid);
        bool is_err = json_object_object_get_ex(r, "error", &v);
        /* qemu answers a command it could not parse without an id */
        if ((has_id && (!json_object_is_type(rid, json_type_string) ||
                        strcmp(json_object_get_string(rid), id))) ||
            (!has_id && !is_err)) {
            json_object_put(r);
            continue;
        }
        if (is_err) {
            char text[512];
            ic_qmp_error_text(v, text, sizeof(text));
            ret = ic_error_set(errp, IC_ERR_IO, EIO, "%s: %s: qemu says: %s", q->chan.name, cmd,
                               text);
        } else if (!json_object_object_get_ex(r, "return", &v)) {
            ret = ic_error_set(errp, IC_ERR_IO, EPROTO, "%s: %s: a reply with neither return "
                               "nor error", q->chan.name, cmd);
        } else if (ret_out) {
            *ret_out = json_object_get(v);
        }
        json_object_put(r);
        break;
    }
    return ret;
}

json_object *ic_qmp_take_event(ic_qmp *q, const char *name)
{
    size_t n = json_object_array_length(q->events);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(q->events, i), *ev = NULL;
        if (json_object_object_get_ex(e, "event", &ev) &&
            (!name || !strcmp(json_object_get_string(ev), name))) {
            json_object_get(e);
            json_object_array_del_idx(q->events, i, 1);
            return e;
        }
    }
    return NULL;
}

size_t ic_qmp_pending_events(const ic_qmp *q)
{
    return json_object_array_length(q->events);
}

static bool event_matches(json_object *e, const char *name, const char *key, const char *value)
{
    json_object *ev = NULL, *data = NULL, *v = NULL;
    if (!json_object_object_get_ex(e, "event", &ev) || strcmp(json_object_get_string(ev), name))
        return false;
    if (!key)
        return true;
    return json_object_object_get_ex(e, "data", &data) &&
           json_object_object_get_ex(data, key, &v) &&
           json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), value);
}

int ic_qmp_wait_event(ic_qmp *q, const char *name, const char *key, const char *value,
                      int timeout_ms, json_object **out, ic_error **errp)
{
    *out = NULL;
    size_t n = json_object_array_length(q->events);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(q->events, i);
        if (event_matches(e, name, key, value)) {
            *out = json_object_get(e);
            json_object_array_del_idx(q->events, i, 1);
            return 0;
        }
    }
    int64_t deadline = ic_qmp_now_ms() + (timeout_ms > 0 ? timeout_ms : q->chan.timeout_ms);
    for (;;) {
        json_object *r = NULL;
        int ret = ic_qmp_chan_recv(&q->chan, &r, deadline, name, errp);
        if (ret < 0)
            return ret;
        if (event_matches(r, name, key, value)) {
            *out = r;
            return 0;
        }
        if (json_object_object_get_ex(r, "event", NULL) && queue_event(q, r) == 0)
            continue;
        json_object_put(r);
    }
}

int ic_qmp_connect_fd(ic_qmp **out, int fd, const char *name, int timeout_ms, ic_error **errp)
{
    *out = NULL;
    ic_qmp *q = calloc(1, sizeof(*q));
    if (!q) {
        if (fd >= 0)
            close(fd);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    int ret = ic_qmp_chan_init(&q->chan, fd, name, timeout_ms, errp);
    if (ret < 0) {
        free(q);
        return ret;
    }
    if (!(q->events = json_object_new_array())) {
        ic_qmp_close(q);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    json_object *greet = NULL;
    ret = ic_qmp_chan_recv(&q->chan, &greet, ic_qmp_now_ms() + q->chan.timeout_ms,
                           "the QMP greeting", errp);
    if (ret == 0 && !json_object_object_get_ex(greet, "QMP", NULL))
        ret = ic_error_set(errp, IC_ERR_IO, EPROTO, "%s: not a QMP socket (no greeting)",
                           q->chan.name);
    json_object_put(greet);
    if (ret == 0)
        ret = ic_qmp_execute(q, "qmp_capabilities", NULL, NULL, errp);
    if (ret < 0) {
        ic_qmp_close(q);
        return ret;
    }
    *out = q;
    return 0;
}

int ic_qmp_connect(ic_qmp **out, const char *path, int timeout_ms, ic_error **errp)
{
    *out = NULL;
    int fd = ic_qmp_chan_dial(path, errp);
    if (fd < 0)
        return fd;
    return ic_qmp_connect_fd(out, fd, path, timeout_ms, errp);
}
