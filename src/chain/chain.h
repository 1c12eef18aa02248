/*
 * chain.h - opening backing chains (interface to src/snap and tests).
 */
#ifndef IC_CHAIN_CHAIN_H
#define IC_CHAIN_CHAIN_H

#include "image/image.h"

#define IC_CHAIN_DEFAULT_MAX_DEPTH 256

/* Opens the backing chain below @img (which is open), following recorded
 * names and formats.  @depth_left limits the chain's length. */
int ic_chain_open_backing(struct ic_image *img, unsigned depth_left, ic_error **errp);

#endif
