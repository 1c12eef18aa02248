/*
 * test-io-mem.c - the in-memory backend (src/io/io-mem.c).
 */
#include <errno.h>
#include <string.h>

#include "testutil.h"
#include "io/io-mem.h"

static ic_io *mem(void)
{
    ic_io *m;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_mem(&m, NULL, &err), err);
    return m;
}

static void test_io_mem__starts_empty_and_named_memory(void **state)
{
    (void)state;
    ic_io *m = mem();
    assert_string_equal(ic_io_name(m), "memory");
    assert_int_equal(ic_io_get_size(m), 0);
    assert_true(m->open_flags & IC_IO_RDWR);
    uint8_t b[4];
    assert_int_equal(m->ops->pread(m, b, sizeof(b), 0), 0); /* EOF */
    ic_io_close(m);
}

static void test_io_mem__writes_past_the_end_grow_it_with_zeroes(void **state)
{
    (void)state;
    ic_io *m = mem();
    uint8_t w[10], r[110];
    memset(w, 0xAB, sizeof(w));
    assert_int_equal(ic_io_pwrite(m, w, sizeof(w), 100), 0);
    assert_int_equal(ic_io_get_size(m), 110);
    assert_int_equal(ic_io_pread(m, r, sizeof(r), 0), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(r[i], 0);
    assert_memory_equal(r + 100, w, 10);
    /* reads past the end are short, like a file */
    assert_int_equal(m->ops->pread(m, r, 20, 100), 10);
    assert_int_equal(m->ops->pread(m, r, 20, 500), 0);
    ic_io_close(m);
}

static void test_io_mem__truncate_shrinks_and_regrows_with_zeroes(void **state)
{
    (void)state;
    ic_io *m = mem();
    uint8_t w[8192], r[8192];
    memset(w, 0x11, sizeof(w));
    assert_int_equal(ic_io_pwrite(m, w, sizeof(w), 0), 0);
    assert_int_equal(ic_io_truncate(m, 100), 0);
    assert_int_equal(ic_io_get_size(m), 100);
    assert_int_equal(ic_io_truncate(m, 8192), 0);
    assert_int_equal(ic_io_pread(m, r, sizeof(r), 0), 0);
    assert_memory_equal(r, w, 100);
    for (int i = 100; i < 8192; i++)
        assert_int_equal(r[i], 0);
    ic_io_close(m);
}

static void test_io_mem__punch_hole_zeroes_without_changing_the_size(void **state)
{
    (void)state;
    ic_io *m = mem();
    uint8_t w[1000], r[1000];
    memset(w, 0x22, sizeof(w));
    assert_int_equal(ic_io_pwrite(m, w, sizeof(w), 0), 0);
    assert_int_equal(ic_io_punch_hole(m, 500, 10000), 0);
    assert_int_equal(ic_io_punch_hole(m, 5000, 10), 0);
    assert_int_equal(ic_io_get_size(m), 1000);
    assert_int_equal(ic_io_pread(m, r, sizeof(r), 0), 0);
    assert_memory_equal(r, w, 500);
    for (int i = 500; i < 1000; i++)
        assert_int_equal(r[i], 0);
    ic_io_close(m);
}

static void test_io_mem__counts_every_read_write_and_flush(void **state)
{
    (void)state;
    ic_io *m = mem();
    struct ic_io_mem *s = ic_io_mem_of(m);
    uint8_t b[16] = { 0 };
    assert_int_equal(ic_io_pwrite(m, b, 16, 0), 0);
    assert_int_equal(ic_io_pwrite(m, b, 0, 0), 0); /* empty: not a call */
    assert_int_equal(ic_io_pread(m, b, 16, 0), 0);
    assert_int_equal(ic_io_pread(m, b, 16, 0), 0);
    assert_int_equal(ic_io_flush(m), 0);
    assert_int_equal(s->n_write, 1);
    assert_int_equal(s->n_read, 2);
    assert_int_equal(s->n_flush, 1);
    ic_io_close(m);
}

static void test_io_mem__refuses_sizes_it_cannot_hold(void **state)
{
    (void)state;
    ic_io *m = mem();
    uint8_t b[16] = { 0 };
    assert_int_equal(ic_io_pwrite(m, b, 16, UINT64_MAX - 4), -EFBIG);
    assert_int_equal(ic_io_truncate(m, (uint64_t)1 << 41), -EFBIG);
    assert_int_equal(ic_io_get_size(m), 0);
    ic_io_close(m);
}

static void test_io_mem__mem_of_recognises_only_memory_backends(void **state)
{
    (void)state;
    ic_io *m = mem(), *b;
    assert_non_null(ic_io_mem_of(m));
    assert_int_equal(tu_io_borrow(&b, m), 0);
    assert_null(ic_io_mem_of(b));
    assert_null(ic_io_mem_of(NULL));
    ic_io_close(b);
    ic_io_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_mem__starts_empty_and_named_memory),
        cmocka_unit_test(test_io_mem__writes_past_the_end_grow_it_with_zeroes),
        cmocka_unit_test(test_io_mem__truncate_shrinks_and_regrows_with_zeroes),
        cmocka_unit_test(test_io_mem__punch_hole_zeroes_without_changing_the_size),
        cmocka_unit_test(test_io_mem__counts_every_read_write_and_flush),
        cmocka_unit_test(test_io_mem__refuses_sizes_it_cannot_hold),
        cmocka_unit_test(test_io_mem__mem_of_recognises_only_memory_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
