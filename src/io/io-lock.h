/*
 * io-lock.h - qemu-compatible image locking on a file descriptor.
 */
#ifndef IC_IO_LOCK_H
#define IC_IO_LOCK_H

#include <stdbool.h>
#include <stdint.h>
#include "imgchain/sys/io.h"

/* The lock bytes this descriptor currently holds (bit i = byte 100+i,
 * bit 8+i = byte 200+i). */
struct ic_lock_state {
    uint32_t held;
    bool use_ofd;
    bool probed;
};

/* Takes the byte set for @mode (after checking that no other process holds
 * a conflicting one) and releases the rest.  -EBUSY + error naming @name
 * when the image is in use. */
int ic_lock_apply(struct ic_lock_state *st, int fd, enum ic_lock_mode mode,
                  const char *name, ic_error **errp);

#endif
