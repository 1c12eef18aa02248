/*
 * io-lock.c - qemu-compatible image locks (the OFD byte locks of qemu's file-posix.c).
 *
 * Design notes:
 *  qemu locks single bytes of the image file with fcntl read locks, using
 *  open-file-description (OFD) locks when the kernel has them:
 *    byte 100+i  "I hold permission i"
 *    byte 200+i  "I do not share permission i"
 *  with i = 0 consistent read, 1 write, 2 write-unchanged, 3 resize.
 *  Bytes 0-99 belong to libvirt and are never touched.
 *
 *  Invariants:
 *   1. A writer holds 100, 101, 103 and 201, 203: it reads, writes and
 *      resizes, and lets nobody else write or resize.  That is exactly what
 *      qemu takes for a read-write image, so the two exclude each other.
 *   2. A reader holds 100, 201, 203 (what qemu takes for read-only opens and
 *      for every backing file): readers share, writers are refused.
 *   3. Force-share (-U) holds 100 only.
 *   4. After taking our bytes we test, with F_OFD_GETLK for a write lock,
 *      the bytes that would conflict: for every permission we hold, byte
 *      200+i (someone refuses to share it); for every permission we refuse
 *      to share, byte 100+i (someone holds it).  GETLK ignores our own OFD
 *      locks.  On conflict we restore the previous set and fail with EBUSY.
 *   5. Without OFD locks (very old kernels) classic POSIX locks are used, as
 *      qemu does; they conflict with OFD locks across processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "io-lock.h"
#include "util/error.h"

#define PERM_BASE 100
#define SHARED_BASE 200

enum { P_READ = 0, P_WRITE = 1, P_WRITE_UNCHANGED = 2, P_RESIZE = 3, P_COUNT = 4 };

static const char *const perm_names[P_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

static uint32_t mode_bytes(enum ic_lock_mode mode)
{
    /* bits 0..7: byte 100+i held; bits 8..15: byte 200+i held */
    switch (mode) {
    case IC_LOCK_WRITE:
        return (1u << P_READ) | (1u << P_WRITE) | (1u << P_RESIZE) |
               (1u << (8 + P_WRITE)) | (1u << (8 + P_RESIZE));
    case IC_LOCK_SHARED:
        return (1u << P_READ) | (1u << (8 + P_WRITE)) | (1u << (8 + P_RESIZE));
    case IC_LOCK_FORCE_SHARE:
        return 1u << P_READ;
    case IC_LOCK_NONE:
        return 0;
    }
    return 0;
}

static int byte_of(int bit)
{
    return bit < 8 ? PERM_BASE + bit : SHARED_BASE + (bit - 8);
}

static int do_lock(struct ic_lock_state *st, int fd, int cmd_ofd, int cmd_posix, short type,
                   int byte, struct flock *out)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    int ret = fcntl(fd, st->use_ofd ? cmd_ofd : cmd_posix, &fl);
    if (ret < 0)
        return -errno;
    if (out)
        *out = fl;
    return 0;
}

static void probe_ofd(struct ic_lock_state *st, int fd)
{
    if (st->probed)
        return;
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    st->use_ofd = fcntl(fd, F_OFD_GETLK, &fl) == 0;
    st->probed = true;
}

static int set_bytes(struct ic_lock_state *st, int fd, uint32_t want)
{
    for (int bit = 0; bit < 16; bit++) {
        uint32_t m = 1u << bit;
        if ((want & m) && !(st->held & m)) {
            int ret = do_lock(st, fd, F_OFD_SETLK, F_SETLK, F_RDLCK, byte_of(bit), NULL);
            if (ret < 0)
                return ret;
            st->held |= m;
        }
    }
    for (int bit = 0; bit < 16; bit++) {
        uint32_t m = 1u << bit;
        if (!(want & m) && (st->held & m)) {
            int ret = do_lock(st, fd, F_OFD_SETLK, F_SETLK, F_UNLCK, byte_of(bit), NULL);
            if (ret < 0)
                return ret;
            st->held &= ~m;
        }
    }
    return 0;
}

/* Is @byte locked by another open file description? */
static int conflicts(struct ic_lock_state *st, int fd, int byte)
{
    struct flock fl;
    int ret = do_lock(st, fd, F_OFD_GETLK, F_GETLK, F_WRLCK, byte, &fl);
    if (ret < 0)
        return ret;
    return fl.l_type != F_UNLCK;
}

int ic_lock_apply(struct ic_lock_state *st, int fd, enum ic_lock_mode mode,
                  const char *name, ic_error **errp)
{
    probe_ofd(st, fd);
    uint32_t old = st->held;
    uint32_t want = mode_bytes(mode);
    int ret = set_bytes(st, fd, want | old); /* take new bytes first */
    if (ret < 0)
        goto fail_errno;
    for (int i = 0; i < P_COUNT; i++) {
        if (want & (1u << i)) {
            ret = conflicts(st, fd, SHARED_BASE + i);
            if (ret < 0)
                goto fail_errno;
            if (ret) {
                set_bytes(st, fd, old);
                return ic_error_set(errp, IC_ERR_BUSY, EBUSY,
                                    "%s: failed to get \"%s\" lock: is another process using the image?",
                                    name, perm_names[i]);
            }
        }
        if (want & (1u << (8 + i))) {
            ret = conflicts(st, fd, PERM_BASE + i);
            if (ret < 0)
                goto fail_errno;
            if (ret) {
                set_bytes(st, fd, old);
                return ic_error_set(errp, IC_ERR_BUSY, EBUSY,
                                    "%s: failed to get shared \"%s\" lock: is another process using the image?",
                                    name, perm_names[i]);
            }
        }
    }
    ret = set_bytes(st, fd, want);
    if (ret < 0)
        goto fail_errno;
    return 0;

fail_errno:
    set_bytes(st, fd, old);
    /* F_SETLK answers EAGAIN or EACCES when another process holds a
     * conflicting lock (a program other than qemu locking these bytes) */
    if (ret == -EAGAIN || ret == -EACCES)
        return ic_error_set(errp, IC_ERR_BUSY, EBUSY,
                            "%s: the image is locked by another process: %s", name,
                            strerror(-ret));
    return ic_error_set(errp, IC_ERR_IO, -ret, "%s: cannot lock image: %s", name, strerror(-ret));
}
