/*
 * testutil.h - shared helpers for the cmocka test programs.
 *
 * Every test program is linked with the tests/helpers sources and compiled with
 * -Itests/helpers, so `#include "testutil.h"` is all a test needs (it pulls
 * in cmocka and the library's internal io/error headers).
 *
 * Contents
 *   1. Error assertions     TU_ASSERT_OK / TU_ASSERT_ERR (errno AND message)
 *   2. Temp dirs and files  tu_tmpdir, tu_rmtree, tu_path, tu_file_to_mem ...
 *   3. Shell and oracle     tu_sh, tu_sh_out, tu_have_prog
 *   4. Data patterns        tu_rand, tu_fill_pattern
 *   5. Borrowed io          tu_io_borrow: hand an io to code that closes it
 *   6. Reference model      struct tu_model: a flat raw copy that receives
 *                           the same writes; compare any image against it
 *   7. Fault loop           tu_fault_loop_run: docs/architecture.md
 *   8. Crash loop           tu_crash_loop_run: docs/architecture.md
 *   9. Failing child test   tu_assert_child_test_fails: a test that must fail
 *
 * Failures inside helpers fail the running cmocka test with a message that
 * names the helper's caller (file:line) or the loop iteration.
 */
#ifndef IC_TESTUTIL_H
#define IC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdbool.h>
#include <cmocka.h>

#include "imgchain/error.h"
#include "imgchain/image.h"
#include "imgchain/sys/io.h"
#include "io/io.h"
#include "io/io-fault.h"
#include "io/io-crash.h"
#include "util/error.h"

/* ---- 1. error assertions ---------------------------------------------- */

/* ret >= 0 and err unset; on failure prints the error message.  err is an
 * ic_error * variable (not a pointer to it). */
#define TU_ASSERT_OK(ret, err) tu_assert_ok_((int64_t)(ret), &(err), #ret, __FILE__, __LINE__)
/* ret == -errnum, err set with that errno, message contains @part; then
 * frees err and sets it to NULL so the variable can be reused. */
#define TU_ASSERT_ERR(ret, err, errnum, part) \
    tu_assert_err_((int64_t)(ret), &(err), (errnum), (part), false, __FILE__, __LINE__)
/* Same, but the message must START with @prefix. */
#define TU_ASSERT_ERR_PREFIX(ret, err, errnum, prefix) \
    tu_assert_err_((int64_t)(ret), &(err), (errnum), (prefix), true, __FILE__, __LINE__)

void tu_assert_ok_(int64_t ret, ic_error **err, const char *expr, const char *file, int line);
void tu_assert_err_(int64_t ret, ic_error **err, int errnum, const char *part, bool prefix,
                    const char *file, int line);

/* ---- 2. temp dirs and files -------------------------------------------- */

/* Creates a fresh directory ($TMPDIR or /tmp)/ic-test.XXXXXX; asserts.
 * Returns a malloc'd path; remove with tu_rmtree() and free().  Tests take
 * their folder from the chain fixture (tests/helpers/chain-fixture.h),
 * which is built on this. */
char *tu_tmpdir(void);
/* Removes @dir and everything below it (missing is fine). */
void tu_rmtree(const char *dir);
/* "dir/name", malloc'd (asserts on allocation failure). */
char *tu_path(const char *dir, const char *name);
/* Writes @len bytes to @path (created/replaced); 0 or -errno. */
int tu_write_file(const char *path, const void *buf, size_t len);
/* Reads the whole file; *out malloc'd (NUL-terminated), *len its size. */
int tu_read_file(const char *path, uint8_t **out, size_t *len);
/* Loads @path into a new memory backend named @path; 0 or -errno. */
int tu_file_to_mem(ic_io **out, const char *path);
/* Replaces the contents of @path with the bytes of memory backend @mem. */
int tu_mem_to_file(ic_io *mem, const char *path);
/* Pages of @path resident in the page cache (mincore on a mapping) in
 * *out; -ENOTSUP on tmpfs, where the page cache is the file itself. */
int tu_cached_pages(const char *path, size_t *out);

/* ---- 3. shell and oracle ------------------------------------------------ */

