/*
 * io-fault.c - fault injection filter (test-only; after QEMU's
 * blkdebug rules and SQLite's TestFaultInject countdowns).
 *
 * Design notes:
 *  A filter over another ic_io.  Every request first goes through
 *  check_request(); if a rule says so it fails with the rule's errno and the
 *  inner backend is not called at all.  Otherwise the request is passed on.
 *
 *  Invariants:
 *   1. Event rules count ic_io_event() calls for their event; reaching the
 *      nth arms them.  Only an armed rule fails requests (blkdebug's
 *      "immediately=off": the request AFTER the event fails, which is the
 *      metadata write the event announces).
 *   2. Request rules count their own matching requests; the nth fails, and
 *      with a persistent rule every later one too.
 *   3. A once rule injects at most one failure in its life, then is spent.
 *      A persistent rule, once triggered, fails every matching request.
 *   4. A request is matched against the rules in the order they were added;
 *      the first rule that fails it wins, but every request rule that
 *      matches still counts the request (so nth stays "the nth request",
 *      whatever other rules did).
 *   5. A failed request never reaches the inner backend: no partial write.
 *   6. Events are forwarded to the inner backend so filters can be stacked
 *      (fault over crash over memory).
 *  The fault loop is described in docs/architecture.md (test kinds); qemu-iotests 026.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "io-fault.h"
#include "util/error.h"

struct rule_state {
    struct ic_fault_rule r;
    unsigned long count; /* events (event rules) or requests (request rules) */
    bool armed;          /* event rule: nth event seen */
    bool spent;          /* once rule that injected */
};

struct io_fault {
    ic_io base;
    ic_io *inner;
    struct rule_state rules[IC_FAULT_MAX_RULES];
    size_t n_rules;
    unsigned long injected;
    unsigned long events[IC_EV__MAX];
    unsigned long requests[5]; /* by IC_FAULT_IO_* bit index */
};

static const struct ic_io_ops fault_ops;

static struct io_fault *to_fault(ic_io *io)
{
    return (struct io_fault *)io;
}

static const struct io_fault *fault_of_const(const ic_io *io)
{
    return io && io->ops == &fault_ops ? (const struct io_fault *)io : NULL;
}

static bool is_request_rule(int event)
{
    return event == IC_FAULT_ANY_WRITE || event == IC_FAULT_ANY_FLUSH ||
           event == IC_FAULT_ANY_READ;
}

static unsigned default_iotypes(int event)
{
    switch (event) {
    case IC_FAULT_ANY_WRITE: return IC_FAULT_IO_WRITE;
    case IC_FAULT_ANY_FLUSH: return IC_FAULT_IO_FLUSH;
    case IC_FAULT_ANY_READ:  return IC_FAULT_IO_READ;
    default:                 return IC_FAULT_IO_ALL; /* blkdebug's default */
    }
}

const char *ic_fault_event_name(int event)
{
    switch (event) {
    case IC_FAULT_ANY_WRITE: return "any write";
    case IC_FAULT_ANY_FLUSH: return "any flush";
    case IC_FAULT_ANY_READ:  return "any read";
    default: {
        const char *n = ic_event_name(event);
        return n ? n : "(unknown event)";
    }
    }
}

static unsigned type_index(unsigned iotype)
{
    unsigned i = 0;
    while (i < 5 && !(iotype & (1u << i)))
        i++;
    return i;
}

/* Does [off, off+len) touch the rule's range?  Flush/truncate pass len 0
 * with `anywhere` set: a range never excludes them. */
static bool in_range(const struct ic_fault_rule *r, uint64_t off, uint64_t len, bool anywhere)
{
    if (r->len == 0 || anywhere)
        return true;
    uint64_t rend = r->off + r->len < r->off ? UINT64_MAX : r->off + r->len;
    uint64_t end = off + len < off ? UINT64_MAX : off + len;
    return off < rend && r->off < end;
}

/* Returns 0 to let the request through, or -errno to fail it. */
static int check_request(struct io_fault *f, unsigned iotype, uint64_t off, uint64_t len,
                         bool anywhere)
{
    int fail = 0;
    f->requests[type_index(iotype)]++;
    for (size_t i = 0; i < f->n_rules; i++) {
        struct rule_state *s = &f->rules[i];
        const struct ic_fault_rule *r = &s->r;
        if (s->spent || !(r->iotypes & iotype) || !in_range(r, off, len, anywhere))
            continue;
        bool hit;
        if (is_request_rule(r->event)) {
            s->count++;
            hit = r->once ? s->count == r->nth : s->count >= r->nth;
        } else {
            hit = s->armed;
        }
        if (!hit || fail)
            continue;
        fail = -r->errnum;
        if (r->once)
            s->spent = true;
    }
    if (fail)
        f->injected++;
    return fail;
}

static int64_t fault_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct io_fault *f = to_fault(io);
    int ret = check_request(f, IC_FAULT_IO_READ, off, len, false);
    if (ret < 0)
        return ret;
    return f->inner->ops->pread(f->inner, buf, len, off);
}

