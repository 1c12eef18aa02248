/*
 * chain-convert-backing.h - convert -B (chain-convert-backing.c).
 */
#ifndef IC_CHAIN_CHAIN_CONVERT_BACKING_H
#define IC_CHAIN_CHAIN_CONVERT_BACKING_H

#include "imgchain/chain.h"

/* Copies into @dst (open read-write with its backing file) every range
 * @src's top image allocates above its own backing file, as @src reads
 * it: zero runs as zero writes that hide @dst's backing file, the rest as
 * data.  Does not flush @dst. */
int ic_convert_top_into_overlay(ic_image *src, ic_image *dst, const ic_convert_options *opts,
                                ic_error **errp);

#endif
