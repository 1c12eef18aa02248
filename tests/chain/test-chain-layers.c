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

#define DISK (4u << 20)

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/ic-chain-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path(const char *name)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static void create(const char *name, const char *fmt, uint64_t size, const char *backing,
                   const char *bfmt, const char *opts)
{
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = fmt;
    co.size = size;
    co.size_set = size != 0;
    co.backing_file = backing;
    co.backing_format = bfmt;
    co.options = opts;
    ic_error *err = NULL;
    int ret = ic_image_create(path(name), &co, &err);
    if (ret < 0)
        fail_msg("create %s: %s", name, ic_error_message(err));
}

static ic_image *open_img(const char *name, unsigned flags)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags;
    ic_image *img = NULL;
    ic_error *err = NULL;
    int ret = ic_image_open(&img, path(name), &o, &err);
    if (ret < 0)
        fail_msg("open %s: %s", name, ic_error_message(err));
    return img;
}

/* Writes pseudo-random runs into @name and the same bytes into @model. */
static void scribble(const char *name, uint8_t *model, unsigned seed, int n)
{
    ic_image *img = open_img(name, IC_OPEN_RDWR);
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

static void assert_reads_model(const char *name, const uint8_t *model)
{
    ic_image *img = open_img(name, 0);
    uint8_t *buf = malloc(DISK);
    assert_non_null(buf);
    ic_error *err = NULL;
    int ret = ic_image_pread(img, buf, DISK, 0, &err);
    if (ret < 0)
        fail_msg("read %s: %s", name, ic_error_message(err));
    for (size_t i = 0; i < DISK; i++)
        if (buf[i] != model[i])
            fail_msg("%s differs from the model at byte %zu: %u != %u", name, i, buf[i], model[i]);
    free(buf);
    ic_image_close(img);
}

static void test_chain__mixed_raw_qcow2_qed_layers_read_as_the_model(void **state)
{
    (void)state;
    uint8_t *model = calloc(1, DISK);
    assert_non_null(model);
    create("base.raw", "raw", DISK, NULL, NULL, NULL);
    scribble("base.raw", model, 1, 20);
    create("mid.qcow2", "qcow2", 0, "base.raw", "raw", "cluster_size=4096");
    scribble("mid.qcow2", model, 2, 20);
    create("upper.qed", "qed", 0, "mid.qcow2", "qcow2", NULL);
    scribble("upper.qed", model, 3, 20);
    create("top.qcow2", "qcow2", 0, "upper.qed", "qed", "compat=0.10");
    scribble("top.qcow2", model, 4, 20);
    assert_reads_model("top.qcow2", model);
    free(model);
}

static void test_chain__backing_file_shorter_than_overlay_reads_zeroes_past_its_end(void **state)
{
    (void)state;
    uint8_t *model = calloc(1, DISK);
    assert_non_null(model);
    create("short.raw", "raw", DISK / 4, NULL, NULL, NULL);
    ic_image *b = open_img("short.raw", IC_OPEN_RDWR);
    uint8_t *buf = malloc(DISK / 4);
    assert_non_null(buf);
    memset(buf, 0x5a, DISK / 4);
    ic_error *err = NULL;
    assert_int_equal(ic_image_pwrite(b, buf, DISK / 4, 0, &err), 0);
    ic_image_close(b);
    memset(model, 0x5a, DISK / 4);
    create("long.qcow2", "qcow2", DISK, "short.raw", "raw", NULL);
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
    create("loop-a.qcow2", "qcow2", DISK, NULL, NULL, NULL);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = "qcow2";
    co.size = DISK;
    co.size_set = true;
    co.backing_file = "loop-a.qcow2";
    co.backing_format = "qcow2";
    ic_error *err = NULL;
    assert_int_equal(ic_image_create(path("loop-b.qcow2"), &co, &err), 0);
    /* make a point back at b without opening the chain (-u) */
    co.backing_file = "loop-b.qcow2";
    co.no_backing_open = true;
    assert_int_equal(ic_image_create(path("loop-a.qcow2"), &co, &err), 0);
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path("loop-a.qcow2"), NULL, &err);
    assert_int_equal(ret, -ELOOP);
    assert_null(img);
    assert_non_null(strstr(ic_error_message(err), "infinite loop"));
    ic_error_free(err);
}

