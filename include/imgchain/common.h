/*
 * imgchain/common.h - visibility macro, version numbers and basic types.
 *
 * Every public function is declared with IC_EXTERN.  The library is built
 * with -fvisibility=hidden, so only what this macro marks is exported; the
 * linker version script (src/libimgchain.syms) then puts it under a version
 * node.
 */
#ifndef IMGCHAIN_COMMON_H
#define IMGCHAIN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#if defined(__GNUC__) && __GNUC__ >= 4
#define IC_EXTERN __attribute__((visibility("default")))
#else
#define IC_EXTERN
#endif

#define IC_VERSION_MAJOR 0
#define IC_VERSION_MINOR 1
#define IC_VERSION_PATCH 0
#define IC_VERSION_STRING "0.1.0"

/** Returns the library's version string ("MAJOR.MINOR.PATCH"). */
IC_EXTERN const char *ic_version(void);

#endif
