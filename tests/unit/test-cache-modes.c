/*
 * test-cache-modes.c - the cache modes of ic_image_open (imgchain/image.h):
 * the parser, the flags each mode puts on the file descriptor (read back
 * from /proc/self/fdinfo), and the unsafe mode's deferred flushes (only
 * the final flush is skipped; src/io/io.c design note 5) and dropped
 * flushes (none at all, for a target being created; note 6).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "image/image.h"
#include "io/io.h"

/* ---- a backend that logs writes ('W') and flushes ('F') -------------- */

struct logio {
    ic_io base;
    ic_io *inner;
    char log[4096];
    size_t n;
};

static struct logio *lg(ic_io *io)
{
    return (struct logio *)io;
}
static void note(ic_io *io, char c)
{
    struct logio *l = lg(io);
    if (l->n + 1 < sizeof(l->log))
        l->log[l->n++] = c;
}
static int log_close(ic_io *io)
{
    ic_io_close(lg(io)->inner);
    free(io->name);
    free(io);
    return 0;
}
static int64_t log_pread(ic_io *io, void *b, size_t l, uint64_t o)
{
    return lg(io)->inner->ops->pread(lg(io)->inner, b, l, o);
}
static int log_pwrite(ic_io *io, const void *b, size_t l, uint64_t o)
{
    note(io, 'W');
    return ic_io_pwrite(lg(io)->inner, b, l, o);
}
static int log_flush(ic_io *io)
{
    note(io, 'F');
    return ic_io_flush(lg(io)->inner);
}
static int log_truncate(ic_io *io, uint64_t s)
{
    note(io, 'W');
    return ic_io_truncate(lg(io)->inner, s);
}
static int64_t log_get_size(ic_io *io)
{
    return ic_io_get_size(lg(io)->inner);
}
static const struct ic_io_ops log_ops = {
    .version = IC_IO_OPS_VERSION,
    .close = log_close,
    .pread = log_pread,
    .pwrite = log_pwrite,
    .flush = log_flush,
    .truncate = log_truncate,
    .get_size = log_get_size,
};

/* The logging backend over the file at @path (read-write, no locks). */
static struct logio *log_open(const char *path)
{
    ic_io *inner = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&inner, path, IC_IO_RDWR | IC_IO_NOLOCK, &err), err);
    struct logio *l = ic_io_backend_new(sizeof(*l), &log_ops, path, IC_IO_RDWR);
    assert_non_null(l);
    l->inner = inner;
    return l;
}

/* ---- the parser ------------------------------------------------------ */

static void test_cache_modes__the_parser_takes_qemu_img_names_and_nothing_else(void **state)
{
    (void)state;
    static const struct { const char *name; ic_cache_mode mode; } want[] = {
        { "none", IC_CACHE_NONE },           { "directsync", IC_CACHE_DIRECTSYNC },
        { "writeback", IC_CACHE_WRITEBACK }, { "writethrough", IC_CACHE_WRITETHROUGH },
        { "unsafe", IC_CACHE_UNSAFE },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ic_cache_mode m = IC_CACHE_DEFAULT;
        assert_int_equal(ic_cache_mode_parse(want[i].name, &m), 0);
        assert_int_equal(m, want[i].mode);
        assert_string_equal(ic_cache_mode_name(m), want[i].name);
    }
    ic_cache_mode m = IC_CACHE_NONE;
    assert_int_equal(ic_cache_mode_parse("None", &m), -EINVAL);
    assert_int_equal(ic_cache_mode_parse("", &m), -EINVAL);
    assert_int_equal(ic_cache_mode_parse(NULL, &m), -EINVAL);
    assert_int_equal(m, IC_CACHE_NONE);
}

/* ---- the descriptor flags -------------------------------------------- */

/* The status flags of this process's descriptor open on @path (the last
 * one found), from /proc/self/fdinfo; -1 when none is open. */
static long fd_flags_of(const char *path)
{
    char *real = realpath(path, NULL);
    assert_non_null(real);
    long flags = -1;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        char link[300], target[4096], info[300];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, real))
            continue;
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", de->d_name);
        FILE *f = fopen(info, "r");
        if (!f)
            continue;
        char line[128];
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "flags:", 6))
                flags = strtol(line + 6, NULL, 8);
        fclose(f);
    }
    closedir(d);
    free(real);
    return flags;
}

