/*
 * io-mem.h - the in-memory backend's state, visible to tests.
 */
#ifndef IC_IO_MEM_H
#define IC_IO_MEM_H

#include "io.h"

struct ic_io_mem {
    ic_io base;
    uint8_t *data;
    uint64_t size;
    uint64_t cap;
    unsigned long n_read, n_write, n_flush;
};

/* The mem state behind @io, or NULL if @io is not a memory backend. */
struct ic_io_mem *ic_io_mem_of(ic_io *io);

#endif
