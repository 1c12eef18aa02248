/*
 * bigbuf.c - large I/O buffers backed by huge pages where the kernel has
 * them.
 *
 * Design notes:
 *  1. Why: a direct write is handed to the device as the buffer's physical
 *     pages, one segment per discontiguous run, and a request carries at
 *     most the queue's max_segments segments.  With 4 KiB pages a 2 MiB
 *     write whose device allows 254 segments becomes three requests; from
 *     one 2 MiB huge page it is one segment and one request.  Fewer, larger
 *     requests are what the device (a virtual disk above all, where every
 *     request is an exit to the host) serves fastest; `make bench`'s
 *     datapath rows measure it.
 *  2. How: an anonymous mapping trimmed to a 2 MiB-aligned start, then
 *     madvise(MADV_HUGEPAGE), which asks for huge pages also where the
 *     system's policy is "madvise" (Debian's default).  Where there are
 *     none (policy "never", fragmented memory, no THP in the kernel) the
 *     buffer is ordinary memory and everything works as before: the
 *     advice is a hint, and its failure is not an error.
 *  3. Smaller buffers are page-aligned mappings without the advice: a huge
 *     page would be mostly unused.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/bigbuf.h"

static size_t page_round(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - page)
        return 0;
    return (size + page - 1) & ~(page - 1);
}

void *ic_bigbuf_alloc(size_t size)
{
    size_t len = page_round(size);
    if (len == 0)
        return NULL;
    if (len < IC_BIGBUF_HUGE) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    if (len > SIZE_MAX - IC_BIGBUF_HUGE)
        return NULL;
    size_t span = len + IC_BIGBUF_HUGE;
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + IC_BIGBUF_HUGE - 1) & ~(uintptr_t)(IC_BIGBUF_HUGE - 1);
    size_t head = start - (uintptr_t)raw;
    if (head)
        munmap(raw, head);
    if (span - head - len)
        munmap((uint8_t *)start + len, span - head - len);
    (void)madvise((void *)start, len, MADV_HUGEPAGE); /* design note 2: a hint */
    return (void *)start;
}

void ic_bigbuf_free(void *buf, size_t size)
{
    if (buf)
        munmap(buf, page_round(size));
}