static void test_chain__chain_deeper_than_the_limit_is_refused(void **state)
{
    (void)state;
    create("d0.qcow2", "qcow2", 1 << 20, NULL, NULL, NULL);
    char name[32], prev[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(name, sizeof(name), "d%d.qcow2", i);
        snprintf(prev, sizeof(prev), "d%d.qcow2", i - 1);
        create(name, "qcow2", 0, prev, "qcow2", NULL);
    }
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.max_depth = 3;
    ic_image *img = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&img, path("d5.qcow2"), &o, &err), -ELOOP);
    assert_non_null(strstr(ic_error_message(err), "deeper than the limit"));
    ic_error_free(err);
    err = NULL;
    o.max_depth = 5;
    assert_int_equal(ic_image_open(&img, path("d5.qcow2"), &o, &err), 0);
    ic_image_close(img);
}

static void test_chain__missing_backing_file_is_named_in_the_error(void **state)
{
    (void)state;
    create("gone.raw", "raw", DISK, NULL, NULL, NULL);
    create("orphan.qcow2", "qcow2", 0, "gone.raw", "raw", NULL);
    assert_int_equal(unlink(path("gone.raw")), 0);
    ic_image *img = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&img, path("orphan.qcow2"), NULL, &err), -ENOENT);
    assert_non_null(strstr(ic_error_message(err), "could not open backing file"));
    assert_non_null(strstr(ic_error_message(err), "gone.raw"));
    ic_error_free(err);
    /* without the chain the overlay still opens (qemu-img info does this) */
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_NO_BACKING;
    err = NULL;
    assert_int_equal(ic_image_open(&img, path("orphan.qcow2"), &o, &err), 0);
    assert_string_equal(ic_image_backing_name(img), "gone.raw");
    ic_image_close(img);
}
static void test_chain__raw_backing_file_holding_a_qcow2_header_is_not_probed(void **state)
{
    (void)state;
    /* A guest wrote a qcow2 header into its raw disk: reading through the
     * overlay must show those bytes, never interpret them. */
    create("inner.qcow2", "qcow2", 1 << 20, NULL, NULL, NULL);
    create("guest.raw", "raw", DISK, NULL, NULL, NULL);
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = "raw";
    ic_image *inner = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_image_open(&inner, path("inner.qcow2"), &o, &err), 0);
    uint8_t hdr[65536];
    assert_int_equal(ic_image_pread(inner, hdr, sizeof(hdr), 0, &err), 0);
    ic_image_close(inner);
    assert_int_equal(memcmp(hdr, "QFI\xfb", 4), 0);
    ic_image *guest = open_img("guest.raw", IC_OPEN_RDWR);
    assert_int_equal(ic_image_pwrite(guest, hdr, sizeof(hdr), 0, &err), 0);
    ic_image_close(guest);
    create("over.qcow2", "qcow2", 0, "guest.raw", "raw", NULL);
    ic_image *top = open_img("over.qcow2", 0);
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
    create("rel-base.qcow2", "qcow2", DISK, NULL, NULL, NULL);
    scribble("rel-base.qcow2", model, 11, 5);
    create("rel-top.qcow2", "qcow2", 0, "rel-base.qcow2", "qcow2", NULL);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* From /tmp, the overlay is "ic-chain-XXXXXX/rel-top.qcow2": its backing
     * name must resolve next to it, not in the working directory. */
    assert_int_equal(chdir("/tmp"), 0);
    const char *rel = dir + strlen("/tmp/");
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
    return cmocka_run_group_tests(tests, setup, teardown);
}
