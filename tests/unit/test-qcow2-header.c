/*
 * test-qcow2-header.c - header parse/serialize, the layout of new images
 * (byte-identical to qemu-img's), header extensions kept across rewrites,
 * feature bits (autoclear cleared on read-write opens, unknown compatible
 * bits kept), info fields in qemu-img's order, dirty repair of an image
 * qemu-io left dirty.
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
#include "qcow2/qcow2.h"
#include "util/endian.h"

/* Images live in the chain fixture's temp directory (cf_dir) and are
 * named relative to it. */

/* Opens image @name with @flags, never its backing file: the tests name
 * backing files that do not exist. */
static ic_image *open_img(const char *name, unsigned flags)
{
    return cf_open(name, flags | IC_OPEN_NO_BACKING);
}

static void test_qcow2_header__parse_and_serialize_round_trip(void **state)
{
    (void)state;
    struct qcow2_header h = {
        .version = 3, .backing_file_offset = 0x210, .backing_file_size = 10,
        .cluster_bits = 16, .size = 1ull << 40, .l1_size = 2048, .l1_table_offset = 0x30000,
        .refcount_table_offset = 0x10000, .refcount_table_clusters = 1, .nb_snapshots = 3,
        .snapshots_offset = 0x90000, .incompatible_features = 0x18,
        .compatible_features = 1, .autoclear_features = 2, .refcount_order = 5,
        .header_length = 112, .compression_type = 1,
    };
    uint8_t b[112], b2[112];
    qcow2_header_serialize(&h, b);
    assert_int_equal(ic_load_be32(b), QCOW2_MAGIC);
    struct qcow2_header p;
    qcow2_header_parse(&p, b, sizeof(b));
    qcow2_header_serialize(&p, b2);
    assert_memory_equal(b, b2, sizeof(b));
    assert_int_equal(p.compression_type, 1);
    assert_int_equal(p.refcount_order, 5);
    /* v2: 72 bytes, refcount order implied */
    h.version = 2;
    qcow2_header_serialize(&h, b);
    qcow2_header_parse(&p, b, 72);
    assert_int_equal(p.refcount_order, 4);
    assert_int_equal(p.header_length, 72);
    assert_int_equal(p.incompatible_features, 0);
}

static void same_as_qemu(const char *name, const char *opts, uint64_t size, const char *qopts)
{
    if (!tu_have_prog("qemu-img"))
        return;
    char q[64];
    snprintf(q, sizeof(q), "q-%s", name);
    cf_create(name, "qcow2", size, NULL, NULL, opts);
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 %s%s '%s' %llu", qopts ? "-o " : "",
                           qopts ? qopts : "", cf_path(q), (unsigned long long)size), 0);
    assert_int_equal(tu_sh("cmp '%s' '%s'", cf_path(name), cf_path(q)), 0);
}

static void test_qcow2_header__new_images_are_byte_identical_to_qemu_img(void **state)
{
    (void)state;
    same_as_qemu("d.qcow2", NULL, 1ull << 30, NULL);
    same_as_qemu("v2.qcow2", "compat=0.10,cluster_size=4096", 64u << 20,
                 "compat=0.10,cluster_size=4096");
    same_as_qemu("x.qcow2", "extended_l2=on,refcount_bits=8,compression_type=zstd", 100u << 20,
                 "extended_l2=on,refcount_bits=8,compression_type=zstd");
    same_as_qemu("s.qcow2", "cluster_size=512", 5u << 20, "cluster_size=512");
}

static void test_qcow2_header__unknown_extensions_survive_a_rewrite(void **state)
{
    (void)state;
    /* base.raw does not exist: created without opening it */
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = 8u << 20;
    co.size_set = true;
    co.backing_file = "base.raw";
    co.backing_format = "raw";
    co.no_backing_open = true;
    cf_create_co("ext.qcow2", &co);
    ic_image *img = open_img("ext.qcow2", IC_OPEN_RDWR);
    struct qcow2_state *s = qcow2_state(img);
    s->unknown_exts = calloc(1, sizeof(*s->unknown_exts));
    s->unknown_exts[0].magic = 0x12345678;
    s->unknown_exts[0].len = 5;
    s->unknown_exts[0].data = (uint8_t *)strdup("hello");
    s->nb_unknown_exts = 1;
    assert_int_equal(qcow2_update_header(img), 0);
    ic_image_close(img);
    /* rewritten by a backing change: still there, in order, with the name */
    img = open_img("ext.qcow2", IC_OPEN_RDWR);
    s = qcow2_state(img);
    assert_int_equal(s->nb_unknown_exts, 1);
    assert_memory_equal(s->unknown_exts[0].data, "hello", 5);
    assert_string_equal(ic_image_backing_name(img), "base.raw");
    assert_string_equal(ic_image_backing_format(img), "raw");
    ic_image_close(img);
    if (tu_have_prog("qemu-img"))
        assert_int_equal(tu_sh("qemu-img info -U '%s' >/dev/null", cf_path("ext.qcow2")), 0);
}

