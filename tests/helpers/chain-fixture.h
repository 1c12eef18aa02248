/*
 * chain-fixture.h - the fixture of the chain test programs (tests/chain):
 * a temporary directory of image files and short helpers that name, create,
 * open, write and read the images in it by file name.
 *
 * Usage: pass cf_setup/cf_teardown to cmocka (per test or per group), then
 * refer to images by their name in the directory:
 *
 *     cf_create("base.raw", "raw", 4 << 20, NULL, NULL, NULL);
 *     cf_write_byte("base.raw", 0, 65536, 1);
 *     cf_create("top.qcow2", "qcow2", 0, "base.raw", "raw", NULL);
 *     uint8_t *v = cf_view("top.qcow2", &n);
 *
 * Every helper fails the running cmocka test itself, with the image name
 * and the library's error message, so a test stays one line per step.
 *
 * The qcow2 unit tests (tests/unit/test-qcow2-*.c) use it too: for their
 * temp directory, create/open by name and the qemu-img check oracle.
 */
#ifndef IC_TESTS_CHAIN_FIXTURE_H
#define IC_TESTS_CHAIN_FIXTURE_H

#include <stdint.h>
#include "imgchain/image.h"

/* The directory: a fresh tu_tmpdir() made by cf_setup(), NULL outside. */
extern char *cf_dir;

/* cmocka setup/teardown: make cf_dir, and remove it with all its files. */
int cf_setup(void **state);
int cf_teardown(void **state);
/* Removes every file of cf_dir; the directory stays, at the same path. */
void cf_reset(void);

/* "cf_dir/name" in a static buffer that the 8th next call reuses (a ring),
 * so several can be used in one expression; never free it. */
char *cf_path(const char *name);

/* Creates image @name (@size 0: the backing file's size; @backing, @bfmt,
 * @opts may be NULL). */
void cf_create(const char *name, const char *fmt, uint64_t size, const char *backing,
               const char *bfmt, const char *opts);
/* Creates image @name from a full option set (format, size, backing ...):
 * for the fields cf_create does not take, e.g. no_backing_open to name a
 * backing file that does not exist. */
void cf_create_co(const char *name, const ic_create_options *co);
/* Opens image @name with its chain and @flags (IC_OPEN_*). */
ic_image *cf_open(const char *name, unsigned flags);

/* Writes [off, off+len) of image @name, every byte @byte; 0 writes zeroes
 * (ic_image_pwrite_zeroes). */
void cf_write_byte(const char *name, uint64_t off, uint64_t len, uint8_t byte);
/* Writes [off, off+len) of image @name with bytes seed + (offset >> 16): a
 * value that changes every 64 KiB, so a chunk copied to the wrong offset
 * shows; @seed 0 writes zeroes. */
void cf_write_pattern(const char *name, uint64_t off, uint64_t len, uint8_t seed);

/* The whole guest view of image @name (read through its chain), malloc'd;
 * its size in *size. */
uint8_t *cf_view(const char *name, uint64_t *size);

/* `qemu-img check` of image @name (run in cf_dir) must exit 0: no errors
 * and no leaks; fails the test with the output otherwise.  Does nothing
 * when qemu-img is not installed. */
void cf_assert_qemu_clean(const char *name);

#endif
