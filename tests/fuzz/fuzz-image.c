/*
 * fuzz-image.c - libFuzzer target: open arbitrary bytes as an image and use
 * it read-only (header, extensions, L1/L2, refcounts, snapshot table, QED
 * tables, compressed clusters).
 *
 * The first input byte picks the format (qcow2, qed, or probing); the rest
 * is the image file, held by the memory backend.  Every path must fail
 * cleanly or succeed; a crash, a sanitizer report or a leak is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imgchain/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const formats[] = { "qcow2", "qed", NULL };
    const char *fmt = formats[data[0] % 3];
    ic_io *io = NULL;
    if (ic_io_open_mem(&io, "fuzz.img", NULL) < 0)
        return 0;
    if (size > 1 && io->ops->pwrite(io, data + 1, size - 1, 0) < 0) {
        ic_io_close(io);
        return 0;
    }
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = fmt;
    o.flags = IC_OPEN_NO_BACKING | ((data[0] & 8) ? IC_OPEN_CHECK : 0);
    ic_image *img = NULL;
    ic_error *err = NULL;
    if (ic_image_open_io(&img, io, &o, &err) < 0) {
        ic_error_free(err);
        return 0;
    }
    uint64_t vsize = ic_image_size(img);
    uint64_t off = 0;
    uint8_t buf[65536];
    /* walk block status and read a bounded amount of what it reports */
    for (int n = 0; n < 64 && off < vsize; n++) {
        ic_block_status bs;
        if (ic_image_block_status(img, NULL, off, vsize - off, &bs, &err) < 0) {
            ic_error_free(err);
            err = NULL;
            break;
        }
        size_t len = bs.length < sizeof(buf) ? (size_t)bs.length : sizeof(buf);
        if (ic_image_pread(img, buf, len, off, &err) < 0) {
            ic_error_free(err);
            err = NULL;
        }
        off += bs.length;
    }
    ic_image_info *info = NULL;
    if (ic_image_get_info(img, &info, &err) < 0)
        ic_error_free(err);
    ic_image_info_free(info);
    err = NULL;
    if (data[0] & 8) {
        ic_check_result r;
        if (ic_image_check(img, 0, NULL, NULL, &r, &err) < 0)
            ic_error_free(err);
    }
    ic_image_close(img);
    return 0;
}
