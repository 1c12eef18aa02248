/*
 * cmd-amend.c - `imgchain amend`: change the options of an existing image
 * (qemu-img amend).
 *
 * Design notes:
 *  1. Syntax as qemu-img 7.2: `amend -o OPTIONS [--force] [-f FMT] [-q]
 *     FILE`; several -o are joined with commas, as qemu-img joins them.
 *     `-o help` lists what can be amended.  --force is accepted: qemu-img
 *     needs it only for encryption keyslot changes, which imgchain does not
 *     make.  amend prints nothing on success.
 *  2. Every refusal is decided on a read-only open (ic_image_amend_check)
 *     and the image is opened for writing only to amend it: a read-write
 *     open may itself write, and a refused amend must leave the file byte
 *     for byte as it was.
 *  3. Exit codes: 0 ok, 1 refused or failed (qemu-img's 1), 64 usage (no
 *     -o, no FILE, an unknown flag), 75 locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/image.h>

#include "cli-util.h"

#define AMEND_USAGE "amend -o OPTIONS [--force] [-f FMT] [-q] FILE"

enum { OPT_FORCE = 0x100 };

static const char amend_help_qcow2[] =
    "Amend options for 'qcow2':\n"
    "  backing_file=<str>     - File name of a base image\n"
    "  backing_fmt=<str>      - Image format of the base image\n"
    "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
    "  data_file=<str>        - File name of an external data file\n"
    "  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image\n"
    "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
    "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
    "  size=<size>            - Virtual disk size\n";

/* True when the comma-separated list has a "help" or "?" element. */
static bool wants_help(const char *opts)
{
    const char *p = opts;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        if ((n == 4 && !strncmp(p, "help", 4)) || (n == 1 && *p == '?'))
            return true;
        p += n;
        p += *p == ',';
    }
    return false;
}

static int run_amend(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "force", no_argument, NULL, OPT_FORCE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    char *options = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:f:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': {
            size_t n = (options ? strlen(options) + 1 : 0) + strlen(optarg) + 1;
            char *j = malloc(n);
            if (!j) {
                free(options);
                cli_errorf("out of memory");
                return CLI_EXIT_FAIL;
            }
            snprintf(j, n, "%s%s%s", options ? options : "", options ? "," : "", optarg);
            free(options);
            options = j;
            break;
        }
        case 'f':
            fmt = optarg;
            break;
        case 'q':
        case OPT_FORCE:
            break;
        case 'h':
            free(options);
            printf("usage: imgchain " AMEND_USAGE "\n");
            return CLI_EXIT_OK;
        case ':':
            free(options);
            return cli_usage_error("amend", "option '%s' needs an argument", argv[optind - 1]);
        default:
            free(options);
            return cli_usage_error("amend", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) {
        free(options);
        return cli_usage_error("amend", "Expecting one image file name");
    }
    if (!options) {
        return cli_usage_error("amend", "Must specify options (-o)");
    }
    const char *path = argv[optind];
    ic_image *img = NULL;
    int rc = cli_open_image(&img, path, fmt, 0);
    if (rc) {
        free(options);
        return rc;
    }
    ic_error *err = NULL;
    if (wants_help(options)) {
        free(options);
        if (strcmp(ic_image_format(img), "qcow2")) {
            cli_errorf("%s: Format driver '%s' does not support option amendment", path,
                       ic_image_format(img));
            ic_image_close(img);
            return CLI_EXIT_FAIL;
        }
        ic_image_close(img);
        fputs(amend_help_qcow2, stdout);
        return CLI_EXIT_OK;
    }
    if (ic_image_amend_check(img, options, &err) < 0) {
        free(options);
        ic_image_close(img);
        return cli_fail(err, CLI_EXIT_FAIL);
    }
    ic_image_close(img);
    img = NULL;
    if ((rc = cli_open_image(&img, path, fmt, IC_OPEN_RDWR)) != 0) {
        free(options);
        return rc;
    }
    int ret = ic_image_amend(img, options, &err);
    free(options);
    int cret = ic_image_close(img);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (cret < 0) {
        cli_errorf("%s: close failed: %s", path, strerror(-cret));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_amend, "amend", run_amend, AMEND_USAGE)
