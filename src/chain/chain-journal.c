/*
 * chain-journal.c - the journal of multi-image chain operations.
 *
 * Design notes:
 *  1. What it owns: the file "<FILE>.imgchain-journal" next to the top image
 *     of a commit or safe rebase.  It exists exactly while such an operation
 *     may have changed an image and has not finished; ic_chain_check reports
 *     it and ic_chain_commit/ic_chain_rebase resume it on request.
 *  2. Layout: two 4 KiB slots at offsets 0 and 4096.  Each slot holds a
 *     40-byte big-endian header (magic, CRC-32, version, sequence, op,
 *     phase, flags, payload length) and a payload of six length-prefixed
 *     strings.  A record is written into the slot that does NOT hold the
 *     newest valid record, then flushed; a torn or lost write therefore
 *     leaves the previous record readable.  The reader takes the valid slot
 *     with the highest sequence.
 *  3. Creation order: the file is created, the first record written and
 *     flushed, and the folder synced, BEFORE any image is written.  So a
 *     journal with no valid slot can only come from a crash during its own
 *     creation, when no image had been touched: it is stale and may be
 *     removed (ic_journal_load reports it with *stale).
 *  4. Removal happens only after every image of the operation is flushed;
 *     if we crash after that point the operation is simply complete.
 *  5. All bytes go through ic_io (the caller's open_file), so the crash
 *     tests cut power in the journal exactly as in the images.
 *  Invariants: every length read from disk is bounded by the slot
 *  (IC_JOURNAL_SLOT_SIZE) before use; op/phase values are validated.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-journal.h"
#include "io/io-dir.h"
#include "util/endian.h"
#include "util/overflow.h"

#define IC_JOURNAL_SUFFIX ".imgchain-journal"
/* One slot per record; 4 KiB is one page/sector group, written in one go. */
#define IC_JOURNAL_SLOT_SIZE 4096u
#define IC_JOURNAL_VERSION 1u
#define IC_JOURNAL_NB_STR 6

/* On-disk slot header (big-endian; byte arrays so there is no padding). */
struct ic_journal_hdr_disk {
    uint8_t magic[8];       /* "ICJRNL\r\n" */
    uint8_t crc[4];         /* CRC-32 of bytes [12, 40 + payload_len) */
    uint8_t version[4];
    uint8_t seq[8];
    uint8_t op[2];
    uint8_t phase[2];
    uint8_t flags[4];
    uint8_t payload_len[4];
    uint8_t reserved[4];
};
_Static_assert(sizeof(struct ic_journal_hdr_disk) == 40, "journal header is 40 bytes");

#define IC_JOURNAL_HDR_SIZE ((uint32_t)sizeof(struct ic_journal_hdr_disk))
/* The payload must fit the slot after the header. */
#define IC_JOURNAL_MAX_PAYLOAD (IC_JOURNAL_SLOT_SIZE - IC_JOURNAL_HDR_SIZE)

static const uint8_t journal_magic[8] = { 'I', 'C', 'J', 'R', 'N', 'L', '\r', '\n' };

struct ic_journal {
    ic_io *io;
    char *path;
    struct ic_journal_rec rec;  /* the last record written (owned copy) */
    unsigned live_slot;         /* slot holding the newest valid record */
};

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

char *ic_journal_path(const char *image)
{
    size_t n = strlen(image) + sizeof(IC_JOURNAL_SUFFIX);
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", image, IC_JOURNAL_SUFFIX);
    return p;
}

const char *ic_journal_op_name(enum ic_journal_op op)
{
    switch (op) {
    case IC_JOURNAL_COMMIT:
        return "commit";
    case IC_JOURNAL_REBASE:
        return "rebase";
    }
    return "unknown operation";
}

void ic_journal_rec_clear(struct ic_journal_rec *rec)
{
    free(rec->top);
    free(rec->top_fmt);
    free(rec->base);
    free(rec->base_fmt);
    free(rec->new_backing);
    free(rec->new_fmt);
    memset(rec, 0, sizeof(*rec));
}

