/*
 * size.c - size strings as qemu-img accepts them ("64M", "1.5G", "512").
 */
#include <errno.h>
#include <stdlib.h>

#include "imgchain/util.h"

int ic_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    double dv = 0;
    int frac = 0;
    if (*end == '.') {
        frac = 1;
        dv = strtod(s, &end);
    }
    unsigned shift;
    switch (*end) {
    case '\0': shift = 0; break;
    case 'b': case 'B': shift = 0; end++; break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    case 'p': case 'P': shift = 50; end++; break;
    case 'e': case 'E': shift = 60; end++; break;
    default: return -EINVAL;
    }
    if (*end)
        return -EINVAL;
    if (frac) {
        if (shift == 0)
            return -EINVAL;
        double r = dv * (double)(1ULL << shift);
        if (r >= 18446744073709551615.0)
            return -ERANGE;
        *out = (uint64_t)r;
        return 0;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}
