/*
 * cmd-check-chain.c - `imgchain check-chain FILE`: check every image of a
 * backing chain and the links between them (ic_chain_check).
 *
 * Design notes:
 *  1. A stand-in until `imgchain check --chain FILE` (tools/cmd-check.c)
 *     calls ic_chain_check() itself; the output and exit codes below are
 *     what that option should keep.
 *  2. Human output: one line per finding, "error: ...", "warning: ..." or
 *     "note: ...", as ic_chain_check reports them, then per image its
 *     format and check counts, then a summary line.  --output=json: an
 *     object {"images": [{filename, format, virtual-size, checked,
 *     corruptions, leaks, check-errors}], "findings": [{kind, severity,
 *     depth, filename, message}], "errors", "warnings"}.
 *  3. Exit codes: 0 no error finding (warnings and notes allowed), 2 at
 *     least one error finding (broken link, corruption, interrupted
 *     operation), 1 the check could not run, 64 usage, 75 locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <imgchain/chain-edit.h>

#include "cli.h"

enum { OPT_OUTPUT = 0x100, OPT_LINKS_ONLY };

#define CHECK_CHAIN_EXIT_ERRORS 2

static const char *sev_name(ic_chain_severity s)
{
    switch (s) {
    case IC_CHAIN_ERROR:
        return "error";
    case IC_CHAIN_WARNING:
        return "warning";
    case IC_CHAIN_INFO:
        return "note";
    }
    return "note";
}

static void print_finding(const ic_chain_finding *f, void *payload)
{
    (void)payload;
    printf("%s: %s\n", sev_name(f->severity), f->message);
}

static json_object *to_json(const ic_chain_check_result *r)
{
    json_object *o = json_object_new_object(), *imgs = json_object_new_array(),
                *fs = json_object_new_array();
    for (size_t i = 0; i < r->nb_images; i++) {
        const ic_chain_image_report *ir = &r->images[i];
        json_object *j = json_object_new_object();
        json_object_object_add(j, "filename", json_object_new_string(ir->filename));
        if (ir->format)
            json_object_object_add(j, "format", json_object_new_string(ir->format));
        json_object_object_add(j, "virtual-size", json_object_new_int64((int64_t)ir->virtual_size));
        json_object_object_add(j, "checked", json_object_new_boolean(ir->checked));
        if (ir->checked) {
            json_object_object_add(j, "corruptions", json_object_new_int64(ir->check.corruptions));
            json_object_object_add(j, "leaks", json_object_new_int64(ir->check.leaks));
            json_object_object_add(j, "check-errors", json_object_new_int64(ir->check.check_errors));
        }
        json_object_array_add(imgs, j);
    }
    for (size_t i = 0; i < r->nb_findings; i++) {
        const ic_chain_finding *f = &r->findings[i];
        json_object *j = json_object_new_object();
        json_object_object_add(j, "kind", json_object_new_string(ic_chain_problem_name(f->kind)));
        json_object_object_add(j, "severity", json_object_new_string(sev_name(f->severity)));
        json_object_object_add(j, "depth", json_object_new_int((int)f->depth));
        json_object_object_add(j, "filename", json_object_new_string(f->file));
        json_object_object_add(j, "message", json_object_new_string(f->message));
        json_object_array_add(fs, j);
    }
    json_object_object_add(o, "images", imgs);
    json_object_object_add(o, "findings", fs);
    json_object_object_add(o, "errors", json_object_new_int64((int64_t)r->errors));
    json_object_object_add(o, "warnings", json_object_new_int64((int64_t)r->warnings));
    return o;
}

static int run_check_chain(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "links-only", no_argument, NULL, OPT_LINKS_ONLY },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ic_chain_check_options o = IC_CHAIN_CHECK_OPTIONS_INIT;
    bool json = false, quiet = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:Uqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.format = optarg;
            break;
        case 'U':
            o.flags |= IC_OPEN_FORCE_SHARE;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_LINKS_ONLY:
            o.skip_image_checks = true;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human"))
                return cli_usage_error("check-chain", "--output must be 'human' or 'json', not '%s'",
                                       optarg);
            break;
        case 'h':
            printf("usage: imgchain check-chain [-q] [-f FMT] [-U] [--links-only] "
                   "[--output=human|json] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("check-chain", "option '%s' needs an argument",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("check-chain", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("check-chain", argc - optind < 1 ? "FILE is required"
                                                                : "too many arguments");
    if (!json && !quiet)
        o.report = print_finding;
    ic_chain_check_result *r = NULL;
    ic_error *err = NULL;
    if (ic_chain_check(&r, argv[optind], &o, &err) < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (json && !quiet) {
        json_object *j = to_json(r);
        printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
                                                            JSON_C_TO_STRING_SPACED |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    } else if (!quiet) {
        for (size_t i = 0; i < r->nb_images; i++) {
            const ic_chain_image_report *ir = &r->images[i];
            if (ir->checked)
                printf("%s (%s): %" PRId64 " corruptions, %" PRId64 " leaks, %" PRId64
                       " check errors\n", ir->filename, ir->format ? ir->format : "?",
                       ir->check.corruptions, ir->check.leaks, ir->check.check_errors);
            else
                printf("%s (%s): links checked\n", ir->filename, ir->format ? ir->format : "?");
        }
        printf("%zu images, %zu errors, %zu warnings\n", r->nb_images, r->errors, r->warnings);
    }
    int rc = r->errors ? CHECK_CHAIN_EXIT_ERRORS : CLI_EXIT_OK;
    ic_chain_check_result_free(r);
    return rc;
}

CLI_COMMAND(cmd_check_chain, "check-chain", run_check_chain,
            "check-chain [-q] [-f FMT] [-U] [--links-only] [--output=human|json] FILE")
