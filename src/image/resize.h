/*
 * resize.h - helpers the drivers' resize ops share (image-resize.c).
 */
#ifndef IC_IMAGE_RESIZE_H
#define IC_IMAGE_RESIZE_H

#include "image.h"

/* Makes [off, off+len) of @io hold zeroes with its space allocated:
 * IC_PREALLOC_FALLOC asks the file system (fallocate), falling back to
 * writing zeroes when it cannot; IC_PREALLOC_FULL writes zeroes.  Other
 * modes do nothing.  Extends the file when the range ends past it. */
int ic_resize_fill(ic_io *io, uint64_t off, uint64_t len, ic_prealloc mode) IC_WARN_UNUSED;

/* True when @img's backing image holds data past @old_size that a growing
 * resize would let show through (qemu: backing length > old size). */
bool ic_resize_backing_shows(const struct ic_image *img, uint64_t old_size);

#endif
