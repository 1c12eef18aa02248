/*
 * chain-fixture.c - temp directory and name-based image helpers for the
 * chain test programs and the qcow2 unit tests (see chain-fixture.h).
 *
 * Design notes:
 *  1. The directory comes from tu_tmpdir() and goes with tu_rmtree(), so it
 *     honours $TMPDIR and nothing outside an ic-test directory is removed.
 *  2. cf_path() hands out paths from a ring of 8 static buffers: a test can
 *     pass several to one call without freeing any, and a pointer kept too
 *     long only sees a newer path, never freed memory.  A path that does
 *     not fit fails the test rather than being cut.
 *  3. Each helper checks both halves of the error rule: a failure names the
 *     image and the message, and a success must not leave an error set.
 *  4. cf_assert_qemu_clean() is the strict oracle (exit 0: leaks fail too),
 *     unlike fmt_qemu_img_check() of the fault loops, which allows leaks.
 *     It runs in cf_dir so relative backing and data file names resolve.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"

char *cf_dir;

#define CF_RING 8
static char ring[CF_RING][PATH_MAX];
static unsigned ring_next;

/* Fails the test unless @ret >= 0 with no error set (design note 3). */
static void cf_check(int64_t ret, ic_error *err, const char *what, const char *name)
{
    if (ret < 0 || err)
        fail_msg("%s %s: %s", what, name, err ? ic_error_message(err) : "no error message");
}

int cf_setup(void **state)
{
    (void)state;
    cf_dir = tu_tmpdir();
    return 0;
}

int cf_teardown(void **state)
{
    (void)state;
    tu_rmtree(cf_dir);
    free(cf_dir);
    cf_dir = NULL;
    return 0;
}

void cf_reset(void)
{
    assert_non_null(cf_dir);
    tu_rmtree(cf_dir);
    if (mkdir(cf_dir, 0700) < 0)
        fail_msg("mkdir %s: %s", cf_dir, strerror(errno));
}

char *cf_path(const char *name)
{
    assert_non_null(cf_dir);
    ring_next = (ring_next + 1) % CF_RING;
    char *p = ring[ring_next];
    int n = snprintf(p, PATH_MAX, "%s/%s", cf_dir, name);
    if (n < 0 || n >= PATH_MAX)
        fail_msg("path %s/%s is too long", cf_dir, name);
    return p;
}

void cf_create_co(const char *name, const ic_create_options *co)
{
    ic_error *err = NULL;
    cf_check(ic_image_create(cf_path(name), co, &err), err, "create", name);
}

void cf_create(const char *name, const char *fmt, uint64_t size, const char *backing,
               const char *bfmt, const char *opts)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = fmt;
    co.size = size;
    co.size_set = size != 0;
    co.backing_file = backing;
    co.backing_format = bfmt;
    co.options = opts;
    cf_create_co(name, &co);
}

ic_image *cf_open(const char *name, unsigned flags)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    ic_image *img = NULL;
    ic_error *err = NULL;
    oo.flags = flags;
    cf_check(ic_image_open(&img, cf_path(name), &oo, &err), err, "open", name);
    return img;
}

/* One write for cf_write_byte/cf_write_pattern: byte + step * (offset >> 16)
 * everywhere, or zeroes when @byte is 0. */
static void write_run(const char *name, uint64_t off, uint64_t len, uint8_t byte, uint8_t step)
{
    ic_image *img = cf_open(name, IC_OPEN_RDWR);
    ic_error *err = NULL;
    int ret;
    if (byte) {
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        for (uint64_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(byte + step * ((off + i) >> 16));
        ret = ic_image_pwrite(img, buf, len, off, &err);
        free(buf);
    } else {
        ret = ic_image_pwrite_zeroes(img, off, len, 0, &err);
    }
    cf_check(ret, err, "write", name);
    assert_int_equal(ic_image_close(img), 0);
}

void cf_write_byte(const char *name, uint64_t off, uint64_t len, uint8_t byte)
{
    write_run(name, off, len, byte, 0);
}

void cf_write_pattern(const char *name, uint64_t off, uint64_t len, uint8_t seed)
{
    write_run(name, off, len, seed, 1);
}

uint8_t *cf_view(const char *name, uint64_t *size)
{
    ic_image *img = cf_open(name, 0);
    ic_error *err = NULL;
    *size = ic_image_size(img);
    uint8_t *buf = malloc(*size ? *size : 1);
    assert_non_null(buf);
    cf_check(ic_image_pread(img, buf, *size, 0, &err), err, "read", name);
    assert_int_equal(ic_image_close(img), 0);
    return buf;
}

void cf_assert_qemu_clean(const char *name)
{
    if (!tu_have_prog("qemu-img"))
        return;
    char *out = NULL;
    int rc = tu_sh_out(&out, "cd '%s' && qemu-img check '%s' 2>&1", cf_dir, cf_path(name));
    if (rc != 0)
        fail_msg("qemu-img check %s: exit %d\n%s", name, rc, out);
    free(out);
}
