/*
 * cmd-create.c - `imgchain create`: make a new qcow2, qed or raw image,
 * optionally over a backing file (qemu-img create's syntax).
 *
 * Design notes:
 *  1. Validation and creation are the library's (ic_image_create): it
 *     refuses bad options, sizes and backing files before touching FILE.
 *  2. Unless -q, the "Formatting 'FILE', fmt=... " line mirrors qemu-img
 *     7.2's: per format, the options qemu prints, in qemu's order, with
 *     qemu's defaults filled in and sizes normalised to bytes; anything
 *     else given with -o follows as given.  It is printed before the
 *     image is created, as qemu-img does.
 *  3. SIZE may be omitted with -b (the backing file's size is used; the
 *     backing file is opened only to print it, relative to FILE's
 *     directory); -u skips opening the backing file, so SIZE is needed.
 *  4. Exit codes: 0 ok, 1 failure, 64 usage, 75 FILE or the backing file
 *     locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-util.h"

/* Most -o keys we track for the message. */
#define CREATE_MAX_OPTS 32

struct kv {
    char *key;
    char *val;
    bool printed;
};

struct optlist {
    char *buf;
    struct kv kv[CREATE_MAX_OPTS];
    int n;
};

/* Splits "k=v,k=v" (",," is a literal comma).  A key given twice keeps
 * the last value.  Returns -1 when malformed (the library reports it). */
static int split_opts(const char *s, struct optlist *l)
{
    memset(l, 0, sizeof(*l));
    if (!s || !*s)
        return 0;
    l->buf = strdup(s);
    if (!l->buf)
        return -1;
    char *p = l->buf;
    while (*p) {
        char *key = p, *eq = NULL, *w = p;
        while (*p) {
            if (*p == ',' && p[1] == ',') {
                *w++ = ',';
                p += 2;
                continue;
            }
            if (*p == ',')
                break;
            if (*p == '=' && !eq) {
                *w++ = '\0';
                eq = w;
                p++;
                continue;
            }
            *w++ = *p++;
        }
        bool more = *p == ',';
        *w = '\0';
        if (more)
            p++;
        if (!eq || !*key)
            return -1;
        int i;
        for (i = 0; i < l->n; i++)
            if (!strcmp(l->kv[i].key, key))
                break;
        if (i == l->n) {
            if (l->n == CREATE_MAX_OPTS)
                return -1;
            l->n++;
        }
        l->kv[i].key = key;
        l->kv[i].val = eq;
    }
    return 0;
}

static const char *take(struct optlist *l, const char *key)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->kv[i].key, key)) {
            l->kv[i].printed = true;
            return l->kv[i].val;
        }
    return NULL;
}

static void put_str(char *out, size_t cap, const char *key, const char *val)
{
    if (!val)
        return;
    size_t len = strlen(out);
    snprintf(out + len, cap - len, " %s=%s", key, val);
}

static void put_size(char *out, size_t cap, const char *key, const char *val)
{
    uint64_t v;
    if (val && ic_parse_size(val, &v) == 0) {
        char num[32];
        snprintf(num, sizeof(num), "%" PRIu64, v);
        put_str(out, cap, key, num);
    } else {
        put_str(out, cap, key, val);
    }
}

static void put_bool(char *out, size_t cap, const char *key, const char *val)
{
    if (!val)
        return;
    if (!strcmp(val, "on") || !strcmp(val, "true") || !strcmp(val, "yes"))
        val = "on";
    else if (!strcmp(val, "off") || !strcmp(val, "false") || !strcmp(val, "no"))
        val = "off";
    put_str(out, cap, key, val);
}

