/*
 * opts.c - parser for qemu-img style option strings.
 *
 * Design notes: the string is split at single commas; ",," is an escaped
 * comma (qemu's QemuOpts rule).  A bare "key" means "key=on".  Values stay
 * strings until a driver takes them with the type it expects, so error
 * messages can name the key and the value exactly as the user wrote them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "imgchain/util.h"

struct opt {
    char *key;
    char *value;
    bool used;
};

struct ic_opts {
    struct opt *v;
    size_t n;
};

void ic_opts_free(ic_opts *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].value);
    }
    free(o->v);
    free(o);
}

static struct opt *find(const ic_opts *o, const char *key)
{
    for (size_t i = o->n; i-- > 0;)
        if (!strcmp(o->v[i].key, key))
            return &o->v[i];
    return NULL;
}

int ic_opts_set(ic_opts *o, const char *key, const char *value)
{
    struct opt *e = find(o, key);
    char *v = strdup(value);
    if (!v)
        return -ENOMEM;
    if (e) {
        free(e->value);
        e->value = v;
        e->used = false;
        return 0;
    }
    struct opt *nv = realloc(o->v, (o->n + 1) * sizeof(*nv));
    char *k = strdup(key);
    if (!nv || !k) {
        if (nv)
            o->v = nv;
        free(k);
        free(v);
        return -ENOMEM;
    }
    o->v = nv;
    o->v[o->n++] = (struct opt){ k, v, false };
    return 0;
}

int ic_opts_parse(ic_opts **out, const char *s, ic_error **errp)
{
    *out = NULL;
    ic_opts *o = calloc(1, sizeof(*o));
    if (!o)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    size_t len = s ? strlen(s) : 0;
    char *buf = malloc(len + 1);
    if (!buf) {
        free(o);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    size_t i = 0;
    while (i < len) {
        /* collect one item, unescaping ",," */
        size_t b = 0;
        while (i < len) {
            if (s[i] == ',') {
                if (i + 1 < len && s[i + 1] == ',') {
                    buf[b++] = ',';
                    i += 2;
                    continue;
                }
                i++;
                break;
            }
            buf[b++] = s[i++];
        }
        buf[b] = '\0';
        if (b == 0)
            continue;
        char *eq = strchr(buf, '=');
        const char *val = "on";
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        if (!*buf) {
            free(buf);
            ic_opts_free(o);
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid option string '%s'", s);
        }
        if (ic_opts_set(o, buf, val) < 0) {
            free(buf);
            ic_opts_free(o);
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        }
    }
    free(buf);
    *out = o;
    return 0;
}

int ic_opts_take_str(ic_opts *o, const char *key, const char **out)
{
    struct opt *e = find(o, key);
    if (!e)
        return 0;
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->v[i].key, key))
            o->v[i].used = true;
    *out = e->value;
    return 1;
}

int ic_opts_take_bool(ic_opts *o, const char *key, bool *out, ic_error **errp)
{
    const char *v;
    int r = ic_opts_take_str(o, key, &v);
    if (r <= 0)
        return r;
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no"))
        *out = false;
    else
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "option '%s' expects 'on' or 'off', not '%s'", key, v);
    return 1;
}

int ic_opts_take_size(ic_opts *o, const char *key, uint64_t *out, ic_error **errp)
{
    const char *v;
    int r = ic_opts_take_str(o, key, &v);
    if (r <= 0)
        return r;
    if (ic_parse_size(v, out) < 0)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "option '%s': invalid size '%s'", key, v);
    return 1;
}

int ic_opts_take_uint(ic_opts *o, const char *key, uint64_t *out, ic_error **errp)
{
    const char *v;
    int r = ic_opts_take_str(o, key, &v);
    if (r <= 0)
        return r;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-')
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "option '%s' expects a number, not '%s'", key, v);
    *out = n;
    return 1;
}

int ic_opts_check_unused(const ic_opts *o, const char *format, ic_error **errp)
{
    for (size_t i = 0; i < o->n; i++)
        if (!o->v[i].used)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "invalid option '%s' for format '%s'", o->v[i].key, format);
    return 0;
}
