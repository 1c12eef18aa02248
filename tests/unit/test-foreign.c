/*
 * test-foreign.c - src/image/foreign.c and ic_probe_format(): the formats
 * imgchain does not implement are recognised with qemu 7.2's probe rules
 * (edge cases the CLI oracle test does not reach), and the raw driver's
 * first-sector guard for probed images.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "image/image.h"

static const char *probe(const void *data, size_t len, const char *name)
{
    uint8_t buf[IC_PROBE_SECTOR];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, data, len);
    const struct ic_driver *drv = NULL;
    const char *fmt = ic_probe_format(buf, sizeof(buf), name, &drv);
    assert_non_null(fmt);
    if (drv)
        assert_string_equal(drv->name, fmt);
    return fmt;
}

static void test_foreign__vmdk_descriptors_probe_as_qemu_reads_them(void **state)
{
    (void)state;
    assert_string_equal(probe("KDMV", 4, NULL), "vmdk");
    assert_string_equal(probe("COWD", 4, NULL), "vmdk");
    const char *d1 = "# Disk DescriptorFile\nversion=1\nCID=1\n";
    assert_string_equal(probe(d1, strlen(d1), NULL), "vmdk");
    const char *d2 = "# c1\r\n# c2\n   \r\n  \nversion=3\r\n";
    assert_string_equal(probe(d2, strlen(d2), NULL), "vmdk");
    /* text before the version line, or another version, is not vmdk */
    const char *n1 = "# Disk DescriptorFile\nCID=1\nversion=1\n";
    assert_string_equal(probe(n1, strlen(n1), NULL), "raw");
    const char *n2 = "# x\nversion=4\n";
    assert_string_equal(probe(n2, strlen(n2), NULL), "raw");
    const char *n3 = "  x\nversion=1\n";
    assert_string_equal(probe(n3, strlen(n3), NULL), "raw");
}

static void test_foreign__each_magic_names_its_format(void **state)
{
    (void)state;
    uint8_t b[IC_PROBE_SECTOR];

    memset(b, 0, sizeof(b));
    memcpy(b + 64, "\x7f\x10\xda\xbe", 4);
    assert_string_equal(probe(b, sizeof(b), NULL), "vdi");

    assert_string_equal(probe("vhdxfile", 8, NULL), "vhdx");
    assert_string_equal(probe("conectix", 8, NULL), "vpc");

    assert_string_equal(probe("LUKS\xba\xbe\0\1", 8, NULL), "luks");
    assert_string_equal(probe("LUKS\xba\xbe\0\2", 8, NULL), "raw");

    memset(b, 0, sizeof(b));
    memcpy(b, "WithouFreSpacExt\2", 17);
    assert_string_equal(probe(b, 64, NULL), "parallels");
    b[16] = 3;
    assert_string_equal(probe(b, 64, NULL), "raw");

    memset(b, 0, sizeof(b));
    memcpy(b, "Bochs Virtual HD Image", 23);
    memcpy(b + 32, "Redolog", 8);
    memcpy(b + 48, "Growing", 8);
    memcpy(b + 64, "\0\0\1\0", 4);
    assert_string_equal(probe(b, sizeof(b), NULL), "bochs");
    b[54] = 'X'; /* "GrowingX": no longer the NUL-terminated string */
    assert_string_equal(probe(b, sizeof(b), NULL), "raw");

    const char *cl = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$IMAGE offset=1048576\n";
    assert_string_equal(probe(cl, strlen(cl), NULL), "cloop");

    assert_string_equal(probe("QFI\xfb\0\0\0\1", 8, NULL), "qcow");
    assert_string_equal(probe("QFI\xfb\0\0\0\3", 8, NULL), "qcow2");
}

static void test_foreign__dmg_is_a_name_that_any_magic_beats(void **state)
{
    (void)state;
    assert_string_equal(probe("hello", 5, "/x/disk.dmg"), "dmg");
    assert_string_equal(probe("hello", 5, ".dmg"), "raw");
    assert_string_equal(probe("hello", 5, "disk.dmgx"), "raw");
    assert_string_equal(probe("hello", 5, NULL), "raw");
    assert_string_equal(probe("QFI\xfb\0\0\0\3", 8, "disk.dmg"), "qcow2");
    assert_string_equal(probe("conectix", 8, "disk.dmg"), "vpc");
}

static void test_foreign__probe_file_refuses_by_name(void **state)
{
    (void)state;
    const char *path = cf_path("x.img");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("vhdxfile", 1, 8, f), 8);
    fclose(f);
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, path, 0, &err), err);
    const struct ic_driver *drv = NULL;
    assert_int_equal(ic_image_probe_file(io, &drv, &err), -ENOTSUP);
    assert_null(drv);
    char want[512];
    snprintf(want, sizeof(want), "%s: vhdx images are not supported", path);
    assert_string_equal(ic_error_message(err), want);
    ic_error_free(err);
    ic_io_close(io);
}

static void test_foreign__probed_raw_refuses_a_first_sector_that_changes_the_probe(void **state)
{
    (void)state;
    const char *path = cf_path("r.img");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static uint8_t zero[4096];
    assert_int_equal(fwrite(zero, 1, sizeof(zero), f), sizeof(zero));
    fclose(f);

    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR;
    ic_image *img = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    assert_string_equal(ic_image_format(img), "raw");
    /* whole sector, partial write at an offset, and a write that starts
     * before the sector's end: each would make the file probe as an image */
    assert_int_equal(ic_image_pwrite(img, "QFI\xfb\0\0\0\3", 8, 0, &err), -EPERM);
    assert_non_null(strstr(ic_error_message(err), "probe as qcow2"));
    ic_error_free(err);
    err = NULL;
    assert_int_equal(ic_image_pwrite(img, "vhdxfile", 8, 0, &err), -EPERM);
    ic_error_free(err);
    err = NULL;
    TU_ASSERT_OK(ic_image_pwrite(img, "conectiy", 8, 0, &err), err);
    assert_int_equal(ic_image_pwrite(img, "x", 1, 7, &err), -EPERM);
    assert_non_null(strstr(ic_error_message(err), "probe as vpc"));
    ic_error_free(err);
    err = NULL;
    /* past the first sector anything goes */
    TU_ASSERT_OK(ic_image_pwrite(img, "vhdxfile", 8, 512, &err), err);
    uint8_t back[8];
    TU_ASSERT_OK(ic_image_pread(img, back, 8, 0, &err), err);
    assert_memory_equal(back, "conectiy", 8);
    assert_int_equal(ic_image_close(img), 0);

    /* the same write with the format named is the user's word */
    o.format = "raw";
    TU_ASSERT_OK(ic_image_open(&img, path, &o, &err), err);
    TU_ASSERT_OK(ic_image_pwrite(img, "vhdxfile", 8, 0, &err), err);
    assert_int_equal(ic_image_close(img), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_foreign__vmdk_descriptors_probe_as_qemu_reads_them),
        cmocka_unit_test(test_foreign__each_magic_names_its_format),
        cmocka_unit_test(test_foreign__dmg_is_a_name_that_any_magic_beats),
        cmocka_unit_test_setup_teardown(
            test_foreign__probe_file_refuses_by_name,
            cf_setup, cf_teardown),
        cmocka_unit_test_setup_teardown(
            test_foreign__probed_raw_refuses_a_first_sector_that_changes_the_probe,
            cf_setup, cf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
