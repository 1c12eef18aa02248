/*
 * copy-compress.h - the compression workers of convert -c
 * (copy-compress.c).
 */
#ifndef IC_CHAIN_COPY_COMPRESS_H
#define IC_CHAIN_COPY_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "chain.h"

struct ic_copy_compress;

/* Workers compressing @dst's clusters of @granule bytes, for buffers of at
 * most @buf_size bytes; NULL when @dst does not split compression
 * (compress + pwrite_precompressed) or memory is short: then
 * ic_copy_compress_write compresses on the caller's thread. */
struct ic_copy_compress *ic_copy_compress_create(struct ic_image *dst, size_t granule,
                                                 size_t buf_size);
void ic_copy_compress_destroy(struct ic_copy_compress *p);
/* Writes the @len bytes of @buf to @dst at @off (granule aligned) as
 * compressed clusters, one per @granule (the last may be shorter), all-zero
 * clusters skipped, in guest order; through @p's workers when @p is not
 * NULL. */
int ic_copy_compress_write(struct ic_copy_compress *p, struct ic_image *dst, const uint8_t *buf,
                           size_t len, uint64_t off, size_t granule, ic_error **errp);

#endif
