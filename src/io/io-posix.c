/*
 * io-posix.c - the production backend: pread/pwrite/fdatasync on a file.
 *
 * Design notes:
 *  1. This file (with io-lock.c, io-aio.c and io-dir.c) is the only code that
 *     calls the OS file API.
 *  2. The fd stays open for the whole life of the handle, because OFD locks
 *     (io-lock.c) live as long as the open file description.
 *  3. EINTR is retried; short writes are continued; a short read returns the
 *     count (end of file) and the wrapper zero-fills.
 *  4. With IC_IO_DIRECT the file is opened O_DIRECT; callers must then use
 *     aligned buffers, offsets and lengths (the aio backend does).
 *  5. IC_IO_STREAM (bulk output such as convert's target): after every
 *     write of at least IC_IO_STREAM_MIN bytes, POSIX_FADV_DONTNEED on its
 *     range, which on Linux starts its writeback at once, and again on the
 *     previous such write, by then clean, which drops its pages.  Without
 *     it a convert piles up its whole output as dirty page cache, the
 *     final fdatasync writes it all at once with nothing left to overlap,
 *     and the output evicts what the machine had cached.  The source's
 *     pages are left alone: dropping them would defeat its readahead.
 *     Only hints: flush still makes every write durable, and after it
 *     drops whatever of the file is still cached (all clean by then).
 *  6. Only regular files and block devices are images.  Every open is
 *     non-blocking and the kind is checked with fstat on the descriptor it
 *     gave (no window between the check and the use; a symlink is judged by
 *     its target): a FIFO named as a backing or data file would otherwise
 *     block open() until a writer appears, and a FIFO, socket or character
 *     device cannot be read at offsets anyway.  O_NONBLOCK is then cleared.
 *  7. Replacement (create over an existing file): the new image is built in
 *     ".NAME.imgchain-create-XXXXXX" in the file's own directory (the real
 *     one, after symlinks, so the rename replaces the file and not a link
 *     to it), with the old file's permission bits and owner; fsync, rename
 *     over the file, fsync the directory.  Until the rename the old file is
 *     untouched, so a create that fails late, or a crash, leaves it as it
 *     was.  A file with other hard links, a block device, or an owner the
 *     new file cannot take is rewritten in place, as before.
 *  8. IC_IO_DSYNC opens O_DSYNC (writethrough, directsync).  With
 *     IMGCHAIN_TRACE=open in the environment every open prints the status
 *     flags the kernel reports for the new descriptor (F_GETFL) to stderr,
 *     so a test can see that a cache mode reached the descriptor; with
 *     IMGCHAIN_TRACE=flush every fdatasync prints "flush PATH", and with
 *     IMGCHAIN_TRACE=alloc every IC_IO_BULK allocation "alloc PATH OFF LEN"
 *     (the words combine: IMGCHAIN_TRACE=open,flush).
 *  9. IC_IO_BULK (bulk output through the page cache): before a write of
 *     at least IC_IO_STREAM_MIN bytes, fallocate() allocates its range, so
 *     the file system maps it in one extent operation instead of reserving
 *     blocks page by page as the pages are dirtied (ext4's delayed
 *     allocation); only the written range is allocated, so the file's
 *     holes stay where the caller leaves them.  A hint: a file system
 *     without fallocate, or one that is full, just takes the write as
 *     before (the first refusal stops the attempts), and the write's own
 *     result is the one reported.
 * 10. ic_io_copy_range (convert -C): copy_file_range between the two
 *     descriptors, continued over short copies.  EXDEV, EOPNOTSUPP,
 *     ENOSYS, EINVAL (O_DIRECT alignment, overlap) and a copy that stops
 *     early (the source ends) are -ENOTSUP, so the caller copies that run
 *     through memory; what was copied already is simply written again.
 *     Into an aio target it goes through the target's description
 *     without O_DIRECT (ic_io_aio_copy_fd), and the final flush syncs it
 *     with the rest of the file.
 *     IMGCHAIN_TRACE=copyrange prints "copy_range DST OFF LEN" per call.
 * 11. IC_IO_MISS_DIRECT (bulk reads of a read-only image in the default
 *     cache mode): a read of at least IC_IO_MISS_MIN bytes, aligned to
 *     IC_IO_MISS_ALIGN in buffer, offset and length, of which the page
 *     cache holds no page (cachestat(2)), goes to the device with
 *     O_DIRECT, on a second description of the file opened for it.  Why:
 *     a buffered read of data nobody has cached must first find and
 *     insert fresh pages for all of it, then copy it out; a direct read
 *     lands in the caller's buffer (the copy engine's, on huge pages:
 *     src/util/bigbuf.c) as a few large requests, and does not evict what
 *     the machine had cached.  Data that is cached, even in part, is read
 *     from the cache, as is every small read (metadata, and readahead's
 *     own business).  Coherence is the kernel's: a direct read first
 *     writes back the dirty pages of its range.  A kernel without
 *     cachestat, or a file system that refuses O_DIRECT, reads buffered
 *     as before.  IMGCHAIN_TRACE=missdirect prints "miss_direct PATH OFF
 *     LEN" per direct read.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io.h"
#include "io-lock.h"
#include "util/error.h"

struct io_posix {
    ic_io base;
    int fd;
    struct ic_lock_state lock;
    /* IC_IO_STREAM (design note 5): the last bulk write, whose pages are
     * dropped from the page cache after the next one. */
    uint64_t stream_off, stream_len;
    /* IC_IO_BULK (design note 9): fallocate was refused once; stop asking */
    bool no_alloc;
    /* IC_IO_MISS_DIRECT (design note 11): the O_DIRECT description, MISS_NONE
     * before the first direct read, MISS_OFF once refused */
    _Atomic int miss_fd;
};
enum { MISS_NONE = -1, MISS_OFF = -2 };

