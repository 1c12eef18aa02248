/*
 * test-options-versions.c - every versioned option struct of the public
 * API is checked: a version the library does not know (0, or one past the
 * current) is refused with EINVAL before any file is touched, and the
 * current version is accepted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"
#include "imgchain/chain.h"
#include "imgchain/chain-edit.h"

static char *dir;

static int setup(void **state)
{
    (void)state;
    cf_setup(NULL); /* the one test-folder fixture */
    dir = strdup(cf_dir);
    assert_non_null(dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cf_teardown(NULL);
    free(dir);
    return 0;
}

/* A path in the test folder that must still not exist afterwards. */
static char *untouched(const char *name)
{
    char *p = tu_path(dir, name);
    assert_int_equal(access(p, F_OK), -1);
    return p;
}

static void test_options__unknown_open_and_create_versions_are_refused(void **state)
{
    (void)state;
    char *p = untouched("a.qcow2");
    static const unsigned bad[] = { 0, IC_OPEN_OPTIONS_VERSION + 1 };
    for (int i = 0; i < 2; i++) {
        ic_error *err = NULL;
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.version = bad[i];
        ic_image *img = NULL;
        TU_ASSERT_ERR(ic_image_open(&img, p, &oo, &err), err, EINVAL, "options version");
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.version = i == 0 ? 0 : IC_CREATE_OPTIONS_VERSION + 1;
        co.size = 1 << 20;
        co.size_set = true;
        TU_ASSERT_ERR(ic_image_create(p, &co, &err), err, EINVAL, "options version");
        assert_int_equal(access(p, F_OK), -1);
    }
    ic_error *err = NULL;
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.size = 1 << 20;
    co.size_set = true;
    TU_ASSERT_OK(ic_image_create(p, &co, &err), err);
    ic_open_options v1 = IC_OPEN_OPTIONS_INIT;
    v1.version = 1; /* a version 1 caller: no cache fields read */
    ic_image *img = NULL;
    TU_ASSERT_OK(ic_image_open(&img, p, &v1, &err), err);
    assert_int_equal(ic_image_close(img), 0);
    free(p);
}

static void test_options__unknown_chain_operation_versions_are_refused(void **state)
{
    (void)state;
    char *p = untouched("b.qcow2");
    char *q = untouched("c.raw");
    ic_error *err = NULL;
    for (int i = 0; i < 2; i++) {
        ic_convert_options cv = IC_CONVERT_OPTIONS_INIT;
        cv.version = i ? IC_CONVERT_OPTIONS_VERSION + 1 : 0;
        TU_ASSERT_ERR(ic_image_convert(p, q, &cv, &err), err, EINVAL, "options version");
        ic_commit_options cm = IC_COMMIT_OPTIONS_INIT;
        cm.version = i ? IC_COMMIT_OPTIONS_VERSION + 1 : 0;
        TU_ASSERT_ERR(ic_chain_commit(p, &cm, &err), err, EINVAL, "options version");
        ic_rebase_options rb = IC_REBASE_OPTIONS_INIT;
        rb.version = i ? IC_REBASE_OPTIONS_VERSION + 1 : 0;
        TU_ASSERT_ERR(ic_chain_rebase(p, &rb, &err), err, EINVAL, "options version");
        ic_chain_check_options ck = IC_CHAIN_CHECK_OPTIONS_INIT;
        ck.version = i ? IC_CHAIN_CHECK_OPTIONS_VERSION + 1 : 0;
        ic_chain_check_result *res = NULL;
        TU_ASSERT_ERR(ic_chain_check(&res, p, &ck, &err), err, EINVAL, "options version");
        assert_null(res);
        ic_dependents_options dp = IC_DEPENDENTS_OPTIONS_INIT;
        dp.version = i ? IC_DEPENDENTS_OPTIONS_VERSION + 1 : 0;
        ic_dependents *deps = NULL;
        const char *dirs[1] = { dir };
        TU_ASSERT_ERR(ic_chain_dependents(&deps, dir, dirs, 1, &dp, &err), err, EINVAL,
                      "options version");
        assert_null(deps);
    }
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(access(q, F_OK), -1);
    free(p);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_options__unknown_open_and_create_versions_are_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_options__unknown_chain_operation_versions_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
