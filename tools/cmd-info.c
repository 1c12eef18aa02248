/*
 * cmd-info.c - `imgchain info`: describe an image (or its whole chain) as
 * qemu-img 7.2 info does, in human or JSON form.
 *
 * Design notes:
 *  1. JSON objects carry exactly qemu-img 7.2's ImageInfo keys: optional
 *     ones are omitted when absent (cluster-size for raw, encrypted unless
 *     true, backing-* without a backing file, snapshots when there are none,
 *     format-specific when the driver reports no fields, icount when -1).
 *  2. Without --backing-chain the backing file is not opened (a dangling
 *     backing file is fine, as in qemu-img); with it the chain is opened
 *     (loop and depth checks in the library) and printed top first: a JSON
 *     array, or human sections separated by a blank line.
 *  3. The human layout follows qemu-img's dump_human_image_info and
 *     bdrv_snapshot_dump ("%-10s%-17s%8s%20s%13s%11s"); format-specific
 *     keys print with '-' turned into ' '.
 *  4. Exit codes: 0 ok, 1 failure, 64 usage, 75 locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"

/* qemu's Qcow2BitmapInfo: flags (in-use before auto), name, granularity. */
static json_object *bitmaps_json(const ic_image_info *in)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < in->nb_bitmaps; i++) {
        const ic_bitmap_info *b = &in->bitmaps[i];
        json_object *o = json_object_new_object(), *flags = json_object_new_array();
        if (b->in_use)
            json_object_array_add(flags, json_object_new_string("in-use"));
        if (b->enabled)
            json_object_array_add(flags, json_object_new_string("auto"));
        json_object_object_add(o, "flags", flags);
        json_object_object_add(o, "name", json_object_new_string(b->name));
        json_object_object_add(o, "granularity", json_object_new_int64((int64_t)b->granularity));
        json_object_array_add(arr, o);
    }
    return arr;
}

static json_object *field_json(const ic_image_info *in, const ic_info_field *f)
{
    switch (f->type) {
    case IC_INFO_BITMAPS:
        return bitmaps_json(in);
    case IC_INFO_BOOL:
        return json_object_new_boolean(f->b);
    case IC_INFO_INT:
        return json_object_new_int64(f->i);
    case IC_INFO_STRING:
        return json_object_new_string(f->s ? f->s : "");
    }
    return json_object_new_null();
}

static json_object *info_json(const ic_image_info *in)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)in->virtual_size));
    json_object_object_add(o, "filename", json_object_new_string(in->filename));
    if (in->cluster_size)
        json_object_object_add(o, "cluster-size", json_object_new_int64(in->cluster_size));
    json_object_object_add(o, "format", json_object_new_string(in->format));
    if (in->actual_size >= 0)
        json_object_object_add(o, "actual-size", json_object_new_int64(in->actual_size));
    if (in->encrypted)
        json_object_object_add(o, "encrypted", json_object_new_boolean(1));
    if (in->nb_snapshots) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < in->nb_snapshots; i++)
            json_object_array_add(arr, cli_snapshot_json(&in->snapshots[i]));
        json_object_object_add(o, "snapshots", arr);
    }
    if (in->nb_specific) {
        json_object *fs = json_object_new_object(), *data = json_object_new_object();
        json_object_object_add(fs, "type", json_object_new_string(in->format));
        for (size_t i = 0; i < in->nb_specific; i++)
            json_object_object_add(data, in->specific[i].key, field_json(in, &in->specific[i]));
        json_object_object_add(fs, "data", data);
        json_object_object_add(o, "format-specific", fs);
    }
    if (in->full_backing_filename)
        json_object_object_add(o, "full-backing-filename",
                               json_object_new_string(in->full_backing_filename));
    if (in->backing_filename)
        json_object_object_add(o, "backing-filename", json_object_new_string(in->backing_filename));
    if (in->backing_format)
        json_object_object_add(o, "backing-filename-format",
                               json_object_new_string(in->backing_format));
    json_object_object_add(o, "dirty-flag", json_object_new_boolean(in->dirty));
    return o;
}

