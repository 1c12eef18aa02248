/*
 * io-fault.h - rule-based fault injection filter (test-only; QEMU blkdebug).
 *
 * Wrap any backend, add rules, run an operation, look at what happened:
 *
 *     ic_io *io;
 *     ic_io_fault_wrap(&io, inner, NULL);            (takes inner)
 *     struct ic_fault_rule r = IC_FAULT_RULE_INIT;
 *     r.event = IC_EV_L2_UPDATE; r.errnum = ENOSPC; r.once = false;
 *     ic_io_fault_add_rule(io, &r);
 *     ... operation on io ...
 *     ic_io_fault_injected(io);                      (how many requests failed)
 *     inner = ic_io_fault_release_inner(io);         (the bytes that were written)
 *
 * Two kinds of rules:
 *  - Event rules (event = an IC_EV_* of src/io/events.def).  Drivers call
 *    ic_io_event() just before a metadata write.  When the rule's event has
 *    fired for the nth time the rule is armed, and the NEXT request whose
 *    type is in `iotypes` (default: every type, as blkdebug's default) and
 *    that touches the byte range fails with -errnum.  once: that one request
 *    fails and the rule is spent.  Persistent: every matching request from
 *    then on fails (the disk is gone).
 *  - Request rules (IC_FAULT_ANY_WRITE / _FLUSH / _READ).  They count the
 *    requests of their type (default: pwrite / flush / pread) that touch the
 *    range and fail the nth directly; persistent rules fail the nth and
 *    every later one.
 *
 * A failed request does nothing (no partial write).  Flush and truncate
 * have no byte range: a range never excludes them.  get_size, lock, block
 * status and events are never failed.
 *
 * Built only into test programs (-DIC_TEST).
 */
#ifndef IC_IO_FAULT_H
#define IC_IO_FAULT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include "io.h"

/* Request rules: "any write", "any flush", "any read" (not IC_EV_*). */
#define IC_FAULT_ANY_WRITE (-1)
#define IC_FAULT_ANY_FLUSH (-2)
#define IC_FAULT_ANY_READ  (-3)

/* Request types (the iotypes mask). */
#define IC_FAULT_IO_READ     (1u << 0) /* pread */
#define IC_FAULT_IO_WRITE    (1u << 1) /* pwrite */
#define IC_FAULT_IO_FLUSH    (1u << 2) /* flush */
#define IC_FAULT_IO_TRUNCATE (1u << 3) /* truncate */
#define IC_FAULT_IO_DISCARD  (1u << 4) /* punch_hole */
#define IC_FAULT_IO_ALL      0x1fu

struct ic_fault_rule {
    int event;         /* IC_EV_* or IC_FAULT_ANY_* */
    unsigned nth;      /* 1-based occurrence that triggers the rule (0 = 1) */
    int errnum;        /* positive errno to fail with (EIO, ENOSPC, ...) */
    bool once;         /* true: one failure; false: persistent */
    uint64_t off;      /* byte range a request must touch; len 0 = anywhere */
    uint64_t len;
    unsigned iotypes;  /* IC_FAULT_IO_* mask; 0 = the default for the rule kind */
};
#define IC_FAULT_RULE_INIT { IC_FAULT_ANY_WRITE, 1, EIO, true, 0, 0, 0 }

/* Limit on rules per wrapper: tests add a handful; a bound keeps the rule
 * check a short loop. */
#define IC_FAULT_MAX_RULES 16

/* Wraps @inner (ownership taken, closed on failure too).  @return 0;
 * -EINVAL no inner; -ENOMEM. */
int ic_io_fault_wrap(ic_io **out, ic_io *inner, ic_error **errp);
/* Adds a rule (copied).  @return 0; -EINVAL bad event, errno or non-fault
 * backend; -ENOSPC more than IC_FAULT_MAX_RULES. */
int ic_io_fault_add_rule(ic_io *io, const struct ic_fault_rule *r);
/* Removes every rule (counters are kept). */
void ic_io_fault_clear_rules(ic_io *io);
/* Requests failed so far. */
unsigned long ic_io_fault_injected(const ic_io *io);
/* How many times event @ev (IC_EV_*) fired through this wrapper. */
unsigned long ic_io_fault_event_count(const ic_io *io, int ev);
/* How many requests of one type (a single IC_FAULT_IO_* bit) were made. */
unsigned long ic_io_fault_request_count(const ic_io *io, unsigned iotype);
/* Frees the wrapper and returns the inner backend (NULL for other backends). */
ic_io *ic_io_fault_release_inner(ic_io *io);
/* "l2_update", "any write", ... for messages. */
const char *ic_fault_event_name(int event);

#endif
