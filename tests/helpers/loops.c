/*
 * loops.c - the fault loop and the crash loop (see testutil.h).
 *
 * Design notes:
 *  1. Each run is independent: fresh temp dir, setup() on clean backends,
 *     the target file wrapped (in memory by default, see testutil.h), the
 *     operation, then the surviving bytes written back to the file so that
 *     check()/verify() open it like any image on disk.
 *  2. The target is handed to the operation two ways: ctx->io (borrowed)
 *     and ctx->open_file, an ic_open_file_fn that returns a borrowed proxy
 *     of the wrapped target for the target's path and opens every other
 *     path with the POSIX backend.  ic_image_open_io() closes what it is
 *     given, so the loop never lets the wrapper itself escape.
 *  3. The fault loop collects every violation (all combinations run, so one
 *     test run shows all broken error paths) and fails at the end; the
 *     crash loop stops at the first bad N and prints the replay recipe.
 *  4. A run that fails leaves its temp dir in place (named in the message)
 *     so the surviving image can be inspected.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/error.h"

struct target {
    char *dir;
    char *path;
    char real[PATH_MAX];
    bool have_real;
    ic_io *inner;
    ic_io *wrapped;
    bool use_posix;
};

static bool same_file(const struct target *t, const char *path)
{
    if (!strcmp(path, t->path))
        return true;
    char r[PATH_MAX];
    return t->have_real && realpath(path, r) && !strcmp(r, t->real);
}

static int loop_open_file(ic_io **out, const char *path, unsigned flags, void *payload,
                          ic_error **errp)
{
    struct target *t = payload;
    if (t->wrapped && same_file(t, path)) {
        int ret = tu_io_borrow(out, t->wrapped);
        if (ret < 0)
            return ic_error_set(errp, IC_ERR_NOMEM, -ret, "%s: out of memory", path);
        return 0;
    }
    return ic_io_open_file(out, path, flags, errp);
}

/* Fresh dir + setup(); fails the test when setup fails. */
static void target_setup(struct target *t, struct tu_loop_ctx *ctx, const char *name,
                         const char *target,
                         int (*setup)(struct tu_loop_ctx *, ic_error **), bool use_posix)
{
    memset(t, 0, sizeof(*t));
    t->dir = tu_tmpdir();
    t->path = tu_path(t->dir, target);
    t->use_posix = use_posix;
    ctx->dir = t->dir;
    ctx->path = t->path;
    ctx->io = NULL;
    ctx->open_file = loop_open_file;
    ctx->open_payload = t;
    ic_error *err = NULL;
    int ret = setup(ctx, &err);
    if (ret < 0 || err) {
        print_error("%s: setup failed in %s: %s\n", name, t->dir,
                    err ? ic_error_message(err) : strerror(-ret));
        ic_error_free(err);
        fail();
    }
    t->have_real = realpath(t->path, t->real) != NULL;
    if (use_posix)
        ret = ic_io_open_file(&t->inner, t->path, IC_IO_RDWR | IC_IO_NOLOCK, &err);
    else
        ret = tu_file_to_mem(&t->inner, t->path);
    if (ret < 0) {
        print_error("%s: cannot open the target %s: %s\n", name, t->path,
                    err ? ic_error_message(err) : strerror(-ret));
        ic_error_free(err);
        fail();
    }
}

/* After the run: the released inner backend goes back to the file. */
static void target_finish(struct target *t, ic_io *inner, const char *name)
{
    t->wrapped = NULL;
    int ret = 0;
    if (!t->use_posix)
        ret = tu_mem_to_file(inner, t->path);
    ic_io_close(inner);
    if (ret < 0) {
        print_error("%s: cannot write back %s: %s\n", name, t->path, strerror(-ret));
        fail();
    }
}

static void target_free(struct target *t)
{
    tu_rmtree(t->dir);
    free(t->dir);
    free(t->path);
}

/* ---- the fault loop ---------------------------------------------------- */

struct fault_run {
    int ret;
    char *msg;
    unsigned long injected;
    unsigned long events[IC_EV__MAX];
    unsigned long writes;
    unsigned long flushes;
    bool check_ok;
    char *check_msg;
    ic_check_result res;
};

