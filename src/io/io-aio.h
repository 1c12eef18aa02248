/*
 * io-aio.h - the libaio backend's internal surface (io-aio.c).
 *
 * ic_io_open_aio() (imgchain/sys/io.h) is the public way in; this header
 * adds what the library's copy engines and the tests need to see.
 */
#ifndef IC_IO_AIO_H
#define IC_IO_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include "io.h"

/* Requests kept in flight by ic_io_submit(): deep enough to keep an NVMe
 * queue or a RAID busy (the brief asks >= 16; qemu's linux-aio uses 128 per
 * queue but one image copy gains little past 32). */
#define IC_AIO_QUEUE_DEPTH 32
/* Default O_DIRECT alignment of offsets, lengths and buffers: 4096 covers
 * 512e and 4Kn disks; statx(STATX_DIOALIGN) may raise it. */
#define IC_AIO_DEFAULT_ALIGN 4096u

/* ic_io_open_aio_ex() flags */
#define IC_AIO_SYNC (1u << 0) /* no aio context: every request synchronous */

struct ic_io_aio_stats {
    uint64_t io_submit_calls;  /* io_submit() system calls */
    uint64_t aio_requests;     /* requests that went through the aio context */
    uint64_t sync_requests;    /* requests done with pread/pwrite */
    uint64_t bounced;          /* O_DIRECT requests copied through a bounce buffer */
    unsigned max_in_flight;    /* highest number of requests in flight at once */
    bool async;                /* an aio context exists */
};

int ic_io_open_aio_ex(ic_io **out, const char *path, unsigned flags, unsigned aio_flags,
                      ic_error **errp);
/* Statistics of an aio backend; false when @io is not one. */
bool ic_io_aio_get_stats(const ic_io *io, struct ic_io_aio_stats *out);
/* O_DIRECT alignment in force (1 when not direct); 0 when not an aio backend. */
uint32_t ic_io_aio_alignment(const ic_io *io);

#endif
