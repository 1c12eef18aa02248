/*
 * bigbuf.h - large I/O buffers (bigbuf.c): the copy engine's slots, whose
 * contents go to the device, often with O_DIRECT.
 */
#ifndef IC_UTIL_BIGBUF_H
#define IC_UTIL_BIGBUF_H

#include <stddef.h>

/* The alignment of a buffer of at least this size (a huge page). */
#define IC_BIGBUF_HUGE ((size_t)2 << 20)

/* A buffer of @size bytes, page-aligned, and IC_BIGBUF_HUGE-aligned and
 * offered huge pages when @size is at least IC_BIGBUF_HUGE; NULL when out
 * of memory.  Free it with ic_bigbuf_free and the same @size. */
void *ic_bigbuf_alloc(size_t size);
void ic_bigbuf_free(void *buf, size_t size);

#endif