static void fault_run_clear(struct fault_run *r)
{
    free(r->msg);
    free(r->check_msg);
    memset(r, 0, sizeof(*r));
}

static char *dup_msg(const ic_error *err)
{
    char *s = strdup(ic_error_message(err));
    assert_non_null(s);
    return s;
}

/* One run with @rule (NULL: dry run).  The run's temp dir is left in place
 * and returned in *dir_out: the caller removes it, or keeps it and names it
 * when the run broke a rule. */
static void fault_one(const struct tu_fault_loop *cfg, const struct ic_fault_rule *rule,
                      struct fault_run *r, char **dir_out)
{
    struct target t;
    struct tu_loop_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    memset(r, 0, sizeof(*r));
    ctx.payload = cfg->payload;
    ctx.rule = rule;
    target_setup(&t, &ctx, cfg->name, cfg->target, cfg->setup, cfg->use_posix);

    ic_error *err = NULL;
    int ret = ic_io_fault_wrap(&t.wrapped, t.inner, &err);
    TU_ASSERT_OK(ret, err);
    if (rule)
        assert_int_equal(ic_io_fault_add_rule(t.wrapped, rule), 0);
    ctx.io = t.wrapped;

    r->ret = cfg->run(&ctx, &err);
    if (err)
        r->msg = dup_msg(err);
    if (r->ret >= 0 && err) /* inconsistent: judged as a violation */
        r->ret = INT_MIN;
    ic_error_free(err);
    err = NULL;
    r->injected = ic_io_fault_injected(t.wrapped);
    for (int e = 0; e < IC_EV__MAX; e++)
        r->events[e] = ic_io_fault_event_count(t.wrapped, e);
    r->writes = ic_io_fault_request_count(t.wrapped, IC_FAULT_IO_WRITE);
    r->flushes = ic_io_fault_request_count(t.wrapped, IC_FAULT_IO_FLUSH);
    target_finish(&t, ic_io_fault_release_inner(t.wrapped), cfg->name);

    ctx.io = NULL;
    ctx.injected = r->injected;
    ic_check_result res;
    memset(&res, 0, sizeof(res));
    ret = cfg->check(&ctx, &res, &err);
    r->check_ok = ret >= 0 && !err;
    if (!r->check_ok)
        r->check_msg = err ? dup_msg(err) : strdup("check returned an error without a message");
    ic_error_free(err);
    r->res = res;
    *dir_out = t.dir;
    t.dir = NULL;
    free(t.path);
}

static const char *errno_name(int e)
{
    return e == EIO ? "EIO" : e == ENOSPC ? "ENOSPC" : strerror(e);
}

/* Judges one run; returns the violation text or NULL. */
static char *fault_judge(const struct tu_fault_loop *cfg, const struct fault_run *r)
{
    char *v = NULL;
    int n = 0;
    if (r->ret == INT_MIN)
        n = asprintf(&v, "the operation returned success but set an error: %s", r->msg);
    else if (r->ret < 0 && !r->msg)
        n = asprintf(&v, "the operation failed (%s) without setting an error",
                     strerror(-r->ret));
    else if (r->ret < 0 && !r->msg[0])
        n = asprintf(&v, "the operation failed (%s) with an empty message", strerror(-r->ret));
    else if (r->ret < 0 && r->injected == 0)
        n = asprintf(&v, "the operation failed although no fault was injected: %s", r->msg);
    else if (r->ret >= 0 && r->injected > 0 && !cfg->allow_success_after_fault)
        n = asprintf(&v, "the operation succeeded although %lu request(s) failed",
                     r->injected);
    else if (!r->check_ok)
        n = asprintf(&v, "check of the surviving image failed: %s", r->check_msg);
    else if (r->res.corruptions > 0)
        n = asprintf(&v, "check found %" PRId64 " corruption(s) (%" PRId64 " leaks)",
                     r->res.corruptions, r->res.leaks);
    assert_true(n >= 0);
    return v;
}

