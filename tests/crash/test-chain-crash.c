/*
 * test-chain-crash.c - power failure at every flush of commit and rebase,
 * across every file of the chain (SQLite crash-test model).
 *
 * For each scenario a template chain is built with qemu-img/qemu-io.  Then
 * for N = 1, 2, ... the operation runs on a fresh copy with every file it
 * opens wrapped in one crash world (tests/helpers/chain-crash.c) that
 * crashes all of them at the Nth flush, whichever file it hits (base,
 * overlay or journal).  After each crash:
 *   1. the top image reads exactly its original guest content;
 *   2. every qcow2/QED image of the chain checks with 0 corruptions;
 *   3. if a journal survived, ic_chain_check reports the interrupted
 *      operation, and resuming it (no crash) completes: the top still reads
 *      the same and the base reads what an uninterrupted run gives;
 *      without a journal the base reads its state before or after;
 *   4. everything checks clean again.
 * The loop ends at the first N the operation completes without crashing.
 * On failure the scenario, N and seed are printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "imgchain/chain-edit.h"
#include "imgchain/image.h"
#include "chain-crash.h"

#define MAX_N 3000
#define SEEDS 2

struct scenario {
    const char *name;
    const char *build;      /* shell commands run in the template folder */
    const char *top;        /* image the operation runs on */
    const char *base;       /* image whose content changes (commit), or NULL */
    const char *images[4];  /* every image to check, NULL-terminated */
    bool rebase;
    const char *commit_base; /* -b */
    bool drop;
    const char *new_backing; /* rebase -b ("" = none) */
    const char *new_fmt;
};

#define BUILD_BASE \
    "qemu-img create -q -f raw base.raw 4M && " \
    "qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 2 2M 512k' base.raw >/dev/null && "
#define BUILD_MID(fmt) \
    "qemu-img create -q -f " fmt " -b base.raw -F raw mid." fmt " 4M && " \
    "qemu-io -f " fmt " -c 'write -P 3 512k 1M' -c 'write -z 2304k 128k' mid." fmt " >/dev/null && "
#define BUILD_TOP(fmt, mfmt) \
    "qemu-img create -q -f " fmt " -b mid." mfmt " -F " mfmt " top." fmt " 5M && " \
    "qemu-io -f " fmt " -c 'write -P 4 768k 512k' -c 'write -P 5 3M 256k' " \
    "-c 'write -z 128k 64k' -c 'write -P 6 4608k 64k' top." fmt " >/dev/null"

static const struct scenario scenarios[] = {
    { "commit into the immediate qed backing", BUILD_BASE BUILD_MID("qed") BUILD_TOP("qed", "qed"),
      "top.qed", "mid.qed", { "mid.qed", "top.qed" }, false, NULL, false, NULL, NULL },
    { "commit -b into the raw bottom", BUILD_BASE BUILD_MID("qed") BUILD_TOP("qed", "qed"),
      "top.qed", "base.raw", { "mid.qed", "top.qed" }, false, "base.raw", true, NULL, NULL },
    { "rebase onto a lower image", BUILD_BASE BUILD_MID("qed") BUILD_TOP("qed", "qed"),
      "top.qed", NULL, { "mid.qed", "top.qed" }, true, NULL, false, "base.raw", "raw" },
    { "rebase onto nothing", BUILD_BASE BUILD_MID("qed") BUILD_TOP("qed", "qed"),
      "top.qed", NULL, { "mid.qed", "top.qed" }, true, NULL, false, "", NULL },
    { "commit qcow2 into the immediate qcow2 backing",
      BUILD_BASE BUILD_MID("qcow2") BUILD_TOP("qcow2", "qcow2"),
      "top.qcow2", "mid.qcow2", { "mid.qcow2", "top.qcow2" }, false, NULL, false, NULL, NULL },
    { "rebase qcow2 over qed onto nothing", BUILD_BASE BUILD_MID("qed") BUILD_TOP("qcow2", "qed"),
      "top.qcow2", NULL, { "mid.qed", "top.qcow2" }, true, NULL, false, "", NULL },
};

struct ctx {
    char tmpl[64], run[64];
    const struct scenario *sc;
    uint8_t *top_orig, *base_orig, *base_after;
    uint64_t top_size, base_orig_size, base_after_size;
};

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, cmd);
}

