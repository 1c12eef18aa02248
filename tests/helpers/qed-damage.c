/*
 * qed-damage.c - damages QED image files on purpose (see qed-damage.h).
 *
 * Design notes:
 *  1. Self-contained: parses the little-endian header and tables itself
 *     with plain pread/pwrite, so a bug in the driver under test cannot
 *     hide in the helper that builds its test inputs.
 *  2. Only the named bytes change; nothing else in the file is rewritten.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qed-damage.h"

static int rw(const char *path, void *buf, size_t len, uint64_t off, bool write)
{
    int fd = open(path, write ? O_RDWR : O_RDONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
    int ret = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return ret;
}

int qd_peek_le64(const char *path, uint64_t off, uint64_t *v)
{
    uint8_t b[8];
    int ret = rw(path, b, 8, off, false);
    if (ret < 0)
        return ret;
    *v = 0;
    for (int i = 7; i >= 0; i--)
        *v = (*v << 8) | b[i];
    return 0;
}

int qd_poke_le64(const char *path, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return rw(path, b, 8, off, true);
}

int qd_poke_le32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return rw(path, b, 4, off, true);
}

int qd_read_info(const char *path, struct qd_info *out)
{
    uint8_t h[64];
    int ret = rw(path, h, sizeof(h), 0, false);
    if (ret < 0)
        return ret;
    uint64_t v;
#define LE32(o) ((uint32_t)h[o] | (uint32_t)h[o + 1] << 8 | (uint32_t)h[o + 2] << 16 | \
                 (uint32_t)h[o + 3] << 24)
    out->cluster_size = LE32(4);
    out->table_size = LE32(8);
    out->header_size = LE32(12);
#undef LE32
    if ((ret = qd_peek_le64(path, 16, &v)) < 0)
        return ret;
    out->features = v;
    if ((ret = qd_peek_le64(path, 40, &v)) < 0)
        return ret;
    out->l1_offset = v;
    if ((ret = qd_peek_le64(path, 48, &v)) < 0)
        return ret;
    out->image_size = v;
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    out->file_size = (uint64_t)st.st_size;
    return 0;
}

int qd_set_need_check(const char *path, bool on)
{
    uint64_t f;
    int ret = qd_peek_le64(path, 16, &f);
    if (ret < 0)
        return ret;
    f = on ? (f | 2) : (f & ~(uint64_t)2);
    return qd_poke_le64(path, 16, f);
}

int qd_set_l1(const char *path, uint32_t index, uint64_t value)
{
    struct qd_info in;
    int ret = qd_read_info(path, &in);
    if (ret < 0)
        return ret;
    return qd_poke_le64(path, in.l1_offset + (uint64_t)index * 8, value);
}

int qd_l2_entry_addr(const char *path, uint64_t guest, uint64_t *addr)
{
    struct qd_info in;
    int ret = qd_read_info(path, &in);
    if (ret < 0)
        return ret;
    uint64_t entries = (uint64_t)in.table_size * in.cluster_size / 8;
    uint64_t cl = guest / in.cluster_size;
    uint64_t l1i = cl / entries, l2i = cl % entries;
    uint64_t l2;
    if ((ret = qd_peek_le64(path, in.l1_offset + l1i * 8, &l2)) < 0)
        return ret;
    if (l2 == 0)
        return -ENOENT;
    *addr = l2 + l2i * 8;
    return 0;
}

int qd_get_l2(const char *path, uint64_t guest, uint64_t *value)
{
    uint64_t a;
    int ret = qd_l2_entry_addr(path, guest, &a);
    return ret < 0 ? ret : qd_peek_le64(path, a, value);
}

int qd_set_l2(const char *path, uint64_t guest, uint64_t value)
{
    uint64_t a;
    int ret = qd_l2_entry_addr(path, guest, &a);
    return ret < 0 ? ret : qd_poke_le64(path, a, value);
}

int qd_append_clusters(const char *path, unsigned n)
{
    struct qd_info in;
    int ret = qd_read_info(path, &in);
    if (ret < 0)
        return ret;
    uint8_t *junk = malloc(in.cluster_size);
    if (!junk)
        return -ENOMEM;
    memset(junk, 0xa5, in.cluster_size);
    uint64_t end = in.file_size / in.cluster_size * in.cluster_size;
    for (unsigned i = 0; i < n && ret == 0; i++)
        ret = rw(path, junk, in.cluster_size, end + (uint64_t)i * in.cluster_size, true);
    free(junk);
    return ret;
}

int qd_double_reference(const char *path, uint64_t guest_a, uint64_t guest_b)
{
    uint64_t va;
    int ret = qd_get_l2(path, guest_a, &va);
    if (ret < 0)
        return ret;
    if (va <= 1)
        return -EINVAL; /* guest_a has no data cluster */
    return qd_set_l2(path, guest_b, va);
}