int tu_loop_open(struct tu_loop_ctx *ctx, ic_image **img, unsigned flags, bool wrapped,
                 ic_error **errp)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = flags | IC_OPEN_NO_LOCK;
    if (wrapped) {
        o.open_file = ctx->open_file;
        o.payload = ctx->open_payload;
    }
    return ic_image_open(img, ctx->path, &o, errp);
}

void tu_fault_loop_run(const struct tu_fault_loop *cfg, struct tu_fault_summary *out)
{
    struct tu_fault_summary sum;
    memset(&sum, 0, sizeof(sum));
    struct fault_run dry, r;
    char *dir;

    fault_one(cfg, NULL, &dry, &dir);
    if (dry.ret < 0 || dry.ret == INT_MIN || !dry.check_ok || dry.res.corruptions > 0) {
        print_error("fault loop '%s': the dry run (no faults) is not clean (dir %s): %s\n",
                    cfg->name, dir,
                    dry.ret < 0 ? (dry.msg ? dry.msg : "failed")
                    : !dry.check_ok ? dry.check_msg : "check found corruptions");
        fail();
    }
    tu_rmtree(dir);
    free(dir);

    unsigned max_nth = cfg->max_nth ? cfg->max_nth : 1;
    static const int errnos[2] = { EIO, ENOSPC };
    /* events: IC_EV_* first, then the "any write" and "any flush" rules */
    for (int ev = 0; ev <= IC_EV__MAX + 1; ev++) {
        unsigned long fired;
        int rule_event;
        if (ev < IC_EV__MAX) {
            fired = dry.events[ev];
            rule_event = ev;
            if (fired)
                sum.events_fired++;
            if (!fired && !cfg->all_events)
                continue;
        } else if (ev == IC_EV__MAX) {
            fired = IC_MIN(dry.writes, (unsigned long)cfg->any_write_max);
            rule_event = IC_FAULT_ANY_WRITE;
            if (!fired)
                continue;
        } else {
            fired = IC_MIN(dry.flushes, (unsigned long)cfg->any_flush_max);
            rule_event = IC_FAULT_ANY_FLUSH;
            if (!fired)
                continue;
        }
        unsigned nth_max = ev < IC_EV__MAX ? (unsigned)IC_MIN((unsigned long)max_nth, IC_MAX(fired, 1ul))
                                           : (unsigned)fired;
        /* event_flush: each event rule once more, failing the next flush
         * after the event instead of the next request */
        int kinds = ev < IC_EV__MAX && cfg->event_flush ? 2 : 1;
        for (int kind = 0; kind < kinds; kind++)
        for (unsigned nth = 1; nth <= nth_max; nth++) {
            for (int ei = 0; ei < 2; ei++) {
                for (int once = 1; once >= 0; once--) {
                    struct ic_fault_rule rule = IC_FAULT_RULE_INIT;
                    rule.event = rule_event;
                    rule.nth = nth;
                    rule.errnum = errnos[ei];
                    rule.once = once;
                    if (kind)
                        rule.iotypes = IC_FAULT_IO_FLUSH;
                    fault_one(cfg, &rule, &r, &dir);
                    sum.runs++;
                    if (r.injected)
                        sum.runs_injected++;
                    if (r.ret < 0)
                        sum.runs_failed_cleanly++;
                    else
                        sum.runs_succeeded++;
                    sum.leaks += r.check_ok && r.res.leaks > 0 ? (uint64_t)r.res.leaks : 0;
                    char *v = fault_judge(cfg, &r);
                    if (v) {
                        sum.violations++;
                        print_error("fault loop '%s': event=%s%s errno=%s %s nth=%u: %s (kept in %s)\n",
                                    cfg->name, ic_fault_event_name(rule_event),
                                    kind ? " (next flush)" : "",
                                    errno_name(errnos[ei]), once ? "once" : "persistent", nth,
                                    v, dir);
                        free(v);
                    } else {
                        tu_rmtree(dir);
                    }
                    free(dir);
                    fault_run_clear(&r);
                }
            }
        }
    }
    fault_run_clear(&dry);
    if (!cfg->quiet)
        printf("fault loop '%s': %u runs over %u fired events, %u injected, "
               "%u failed cleanly, %u succeeded, %" PRIu64 " leaks, %u violations\n",
               cfg->name, sum.runs, sum.events_fired, sum.runs_injected,
               sum.runs_failed_cleanly, sum.runs_succeeded, sum.leaks, sum.violations);
    if (out)
        *out = sum;
    if (sum.violations)
        fail_msg("fault loop '%s': %u violation(s), see above", cfg->name, sum.violations);
}