static char **rec_str(struct ic_journal_rec *rec, int i)
{
    switch (i) {
    case 0: return &rec->top;
    case 1: return &rec->top_fmt;
    case 2: return &rec->base;
    case 3: return &rec->base_fmt;
    case 4: return &rec->new_backing;
    default: return &rec->new_fmt;
    }
}

static int rec_copy(struct ic_journal_rec *dst, const struct ic_journal_rec *src)
{
    *dst = *src;
    for (int i = 0; i < IC_JOURNAL_NB_STR; i++)
        *rec_str(dst, i) = NULL;
    for (int i = 0; i < IC_JOURNAL_NB_STR; i++) {
        const char *s = *rec_str((struct ic_journal_rec *)(uintptr_t)src, i);
        if (s && !(*rec_str(dst, i) = strdup(s))) {
            ic_journal_rec_clear(dst);
            return -ENOMEM;
        }
    }
    return 0;
}

/* Serializes @rec into a zeroed slot buffer. */
static int encode(uint8_t *slot, const struct ic_journal_rec *rec)
{
    memset(slot, 0, IC_JOURNAL_SLOT_SIZE);
    uint8_t *p = slot + IC_JOURNAL_HDR_SIZE;
    uint32_t len = 0;
    for (int i = 0; i < IC_JOURNAL_NB_STR; i++) {
        const char *s = *rec_str((struct ic_journal_rec *)(uintptr_t)rec, i);
        size_t sl = s ? strlen(s) : 0;
        /* length+1 in 16 bits, 0 meaning "absent" */
        if (sl >= 0xffff || len + 2 + sl > IC_JOURNAL_MAX_PAYLOAD)
            return -ENAMETOOLONG;
        ic_store_be16(p + len, s ? (uint16_t)(sl + 1) : 0);
        if (sl)
            memcpy(p + len + 2, s, sl);
        len += 2 + (uint32_t)sl;
    }
    struct ic_journal_hdr_disk *h = (struct ic_journal_hdr_disk *)(void *)slot;
    memcpy(h->magic, journal_magic, sizeof(journal_magic));
    ic_store_be32(h->version, IC_JOURNAL_VERSION);
    ic_store_be64(h->seq, rec->seq);
    ic_store_be16(h->op, (uint16_t)rec->op);
    ic_store_be16(h->phase, (uint16_t)rec->phase);
    ic_store_be32(h->flags, rec->flags);
    ic_store_be32(h->payload_len, len);
    ic_store_be32(h->crc, crc32_ieee(slot + 12, IC_JOURNAL_HDR_SIZE - 12 + len));
    return 0;
}

/* Parses one slot; 1 when valid (rec filled), 0 when not, -ENOMEM. */
static int decode(const uint8_t *slot, struct ic_journal_rec *rec)
{
    const struct ic_journal_hdr_disk *h = (const struct ic_journal_hdr_disk *)(const void *)slot;
    memset(rec, 0, sizeof(*rec));
    if (memcmp(h->magic, journal_magic, sizeof(journal_magic)) ||
        ic_load_be32(h->version) != IC_JOURNAL_VERSION)
        return 0;
    uint32_t len = ic_load_be32(h->payload_len);
    if (len > IC_JOURNAL_MAX_PAYLOAD)   /* bounded by the slot */
        return 0;
    if (ic_load_be32(h->crc) != crc32_ieee(slot + 12, IC_JOURNAL_HDR_SIZE - 12 + len))
        return 0;
    uint16_t op = ic_load_be16(h->op), phase = ic_load_be16(h->phase);
    if (op != IC_JOURNAL_COMMIT && op != IC_JOURNAL_REBASE)
        return 0;
    if (phase < IC_JOURNAL_COPY || phase > IC_JOURNAL_SWITCH)
        return 0;
    rec->op = (enum ic_journal_op)op;
    rec->phase = (enum ic_journal_phase)phase;
    rec->flags = ic_load_be32(h->flags);
    rec->seq = ic_load_be64(h->seq);
    const uint8_t *p = slot + IC_JOURNAL_HDR_SIZE;
    uint32_t pos = 0;
    for (int i = 0; i < IC_JOURNAL_NB_STR; i++) {
        if (pos + 2 > len)
            goto invalid;
        uint16_t l1 = ic_load_be16(p + pos);
        pos += 2;
        if (l1 == 0)
            continue;
        uint32_t sl = (uint32_t)l1 - 1;
        if (sl > len - pos)   /* string must lie inside the payload */
            goto invalid;
        char *s = strndup((const char *)p + pos, sl);
        if (!s) {
            ic_journal_rec_clear(rec);
            return -ENOMEM;
        }
        if (strlen(s) != sl) { /* embedded NUL */
            free(s);
            goto invalid;
        }
        *rec_str(rec, i) = s;
        pos += sl;
    }
    return 1;
invalid:
    ic_journal_rec_clear(rec);
    return 0;
}