static char *pth(const char *dir, const char *name)
{
    static char buf[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

/* Reads the whole guest view of @path; NULL with the error on failure. */
static uint8_t *read_view(const char *path, uint64_t *size, ic_error **err)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_LOCK;
    if (ic_image_open(&img, path, &oo, err) < 0)
        return NULL;
    *size = ic_image_size(img);
    uint8_t *buf = malloc(*size ? *size : 1);
    assert_non_null(buf);
    if (ic_image_pread(img, buf, *size, 0, err) < 0) {
        free(buf);
        buf = NULL;
    }
    ic_image_close(img);
    return buf;
}

static void assert_view(const char *path, const uint8_t *want, uint64_t size, const char *what,
                        unsigned n, uint64_t seed)
{
    ic_error *err = NULL;
    uint64_t got_size = 0;
    uint8_t *got = read_view(path, &got_size, &err);
    if (!got)
        fail_msg("N=%u seed=%#" PRIx64 ": %s: cannot read %s: %s", n, seed, what, path,
                 ic_error_message(err));
    if (got_size < size)
        fail_msg("N=%u seed=%#" PRIx64 ": %s: %s shrank to %" PRIu64, n, seed, what, path, got_size);
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != want[i])
            fail_msg("N=%u seed=%#" PRIx64 ": %s: %s differs at byte %" PRIu64 " (%u, want %u)",
                     n, seed, what, path, i, got[i], want[i]);
    free(got);
}

static bool view_equals(const char *path, const uint8_t *want, uint64_t size)
{
    uint64_t got_size = 0;
    ic_error *err = NULL;
    uint8_t *got = read_view(path, &got_size, &err);
    ic_error_free(err);
    bool eq = got && got_size >= size && !memcmp(got, want, size);
    free(got);
    return eq;
}

static void assert_checks_clean(struct ctx *c, unsigned n, uint64_t seed)
{
    for (int i = 0; c->sc->images[i]; i++) {
        ic_image *img = NULL;
        ic_error *err = NULL;
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_CHECK | IC_OPEN_NO_LOCK;
        const char *p = pth(c->run, c->sc->images[i]);
        if (ic_image_open(&img, p, &oo, &err) < 0)
            fail_msg("N=%u seed=%#" PRIx64 ": %s does not open: %s", n, seed, p,
                     ic_error_message(err));
        ic_check_result r;
        int ret = ic_image_check(img, 0, NULL, NULL, &r, &err);
        if (ret == -ENOTSUP) {
            /* the driver has no check yet: qemu-img is the oracle (exit 0
             * clean, 3 leaks only; 2 corruptions, 1 check errors) */
            ic_error_free(err);
            err = NULL;
            ic_image_close(img);
            char cmd[700];
            snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' >/dev/null 2>&1", p);
            int rc = system(cmd);
            rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
            if (rc != 0 && rc != 3)
                fail_msg("N=%u seed=%#" PRIx64 ": qemu-img check of %s exits %d", n, seed, p, rc);
            continue;
        }
        if (ret < 0)
            fail_msg("N=%u seed=%#" PRIx64 ": check of %s failed: %s", n, seed, p,
                     ic_error_message(err));
        if (r.corruptions || r.check_errors)
            fail_msg("N=%u seed=%#" PRIx64 ": %s has %" PRId64 " corruptions, %" PRId64
                     " check errors", n, seed, p, r.corruptions, r.check_errors);
        ic_image_close(img);
    }
}

static int run_op(struct ctx *c, ic_open_file_fn fn, void *payload, bool resume, ic_error **err)
{
    const char *top = pth(c->run, c->sc->top);
    if (c->sc->rebase) {
        ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
        o.resume = resume;
        if (!resume) {
            o.backing = c->sc->new_backing;
            o.backing_format = c->sc->new_fmt;
        }
        o.flags = IC_OPEN_NO_LOCK;
        o.open_file = fn;
        o.payload = payload;
        return ic_chain_rebase(top, &o, err);
    }
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    o.resume = resume;
    if (!resume) {
        o.base = c->sc->commit_base ? pth(c->run, c->sc->commit_base) : NULL;
        o.drop = c->sc->drop;
    }
    o.no_dependents_scan = true;
    o.flags = IC_OPEN_NO_LOCK;
    o.open_file = fn;
    o.payload = payload;
    return ic_chain_commit(top, &o, err);
}

