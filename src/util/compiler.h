/*
 * compiler.h - attribute macros used across the tree.
 */
#ifndef IC_UTIL_COMPILER_H
#define IC_UTIL_COMPILER_H

#define IC_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define IC_WARN_UNUSED __attribute__((warn_unused_result))
#define IC_UNUSED __attribute__((unused))
#define IC_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define IC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define IC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define IC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IC_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define IC_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define IC_DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define IC_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)

#endif
