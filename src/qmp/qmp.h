/*
 * qmp/qmp.h - the two protocols imgchain speaks to a running VM: QMP
 * (qemu's monitor) and the guest agent's, both JSON lines over a unix
 * socket.  Only src/qmp speaks either; src/snap uses this interface.
 *
 * Every wait has a deadline (timeout_ms, per call); a silent peer is an
 * error naming the socket and the command, never a hang.  Errors from the
 * peer become one line: "SOCK: COMMAND: qemu says: DESC (CLASS)".
 */
#ifndef IC_QMP_QMP_H
#define IC_QMP_QMP_H

#include <json-c/json.h>
#include <stdbool.h>

#include "util/error.h"

/* Default wait for one reply (ms): qemu answers monitor commands at once;
 * jobs are waited for with their own deadline. */
#define IC_QMP_TIMEOUT_MS 10000

typedef struct ic_qmp ic_qmp;

/**
 * Connects to the QMP socket @p path, reads the greeting and negotiates
 * (qmp_capabilities).  -ECONNREFUSED / -ENOENT when nothing listens (the
 * VM is not running), -ETIMEDOUT when the greeting does not come.
 */
int ic_qmp_connect(ic_qmp **out, const char *path, int timeout_ms, ic_error **errp);
/** The same over a connected descriptor @p fd (taken); @p name labels
 * messages. */
int ic_qmp_connect_fd(ic_qmp **out, int fd, const char *name, int timeout_ms, ic_error **errp);
void ic_qmp_close(ic_qmp *q);

/**
 * Runs @p cmd with @p args (taken; may be NULL) and waits for the reply
 * carrying its id; events read meanwhile are kept (ic_qmp_take_event).
 * @param ret_out receives the "return" value (json_object_put), may be NULL
 * @return 0; -EIO qemu answered with an error (message names @p cmd and
 *   qemu's description); -ETIMEDOUT; -EPROTO garbage; -ECONNRESET closed.
 */
int ic_qmp_execute(ic_qmp *q, const char *cmd, json_object *args, json_object **ret_out,
                   ic_error **errp);

/** Removes and returns the oldest event named @p name already read (NULL:
 * none).  json_object_put() it. */
json_object *ic_qmp_take_event(ic_qmp *q, const char *name);
/** Number of events read and set aside. */
size_t ic_qmp_pending_events(const ic_qmp *q);
/**
 * Waits up to @p timeout_ms for an event named @p name whose "data" has
 * @p key equal to @p value (both NULL: any); returns it in @p out.
 */
int ic_qmp_wait_event(ic_qmp *q, const char *name, const char *key, const char *value,
                      int timeout_ms, json_object **out, ic_error **errp);
/** Sets the deadline of later waits for a reply. */
void ic_qmp_set_timeout(ic_qmp *q, int timeout_ms);

/* ---- the guest agent ---- */

typedef struct ic_qga ic_qga;

/**
 * Connects to the agent's socket @p path and synchronises the channel:
 * guest-sync-delimited with a random id, discarding everything up to the
 * 0xff sentinel and any reply not carrying that id.
 */
int ic_qga_connect(ic_qga **out, const char *path, int timeout_ms, ic_error **errp);
int ic_qga_connect_fd(ic_qga **out, int fd, const char *name, int timeout_ms, ic_error **errp);
void ic_qga_close(ic_qga *g);

/** Any agent command (as ic_qmp_execute). */
int ic_qga_execute(ic_qga *g, const char *cmd, json_object *args, json_object **ret_out,
                   ic_error **errp);
/** guest-fsfreeze-status: *frozen true for "frozen". */
int ic_qga_fsfreeze_status(ic_qga *g, bool *frozen, ic_error **errp);
/**
 * Freezes every guest file system (@p n == 0: guest-fsfreeze-freeze) or
 * exactly @p mountpoints (guest-fsfreeze-freeze-list); returns the count
 * frozen (>= 0) or -errno.
 */
int ic_qga_fsfreeze(ic_qga *g, const char *const *mountpoints, size_t n, ic_error **errp);
/** guest-fsfreeze-thaw; returns the count thawed or -errno. */
int ic_qga_fsfreeze_thaw(ic_qga *g, ic_error **errp);

#endif
