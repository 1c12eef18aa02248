/*
 * io.h - the library-internal I/O interface (SQLite's os.c wrappers).
 *
 * Format drivers never call the OS: they call these wrappers, which are the
 * single place where event hooks and tracing happen.  The vtable itself is
 * public (imgchain/sys/io.h).
 */
#ifndef IC_IO_IO_H
#define IC_IO_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "imgchain/sys/io.h"
#include "util/compiler.h"

enum ic_event {
#define IC_EVENT(id, name) IC_EV_##id,
#include "events.def"
#undef IC_EVENT
    IC_EV__MAX
};

/* Name of an event ("l2_update"), or NULL if out of range. */
const char *ic_event_name(int ev);
/* Event number for a name, or -1. */
int ic_event_from_name(const char *name);

/* Reads exactly len bytes; bytes past end of file read as zeroes. */
int ic_io_pread(ic_io *io, void *buf, size_t len, uint64_t off) IC_WARN_UNUSED;
/* Reads up to len bytes (fewer only at end of file); returns the count or
 * -errno.  For probing the head of a file of unknown length. */
int64_t ic_io_pread_upto(ic_io *io, void *buf, size_t len, uint64_t off) IC_WARN_UNUSED;
/* Reads exactly len bytes; -EIO if the file ends first. */
int ic_io_pread_exact(ic_io *io, void *buf, size_t len, uint64_t off) IC_WARN_UNUSED;
int ic_io_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off) IC_WARN_UNUSED;
/* Writes len zero bytes (using punch_hole where it is safe to). */
int ic_io_pwrite_zeroes(ic_io *io, uint64_t off, uint64_t len) IC_WARN_UNUSED;
/* Makes completed writes durable.  On a handle in deferred-flush mode
 * (ic_io_defer_flush) it only records the request: the flush runs before
 * the next write that reaches the handle, and not at all when none does. */
int ic_io_flush(ic_io *io) IC_WARN_UNUSED;
/* Deferred-flush mode, for the unsafe cache mode: every flush that is
 * followed by a write still runs before that write (so the crash-ordering
 * of metadata holds), only the trailing one is dropped at close. */
void ic_io_defer_flush(ic_io *io, bool on);
/* Dropped-flush mode (io.c design note 6): every later flush, pending ones
 * included, does nothing.  Only for a file the caller is creating, in the
 * unsafe cache mode. */
void ic_io_drop_flushes(ic_io *io);
/* Runs a deferred flush now, if one waits (an ordering point against
 * another file); 0 when none waits. */
int ic_io_flush_pending(ic_io *io) IC_WARN_UNUSED;
int ic_io_truncate(ic_io *io, uint64_t size) IC_WARN_UNUSED;
int64_t ic_io_get_size(ic_io *io);
int ic_io_punch_hole(ic_io *io, uint64_t off, uint64_t len);
/* The backend's zero_range op (allocated zeroes, extends the file), or
 * -ENOTSUP without one. */
int ic_io_zero_range(ic_io *io, uint64_t off, uint64_t len);
int ic_io_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp);
int ic_io_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum);
int64_t ic_io_allocated_size(ic_io *io);
/* The backend's prefetch hint (read [off, off+len) soon); a no-op for
 * backends without one or built against version 1 of the ops table. */
void ic_io_prefetch(ic_io *io, uint64_t off, uint64_t len);
/* Capabilities (ops of version 3 tables, imgchain/sys/io.h): the O_DIRECT
 * alignment (1 without one), write-behind (the lent writes in flight, or
 * -ENOTSUP), statistics (false for a backend that keeps none). */
uint32_t ic_io_alignment(ic_io *io);
int ic_io_lend(ic_io *io, const struct ic_io_lender *lender);
bool ic_io_get_stats(ic_io *io, struct ic_io_stats *out);
/* Runs a batch of reads/writes (struct ic_io_req, imgchain/sys/io.h):
 * through the backend's submit op when it has one (aio: many in flight),
 * else one by one in array order.  Either way the result is as if run in
 * order; every reqs[i].ret is set (0 or -errno) and the return value is 0
 * or the first failed request's -errno.  Reads fill all len bytes, zeroes
 * past end of file, like ic_io_pread(). */
int ic_io_submit(ic_io *io, struct ic_io_req *reqs, size_t n) IC_WARN_UNUSED;
/* For backends: a zeroed backend struct of @size bytes (struct ic_io
 * first) with its base set up: @ops, a copy of @name, @flags.  NULL when
 * out of memory (nothing to free then). */
void *ic_io_backend_new(size_t size, const struct ic_io_ops *ops, const char *name,
                        unsigned flags);
/* For backends on a file descriptor: pread until @len bytes or end of
 * file (the count; short only at end of file) and pwrite of all @len
 * bytes, EINTR retried; 0 / -errno.  In io-posix.c. */
int64_t ic_fd_pread_full(int fd, void *buf, size_t len, uint64_t off);
int ic_fd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Announces the metadata write that follows (fault injection hook). */
void ic_io_event(ic_io *io, enum ic_event ev);

static inline const char *ic_io_name(const ic_io *io)
{
    return io && io->name ? io->name : "(unnamed)";
}

/* Posix backend details used by the aio backend and locking. */
int ic_io_posix_fd(ic_io *io);
/* The descriptor of an aio handle for copy_file_range: while write-behind
 * is attached, its second description without O_DIRECT (copies into an
 * O_DIRECT description are written page by page, synchronously), else the
 * backend's own; -1 for any other handle. */
int ic_io_aio_copy_fd(ic_io *io);
/* Copy offloading (io-posix.c note 10): copies @len bytes at @src_off in
 * @src to @dst_off in @dst in the kernel (copy_file_range: a reflink where
 * the file system shares extents).  -ENOTSUP when either handle is not a
 * plain file descriptor (test backends, filters) or the kernel or file
 * system cannot copy between them: the caller copies through memory
 * instead.  Other errors are I/O errors.  Safe to call from any thread:
 * it uses only the two descriptors. */
int ic_io_copy_range(ic_io *dst, uint64_t dst_off, ic_io *src, uint64_t src_off, uint64_t len);

/* Small file-system queries (io-posix.c), so no other module needs the OS. */
bool ic_io_file_exists(const char *path);
int ic_io_remove(const char *path);
enum { IC_FILE_REGULAR = 1, IC_FILE_BLOCK, IC_FILE_DIR, IC_FILE_OTHER };
/* One of IC_FILE_*, or -errno (-ENOENT when missing). */
int ic_io_file_kind(const char *path);

/* Replacing an existing image file as a whole (create over it), so that a
 * create refused late leaves the old file as it was (io-posix.c note 7).
 * ic_io_open_replacement: when @path (after symlinks) is a regular file
 * with one link whose permission bits and owner a new file can take, opens
 * a new empty temporary file next to it with them (read-write, unlocked)
 * and returns 1; 0 when the file must be rewritten in place instead
 * (missing, a block device, hard links, an owner we cannot give); -errno.
 * ic_io_commit_replacement: makes @tmp durable, renames it over @path and
 * makes the rename durable (fsync of the directory); @tmp stays open, for
 * ic_io_close() on success or ic_io_discard_replacement() on failure.
 * ic_io_discard_replacement: closes @tmp and removes it unless the rename
 * happened (a failure after it leaves the complete new image in place);
 * NULL: no-op. */
int ic_io_open_replacement(ic_io **out, const char *path, ic_error **errp);
int ic_io_commit_replacement(ic_io *tmp, const char *path, ic_error **errp);
void ic_io_discard_replacement(ic_io *tmp);

#endif
