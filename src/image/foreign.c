/*
 * foreign.c - recognising the image formats imgchain does not implement.
 *
 * Design notes:
 *  1. A file whose format is probed must never be taken for raw when it is
 *     a container of another format: reading it as raw gives the container's
 *     bytes as guest data, and writing it destroys the container.  So every
 *     format qemu 7.2 probes is recognised here with qemu's own rule and
 *     score, and refused by name ("FILE: vmdk images are not supported").
 *  2. The probes see what qemu's see: the first 512 bytes of the file,
 *     zero-padded when the file is shorter (an empty file is raw without
 *     probing), and the file name (dmg is recognised by its ".dmg" suffix
 *     alone, as in qemu, with a score of 2 that any magic beats).
 *  3. qemu picks the highest score, raw scoring 1; imgchain's own drivers
 *     take part with their scores, so a qcow2 file named x.dmg is qcow2.
 *  4. The rules, by format (offsets in bytes, magic compared exactly):
 *       vmdk       "KDMV" (sparse) or "COWD" (VMDK3) at 0: 100; or a text
 *                  descriptor: comment lines ('#') and blank lines of
 *                  spaces, then a line "version=1", "version=2" or
 *                  "version=3" ending in \n or \r\n: 100
 *       vdi        0xbeda107f little-endian at 64: 100
 *       vhdx       "vhdxfile" at 0: 100
 *       vpc        "conectix" at 0: 100 (a fixed VHD keeps its footer only
 *                  at the end of the file, and qemu does not probe there)
 *       luks       "LUKS\xba\xbe" at 0 and version 1 (big-endian 16 bits)
 *                  at 6: 100
 *       parallels  "WithoutFreeSpace" or "WithouFreSpacExt" at 0 and
 *                  version 2 (little-endian 32 bits) at 16: 100
 *       bochs      NUL-terminated "Bochs Virtual HD Image" at 0, "Redolog"
 *                  at 32, "Growing" at 48, version 0x00010000 or
 *                  0x00020000 (little-endian) at 64: 100
 *       cloop      the V2.0 shell-script preamble at 0: 2
 *       dmg        a file name ending in ".dmg" (and longer than that): 2
 *       qcow       "QFI\xfb" at 0 and version 1 (big-endian 32 bits): 100
 */
#include <string.h>

#include "image.h"
#include "util/endian.h"

static int probe_vmdk(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < 4)
        return 0;
    if (!memcmp(buf, "KDMV", 4) || !memcmp(buf, "COWD", 4))
        return 100;
    const char *p = (const char *)buf, *end = p + len;
    static const char *const versions[] = { "version=1", "version=2", "version=3" };
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return 0;
            p++;
            continue;
        }
        size_t left = (size_t)(end - p);
        for (size_t i = 0; i < IC_ARRAY_SIZE(versions); i++) {
            if (left >= 10 && !memcmp(p, versions[i], 9) && p[9] == '\n')
                return 100;
            if (left >= 11 && !memcmp(p, versions[i], 9) && p[9] == '\r' && p[10] == '\n')
                return 100;
        }
        return 0;
    }
    return 0;
}

static int probe_vdi(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 512 && ic_load_le32(buf + 64) == 0xbeda107fu ? 100 : 0;
}

static int probe_vhdx(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(buf, "vhdxfile", 8) ? 100 : 0;
}

static int probe_vpc(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(buf, "conectix", 8) ? 100 : 0;
}

static int probe_luks(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(buf, "LUKS\xba\xbe", 6) && ic_load_be16(buf + 6) == 1 ? 100 : 0;
}

static int probe_parallels(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < 64)
        return 0;
    if ((!memcmp(buf, "WithoutFreeSpace", 16) || !memcmp(buf, "WithouFreSpacExt", 16)) &&
        ic_load_le32(buf + 16) == 2)
        return 100;
    return 0;
}

/* A C string field equal to @s (terminated within the buffer). */
static bool field_is(const uint8_t *field, const char *s)
{
    return !memcmp(field, s, strlen(s) + 1);
}

static int probe_bochs(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < 512)
        return 0;
    uint32_t v = ic_load_le32(buf + 64);
    if (field_is(buf, "Bochs Virtual HD Image") && field_is(buf + 32, "Redolog") &&
        field_is(buf + 48, "Growing") && (v == 0x00010000u || v == 0x00020000u))
        return 100;
    return 0;
}

static int probe_cloop(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    static const char magic[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$IMAGE offset=1048576\n";
    size_t n = strlen(magic) < len ? strlen(magic) : len;
    return !memcmp(buf, magic, n) ? 2 : 0;
}

static int probe_dmg(const uint8_t *buf, size_t len, const char *filename)
{
    (void)buf;
    (void)len;
    if (!filename)
        return 0;
    size_t n = strlen(filename);
    return n > 4 && !strcmp(filename + n - 4, ".dmg") ? 2 : 0;
}

static int probe_qcow1(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 48 && !memcmp(buf, "QFI\xfb", 4) && ic_load_be32(buf + 4) == 1 ? 100 : 0;
}

static const struct {
    const char *name;
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
} foreign[] = {
    { "vmdk", probe_vmdk },   { "vdi", probe_vdi },     { "vhdx", probe_vhdx },
    { "vpc", probe_vpc },     { "luks", probe_luks },   { "parallels", probe_parallels },
    { "bochs", probe_bochs }, { "cloop", probe_cloop }, { "dmg", probe_dmg },
    { "qcow", probe_qcow1 },
};

bool ic_foreign_is_format(const char *name)
{
    for (size_t i = 0; name && i < IC_ARRAY_SIZE(foreign); i++)
        if (!strcmp(foreign[i].name, name))
            return true;
    return false;
}

const char *ic_foreign_probe(const uint8_t *buf, size_t len, const char *filename, int *score)
{
    const char *best = NULL;
    int best_score = 0;
    for (size_t i = 0; i < IC_ARRAY_SIZE(foreign); i++) {
        int s = foreign[i].probe(buf, len, filename);
        if (s > best_score) {
            best_score = s;
            best = foreign[i].name;
        }
    }
    *score = best_score;
    return best;
}
