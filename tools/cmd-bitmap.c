/*
 * cmd-bitmap.c - `imgchain bitmap`: persistent dirty bitmaps, with
 * qemu-img 7.2 bitmap's syntax, plus --dump of a bitmap's dirty extents.
 *
 * Design notes:
 *  1. Actions (--add, --remove, --clear, --enable, --disable, --merge
 *     SOURCE) run in the order given, each stored before the next
 *     (imgchain/bitmap.h); the first failure stops the rest (exit 1), as
 *     in qemu-img.  -g goes with --add (default: the cluster size within
 *     4 KiB..64 KiB), -b FILE [-F FMT] with --merge (the source bitmap lives in
 *     FILE, opened read-only; without -b in FILE itself).
 *  2. --dump [--output=human|json] prints the dirty extents of BITMAP, so
 *     a backup tool can read them without NBD: human, qemu-img map's
 *     "Offset Length" columns in hex; JSON, an array of {"start",
 *     "length"}.  It opens the image read-only (-U shares it) and cannot
 *     be mixed with actions.
 *  3. Exit codes: 0 ok, 1 failure, 64 usage, 75 locked.
 *  4. convert --bitmaps (cli-bitmap.h) is built on the same calls: the
 *     source's bitmaps are checked before the conversion (qcow2 target, no
 *     bitmap in use unless --skip-broken-bitmaps) and copied after it: add
 *     with the same granularity, merge from the source, disable if it was.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/bitmap.h>

#include "cli-bitmap.h"
#include "cli-util.h"

#define MAX_ACTIONS 64

struct action {
    ic_bitmap_action op;
    const char *src;    /* --merge SOURCE */
};

static const char *const op_names[] = { "add", "remove", "clear", "enable", "disable", "merge" };

static int print_human(uint64_t start, uint64_t length, void *payload)
{
    (void)payload;
    printf("0x%-14" PRIx64 "0x%" PRIx64 "\n", start, length);
    return 0;
}

static int add_json(uint64_t start, uint64_t length, void *payload)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "start", json_object_new_int64((int64_t)start));
    json_object_object_add(o, "length", json_object_new_int64((int64_t)length));
    json_object_array_add(payload, o);
    return 0;
}

static int dump(const char *path, const char *fmt, bool share, const char *name, bool json)
{
    ic_image *img = NULL;
    int rc = cli_open_image(&img, path, fmt, IC_OPEN_NO_BACKING | (share ? IC_OPEN_FORCE_SHARE : 0));
    if (rc)
        return rc;
    ic_error *err = NULL;
    json_object *arr = json ? json_object_new_array() : NULL;
    if (!json)
        printf("%-16s%s\n", "Offset", "Length");
    int ret = ic_bitmap_dump(img, name, json ? add_json : print_human, arr, &err);
    if (ret == 0 && json)
        cli_print_json(arr);
    json_object_put(arr);
    ic_image_close(img);
    return ret < 0 ? cli_fail(err, CLI_EXIT_FAIL) : CLI_EXIT_OK;
}

enum { OPT_ADD = 0x200, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE, OPT_DISABLE, OPT_MERGE, OPT_DUMP };

static int run_bitmap(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "dump", no_argument, NULL, OPT_DUMP },
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct action acts[MAX_ACTIONS];
    size_t nacts = 0;
    const char *fmt = NULL, *src_file = NULL, *src_fmt = NULL, *gran_arg = NULL;
    bool json = false, share = false, do_dump = false, output_set = false;
    uint64_t granularity = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:b:F:g:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_ADD:
        case OPT_REMOVE:
        case OPT_CLEAR:
        case OPT_ENABLE:
        case OPT_DISABLE:
        case OPT_MERGE:
            if (nacts == MAX_ACTIONS)
                return cli_usage_error("bitmap", "more than %d actions", MAX_ACTIONS);
            acts[nacts].op = (ic_bitmap_action)(c - OPT_ADD);
            acts[nacts].src = c == OPT_MERGE ? optarg : NULL;
            nacts++;
            break;
        case OPT_DUMP:
            do_dump = true;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'b':
            src_file = optarg;
            break;
        case 'F':
            src_fmt = optarg;
            break;
        case 'g':
            gran_arg = optarg;
            if (cli_parse_size("bitmap", "granularity", optarg, &granularity) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'U':
            share = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("bitmap", optarg, &json) != 0)
                return CLI_EXIT_USAGE;
            output_set = true;
            break;
        case 'h':
            printf("usage: imgchain bitmap (--merge SOURCE | --add | --remove | --clear | "
                   "--enable | --disable)... [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] "
                   "[-f FMT] FILE BITMAP\n"
                   "       imgchain bitmap --dump [--output=human|json] [-U] [-f FMT] FILE "
                   "BITMAP\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("bitmap", "option requires an argument -- '%s'",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("bitmap", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 2)
        return cli_usage_error("bitmap", "Expecting filename and bitmap name");
    const char *path = argv[optind], *name = argv[optind + 1];
    bool merge = false, add = false;
    for (size_t i = 0; i < nacts; i++) {
        merge |= acts[i].op == IC_BITMAP_MERGE;
        add |= acts[i].op == IC_BITMAP_ADD;
    }
    if (do_dump) {
        if (nacts || src_file || src_fmt || gran_arg)
            return cli_usage_error("bitmap", "--dump takes no action, -b, -F or -g");
        return dump(path, fmt, share, name, json);
    }
    if (!nacts)
        return cli_usage_error("bitmap", "Need at least one of --add, --remove, --clear, "
                               "--enable, --disable, --merge, or --dump");
    if (output_set)
        return cli_usage_error("bitmap", "--output goes with --dump only");
    if (share)
        return cli_usage_error("bitmap", "-U cannot be used to change bitmaps");
    if (gran_arg && !add)
        return cli_usage_error("bitmap", "granularity only supported with --add");
    if (src_fmt && !src_file)
        return cli_usage_error("bitmap", "-F only supported with -b");
    if (src_file && !merge)
        return cli_usage_error("bitmap", "Merge bitmap source file only supported with --merge");

    ic_image *img = NULL, *src = NULL;
    int rc = cli_open_image(&img, path, fmt, IC_OPEN_RDWR | IC_OPEN_NO_BACKING);
    if (rc)
        return rc;
    if (src_file && (rc = cli_open_image(&src, src_file, src_fmt, IC_OPEN_NO_BACKING)) != 0) {
        ic_image_close(img);
        return rc;
    }
    rc = CLI_EXIT_OK;
    for (size_t i = 0; i < nacts && rc == CLI_EXIT_OK; i++) {
        ic_error *err = NULL;
        if (ic_bitmap_change(img, acts[i].op, name, granularity, src, acts[i].src, &err) < 0) {
            cli_errorf("Operation %s on bitmap %s failed: %s", op_names[acts[i].op], name,
                       ic_error_message(err));
            ic_error_free(err);
            rc = CLI_EXIT_FAIL;
        }
    }
    ic_image_close(src);
    if (ic_image_close(img) < 0 && rc == CLI_EXIT_OK) {
        cli_errorf("%s: could not close the image", path);
        rc = CLI_EXIT_FAIL;
    }
    return rc;
}