/* Runs a /bin/sh command line; returns its exit status (0-255) or -1 if it
 * could not run or was killed.  Output goes to the test's output. */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, capturing stdout and stderr in *out (malloc'd, NUL-terminated). */
int tu_sh_out(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when @prog is on PATH. */
bool tu_have_prog(const char *prog);

/* ---- 4. data patterns ----------------------------------------------------- */

/* xorshift64*: deterministic pseudo-random numbers; *state must not be 0. */
uint64_t tu_rand(uint64_t *state);
/* Fills @buf with bytes that depend on @seed and on each byte's position
 * (so a misplaced block never matches). */
void tu_fill_pattern(void *buf, size_t len, uint64_t seed);

/* ---- 5. borrowed io -------------------------------------------------------- */

/* A pass-through backend over @target whose close() frees only itself: hand
 * it to ic_image_open_io() (which takes ownership) while the test keeps
 * @target.  Every op, the event and submit hooks included, is forwarded. */
int tu_io_borrow(ic_io **out, ic_io *target);

/* ---- 6. reference model (blkverify) ------------------------------------ */

/* A flat raw image in memory receiving the same guest writes as the image
 * under test; reading the image must give exactly the model's bytes. */
struct tu_model {
    uint8_t *data;
    uint64_t size;
};
struct tu_model *tu_model_new(uint64_t size);
/* Model seeded with the guest-visible contents of @img (reads it all). */
struct tu_model *tu_model_from_image(ic_image *img);
void tu_model_free(struct tu_model *m);
void tu_model_write(struct tu_model *m, const void *buf, size_t len, uint64_t off);
void tu_model_zero(struct tu_model *m, uint64_t off, uint64_t len);
/* Writes the model as a raw file (for qemu-img compare). */
int tu_model_save(const struct tu_model *m, const char *path);
/* Reads all of @img through the chain and asserts it equals the model,
 * naming the first differing offset on failure. */
#define TU_MODEL_ASSERT_IMAGE(m, img) tu_model_assert_image_((m), (img), __FILE__, __LINE__)
void tu_model_assert_image_(const struct tu_model *m, ic_image *img, const char *file, int line);
/* Opens @path (read-only, probed format, whole chain) and compares it. */
#define TU_MODEL_ASSERT_FILE(m, path) tu_model_assert_file_((m), (path), __FILE__, __LINE__)
void tu_model_assert_file_(const struct tu_model *m, const char *path, const char *file, int line);

/* ---- 7/8. the fault and crash loops -------------------------------------- */

/*
 * Both loops run an operation many times on a fresh copy of a "target"
 * file: the file the fault or crash backend sits on.  The callbacks see a
 * context:
 *
 *   dir       fresh temporary directory for this run (removed afterwards)
 *   path      dir/target
 *   io        in run(): the wrapped target (borrowed: never close it; use
 *             tu_io_borrow() or open_file to give it to ic_image_open_io)
 *   open_file / open_payload
 *             in run(): put them in ic_open_options / ic_create_options:
 *             the target opens as a borrowed handle on `io`, any other path
 *             with the POSIX backend (backing files, new overlays)
 *   payload   the loop's payload
 *
 * run() must close everything it opened on the target (images, borrowed
 * handles) before it returns: the loop frees the wrapper right after.
 *
 * By default the target is loaded into a memory backend for the run (no
 * fdatasync, so loops stay fast) and written back to `path` afterwards;
 * set use_posix to wrap the real file instead.  setup(), check() and
 * verify() run on clean backends: open `path` as usual.
 */
struct tu_loop_ctx {
    const char *dir;
    const char *path;
    ic_io *io;
    ic_open_file_fn open_file;
    void *open_payload;
    void *payload;
    /* fault loop */
    const struct ic_fault_rule *rule; /* NULL in the dry run */
    unsigned long injected;           /* set before check() */
    /* crash loop */
    unsigned n;                       /* crash at the nth flush */
    uint64_t seed;                    /* effective seed of this run */
    bool crashed;                     /* set before verify() */
    unsigned flushes;                 /* flushes the run made (set before verify) */
};

/*
 * The fault loop (docs/architecture.md, qemu-iotests 026): for every
 * named event x {EIO, ENOSPC} x {once, persistent} (x nth = 1..max_nth):
 *   setup -> wrap the target with one rule -> run -> the run must either
 *   succeed or fail cleanly (ret < 0 with an error message; and if a fault
 *   was injected, success is a failure unless allow_success_after_fault)
 *   -> write the surviving bytes back -> check on clean backends: 0
 *   corruptions (leaks allowed), check() itself must succeed.
 * A dry run without rules comes first: it must succeed and check clean, and
 * it tells which events the operation fires; events that never fire are
 * skipped unless all_events.  With any_write_max > 0 the loop also fails
 * the 1st..any_write_max-th pwrite ("any write" rules), and with
 * any_flush_max > 0 the 1st..any_flush_max-th flush ("any flush" rules).
 * With event_flush every event rule runs a second time with iotypes =
 * IC_FAULT_IO_FLUSH: the write after the event lands, the next flush
 * fails (a pointer switch written but not known to be durable).
 * Every violation is printed with its event/errno/mode/nth; the test fails
 * at the end if there was any.
 */
struct tu_fault_loop {
    const char *name;
    const char *target;
    int (*setup)(struct tu_loop_ctx *ctx, ic_error **errp);
    int (*run)(struct tu_loop_ctx *ctx, ic_error **errp);
    int (*check)(struct tu_loop_ctx *ctx, ic_check_result *res, ic_error **errp);
    void *payload;
    unsigned max_nth;
    unsigned any_write_max;
    unsigned any_flush_max;  /* also fail the 1st..nth flush ("any flush" rules) */
    bool event_flush;        /* each event rule also as "fail the next flush after it" */
    bool allow_success_after_fault;
    bool use_posix;
    bool all_events;
    bool quiet;              /* no per-loop summary line */
};
struct tu_fault_summary {
    unsigned runs;           /* runs with a rule */
    unsigned events_fired;   /* distinct events the dry run fired */
    unsigned runs_injected;  /* runs where a request failed */
    unsigned runs_failed_cleanly;
    unsigned runs_succeeded;
    unsigned violations;
    uint64_t leaks;          /* total leaks check() reported */
};
void tu_fault_loop_run(const struct tu_fault_loop *cfg, struct tu_fault_summary *out);

/*
 * The crash loop (docs/architecture.md, SQLite crash tests): for
 * N = 1, 2, ...: setup -> wrap the target with ic_io_crash_wrap(N, seed)
 * -> run -> release the inner backend, write it back -> verify.  Stops
 * after the first N at which the run completes without crashing (it must
 * then have succeeded).  verify() sees ctx->crashed/n/seed/flushes and
 * returns < 0 with an error when the surviving image is wrong; the loop
 * prints N and the seed on failure.
 *
 * Replay: IC_CRASH_SEED=<base seed> (default cfg->seed, or a fixed value
 * when 0) and IC_CRASH_N=<n> (run only that N) in the environment.  Each N
 * runs with `seeds` different seeds derived from the base (default 1).
 */
struct tu_crash_loop {
    const char *name;
    const char *target;
    int (*setup)(struct tu_loop_ctx *ctx, ic_error **errp);
    int (*run)(struct tu_loop_ctx *ctx, ic_error **errp);
    int (*verify)(struct tu_loop_ctx *ctx, ic_error **errp);
    void *payload;
    uint64_t seed;
    unsigned seeds;
    unsigned max_n;          /* 0 = 10000: fail if the run still crashes */
    bool use_posix;
    bool quiet;
};
struct tu_crash_summary {
    unsigned crash_points;   /* N values that crashed */
    unsigned runs;           /* runs in total (crash points x seeds + final) */
    unsigned completed_at;   /* the N at which the run completed */
};
void tu_crash_loop_run(const struct tu_crash_loop *cfg, struct tu_crash_summary *out);

/* Opens the loop's target (ctx->path) with @flags | IC_OPEN_NO_LOCK: through
 * the loop's wrapped backend (ctx->open_file) when @wrapped, as run() must,
 * else on a clean backend, as setup(), check() and verify() do. */
int tu_loop_open(struct tu_loop_ctx *ctx, ic_image **img, unsigned flags, bool wrapped,
                 ic_error **errp);

/*
 * Runs @fn as a cmocka test in a forked child (its output discarded unless
 * IC_TEST_VERBOSE_CHILD is set, TMPDIR a private folder removed afterwards)
 * and asserts that the child's test FAILED: for checking that a loop
 * helper fails the test it runs in.  Under valgrind the child's failure
 * path may also exit 99 (it longjmps out of the loop and leaks by design).
 */
void tu_assert_child_test_fails(void (*fn)(void **state));

#endif