static bool trace_on(const char *what);

static struct io_posix *to_posix(ic_io *io)
{
    return (struct io_posix *)io;
}

/* pread until @len bytes, the end of the file, or (@stop_align non-zero) a
 * count that is not a multiple of @stop_align: a direct read's end of file
 * that is not on a block boundary. */
static int64_t pread_until(int fd, void *buf, size_t len, uint64_t off, uint64_t stop_align)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
        if (stop_align && done % stop_align)
            break;
    }
    return (int64_t)done;
}

int64_t ic_fd_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    return pread_until(fd, buf, len, off, 0);
}

int ic_fd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Design note 11. */
#define IC_IO_MISS_MIN ((size_t)512 << 10)
#define IC_IO_MISS_ALIGN ((uint64_t)4096)

/* cachestat(2) (Linux 6.5), by number: the C library may not wrap it. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct ic_cachestat_range {
    uint64_t off, len;
};
struct ic_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* True when the page cache holds no page of [off, off+len) of @fd; false
 * when it holds some, or cannot tell (then stops asking). */
static bool range_uncached(struct io_posix *p, uint64_t off, size_t len)
{
    struct ic_cachestat_range r = { off, len };
    struct ic_cachestat cs;
    if (syscall(__NR_cachestat, p->fd, &r, &cs, 0) < 0) {
        atomic_store(&p->miss_fd, MISS_OFF);
        return false;
    }
    return cs.nr_cache == 0;
}

/* The O_DIRECT description (design note 11), opened at the first use;
 * -1 where there is none. */
static int miss_fd(struct io_posix *p)
{
    int fd = atomic_load(&p->miss_fd);
    if (fd != MISS_NONE)
        return fd >= 0 ? fd : -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", p->fd);
    int nfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    struct stat a, b;
    if (nfd >= 0 && (fstat(p->fd, &a) < 0 || fstat(nfd, &b) < 0 || a.st_dev != b.st_dev ||
                     a.st_ino != b.st_ino)) {
        close(nfd);
        nfd = -1;
    }
    int want = nfd >= 0 ? nfd : MISS_OFF, expect = MISS_NONE;
    if (!atomic_compare_exchange_strong(&p->miss_fd, &expect, want)) {
        if (nfd >= 0)
            close(nfd); /* another thread's open won */
        return expect >= 0 ? expect : -1;
    }
    return nfd;
}

static int64_t posix_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    struct io_posix *p = to_posix(io);
    if ((io->open_flags & IC_IO_MISS_DIRECT) && len >= IC_IO_MISS_MIN &&
        ((uintptr_t)buf | off | len) % IC_IO_MISS_ALIGN == 0 && off <= INT64_MAX &&
        atomic_load(&p->miss_fd) != MISS_OFF && range_uncached(p, off, len)) {
        int dfd = miss_fd(p);
        if (dfd >= 0) {
            int64_t n = pread_until(dfd, buf, len, off, IC_IO_MISS_ALIGN);
            if (n != -EINVAL) {
                if (n >= 0 && trace_on("missdirect"))
                    fprintf(stderr, "imgchain: trace: miss_direct %s %" PRIu64 " %zu\n",
                            io->name, off, len);
                return n;
            }
            atomic_store(&p->miss_fd, MISS_OFF); /* refused: buffered from now on */
        }
    }
    return ic_fd_pread_full(p->fd, buf, len, off);
}