CLI_COMMAND(cmd_bitmap, "bitmap", run_bitmap,
            "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
            "[-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-f FMT] FILE BITMAP | "
            "bitmap --dump [--output=human|json] [-U] [-f FMT] FILE BITMAP")

/* ---- convert --bitmaps (cli-bitmap.h) --------------------------------------- */

static int source_bitmaps(const char *src, const char *src_fmt, bool share, ic_image **img,
                          ic_image_info **info)
{
    int rc = cli_open_image(img, src, src_fmt,
                            IC_OPEN_NO_BACKING | (share ? IC_OPEN_FORCE_SHARE : 0));
    if (rc)
        return rc;
    ic_error *err = NULL;
    if (ic_image_get_info(*img, info, &err) < 0) {
        ic_image_close(*img);
        *img = NULL;
        return cli_fail(err, CLI_EXIT_FAIL);
    }
    return 0;
}

int cli_bitmaps_check(const char *src, const char *src_fmt, bool share, const char *out_fmt,
                      bool skip_broken)
{
    if (!out_fmt || strcmp(out_fmt, "qcow2")) {
        cli_errorf("Format driver '%s' does not support bitmaps", out_fmt ? out_fmt : "raw");
        return CLI_EXIT_FAIL;
    }
    ic_image *img = NULL;
    ic_image_info *info = NULL;
    int rc = source_bitmaps(src, src_fmt, share, &img, &info);
    if (rc)
        return rc;
    for (size_t i = 0; i < info->nb_bitmaps && !rc; i++)
        if (info->bitmaps[i].in_use && !skip_broken) {
            cli_errorf("%s: Cannot copy inconsistent bitmap '%s'; try --skip-broken-bitmaps, "
                       "or remove it with 'imgchain bitmap --remove'", src,
                       info->bitmaps[i].name);
            rc = CLI_EXIT_FAIL;
        }
    ic_image_info_free(info);
    ic_image_close(img);
    return rc;
}

int cli_bitmaps_copy(const char *src, const char *src_fmt, bool share, const char *dst)
{
    ic_image *simg = NULL, *dimg = NULL;
    ic_image_info *info = NULL;
    int rc = source_bitmaps(src, src_fmt, share, &simg, &info);
    if (rc)
        return rc;
    if (info->nb_bitmaps)
        rc = cli_open_image(&dimg, dst, "qcow2", IC_OPEN_RDWR | IC_OPEN_NO_BACKING);
    for (size_t i = 0; i < info->nb_bitmaps && !rc; i++) {
        const ic_bitmap_info *b = &info->bitmaps[i];
        if (b->in_use) {
            fprintf(stderr, "imgchain: warning: Skipping inconsistent bitmap '%s'\n", b->name);
            continue;
        }
        ic_error *err = NULL;
        if (ic_bitmap_change(dimg, IC_BITMAP_ADD, b->name, b->granularity, NULL, NULL, &err) < 0 ||
            ic_bitmap_change(dimg, IC_BITMAP_MERGE, b->name, 0, simg, b->name, &err) < 0 ||
            (!b->enabled &&
             ic_bitmap_change(dimg, IC_BITMAP_DISABLE, b->name, 0, NULL, NULL, &err) < 0)) {
            cli_errorf("%s: cannot copy bitmap '%s': %s", dst, b->name, ic_error_message(err));
            ic_error_free(err);
            rc = CLI_EXIT_FAIL;
        }
    }
    ic_image_info_free(info);
    ic_image_close(simg);
    if (dimg && ic_image_close(dimg) < 0 && !rc) {
        cli_errorf("%s: could not close the image", dst);
        rc = CLI_EXIT_FAIL;
    }
    return rc;
}
