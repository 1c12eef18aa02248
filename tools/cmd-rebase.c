/*
 * cmd-rebase.c - `imgchain rebase`: change an image's backing file
 * (qemu-img rebase).
 *
 * Design notes:
 *  1. All the work is ic_chain_rebase() (src/chain/chain-rebase.c); this
 *     file maps options: -f FMT, -b BACKING ("" = none: flatten in place),
 *     -F FMT (required with a backing file, as qemu-img 7.2), -u unsafe,
 *     -t CACHE for FILE and -T CACHE for the backing chains (qemu-img's
 *     cache modes, ic_cache_mode), -p progress on
 *     a terminal, --progress=json (JSON lines on stdout), -q, and --resume
 *     (finish an interrupted rebase recorded in FILE's journal).
 *  2. Prints nothing on success, as qemu-img.
 *  3. Exit codes: 0 ok, 1 failure, 64 usage, 75 an image is locked, 76 an
 *     interrupted operation must be finished first (--resume).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <imgchain/chain-edit.h>

#include "cli-util.h"

enum { OPT_PROGRESS = 0x100, OPT_RESUME };

static int run_rebase(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "progress", optional_argument, NULL, OPT_PROGRESS },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ic_rebase_options o = IC_REBASE_OPTIONS_INIT;
    struct cli_progress ui = { .operation = "rebase", .last = -1 };
    bool progress = false, quiet = false, have_b = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:F:b:ut:T:pqUh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.format = optarg;
            break;
        case 'F':
            o.backing_format = optarg;
            break;
        case 'b':
            o.backing = optarg;
            have_b = true;
            break;
        case 'u':
            o.unsafe = true;
            break;
        case 't':
            if (cli_parse_cache("rebase", optarg, &o.cache) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'T':
            if (cli_parse_cache("rebase", optarg, &o.src_cache) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            return cli_usage_error("rebase", "-U cannot be used: rebase writes FILE");
        case OPT_PROGRESS:
            if (cli_parse_progress("rebase", optarg, &progress, &ui) != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_RESUME:
            o.resume = true;
            break;
        case 'h':
            printf("usage: imgchain rebase [-q] [-f FMT] [-t CACHE] [-T CACHE] [-p] [--progress=json] [-u] "
                   "-b BACKING [-F FMT] FILE | rebase --resume FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("rebase", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("rebase", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("rebase", argc - optind < 1 ? "FILE is required"
                                                           : "too many arguments");
    if (o.resume && (have_b || o.unsafe || o.backing_format || o.format))
        return cli_usage_error("rebase", "--resume takes its options from the journal; "
                                         "give only FILE");
    if (!o.resume && !have_b)
        return cli_usage_error("rebase", "-b BACKING is required (-b \"\" removes the backing file)");
    ui.tty = progress && !quiet && !ui.json && cli_isatty_stderr();
    if (ui.tty || ui.json)
        o.progress = cli_progress_cb;
    if (!quiet)
        o.warn = cli_warn_cb;
    o.payload = &ui;
    ic_error *err = NULL;
    int ret = ic_chain_rebase(argv[optind], &o, &err);
    if (ui.tty && ui.last >= 0)
        fputc('\n', stderr);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_rebase, "rebase", run_rebase,
            "rebase [-q] [-f FMT] [-t CACHE] [-T CACHE] [-p] [--progress=json] [-u] -b BACKING [-F FMT] FILE"
            " | rebase --resume FILE")
