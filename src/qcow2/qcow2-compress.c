/*
 * qcow2-compress.c - compressed cluster payloads: raw deflate (zlib) and
 * zstd (as QEMU's qcow2 compression helpers).
 *
 * Design notes:
 *  Owns the payload format of compressed clusters; the
 *  descriptors themselves are parsed in qcow2-cluster.c (both in
 *  docs/qcow2.md, "Compressed clusters").
 *  1. zlib: raw deflate with a 4 KiB window (windowBits -12), as qemu
 *     writes it; any raw deflate stream is accepted on read.
 *  2. Decompression stops as soon as one full cluster is produced: the
 *     stored range may carry bytes of the next compressed cluster.
 *  3. Output that does not fit in the caller's buffer is -ENOSPC: the
 *     caller then stores the cluster uncompressed (qemu's rule: only
 *     payloads smaller than a cluster are worth storing compressed).
 *  4. Input is untrusted: a stream that ends early or is malformed is
 *     -EIO, never a crash; the libraries bound every write by the sizes
 *     we pass.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "qcow2.h"

/* qemu's zlib settings: raw deflate, 4 KiB window, default level. */
#define QCOW2_ZLIB_WINDOW_BITS (-12)
#define QCOW2_ZSTD_LEVEL 3

static int64_t zlib_compress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, QCOW2_ZLIB_WINDOW_BITS, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int ret = deflate(&z, Z_FINISH);
    int64_t out = ret == Z_STREAM_END ? (int64_t)(dst_len - z.avail_out) : -ENOSPC;
    deflateEnd(&z);
    return out;
}

static int zlib_decompress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, QCOW2_ZLIB_WINDOW_BITS) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int ret = inflate(&z, Z_FINISH);
    int out = 0;
    /* Z_BUF_ERROR with a full output buffer: the cluster is complete and
     * the rest of the input belongs to sector padding. */
    if (!(ret == Z_STREAM_END || (ret == Z_BUF_ERROR && z.avail_out == 0)) || z.avail_out)
        out = -EIO;
    inflateEnd(&z);
    return out;
}

static int64_t zstd_compress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
    size_t n = ZSTD_compress(dst, dst_len, src, src_len, QCOW2_ZSTD_LEVEL);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
    return (int64_t)n;
}

static int zstd_decompress(void *dst, size_t dst_len, const void *src, size_t src_len)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return -ENOMEM;
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    int ret = 0;
    /* As qemu: loop until the cluster is full; trailing input is padding. */
    while (out.pos < out.size) {
        size_t before_in = in.pos, before_out = out.pos;
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (out.pos < out.size && in.pos == in.size && before_in == in.pos &&
            before_out == out.pos) {
            ret = -EIO; /* input exhausted before one cluster was produced */
            break;
        }
        if (r == 0 && out.pos < out.size && in.pos == in.size) {
            ret = -EIO; /* frame ended short */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return ret;
}

int64_t qcow2_compress(uint8_t type, void *dst, size_t dst_len, const void *src, size_t src_len)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_compress(dst, dst_len, src, src_len);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_compress(dst, dst_len, src, src_len);
    default:
        return -ENOTSUP;
    }
}

int qcow2_decompress(uint8_t type, void *dst, size_t dst_len, const void *src, size_t src_len)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_decompress(dst, dst_len, src, src_len);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_decompress(dst, dst_len, src, src_len);
    default:
        return -ENOTSUP;
    }
}
