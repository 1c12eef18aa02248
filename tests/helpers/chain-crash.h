/*
 * chain-crash.h - a crash simulator spanning every file of a chain (tests).
 *
 * io-crash.c crashes one file at its own Nth flush.  A chain operation
 * writes several files (base, overlay, journal), so here one "world" counts
 * the flushes of all the files opened through chain_crash_open() (the
 * ic_open_options.open_file callback) and crashes them all together at the
 * Nth: every write or truncate of every file not yet flushed is applied,
 * dropped or torn sector by sector (garbage only past the size the file
 * had at its last flush), as a seeded RNG decides; then every operation
 * of every file fails with -EIO.  Reads see the writes not yet flushed.
 * Closing a file that did not crash applies its pending writes (a clean
 * exit keeps the page cache).
 */
#ifndef IC_TESTS_CHAIN_CRASH_H
#define IC_TESTS_CHAIN_CRASH_H

#include <stdbool.h>
#include <stdint.h>
#include "imgchain/sys/io.h"

struct chain_crash_world;

/* crash_at: 1-based flush number to crash at (0 = never). */
struct chain_crash_world *chain_crash_world_new(unsigned crash_at, uint64_t seed);
void chain_crash_world_free(struct chain_crash_world *w);
bool chain_crash_happened(const struct chain_crash_world *w);
unsigned chain_crash_flushes(const struct chain_crash_world *w);
/* Pending operations resolved at the crash (applied/dropped/torn). */
void chain_crash_stats(const struct chain_crash_world *w, unsigned long *applied,
                       unsigned long *dropped, unsigned long *torn);

/* ic_open_file_fn: opens @path with the POSIX backend (no locks) and wraps
 * it into the world given as @payload. */
int chain_crash_open(ic_io **out, const char *path, unsigned io_flags, void *payload,
                     ic_error **errp);

#endif
