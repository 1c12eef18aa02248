/*
 * cmd-check.c - `imgchain check`: consistency check and repair of one image
 * (qemu-img check's options, output and exit codes), or of a whole chain.
 *
 * Design notes:
 *  1. Format-agnostic: everything goes through ic_image_check(); qcow2 and
 *     QED have checks, raw does not (exit 63, "This image format does not
 *     support checks").
 *  2. Without -r the image is opened read-only with IC_OPEN_CHECK (no
 *     automatic repair); with -r read-write.  Only the named image is
 *     checked (IC_OPEN_NO_BACKING), as qemu-img.
 *  3. With -r, if anything was fixed, a second pass without fix runs and
 *     its counters are reported with the first pass's *-fixed values
 *     ("Double checking the fixed image now...").  --dry-run with -r runs
 *     read-only and prints each change the repair would make.
 *  4. Per-problem lines go to stderr, the summary to stdout (qemu-img).
 *     JSON: filename, format, check-errors always; the other counters only
 *     when non-zero.
 *  5. Exit codes (qemu-img): 0 clean, 1 check could not complete
 *     (check_errors), 2 corruptions, 3 leaks only, 63 no check for the
 *     format; 64 usage, 75 locked.
 *  6. --chain checks every image of the chain and the links between them
 *     (ic_chain_check): findings are printed one per line; exit 2 when any
 *     is an error, else 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/chain-edit.h>

#include "cli-domain.h"
#include "cli-util.h"

#define CHECK_EXIT_CORRUPT 2
#define CHECK_EXIT_LEAKS 3
#define CHECK_EXIT_NOTSUP 63

static void report_line(void *payload, const char *line)
{
    bool *quiet = payload;
    if (!*quiet)
        fprintf(stderr, "%s\n", line);
}

static void add_nz(json_object *o, const char *k, int64_t v)
{
    if (v)
        json_object_object_add(o, k, json_object_new_int64(v));
}

static void dump_json(const char *file, const char *fmt, const ic_check_result *r)
{
    json_object *o = json_object_new_object();
    add_nz(o, "image-end-offset", (int64_t)r->image_end_offset);
    add_nz(o, "total-clusters", (int64_t)r->total_clusters);
    json_object_object_add(o, "check-errors", json_object_new_int64(r->check_errors));
    add_nz(o, "leaks", r->leaks);
    add_nz(o, "corruptions", r->corruptions);
    add_nz(o, "leaks-fixed", r->leaks_fixed);
    add_nz(o, "corruptions-fixed", r->corruptions_fixed);
    add_nz(o, "allocated-clusters", (int64_t)r->allocated_clusters);
    add_nz(o, "fragmented-clusters", (int64_t)r->fragmented_clusters);
    add_nz(o, "compressed-clusters", (int64_t)r->compressed_clusters);
    json_object_object_add(o, "filename", json_object_new_string(file));
    json_object_object_add(o, "format", json_object_new_string(fmt));
    cli_print_json(o);
    json_object_put(o);
}

static void dump_human(const ic_check_result *r)
{
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\nData may be corrupted, or "
                   "further writes to the image may corrupt it.\n", r->corruptions);
        if (r->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\nThis means waste of "
                   "disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated_clusters, r->total_clusters,
               (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
               (double)r->fragmented_clusters * 100.0 / (double)r->allocated_clusters,
               (double)r->compressed_clusters * 100.0 / (double)r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

static void chain_finding(const ic_chain_finding *f, void *payload)
{
    (void)payload;
    static const char *const sev[] = { "info", "warning", "error" };
    printf("%s: %s: %s\n", sev[f->severity], ic_chain_problem_name(f->kind), f->message);
}

static int check_chain(const char *path, const char *fmt, bool quiet)
{
    ic_chain_check_options o = IC_CHAIN_CHECK_OPTIONS_INIT;
    o.format = fmt;
    o.report = chain_finding;
    o.image_report = report_line;
    o.payload = &quiet;
    ic_chain_check_result *res = NULL;
    ic_error *err = NULL;
    if (ic_chain_check(&res, path, &o, &err) < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    size_t errors = res->errors;
    printf("%zu image(s) checked: %zu error(s), %zu warning(s)\n", res->nb_images, res->errors,
           res->warnings);
    ic_chain_check_result_free(res);
    return errors ? CHECK_EXIT_CORRUPT : CLI_EXIT_OK;
}

enum { OPT_DRY_RUN = 0x200, OPT_CHAIN };

static int run_check(int argc, char **argv)
{
    /* check --domain D: the domain's journal and disk chains (cmd-domain.c) */
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--domain", 8))
            return cli_domain_check(argc, argv);
    static const struct option longopts[] = {
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "chain", no_argument, NULL, OPT_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    unsigned fix = 0;
    bool json = false, quiet = false, dry = false, chain = false, share = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:r:T:qUh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = IC_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = IC_FIX_LEAKS | IC_FIX_ERRORS;
            else
                return cli_usage_error("check", "Unknown option value for -r (expecting "
                                       "'leaks' or 'all'): %s", optarg);
            break;
        case 'T':
            break; /* cache mode: the check reads through the page cache */
        case 'q':
            quiet = true;
            break;
        case 'U':
            share = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("check", optarg, &json) != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_DRY_RUN:
            dry = true;
            break;
        case OPT_CHAIN:
            chain = true;
            break;
        case 'h':
            printf("usage: imgchain check [-f FMT] [-q] [-U] [-r leaks|all [--dry-run]] "
                   "[--output=human|json] [--chain] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("check", "option requires an argument -- '%c'", optopt);
        default:
            return cli_usage_error("check", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("check", optind >= argc ? "Expecting one image file name"
                                                       : "too many arguments");
    if (dry && !fix)
        return cli_usage_error("check", "--dry-run needs -r leaks or -r all");
    if (share && fix && !dry)
        return cli_usage_error("check", "-U cannot be used with -r");
    const char *path = argv[optind];
    if (chain) {
        if (fix || json)
            return cli_usage_error("check", "--chain takes neither -r nor --output=json");
        return check_chain(path, fmt, quiet);
    }
    unsigned flags = IC_OPEN_NO_BACKING | IC_OPEN_CHECK;
    if (fix && !dry)
        flags |= IC_OPEN_RDWR;
    if (share)
        flags |= IC_OPEN_FORCE_SHARE;
    ic_image *img = NULL;
    int rc = cli_open_image(&img, path, fmt, flags);
    if (rc)
        return rc;
    ic_check_result r;
    ic_error *err = NULL;
    unsigned mode = fix | (dry ? IC_CHECK_DRY_RUN : 0);
    int ret = ic_image_check(img, mode, report_line, &quiet, &r, &err);
    if (ret == -ENOTSUP) {
        ic_error_free(err);
        ic_image_close(img);
        cli_errorf("This image format does not support checks");
        return CHECK_EXIT_NOTSUP;
    }
    if (ret == 0 && fix && !dry && (r.corruptions_fixed || r.leaks_fixed)) {
        int64_t lf = r.leaks_fixed, cf = r.corruptions_fixed;
        if (!json && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n    %" PRId64
                   " leaked clusters\n    %" PRId64 " corruptions\n\nDouble checking the fixed "
                   "image now...\n", lf, cf);
        ret = ic_image_check(img, 0, report_line, &quiet, &r, &err);
        r.leaks_fixed = lf;
        r.corruptions_fixed = cf;
    }
    if (ret == 0 && !quiet) {
        if (json)
            dump_json(path, ic_image_format(img), &r);
        else
            dump_human(&r);
    }
    int cret = ic_image_close(img);
    if (ret < 0) {
        fprintf(stderr, "imgchain: Check failed: %s\n", ic_error_message(err));
        ic_error_free(err);
        return CLI_EXIT_FAIL;
    }
    if (r.check_errors || cret < 0) {
        cli_errorf("Check failed");
        return CLI_EXIT_FAIL;
    }
    if (r.corruptions)
        return CHECK_EXIT_CORRUPT;
    if (r.leaks)
        return CHECK_EXIT_LEAKS;
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_check, "check", run_check,
            "check [-f FMT] [-q] [-U] [-r leaks|all [--dry-run]] [--output=human|json] [--chain] "
            "FILE")