/*
 * IC_IO_STREAM (design note 5): starts the writeback of a bulk write at
 * once and drops the previous bulk write's pages, which are clean (or
 * nearly) by then.  Both calls are hints: their failure changes nothing,
 * since flush still makes every write durable.
 */
#define IC_IO_STREAM_MIN ((size_t)64 << 10)
static void stream_written(struct io_posix *p, uint64_t off, size_t len)
{
    (void)posix_fadvise(p->fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
    if (p->stream_len)
        (void)posix_fadvise(p->fd, (off_t)p->stream_off, (off_t)p->stream_len,
                            POSIX_FADV_DONTNEED);
    p->stream_off = off;
    p->stream_len = len;
}

static int posix_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    struct io_posix *p = to_posix(io);
    if ((io->open_flags & IC_IO_BULK) && !p->no_alloc && len >= IC_IO_STREAM_MIN &&
        off <= INT64_MAX && len <= INT64_MAX - off) {
        /* design note 9: a hint only */
        if (fallocate(p->fd, 0, (off_t)off, (off_t)len) < 0)
            p->no_alloc = true;
        else if (trace_on("alloc"))
            fprintf(stderr, "imgchain: trace: alloc %s %" PRIu64 " %zu\n", io->name, off, len);
    }
    int ret = ic_fd_pwrite_full(p->fd, buf, len, off);
    if (ret == 0 && (io->open_flags & IC_IO_STREAM) && len >= IC_IO_STREAM_MIN)
        stream_written(p, off, len);
    return ret;
}

static int posix_flush(ic_io *io)
{
    struct io_posix *p = to_posix(io);
    if (trace_on("flush"))
        fprintf(stderr, "imgchain: trace: flush %s\n", io->name);
    if (fdatasync(p->fd) < 0)
        return -errno;
    if (io->open_flags & IC_IO_STREAM) {
        /* every page is clean now: none of the output stays cached */
        (void)posix_fadvise(p->fd, 0, 0, POSIX_FADV_DONTNEED);
        p->stream_len = 0;
    }
    return 0;
}

static void posix_prefetch(ic_io *io, uint64_t off, uint64_t len)
{
    if (off > INT64_MAX || len > INT64_MAX - off)
        return;
    (void)posix_fadvise(to_posix(io)->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

static int posix_truncate(ic_io *io, uint64_t size)
{
    if (ftruncate(to_posix(io)->fd, (off_t)size) < 0)
        return -errno;
    return 0;
}

static int64_t posix_get_size(ic_io *io)
{
    struct stat st;
    if (fstat(to_posix(io)->fd, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(to_posix(io)->fd, 0, SEEK_END);
        return end < 0 ? -errno : (int64_t)end;
    }
    return st.st_size;
}

static int posix_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    if (fallocate(to_posix(io)->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, (off_t)len) < 0)
        return -errno;
    return 0;
}

/* What qemu's file-posix write-zeroes does first: zeroes that keep their
 * space allocated (unwritten extents, so SEEK_DATA reports a hole on ext4
 * and xfs) and that extend the file. */
static int posix_zero_range(ic_io *io, uint64_t off, uint64_t len)
{
    if (fallocate(to_posix(io)->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) < 0)
        return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
    return 0;
}

static int posix_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    int fd = to_posix(io)->fd;
    off_t data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* only a hole until end of file */
            *pnum = len;
            return 0;
        }
        *pnum = len; /* SEEK_DATA unsupported: report data */
        return 1;
    }
    if ((uint64_t)data > off) {
        uint64_t n = (uint64_t)data - off;
        *pnum = n < len ? n : len;
        return 0;
    }
    off_t hole = lseek(fd, (off_t)off, SEEK_HOLE);
    if (hole < 0 || (uint64_t)hole <= off) {
        *pnum = len;
        return 1;
    }
    uint64_t n = (uint64_t)hole - off;
    *pnum = n < len ? n : len;
    return 1;
}

static int64_t posix_allocated_size(ic_io *io)
{
    struct stat st;
    if (fstat(to_posix(io)->fd, &st) < 0)
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

static int posix_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    struct io_posix *p = to_posix(io);
    return ic_lock_apply(&p->lock, p->fd, mode, io->name, errp);
}

static int posix_close(ic_io *io)
{
    struct io_posix *p = to_posix(io);
    int ret = 0;
    int mfd = atomic_load(&p->miss_fd);
    if (mfd >= 0)
        close(mfd);
    if (close(p->fd) < 0)
        ret = -errno;
    free(io->name);
    free(p);
    return ret;
}