static int fault_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct io_fault *f = to_fault(io);
    int ret = check_request(f, IC_FAULT_IO_WRITE, off, len, false);
    if (ret < 0)
        return ret;
    return ic_io_pwrite(f->inner, buf, len, off);
}

static int fault_flush(ic_io *io)
{
    struct io_fault *f = to_fault(io);
    int ret = check_request(f, IC_FAULT_IO_FLUSH, 0, 0, true);
    if (ret < 0)
        return ret;
    return ic_io_flush(f->inner);
}

static int fault_truncate(ic_io *io, uint64_t size)
{
    struct io_fault *f = to_fault(io);
    int ret = check_request(f, IC_FAULT_IO_TRUNCATE, size, 0, true);
    if (ret < 0)
        return ret;
    return ic_io_truncate(f->inner, size);
}

static int fault_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    struct io_fault *f = to_fault(io);
    if (!f->inner->ops->punch_hole)
        return -ENOTSUP; /* not a request the disk saw */
    int ret = check_request(f, IC_FAULT_IO_DISCARD, off, len, false);
    if (ret < 0)
        return ret;
    return ic_io_punch_hole(f->inner, off, len);
}

static int64_t fault_get_size(ic_io *io)
{
    return ic_io_get_size(to_fault(io)->inner);
}

static void fault_event(ic_io *io, int event)
{
    struct io_fault *f = to_fault(io);
    if (event >= 0 && event < IC_EV__MAX)
        f->events[event]++;
    for (size_t i = 0; i < f->n_rules; i++) {
        struct rule_state *s = &f->rules[i];
        if (s->r.event != event || s->spent || s->armed)
            continue;
        if (++s->count >= s->r.nth)
            s->armed = true;
    }
    if (f->inner->ops->event)
        f->inner->ops->event(f->inner, event);
}

static int fault_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(to_fault(io)->inner, mode, errp);
}

static int fault_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    return ic_io_block_status(to_fault(io)->inner, off, len, pnum);
}

static int64_t fault_allocated_size(ic_io *io)
{
    return ic_io_allocated_size(to_fault(io)->inner);
}

static int fault_close(ic_io *io)
{
    return ic_io_close(ic_io_fault_release_inner(io));
}

static const struct ic_io_ops fault_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = fault_close,
    .pread = fault_pread,
    .pwrite = fault_pwrite,
    .flush = fault_flush,
    .truncate = fault_truncate,
    .get_size = fault_get_size,
    .punch_hole = fault_punch_hole,
    .event = fault_event,
    .lock = fault_lock,
    .block_status = fault_block_status,
    .allocated_size = fault_allocated_size,
    .submit = NULL, /* batches run request by request, so rules see each one */
};

int ic_io_fault_wrap(ic_io **out, ic_io *inner, ic_error **errp)
{
    *out = NULL;
    if (!inner)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "fault wrapper: no inner backend");
    struct io_fault *f = ic_io_backend_new(sizeof(*f), &fault_ops, ic_io_name(inner),
                                           inner->open_flags);
    if (!f) {
        ic_io_close(inner);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "fault wrapper: out of memory");
    }
    f->inner = inner;
    *out = &f->base;
    return 0;
}

int ic_io_fault_add_rule(ic_io *io, const struct ic_fault_rule *r)
{
    if (!fault_of_const(io) || !r)
        return -EINVAL;
    struct io_fault *f = to_fault(io);
    if (!is_request_rule(r->event) && (r->event < 0 || r->event >= IC_EV__MAX))
        return -EINVAL;
    if (r->errnum <= 0)
        return -EINVAL;
    if (r->iotypes & ~IC_FAULT_IO_ALL)
        return -EINVAL;
    if (f->n_rules == IC_FAULT_MAX_RULES)
        return -ENOSPC;
    struct rule_state *s = &f->rules[f->n_rules++];
    memset(s, 0, sizeof(*s));
    s->r = *r;
    if (s->r.nth == 0)
        s->r.nth = 1;
    if (s->r.iotypes == 0)
        s->r.iotypes = default_iotypes(r->event);
    return 0;
}

void ic_io_fault_clear_rules(ic_io *io)
{
    if (fault_of_const(io))
        to_fault(io)->n_rules = 0;
}

unsigned long ic_io_fault_injected(const ic_io *io)
{
    const struct io_fault *f = fault_of_const(io);
    return f ? f->injected : 0;
}

unsigned long ic_io_fault_event_count(const ic_io *io, int ev)
{
    const struct io_fault *f = fault_of_const(io);
    if (!f || ev < 0 || ev >= IC_EV__MAX)
        return 0;
    return f->events[ev];
}

unsigned long ic_io_fault_request_count(const ic_io *io, unsigned iotype)
{
    const struct io_fault *f = fault_of_const(io);
    if (!f || iotype == 0 || (iotype & (iotype - 1)) || iotype > IC_FAULT_IO_DISCARD)
        return 0;
    return f->requests[type_index(iotype)];
}

ic_io *ic_io_fault_release_inner(ic_io *io)
{
    if (!fault_of_const(io))
        return NULL;
    struct io_fault *f = to_fault(io);
    ic_io *inner = f->inner;
    free(f->base.name);
    free(f);
    return inner;
}
