/*
 * cmd-resize.c - `imgchain resize`: change an image's virtual size
 * (qemu-img resize).
 *
 * Design notes:
 *  1. Syntax as qemu-img 7.2: `resize [--shrink] [--preallocation=MODE]
 *     [-f FMT] [-q] FILE [+|-]SIZE`.  SIZE is always the last argument and
 *     is taken out before option parsing, so `resize disk.qcow2 -1G` works
 *     without `--` (qemu-img does the same).
 *  2. qemu-img's refusals and messages, in qemu-img's order: a size that
 *     ends up 0 or negative, preallocation when not growing, a smaller size
 *     without --shrink (an error plus qemu's warning).  The format's own
 *     refusals come from ic_image_resize().  "Image resized." on success
 *     unless -q.
 *  3. Beyond qemu-img: before a shrink, the data the top image holds past
 *     the new end is listed on stderr (merged runs, at most
 *     RESIZE_REPORT_MAX lines, then a total), since qemu-img drops it
 *     silently.  Zero clusters and holes are not data.  --shrink still
 *     proceeds.
 *  4. Every refusal is decided on a read-only open (ic_image_resize_check)
 *     and the image is opened for writing only to resize it: a read-write
 *     open may itself write (qcow2 clears its bitmaps autoclear bit), and
 *     a refused resize must leave the file byte for byte as it was.
 *  5. Exit codes: 0 ok, 1 refused or failed, 64 usage, 75 locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/util.h>

#include "cli-util.h"

enum { OPT_SHRINK = 0x100, OPT_PREALLOC };

#define RESIZE_REPORT_MAX 16

#define RESIZE_USAGE "resize [--shrink] [--preallocation=off|metadata|falloc|full] [-f FMT] [-q] " \
                     "FILE [+|-]SIZE"

/* Lists the runs of data the top layer holds in [from, to). */
static int report_dropped(ic_image *img, const char *path, uint64_t from, uint64_t to)
{
    uint64_t total = 0, run_start = 0, run_end = 0, runs = 0;
    const ic_image *base = ic_image_backing(img);
    for (uint64_t off = from; off < to;) {
        ic_block_status st;
        ic_error *err = NULL;
        if (ic_image_block_status(img, base, off, to - off, &st, &err) < 0)
            return cli_fail(err, CLI_EXIT_FAIL);
        bool data = (st.flags & IC_BS_ALLOCATED) && st.depth == 0 && !(st.flags & IC_BS_ZERO);
        if (data) {
            if (runs && run_end == off) {
                run_end = off + st.length;
            } else {
                if (runs && runs <= RESIZE_REPORT_MAX)
                    cli_errorf("warning: %s: the shrink drops data at offset %" PRIu64
                               ", %" PRIu64 " bytes", path, run_start, run_end - run_start);
                runs++;
                run_start = off;
                run_end = off + st.length;
            }
            total += st.length;
        }
        off += st.length;
    }
    if (runs && runs <= RESIZE_REPORT_MAX)
        cli_errorf("warning: %s: the shrink drops data at offset %" PRIu64 ", %" PRIu64 " bytes",
                   path, run_start, run_end - run_start);
    if (runs > RESIZE_REPORT_MAX)
        cli_errorf("warning: %s: ... %" PRIu64 " more ranges", path, runs - RESIZE_REPORT_MAX);
    if (runs)
        cli_errorf("warning: %s: the shrink drops %" PRIu64 " bytes of data in %" PRIu64
                   " range(s) past %" PRIu64, path, total, runs, from);
    return 0;
}

static int run_resize(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "preallocation", required_argument, NULL, OPT_PREALLOC },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: imgchain " RESIZE_USAGE "\n");
            return CLI_EXIT_OK;
        }
    if (argc < 3)
        return cli_usage_error("resize", "FILE and SIZE are required");
    const char *size_arg = argv[--argc];
    const char *fmt = NULL;
    bool quiet = false, shrink = false;
    ic_prealloc prealloc = IC_PREALLOC_OFF;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_SHRINK:
            shrink = true;
            break;
        case OPT_PREALLOC:
            if (ic_prealloc_parse(optarg, &prealloc) < 0)
                return cli_usage_error("resize", "Invalid preallocation mode '%s'", optarg);
            break;
        case ':':
            return cli_usage_error("resize", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("resize", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("resize", argc - optind < 1 ? "FILE is required"
                                                           : "too many arguments");
    const char *path = argv[optind];
    int relative = 0;
    if (size_arg[0] == '+' || size_arg[0] == '-') {
        relative = size_arg[0] == '+' ? 1 : -1;
        size_arg++;
    }
    uint64_t n;
    if (cli_parse_size("resize", "size", size_arg, &n) != 0)
        return CLI_EXIT_USAGE;

    /* Everything is decided on a read-only open: a read-write open may
     * itself update the header, and a refusal must leave the file as it
     * was. */
    ic_image *img = NULL;
    int rc = cli_open_image(&img, path, fmt, 0);
    if (rc)
        return rc;
    uint64_t cur = ic_image_size(img), total;
    bool negative = false;
    if (relative > 0) {
        total = cur + n;
        negative = total < cur; /* wrapped */
    } else if (relative < 0) {
        negative = n >= cur;
        total = cur - n;
    } else {
        total = n;
    }
    if (negative || total == 0 || total > INT64_MAX) {
        cli_errorf("%s: New image size must be positive", path);
        ic_image_close(img);
        return CLI_EXIT_FAIL;
    }
    if (total <= cur && prealloc != IC_PREALLOC_OFF) {
        cli_errorf("%s: Preallocation can only be used for growing images", path);
        ic_image_close(img);
        return CLI_EXIT_FAIL;
    }
    if (cur > total && !shrink) {
        cli_errorf("%s: Use the --shrink option to perform a shrink operation.", path);
        cli_errorf("warning: Shrinking an image will delete all data beyond the shrunken "
                   "image's end. Before performing such an operation, make sure there is no "
                   "important data there.");
        ic_image_close(img);
        return CLI_EXIT_FAIL;
    }
    ic_error *err = NULL;
    if (ic_image_resize_check(img, total, prealloc, &err) < 0) {
        ic_image_close(img);
        return cli_fail(err, CLI_EXIT_FAIL);
    }
    if (cur > total && (rc = report_dropped(img, path, total, cur)) != 0) {
        ic_image_close(img);
        return rc;
    }
    ic_image_close(img);
    img = NULL;
    if ((rc = cli_open_image(&img, path, fmt, IC_OPEN_RDWR)) != 0)
        return rc;
    if (ic_image_size(img) != cur) {
        cli_errorf("%s: the image changed size while it was being checked", path);
        ic_image_close(img);
        return CLI_EXIT_FAIL;
    }
    int ret = ic_image_resize(img, total, prealloc, &err);
    int cret = ic_image_close(img);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (cret < 0) {
        cli_errorf("%s: close failed: %s", path, strerror(-cret));
        return CLI_EXIT_FAIL;
    }
    if (!quiet)
        printf("Image resized.\n");
    return CLI_EXIT_OK;
}

CLI_COMMAND(cmd_resize, "resize", run_resize, RESIZE_USAGE)
