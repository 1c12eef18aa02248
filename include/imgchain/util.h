/*
 * imgchain/util.h - small helpers the CLI and embedders share with the
 * library, so sizes are parsed the same way everywhere.
 */
#ifndef IMGCHAIN_UTIL_H
#define IMGCHAIN_UTIL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Parses a size: a byte count with an optional suffix k/K, M, G, T, P, E
 * (powers of 1024) or b/B (bytes); a fraction is allowed with a suffix
 * ("1.5G").
 * @return 0; -EINVAL malformed; -ERANGE does not fit in 64 bits.
 */
IC_EXTERN int ic_parse_size(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
