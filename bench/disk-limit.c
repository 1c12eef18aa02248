/*
 * disk-limit.c - what the disk alone costs for a convert: reads FILE...
 * whole, then writes MIB MiB to OUT and syncs it, all O_DIRECT, through
 * 2 MiB-aligned buffers offered huge pages (as imgchain's copy engine
 * uses), one reader thread per file and four writer threads.  The two
 * phases run one after the other; a converter that overlaps them can only
 * beat their sum where the disk serves reads and writes in parallel.
 * Used by bench/bench.sh for its cold device-limit row; not part of
 * imgchain.
 *
 * usage: disk-limit OUT MIB FILE...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK ((size_t)8 << 20)
#define WRITERS 4

static void *huge_buf(void)
{
    size_t span = CHUNK + ((size_t)2 << 20);
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uint8_t *b = (uint8_t *)(((uintptr_t)raw + ((size_t)2 << 20) - 1) &
                             ~(uintptr_t)(((size_t)2 << 20) - 1));
    (void)madvise(b, CHUNK, MADV_HUGEPAGE);
    return b;
}

static int failed;

static void *reader(void *arg)
{
    const char *path = arg;
    int fd = open(path, O_RDONLY | O_DIRECT);
    uint8_t *b = huge_buf();
    if (fd < 0 || !b) {
        perror(path);
        failed = 1;
        return NULL;
    }
    ssize_t n;
    for (off_t off = 0; (n = pread(fd, b, CHUNK, off)) > 0; off += n)
        ;
    if (n < 0) {
        perror(path);
        failed = 1;
    }
    close(fd);
    return NULL;
}

struct wjob {
    int fd, index;
    uint64_t chunks;
};

static void *writer(void *arg)
{
    struct wjob *j = arg;
    uint8_t *b = huge_buf();
    if (!b) {
        failed = 1;
        return NULL;
    }
    memset(b, 0x5a, CHUNK);
    for (uint64_t c = (uint64_t)j->index; c < j->chunks; c += WRITERS)
        if (pwrite(j->fd, b, CHUNK, (off_t)(c * CHUNK)) != (ssize_t)CHUNK) {
            perror("pwrite");
            failed = 1;
            break;
        }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: disk-limit OUT MIB FILE...\n");
        return 2;
    }
    int nf = argc - 3;
    pthread_t *t = calloc((size_t)(nf > WRITERS ? nf : WRITERS), sizeof(*t));
    for (int i = 0; i < nf; i++)
        pthread_create(&t[i], NULL, reader, argv[3 + i]);
    for (int i = 0; i < nf; i++)
        pthread_join(t[i], NULL);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    uint64_t chunks = ((uint64_t)strtoull(argv[2], NULL, 10) << 20) / CHUNK;
    struct wjob j[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        j[i] = (struct wjob){ fd, i, chunks };
        pthread_create(&t[i], NULL, writer, &j[i]);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    if (fdatasync(fd) < 0) {
        perror("fdatasync");
        failed = 1;
    }
    close(fd);
    free(t);
    return failed;
}
