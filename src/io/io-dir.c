/*
 * io-dir.c - whole files and directories: the snapshot metadata store,
 * the durability of chain journals' creation and removal, real paths and
 * folder scans.
 *
 * Design notes
 * ------------
 * Owns: the OS calls behind the metadata store (open/write/fsync/rename of
 * whole files, directory listing and creation, unlink, stat).  With
 * io-posix.c, io-aio.c and io-lock.c it is the only code that touches the
 * OS file API.  libvirt keeps one NAME.xml per snapshot, rewritten whole;
 * the write follows git_filebuf / virFileRewrite.
 *
 * Invariants:
 *  1. ic_dir_write_atomic() order: create temp in the target's directory ->
 *     write all -> fsync temp -> close -> rename over target -> fsync dir.
 *     Until the rename the target is untouched; the rename is atomic; the
 *     temp is durable before it becomes visible, so if we crash after the
 *     rename the new content is complete, and if we crash before it the old
 *     one is.  The directory fsync makes the rename itself durable.
 *  2. A failed step (not a simulated crash) removes the temporary file.
 *  3. Temporary files start with '.', so ic_dir_list() never returns one
 *     left behind by a crash.
 *  4. EINTR is retried and short writes are continued.
 *  5. The test hook is inert unless installed (see io-dir.h).
 *  6. One folder fsync (fsync_dir) serves every caller; a file system that
 *     cannot fsync a folder (EINVAL) or is read-only (EROFS) has nothing
 *     to make durable there.
 *  7. ic_dir_foreach never follows a symlinked folder: a scan of a tree
 *     with a link cycle still ends.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io-dir.h"
#include "io.h"
#include "util/error.h"

static ic_dir_hook_fn hook_fn;
static void *hook_opaque;

void ic_dir_set_hook(ic_dir_hook_fn fn, void *opaque)
{
    hook_fn = fn;
    hook_opaque = opaque;
}

const char *ic_dir_step_name(enum ic_dir_step step)
{
    static const char *const names[] = {
        [IC_DIR_STEP_CREATE] = "create",
        [IC_DIR_STEP_WRITE] = "write",
        [IC_DIR_STEP_FSYNC] = "fsync",
        [IC_DIR_STEP_RENAME] = "rename",
        [IC_DIR_STEP_FSYNC_DIR] = "fsync-dir",
        [IC_DIR_STEP_UNLINK] = "unlink",
    };
    return (unsigned)step < IC_DIR_STEP__MAX ? names[step] : "?";
}

/* 0 to go on, IC_DIR_HOOK_CRASH to crash, or -errno to fail the step. */
static int hook(enum ic_dir_step step, const char *path)
{
    return hook_fn ? hook_fn(step, path, hook_opaque) : 0;
}

static int crashed(ic_error **errp, enum ic_dir_step step, const char *path)
{
    return ic_error_set(errp, IC_ERR_IO, EIO, "%s: simulated crash at step %s", path,
                        ic_dir_step_name(step));
}

enum ic_dir_path_type ic_dir_path_type(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) < 0)
        return IC_DIR_PATH_MISSING;
    if (S_ISREG(st.st_mode))
        return IC_DIR_PATH_REGULAR;
    if (S_ISBLK(st.st_mode))
        return IC_DIR_PATH_BLOCK;
    if (S_ISDIR(st.st_mode))
        return IC_DIR_PATH_DIRECTORY;
    return IC_DIR_PATH_OTHER;
}