static void test_cache_modes__every_mode_reaches_the_file_descriptor(void **state)
{
    (void)state;
    const char *dir = cf_dir; /* skipped below where it has no O_DIRECT */
    char *path = tu_path(dir, "a.qcow2");
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.size = 1 << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
    int probe = open(path, O_RDONLY | O_DIRECT);
    if (probe < 0) {
        free(path);
        skip(); /* no O_DIRECT on this file system */
    }
    close(probe);
    static const struct { ic_cache_mode mode; unsigned flags; bool direct, dsync; } cases[] = {
        { IC_CACHE_DEFAULT, IC_OPEN_RDWR, false, false },
        { IC_CACHE_DEFAULT, IC_OPEN_RDWR | IC_OPEN_STREAM, true, false },
        { IC_CACHE_WRITEBACK, IC_OPEN_RDWR | IC_OPEN_STREAM, false, false },
        { IC_CACHE_WRITETHROUGH, IC_OPEN_RDWR, false, true },
        { IC_CACHE_NONE, IC_OPEN_RDWR, true, false },
        { IC_CACHE_NONE, 0, true, false },
        { IC_CACHE_DIRECTSYNC, IC_OPEN_RDWR, true, true },
        { IC_CACHE_UNSAFE, IC_OPEN_RDWR | IC_OPEN_STREAM, false, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.flags = cases[i].flags;
        oo.cache = cases[i].mode;
        ic_image *img = NULL;
        TU_ASSERT_OK(ic_image_open(&img, path, &oo, &err), err);
        long fl = fd_flags_of(path);
        assert_true(fl >= 0);
        if (((fl & O_DIRECT) != 0) != cases[i].direct ||
            ((fl & O_DSYNC) == O_DSYNC) != cases[i].dsync)
            fail_msg("case %zu (%s): descriptor flags %lo", i, ic_cache_mode_name(cases[i].mode),
                     fl);
        assert_int_equal(ic_image_close(img), 0);
    }
    free(path);
}

static void test_cache_modes__an_unknown_mode_or_options_version_is_refused(void **state)
{
    (void)state;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.cache = (ic_cache_mode)99;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_image_open(&img, "/nonexistent.qcow2", &oo, &err), err, EINVAL,
                  "unknown cache mode");
    oo = (ic_open_options)IC_OPEN_OPTIONS_INIT;
    oo.version = 3;
    TU_ASSERT_ERR(ic_image_open(&img, "/nonexistent.qcow2", &oo, &err), err, EINVAL,
                  "unknown open options version");
    assert_null(img);
}

/* ---- unsafe: only the final flush is skipped ------------------------- */

static void test_cache_modes__a_deferred_flush_runs_before_the_next_write_only(void **state)
{
    (void)state;
    const char *dir = cf_dir;
    char *path = tu_path(dir, "f");
    assert_int_equal(tu_write_file(path, "x", 1), 0);
    struct logio *l = log_open(path);
    ic_io *io = &l->base;
    ic_io_defer_flush(io, true);
    assert_int_equal(ic_io_flush(io), 0);
    assert_int_equal(ic_io_flush(io), 0);
    assert_int_equal(l->n, 0); /* nothing ran yet */
    assert_int_equal(ic_io_pwrite(io, "a", 1, 0), 0);
    assert_int_equal(ic_io_flush(io), 0);
    assert_int_equal(ic_io_truncate(io, 4096), 0);
    assert_int_equal(ic_io_flush(io), 0);
    l->log[l->n] = '\0';
    /* one flush before each write that followed a request; the trailing
     * request never runs */
    assert_string_equal(l->log, "FWFW");
    assert_int_equal(ic_io_flush_pending(io), 0);
    l->log[l->n] = '\0';
    assert_string_equal(l->log, "FWFWF");
    ic_io_close(io);
    free(path);
}

static void test_cache_modes__a_dropped_flush_never_runs_not_even_a_pending_one(void **state)
{
    (void)state;
    char *path = tu_path(cf_dir, "f");
    assert_int_equal(tu_write_file(path, "x", 1), 0);
    struct logio *l = log_open(path);
    ic_io *io = &l->base;
    ic_io_defer_flush(io, true);
    assert_int_equal(ic_io_flush(io), 0); /* pending, then dropped below */
    ic_io_drop_flushes(io);
    assert_int_equal(ic_io_pwrite(io, "a", 1, 0), 0);
    assert_int_equal(ic_io_flush(io), 0);
    assert_int_equal(ic_io_pwrite(io, "b", 1, 1), 0);
    assert_int_equal(ic_io_flush_pending(io), 0);
    assert_int_equal(ic_io_flush(io), 0);
    l->log[l->n] = '\0';
    assert_string_equal(l->log, "WW");
    ic_io_close(io);
    free(path);
}

