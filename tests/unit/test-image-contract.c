/*
 * test-image-contract.c - the defaults src/image/driver.h documents for a
 * missing optional op hold, through the image-layer wrappers that are the
 * only callers of driver ops (make_empty, change_backing, pwrite_batch,
 * discard), on a minimal driver that has only the required ops.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "image/image.h"

#define FAKE_SIZE (1u << 20)

/* What the fake driver saw, in order: 'w' pwrite, 'd' discard. */
struct fake {
    char log[64];
    size_t n;
    uint64_t off[64], len[64];
};

static struct fake *fk(struct ic_image *img)
{
    return img->opaque;
}
static void note(struct ic_image *img, char c, uint64_t off, uint64_t len)
{
    struct fake *f = fk(img);
    if (f->n + 1 < sizeof(f->log)) {
        f->off[f->n] = off;
        f->len[f->n] = len;
        f->log[f->n++] = c;
    }
}
static int fake_open(struct ic_image *img, unsigned flags, ic_error **errp)
{
    (void)flags;
    (void)errp;
    img->size = FAKE_SIZE;
    return 0;
}
static void fake_close(struct ic_image *img)
{
    (void)img;
}
static int fake_pread(struct ic_image *img, void *buf, size_t len, uint64_t off)
{
    (void)img;
    (void)off;
    memset(buf, 0, len);
    return 0;
}
static int fake_pwrite(struct ic_image *img, const void *buf, size_t len, uint64_t off)
{
    (void)buf;
    note(img, 'w', off, len);
    return 0;
}
static int fake_discard(struct ic_image *img, uint64_t off, uint64_t len)
{
    note(img, 'd', off, len);
    return 0;
}
static int fake_block_status(struct ic_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
                             unsigned *flags, uint64_t *map, ic_io **file)
{
    (void)img;
    (void)off;
    (void)map;
    (void)file;
    *pnum = len;
    *flags = IC_BS_DATA | IC_BS_ALLOCATED;
    return 0;
}
static const struct ic_driver fake_driver = {
    .name = "fake",
    .instance_size = sizeof(struct fake),
    .open = fake_open,
    .close = fake_close,
    .pread = fake_pread,
    .pwrite = fake_pwrite,
    .discard = fake_discard,
    .block_status = fake_block_status,
};

static struct ic_image *fake_image(void)
{
    ic_io *mem = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&mem, "fake.img", &err), err);
    struct ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open_layer(&img, mem, "fake.img", &fake_driver, IC_OPEN_RDWR, NULL,
                                     NULL, &err),
                 err);
    return img;
}

static void test_image_contract__without_make_empty_the_whole_disk_is_discarded(void **state)
{
    (void)state;
    struct ic_image *img = fake_image();
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_image_make_empty(img, &err), err);
    struct fake *f = fk(img);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->log[0], 'd');
    assert_int_equal(f->off[0], 0);
    assert_int_equal(f->len[0], FAKE_SIZE);
    assert_int_equal(ic_image_close(img), 0);
}

static void test_image_contract__without_change_backing_the_header_is_left_alone(void **state)
{
    (void)state;
    struct ic_image *img = fake_image();
    ic_error *err = NULL;
    TU_ASSERT_ERR(ic_image_change_backing(img, "base.qcow2", "qcow2", &err), err, ENOTSUP,
                  "does not record a backing file");
    assert_null(img->backing_name);
    assert_int_equal(fk(img)->n, 0);
    assert_int_equal(ic_image_close(img), 0);
}

static void test_image_contract__without_pwrite_batch_writes_go_one_by_one_in_order(void **state)
{
    (void)state;
    struct ic_image *img = fake_image();
    ic_error *err = NULL;
    uint8_t a[512], b[1024];
    struct ic_io_req reqs[2] = {
        { .op = IC_IO_REQ_WRITE, .buf = b, .len = sizeof(b), .off = 8192 },
        { .op = IC_IO_REQ_WRITE, .buf = a, .len = sizeof(a), .off = 0 },
    };
    TU_ASSERT_OK(ic_image_pwrite_batch(img, reqs, 2, &err), err);
    struct fake *f = fk(img);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->off[0], 8192);
    assert_int_equal(f->len[0], 1024);
    assert_int_equal(f->off[1], 0);
    assert_int_equal(f->len[1], 512);
    /* a request past the end is refused before anything is written */
    reqs[0].off = FAKE_SIZE;
    TU_ASSERT_ERR(ic_image_pwrite_batch(img, reqs, 2, &err), err, EINVAL, "beyond the virtual size");
    assert_int_equal(f->n, 2);
    assert_int_equal(ic_image_close(img), 0);
}

static void test_image_contract__capabilities_come_from_driver_fields(void **state)
{
    (void)state;
    struct ic_image *img = fake_image();
    assert_false(ic_image_headerless(img));
    assert_true(ic_image_can_write(img));
    assert_false(ic_image_can_resize(img));
    assert_false(ic_driver_can_compress(&fake_driver));
    assert_true(ic_driver_headerless(ic_driver_find("raw")));
    assert_false(ic_driver_headerless(ic_driver_find("qcow2")));
    assert_false(ic_driver_headerless(ic_driver_find("qed")));
    assert_true(ic_driver_can_compress(ic_driver_find("qcow2")));
    assert_int_equal(ic_image_close(img), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_contract__without_make_empty_the_whole_disk_is_discarded),
        cmocka_unit_test(test_image_contract__without_change_backing_the_header_is_left_alone),
        cmocka_unit_test(test_image_contract__without_pwrite_batch_writes_go_one_by_one_in_order),
        cmocka_unit_test(test_image_contract__capabilities_come_from_driver_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
