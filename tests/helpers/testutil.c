/*
 * testutil.c - assertions, temp dirs, files, shell, patterns, borrowed io
 * (see testutil.h).
 *
 * Design notes:
 *  1. Helpers fail the current cmocka test themselves (print_error + _fail
 *     with the caller's file:line), so tests stay one line per step.
 *  2. Temp dirs live under $TMPDIR (default /tmp) and are removed by the
 *     test; tu_rmtree() refuses paths that are not ic-test directories so a
 *     bug can never remove anything else.
 *  3. The borrowed io forwards every op; its close() frees only itself.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "io/io-mem.h"
#include "util/error.h"

/* ---- 1. error assertions ---------------------------------------------- */

void tu_assert_ok_(int64_t ret, ic_error **err, const char *expr, const char *file, int line)
{
    if (ret >= 0 && !*err)
        return;
    if (ret >= 0)
        print_error("%s returned %lld but set an error: %s\n", expr, (long long)ret,
                    ic_error_message(*err));
    else
        print_error("%s failed: %s (ret %lld, errno %d: %s)\n", expr,
                    *err ? ic_error_message(*err) : "(no error object set!)", (long long)ret,
                    *err ? ic_error_errno(*err) : 0, strerror((int)-ret));
    _fail(file, line);
}

void tu_assert_err_(int64_t ret, ic_error **err, int errnum, const char *part, bool prefix,
                    const char *file, int line)
{
    const char *msg = ic_error_message(*err);
    if (ret != -errnum) {
        print_error("expected ret -%d (%s), got %lld; error: %s\n", errnum, strerror(errnum),
                    (long long)ret, *err ? msg : "(none)");
        _fail(file, line);
    }
    if (!*err) {
        print_error("ret %lld but no error object was set\n", (long long)ret);
        _fail(file, line);
    }
    if (ic_error_errno(*err) != errnum) {
        print_error("error errno %d, expected %d; message: %s\n", ic_error_errno(*err), errnum,
                    msg);
        _fail(file, line);
    }
    if (part && (prefix ? strncmp(msg, part, strlen(part)) != 0 : !strstr(msg, part))) {
        print_error("error message \"%s\" does not %s \"%s\"\n", msg,
                    prefix ? "start with" : "contain", part);
        _fail(file, line);
    }
    ic_error_free(*err);
    *err = NULL;
}

