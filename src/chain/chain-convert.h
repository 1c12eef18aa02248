/*
 * chain-convert.h - the image-to-image copy of convert (chain-convert.c),
 * for convert-target.c and tests.
 */
#ifndef IC_CHAIN_CHAIN_CONVERT_H
#define IC_CHAIN_CHAIN_CONVERT_H

#include "imgchain/chain.h"
#include "chain.h"
#include "copy-engine.h"

/* Opens one more independent read-only handle on the source. */
typedef int (*ic_copy_source_opener)(ic_image **out, void *payload, ic_error **errp);

/* ic_image_copy(), with more readers when @open_more is not NULL (each with
 * a handle it opens), filling @stats (may be NULL). */
int ic_copy_image(ic_image *dst, ic_image *src, ic_copy_source_opener open_more, void *payload,
                  const ic_convert_options *opts, struct ic_copy_engine_stats *stats,
                  ic_error **errp);

#endif
