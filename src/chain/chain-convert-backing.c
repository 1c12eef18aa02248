/*
 * chain-convert-backing.c - convert -B: the target is an overlay of a
 * given backing file (qemu-img convert -B BACKING -F FMT).
 *
 * Design notes:
 *  1. qemu-img's rule: the target's backing file stands for the source's
 *     backing chain, so only what the source's top image allocates above
 *     its own backing file is copied; every other range is left
 *     unallocated in the target, which then reads its backing file there.
 *     The target does not read as the source where the source's backing
 *     chain and BACKING differ: that is the caller's promise, as in
 *     qemu-img.
 *  2. A range the top image allocates is copied as it reads through the
 *     source chain: a zero run (zero cluster, or data that is all zero in
 *     a CONVERT_BACKING_GRANULE piece) is written as zeroes without
 *     unmapping, so it hides the backing file; the rest is written as
 *     data.  The formats turn zero writes into zero clusters where they
 *     have them (qcow2 v3, QED) and into written zeroes where not
 *     (qcow2 v2), as qemu does.
 *  3. One thread, in guest order, reads of at most CONVERT_BACKING_BUF
 *     bytes: this path copies one layer, not a chain, and stays apart from
 *     the parallel engine of chain-convert.c.  Progress (and with it the
 *     rate limit) is reported after every piece, in guest bytes, from 0 to
 *     the virtual size.  The -r limit counts the bytes of the ranges
 *     copied (chain-ratelimit.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/chain.h"
#include "chain.h"
#include "chain-convert-backing.h"
#include "chain-ratelimit.h"

#define CONVERT_BACKING_BUF     (1u << 20)
#define CONVERT_BACKING_GRANULE 4096u

static bool all_zero(const uint8_t *b, size_t n)
{
    return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* Writes @buf (@n bytes at @off): zero pieces as zero writes, others as data. */
static int write_piece(ic_image *dst, const uint8_t *buf, size_t n, uint64_t off, ic_error **errp)
{
    size_t i = 0;
    while (i < n) {
        size_t g = n - i < CONVERT_BACKING_GRANULE ? n - i : CONVERT_BACKING_GRANULE;
        bool z = all_zero(buf + i, g);
        size_t j = i + g;
        while (j < n) {
            size_t h = n - j < CONVERT_BACKING_GRANULE ? n - j : CONVERT_BACKING_GRANULE;
            if (all_zero(buf + j, h) != z)
                break;
            j += h;
        }
        int ret = z ? ic_image_pwrite_zeroes(dst, off + i, j - i, 0, errp)
                    : ic_image_pwrite(dst, buf + i, j - i, off + i, errp);
        if (ret < 0)
            return ret;
        i = j;
    }
    return 0;
}

int ic_convert_top_into_overlay(ic_image *src, ic_image *dst, const ic_convert_options *opts,
                                ic_error **errp)
{
    uint64_t size = ic_image_size(src);
    const ic_image *base = ic_image_backing(src);
    uint8_t *buf = malloc(CONVERT_BACKING_BUF);
    if (!buf)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    struct ic_ratelimit rl;
    ic_ratelimit_init(&rl, opts->rate_limit, NULL, NULL, NULL);
    if (opts->progress)
        opts->progress(0, size, opts->payload);
    int ret = 0;
    for (uint64_t off = 0; off < size && ret == 0;) {
        ic_block_status st;
        if ((ret = ic_image_block_status(src, base, off, size - off, &st, errp)) < 0)
            break;
        uint64_t len = st.length;
        if ((st.flags & IC_BS_ALLOCATED) && st.depth == 0) {
            if (st.flags & IC_BS_ZERO) {
                ret = ic_image_pwrite_zeroes(dst, off, len, 0, errp);
                ic_ratelimit_account(&rl, len);
            } else {
                for (uint64_t done = 0; done < len && ret == 0;) {
                    size_t n = len - done < CONVERT_BACKING_BUF ? (size_t)(len - done)
                                                                : CONVERT_BACKING_BUF;
                    ret = ic_image_pread(src, buf, n, off + done, errp);
                    if (ret == 0)
                        ret = write_piece(dst, buf, n, off + done, errp);
                    ic_ratelimit_account(&rl, n);
                    done += n;
                    if (ret == 0 && opts->progress)
                        opts->progress(off + done, size, opts->payload);
                }
            }
        }
        off += len;
        if (ret == 0 && opts->progress)
            opts->progress(off, size, opts->payload);
    }
    free(buf);
    return ret;
}
