/*
 * overflow.h - overflow-checked arithmetic (after nbdkit's checked-overflow.h).
 *
 * Every size, offset or count that comes from disk goes through these before
 * it is used to allocate, index or seek.  Each returns true when the result
 * overflowed (and then *r is unspecified), so the idiom is
 *
 *     if (ic_mul_overflow(n, 8, &bytes) || bytes > LIMIT)
 *         return ic_corrupt(...);
 */
#ifndef IC_UTIL_OVERFLOW_H
#define IC_UTIL_OVERFLOW_H

#include <stdbool.h>
#include <stdint.h>

#define ic_add_overflow(a, b, r) __builtin_add_overflow((a), (b), (r))
#define ic_mul_overflow(a, b, r) __builtin_mul_overflow((a), (b), (r))
#define ic_sub_overflow(a, b, r) __builtin_sub_overflow((a), (b), (r))

/* Range [off, off+len) lies inside [0, limit) without overflow. */
static inline bool ic_range_within(uint64_t off, uint64_t len, uint64_t limit)
{
    uint64_t end;
    return !ic_add_overflow(off, len, &end) && end <= limit;
}

#endif
