/*
 * test-chain-layers.c - backing chains of mixed formats against a flat
 * reference model (blkverify / nbdkit test-layers style).
 *
 * Every write to any layer is applied to a model buffer in layer order; a
 * read of the top image must equal the model byte for byte.  Also: loops,
 * depth limit, missing backing files, short backing files, relative names,
 * and the rule that a backing file recorded as raw is never probed.
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

#include "imgchain/image.h"
#include "chain-fixture.h"

#define DISK (4u << 20)

/* Writes pseudo-random runs into @name and the same bytes into @model. */
static void scribble(const char *name, uint8_t *model, unsigned seed, int n)
{
    ic_image *img = cf_open(name, IC_OPEN_RDWR);
    srand(seed);
    uint8_t *buf = malloc(300000);
    assert_non_null(buf);
    uint64_t size = ic_image_size(img);
    for (int k = 0; k < n; k++) {
        uint64_t off = (uint64_t)rand() % size;
        size_t len = 1 + (size_t)rand() % 200000;
        if (off + len > size)
            len = (size_t)(size - off);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(rand() & 0xff);
        ic_error *err = NULL;
        int ret = ic_image_pwrite(img, buf, len, off, &err);
        if (ret < 0)
            fail_msg("write %s: %s", name, ic_error_message(err));
        memcpy(model + off, buf, len);
    }
    free(buf);
    ic_error *err = NULL;
    assert_int_equal(ic_image_flush(img, &err), 0);
    assert_int_equal(ic_image_close(img), 0);
}

/* Asserts that @name is DISK bytes long and reads as @model. */
static void assert_reads_model(const char *name, const uint8_t *model)
{
    uint64_t size = 0;
    uint8_t *buf = cf_view(name, &size);
    assert_int_equal(size, DISK);
    for (size_t i = 0; i < DISK; i++)
        if (buf[i] != model[i])
            fail_msg("%s differs from the model at byte %zu: %u != %u", name, i, buf[i], model[i]);
    free(buf);
}

static void test_chain__mixed_raw_qcow2_qed_layers_read_as_the_model(void **state)
{
    (void)state;
    uint8_t *model = calloc(1, DISK);
    assert_non_null(model);
    cf_create("base.raw", "raw", DISK, NULL, NULL, NULL);
    scribble("base.raw", model, 1, 20);
    cf_create("mid.qcow2", "qcow2", 0, "base.raw", "raw", "cluster_size=4096");
    scribble("mid.qcow2", model, 2, 20);
    cf_create("upper.qed", "qed", 0, "mid.qcow2", "qcow2", NULL);
    scribble("upper.qed", model, 3, 20);
    cf_create("top.qcow2", "qcow2", 0, "upper.qed", "qed", "compat=0.10");
    scribble("top.qcow2", model, 4, 20);
    assert_reads_model("top.qcow2", model);
    free(model);
}

static void test_chain__backing_file_shorter_than_overlay_reads_zeroes_past_its_end(void **state)
{
    (void)state;
    uint8_t *model = calloc(1, DISK);
    assert_non_null(model);
    cf_create("short.raw", "raw", DISK / 4, NULL, NULL, NULL);
    ic_image *b = cf_open("short.raw", IC_OPEN_RDWR);
    uint8_t *buf = malloc(DISK / 4);
    assert_non_null(buf);
    memset(buf, 0x5a, DISK / 4);
    ic_error *err = NULL;
    assert_int_equal(ic_image_pwrite(b, buf, DISK / 4, 0, &err), 0);
    ic_image_close(b);
    memset(model, 0x5a, DISK / 4);
    cf_create("long.qcow2", "qcow2", DISK, "short.raw", "raw", NULL);
    assert_reads_model("long.qcow2", model);
    /* writes straddling the backing file's end copy zeroes, not garbage */
    scribble("long.qcow2", model, 9, 5);
    assert_reads_model("long.qcow2", model);
    free(buf);
    free(model);
}

static void test_chain__backing_loop_is_refused_with_a_clear_error(void **state)
{
    (void)state;
    cf_create("loop-a.qcow2", "qcow2", DISK, NULL, NULL, NULL);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = DISK;
    co.size_set = true;
    co.backing_file = "loop-a.qcow2";
    co.backing_format = "qcow2";
    ic_error *err = NULL;
    assert_int_equal(ic_image_create(cf_path("loop-b.qcow2"), &co, &err), 0);
    /* make a point back at b without opening the chain (-u) */
    co.backing_file = "loop-b.qcow2";
    co.no_backing_open = true;
    assert_int_equal(ic_image_create(cf_path("loop-a.qcow2"), &co, &err), 0);
    ic_image *img = NULL;
    int ret = ic_image_open(&img, cf_path("loop-a.qcow2"), NULL, &err);
    assert_int_equal(ret, -ELOOP);
    assert_null(img);
    assert_non_null(strstr(ic_error_message(err), "infinite loop"));
    ic_error_free(err);
}

static void test_chain__chain_deeper_than_the_limit_is_refused(void **state)
{
    (void)state;
    cf_create("d0.qcow2", "qcow2", 1 << 20, NULL, NULL, NULL);
    char name[32], prev[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(name, sizeof(name), "d%d.qcow2", i);
        snprintf(prev, sizeof(prev), "d%d.qcow2", i - 1);
        cf_create(name, "qcow2", 0, prev, "qcow2", NULL);
    }
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.max_depth = 3;
    ic_image *img = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&img, cf_path("d5.qcow2"), &o, &err), -ELOOP);
    assert_non_null(strstr(ic_error_message(err), "deeper than the limit"));
    ic_error_free(err);
    err = NULL;
    o.max_depth = 5;
    assert_int_equal(ic_image_open(&img, cf_path("d5.qcow2"), &o, &err), 0);
    ic_image_close(img);
}