static const struct ic_io_ops posix_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .flush = posix_flush,
    .truncate = posix_truncate,
    .get_size = posix_get_size,
    .punch_hole = posix_punch_hole,
    .event = NULL,
    .lock = posix_lock,
    .block_status = posix_block_status,
    .allocated_size = posix_allocated_size,
    .zero_range = posix_zero_range,
    .prefetch = posix_prefetch,
};

int ic_io_posix_fd(ic_io *io)
{
    if (!io || io->ops != &posix_ops)
        return -1;
    return to_posix(io)->fd;
}

/* The descriptor of a POSIX handle, or of the one under an aio handle. */
static int plain_fd(ic_io *io)
{
    int fd = ic_io_posix_fd(io);
    return fd >= 0 ? fd : ic_io_aio_copy_fd(io);
}

/* Design note 10. */
int ic_io_copy_range(ic_io *dst, uint64_t dst_off, ic_io *src, uint64_t src_off, uint64_t len)
{
    int dfd = plain_fd(dst), sfd = plain_fd(src);
    if (dfd < 0 || sfd < 0)
        return -ENOTSUP;
    if (src_off > INT64_MAX || len > INT64_MAX - src_off || dst_off > INT64_MAX ||
        len > INT64_MAX - dst_off)
        return -EINVAL;
    if (trace_on("copyrange"))
        fprintf(stderr, "imgchain: trace: copy_range %s %" PRIu64 " %" PRIu64 "\n", dst->name,
                dst_off, len);
    loff_t so = (loff_t)src_off, d = (loff_t)dst_off;
    while (len) {
        size_t n = len > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t r = copy_file_range(sfd, &so, dfd, &d, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
                return -ENOTSUP;
            return -errno;
        }
        if (r == 0)
            return -ENOTSUP; /* the source ends early: copied through memory */
        len -= (uint64_t)r;
    }
    return 0;
}

/* Design note 8: IMGCHAIN_TRACE names @what. */
static bool trace_on(const char *what)
{
    const char *t = getenv("IMGCHAIN_TRACE");
    return t && strstr(t, what);
}