/* Directory part of @path ("." when none); heap string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *dir, ic_error **errp)
{
    int fd;
    do {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return ic_error_set_errno(errp, -errno, "%s: cannot open directory", dir);
    int ret = 0;
    if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
        ret = ic_error_set_errno(errp, -errno, "%s: cannot fsync directory", dir);
    close(fd);
    return ret;
}

int ic_dir_mkdir_p(const char *path, unsigned mode, ic_error **errp)
{
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "empty directory path");
    char *p = strdup(path);
    if (!p)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = 0;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, (mode_t)mode) == 0) {
            char *parent = dir_of(p);
            if (!parent)
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            else
                ret = fsync_dir(parent, errp);
            free(parent);
        } else if (errno != EEXIST) {
            ret = ic_error_set_errno(errp, -errno, "%s: cannot create directory", p);
        } else if (ic_dir_path_type(p) != IC_DIR_PATH_DIRECTORY) {
            ret = ic_error_set(errp, IC_ERR_INVALID, ENOTDIR, "%s: not a directory", p);
        }
        *s = c;
        if (ret < 0 || c == '\0')
            break;
    }
    free(p);
    return ret;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int ic_dir_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                        ic_error **errp)
{
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t tn = strlen(dir) + strlen(base) + 16;
    char *tmp = malloc(tn);
    int fd = -1, ret = 0, h;
    if (!dir || !tmp || !*base) {
        free(dir);
        free(tmp);
        if (!*base)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: not a file path", path);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    snprintf(tmp, tn, "%s/.%s.tmpXXXXXX", dir, base);

    if ((h = hook(IC_DIR_STEP_CREATE, path)) != 0) {
        ret = h > 0 ? crashed(errp, IC_DIR_STEP_CREATE, path)
                    : ic_error_set_errno(errp, h, "%s: cannot create temporary file", path);
        goto out_nofile;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        ret = ic_error_set_errno(errp, -errno, "%s: cannot create temporary file", path);
        goto out_nofile;
    }
    if (fchmod(fd, (mode_t)mode) < 0) {
        ret = ic_error_set_errno(errp, -errno, "%s: cannot set mode", tmp);
        goto fail;
    }

    if ((h = hook(IC_DIR_STEP_WRITE, path)) != 0) {
        if (h > 0) {
            /* a crash in the middle of the write: half the data landed */
            (void)write_all(fd, data, len / 2);
            close(fd);
            ret = crashed(errp, IC_DIR_STEP_WRITE, path);
            goto out_nofile;
        }
        ret = ic_error_set_errno(errp, h, "%s: cannot write", path);
        goto fail;
    }
    if ((ret = write_all(fd, data, len)) < 0) {
        ret = ic_error_set_errno(errp, ret, "%s: cannot write", tmp);
        goto fail;
    }

    if ((h = hook(IC_DIR_STEP_FSYNC, path)) != 0) {
        if (h > 0) {
            close(fd);
            ret = crashed(errp, IC_DIR_STEP_FSYNC, path);
            goto out_nofile;
        }
        ret = ic_error_set_errno(errp, h, "%s: cannot fsync", path);
        goto fail;
    }
    if (fsync(fd) < 0) {
        ret = ic_error_set_errno(errp, -errno, "%s: cannot fsync", tmp);
        goto fail;
    }
    if (close(fd) < 0 && errno != EINTR) {
        fd = -1;
        ret = ic_error_set_errno(errp, -errno, "%s: cannot close", tmp);
        goto fail;
    }
    fd = -1;

    if ((h = hook(IC_DIR_STEP_RENAME, path)) != 0) {
        if (h > 0) {
            ret = crashed(errp, IC_DIR_STEP_RENAME, path);
            goto out_nofile;
        }
        ret = ic_error_set_errno(errp, h, "%s: cannot rename into place", path);
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        ret = ic_error_set_errno(errp, -errno, "%s: cannot rename into place", path);
        goto fail;
    }
    /* if we crash after this point the new content is complete (invariant 1) */
    if ((h = hook(IC_DIR_STEP_FSYNC_DIR, path)) != 0) {
        ret = h > 0 ? crashed(errp, IC_DIR_STEP_FSYNC_DIR, path)
                    : ic_error_set_errno(errp, h, "%s: cannot fsync directory", dir);
        goto out_nofile;
    }
    ret = fsync_dir(dir, errp);
    goto out_nofile;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out_nofile:
    free(tmp);
    free(dir);
    return ret;
}

