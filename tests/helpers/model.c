/*
 * model.c - the raw reference model (QEMU blkverify; docs/architecture.md, test kinds).
 *
 * Design notes:
 *  1. The model is the guest's view as a flat byte array: tests apply every
 *     guest write to the image and to the model, then compare.  Reading the
 *     image goes through the whole chain, so this also checks layer order
 *     (base <- mid <- top) the way nbdkit's test-layers does.
 *  2. Comparison reads in 1 MiB chunks and reports the first differing byte
 *     offset with a few bytes of context, which is what one needs to find a
 *     wrong L2 entry or a COW that copied the wrong cluster.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Chunk used when reading an image for comparison. */
#define MODEL_CHUNK (1u << 20)

struct tu_model *tu_model_new(uint64_t size)
{
    struct tu_model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->data = calloc(1, size ? (size_t)size : 1);
    assert_non_null(m->data);
    m->size = size;
    return m;
}

struct tu_model *tu_model_from_image(ic_image *img)
{
    struct tu_model *m = tu_model_new(ic_image_size(img));
    ic_error *err = NULL;
    for (uint64_t off = 0; off < m->size; off += MODEL_CHUNK) {
        size_t n = (size_t)(m->size - off < MODEL_CHUNK ? m->size - off : MODEL_CHUNK);
        int ret = ic_image_pread(img, m->data + off, n, off, &err);
        TU_ASSERT_OK(ret, err);
    }
    return m;
}

void tu_model_free(struct tu_model *m)
{
    if (!m)
        return;
    free(m->data);
    free(m);
}

void tu_model_write(struct tu_model *m, const void *buf, size_t len, uint64_t off)
{
    assert_true(off <= m->size && len <= m->size - off);
    memcpy(m->data + off, buf, len);
}

void tu_model_zero(struct tu_model *m, uint64_t off, uint64_t len)
{
    assert_true(off <= m->size && len <= m->size - off);
    memset(m->data + off, 0, (size_t)len);
}

int tu_model_save(const struct tu_model *m, const char *path)
{
    return tu_write_file(path, m->data, (size_t)m->size);
}

void tu_model_assert_image_(const struct tu_model *m, ic_image *img, const char *file, int line)
{
    if (ic_image_size(img) != m->size) {
        print_error("%s: virtual size %llu, model %llu\n", ic_image_filename(img),
                    (unsigned long long)ic_image_size(img), (unsigned long long)m->size);
        _fail(file, line);
    }
    uint8_t *buf = malloc(MODEL_CHUNK);
    assert_non_null(buf);
    ic_error *err = NULL;
    for (uint64_t off = 0; off < m->size; off += MODEL_CHUNK) {
        size_t n = (size_t)(m->size - off < MODEL_CHUNK ? m->size - off : MODEL_CHUNK);
        int ret = ic_image_pread(img, buf, n, off, &err);
        if (ret < 0) {
            print_error("%s: read at %llu failed: %s\n", ic_image_filename(img),
                        (unsigned long long)off, ic_error_message(err));
            ic_error_free(err);
            free(buf);
            _fail(file, line);
        }
        if (memcmp(buf, m->data + off, n) != 0) {
            size_t i = 0;
            while (buf[i] == m->data[off + i])
                i++;
            print_error("%s: guest byte %llu (0x%llx) is 0x%02x, model has 0x%02x\n",
                        ic_image_filename(img), (unsigned long long)(off + i),
                        (unsigned long long)(off + i), buf[i], m->data[off + i]);
            free(buf);
            _fail(file, line);
        }
    }
    free(buf);
}

void tu_model_assert_file_(const struct tu_model *m, const char *path, const char *file, int line)
{
    ic_image *img = NULL;
    ic_error *err = NULL;
    int ret = ic_image_open(&img, path, NULL, &err);
    if (ret < 0) {
        print_error("cannot open %s: %s\n", path, ic_error_message(err));
        ic_error_free(err);
        _fail(file, line);
    }
    tu_model_assert_image_(m, img, file, line);
    ic_image_close(img);
}
