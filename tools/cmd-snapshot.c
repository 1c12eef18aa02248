/*
 * cmd-snapshot.c - `imgchain snapshot`: qcow2 internal snapshots
 * (qemu-img snapshot's options and output).
 *
 * Design notes:
 *  1. One of -l, -a, -c, -d ("Cannot mix '-l', '-a', '-c', '-d'", usage
 *     error 64).  -l opens read-only (with -U sharing), the others
 *     read-write; -q silences nothing but keeps qemu-img's option set.
 *  2. -l prints qemu's "Snapshot list:" table (bdrv_snapshot_dump layout);
 *     --output=json prints the snapshots array with qemu-img info's fields.
 *  3. -c refuses an existing name; -a matches an id, then a name; -d a
 *     name, then an id (imgchain/snapshot.h).
 *  4. Exit codes: 0 ok, 1 failure, 64 usage, 75 locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <imgchain/snapshot.h>

#include "cli-util.h"

static int list(ic_image *img, bool json)
{
    ic_snapshot_info *v = NULL;
    ic_error *err = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    if (n < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (json) {
        json_object *arr = json_object_new_array();
        for (int i = 0; i < n; i++)
            json_object_array_add(arr, cli_snapshot_json(&v[i]));
        cli_print_json(arr);
        json_object_put(arr);
    } else if (n > 0) {
        printf("Snapshot list:\n");
        cli_snapshot_line(NULL);
        for (int i = 0; i < n; i++)
            cli_snapshot_line(&v[i]);
    }
    ic_snapshot_list_free(v, n > 0 ? (size_t)n : 0);
    return CLI_EXIT_OK;
}

static int run_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *arg = NULL;
    char action = 0;
    bool json = false, share = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:la:c:d:qUh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action)
                return cli_usage_error("snapshot", "Cannot mix '-l', '-a', '-c', '-d'");
            action = (char)c;
            arg = c == 'l' ? NULL : optarg;
            break;
        case 'q':
            break;
        case 'U':
            share = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("snapshot", optarg, &json) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: imgchain snapshot [-f FMT] [-q] [-U] [-l [--output=human|json] | "
                   "-a SNAPSHOT | -c SNAPSHOT | -d SNAPSHOT] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("snapshot", "option requires an argument -- '%c'", optopt);
        default:
            return cli_usage_error("snapshot", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("snapshot", optind >= argc ? "Expecting one image file name"
                                                          : "too many arguments");
    if (!action)
        action = 'l';
    if (share && action != 'l')
        return cli_usage_error("snapshot", "-U can only be used with -l");
    const char *path = argv[optind];
    ic_image *img = NULL;
    unsigned flags = IC_OPEN_NO_BACKING;
    if (action != 'l')
        flags |= IC_OPEN_RDWR;
    else if (share)
        flags |= IC_OPEN_FORCE_SHARE;
    int rc = cli_open_image(&img, path, fmt, flags);
    if (rc)
        return rc;
    ic_error *err = NULL;
    int ret = 0;
    switch (action) {
    case 'l':
        rc = list(img, json);
        ic_image_close(img);
        return rc;
    case 'c':
        ret = ic_snapshot_create(img, arg, &err);
        break;
    case 'a':
        ret = ic_snapshot_apply(img, arg, &err);
        break;
    default:
        ret = ic_snapshot_delete(img, arg, &err);
        break;
    }
    if (ret == 0)
        ret = ic_image_flush(img, &err);
    int cret = ic_image_close(img);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (cret < 0) {
        cli_errorf("%s: cannot close the image: %s", path, strerror(-cret));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_snapshot, "snapshot", run_snapshot,
            "snapshot [-f FMT] [-q] [-U] [-l [--output=human|json] | -a SNAPSHOT | -c SNAPSHOT "
            "| -d SNAPSHOT] FILE")
