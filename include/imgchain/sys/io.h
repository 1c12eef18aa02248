/*
 * imgchain/sys/io.h - the I/O backend vtable (advanced surface).
 *
 * All bytes imgchain reads or writes pass through an ic_io: a base struct
 * whose first member points to a const ic_io_ops table (SQLite's
 * sqlite3_io_methods model).  Backends embed struct ic_io first.  Embedders
 * and tests can supply their own backend and open images on it with
 * ic_image_open_io() (imgchain/image.h).
 *
 * Contract of every op (all return 0 or -errno unless stated):
 *   pread     reads up to len bytes at off; returns the byte count, which is
 *             short only at end of file; never partially fails silently.
 *   pwrite    writes all len bytes at off (extending the file) or fails.
 *   flush     makes every completed write durable (fdatasync).
 *   truncate  sets the file length.
 *   get_size  returns the file length (>= 0) or -errno.
 *   punch_hole deallocates [off, off+len) so it reads as zeroes; may be
 *             NULL (then -ENOTSUP, and callers write zeroes if they need to).
 *   zero_range optional: makes [off, off+len) read as zeroes with the space
 *             allocated (fallocate FALLOC_FL_ZERO_RANGE, extending the file
 *             like a write); NULL or -ENOTSUP: callers write zeroes.
 *   event     optional: called before each named metadata write with the
 *             library's number for it (internal to the library and not a
 *             stable interface: its own fault-injection filter is the one
 *             user); backends that are not such filters leave it NULL.
 *   lock      optional: takes qemu-compatible locks (IC_LOCK_*). -EBUSY with
 *             the file's name when another process holds a conflicting one.
 *   submit    optional: a batch of reads and writes (see struct ic_io_req).
 *   alignment, lend, get_stats  optional (version >= 3): what a backend can
 *             tell or do beyond plain I/O; see their fields below.
 *   close     releases the backend (and its locks); the pointer is invalid
 *             afterwards.
 */
#ifndef IMGCHAIN_SYS_IO_H
#define IMGCHAIN_SYS_IO_H

#include "../common.h"
#include "../error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ic_io ic_io;

/*
 * One request of a batch (ic_io_submit() inside the library, the optional
 * `submit` op below).  op is IC_IO_REQ_READ or IC_IO_REQ_WRITE.  A read
 * fills all len bytes (bytes past end of file read as zeroes); a write
 * writes all len bytes.  ret receives 0 or -errno for this request.
 */
#define IC_IO_REQ_READ  0
#define IC_IO_REQ_WRITE 1
struct ic_io_req {
    int op;
    void *buf;
    size_t len;
    uint64_t off;
    int ret;
};

#define IC_IO_OPS_VERSION 3

/*
 * A lender of write buffers (the `lend` op: write-behind).  hold() is
 * called in pwrite, on the caller's thread, for a large aligned write:
 * true means @buf belongs to the lender and stays valid (unchanged) until
 * release(@buf) is called, from the backend's own thread; pwrite then
 * returns before the data is written.  false: the write runs synchronously
 * as without a lender.  release() is called exactly once per hold() that
 * returned true, also when the write failed (the error is kept and
 * returned by the next operation on the backend).
 */
struct ic_io_lender {
    bool (*hold)(void *payload, const void *buf, size_t len);
    void (*release)(void *payload, const void *buf);
    void *payload;
};

/* Statistics of a backend that keeps them (the `get_stats` op). */
struct ic_io_stats {
    uint64_t io_submit_calls;  /* batches handed to the kernel */
    uint64_t aio_requests;     /* requests that went through the aio context */
    uint64_t sync_requests;    /* requests done with pread/pwrite */
    uint64_t bounced;          /* O_DIRECT requests copied through a bounce buffer */
    unsigned max_in_flight;    /* highest number of requests in flight at once */
    uint64_t behind_writes;    /* writes that went behind (lent buffers) */
    unsigned behind_max_in_flight; /* most lent writes in flight at once */
    uint64_t reserve_steps;    /* times the file grew ahead of lent writes */
    uint64_t cached_writes;    /* small writes sent through the page cache while lending */
    bool async;                /* an aio context exists (from the first batch) */
};

/* Lock modes (qemu's permission bytes: OFD locks on bytes 100 and up). */
enum ic_lock_mode {
    IC_LOCK_NONE = 0,   /* release all locks */
    IC_LOCK_SHARED,     /* reader: hold CONSISTENT_READ, refuse writers */
    IC_LOCK_WRITE,      /* writer: hold READ|WRITE|RESIZE, refuse other writers */
    IC_LOCK_FORCE_SHARE /* -U: hold CONSISTENT_READ, share everything */
};

