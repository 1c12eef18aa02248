/*
 * copy-zero.c - zero detection for the copy engine's writers: what reads
 * as zeroes is neither read (host holes behind data clusters) nor written
 * (all-zero granules, qemu-img convert's -S 4k), since the targets the
 * engine writes read as zeroes already where nothing is written.
 */
#include <string.h>

#include "copy-zero.h"
#include "util/overflow.h"

/* Checks a head, then compares the buffer with itself shifted by the head
 * (memcmp is vectorised by libc). */
bool ic_buf_is_zero(const uint8_t *p, size_t len)
{
    size_t head = len < 64 ? len : 64;
    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    if (len <= head)
        return true;
    return memcmp(p, p + head, len - head) == 0;
}

static struct ic_image *layer_at(struct ic_image *top, unsigned depth)
{
    struct ic_image *l = top;
    while (l && depth--)
        l = l->backing;
    return l;
}

/* A data cluster backed by a hole in the host file (metadata
 * preallocation, a sparse data file) reads as zeroes, and qemu skips it
 * too.  Only asked when the data lives in the layer's own file (the name
 * matches); a data file is asked nothing. */
bool ic_copy_host_hole(struct ic_image *src, const ic_block_status *st, uint64_t *len)
{
    if (!(st->flags & IC_BS_OFFSET_VALID) || !st->filename)
        return false;
    struct ic_image *l = layer_at(src, st->depth);
    if (!l || strcmp(ic_io_name(l->file), st->filename) != 0)
        return false;
    uint64_t pnum = 0;
    int data = ic_io_block_status(l->file, st->host_offset, *len, &pnum);
    if (data < 0 || pnum == 0 || pnum > *len)
        return false;
    *len = pnum;
    return data == 0;
}

int ic_copy_write_nonzero(struct ic_image *dst, const uint8_t *buf, size_t len, uint64_t off,
                          size_t granule, ic_error **errp)
{
    size_t run_start = 0, run_len = 0;
    int ret;
    for (size_t pos = 0; pos < len;) {
        size_t g = IC_MIN(granule, len - pos);
        if (ic_buf_is_zero(buf + pos, g)) {
            if (run_len) {
                ret = ic_image_pwrite(dst, buf + run_start, run_len, off + run_start, errp);
                if (ret < 0)
                    return ret;
                run_len = 0;
            }
        } else {
            if (!run_len)
                run_start = pos;
            run_len += g;
        }
        pos += g;
    }
    if (run_len)
        return ic_image_pwrite(dst, buf + run_start, run_len, off + run_start, errp);
    return 0;
}