static int write_slot(struct ic_journal *j, ic_error **errp)
{
    uint8_t *slot = malloc(IC_JOURNAL_SLOT_SIZE);
    if (!slot)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = encode(slot, &j->rec);
    if (ret < 0) {
        free(slot);
        return ic_error_set(errp, IC_ERR_INVALID, -ret,
                            "%s: file names are too long for the journal", j->path);
    }
    unsigned target = j->live_slot ^ 1u;
    ic_io_event(j->io, IC_EV_JOURNAL_WRITE);
    ret = ic_io_pwrite(j->io, slot, IC_JOURNAL_SLOT_SIZE, (uint64_t)target * IC_JOURNAL_SLOT_SIZE);
    free(slot);
    if (ret == 0)
        ret = ic_io_flush(j->io);
    if (ret < 0)
        return ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret,
                            "%s: cannot write the journal: %s", j->path, strerror(-ret));
    /* Only now, with the record durable, is it the live one. */
    j->live_slot = target;
    return 0;
}

int ic_journal_create(struct ic_journal **out, const struct ic_journal_rec *rec,
                      ic_open_file_fn open_file, void *payload, ic_error **errp)
{
    *out = NULL;
    struct ic_journal *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = ic_journal_path(rec->top)) || rec_copy(&j->rec, rec) < 0) {
        if (j)
            free(j->path);
        free(j);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    if (ic_io_file_exists(j->path)) {
        int ret = ic_error_set(errp, IC_ERR_PENDING, EEXIST,
                               "%s: a journal of an unfinished operation exists", j->path);
        ic_journal_rec_clear(&j->rec);
        free(j->path);
        free(j);
        return ret;
    }
    int ret = ic_image_open_file(open_file, payload, &j->io, j->path,
                                 IC_IO_RDWR | IC_IO_CREATE | IC_IO_EXCL | IC_IO_NOLOCK, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "cannot create the journal");
        ic_journal_rec_clear(&j->rec);
        free(j->path);
        free(j);
        return ret;
    }
    j->rec.seq = 1;
    j->live_slot = 1; /* the first record goes to slot 0 */
    ret = write_slot(j, errp);
    if (ret == 0) {
        ret = ic_dir_sync_parent(j->path, errp);
    }
    if (ret < 0) {
        /* No image was touched yet: the journal can go. */
        ic_io_close(j->io);
        ic_io_remove(j->path);
        ic_journal_rec_clear(&j->rec);
        free(j->path);
        free(j);
        return ret;
    }
    *out = j;
    return 0;
}

int ic_journal_reopen(struct ic_journal **out, const struct ic_journal_rec *rec,
                      const char *image, ic_open_file_fn open_file, void *payload,
                      ic_error **errp)
{
    *out = NULL;
    struct ic_journal *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = ic_journal_path(image)) || rec_copy(&j->rec, rec) < 0) {
        if (j)
            free(j->path);
        free(j);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    int ret = ic_image_open_file(open_file, payload, &j->io, j->path, IC_IO_RDWR | IC_IO_NOLOCK,
                                 errp);
    if (ret < 0) {
        ic_error_prepend(errp, "cannot open the journal");
        ic_journal_rec_clear(&j->rec);
        free(j->path);
        free(j);
        return ret;
    }
    j->live_slot = rec->slot & 1u;
    *out = j;
    return 0;
}

int ic_journal_set_phase(struct ic_journal *j, enum ic_journal_phase phase, ic_error **errp)
{
    j->rec.phase = phase;
    j->rec.seq++;
    return write_slot(j, errp);
}

