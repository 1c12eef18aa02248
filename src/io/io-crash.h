/*
 * io-crash.h - crash-simulating filter backend (test-only; SQLite test6.c).
 *
 * The wrapper keeps every write, zero range and truncate since the last
 * flush in an ordered list; reads see them (read-your-writes).  A flush
 * applies the list to the inner backend and clears it, except the
 * crash_at_flush-th flush, which "crashes": each listed operation is then
 * applied, dropped, or torn (each 512-byte sector applied, skipped, or
 * replaced with garbage), as a seeded RNG decides, and every later call
 * fails with -EIO.  Garbage lands only in sectors past the end of the file
 * as last flushed (new space may hold anything; an overwritten sector is
 * old or new, as disks write sectors atomically) unless the test asks for
 * IC_CRASH_TRASH_ANY_SECTOR.  The inner backend then holds the bytes that would have
 * survived a power failure at that point.
 *
 * Truncates are buffered in the same ordered list as writes (a file size
 * change is metadata the file system may lose too): at a crash each one is
 * applied or dropped, in order with the writes around it.
 *
 * Closing or releasing a wrapper that has not crashed applies the pending
 * list without flushing (a process that exits cleanly leaves its writes in
 * the page cache, which survives); after a crash the list is gone.
 *
 * Built only into test programs (-DIC_TEST).
 */
#ifndef IC_IO_CRASH_H
#define IC_IO_CRASH_H

#include <stdbool.h>
#include <stdint.h>
#include "io.h"

/* Takes ownership of @inner (closed on failure too); at the Nth flush
 * (1-based; 0 = never) it crashes: each write since the previous flush is
 * applied, dropped, or torn (512-byte sectors applied or not, or garbage) by
 * the seeded RNG; after the crash every op fails with -EIO.
 * @return 0; -EINVAL (no inner); -ENOMEM */
int ic_io_crash_wrap(ic_io **out, ic_io *inner, unsigned crash_at_flush, uint64_t seed,
                     ic_error **errp);
/* Crashes @io now, as at its crash flush (pending operations applied,
 * dropped or torn; every later call fails with -EIO): for schedules that
 * span several files, where the test decides when the machine dies.
 * 0; -EINVAL not a crash wrapper; a no-op once crashed. */
int ic_io_crash_now(ic_io *io);
/* True once the wrapper has crashed; false for other backends. */
bool ic_io_crash_happened(const ic_io *io);
/* Flushes seen so far, the crashing one included; 0 for other backends. */
unsigned ic_io_crash_flush_count(const ic_io *io);
/* Frees the wrapper, returns the inner backend holding the surviving bytes
 * (NULL when @io is not a crash wrapper). */
ic_io *ic_io_crash_release_inner(ic_io *io);

/* Flags for ic_io_crash_set_flags(). */
#define IC_CRASH_TRASH_ANY_SECTOR (1u << 0) /* garbage may hit overwritten sectors too */
#define IC_CRASH_NO_TEAR          (1u << 1) /* each write applied or dropped whole */
/* @return 0; -EINVAL unknown flag or not a crash wrapper. */
int ic_io_crash_set_flags(ic_io *io, unsigned flags);

/* What the crash did, for tests that want to see it was not a no-op. */
struct ic_io_crash_stats {
    unsigned long pending;        /* operations in the list at the crash */
    unsigned long applied;        /* applied whole */
    unsigned long dropped;        /* dropped whole */
    unsigned long torn;           /* writes/zero ranges torn sector by sector */
    unsigned long garbage_sectors;/* sectors replaced with random bytes */
};
/* Fills @out (all zero for other backends or before a crash). */
void ic_io_crash_get_stats(const ic_io *io, struct ic_io_crash_stats *out);

#endif
