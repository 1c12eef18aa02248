/*
 * fmt-scenario.h - format-agnostic scenarios for the qcow2 and QED fault
 * and crash tests (tests/fault/test-{qcow2,qed}-errpath.c,
 * tests/crash/test-{qcow2,qed}-crash.c, the crash loop of
 * tests/unit/test-qcow2-extl2.c).
 *
 * Those tests differ only in the format they create, their step lists and
 * a few format checks (QED's need-check bit); the scaffolding lives here:
 *
 *   1. Common pieces     fmt_open_rw, fmt_check_path, fmt_qemu_img_check
 *   2. Fault scenarios   struct fmt_fault_scenario + fmt_fault_loop: image
 *                        setup, steps on the faulty backend, a byte model
 *                        (CERTAIN / OLD_OR_NEW / ANY), check, qemu-img
 *                        check, data compare, optional read-write reopen
 *   3. Crash scenarios   struct fmt_crash_scenario + fmt_crash_loop: image
 *                        setup, guest writes with periodic flushes,
 *                        durable-or-old/new data check
 *
 * The format is a parameter: struct fmt_ops (fault loop) or a format name
 * (crash loop).  Failures fail the running cmocka test.
 */
#ifndef IC_TEST_FMT_SCENARIO_H
#define IC_TEST_FMT_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

/* ---- 1. common pieces ------------------------------------------------------ */

/* Opens @path read-write without locking; @fn/@payload as in
 * ic_open_options (NULL: the POSIX backend). */
int fmt_open_rw(const char *path, ic_open_file_fn fn, void *payload, ic_image **img,
                ic_error **errp);
/* Opens the loop's target (ctx->open_file) read-write. */
int fmt_open_target(struct tu_loop_ctx *ctx, ic_image **img, ic_error **errp);
/* Opens @path for checking, runs ic_image_check into @res and closes it;
 * with @corrupt_bit also fails when the format reports its corrupt bit
 * set (qcow2; formats without one pass). */
int fmt_check_path(const char *path, bool corrupt_bit, ic_check_result *res, ic_error **errp);
/* `qemu-img check -U @path`: exit 0 (clean) or 3 (leaks only) pass, any
 * other fails with the exit code and the start of the output, prefixed
 * with "@when: " when @when is not NULL. */
int fmt_qemu_img_check(const char *path, const char *when, ic_error **errp);
/* True when qemu-img is on PATH (looked up once). */
bool fmt_have_qemu_img(void);

/* ---- 2. fault scenarios ------------------------------------------------------ */

enum fmt_step_kind {
    FMT_WRITE,         /* data (pseudo-random, position dependent) */
    FMT_ZERO,          /* ic_image_pwrite_zeroes, clusters kept */
    FMT_ZERO_UNMAP,    /* ic_image_pwrite_zeroes with IC_ZERO_MAY_UNMAP */
    FMT_DISCARD,       /* whole clusters read as zeroes (or backing on v2) */
    FMT_COMPRESSED,    /* compressible data, ic_image_pwrite_compressed */
    FMT_TRUNCATE,      /* resize: len is the new virtual size */
    FMT_RESIZE,        /* ic_image_resize: len the new size, off the ic_prealloc mode */
};

struct fmt_step {
    enum fmt_step_kind kind;
    uint64_t off;
    uint64_t len; /* FMT_TRUNCATE: the new virtual size */
};

/* Most events a scenario requires its dry run to fire. */
#define FMT_MAX_MUST_FIRE 6

struct fmt_fault_scenario;

/* What differs between the formats in the fault loop. */
struct fmt_ops {
    const char *format;        /* ic_create_options.format */
    const char *target;        /* file name of the image under test */
    /* after a clean check: a read-write open (which may repair) and a
     * check must leave 0 corruptions and 0 check errors */
    bool reopen_rw_check;
    /* damaged scenarios only: damage the freshly built file at @path */
    void (*plant_damage)(const char *path);
    /* damaged scenarios only: check found corruptions; repair them if the
     * format still flags the file for repair and check again into @res */
    int (*repair_damage)(const char *path, ic_check_result *res, ic_error **errp);
};

/*
 * A small image (created with the format, an optional raw backing file
 * "base.raw", the pre steps on clean backends) and steps run on the faulty
 * backend, each followed by a guest flush; a step is durable when both
 * returned 0.  After a failed step the run goes on with the next ones and
 * returns the first error.  Pass criterion of each run: the run succeeded
 * or failed with an error naming the image file; no step error mentions
 * corruption; the dry run fired every must_fire event; the surviving file
 * checks with 0 corruptions and 0 check errors (leaks allowed), the corrupt
 * bit clear, qemu-img check (once per distinct file) passing; every byte
 * reads back as the model allows; the virtual size is the old or the new.
 */
