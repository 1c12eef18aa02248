/*
 * toylog.h - a tiny append-only log "format" used to test the test
 * machinery itself (the fault and crash backends and loops) without
 * depending on any real format engine.  It is also the shortest example of
 * how a format calls ic_io_event() and orders its writes.
 *
 * Layout (512-byte sectors):
 *   sector 0        header: "TOYLOG01" | count le64 | fnv64(bytes 0..15) le64
 *   sector 1+i      record i: seq le64 | fnv64(payload) le64 | payload[496]
 * A correct append writes the record, flushes, then rewrites the header
 * ("if we crash before the header update we only leak the record").
 */
#ifndef IC_TOYLOG_H
#define IC_TOYLOG_H

#include <stdbool.h>
#include <stdint.h>
#include "io/io.h"

#define TOYLOG_SECTOR 512u

/* Writes an empty log (count 0) and flushes. */
int toylog_create(ic_io *io);
/* Appends @n records.  misordered: header first, record after, one flush
 * (the bug the loops must catch).  0 or the first -errno. */
int toylog_append(ic_io *io, unsigned n, bool misordered);
/* Checks the log: *count = header count (0 when the header is bad),
 * *corrupt = bad header or bad records below count, *leaked = records
 * past count.  0, or -errno when the file cannot be read. */
int toylog_check(ic_io *io, uint64_t *count, uint64_t *corrupt, uint64_t *leaked);
/* The same on a file path (opened read-only without locks). */
int toylog_check_path(const char *path, uint64_t *count, uint64_t *corrupt, uint64_t *leaked);

#endif
