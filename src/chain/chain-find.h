/*
 * chain-find.h - finding a backing image of an open chain by name
 * (qemu-img's backing-name rule, then a path from the current folder).
 */
#ifndef IC_CHAIN_CHAIN_FIND_H
#define IC_CHAIN_CHAIN_FIND_H

#include "image/image.h"

/* The backing layer of @top's chain that @name designates, or NULL.  Tried
 * first as qemu-img does: @name relative to the folder of each overlay,
 * against the backing name that overlay records; then as a path from the
 * current folder.  *parent (when not NULL) receives the layer's overlay. */
struct ic_image *ic_chain_find_backing(struct ic_image *top, const char *name,
                                       struct ic_image **parent);

#endif
