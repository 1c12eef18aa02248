/*
 * cmd-convert.c - `imgchain convert`: copy or flatten an image chain into
 * a new image (qemu-img convert's common options).
 *
 * Design notes:
 *  1. All the work is ic_image_convert() (src/chain/chain-convert.c); this
 *     file maps options: -f source format, -O target format (raw by
 *     default, as qemu-img), -o target options, -c compress, -C copy offloading, -t cache
 *     mode of the target and -T of the source (qemu-img's cache modes,
 *     ic_cache_mode; by default the target is written O_DIRECT where the
 *     file system allows and flushed before exit, and -t unsafe skips only
 *     that final flush), -l snapshot, -U force-share source, -p progress,
 *     -q quiet, -r rate limit in bytes per second (qemu-img's suffixes),
 *     -n write into the existing DST, -W out-of-order writes (accepted:
 *     the engine already overlaps its writes as it sees fit), -B/-F the
 *     target is an overlay of BACKING (of format FMT) holding what the
 *     source's top image allocates, -S the sparse threshold, --salvage
 *     unreadable sectors read as zeroes, each named on stderr.
 *  2. -p prints "    (xx.xx/100%)" with a carriage return on stderr, only
 *     when stderr is a terminal, at most once per 1/100 of a percent, and a
 *     final newline; the output never ends mid-line.
 *  3. Exit codes: 0 ok, 1 failure (the target is removed if it did not
 *     exist), 64 usage, 75 an image is locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/chain.h>
#include <imgchain/util.h>

#include "cli-bitmap.h"
#include "cli-util.h"

enum { OPT_BITMAPS = 0x300, OPT_SKIP_BROKEN };
enum { OPT_SALVAGE = 0x100 };

/* --salvage: one line per unreadable sector, as qemu-img prints them. */
static void salvage_warn(uint64_t offset, int errnum, void *payload)
{
    (void)payload;
    cli_errorf("warning: error while reading offset %" PRIu64 ": %s", offset, strerror(errnum));
}

/* -S SIZE: qemu-img's rule and messages (multiples of 512 up to 16 MiB). */
static int cli_parse_sparse(const char *arg, uint64_t *out)
{
    if (ic_parse_size(arg, out) < 0)
        return cli_usage_error("convert", "Invalid buffer size for sparse output specified. "
                                          "You may use k, M, G, T, P or E suffixes for "
                                          "kilobytes, megabytes, gigabytes, terabytes, "
                                          "petabytes and exabytes.");
    if (*out % 512 || *out > (16u << 20))
        return cli_usage_error("convert", "Invalid buffer size for sparse output specified. "
                                          "Valid sizes are multiples of 512 up to 16777216. "
                                          "Select 0 to disable sparse detection (fully "
                                          "allocates output).");
    return 0;
}

static int run_convert(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
        { "force-share", no_argument, NULL, 'U' },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ic_convert_options o = IC_CONVERT_OPTIONS_INIT;
    struct cli_snapshot_arg snap = { 0 };
    bool progress = false, quiet = false, bitmaps = false, skip_broken = false;
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:O:o:B:F:S:cCt:T:l:r:nWpqUh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.src_format = optarg;
            break;
        case 'O':
            o.out_format = optarg;
            break;
        case 'o':
            if (o.options) {
                cli_snapshot_arg_free(&snap);
                return cli_usage_error("convert", "-o may be given only once");
            }
            o.options = optarg;
            break;
        case 'c':
            o.compress = true;
            break;
        case 'C':
            o.copy_range = true;
            break;
        case 't':
        case 'T':
            if (cli_parse_cache("convert", optarg, c == 't' ? &o.cache : &o.src_cache) != 0) {
                cli_snapshot_arg_free(&snap);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'l':
            cli_snapshot_arg_free(&snap);
            if ((rc = cli_parse_snapshot_arg("convert", optarg, &snap)) != 0)
                return rc;
            break;
        case 'r':
            if (cli_parse_rate("convert", optarg, &o.rate_limit) != 0) {
                cli_snapshot_arg_free(&snap);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'B':
            o.backing = optarg;
            break;
        case 'F':
            o.backing_format = optarg;
            break;
        case 'S':
            if (cli_parse_sparse(optarg, &o.sparse_size) != 0) {
                cli_snapshot_arg_free(&snap);
                return CLI_EXIT_USAGE;
            }
            o.sparse_size_set = true;
            break;
        case OPT_SALVAGE:
            o.salvage = true;
            o.salvage_warn = salvage_warn;
            break;
        case 'n':
            o.no_create = true;
            break;
        case 'W':
            /* out-of-order writes: accepted; the engine's order is its own */
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            o.force_share = true;
            break;
        case OPT_BITMAPS:
            bitmaps = true;
            break;
        case OPT_SKIP_BROKEN:
            skip_broken = true;
            break;
        case 'h':
            cli_snapshot_arg_free(&snap);
            printf("usage: imgchain convert [-f FMT] [-O raw|qcow2|qed] [-o OPTS] [-c] [-C] [-p] "
                   "[-q] [-n] [-W] [-S SIZE] [--salvage] [-B BACKING -F FMT] [-t CACHE] [-T CACHE] [-l SNAPSHOT] [-r RATE] "
                   "[--bitmaps [--skip-broken-bitmaps]] [-U] SRC DST\n");
            return CLI_EXIT_OK;
        case ':':
            cli_snapshot_arg_free(&snap);
            return cli_usage_error("convert", "option '%s' needs an argument", argv[optind - 1]);
        default:
            cli_snapshot_arg_free(&snap);
            return cli_usage_error("convert", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2) {
        cli_snapshot_arg_free(&snap);
        return cli_usage_error("convert", argc - optind < 2 ? "SRC and DST are required"
                                                            : "too many arguments");
    }
    if (skip_broken && !bitmaps) {
        cli_snapshot_arg_free(&snap);
        return cli_usage_error("convert", "Use of --skip-broken-bitmaps requires --bitmaps");
    }
    if (bitmaps && (rc = cli_bitmaps_check(argv[optind], o.src_format, o.force_share,
                                           o.out_format, skip_broken)) != 0) {
        cli_snapshot_arg_free(&snap);
        return rc;
    }
    o.snapshot_id = snap.id;
    o.snapshot_name = snap.name;
    o.snapshot = snap.id_or_name;
    struct cli_progress ps = { .operation = "convert", .last = -1 };
    bool show = progress && !quiet && cli_isatty_stderr();
    if (show) {
        o.progress = cli_progress_cb;
        o.payload = &ps;
    }
    ic_error *err = NULL;
    int ret = ic_image_convert(argv[optind], argv[optind + 1], &o, &err);
    if (show && ps.last >= 0)
        fputc('\n', stderr);
    cli_snapshot_arg_free(&snap);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (bitmaps)
        return cli_bitmaps_copy(argv[optind], o.src_format, o.force_share, argv[optind + 1]);
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_convert, "convert", run_convert,
            "convert [-f FMT] [-O raw|qcow2|qed] [-o OPTS] [-c] [-C] [-p] [-q] [-n] [-W] [-S SIZE] "
            "[--salvage] [-B BACKING -F FMT] [-t CACHE] [-T CACHE] [-l SNAPSHOT] [-r RATE] "
            "[--bitmaps [--skip-broken-bitmaps]] [-U] SRC DST")