int ic_dir_read_file(char **out, size_t *len_out, const char *path, size_t max,
                     ic_error **errp)
{
    *out = NULL;
    if (len_out)
        *len_out = 0;
    int fd;
    do {
        /* non-blocking: a FIFO is refused below instead of waiting for a
         * writer (reads of a regular file ignore the flag) */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return ic_error_set_errno(errp, -errno, "%s: cannot open", path);
    struct stat st;
    int ret = 0;
    char *buf = NULL;
    if (fstat(fd, &st) < 0) {
        ret = ic_error_set_errno(errp, -errno, "%s: cannot stat", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EFBIG,
                           "%s: %lld bytes is more than the %zu byte limit", path,
                           (long long)st.st_size, max);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    buf = malloc(cap);
    if (!buf) {
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        if (len + 1 == cap) {
            /* the file grew since fstat: keep reading up to @max */
            if (cap > max) {
                ret = ic_error_set(errp, IC_ERR_INVALID, EFBIG,
                                   "%s: more than the %zu byte limit", path, max);
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = ic_error_set_errno(errp, -errno, "%s: cannot read", path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    if (len_out)
        *len_out = len;
out:
    free(buf);
    close(fd);
    return ret;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ic_dir_list_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int ic_dir_list(char ***names_out, size_t *n_out, const char *dir, const char *suffix,
                bool missing_ok, ic_error **errp)
{
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT && missing_ok)
            return 0;
        return ic_error_set_errno(errp, -errno, "%s: cannot open directory", dir);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    size_t sl = suffix ? strlen(suffix) : 0;
    int ret = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                ret = ic_error_set_errno(errp, -errno, "%s: cannot read directory", dir);
            break;
        }
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < sl || (sl && strcmp(e->d_name + l - sl, suffix)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn) {
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (ret < 0) {
        ic_dir_list_free(names, n);
        return ret;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_names);
    *names_out = names;
    *n_out = n;
    return 0;
}

int ic_dir_create_empty(const char *path, unsigned mode, ic_error **errp)
{
    int h = hook(IC_DIR_STEP_CREATE, path);
    if (h > 0)
        return crashed(errp, IC_DIR_STEP_CREATE, path);
    if (h < 0)
        return ic_error_set_errno(errp, h, "%s: cannot create", path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)(mode & 07777));
    if (fd < 0)
        return ic_error_set_errno(errp, -errno, "%s: cannot create", path);
    /* the mode is the caller's exactly: a umask must not widen or narrow it */
    int ret = 0;
    if (fchmod(fd, (mode_t)(mode & 07777)) < 0 || fsync(fd) < 0)
        ret = ic_error_set_errno(errp, -errno, "%s: cannot create", path);
    close(fd);
    if (ret < 0) {
        unlink(path);
        return ret;
    }
    char *dir = dir_of(path);
    if (!dir)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    h = hook(IC_DIR_STEP_FSYNC_DIR, path);
    if (h > 0)
        ret = crashed(errp, IC_DIR_STEP_FSYNC_DIR, path);
    else if (h < 0)
        ret = ic_error_set_errno(errp, h, "%s: cannot fsync directory", dir);
    else
        ret = fsync_dir(dir, errp);
    free(dir);
    return ret;
}

int ic_dir_unlink(const char *path, ic_error **errp)
{
    int h = hook(IC_DIR_STEP_UNLINK, path);
    if (h > 0)
        return crashed(errp, IC_DIR_STEP_UNLINK, path);
    if (h < 0)
        return ic_error_set_errno(errp, h, "%s: cannot remove", path);
    if (unlink(path) < 0)
        return ic_error_set_errno(errp, -errno, "%s: cannot remove", path);
    char *dir = dir_of(path);
    if (!dir)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    h = hook(IC_DIR_STEP_FSYNC_DIR, path);
    int ret;
    if (h > 0)
        ret = crashed(errp, IC_DIR_STEP_FSYNC_DIR, path);
    else if (h < 0)
        ret = ic_error_set_errno(errp, h, "%s: cannot fsync directory", dir);
    else
        ret = fsync_dir(dir, errp);
    free(dir);
    return ret;
}

/* ---- real paths, folder sync and scans (chain editing) --------------------- */

char *ic_dir_realpath(const char *path)
{
    return realpath(path, NULL);
}

int ic_dir_sync_parent(const char *path, ic_error **errp)
{
    char *dir = dir_of(path);
    if (!dir)
        return ic_error_set_errno(errp, -ENOMEM, "%s: out of memory", path);
    int ret = fsync_dir(dir, errp);
    free(dir);
    return ret;
}

int ic_dir_foreach(const char *dir, int (*fn)(void *payload, const char *path, int kind),
                   void *payload, ic_error **errp)
{
    DIR *d = opendir(dir);
    if (!d)
        return ic_error_set_errno(errp, -errno, "%s: cannot read the folder", dir);
    int ret = 0;
    size_t dlen = strlen(dir);
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                ret = ic_error_set_errno(errp, -errno, "%s: cannot read the folder", dir);
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        size_t n = dlen + 1 + strlen(de->d_name) + 1;
        char *p = malloc(n);
        if (!p) {
            ret = ic_error_set_errno(errp, -ENOMEM, "%s: out of memory", dir);
            break;
        }
        snprintf(p, n, "%s%s%s", dir, dlen && dir[dlen - 1] == '/' ? "" : "/", de->d_name);
        int kind;
        switch (de->d_type) {
        case DT_REG:
            kind = IC_DIRENT_FILE;
            break;
        case DT_DIR:
            kind = IC_DIRENT_DIR;
            break;
        case DT_LNK: {
            int k = ic_io_file_kind(p);
            kind = (k == IC_FILE_REGULAR || k == IC_FILE_BLOCK) ? IC_DIRENT_FILE : IC_DIRENT_OTHER;
            break;
        }
        case DT_UNKNOWN: {
            int k = ic_io_file_kind(p);
            kind = k == IC_FILE_REGULAR ? IC_DIRENT_FILE : k == IC_FILE_DIR ? IC_DIRENT_DIR
                                                                          : IC_DIRENT_OTHER;
            break;
        }
        default:
            kind = IC_DIRENT_OTHER;
            break;
        }
        ret = fn(payload, p, kind);
        free(p);
        if (ret)
            break;
    }
    closedir(d);
    return ret;
}