struct fmt_fault_scenario {
    const char *name;
    const char *opts;          /* qemu-img -o string */
    uint64_t size;             /* initial virtual size */
    bool backing;              /* raw backing file with a pattern */
    bool v2;                   /* no zero flag: discarded clusters show the backing file */
    uint32_t cluster_size;     /* for FMT_DISCARD */
    const struct fmt_step *pre;
    size_t npre;
    const struct fmt_step *steps;
    size_t nsteps;
    int must_fire[FMT_MAX_MUST_FIRE];
    size_t nmust;
    bool qemu_check;           /* also run qemu-img check on every surviving file */
    unsigned max_nth;          /* occurrences of each event to fail (0 = 8) */
    bool damaged;              /* ops->plant_damage after the build */
    uint64_t any_off, any_len; /* guest bytes that may read anything (damage) */

    /* private: built by the first setup, copied by the others */
    uint8_t *t_img, *t_want;
    size_t t_img_len;
    char *t_dir;               /* holds base.raw; each run links to it */
    uint8_t *got;              /* read buffer of the data compare */
    uint64_t *seen;            /* hashes of files qemu-img check passed */
    size_t nseen;
    const struct fmt_ops *ops;
    /* private: per-run state */
    uint64_t cap;              /* model capacity: the largest virtual size */
    uint8_t *want, *alt, *state;
    uint64_t size_old, size_new;
    bool size_certain;
    char *violation;           /* first problem run() saw, reported by check() */
};

/* Runs tu_fault_loop_run over the scenario (every event x {EIO, ENOSPC} x
 * {once, persistent} x nth 1..max_nth, the first 6 writes and flushes, the
 * flush after each event; under IC_WRAP only nth 1 and 2 writes/flushes),
 * frees the scenario's buffers and asserts 0 violations, at least one
 * injected run and at least one run that failed cleanly. */
void fmt_fault_loop(const struct fmt_ops *ops, struct fmt_fault_scenario *sc);

/* ---- 3. crash scenarios ------------------------------------------------------ */

struct fmt_crash_op {
    uint64_t off;
    uint32_t len;
    bool zero;                 /* a zero write instead of data */
};

struct fmt_crash_scenario;
typedef int (*fmt_crash_verify_fn)(struct tu_loop_ctx *ctx, ic_error **errp);

/*
 * setup creates the image (optionally over a raw "base.raw" filled with
 * tu_fill_pattern(backing_seed)); run opens it read-write and applies the
 * ops in order, op i writing tu_fill_pattern(data_seed + i), with a guest
 * flush after every flush_every-th op and after the last; `durable` counts
 * the ops a completed flush made durable.  verify is the test's own.
 */
struct fmt_crash_scenario {
    const char *name;
    const char *format;
    const char *opts;
    uint64_t disk;             /* virtual size (and backing file size) */
    bool backing;
    bool size_from_backing;    /* create without a size: it comes from base.raw */
    uint64_t backing_seed;
    const struct fmt_crash_op *ops;
    size_t nops;
    uint64_t data_seed;
    unsigned flush_every;      /* 0 or 1: after every op */
    uint64_t untouched_head;   /* guest bytes [0, n) no op writes: must keep the old data */
    fmt_crash_verify_fn verify;
    unsigned seeds;
    unsigned min_crash_points;
    bool needs_qemu_img;       /* skip the test without qemu-img */
    /* filled by run: ops made durable by a completed guest flush */
    unsigned durable;
};

/* setup and run callbacks of the crash loop (payload: the scenario);
 * usable in a fault loop with the scenario as payload too. */
int fmt_crash_setup(struct tu_loop_ctx *ctx, ic_error **errp);
int fmt_crash_run(struct tu_loop_ctx *ctx, ic_error **errp);
/* Largest op length of the scenario. */
size_t fmt_crash_max_len(const struct fmt_crash_scenario *sc);
/* Reads every op back from @img: ops made durable (all of them when the
 * run did not crash) must read exactly; with a backing file the others
 * read, per 512-byte sector, old or new contents; untouched_head keeps the
 * old contents.  Without a backing file non-durable ops may read anything. */
int fmt_crash_check_ops(const struct fmt_crash_scenario *sc, ic_image *img, bool crashed,
                        ic_error **errp);
/* Runs tu_crash_loop_run with the scenario (target "t.<format>") and
 * asserts at least min_crash_points crash points. */
void fmt_crash_loop(struct fmt_crash_scenario *sc);

#endif
