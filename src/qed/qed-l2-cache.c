/*
 * qed-l2-cache.c - the QED L2 table cache.
 *
 * Design notes:
 *  Owns: nothing on disk; an LRU array of CPU-endian L2 tables keyed by the
 *  table's host offset (qemu's QED driver keeps 50 reference-counted
 *  entries; the driver here is synchronous, so a borrowed pointer valid until
 *  the next cache call replaces the reference counts).
 *  Invariants:
 *   1. Write-through: every change to a cached table is written to disk by
 *      the caller before the next cache call, and a failed write drops the
 *      slot.  The cache therefore never holds unwritten data and eviction
 *      never does I/O.
 *   2. Offset 0 never names a table (cluster 0 is the header), so it marks
 *      an empty slot.
 *   3. The number of slots is bounded by QED_L2_CACHE_BUDGET bytes, with at
 *      least QED_L2_CACHE_MIN and at most QED_L2_CACHE_MAX slots; table
 *      buffers are allocated on first use only.
 *  Follows qemu's QED L2 cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"

int qed_l2_cache_init(struct qed_l2_cache *c, size_t table_bytes)
{
    size_t n = table_bytes ? QED_L2_CACHE_BUDGET / table_bytes : QED_L2_CACHE_MAX;
    if (n < QED_L2_CACHE_MIN)
        n = QED_L2_CACHE_MIN;
    if (n > QED_L2_CACHE_MAX)
        n = QED_L2_CACHE_MAX;
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots)
        return -ENOMEM;
    c->nslots = (unsigned)n;
    c->tick = 0;
    c->table_bytes = table_bytes;
    return 0;
}

void qed_l2_cache_destroy(struct qed_l2_cache *c)
{
    if (!c->slots)
        return;
    for (unsigned i = 0; i < c->nslots; i++)
        free(c->slots[i].table);
    free(c->slots);
    c->slots = NULL;
    c->nslots = 0;
}

uint64_t *qed_l2_cache_find(struct qed_l2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->nslots; i++) {
        struct qed_l2_slot *sl = &c->slots[i];
        if (sl->offset == offset && offset != 0) {
            sl->lru = ++c->tick;
            return sl->table;
        }
    }
    return NULL;
}

uint64_t *qed_l2_cache_insert(struct qed_l2_cache *c, uint64_t offset)
{
    struct qed_l2_slot *victim = NULL;
    for (unsigned i = 0; i < c->nslots && !victim; i++)
        if (c->slots[i].offset == offset)
            victim = &c->slots[i];
    for (unsigned i = 0; i < c->nslots && !victim; i++)
        if (c->slots[i].offset == 0)
            victim = &c->slots[i];
    if (!victim) {
        victim = &c->slots[0];
        for (unsigned i = 1; i < c->nslots; i++)
            if (c->slots[i].lru < victim->lru)
                victim = &c->slots[i];
    }
    victim->offset = 0; /* until filled: a failed allocation leaves it empty */
    if (!victim->table) {
        victim->table = malloc(c->table_bytes);
        if (!victim->table)
            return NULL;
    }
    victim->offset = offset;
    victim->lru = ++c->tick;
    return victim->table;
}

void qed_l2_cache_drop(struct qed_l2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->nslots; i++)
        if (c->slots[i].offset == offset)
            c->slots[i].offset = 0;
}

void qed_l2_cache_clear(struct qed_l2_cache *c)
{
    for (unsigned i = 0; i < c->nslots; i++)
        c->slots[i].offset = 0;
}
