/*
 * chain-rebase.h - ic_chain_rebase() with statistics (for tests and
 * benchmarks).
 */
#ifndef IC_CHAIN_CHAIN_REBASE_H
#define IC_CHAIN_CHAIN_REBASE_H

#include "imgchain/chain-edit.h"

struct ic_rebase_stats {
    unsigned readers;        /* reader threads of the safe copy (0: inline) */
    uint64_t compared_bytes; /* bytes of both views read and compared */
    uint64_t written_bytes;  /* bytes written into FILE (data and zeroes) */
    uint64_t fills;          /* chunks read by the copy engine */
    uint64_t fills_while_writing; /* of which begun while FILE was being written */
    uint64_t writes_while_filling; /* writes begun while a reader was filling */
};

/* ic_chain_rebase(), filling @stats (may be NULL). */
int ic_chain_rebase_stats(const char *path, const ic_rebase_options *opts,
                          struct ic_rebase_stats *stats, ic_error **errp);

#endif