static void print_formatting(const char *path, const char *fmt, struct optlist *l,
                             uint64_t size, const char *backing, const char *bfmt)
{
    char line[2048];
    char sz[32];
    snprintf(sz, sizeof(sz), "%" PRIu64, size);
    snprintf(line, sizeof(line), "Formatting '%s', fmt=%s", path, fmt);
    const char *v;
    if (!strcmp(fmt, "qcow2")) {
        put_size(line, sizeof(line), "cluster_size", (v = take(l, "cluster_size")) ? v : "65536");
        put_bool(line, sizeof(line), "extended_l2", (v = take(l, "extended_l2")) ? v : "off");
        put_str(line, sizeof(line), "preallocation", take(l, "preallocation"));
        put_str(line, sizeof(line), "compression_type",
                (v = take(l, "compression_type")) ? v : "zlib");
        put_str(line, sizeof(line), "size", sz);
        put_str(line, sizeof(line), "compat", take(l, "compat"));
        put_str(line, sizeof(line), "backing_file", backing);
        put_str(line, sizeof(line), "backing_fmt", bfmt);
        put_str(line, sizeof(line), "data_file", take(l, "data_file"));
        put_bool(line, sizeof(line), "data_file_raw", take(l, "data_file_raw"));
        put_bool(line, sizeof(line), "lazy_refcounts", (v = take(l, "lazy_refcounts")) ? v : "off");
        put_str(line, sizeof(line), "refcount_bits", (v = take(l, "refcount_bits")) ? v : "16");
    } else if (!strcmp(fmt, "qed")) {
        put_str(line, sizeof(line), "size", sz);
        put_str(line, sizeof(line), "backing_file", backing);
        put_str(line, sizeof(line), "backing_fmt", bfmt);
        put_size(line, sizeof(line), "cluster_size", (v = take(l, "cluster_size")) ? v : "65536");
        put_str(line, sizeof(line), "table_size", take(l, "table_size"));
        put_str(line, sizeof(line), "preallocation", take(l, "preallocation"));
    } else {
        put_str(line, sizeof(line), "size", sz);
        put_str(line, sizeof(line), "preallocation", take(l, "preallocation"));
    }
    for (int i = 0; i < l->n; i++)
        if (!l->kv[i].printed)
            put_str(line, sizeof(line), l->kv[i].key, l->kv[i].val);
    printf("%s\n", line);
    fflush(stdout);
}

/* Size of the backing file for the message (SIZE omitted). */
static int backing_size(const char *path, const char *backing, const char *bfmt, uint64_t *out)
{
    char *full;
    const char *slash = strrchr(path, '/');
    if (backing[0] == '/' || !slash) {
        full = strdup(backing);
    } else {
        size_t dl = (size_t)(slash - path) + 1;
        full = malloc(dl + strlen(backing) + 1);
        if (full) {
            memcpy(full, path, dl);
            strcpy(full + dl, backing);
        }
    }
    if (!full)
        return -1;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = bfmt;
    o.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, full, &o, NULL);
    free(full);
    if (ret < 0)
        return -1;
    *out = ic_image_size(img);
    ic_image_close(img);
    return 0;
}

static int run_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    const char *fmt = "qcow2";
    bool quiet = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:o:b:F:uqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (co.options)
                return cli_usage_error("create", "-o may be given only once");
            co.options = optarg;
            break;
        case 'b':
            co.backing_file = optarg;
            break;
        case 'F':
            co.backing_format = optarg;
            break;
        case 'u':
            co.no_backing_open = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            printf("usage: imgchain create [-f FMT] [-o OPTS] [-b BACKING -F FMT] [-u] [-q] "
                   "FILE [SIZE]\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("create", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("create", "unknown option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    if (nargs < 1)
        return cli_usage_error("create", "missing FILE");
    if (nargs > 2)
        return cli_usage_error("create", "too many arguments");
    const char *path = argv[optind];
    co.format = fmt;
    if (nargs == 2) {
        if (cli_parse_size("create", "size", argv[optind + 1], &co.size))
            return CLI_EXIT_USAGE;
        co.size_set = true;
    }
    struct optlist l;
    bool parsed = split_opts(co.options, &l) == 0;
    const char *v;
    const char *backing = co.backing_file, *bfmt = co.backing_format;
    if (parsed) {
        if (!backing && (v = take(&l, "backing_file")))
            backing = v;
        else
            take(&l, "backing_file");
        if (!bfmt && (v = take(&l, "backing_fmt")))
            bfmt = v;
        else
            take(&l, "backing_fmt");
    }
    uint64_t size = co.size;
    bool size_known = co.size_set;
    if (parsed && (v = take(&l, "size")) && !size_known && ic_parse_size(v, &size) == 0)
        size_known = true;
    if (!size_known && !co.size_set && backing && *backing && !co.no_backing_open &&
        backing_size(path, backing, bfmt, &size) == 0)
        size_known = true;
    if (parsed && !size_known && !backing) {
        free(l.buf);
        return cli_usage_error("create", "SIZE is required without a backing file");
    }
    if (!quiet && parsed && size_known)
        print_formatting(path, fmt, &l, size, backing && *backing ? backing : NULL,
                         backing && *backing ? bfmt : NULL);
    free(l.buf);
    ic_error *err = NULL;
    if (ic_image_create(path, &co, &err) < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_create, "create", run_create,
            "create [-f FMT] [-o OPTS] [-b BACKING -F FMT] [-u] [-q] FILE [SIZE]")
