/*
 * test-util-bigbuf.c - large I/O buffers on huge pages (src/util/bigbuf.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "util/bigbuf.h"

/* The kernel's transparent huge page policy: "always", "madvise", "never",
 * or "" where the kernel has none. */
static void thp_policy(char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return;
    char line[128];
    if (fgets(line, sizeof(line), f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && (size_t)(b - a - 1) < n) {
            memcpy(out, a + 1, (size_t)(b - a - 1));
            out[b - a - 1] = '\0';
        }
    }
    fclose(f);
}

/* The THPeligible field of the mapping that holds @p in /proc/self/smaps,
 * -1 when not found. */
static int thp_eligible(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    bool in = false;
    int got = -1;
    while (got < 0 && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        int v;
        if (in && sscanf(line, "THPeligible: %d", &v) == 1)
            got = v;
    }
    fclose(f);
    return got;
}

static void test_util_bigbuf__a_large_buffer_starts_on_a_huge_page_boundary_and_is_writable(void **state)
{
    (void)state;
    size_t sizes[] = { (size_t)2 << 20, ((size_t)2 << 20) + 4096, (size_t)64 << 20 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = ic_bigbuf_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % IC_BIGBUF_HUGE, 0);
        memset(p, 0xa5, sizes[i]);
        assert_int_equal(p[0], 0xa5);
        assert_int_equal(p[sizes[i] - 1], 0xa5);
        ic_bigbuf_free(p, sizes[i]);
    }
}

static void test_util_bigbuf__a_small_buffer_is_page_aligned_and_zeroed(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *p = ic_bigbuf_alloc(100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % page, 0);
    for (size_t i = 0; i < page; i++)
        assert_int_equal(p[i], 0);
    ic_bigbuf_free(p, 100);
    ic_bigbuf_free(NULL, 100); /* nothing to free is not an error */
}

static void test_util_bigbuf__a_large_buffer_is_offered_huge_pages_where_the_kernel_has_them(void **state)
{
    (void)state;
    char policy[32];
    thp_policy(policy, sizeof(policy));
    if (strcmp(policy, "always") && strcmp(policy, "madvise")) {
        print_message("transparent huge pages are \"%s\" here: nothing to offer\n", policy);
        skip();
    }
    uint8_t *p = ic_bigbuf_alloc((size_t)4 << 20);
    assert_non_null(p);
    /* under "madvise" only the advice makes the mapping eligible */
    assert_int_equal(thp_eligible(p), 1);
    ic_bigbuf_free(p, (size_t)4 << 20);
}

static void test_util_bigbuf__refuses_a_size_that_overflows(void **state)
{
    (void)state;
    assert_null(ic_bigbuf_alloc(SIZE_MAX));
    assert_null(ic_bigbuf_alloc(SIZE_MAX - IC_BIGBUF_HUGE + 1));
    assert_null(ic_bigbuf_alloc(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_bigbuf__a_large_buffer_starts_on_a_huge_page_boundary_and_is_writable),
        cmocka_unit_test(test_util_bigbuf__a_small_buffer_is_page_aligned_and_zeroed),
        cmocka_unit_test(test_util_bigbuf__a_large_buffer_is_offered_huge_pages_where_the_kernel_has_them),
        cmocka_unit_test(test_util_bigbuf__refuses_a_size_that_overflows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