/* Design note 8: "imgchain: trace: open PATH: O_RDWR|O_DIRECT|O_DSYNC". */
static void trace_open(const char *path, int fd)
{
    if (!trace_on("open"))
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return;
    fprintf(stderr, "imgchain: trace: open %s: %s%s%s\n", path,
            (fl & O_ACCMODE) == O_RDWR ? "O_RDWR" : (fl & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
                                                                                 : "O_RDONLY",
            (fl & O_DIRECT) ? "|O_DIRECT" : "", (fl & O_DSYNC) == O_DSYNC ? "|O_DSYNC" : "");
}

int ic_io_open_file(ic_io **out, const char *path, unsigned flags, ic_error **errp)
{
    *out = NULL;
    int oflags = O_CLOEXEC | O_NONBLOCK; /* note 6 */
    oflags |= (flags & (IC_IO_RDWR | IC_IO_CREATE)) ? O_RDWR : O_RDONLY;
    if (flags & IC_IO_CREATE)
        oflags |= O_CREAT | ((flags & IC_IO_EXCL) ? O_EXCL : 0);
    if (flags & IC_IO_DIRECT)
        oflags |= O_DIRECT;
    if (flags & IC_IO_DSYNC)
        oflags |= O_DSYNC;
    int fd = open(path, oflags, 0644);
    if (fd < 0 && (flags & IC_IO_DIRECT) && errno == EINVAL) {
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, EINVAL,
                            "%s: the file system does not support O_DIRECT (-t none)", path);
    }
    if (fd < 0) {
        int e = errno;
        return ic_error_set(errp, ic_error_kind_from_errno(e), e, "%s: %s", path,
                            e == ENOENT ? "No such file or directory" : strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return ic_error_set(errp, ic_error_kind_from_errno(e), e, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ic_error_set(errp, IC_ERR_INVALID, EISDIR, "%s: is a directory", path);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(fd);
        const char *kind = S_ISFIFO(st.st_mode)  ? "a FIFO"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                                                : "a special file";
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: is %s, not a regular file or block device", path, kind);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return ic_error_set(errp, ic_error_kind_from_errno(e), e, "%s: %s", path, strerror(e));
    }
    trace_open(path, fd);
    struct io_posix *p = ic_io_backend_new(sizeof(*p), &posix_ops, path, flags);
    if (!p) {
        close(fd);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", path);
    }
    p->fd = fd;
    atomic_init(&p->miss_fd, (flags & IC_IO_MISS_DIRECT) ? MISS_NONE : MISS_OFF);
    if (!(flags & IC_IO_NOLOCK)) {
        enum ic_lock_mode mode = (flags & IC_IO_SHARE) ? IC_LOCK_FORCE_SHARE
                               : (flags & (IC_IO_RDWR | IC_IO_CREATE)) ? IC_LOCK_WRITE
                               : IC_LOCK_SHARED;
        int ret = ic_lock_apply(&p->lock, fd, mode, path, errp);
        if (ret < 0) {
            posix_close(&p->base);
            return ret;
        }
    }
    /* IC_IO_CREATE does not truncate: the format's create() validates its
     * options first and only then truncates, so a refused create leaves an
     * existing file untouched. */
    *out = &p->base;
    return 0;
}

int ic_io_open_replacement(ic_io **out, const char *path, ic_error **errp)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : ic_error_set(errp, ic_error_kind_from_errno(errno), errno,
                                                  "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
        return 0;
    char *real = realpath(path, NULL);
    if (!real)
        return ic_error_set(errp, ic_error_kind_from_errno(errno), errno, "%s: %s", path,
                            strerror(errno));
    char *slash = strrchr(real, '/');
    size_t dlen = (size_t)(slash - real);
    size_t need = strlen(real) + sizeof("/..imgchain-create-XXXXXX");
    char *tmp = malloc(need);
    if (!tmp) {
        free(real);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, need, "%.*s/.%s.imgchain-create-XXXXXX", (int)dlen, real, slash + 1);
    free(real);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        /* a directory we cannot create in: rewrite the file in place */
        return e == EACCES || e == EROFS ? 0 : ic_error_set(errp, ic_error_kind_from_errno(e), e,
                                                            "%s: cannot create a temporary file "
                                                            "next to it: %s", path, strerror(e));
    }
    struct stat ts;
    bool same = fstat(fd, &ts) == 0 && fchmod(fd, st.st_mode & 07777) == 0 &&
                ((ts.st_uid == st.st_uid && ts.st_gid == st.st_gid) ||
                 fchown(fd, st.st_uid, st.st_gid) == 0);
    if (!same) {
        unlink(tmp);
        close(fd);
        free(tmp);
        return 0;
    }
    struct io_posix *p = ic_io_backend_new(sizeof(*p), &posix_ops, tmp, IC_IO_RDWR | IC_IO_NOLOCK);
    if (!p) {
        unlink(tmp);
        close(fd);
        free(tmp);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "%s: out of memory", path);
    }
    free(tmp);
    p->fd = fd;
    *out = &p->base;
    return 1;
}

int ic_io_commit_replacement(ic_io *tmp, const char *path, ic_error **errp)
{
    struct io_posix *p = to_posix(tmp);
    if (fsync(p->fd) < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(errno), errno, "%s: flush failed: %s",
                            path, strerror(errno));
    char *real = realpath(path, NULL);
    if (!real || rename(tmp->name, real) < 0) {
        int e = errno;
        free(real);
        return ic_error_set(errp, ic_error_kind_from_errno(e), e, "%s: cannot replace it: %s",
                            path, strerror(e));
    }
    /* renamed: the temporary name is gone, and a discard after a failure
     * below must not remove the new image (it has no name to remove) */
    free(tmp->name);
    tmp->name = NULL;
    char *slash = strrchr(real, '/');
    char dir[4096];
    snprintf(dir, sizeof(dir), "%.*s", slash == real ? 1 : (int)(slash - real), real);
    free(real);
    int ret = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        ret = ic_error_set(errp, ic_error_kind_from_errno(errno), errno,
                           "%s: cannot make the new image durable: %s", path, strerror(errno));
    if (dfd >= 0)
        close(dfd);
    return ret;
}

void ic_io_discard_replacement(ic_io *tmp)
{
    if (!tmp)
        return;
    if (tmp->name)
        unlink(tmp->name);
    posix_close(tmp);
}

bool ic_io_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int ic_io_remove(const char *path)
{
    if (unlink(path) < 0)
        return -errno;
    return 0;
}

int ic_io_file_kind(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode))
        return IC_FILE_REGULAR;
    if (S_ISBLK(st.st_mode))
        return IC_FILE_BLOCK;
    if (S_ISDIR(st.st_mode))
        return IC_FILE_DIR;
    return IC_FILE_OTHER;
}
