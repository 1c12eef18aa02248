/*
 * chain-crash.c - crash simulation across all files of a chain (see
 * chain-crash.h).  Test-only helper, linked into every test program.
 *
 * Design notes:
 *  1. Each wrapped file keeps an ordered list of writes and truncates since
 *     its last flush; reads overlay that list on the inner file, so the
 *     library sees its own writes.
 *  2. A flush applies the file's list to the inner file (no fdatasync: the
 *     inner file is the "disk" and the test process never loses power).
 *     The world's Nth flush, whichever file it is on, is the crash: the
 *     lists of ALL open files are resolved by the RNG and every later call
 *     fails with -EIO.
 *  3. Sectors are 512 bytes; an overwritten sector is old or new (disks
 *     write sectors atomically), garbage appears only past the size the
 *     file had when last flushed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chain-crash.h"
#include "io/io.h"
#include "util/error.h"

#define CC_SECTOR 512u
#define CC_MAX_FILES 64

enum { CC_WRITE, CC_TRUNC };

struct cc_op {
    int type;
    uint64_t off;   /* write offset, or new size */
    size_t len;
    uint8_t *data;
};

struct cc_file {
    ic_io base;
    ic_io *inner;
    struct chain_crash_world *w;
    struct cc_op *ops;
    size_t nops, cap;
    uint64_t size;         /* logical size, pending ops included */
    uint64_t stable_size;  /* inner size as last flushed */
};

struct chain_crash_world {
    unsigned crash_at, flushes;
    bool crashed;
    uint64_t rng;
    struct cc_file *files[CC_MAX_FILES];
    unsigned long applied, dropped, torn;
};

static uint64_t rnd(struct chain_crash_world *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545F4914F6CDD1DULL;
}

struct chain_crash_world *chain_crash_world_new(unsigned crash_at, uint64_t seed)
{
    struct chain_crash_world *w = calloc(1, sizeof(*w));
    if (w) {
        w->crash_at = crash_at;
        w->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    }
    return w;
}

void chain_crash_world_free(struct chain_crash_world *w)
{
    free(w);
}

bool chain_crash_happened(const struct chain_crash_world *w)
{
    return w->crashed;
}

unsigned chain_crash_flushes(const struct chain_crash_world *w)
{
    return w->flushes;
}

void chain_crash_stats(const struct chain_crash_world *w, unsigned long *applied,
                       unsigned long *dropped, unsigned long *torn)
{
    *applied = w->applied;
    *dropped = w->dropped;
    *torn = w->torn;
}

static struct cc_file *F(ic_io *io)
{
    return (struct cc_file *)io;
}

static void clear_ops(struct cc_file *f)
{
    for (size_t i = 0; i < f->nops; i++)
        free(f->ops[i].data);
    f->nops = 0;
}

static int push(struct cc_file *f, struct cc_op op)
{
    if (f->nops == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        struct cc_op *n = realloc(f->ops, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        f->ops = n;
        f->cap = nc;
    }
    f->ops[f->nops++] = op;
    return 0;
}

static int apply_op(struct cc_file *f, const struct cc_op *op)
{
    if (op->type == CC_TRUNC)
        return ic_io_truncate(f->inner, op->off);
    return ic_io_pwrite(f->inner, op->data, op->len, op->off);
}

static int apply_all(struct cc_file *f)
{
    int ret = 0;
    for (size_t i = 0; i < f->nops && ret == 0; i++)
        ret = apply_op(f, &f->ops[i]);
    clear_ops(f);
    int64_t s = ic_io_get_size(f->inner);
    if (s >= 0)
        f->stable_size = (uint64_t)s;
    return ret;
}

/* Resolves @f's pending list as a power failure would. */
/* At a crash, a write that fails on the inner file is as lost as a dropped one. */
static void best_effort(int ret)
{
    (void)ret;
}

static void crash_file(struct chain_crash_world *w, struct cc_file *f)
{
    uint8_t garbage[CC_SECTOR];
    for (size_t i = 0; i < f->nops; i++) {
        struct cc_op *op = &f->ops[i];
        unsigned r = (unsigned)(rnd(w) % 3);
        if (r == 0) {
            w->applied++;
            best_effort(apply_op(f, op));
        } else if (r == 1 || op->type == CC_TRUNC) {
            w->dropped++;
        } else {
            w->torn++;
            for (uint64_t s = 0; s < op->len; s += CC_SECTOR) {
                size_t n = (size_t)(op->len - s < CC_SECTOR ? op->len - s : CC_SECTOR);
                unsigned k = (unsigned)(rnd(w) % 3);
                uint64_t at = op->off + s;
                if (k == 0) {
                    best_effort(ic_io_pwrite(f->inner, op->data + s, n, at));
                } else if (k == 2 && at >= f->stable_size) {
                    for (size_t b = 0; b < n; b++)
                        garbage[b] = (uint8_t)rnd(w);
                    best_effort(ic_io_pwrite(f->inner, garbage, n, at));
                }
            }
        }
    }
    clear_ops(f);
}

static void crash_world(struct chain_crash_world *w)
{
    w->crashed = true;
    for (unsigned i = 0; i < CC_MAX_FILES; i++)
        if (w->files[i])
            crash_file(w, w->files[i]);
}

static int64_t cc_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct cc_file *f = F(io);
    if (f->w->crashed)
        return -EIO;
    if (off >= f->size)
        return 0;
    if (len > f->size - off)
        len = (size_t)(f->size - off);
    int ret = ic_io_pread(f->inner, buf, len, off);
    if (ret < 0)
        return ret;
    uint8_t *b = buf;
    for (size_t i = 0; i < f->nops; i++) {
        const struct cc_op *op = &f->ops[i];
        if (op->type == CC_TRUNC) {
            if (op->off < off + len) {
                uint64_t from = op->off > off ? op->off : off;
                memset(b + (from - off), 0, (size_t)(off + len - from));
            }
            continue;
        }
        uint64_t s = op->off > off ? op->off : off;
        uint64_t e = op->off + op->len < off + len ? op->off + op->len : off + len;
        if (s < e)
            memcpy(b + (s - off), op->data + (s - op->off), (size_t)(e - s));
    }
    return (int64_t)len;
}

