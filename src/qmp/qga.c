/*
 * qga.c - a guest-agent client: channel synchronisation and the fsfreeze
 * commands the quiesce hook needs.
 *
 * Design notes
 * ------------
 * Owns: one connection to qemu-ga (src/qmp/qmp-chan.c carries the bytes).
 * Invariants:
 *  1. Nothing is sent before the channel is synchronised: the agent may
 *     still hold a reply meant for an earlier client, so the first command
 *     is guest-sync-delimited with a random id; the input is discarded up
 *     to the 0xff sentinel the agent puts before that reply, and any reply
 *     not echoing the id is dropped.
 *  2. After that the agent answers strictly in order (it has no events),
 *     so each command reads exactly one reply.
 *  3. The caller decides what is frozen: ic_qga_fsfreeze with a list sends
 *     exactly that list with guest-fsfreeze-freeze-list (an empty list is
 *     never sent that way: the agent reads it as "everything").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "qmp-chan.h"
#include "qmp.h"

struct ic_qga {
    ic_qmp_chan chan;
};

void ic_qga_close(ic_qga *g)
{
    if (!g)
        return;
    ic_qmp_chan_fini(&g->chan);
    free(g);
}

static int reply(ic_qga *g, const char *cmd, int64_t deadline, json_object **ret_out,
                 ic_error **errp)
{
    json_object *r = NULL, *v = NULL;
    int ret = ic_qmp_chan_recv(&g->chan, &r, deadline, cmd, errp);
    if (ret < 0)
        return ret;
    if (json_object_object_get_ex(r, "error", &v)) {
        char text[512];
        ic_qmp_error_text(v, text, sizeof(text));
        ret = ic_error_set(errp, IC_ERR_IO, EIO, "%s: %s: the guest agent says: %s",
                           g->chan.name, cmd, text);
    } else if (!json_object_object_get_ex(r, "return", &v)) {
        ret = ic_error_set(errp, IC_ERR_IO, EPROTO,
                           "%s: %s: a reply with neither return nor error", g->chan.name, cmd);
    } else if (ret_out) {
        *ret_out = json_object_get(v);
    }
    json_object_put(r);
    return ret;
}

int ic_qga_execute(ic_qga *g, const char *cmd, json_object *args, json_object **ret_out,
                   ic_error **errp)
{
    if (ret_out)
        *ret_out = NULL;
    json_object *msg = json_object_new_object();
    if (!msg) {
        json_object_put(args);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    json_object_object_add(msg, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(msg, "arguments", args);
    int64_t deadline = ic_qmp_now_ms() + g->chan.timeout_ms;
    int ret = ic_qmp_chan_send(&g->chan, msg, deadline, cmd, errp);
    json_object_put(msg);
    return ret < 0 ? ret : reply(g, cmd, deadline, ret_out, errp);
}

static int sync_channel(ic_qga *g, ic_error **errp)
{
    int64_t id = 0;
    uint32_t rnd[2] = { 0, 0 };
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd[0] = (uint32_t)ic_qmp_now_ms() ^ (uint32_t)getpid();
    /* positive and exact in a double: the agent echoes an int */
    id = (int64_t)(((uint64_t)rnd[1] << 32 | rnd[0]) & ((1ull << 52) - 1)) + 1;
    json_object *args = json_object_new_object();
    json_object *msg = json_object_new_object();
    if (!args || !msg) {
        json_object_put(args);
        json_object_put(msg);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    json_object_object_add(args, "id", json_object_new_int64(id));
    json_object_object_add(msg, "execute", json_object_new_string("guest-sync-delimited"));
    json_object_object_add(msg, "arguments", args);
    const char *what = "guest-sync-delimited";
    int64_t deadline = ic_qmp_now_ms() + g->chan.timeout_ms;
    int ret = ic_qmp_chan_send(&g->chan, msg, deadline, what, errp);
    json_object_put(msg);
    if (ret == 0)
        ret = ic_qmp_chan_skip_delim(&g->chan, deadline, what, errp);
    while (ret == 0) {
        json_object *r = NULL, *v = NULL;
        if ((ret = ic_qmp_chan_recv(&g->chan, &r, deadline, what, errp)) < 0)
            break;
        bool match = json_object_object_get_ex(r, "return", &v) &&
                     json_object_is_type(v, json_type_int) && json_object_get_int64(v) == id;
        json_object_put(r);
        if (match)
            break;
    }
    return ret;
}

int ic_qga_connect_fd(ic_qga **out, int fd, const char *name, int timeout_ms, ic_error **errp)
{
    *out = NULL;
    ic_qga *g = calloc(1, sizeof(*g));
    if (!g) {
        close(fd);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    int ret = ic_qmp_chan_init(&g->chan, fd, name, timeout_ms, errp);
    if (ret == 0)
        ret = sync_channel(g, errp);
    if (ret < 0) {
        ic_qga_close(g);
        return ret;
    }
    *out = g;
    return 0;
}

int ic_qga_connect(ic_qga **out, const char *path, int timeout_ms, ic_error **errp)
{
    *out = NULL;
    int fd = ic_qmp_chan_dial(path, errp);
    if (fd < 0)
        return fd;
    return ic_qga_connect_fd(out, fd, path, timeout_ms, errp);
}

static int int_reply(ic_qga *g, const char *cmd, json_object *args, ic_error **errp)
{
    json_object *r = NULL;
    int ret = ic_qga_execute(g, cmd, args, &r, errp);
    if (ret < 0)
        return ret;
    if (!json_object_is_type(r, json_type_int) || json_object_get_int64(r) < 0 ||
        json_object_get_int64(r) > 1000000)
        ret = ic_error_set(errp, IC_ERR_IO, EPROTO, "%s: %s: expected a count, got %s",
                           g->chan.name, cmd, json_object_to_json_string(r));
    else
        ret = (int)json_object_get_int64(r);
    json_object_put(r);
    return ret;
}

int ic_qga_fsfreeze_status(ic_qga *g, bool *frozen, ic_error **errp)
{
    json_object *r = NULL;
    int ret = ic_qga_execute(g, "guest-fsfreeze-status", NULL, &r, errp);
    if (ret < 0)
        return ret;
    const char *s = json_object_is_type(r, json_type_string) ? json_object_get_string(r) : "";
    if (!strcmp(s, "frozen") || !strcmp(s, "thawed"))
        *frozen = !strcmp(s, "frozen");
    else
        ret = ic_error_set(errp, IC_ERR_IO, EPROTO,
                           "%s: guest-fsfreeze-status: unexpected status %s", g->chan.name,
                           json_object_to_json_string(r));
    json_object_put(r);
    return ret;
}

int ic_qga_fsfreeze(ic_qga *g, const char *const *mountpoints, size_t n, ic_error **errp)
{
    if (n == 0)
        return int_reply(g, "guest-fsfreeze-freeze", NULL, errp);
    json_object *args = json_object_new_object();
    json_object *list = json_object_new_array();
    if (!args || !list) {
        json_object_put(args);
        json_object_put(list);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        json_object_array_add(list, json_object_new_string(mountpoints[i]));
    json_object_object_add(args, "mountpoints", list);
    return int_reply(g, "guest-fsfreeze-freeze-list", args, errp);
}

int ic_qga_fsfreeze_thaw(ic_qga *g, ic_error **errp)
{
    return int_reply(g, "guest-fsfreeze-thaw", NULL, errp);
}