/* qemu's nested list layout: "[i]:" per bitmap, its flags as a list. */
static void bitmaps_human(const char *key, const ic_image_info *in)
{
    printf("    %s:\n", key);
    for (size_t i = 0; i < in->nb_bitmaps; i++) {
        const ic_bitmap_info *b = &in->bitmaps[i];
        int nf = 0;
        printf("        [%zu]:\n            flags:\n", i);
        if (b->in_use)
            printf("                [%d]: in-use\n", nf++);
        if (b->enabled)
            printf("                [%d]: auto\n", nf++);
        printf("            name: %s\n            granularity: %" PRIu64 "\n", b->name,
               b->granularity);
    }
}

static void info_human(const ic_image_info *in)
{
    char vsize[32], dsize[32];
    cli_format_size(in->virtual_size, vsize, sizeof(vsize));
    if (in->actual_size >= 0)
        cli_format_size((uint64_t)in->actual_size, dsize, sizeof(dsize));
    else
        snprintf(dsize, sizeof(dsize), "unavailable");
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
           in->filename, in->format, vsize, in->virtual_size, dsize);
    if (in->encrypted)
        printf("encrypted: yes\n");
    if (in->cluster_size)
        printf("cluster_size: %" PRIu32 "\n", in->cluster_size);
    if (in->dirty)
        printf("cleanly shut down: no\n");
    if (in->backing_filename) {
        printf("backing file: %s", in->backing_filename);
        if (!in->full_backing_filename)
            printf(" (cannot determine actual path)");
        else if (strcmp(in->backing_filename, in->full_backing_filename))
            printf(" (actual path: %s)", in->full_backing_filename);
        putchar('\n');
    }
    if (in->backing_format)
        printf("backing file format: %s\n", in->backing_format);
    if (in->nb_snapshots) {
        printf("Snapshot list:\n");
        cli_snapshot_line(NULL);
        for (size_t i = 0; i < in->nb_snapshots; i++)
            cli_snapshot_line(&in->snapshots[i]);
    }
    if (in->nb_specific) {
        printf("Format specific information:\n");
        for (size_t i = 0; i < in->nb_specific; i++) {
            const ic_info_field *f = &in->specific[i];
            char key[128];
            snprintf(key, sizeof(key), "%s", f->key);
            for (char *c = key; *c; c++)
                if (*c == '-')
                    *c = ' ';
            switch (f->type) {
            case IC_INFO_BOOL:
                printf("    %s: %s\n", key, f->b ? "true" : "false");
                break;
            case IC_INFO_INT:
                printf("    %s: %" PRId64 "\n", key, f->i);
                break;
            case IC_INFO_STRING:
                printf("    %s: %s\n", key, f->s ? f->s : "");
                break;
            case IC_INFO_BITMAPS:
                bitmaps_human(key, in);
                break;
            }
        }
    }
}

static int run_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, 'B' },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, chain = false, share = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            share = true;
            break;
        case 'B':
            chain = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("info", optarg, &json))
                return CLI_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: imgchain info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("info", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("info", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("info", argc - optind < 1 ? "missing FILE" : "too many arguments");
    const char *path = argv[optind];

    ic_image *img = NULL;
    unsigned flags = (chain ? 0 : IC_OPEN_NO_BACKING) | (share ? IC_OPEN_FORCE_SHARE : 0);
    int rc = cli_open_image(&img, path, fmt, flags);
    if (rc)
        return rc;
    json_object *arr = chain && json ? json_object_new_array() : NULL;
    rc = CLI_EXIT_OK;
    bool first = true;
    for (ic_image *l = img; l; l = chain ? ic_image_backing(l) : NULL) {
        ic_image_info *in = NULL;
        ic_error *err = NULL;
        if (ic_image_get_info(l, &in, &err) < 0) {
            rc = cli_fail(err, CLI_EXIT_FAIL);
            break;
        }
        if (json) {
            json_object *o = info_json(in);
            if (arr) {
                json_object_array_add(arr, o);
            } else {
                cli_print_json(o);
                json_object_put(o);
            }
        } else {
            if (!first)
                putchar('\n');
            info_human(in);
        }
        first = false;
        ic_image_info_free(in);
    }
    if (arr) {
        if (rc == CLI_EXIT_OK)
            cli_print_json(arr);
        json_object_put(arr);
    }
    ic_image_close(img);
    if (fflush(stdout) != 0) {
        cli_errorf("writing the output failed");
        return CLI_EXIT_FAIL;
    }
    return rc;
}

CLI_COMMAND(cmd_info, "info", run_info,
            "info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE")
