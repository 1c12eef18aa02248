/*
 * qcow2-cache.c - bounded write-back cache of L2 tables and refcount
 * blocks (as QEMU's qcow2 table cache).
 *
 * Design notes:
 *  Owns no on-disk structure of its own; it holds copies of one-cluster
 *  tables (L2 tables, refblocks), or of equal slices of L2 tables, keyed
 *  by their host offset.
 *  1. A slot's buffer is allocated on first use, so memory grows with
 *     what is touched, never past nb * size.
 *  2. Entries are pinned between get and put (ref > 0) and never evicted
 *     while pinned.  Eviction picks the least recently used unpinned slot,
 *     preferring clean ones; a dirty victim is written first.
 *  3. Dependency (qcow2_cache_set_dependency in qemu): before a cache
 *     writes any dirty entry, its `depends` cache is written and, with
 *     depends_on_flush, the files are flushed.  The L2 cache depends on
 *     the refblock cache, so a refcount increment always reaches disk
 *     before an L2 entry that references the new cluster, and the data
 *     and COW writes made before are durable too: if we crash after an L2
 *     table is written, everything it points to is allocated and written.
 *  4. Writes are whole clusters at the table's offset, announced with the
 *     cache's event (IC_EV_L2_UPDATE / IC_EV_REFBLOCK_UPDATE).
 *  5. A scan that reads tables one after the other (c->recycle, set by the
 *     reader) will not come back to them soon: once the cache holds
 *     QCOW2_MIN_L2_CACHE entries, a new one takes the least recently used
 *     clean slot instead of a never used one, so a streaming walk (map,
 *     convert) does not allocate and fault in the whole cache's memory.
 *     Only clean entries are recycled; otherwise the normal choice stands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, size_t nb, size_t size, enum ic_event ev_write,
                     const char *what)
{
    memset(c, 0, sizeof(*c));
    c->e = calloc(nb, sizeof(*c->e));
    if (!c->e)
        return -ENOMEM;
    c->nb = nb;
    c->size = size;
    c->ev_write = ev_write;
    c->what = what;
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    if (!c->e)
        return;
    for (size_t i = 0; i < c->nb; i++)
        free(c->e[i].buf);
    free(c->e);
    c->e = NULL;
    c->nb = 0;
}

static int entry_write(struct ic_image *img, struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!e->dirty)
        return 0;
    if (c->depends) {
        int ret = qcow2_cache_write(img, c->depends);
        if (ret < 0)
            return ret;
    }
    if (c->depends_on_flush) {
        /* Everything the table may point to (refcounts, data, COW) must
         * be durable before the table itself is written. */
        int ret = ic_io_flush(img->file);
        if (ret == 0 && s->data_file)
            ret = ic_io_flush(s->data_file);
        if (ret < 0)
            return ret;
    }
    ic_io_event(img->file, c->ev_write);
    int ret = ic_io_pwrite(img->file, e->buf, c->size, e->offset);
    if (ret < 0)
        return ret;
    e->dirty = false;
    return 0;
}

int qcow2_cache_write(struct ic_image *img, struct qcow2_cache *c)
{
    bool any = false;
    for (size_t i = 0; i < c->nb; i++)
        if (c->e[i].dirty)
            any = true;
    if (!any)
        return 0;
    /* One dependency pass for the whole batch, then sorted-ish writes. */
    if (c->depends) {
        int ret = qcow2_cache_write(img, c->depends);
        if (ret < 0)
            return ret;
    }
    if (c->depends_on_flush) {
        struct qcow2_state *s = qcow2_state(img);
        int ret = ic_io_flush(img->file);
        if (ret == 0 && s->data_file)
            ret = ic_io_flush(s->data_file);
        if (ret < 0)
            return ret;
    }
    struct qcow2_cache *dep = c->depends;
    bool dof = c->depends_on_flush;
    c->depends = NULL;
    c->depends_on_flush = false;
    int ret = 0;
    for (size_t i = 0; i < c->nb && ret == 0; i++)
        ret = entry_write(img, c, &c->e[i]);
    c->depends = dep;
    c->depends_on_flush = dof;
    return ret;
}

static struct qcow2_cache_entry *find(struct qcow2_cache *c, uint64_t offset)
{
    if (c->last_hit < c->nb && c->e[c->last_hit].offset == offset)
        return &c->e[c->last_hit];
    for (size_t i = 0; i < c->nb; i++)
        if (c->e[i].offset == offset) {
            c->last_hit = i;
            return &c->e[i];
        }
    return NULL;
}

static struct qcow2_cache_entry *victim(struct qcow2_cache *c)
{
    struct qcow2_cache_entry *best = NULL, *empty = NULL;
    size_t held = 0;
    for (size_t i = 0; i < c->nb; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (!e->offset) {
            if (e->buf && !e->ref)
                return e; /* free, with its memory */
            if (!empty && !e->ref)
                empty = e;
            continue;
        }
        held++;
        if (e->ref)
            continue;
        if (!best || (best->dirty && !e->dirty) ||
            (best->dirty == e->dirty && e->lru < best->lru))
            best = e;
    }
    /* design note 5 */
    if (empty && c->recycle && held >= QCOW2_MIN_L2_CACHE && best && !best->dirty)
        return best;
    return empty ? empty : best;
}

int qcow2_cache_get(struct ic_image *img, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **table)
{
    struct qcow2_cache_entry *e = find(c, offset);
    if (e) {
        if (fresh)
            memset(e->buf, 0, c->size);
        goto hit;
    }
    e = victim(c);
    if (!e)
        return -ENOSPC; /* every slot pinned: a bug, never an on-disk issue */
    if (e->dirty) {
        int ret = entry_write(img, c, e);
        if (ret < 0)
            return ret;
    }
    if (!e->buf) {
        e->buf = malloc(c->size);
        if (!e->buf)
            return -ENOMEM;
    }
    e->offset = 0;
    if (fresh) {
        memset(e->buf, 0, c->size);
    } else {
        int ret = ic_io_pread(img->file, e->buf, c->size, offset);
        if (ret < 0)
            return ret;
    }
    e->offset = offset;
    e->dirty = false;
hit:
    e->ref++;
    e->lru = ++c->lru_clock;
    *table = e->buf;
    return 0;
}

static struct qcow2_cache_entry *entry_of(struct qcow2_cache *c, const uint8_t *table)
{
    if (c->last_hit < c->nb && c->e[c->last_hit].buf == table)
        return &c->e[c->last_hit];
    for (size_t i = 0; i < c->nb; i++)
        if (c->e[i].buf == table)
            return &c->e[i];
    return NULL;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t **table)
{
    if (!*table)
        return;
    struct qcow2_cache_entry *e = entry_of(c, *table);
    if (e && e->ref > 0)
        e->ref--;
    *table = NULL;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, const uint8_t *table)
{
    struct qcow2_cache_entry *e = entry_of(c, table);
    if (e)
        e->dirty = true;
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    struct qcow2_cache_entry *e = find(c, offset);
    if (e && !e->ref) {
        e->offset = 0;
        e->dirty = false;
    }
}

void qcow2_cache_reset(struct qcow2_cache *c)
{
    for (size_t i = 0; i < c->nb; i++) {
        c->e[i].offset = 0;
        c->e[i].dirty = false;
        c->e[i].ref = 0;
    }
}
