/*
 * test-image.c - the generic image layer: dispatch, range checks, error
 * reporting and block status, on the raw driver over memory and files.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/image.h"
#include "io/io-mem.h"
#include "util/error.h"

static ic_image *open_raw_mem(uint64_t size, unsigned flags)
{
    ic_io *io = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_io_open_mem(&io, "mem.raw", &err), 0);
    assert_int_equal(ic_io_truncate(io, size), 0);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = "raw";
    o.flags = flags;
    ic_image *img = NULL;
    assert_int_equal(ic_image_open_io(&img, io, &o, &err), 0);
    assert_null(err);
    return img;
}

static void test_image__raw_reads_back_what_was_written(void **state)
{
    (void)state;
    ic_image *img = open_raw_mem(1 << 20, IC_OPEN_RDWR);
    uint8_t w[3000], r[3000];
    for (size_t i = 0; i < sizeof(w); i++)
        w[i] = (uint8_t)(i * 7);
    ic_error *err = NULL;
    assert_int_equal(ic_image_pwrite(img, w, sizeof(w), 12345, &err), 0);
    assert_int_equal(ic_image_pread(img, r, sizeof(r), 12345, &err), 0);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(ic_image_size(img), 1 << 20);
    assert_string_equal(ic_image_format(img), "raw");
    assert_int_equal(ic_image_close(img), 0);
}

static void test_image__refuses_reads_beyond_the_virtual_size_with_a_clear_error(void **state)
{
    (void)state;
    ic_image *img = open_raw_mem(4096, 0);
    uint8_t buf[512];
    ic_error *err = NULL;
    int ret = ic_image_pread(img, buf, sizeof(buf), 4000, &err);
    assert_int_equal(ret, -EINVAL);
    assert_non_null(err);
    assert_int_equal(ic_error_errno(err), EINVAL);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    assert_non_null(strstr(ic_error_message(err), "mem.raw: range 4000+512 is beyond the virtual size 4096"));
    ic_error_free(err);
    ic_image_close(img);
}

static void test_image__refuses_writes_to_a_read_only_image(void **state)
{
    (void)state;
    ic_image *img = open_raw_mem(4096, 0);
    uint8_t buf[512] = { 1 };
    ic_error *err = NULL;
    int ret = ic_image_pwrite(img, buf, sizeof(buf), 0, &err);
    assert_int_equal(ret, -EROFS);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_non_null(strstr(ic_error_message(err), "read-only"));
    ic_error_free(err);
    ic_image_close(img);
}

static void test_image__zero_write_makes_range_read_as_zeroes(void **state)
{
    (void)state;
    ic_image *img = open_raw_mem(65536, IC_OPEN_RDWR);
    uint8_t buf[8192];
    memset(buf, 0xab, sizeof(buf));
    ic_error *err = NULL;
    assert_int_equal(ic_image_pwrite(img, buf, sizeof(buf), 0, &err), 0);
    assert_int_equal(ic_image_pwrite_zeroes(img, 1000, 5000, IC_ZERO_MAY_UNMAP, &err), 0);
    assert_int_equal(ic_image_pread(img, buf, sizeof(buf), 0, &err), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], (i >= 1000 && i < 6000) ? 0 : 0xab);
    ic_image_close(img);
}

static void test_image__block_status_of_raw_is_allocated_at_depth_zero(void **state)
{
    (void)state;
    ic_image *img = open_raw_mem(1 << 20, 0);
    ic_block_status bs;
    ic_error *err = NULL;
    assert_int_equal(ic_image_block_status(img, NULL, 4096, 1 << 16, &bs, &err), 0);
    assert_int_equal(bs.offset, 4096);
    assert_int_equal(bs.length, 1 << 16);
    assert_int_equal(bs.depth, 0);
    assert_true(bs.flags & IC_BS_ALLOCATED);
    assert_true(bs.flags & IC_BS_OFFSET_VALID);
    assert_int_equal(bs.host_offset, 4096);
    ic_image_close(img);
}

static void test_image__open_of_a_missing_file_names_the_file(void **state)
{
    (void)state;
    ic_image *img = NULL;
    ic_error *err = NULL;
    int ret = ic_image_open(&img, "/nonexistent/dir/x.qcow2", NULL, &err);
    assert_int_equal(ret, -ENOENT);
    assert_null(img);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_NOTFOUND);
    assert_non_null(strstr(ic_error_message(err), "/nonexistent/dir/x.qcow2"));
    ic_error_free(err);
}

static void test_image__create_with_an_unknown_option_leaves_no_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ic-test-image-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "raw";
    co.size = 1 << 20;
    co.size_set = true;
    co.options = "bogus=1";
    ic_error *err = NULL;
    int ret = ic_image_create(path, &co, &err);
    assert_int_equal(ret, -EINVAL);
    assert_non_null(strstr(ic_error_message(err), "invalid option 'bogus' for format 'raw'"));
    assert_int_equal(access(path, F_OK), -1);
    ic_error_free(err);
}

static void test_image__create_without_a_size_is_refused(void **state)
{
    (void)state;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "raw";
    ic_error *err = NULL;
    int ret = ic_image_create("/tmp/ic-never-created.raw", &co, &err);
    assert_int_equal(ret, -EINVAL);
    assert_non_null(strstr(ic_error_message(err), "image size must be specified"));
    assert_int_equal(access("/tmp/ic-never-created.raw", F_OK), -1);
    ic_error_free(err);
}

static void test_image__create_refuses_unknown_formats(void **state)
{
    (void)state;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "vmdk";
    co.size = 4096;
    co.size_set = true;
    ic_error *err = NULL;
    assert_int_equal(ic_image_create("/tmp/ic-never.vmdk", &co, &err), -EINVAL);
    assert_non_null(strstr(ic_error_message(err), "unknown format 'vmdk'"));
    ic_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image__raw_reads_back_what_was_written),
        cmocka_unit_test(test_image__refuses_reads_beyond_the_virtual_size_with_a_clear_error),
        cmocka_unit_test(test_image__refuses_writes_to_a_read_only_image),
        cmocka_unit_test(test_image__zero_write_makes_range_read_as_zeroes),
        cmocka_unit_test(test_image__block_status_of_raw_is_allocated_at_depth_zero),
        cmocka_unit_test(test_image__open_of_a_missing_file_names_the_file),
        cmocka_unit_test(test_image__create_with_an_unknown_option_leaves_no_file),
        cmocka_unit_test(test_image__create_without_a_size_is_refused),
        cmocka_unit_test(test_image__create_refuses_unknown_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
