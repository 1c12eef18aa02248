/*
 * cmd-commit.c - `imgchain commit`: write an overlay's data into its
 * backing file (qemu-img commit).
 *
 * Design notes:
 *  1. All the work is ic_chain_commit() (src/chain/chain-commit.c); this
 *     file maps options: -f FMT, -b BASE (implies -d, as qemu-img), -d,
 *     -t CACHE (qemu-img's cache modes, ic_cache_mode: the default writes
 *     the base O_DIRECT where it can; unsafe skips only the final flush),
 *     -p progress on a terminal, --progress=json (JSON lines on
 *     stdout, for programs), -q, and --resume (finish an interrupted commit
 *     recorded in FILE's journal; resuming is never automatic).
 *  2. Prints "Image committed." on success as qemu-img does (not with -q or
 *     --progress=json); warnings go to stderr as "imgchain: warning: ...".
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

enum { OPT_PROGRESS = 0x100, OPT_RESUME, OPT_NO_SCAN };

static int run_commit(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "progress", optional_argument, NULL, OPT_PROGRESS },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "no-dependents-scan", no_argument, NULL, OPT_NO_SCAN },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ic_commit_options o = IC_COMMIT_OPTIONS_INIT;
    struct cli_progress ui = { .operation = "commit", .last = -1 };
    bool progress = false, quiet = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:b:dt:pqr:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.format = optarg;
            break;
        case 'b':
            o.base = optarg;
            break;
        case 'd':
            o.drop = true;
            break;
        case 't':
            if (cli_parse_cache("commit", optarg, &o.cache) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            if (cli_parse_rate("commit", optarg, &o.rate_limit) != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_PROGRESS:
            if (cli_parse_progress("commit", optarg, &progress, &ui) != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_RESUME:
            o.resume = true;
            break;
        case OPT_NO_SCAN:
            o.no_dependents_scan = true;
            break;
        case 'h':
            printf("usage: imgchain commit [-q] [-f FMT] [-t CACHE] [-b BASE] [-d] [-r RATE] "
                   "[-p] [--progress=json] [--resume] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("commit", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("commit", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("commit", argc - optind < 1 ? "FILE is required"
                                                           : "too many arguments");
    if (o.resume && (o.base || o.drop || o.format))
        return cli_usage_error("commit", "--resume takes its options from the journal; "
                                         "give only FILE");
    ui.tty = progress && !quiet && !ui.json && cli_isatty_stderr();
    if (ui.tty || ui.json)
        o.progress = cli_progress_cb;
    if (!quiet)
        o.warn = cli_warn_cb;
    o.payload = &ui;
    ic_error *err = NULL;
    int ret = ic_chain_commit(argv[optind], &o, &err);
    if (ui.tty && ui.last >= 0)
        fputc('\n', stderr);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (!quiet && !ui.json)
        printf("Image committed.\n");
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_commit, "commit", run_commit,
            "commit [-q] [-f FMT] [-t CACHE] [-b BASE] [-d] [-r RATE] [-p] [--progress=json] "
            "[--resume] FILE")
