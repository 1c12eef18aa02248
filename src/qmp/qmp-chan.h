/*
 * qmp/qmp-chan.h - the transport under both clients of src/qmp (private to
 * the module): one unix stream socket carrying JSON documents, one per
 * line, with a deadline on every wait.
 */
#ifndef IC_QMP_CHAN_H
#define IC_QMP_CHAN_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Largest message accepted (query-named-block-nodes of a big VM is well
 * under this); beyond it the peer is not speaking the protocol. */
#define IC_QMP_MAX_MSG (16u << 20)

typedef struct ic_qmp_chan {
    int fd;
    char *name;         /* the socket's path, for messages */
    char *buf;
    size_t len, cap;
    int timeout_ms;
} ic_qmp_chan;

/* Monotonic milliseconds. */
int64_t ic_qmp_now_ms(void);
/* Connects to unix socket @path; returns the descriptor or -errno. */
int ic_qmp_chan_dial(const char *path, ic_error **errp);
int ic_qmp_chan_init(ic_qmp_chan *c, int fd, const char *name, int timeout_ms, ic_error **errp);
void ic_qmp_chan_fini(ic_qmp_chan *c);
/* Writes @msg as one line before @deadline. */
int ic_qmp_chan_send(ic_qmp_chan *c, json_object *msg, int64_t deadline, const char *what,
                     ic_error **errp);
/* Writes raw bytes before @deadline. */
int ic_qmp_chan_send_raw(ic_qmp_chan *c, const char *data, size_t n, int64_t deadline,
                         const char *what, ic_error **errp);
/* Reads the next non-empty line as a JSON object before @deadline;
 * @what names what was awaited in errors. */
int ic_qmp_chan_recv(ic_qmp_chan *c, json_object **out, int64_t deadline, const char *what,
                     ic_error **errp);
/* Discards input up to and including the first 0xff byte. */
int ic_qmp_chan_skip_delim(ic_qmp_chan *c, int64_t deadline, const char *what, ic_error **errp);
/* "DESC (CLASS)" of an "error" member (borrowed parts copied into @out). */
void ic_qmp_error_text(json_object *err, char *out, size_t n);

#endif