/* ---- 2. temp dirs and files -------------------------------------------- */

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *tmpl = tu_path(base, "ic-test.XXXXXX");
    if (!mkdtemp(tmpl)) {
        print_error("mkdtemp %s: %s\n", tmpl, strerror(errno));
        free(tmpl);
        fail();
    }
    return tmpl;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void tu_rmtree(const char *dir)
{
    if (!dir || !strstr(dir, "/ic-test."))
        return; /* design note 2 */
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int tu_cached_pages(const char *path, size_t *out)
{
    *out = 0;
    struct statfs sfs;
    if (statfs(path, &sfs) < 0)
        return -errno;
    if (sfs.f_type == 0x01021994) /* TMPFS_MAGIC */
        return -ENOTSUP;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size == 0) {
        close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -errno;
    size_t psz = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = (len + psz - 1) / psz;
    unsigned char *vec = malloc(n);
    int ret = 0;
    if (!vec)
        ret = -ENOMEM;
    else if (mincore(map, len, vec) < 0)
        ret = -errno;
    for (size_t i = 0; ret == 0 && i < n; i++)
        *out += vec[i] & 1;
    free(vec);
    munmap(map, len);
    return ret;
}

int tu_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -errno;
    if (len && fwrite(buf, 1, len, f) != len) {
        int e = errno ? errno : EIO;
        fclose(f);
        return -e;
    }
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

int tu_read_file(const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 65536, n = 0;
    uint8_t *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        uint8_t *nb = realloc(b, cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
        }
        b = nb;
    }
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    if (!b)
        return -ENOMEM;
    if (err) {
        free(b);
        return -err;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

int tu_file_to_mem(ic_io **out, const char *path)
{
    uint8_t *data;
    size_t len;
    *out = NULL;
    int ret = tu_read_file(path, &data, &len);
    if (ret < 0)
        return ret;
    ic_io *mem;
    ret = ic_io_open_mem(&mem, path, NULL);
    if (ret == 0 && len)
        ret = ic_io_pwrite(mem, data, len, 0);
    free(data);
    if (ret < 0) {
        ic_io_close(mem);
        return ret;
    }
    /* the copy is not a test subject: forget the loading write */
    ic_io_mem_of(mem)->n_write = 0;
    *out = mem;
    return 0;
}

int tu_mem_to_file(ic_io *mem, const char *path)
{
    struct ic_io_mem *m = ic_io_mem_of(mem);
    if (!m)
        return -EINVAL;
    return tu_write_file(path, m->data, (size_t)m->size);
}

/* ---- 3. shell -------------------------------------------------------------- */

static int status_of(int st)
{
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int tu_sh(const char *fmt, ...)
{
    char *cmd;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    int st = system(cmd);
    free(cmd);
    return status_of(st);
}

int tu_sh_out(char **out, const char *fmt, ...)
{
    char *cmd, *full;
    *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    n = asprintf(&full, "( %s ) 2>&1", cmd);
    free(cmd);
    if (n < 0)
        return -1;
    FILE *p = popen(full, "r");
    free(full);
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int st = pclose(p);
    if (buf)
        buf[len] = 0;
    *out = buf;
    return status_of(st);
}

bool tu_have_prog(const char *prog)
{
    return tu_sh("command -v '%s' >/dev/null 2>&1", prog) == 0;
}

/* ---- 4. patterns ------------------------------------------------------------ */

uint64_t tu_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

void tu_fill_pattern(void *buf, size_t len, uint64_t seed)
{
    uint8_t *b = buf;
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = tu_rand(&st);
        for (size_t k = 0; k < 8 && i + k < len; k++)
            b[i + k] = (uint8_t)(r >> (8 * k));
    }
}

/* ---- 5. borrowed io ---------------------------------------------------------- */

struct io_borrow {
    ic_io base;
    ic_io *t;
};

static ic_io *bt(ic_io *io)
{
    return ((struct io_borrow *)io)->t;
}

static int b_close(ic_io *io)
{
    free(io->name);
    free(io);
    return 0;
}
static int64_t b_pread(ic_io *io, void *buf, size_t len, uint64_t off)
{
    return bt(io)->ops->pread(bt(io), buf, len, off);
}
static int b_pwrite(ic_io *io, const void *buf, size_t len, uint64_t off)
{
    return bt(io)->ops->pwrite(bt(io), buf, len, off);
}
static int b_flush(ic_io *io)
{
    return ic_io_flush(bt(io));
}
static int b_truncate(ic_io *io, uint64_t size)
{
    return ic_io_truncate(bt(io), size);
}
static int64_t b_get_size(ic_io *io)
{
    return ic_io_get_size(bt(io));
}
static int b_punch_hole(ic_io *io, uint64_t off, uint64_t len)
{
    return ic_io_punch_hole(bt(io), off, len);
}
static void b_event(ic_io *io, int ev)
{
    if (bt(io)->ops->event)
        bt(io)->ops->event(bt(io), ev);
}
static int b_lock(ic_io *io, enum ic_lock_mode mode, ic_error **errp)
{
    return ic_io_lock(bt(io), mode, errp);
}
static int b_block_status(ic_io *io, uint64_t off, uint64_t len, uint64_t *pnum)
{
    return ic_io_block_status(bt(io), off, len, pnum);
}
static int64_t b_allocated_size(ic_io *io)
{
    return ic_io_allocated_size(bt(io));
}
static int b_submit(ic_io *io, struct ic_io_req *reqs, size_t n)
{
    return ic_io_submit(bt(io), reqs, n);
}

static const struct ic_io_ops borrow_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = b_close,
    .pread = b_pread,
    .pwrite = b_pwrite,
    .flush = b_flush,
    .truncate = b_truncate,
    .get_size = b_get_size,
    .punch_hole = b_punch_hole,
    .event = b_event,
    .lock = b_lock,
    .block_status = b_block_status,
    .allocated_size = b_allocated_size,
    .submit = b_submit,
};

int tu_io_borrow(ic_io **out, ic_io *target)
{
    *out = NULL;
    struct io_borrow *b = calloc(1, sizeof(*b));
    char *name = strdup(ic_io_name(target));
    if (!b || !name) {
        free(b);
        free(name);
        return -ENOMEM;
    }
    b->base.ops = &borrow_ops;
    b->base.name = name;
    b->base.open_flags = target->open_flags;
    b->t = target;
    *out = &b->base;
    return 0;
}

/* ---- 9. failing child test --------------------------------------------- */

void tu_assert_child_test_fails(void (*fn)(void **state))
{
    char *tmp = tu_tmpdir(); /* the failing run keeps its files: keep them in here */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("TMPDIR", tmp, 1);
        if (!getenv("IC_TEST_VERBOSE_CHILD") &&
            (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)))
            _exit(3);
        const struct CMUnitTest t[] = { { "child", fn, NULL, NULL, NULL } };
        _exit(cmocka_run_group_tests_name("child", t, NULL, NULL) ? 1 : 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    /* 1: cmocka saw the child's test fail (99: valgrind, see testutil.h) */
    assert_true(WEXITSTATUS(st) == 1 || WEXITSTATUS(st) == 99);
    tu_rmtree(tmp);
    free(tmp);
}