static void fresh_copy(struct ctx *c)
{
    sh("rm -rf %s && cp -a %s %s", c->run, c->tmpl, c->run);
}

static bool journal_exists(struct ctx *c)
{
    char p[600];
    snprintf(p, sizeof(p), "%s.imgchain-journal", pth(c->run, c->sc->top));
    return access(p, F_OK) == 0;
}

static bool format_works(const char *dir, const char *file)
{
    ic_image *img = NULL;
    ic_error *err = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_LOCK;
    int ret = ic_image_open(&img, pth(dir, file), &oo, &err);
    ic_error_free(err);
    const char *ext = strrchr(file, '.');
    bool ok = ret == 0 && ext && !strcmp(ic_image_format(img), ext + 1);
    ic_image_close(img);
    return ok;
}

static void run_scenario(const struct scenario *sc)
{
    struct ctx c = { .sc = sc };
    strcpy(c.tmpl, "/tmp/ic-crash-tmpl-XXXXXX");
    assert_non_null(mkdtemp(c.tmpl));
    snprintf(c.run, sizeof(c.run), "%s-run", c.tmpl);
    sh("cd %s && %s", c.tmpl, sc->build);
    if (!format_works(c.tmpl, sc->top)) {
        sh("rm -rf %s", c.tmpl);
        print_message("skipping '%s': the format cannot be opened yet\n", sc->name);
        skip();
    }
    ic_error *err = NULL;
    c.top_orig = read_view(pth(c.tmpl, sc->top), &c.top_size, &err);
    assert_non_null(c.top_orig);
    if (sc->base) {
        c.base_orig = read_view(pth(c.tmpl, sc->base), &c.base_orig_size, &err);
        assert_non_null(c.base_orig);
    }
    /* The uninterrupted result. */
    fresh_copy(&c);
    int ret = run_op(&c, NULL, NULL, false, &err);
    if (ret == -ENOTSUP) {
        print_message("skipping '%s': %s\n", sc->name, ic_error_message(err));
        ic_error_free(err);
        sh("rm -rf %s %s", c.tmpl, c.run);
        free(c.top_orig);
        free(c.base_orig);
        skip();
    }
    if (ret < 0)
        fail_msg("%s: uninterrupted run failed: %s", sc->name, ic_error_message(err));
    assert_false(journal_exists(&c));
    assert_view(pth(c.run, sc->top), c.top_orig, c.top_size, "uninterrupted top", 0, 0);
    if (sc->base) {
        c.base_after = read_view(pth(c.run, sc->base), &c.base_after_size, &err);
        assert_non_null(c.base_after);
        /* the base now reads the top's data */
        assert_true(c.base_after_size >= c.top_size);
        assert_memory_equal(c.base_after, c.top_orig, c.top_size);
    }
    assert_checks_clean(&c, 0, 0);

    unsigned n, crashes = 0, resumed = 0;
    unsigned long applied = 0, dropped = 0, torn = 0;
    for (n = 1; n <= MAX_N; n++) {
        bool completed = false;
        for (unsigned s = 0; s < SEEDS; s++) {
            uint64_t seed = 0x5eed0000u + n * 7919u + s;
            fresh_copy(&c);
            struct chain_crash_world *w = chain_crash_world_new(n, seed);
            assert_non_null(w);
            err = NULL;
            ret = run_op(&c, chain_crash_open, w, false, &err);
            bool crashed = chain_crash_happened(w);
            unsigned long a, d, t;
            chain_crash_stats(w, &a, &d, &t);
            applied += a;
            dropped += d;
            torn += t;
            chain_crash_world_free(w);
            if (!crashed) {
                if (ret < 0)
                    fail_msg("%s: N=%u: failed without a crash: %s", sc->name, n,
                             ic_error_message(err));
                completed = true;
                break;
            }
            crashes++;
            if (ret == 0) {
                /* The crash hit a flush made while closing, after the
                 * operation was complete and durable: it must read as done. */
                if (journal_exists(&c))
                    fail_msg("%s: N=%u seed=%#" PRIx64 ": success reported with the journal left",
                             sc->name, n, seed);
                if (sc->base)
                    assert_view(pth(c.run, sc->base), c.base_after, c.base_after_size,
                                "base after a late crash", n, seed);
            }
            ic_error_free(err);
            err = NULL;
            /* 1, 2: the top reads the same and nothing is corrupt */
            assert_view(pth(c.run, sc->top), c.top_orig, c.top_size, sc->name, n, seed);
            assert_checks_clean(&c, n, seed);
            if (journal_exists(&c)) {
                /* 3: reported, then resumed to the uninterrupted result */
                ic_chain_check_result *cr = NULL;
                ic_chain_check_options co = IC_CHAIN_CHECK_OPTIONS_INIT;
                co.flags = IC_OPEN_NO_LOCK;
                co.skip_image_checks = true;
                ret = ic_chain_check(&cr, pth(c.run, sc->top), &co, &err);
                if (ret < 0)
                    fail_msg("N=%u: chain check failed: %s", n, ic_error_message(err));
                bool reported = false;
                for (size_t i = 0; i < cr->nb_findings; i++)
                    reported |= cr->findings[i].kind == IC_CHAIN_INTERRUPTED;
                ic_chain_check_result_free(cr);
                if (!reported)
                    fail_msg("%s: N=%u: check --chain missed the interrupted operation",
                             sc->name, n);
                ret = run_op(&c, NULL, NULL, true, &err);
                if (ret < 0)
                    fail_msg("%s: N=%u seed=%#" PRIx64 ": resume failed: %s", sc->name, n, seed,
                             ic_error_message(err));
                resumed++;
                assert_false(journal_exists(&c));
                if (sc->base)
                    assert_view(pth(c.run, sc->base), c.base_after, c.base_after_size,
                                "base after resume", n, seed);
                assert_view(pth(c.run, sc->top), c.top_orig, c.top_size, "top after resume", n,
                            seed);
                assert_checks_clean(&c, n, seed);
            } else if (sc->base) {
                bool before = view_equals(pth(c.run, sc->base), c.base_orig, c.base_orig_size);
                bool after = view_equals(pth(c.run, sc->base), c.base_after, c.base_after_size);
                if (!before && !after)
                    fail_msg("%s: N=%u seed=%#" PRIx64 ": no journal, yet the base is neither "
                             "before nor after", sc->name, n, seed);
            }
        }
        if (completed)
            break;
    }
    if (n > MAX_N)
        fail_msg("%s: still crashing after %u flushes", sc->name, MAX_N);
    print_message("%s: %u crash points x %u seeds, %u resumed; pending writes applied %lu, "
                  "dropped %lu, torn %lu\n", sc->name, n - 1, SEEDS, resumed, applied, dropped,
                  torn);
    assert_true(crashes > 0);
    assert_true(resumed > 0);
    sh("rm -rf %s %s", c.tmpl, c.run);
    free(c.top_orig);
    free(c.base_orig);
    free(c.base_after);
}

