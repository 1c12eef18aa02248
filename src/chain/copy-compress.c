/*
 * copy-compress.c - the compression workers of convert -c.
 *
 * Design notes:
 *  1. When the target driver splits compression (compress +
 *     pwrite_precompressed), the clusters of each buffer are compressed in
 *     parallel: COMPRESS_WORKERS_MAX helper threads and the writer take
 *     cluster indexes from a shared counter, and each result goes to its
 *     own cluster-sized area of one output buffer; then the writer alone
 *     stores them in guest order, so the target's layout is the same as
 *     with one thread.
 *  2. compress() touches no image state, so it may run while the writer's
 *     image is idle; only the writer writes the image.
 *  3. Memory stays bounded: one output buffer of the input's size,
 *     whatever the number of threads.
 *  4. Fields of the pool are under `lock`, except the per-index buffers:
 *     index i is owned by the thread that took it until it is counted in
 *     `finished`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy-compress.h"
#include "copy-zero.h"
#include "util/overflow.h"

/* Helper threads: one per online CPU beyond the first, at least 1, at
 * most this many. */
#define COMPRESS_WORKERS_MAX 3

struct ic_copy_compress {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* helpers: a job was posted or quit */
    pthread_cond_t done;      /* writer: finished == n */
    const ic_image *dst;
    size_t granule;
    const uint8_t *in;        /* the current job's data */
    size_t in_len;
    uint8_t *out;             /* index i at out + i * granule */
    int64_t *res;             /* 0: all zero, > 0: compressed length, <0: -errno */
    size_t n, next, finished;
    bool quit;
    pthread_t threads[COMPRESS_WORKERS_MAX];
    unsigned nthreads;
};

/* Compresses index @i of the current job (called without the lock). */
static void run_one(struct ic_copy_compress *p, size_t i)
{
    size_t off = i * p->granule;
    size_t len = IC_MIN(p->granule, p->in_len - off);
    if (ic_buf_is_zero(p->in + off, len))
        p->res[i] = 0;
    else
        p->res[i] = ic_image_compress_cluster(p->dst, p->out + off, p->granule, p->in + off,
                                              len);
}

/* Takes and runs indexes of the current job until none is left; called
 * and returns with p->lock held. */
static void work(struct ic_copy_compress *p)
{
    while (p->next < p->n) {
        size_t i = p->next++;
        pthread_mutex_unlock(&p->lock);
        run_one(p, i);
        pthread_mutex_lock(&p->lock);
        if (++p->finished == p->n)
            pthread_cond_signal(&p->done);
    }
}

static void *worker_main(void *opaque)
{
    struct ic_copy_compress *p = opaque;
    pthread_mutex_lock(&p->lock);
    while (!p->quit) {
        if (p->next < p->n)
            work(p);
        else
            pthread_cond_wait(&p->work, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct ic_copy_compress *ic_copy_compress_create(struct ic_image *dst, size_t granule,
                                                 size_t buf_size)
{
    if (!ic_image_can_precompress(dst))
        return NULL;
    struct ic_copy_compress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    size_t max_n = IC_DIV_ROUND_UP(buf_size, granule);
    p->out = malloc(max_n * granule);
    p->res = calloc(max_n, sizeof(*p->res));
    if (!p->out || !p->res) {
        free(p->out);
        free(p->res);
        free(p);
        return NULL;
    }
    p->dst = dst;
    p->granule = granule;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    /* helpers that fail to start are not fatal: the writer compresses */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = cpus > 1 ? (unsigned)IC_MIN(cpus - 1, (long)COMPRESS_WORKERS_MAX) : 1;
    for (; p->nthreads < want; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p) != 0)
            break;
    return p;
}

void ic_copy_compress_destroy(struct ic_copy_compress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->out);
    free(p->res);
    free(p);
}

/* Without workers: one compressed write per non-zero cluster. */
static int write_inline(struct ic_image *dst, const uint8_t *buf, size_t len, uint64_t off,
                        size_t granule, ic_error **errp)
{
    for (size_t pos = 0; pos < len; pos += granule) {
        size_t g = IC_MIN(granule, len - pos);
        if (ic_buf_is_zero(buf + pos, g))
            continue;
        int ret = ic_image_pwrite_compressed(dst, buf + pos, g, off + pos, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int ic_copy_compress_write(struct ic_copy_compress *p, struct ic_image *dst, const uint8_t *buf,
                           size_t len, uint64_t off, size_t granule, ic_error **errp)
{
    if (!p)
        return write_inline(dst, buf, len, off, granule, errp);
    pthread_mutex_lock(&p->lock);
    p->in = buf;
    p->in_len = len;
    p->n = IC_DIV_ROUND_UP(len, p->granule);
    p->next = 0;
    p->finished = 0;
    pthread_cond_broadcast(&p->work);
    work(p);
    while (p->finished < p->n)
        pthread_cond_wait(&p->done, &p->lock);
    size_t n = p->n;
    p->n = 0;
    p->next = 0;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        size_t pos = i * p->granule;
        size_t g = IC_MIN(p->granule, len - pos);
        int64_t r = p->res[i];
        int ret;
        if (r == 0)
            continue;
        if (r == -ENOSPC) /* does not shrink: stored as it is */
            ret = ic_image_pwrite(dst, buf + pos, g, off + pos, errp);
        else if (r < 0)
            ret = ic_error_set(errp, r == -ENOMEM ? IC_ERR_NOMEM : IC_ERR_OTHER, (int)-r,
                               "%s: cannot compress the cluster at guest offset %#" PRIx64
                               ": %s", dst->filename, off + pos, strerror((int)-r));
        else
            ret = ic_image_pwrite_precompressed(dst, p->out + pos, (size_t)r, off + pos, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}