/* Writes 192 KiB into a fresh qcow2 opened on the logging backend with
 * @cache (and ic_image_drop_flushes when @drop), closes it, and returns
 * the log of what reached the file. */
static char *qcow2_close_log_drop(const char *dir, ic_cache_mode cache, bool drop);
static char *qcow2_close_log(const char *dir, ic_cache_mode cache)
{
    return qcow2_close_log_drop(dir, cache, false);
}

static char *qcow2_close_log_drop(const char *dir, ic_cache_mode cache, bool drop)
{
    char *path = tu_path(dir, cache == IC_CACHE_UNSAFE ? "u.qcow2" : "w.qcow2");
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.size = 8 << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(path, &co, &err), err);
    struct logio *l = log_open(path);
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = "qcow2";
    oo.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING;
    oo.cache = cache;
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open_io(&img, &l->base, &oo, &err), err);
    if (drop)
        ic_image_drop_flushes(img);
    uint8_t buf[65536];
    memset(buf, 0x5a, sizeof(buf));
    for (int i = 0; i < 3; i++)
        TU_ASSERT_OK(ic_image_pwrite(img, buf, sizeof(buf), (uint64_t)i << 20, &err), err);
    /* the close path (ic_image_close runs the same final flush); the log
     * is copied before close frees the backend */
    TU_ASSERT_OK(ic_image_flush_final(img, &err), err);
    l->log[l->n] = '\0';
    char *log = strdup(l->log);
    assert_int_equal(ic_image_close(img), 0);
    if (tu_have_prog("qemu-img"))
        assert_int_equal(tu_sh("qemu-img check -q '%s'", path), 0);
    free(path);
    return log;
}

static void test_cache_modes__unsafe_skips_only_the_trailing_flush_of_a_qcow2(void **state)
{
    (void)state;
    const char *dir = cf_dir;
    char *wb = qcow2_close_log(dir, IC_CACHE_WRITEBACK);
    char *un = qcow2_close_log(dir, IC_CACHE_UNSAFE);
    size_t lw = strlen(wb), lu = strlen(un);
    /* the same writes, in the same order, with the same flushes between
     * them; writeback ends with the flushes unsafe leaves out */
    assert_true(lw > lu);
    assert_memory_equal(wb, un, lu);
    for (size_t i = lu; i < lw; i++)
        assert_int_equal(wb[i], 'F');
    assert_int_equal(un[lu - 1], 'W');
    /* the ordering flushes are still there */
    assert_non_null(strchr(un, 'F'));
    free(wb);
    free(un);
}

static void test_cache_modes__a_created_unsafe_target_drops_every_flush_and_writeback_keeps_them(
    void **state)
{
    (void)state;
    char *un = qcow2_close_log_drop(cf_dir, IC_CACHE_UNSAFE, true);
    char *wb = qcow2_close_log_drop(cf_dir, IC_CACHE_WRITEBACK, true);
    char *ref = qcow2_close_log(cf_dir, IC_CACHE_WRITEBACK);
    /* unsafe: the writes only, and the image is still correct (checked
     * with qemu-img in qcow2_close_log_drop) */
    assert_non_null(strchr(un, 'W'));
    assert_null(strchr(un, 'F'));
    /* any other mode ignores the request */
    assert_string_equal(wb, ref);
    assert_non_null(strchr(wb, 'F'));
    free(un);
    free(wb);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_modes__the_parser_takes_qemu_img_names_and_nothing_else),
        cmocka_unit_test_setup_teardown(
            test_cache_modes__every_mode_reaches_the_file_descriptor,
            cf_setup, cf_teardown),
        cmocka_unit_test(test_cache_modes__an_unknown_mode_or_options_version_is_refused),
        cmocka_unit_test_setup_teardown(
            test_cache_modes__a_deferred_flush_runs_before_the_next_write_only,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_modes__unsafe_skips_only_the_trailing_flush_of_a_qcow2,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_modes__a_dropped_flush_never_runs_not_even_a_pending_one,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_modes__a_created_unsafe_target_drops_every_flush_and_writeback_keeps_them,
            cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
