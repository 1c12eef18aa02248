/*
 * cmd-dd.c - `imgchain dd`: copy part of an image's guest view into a new
 * image (qemu-img dd).
 *
 * Design notes:
 *  1. Syntax and arithmetic as qemu-img 7.2: operands bs=N (1..2^31-1,
 *     default 512), count=N, skip=N (size suffixes allowed), if=SRC,
 *     of=DST; options -f FMT (input), -O FMT (output, default raw), -U.
 *     The output is created with size S - skip*bs, where S is the input's
 *     virtual size, or count*bs when that is smaller: count counts from
 *     the start of the input, not from the skip (qemu-img's rule, kept so
 *     scripts get the same files).  A skip past the end warns "cannot skip
 *     to specified offset" and makes an empty image (exit 0), as qemu-img
 *     and dd(1) do.
 *  2. The copy itself does not follow bs: it runs in large chunks over the
 *     guest range, skips ranges the source's chain reports as zero and
 *     chunks that read as zeroes (the new image reads zeroes there
 *     already), so a sparse source gives a sparse target, with the same
 *     guest content as qemu-img's block-by-block copy.
 *  3. DST is created fresh (truncated if it exists) by ic_image_create
 *     after its lock is taken; DST naming the open input fails on the
 *     input's lock before anything is written.
 *  4. Exit codes: 0 ok (also after the skip warning), 1 failure, 64 usage
 *     (bad operands, with qemu-img's messages), 75 locked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/util.h>

#include "cli-util.h"

#define DD_USAGE "dd [-f FMT] [-O FMT] [-U] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] " \
                 "if=INPUT of=OUTPUT"
#define DD_CHUNK (4u << 20)

static int dd_number(const char *what, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (arg[0] == '-' || ic_parse_size(arg, &v) < 0)
        return cli_usage_error("dd", "Invalid %s specified. You may use k, M, G, T, P or E "
                               "suffixes for kilobytes, megabytes, gigabytes, terabytes, "
                               "petabytes and exabytes.", what);
    if (v < min || v > max)
        return cli_usage_error("dd", "Invalid %s specified. Must be between %" PRIu64 " and %"
                               PRIu64 ".", what, min, max);
    *out = v;
    return 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Copies guest bytes [from, to) of @src to @dst starting at 0. */
static int dd_copy(ic_image *dst, ic_image *src, uint64_t from, uint64_t to, const char *in,
                   const char *outname)
{
    uint8_t *buf = malloc(DD_CHUNK);
    if (!buf) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    ic_error *err = NULL;
    int rc = CLI_EXIT_OK;
    for (uint64_t pos = from; pos < to && rc == CLI_EXIT_OK;) {
        ic_block_status st;
        if (ic_image_block_status(src, NULL, pos, to - pos, &st, &err) < 0) {
            rc = cli_fail(err, CLI_EXIT_FAIL);
            break;
        }
        uint64_t run_end = pos + st.length;
        if (st.flags & IC_BS_ZERO) {
            pos = run_end;
            continue;
        }
        while (pos < run_end) {
            size_t n = run_end - pos < DD_CHUNK ? (size_t)(run_end - pos) : DD_CHUNK;
            if (ic_image_pread(src, buf, n, pos, &err) < 0) {
                cli_errorf("%s: error while reading from input image file: %s", in,
                           ic_error_message(err));
                ic_error_free(err);
                rc = CLI_EXIT_FAIL;
                break;
            }
            if (!all_zero(buf, n) && ic_image_pwrite(dst, buf, n, pos - from, &err) < 0) {
                cli_errorf("%s: error while writing to output image file: %s", outname,
                           ic_error_message(err));
                ic_error_free(err);
                rc = CLI_EXIT_FAIL;
                break;
            }
            pos += n;
        }
    }
    free(buf);
    return rc;
}

static int run_dd(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *in = NULL, *out = NULL;
    bool force_share = false, have_count = false, have_skip = false;
    uint64_t bs = 512, count = 0, skip = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:O:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case 'h':
            printf("usage: imgchain " DD_USAGE "\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("dd", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("dd", "unknown option '%s'", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : 0;
        const char *v = eq ? eq + 1 : NULL;
#define KEY(k) (eq && klen == strlen(k) && !strncmp(a, k, klen))
        int rc = 0;
        if (KEY("bs"))
            rc = dd_number("bs", v, 1, INT_MAX, &bs);
        else if (KEY("count") && !(rc = dd_number("count", v, 0, INT64_MAX, &count)))
            have_count = true;
        else if (KEY("skip") && !(rc = dd_number("skip", v, 0, INT64_MAX, &skip)))
            have_skip = true;
        else if (KEY("if"))
            in = v;
        else if (KEY("of"))
            out = v;
        else if (!KEY("count") && !KEY("skip"))
            return cli_usage_error("dd", "unrecognized operand %.*s", eq ? (int)klen : (int)strlen(a),
                                   a);
#undef KEY
        if (rc)
            return rc;
    }
    if (!in || !out)
        return cli_usage_error("dd", "Must specify both input and output files");
    if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2") && strcmp(out_fmt, "qed")) {
        cli_errorf("%s: Unknown file format '%s'", out, out_fmt);
        return CLI_EXIT_FAIL;
    }

    ic_image *src = NULL;
    int rc = cli_open_image(&src, in, fmt, force_share ? IC_OPEN_FORCE_SHARE : 0);
    if (rc)
        return rc;
    uint64_t size = ic_image_size(src);
    if (have_count && count <= INT64_MAX / bs && count * bs < size)
        size = count * bs;
    bool past = have_skip && (skip > INT64_MAX / bs || size < skip * bs);
    uint64_t from = past ? size : skip * bs;

    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = out_fmt;
    co.size = size - from;
    co.size_set = true;
    ic_error *err = NULL;
    if (ic_image_create(out, &co, &err) < 0) {
        ic_image_close(src);
        return cli_fail(err, CLI_EXIT_FAIL);
    }
    ic_image *dst = NULL;
    if ((rc = cli_open_image(&dst, out, out_fmt, IC_OPEN_RDWR)) != 0) {
        ic_image_close(src);
        return rc;
    }
    if (past)
        cli_errorf("%s: cannot skip to specified offset", in);
    rc = dd_copy(dst, src, from, size, in, out);
    if (rc == CLI_EXIT_OK && ic_image_flush(dst, &err) < 0)
        rc = cli_fail(err, CLI_EXIT_FAIL);
    int cret = ic_image_close(dst);
    ic_image_close(src);
    if (rc == CLI_EXIT_OK && cret < 0) {
        cli_errorf("%s: close failed: %s", out, strerror(-cret));
        rc = CLI_EXIT_FAIL;
    }
    return rc;
}

CLI_COMMAND(cmd_dd, "dd", run_dd, DD_USAGE)