void ic_journal_close(struct ic_journal *j)
{
    if (!j)
        return;
    ic_io_close(j->io);
    ic_journal_rec_clear(&j->rec);
    free(j->path);
    free(j);
}

int ic_journal_finish(struct ic_journal *j, ic_error **errp)
{
    int ret = ic_io_close(j->io);
    j->io = NULL;
    /* Every image of the operation is flushed (caller's duty): if we crash
     * after this point the operation is complete and nothing is lost. */
    int r = ic_io_remove(j->path);
    if (r < 0 && r != -ENOENT && ret == 0)
        ret = r;
    if (ret < 0)
        ic_error_set(errp, IC_ERR_IO, -ret, "%s: cannot remove the journal: %s", j->path,
                     strerror(-ret));
    else
        ret = ic_dir_sync_parent(j->path, errp);
    ic_journal_rec_clear(&j->rec);
    free(j->path);
    free(j);
    return ret;
}

int ic_journal_load(struct ic_journal_rec *out, bool *stale, const char *image,
                    ic_open_file_fn open_file, void *payload, ic_error **errp)
{
    memset(out, 0, sizeof(*out));
    if (stale)
        *stale = false;
    char *path = ic_journal_path(image);
    if (!path)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    if (!ic_io_file_exists(path)) {
        free(path);
        return 0;
    }
    ic_io *io = NULL;
    int ret = ic_image_open_file(open_file, payload, &io, path, IC_IO_NOLOCK, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "cannot read the journal");
        free(path);
        return ret;
    }
    uint8_t *buf = malloc(2 * IC_JOURNAL_SLOT_SIZE);
    if (!buf) {
        ic_io_close(io);
        free(path);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    ret = ic_io_pread(io, buf, 2 * IC_JOURNAL_SLOT_SIZE, 0);
    ic_io_close(io);
    if (ret < 0) {
        free(buf);
        ret = ic_error_set(errp, IC_ERR_IO, -ret, "%s: cannot read the journal: %s", path,
                           strerror(-ret));
        free(path);
        return ret;
    }
    struct ic_journal_rec r[2];
    int v[2];
    for (int i = 0; i < 2; i++) {
        v[i] = decode(buf + (size_t)i * IC_JOURNAL_SLOT_SIZE, &r[i]);
        if (v[i] < 0) {
            if (i == 1)
                ic_journal_rec_clear(&r[0]);
            free(buf);
            free(path);
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        }
    }
    free(buf);
    free(path);
    int best = -1;
    for (int i = 0; i < 2; i++)
        if (v[i] == 1 && (best < 0 || r[i].seq > r[best].seq))
            best = i;
    for (int i = 0; i < 2; i++)
        if (i != best && v[i] == 1)
            ic_journal_rec_clear(&r[i]);
    if (best < 0) {
        if (stale)
            *stale = true;
        return 0;
    }
    *out = r[best];
    out->slot = (unsigned)best;
    return 1;
}

int ic_journal_remove(const char *image, ic_error **errp)
{
    char *path = ic_journal_path(image);
    if (!path)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = ic_io_remove(path);
    if (ret == 0)
        ret = ic_dir_sync_parent(path, errp);
    else if (ret != -ENOENT)
        ret = ic_error_set(errp, IC_ERR_IO, -ret, "%s: cannot remove: %s", path, strerror(-ret));
    else
        ret = 0;
    free(path);
    return ret;
}

/* ---- shared helpers ------------------------------------------------------- */

char *ic_chain_realpath(const char *path)
{
    char *r = ic_dir_realpath(path);
    return r ? r : strdup(path);
}

bool ic_chain_same_file(const char *a, const char *b)
{
    if (!strcmp(a, b))
        return true;
    char *ra = ic_dir_realpath(a), *rb = ic_dir_realpath(b);
    bool same = ra && rb && !strcmp(ra, rb);
    free(ra);
    free(rb);
    return same;
}

void ic_chain_warnf(ic_chain_warn_fn fn, void *payload, const char *fmt, ...)
{
    if (!fn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fn(line, payload);
}
