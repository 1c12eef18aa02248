/*
 * copy-zero.h - zero detection for the copy engine's writers
 * (copy-zero.c).
 */
#ifndef IC_CHAIN_COPY_ZERO_H
#define IC_CHAIN_COPY_ZERO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"

/* True when all @len bytes at @p are zero. */
bool ic_buf_is_zero(const uint8_t *p, size_t len);
/* Narrows the data run of @st at guest offset st's start, *len bytes long,
 * to the part whose host bytes are allocated in the layer's own file;
 * true when that narrowed run reads as zeroes (a hole behind a data
 * cluster).  A run whose data lives elsewhere stays as it is. */
bool ic_copy_host_hole(struct ic_image *src, const ic_block_status *st, uint64_t *len);
/* Writes the @len bytes of @buf to @dst at @off, skipping every @granule
 * (from @buf's start; the last one may be shorter) that is all zero and
 * coalescing the others into as few writes as possible. */
int ic_copy_write_nonzero(struct ic_image *dst, const uint8_t *buf, size_t len, uint64_t off,
                          size_t granule, ic_error **errp);

#endif