static void test_qcow2_header__unknown_autoclear_bits_are_cleared_on_read_write_open(void **state)
{
    (void)state;
    cf_create("ac.qcow2", "qcow2", 8u << 20, NULL, NULL, NULL);
    uint8_t *b;
    size_t len;
    assert_int_equal(tu_read_file(cf_path("ac.qcow2"), &b, &len), 0);
    ic_store_be64(b + QCOW2_HDR_AUTOCLEAR, 0x8000000000000001ull); /* bitmaps + unknown */
    ic_store_be64(b + QCOW2_HDR_COMPAT, 0x4000000000000000ull);    /* unknown compatible */
    assert_int_equal(tu_write_file(cf_path("ac.qcow2"), b, len), 0);
    ic_image *img = open_img("ac.qcow2", 0);
    ic_image_close(img);
    free(b);
    assert_int_equal(tu_read_file(cf_path("ac.qcow2"), &b, &len), 0);
    assert_int_equal(ic_load_be64(b + QCOW2_HDR_AUTOCLEAR), 0x8000000000000001ull);
    free(b);
    img = open_img("ac.qcow2", IC_OPEN_RDWR);
    ic_image_close(img);
    assert_int_equal(tu_read_file(cf_path("ac.qcow2"), &b, &len), 0);
    assert_int_equal(ic_load_be64(b + QCOW2_HDR_AUTOCLEAR), 0);
    assert_int_equal(ic_load_be64(b + QCOW2_HDR_COMPAT), 0x4000000000000000ull);
    free(b);
}

static void test_qcow2_header__info_lists_fields_in_qemu_order(void **state)
{
    (void)state;
    static const char *const v3[] = { "compat", "compression-type", "lazy-refcounts",
                                      "refcount-bits", "corrupt", "extended-l2" };
    static const char *const v2[] = { "compat", "compression-type", "refcount-bits" };
    cf_create("i3.qcow2", "qcow2", 8u << 20, NULL, NULL, "lazy_refcounts=on");
    ic_image *img = open_img("i3.qcow2", 0);
    ic_image_info *info = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_get_info(img, &info, &err), err);
    assert_int_equal(info->nb_specific, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(info->specific[i].key, v3[i]);
    assert_string_equal(info->specific[0].s, "1.1");
    assert_true(info->specific[2].b);
    assert_int_equal(info->specific[3].i, 16);
    assert_int_equal(info->cluster_size, 65536);
    ic_image_info_free(info);
    ic_image_close(img);
    cf_create("i2.qcow2", "qcow2", 8u << 20, NULL, NULL, "compat=0.10");
    img = open_img("i2.qcow2", 0);
    TU_ASSERT_OK(ic_image_get_info(img, &info, &err), err);
    assert_int_equal(info->nb_specific, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(info->specific[i].key, v2[i]);
    assert_string_equal(info->specific[0].s, "0.10");
    ic_image_info_free(info);
    ic_image_close(img);
}

static void test_qcow2_header__snapshots_made_by_qemu_are_listed(void **state)
{
    (void)state;
    if (!tu_have_prog("qemu-img"))
        return;
    const char *path = cf_path("sn.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 '%s' 4M && qemu-img snapshot -c first '%s'"
                           " && qemu-img snapshot -c second '%s'", path, path, path), 0);
    ic_image *img = open_img("sn.qcow2", 0);
    ic_image_info *info = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_get_info(img, &info, &err), err);
    assert_int_equal(info->nb_snapshots, 2);
    assert_string_equal(info->snapshots[0].id, "1");
    assert_string_equal(info->snapshots[1].name, "second");
    assert_int_equal(info->snapshots[1].disk_size, 4u << 20);
    assert_int_equal(info->snapshots[1].icount, 0);
    ic_image_info_free(info);
    ic_image_close(img);
}

static void test_qcow2_header__image_qemu_left_dirty_is_repaired_on_read_write_open(void **state)
{
    (void)state;
    if (!tu_have_prog("qemu-io"))
        return;
    const char *path = cf_path("dirty.qcow2");
    assert_int_equal(tu_sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on '%s' 8M && "
                           "qemu-io -c 'write -P 0x12 0 1M' -c 'write -P 0x13 3M 64k' "
                           "-c 'sigraise 9' '%s' >/dev/null 2>&1; true", path, path), 0);
    ic_image *img = open_img("dirty.qcow2", 0);
    ic_image_info *info = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_get_info(img, &info, &err), err);
    assert_true(info->dirty);
    ic_image_info_free(info);
    ic_image_close(img);
    img = open_img("dirty.qcow2", IC_OPEN_RDWR);
    uint8_t buf[4096];
    TU_ASSERT_OK(ic_image_pread(img, buf, sizeof(buf), 3u << 20, &err), err);
    assert_int_equal(buf[4095], 0x13);
    assert_int_equal(ic_image_close(img), 0);
    assert_int_equal(tu_sh("qemu-img check -q '%s'", cf_path("dirty.qcow2")), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qcow2_header__parse_and_serialize_round_trip),
        cmocka_unit_test(test_qcow2_header__new_images_are_byte_identical_to_qemu_img),
        cmocka_unit_test(test_qcow2_header__unknown_extensions_survive_a_rewrite),
        cmocka_unit_test(test_qcow2_header__unknown_autoclear_bits_are_cleared_on_read_write_open),
        cmocka_unit_test(test_qcow2_header__info_lists_fields_in_qemu_order),
        cmocka_unit_test(test_qcow2_header__snapshots_made_by_qemu_are_listed),
        cmocka_unit_test(test_qcow2_header__image_qemu_left_dirty_is_repaired_on_read_write_open),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