struct ic_io_ops {
    unsigned version;
    int (*close)(ic_io *io);
    int64_t (*pread)(ic_io *io, void *buf, size_t len, uint64_t off);
    int (*pwrite)(ic_io *io, const void *buf, size_t len, uint64_t off);
    int (*flush)(ic_io *io);
    int (*truncate)(ic_io *io, uint64_t size);
    int64_t (*get_size)(ic_io *io);
    int (*punch_hole)(ic_io *io, uint64_t off, uint64_t len);
    void (*event)(ic_io *io, int event);
    int (*lock)(ic_io *io, enum ic_lock_mode mode, ic_error **errp);
    /* Optional: allocation status of the underlying file (SEEK_DATA). Sets
     * *pnum to the length of the run starting at off with the same status;
     * returns 1 for data, 0 for a hole, -errno on error. */
    int (*block_status)(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum);
    /* Optional: bytes actually allocated on the host (st_blocks * 512). */
    int64_t (*allocated_size)(ic_io *io);
    /* Optional: runs @n requests as one batch (the aio backend keeps up to
     * its queue depth in flight).  Requests take effect as if run one after
     * the other in array order (overlapping ones are serialised); sets every
     * reqs[i].ret and returns 0, or the first failed request's -errno.
     * NULL: the library runs them one by one with pread/pwrite. */
    int (*submit)(ic_io *io, struct ic_io_req *reqs, size_t n);
    /* Optional (see the contract above): qemu's write-zeroes of a host
     * range; NULL: -ENOTSUP. */
    int (*zero_range)(ic_io *io, uint64_t off, uint64_t len);
    /* Optional, version >= 2: a hint that [off, off+len) will be read soon
     * (posix_fadvise WILLNEED: the kernel starts reading it in the
     * background).  Never fails; NULL: nothing. */
    void (*prefetch)(ic_io *io, uint64_t off, uint64_t len);
    /* Optional, version >= 3: the alignment of offsets, lengths and buffer
     * addresses the backend's descriptor needs (O_DIRECT); NULL: 1. */
    uint32_t (*alignment)(ic_io *io);
    /* Optional, version >= 3: attaches @lender (write-behind, see struct
     * ic_io_lender) and returns how many lent writes it keeps in flight at
     * most (>= 1); NULL @lender detaches: waits for every lent write and
     * returns 0 or the first lent write's -errno.  -EBUSY: one is attached
     * already.  NULL op, or -ENOTSUP: writes stay synchronous. */
    int (*lend)(ic_io *io, const struct ic_io_lender *lender);
    /* Optional, version >= 3: fills @out; NULL: the backend keeps none. */
    void (*get_stats)(ic_io *io, struct ic_io_stats *out);
};

/* The base struct every backend embeds first. */
struct ic_io {
    const struct ic_io_ops *ops;
    char *name;          /* file name for messages (owned by the backend) */
    unsigned open_flags; /* IC_IO_* flags it was opened with */
    unsigned wrap_state; /* owned by the library's wrappers; backends start it at 0 */
};

/* Open flags for ic_io_open_file(). */
#define IC_IO_RDWR    (1u << 0)  /* read-write (default read-only) */
#define IC_IO_CREATE  (1u << 1)  /* create if missing (never truncates; see ic_io_open_file) */
#define IC_IO_EXCL    (1u << 2)  /* with CREATE: fail if it exists */
#define IC_IO_DIRECT  (1u << 3)  /* O_DIRECT (the -t none cache mode) */
#define IC_IO_NOLOCK  (1u << 4)  /* do not take qemu-compatible locks */
#define IC_IO_SHARE   (1u << 5)  /* force-share (-U): lock byte 100 only */
#define IC_IO_STREAM  (1u << 6)  /* bulk output: push writes to the disk at once and keep
                                  * them out of the page cache (a hint; flush still syncs) */
#define IC_IO_DSYNC   (1u << 7)  /* O_DSYNC: every write durable when it completes
                                  * (the writethrough and directsync cache modes) */
#define IC_IO_BULK    (1u << 8)  /* bulk output through the page cache: allocate each
                                  * large write's range before writing it (a hint) */
#define IC_IO_MISS_DIRECT (1u << 9) /* bulk reads: a large aligned read of a range the page
                                     * cache holds none of goes to the device (O_DIRECT);
                                     * a hint */

/**
 * Opens a host file with the production (POSIX) backend and takes the
 * qemu-compatible locks that match @p flags (writer for IC_IO_RDWR, reader
 * otherwise) unless IC_IO_NOLOCK.
 * @return 0, -ENOENT, -EACCES, -EBUSY (locked by another process), -errno
 */
IC_EXTERN int ic_io_open_file(ic_io **out, const char *path, unsigned flags, ic_error **errp);

/**
 * Opens a host file with the libaio backend, for bulk data movement:
 * batches of up to 32 requests in flight (ic_io_submit), O_DIRECT with
 * IC_IO_DIRECT (unaligned requests go through aligned bounce buffers), and
 * the same qemu-compatible locks as ic_io_open_file().  When the kernel
 * refuses an aio context the backend still works, synchronously.
 * @return 0; -ENOENT; -EACCES; -EBUSY (locked); -EINVAL with
 *   IC_ERR_UNSUPPORTED when IC_IO_DIRECT is asked on a file system without
 *   O_DIRECT; -errno
 */
IC_EXTERN int ic_io_open_aio(ic_io **out, const char *path, unsigned flags, ic_error **errp);

/** Creates an in-memory backend (unit tests, scratch images). */
IC_EXTERN int ic_io_open_mem(ic_io **out, const char *name, ic_error **errp);

/** Closes any backend; NULL is a no-op. */
IC_EXTERN int ic_io_close(ic_io *io);

#ifdef __cplusplus
}
#endif
#endif