static void test_chain_crash__commit_into_immediate_backing_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[0]);
}

static void test_chain_crash__deep_commit_into_raw_base_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[1]);
}

static void test_chain_crash__rebase_onto_lower_image_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[2]);
}

static void test_chain_crash__rebase_onto_nothing_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[3]);
}

static void test_chain_crash__qcow2_commit_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[4]);
}

static void test_chain_crash__qcow2_over_qed_rebase_onto_nothing_survives_every_flush(void **state)
{
    (void)state;
    run_scenario(&scenarios[5]);
}

int main(void)
{
    if (system("qemu-img --version >/dev/null 2>&1") != 0) {
        printf("qemu-img is missing: the chain crash tests need it to build chains\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_crash__commit_into_immediate_backing_survives_every_flush),
        cmocka_unit_test(test_chain_crash__deep_commit_into_raw_base_survives_every_flush),
        cmocka_unit_test(test_chain_crash__rebase_onto_lower_image_survives_every_flush),
        cmocka_unit_test(test_chain_crash__rebase_onto_nothing_survives_every_flush),
        cmocka_unit_test(test_chain_crash__qcow2_commit_survives_every_flush),
        cmocka_unit_test(test_chain_crash__qcow2_over_qed_rebase_onto_nothing_survives_every_flush),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