/* ---- the crash loop ---------------------------------------------------- */

static uint64_t mix_seed(uint64_t base, unsigned n, unsigned s)
{
    uint64_t z = base ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)s << 48);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    return strtoull(v, NULL, 0);
}

void tu_crash_loop_run(const struct tu_crash_loop *cfg, struct tu_crash_summary *out)
{
    struct tu_crash_summary sum;
    memset(&sum, 0, sizeof(sum));
    uint64_t base = env_u64("IC_CRASH_SEED", cfg->seed ? cfg->seed : 0x1C0FFEEull);
    unsigned only_n = (unsigned)env_u64("IC_CRASH_N", 0);
    unsigned max_n = cfg->max_n ? cfg->max_n : 10000;
    unsigned seeds = cfg->seeds ? cfg->seeds : 1;
    bool completed = false;

    for (unsigned n = only_n ? only_n : 1; n <= max_n && !completed; n++) {
        for (unsigned s = 0; s < seeds; s++) {
            struct target t;
            struct tu_loop_ctx ctx;
            memset(&ctx, 0, sizeof(ctx));
            ctx.payload = cfg->payload;
            ctx.n = n;
            ctx.seed = mix_seed(base, n, s);
            target_setup(&t, &ctx, cfg->name, cfg->target, cfg->setup, cfg->use_posix);
            ic_error *err = NULL;
            int ret = ic_io_crash_wrap(&t.wrapped, t.inner, n, ctx.seed, &err);
            TU_ASSERT_OK(ret, err);
            ctx.io = t.wrapped;
            ret = cfg->run(&ctx, &err);
            bool crashed = ic_io_crash_happened(t.wrapped);
            ctx.flushes = ic_io_crash_flush_count(t.wrapped);
            sum.runs++;
            if (!IC_ERR_CONSISTENT(ret, err) || (!crashed && ret < 0)) {
                print_error("crash loop '%s': N=%u seed=%#" PRIx64 " (replay: IC_CRASH_SEED=%#"
                            PRIx64 " IC_CRASH_N=%u): the run %s without a crash: %s "
                            "(kept in %s)\n",
                            cfg->name, n, ctx.seed, base, n,
                            ret < 0 ? "failed" : "returned success with an error set",
                            err ? ic_error_message(err) : "(no error object)", t.dir);
                fail();
            }
            ic_error_free(err);
            err = NULL;
            target_finish(&t, ic_io_crash_release_inner(t.wrapped), cfg->name);
            ctx.io = NULL;
            ctx.crashed = crashed;
            ret = cfg->verify(&ctx, &err);
            if (ret < 0 || err) {
                print_error("crash loop '%s': N=%u seed=%#" PRIx64 " (replay: IC_CRASH_SEED=%#"
                            PRIx64 " IC_CRASH_N=%u): %s image is bad: %s (kept in %s)\n",
                            cfg->name, n, ctx.seed, base, n,
                            crashed ? "crashed" : "completed",
                            err ? ic_error_message(err) : "verify failed without a message",
                            t.dir);
                fail();
            }
            target_free(&t);
            if (crashed) {
                if (s == 0)
                    sum.crash_points++;
            } else {
                completed = true;
                sum.completed_at = n;
                break;
            }
        }
        if (only_n)
            break;
    }
    if (!completed && !only_n)
        fail_msg("crash loop '%s': the operation still crashes at N=%u (seed %#" PRIx64 ")",
                 cfg->name, max_n, base);
    if (!cfg->quiet)
        printf("crash loop '%s': %u crash points, %u runs, completed at N=%u, seed %#" PRIx64 "\n",
               cfg->name, sum.crash_points, sum.runs, sum.completed_at, base);
    if (out)
        *out = sum;
}