static int cc_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct cc_file *f = F(io);
    if (f->w->crashed)
        return -EIO;
    struct cc_op op = { CC_WRITE, off, len, malloc(len ? len : 1) };
    if (!op.data)
        return -ENOMEM;
    memcpy(op.data, buf, len);
    if (push(f, op) < 0) {
        free(op.data);
        return -ENOMEM;
    }
    if (off + len > f->size)
        f->size = off + len;
    return 0;
}

static int cc_truncate(ic_io *io, uint64_t size)
{
    struct cc_file *f = F(io);
    if (f->w->crashed)
        return -EIO;
    if (push(f, (struct cc_op){ CC_TRUNC, size, 0, NULL }) < 0)
        return -ENOMEM;
    f->size = size;
    return 0;
}

static int cc_flush(ic_io *io)
{
    struct cc_file *f = F(io);
    struct chain_crash_world *w = f->w;
    if (w->crashed)
        return -EIO;
    w->flushes++;
    if (w->crash_at && w->flushes == w->crash_at) {
        crash_world(w);
        return -EIO;
    }
    return apply_all(f);
}

static int64_t cc_get_size(ic_io *io)
{
    struct cc_file *f = F(io);
    if (f->w->crashed)
        return -EIO;
    return (int64_t)f->size;
}

static int cc_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(F(io)->inner, mode, errp);
}

static int cc_close(ic_io *io)
{
    struct cc_file *f = F(io);
    struct chain_crash_world *w = f->w;
    if (!w->crashed)
        best_effort(apply_all(f));
    clear_ops(f);
    for (unsigned i = 0; i < CC_MAX_FILES; i++)
        if (w->files[i] == f)
            w->files[i] = NULL;
    int ret = ic_io_close(f->inner);
    free(f->ops);
    free(io->name);
    free(f);
    return ret;
}

static const struct ic_io_ops cc_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = cc_close,
    .pread = cc_pread,
    .pwrite = cc_pwrite,
    .flush = cc_flush,
    .truncate = cc_truncate,
    .get_size = cc_get_size,
    .lock = cc_lock,
};

int chain_crash_open(ic_io **out, const char *path, unsigned io_flags, void *payload,
                     ic_error **errp)
{
    struct chain_crash_world *w = payload;
    *out = NULL;
    if (w->crashed)
        return ic_error_set(errp, IC_ERR_IO, EIO, "%s: the simulated machine has crashed", path);
    ic_io *inner = NULL;
    int ret = ic_io_open_file(&inner, path, io_flags | IC_IO_NOLOCK, errp);
    if (ret < 0)
        return ret;
    struct cc_file *f = calloc(1, sizeof(*f));
    unsigned slot = 0;
    while (slot < CC_MAX_FILES && w->files[slot])
        slot++;
    if (!f || slot == CC_MAX_FILES || !(f->base.name = strdup(path))) {
        free(f);
        ic_io_close(inner);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: cannot wrap", path);
    }
    f->base.ops = &cc_ops;
    f->base.open_flags = io_flags;
    f->inner = inner;
    f->w = w;
    int64_t s = ic_io_get_size(inner);
    f->size = f->stable_size = s > 0 ? (uint64_t)s : 0;
    w->files[slot] = f;
    *out = &f->base;
    return 0;
}
