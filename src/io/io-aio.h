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

/* Write-behind (ic_io_aio_lend): lent writes in flight at once.  Four
 * slot-sized writes keep the device busy while the caller prepares the
 * next ones; more only hold more of the caller's buffers (the datapath
 * rows of bench/bench-datapath.sh measure the depth). */
#define IC_AIO_BEHIND_DEPTH 4
/* Smallest write that may go behind: smaller ones (metadata) are cheap
 * enough to run synchronously. */
#define IC_AIO_BEHIND_MIN ((size_t)64 << 10)
/* The file grows ahead of lent writes in steps of at least this size, so
 * that they never extend it (an extending O_DIRECT write is synchronous on
 * ext4 and XFS); the excess is cut off at flush, truncate, detach and
 * close. */
#define IC_AIO_BEHIND_RESERVE ((uint64_t)64 << 20)
/* Steps double with the file's size up to this one. */
#define IC_AIO_BEHIND_RESERVE_MAX ((uint64_t)1 << 30)

int ic_io_open_aio_ex(ic_io **out, const char *path, unsigned flags, unsigned aio_flags,
                      ic_error **errp);
/* The backend's lend op (imgchain/sys/io.h) with 0 for an attach:
 * write-behind on an aio backend opened with IC_IO_DIRECT; NULL detaches,
 * waits for every lent write, trims the file's reservation and returns the
 * first error of a lent write (0 if none).  -ENOTSUP: not such a backend;
 * -EBUSY: a lender is attached.  The library reaches it through
 * ic_io_lend(); tests call it directly. */
int ic_io_aio_lend(ic_io *io, const struct ic_io_lender *lender);
/* Statistics of an aio backend; false when @io is not one. */
bool ic_io_aio_get_stats(const ic_io *io, struct ic_io_stats *out);
/* O_DIRECT alignment in force (1 when not direct); 0 when not an aio backend. */
uint32_t ic_io_aio_alignment(const ic_io *io);

#endif
