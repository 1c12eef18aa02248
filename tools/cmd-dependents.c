/*
 * cmd-dependents.c - `imgchain dependents DIR... -- FILE`: which images
 * under the folders use FILE in their backing chain, so a base is never
 * deleted while something depends on it.
 *
 * Design notes:
 *  1. All the work is ic_chain_dependents() (src/chain/chain-dependents.c):
 *     headers only, recorded names followed, real paths compared.
 *  2. Human output: one line per dependent, "PATH" followed by
 *     " (through N images)" when FILE is not its direct backing file.
 *     --output=json: an array of {"filename", "depth"}.  -q prints nothing
 *     and only sets the exit code.
 *  3. Exit codes: 0 dependents found or not (scripts test the output, or
 *     use --fail-if-used: exit 2 when any image depends on FILE), 1 failure,
 *     64 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <imgchain/chain-edit.h>

#include "cli.h"

enum { OPT_OUTPUT = 0x100, OPT_FAIL_IF_USED };

#define DEPENDENTS_EXIT_USED 2

static int run_dependents(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "fail-if-used", no_argument, NULL, OPT_FAIL_IF_USED },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false, quiet = false, fail_if_used = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human"))
                return cli_usage_error("dependents", "--output must be 'human' or 'json', not '%s'",
                                       optarg);
            break;
        case OPT_FAIL_IF_USED:
            fail_if_used = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            printf("usage: imgchain dependents [--output=human|json] [--fail-if-used] [-q] "
                   "DIR... -- FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("dependents", "option '%s' needs an argument",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("dependents", "unknown option '%s'", argv[optind - 1]);
        }
    }
    /* getopt_long consumed a "--" separator; the last argument is FILE. */
    int nargs = argc - optind;
    if (nargs < 2)
        return cli_usage_error("dependents", "at least one folder and FILE are required");
    const char *target = argv[argc - 1];
    size_t ndirs = (size_t)nargs - 1;
    const char *const *dirs = (const char *const *)(argv + optind);
    ic_dependents *deps = NULL;
    ic_error *err = NULL;
    if (ic_chain_dependents(&deps, target, dirs, ndirs, NULL, &err) < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (json && !quiet) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < deps->nb; i++) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "filename", json_object_new_string(deps->list[i].filename));
            json_object_object_add(o, "depth", json_object_new_int((int)deps->list[i].depth));
            json_object_array_add(arr, o);
        }
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                              JSON_C_TO_STRING_SPACED |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    } else if (!quiet) {
        for (size_t i = 0; i < deps->nb; i++) {
            if (deps->list[i].depth > 1)
                printf("%s (through %u image%s)\n", deps->list[i].filename,
                       deps->list[i].depth - 1, deps->list[i].depth == 2 ? "" : "s");
            else
                printf("%s\n", deps->list[i].filename);
        }
    }
    int rc = fail_if_used && deps->nb ? DEPENDENTS_EXIT_USED : CLI_EXIT_OK;
    ic_dependents_free(deps);
    return rc;
}

CLI_COMMAND(cmd_dependents, "dependents", run_dependents,
            "dependents [--output=human|json] [--fail-if-used] [-q] DIR... -- FILE")