static void test_chain__missing_backing_file_is_named_in_the_error(void **state)
{
    (void)state;
    cf_create("gone.raw", "raw", DISK, NULL, NULL, NULL);
    cf_create("orphan.qcow2", "qcow2", 0, "gone.raw", "raw", NULL);
    assert_int_equal(unlink(cf_path("gone.raw")), 0);
    ic_image *img = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&img, cf_path("orphan.qcow2"), NULL, &err), -ENOENT);
    assert_non_null(strstr(ic_error_message(err), "could not open backing file"));
    assert_non_null(strstr(ic_error_message(err), "gone.raw"));
    ic_error_free(err);
    /* without the chain the overlay still opens (qemu-img info does this) */
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_BACKING;
    err = NULL;
    assert_int_equal(ic_image_open(&img, cf_path("orphan.qcow2"), &o, &err), 0);
    assert_string_equal(ic_image_backing_name(img), "gone.raw");
    ic_image_close(img);
}
static void test_chain__raw_backing_file_holding_a_qcow2_header_is_not_probed(void **state)
{
    (void)state;
    /* A guest wrote a qcow2 header into its raw disk: reading through the
     * overlay must show those bytes, never interpret them. */
    cf_create("inner.qcow2", "qcow2", 1 << 20, NULL, NULL, NULL);
    cf_create("guest.raw", "raw", DISK, NULL, NULL, NULL);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = "raw";
    ic_image *inner = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&inner, cf_path("inner.qcow2"), &o, &err), 0);
    uint8_t hdr[65536];
    assert_int_equal(ic_image_pread(inner, hdr, sizeof(hdr), 0, &err), 0);
    ic_image_close(inner);
    assert_int_equal(memcmp(hdr, "QFI\xfb", 4), 0);
    /* (opened as raw by name: a probed raw image refuses this write) */
    o.flags = IC_OPEN_RDWR;
    ic_image *guest = NULL;
    assert_int_equal(ic_image_open(&guest, cf_path("guest.raw"), &o, &err), 0);
    assert_int_equal(ic_image_pwrite(guest, hdr, sizeof(hdr), 0, &err), 0);
    ic_image_close(guest);
    cf_create("over.qcow2", "qcow2", 0, "guest.raw", "raw", NULL);
    ic_image *top = cf_open("over.qcow2", 0);
    assert_string_equal(ic_image_format(ic_image_backing(top)), "raw");
    assert_int_equal(ic_image_size(top), DISK);
    uint8_t back[65536];
    assert_int_equal(ic_image_pread(top, back, sizeof(back), 0, &err), 0);
    assert_memory_equal(back, hdr, sizeof(hdr));
    ic_image_close(top);
}

static void test_chain__relative_backing_names_resolve_against_the_overlay_directory(void **state)
{
    (void)state;
    uint8_t *model = calloc(1, DISK);
    assert_non_null(model);
    cf_create("rel-base.qcow2", "qcow2", DISK, NULL, NULL, NULL);
    scribble("rel-base.qcow2", model, 11, 5);
    cf_create("rel-top.qcow2", "qcow2", 0, "rel-base.qcow2", "qcow2", NULL);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* From the parent of cf_dir, the overlay is "ic-test.XXXXXX/rel-top.qcow2":
     * its backing name must resolve next to it, not in the working directory. */
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", cf_dir);
    char *slash = strrchr(parent, '/');
    assert_non_null(slash);
    *slash = '\0';
    const char *rel = slash + 1;
    assert_int_equal(chdir(parent[0] ? parent : "/"), 0);
    char top_rel[256], base_rel[256];
    snprintf(top_rel, sizeof(top_rel), "%s/rel-top.qcow2", rel);
    snprintf(base_rel, sizeof(base_rel), "%s/rel-base.qcow2", rel);
    ic_image *top = NULL;
    ic_error *err = NULL;
    if (ic_image_open(&top, top_rel, NULL, &err) < 0)
        fail_msg("open %s: %s", top_rel, ic_error_message(err));
    assert_string_equal(ic_image_backing_name(top), "rel-base.qcow2");
    assert_string_equal(ic_image_backing_path(top), base_rel);
    uint8_t *buf = malloc(DISK);
    assert_non_null(buf);
    assert_int_equal(ic_image_pread(top, buf, DISK, 0, &err), 0);
    assert_memory_equal(buf, model, DISK);
    free(buf);
    ic_image_close(top);
    assert_int_equal(chdir(cwd), 0);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain__mixed_raw_qcow2_qed_layers_read_as_the_model),
        cmocka_unit_test(test_chain__backing_file_shorter_than_overlay_reads_zeroes_past_its_end),
        cmocka_unit_test(test_chain__backing_loop_is_refused_with_a_clear_error),
        cmocka_unit_test(test_chain__chain_deeper_than_the_limit_is_refused),
        cmocka_unit_test(test_chain__missing_backing_file_is_named_in_the_error),
        cmocka_unit_test(test_chain__raw_backing_file_holding_a_qcow2_header_is_not_probed),
        cmocka_unit_test(test_chain__relative_backing_names_resolve_against_the_overlay_directory),
    };
    return cmocka_run_group_tests(tests, cf_setup, cf_teardown);
}
