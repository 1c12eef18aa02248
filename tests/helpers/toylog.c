/*
 * toylog.c - the toy log format of toylog.h.
 *
 * Design notes:
 *  1. The header is one sector, rewritten in place: crash-safe because a
 *     sector write is atomic (old or new), which io-crash.c models.
 *  2. Invariant: every record below the header's count is complete and
 *     checksummed, because it was flushed before the count was raised.
 */
#include <errno.h>
#include <string.h>

#include "toylog.h"
#include "util/endian.h"

static uint64_t fnv64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void make_header(uint8_t *h, uint64_t count)
{
    memset(h, 0, TOYLOG_SECTOR);
    memcpy(h, "TOYLOG01", 8);
    ic_store_le64(h + 8, count);
    ic_store_le64(h + 16, fnv64(h, 16));
}

static void make_record(uint8_t *r, uint64_t seq)
{
    ic_store_le64(r, seq);
    for (unsigned i = 16; i < TOYLOG_SECTOR; i++)
        r[i] = (uint8_t)(seq * 31 + i);
    ic_store_le64(r + 8, fnv64(r + 16, TOYLOG_SECTOR - 16));
}

int toylog_create(ic_io *io)
{
    uint8_t h[TOYLOG_SECTOR];
    make_header(h, 0);
    int ret = ic_io_truncate(io, 0);
    if (ret == 0) {
        ic_io_event(io, IC_EV_HEADER_UPDATE);
        ret = ic_io_pwrite(io, h, sizeof(h), 0);
    }
    return ret < 0 ? ret : ic_io_flush(io);
}

static int read_count(ic_io *io, uint64_t *count)
{
    uint8_t h[TOYLOG_SECTOR];
    int ret = ic_io_pread(io, h, sizeof(h), 0);
    if (ret < 0)
        return ret;
    if (memcmp(h, "TOYLOG01", 8) || ic_load_le64(h + 16) != fnv64(h, 16))
        return -EUCLEAN;
    *count = ic_load_le64(h + 8);
    return 0;
}

int toylog_append(ic_io *io, unsigned n, bool misordered)
{
    uint64_t count;
    int ret = read_count(io, &count);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < n; i++, count++) {
        uint8_t h[TOYLOG_SECTOR], r[TOYLOG_SECTOR];
        make_header(h, count + 1);
        make_record(r, count);
        uint64_t roff = TOYLOG_SECTOR * (count + 1);
        if (misordered) {
            ic_io_event(io, IC_EV_HEADER_UPDATE);
            if ((ret = ic_io_pwrite(io, h, sizeof(h), 0)) < 0)
                return ret;
            ic_io_event(io, IC_EV_DATA_WRITE);
            if ((ret = ic_io_pwrite(io, r, sizeof(r), roff)) < 0)
                return ret;
            if ((ret = ic_io_flush(io)) < 0)
                return ret;
            continue;
        }
        ic_io_event(io, IC_EV_DATA_WRITE);
        if ((ret = ic_io_pwrite(io, r, sizeof(r), roff)) < 0)
            return ret;
        /* if we crash before the header update we only leak the record */
        if ((ret = ic_io_flush(io)) < 0)
            return ret;
        ic_io_event(io, IC_EV_HEADER_UPDATE);
        if ((ret = ic_io_pwrite(io, h, sizeof(h), 0)) < 0)
            return ret;
        if ((ret = ic_io_flush(io)) < 0)
            return ret;
    }
    return 0;
}

int toylog_check(ic_io *io, uint64_t *count, uint64_t *corrupt, uint64_t *leaked)
{
    *count = 0;
    *corrupt = 0;
    *leaked = 0;
    int64_t size = ic_io_get_size(io);
    if (size < 0)
        return (int)size;
    int ret = read_count(io, count);
    if (ret == -EUCLEAN) {
        *corrupt = 1;
        *count = 0;
        return 0;
    }
    if (ret < 0)
        return ret;
    uint64_t nrec = (uint64_t)size / TOYLOG_SECTOR;
    nrec = nrec ? nrec - 1 : 0;
    for (uint64_t i = 0; i < *count; i++) {
        uint8_t r[TOYLOG_SECTOR];
        if ((ret = ic_io_pread(io, r, sizeof(r), TOYLOG_SECTOR * (i + 1))) < 0)
            return ret;
        if (ic_load_le64(r) != i || ic_load_le64(r + 8) != fnv64(r + 16, TOYLOG_SECTOR - 16))
            (*corrupt)++;
    }
    if (nrec > *count)
        *leaked = nrec - *count;
    return 0;
}

int toylog_check_path(const char *path, uint64_t *count, uint64_t *corrupt, uint64_t *leaked)
{
    ic_io *io;
    int ret = ic_io_open_file(&io, path, IC_IO_NOLOCK, NULL);
    if (ret < 0)
        return ret;
    ret = toylog_check(io, count, corrupt, leaked);
    ic_io_close(io);
    return ret;
}
