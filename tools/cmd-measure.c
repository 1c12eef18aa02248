/*
 * cmd-measure.c - `imgchain measure`: the file size a new image needs
 * (qemu-img measure).
 *
 * Design notes:
 *  1. Syntax as qemu-img 7.2: `measure [--output=human|json] [-O FMT]
 *     [-o OPTIONS] [-f FMT] [-U] (--size N | [-l SNAPSHOT] FILE)`; -O
 *     defaults to raw.  The figures come from ic_image_measure() and are
 *     qemu's, byte for byte; qemu-img's refusal of -O qed is kept (same
 *     message).
 *  2. Human output is qemu's three lines ("bitmaps size" only when both
 *     ends keep persistent bitmaps); JSON has qemu-img's keys in its order.
 *  3. Argument combinations qemu-img refuses are refused with its messages
 *     but as usage errors (exit 64, imgchain's convention); a source that
 *     cannot be opened or measured exits 1, a locked one 75.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/chain.h>
#include <imgchain/util.h>

#include "cli-util.h"

enum { OPT_SIZE = 0x200, OPT_IMAGE_OPTS };

#define MEASURE_USAGE "measure [--output=human|json] [-O FMT] [-o OPTIONS] [-f FMT] [-U] " \
                      "(--size N | [-l SNAPSHOT] FILE)"

static int run_measure(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *out_fmt = "raw", *options = NULL, *fmt = NULL, *snap = NULL;
    bool json = false, force_share = false, size_set = false;
    uint64_t size = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":O:o:f:l:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            options = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'l':
            snap = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("measure", optarg, &json) != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_SIZE:
            if (optarg[0] == '-' || ic_parse_size(optarg, &size) < 0)
                return cli_usage_error("measure", "Invalid image size specified. You may use k, "
                                       "M, G, T, P or E suffixes for kilobytes, megabytes, "
                                       "gigabytes, terabytes, petabytes and exabytes.");
            size_set = true;
            break;
        case 'h':
            printf("usage: imgchain " MEASURE_USAGE "\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("measure", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("measure", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1)
        return cli_usage_error("measure", "At most one filename argument is allowed.");
    const char *path = argc - optind == 1 ? argv[optind] : NULL;
    if (!path && (fmt || snap))
        return cli_usage_error("measure", "-f and -l require a filename argument.");
    if (path && size_set)
        return cli_usage_error("measure", "--size N cannot be used together with a filename.");
    if (!path && !size_set)
        return cli_usage_error("measure", "Either --size N or one filename must be specified.");

    ic_image *src = NULL;
    struct cli_snapshot_arg sa = { 0 };
    if (path) {
        if (snap && cli_parse_snapshot_arg("measure", snap, &sa) != 0)
            return CLI_EXIT_USAGE;
        int rc = cli_open_image(&src, path, fmt, force_share ? IC_OPEN_FORCE_SHARE : 0);
        if (rc) {
            cli_snapshot_arg_free(&sa);
            return rc;
        }
        if (snap) {
            ic_error *err = NULL;
            bool either = sa.id_or_name != NULL;
            const char *id = either ? sa.id_or_name : sa.id;
            if (ic_image_snapshot_load_tmp(src, id, sa.name, either, &err) < 0) {
                cli_errorf("Failed to load snapshot: %s", ic_error_message(err));
                ic_error_free(err);
                ic_image_close(src);
                cli_snapshot_arg_free(&sa);
                return CLI_EXIT_FAIL;
            }
        }
    }
    ic_measure_info info;
    ic_error *err = NULL;
    int ret = ic_image_measure(out_fmt, options, src, size, &info, &err);
    ic_image_close(src);
    cli_snapshot_arg_free(&sa);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (json) {
        json_object *o = json_object_new_object();
        if (info.has_bitmaps)
            json_object_object_add(o, "bitmaps", json_object_new_int64((int64_t)info.bitmaps));
        json_object_object_add(o, "required", json_object_new_int64((int64_t)info.required));
        json_object_object_add(o, "fully-allocated",
                               json_object_new_int64((int64_t)info.fully_allocated));
        cli_print_json(o);
        json_object_put(o);
    } else {
        printf("required size: %" PRIu64 "\n", info.required);
        printf("fully allocated size: %" PRIu64 "\n", info.fully_allocated);
        if (info.has_bitmaps)
            printf("bitmaps size: %" PRIu64 "\n", info.bitmaps);
    }
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_measure, "measure", run_measure, MEASURE_USAGE)
