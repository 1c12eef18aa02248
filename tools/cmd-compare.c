/*
 * cmd-compare.c - `imgchain compare`: do two images (chains) show the same
 * guest content?  qemu-img compare's semantics and exit codes.
 *
 * Design notes:
 *  1. Exit codes (qemu-img's): 0 identical, 1 different, 2 an image could
 *     not be opened, 3 block status failed, 4 a read failed; 64 usage and
 *     75 locked as every imgchain command.
 *  2. The common part is walked with ic_image_block_status() on both
 *     sides: ranges that read as zero on both sides are skipped unread; a
 *     zero range on one side is checked against the other side's data; the
 *     rest is read in CMP_BUF_SIZE pieces and compared.
 *  3. The reported mismatch offset is the start of the first differing
 *     512-byte sector, as qemu-img reports it.
 *  4. Images of different sizes are equal when the longer one reads as
 *     zeroes past the shorter one's end ("Warning: Image size mismatch!");
 *     -s (strict) makes a size difference, or a difference in allocation
 *     status, a mismatch.
 *  5. -p shows progress on stderr when it is a terminal (not with -q), as
 *     the other commands' -p; stdout carries only qemu-img's result lines.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-util.h"

#define CMP_EXIT_DIFF   1
#define CMP_EXIT_OPEN   2
#define CMP_EXIT_STATUS 3
#define CMP_EXIT_READ   4
/* Bytes read from each image at once. */
#define CMP_BUF_SIZE ((size_t)2 << 20)
/* Mismatch offsets are reported at qemu's sector granularity. */
#define CMP_SECTOR 512u

struct cmp {
    bool quiet, strict;
    uint8_t *b1, *b2;
    struct cli_progress ui;  /* -p: ui.tty set when stderr is a terminal */
    uint64_t total;          /* the longer image's size, for progress */
};

static void progress(struct cmp *c, uint64_t done)
{
    if (c->ui.tty)
        cli_progress_cb(done, c->total, &c->ui);
}

/* Offset (sector granular) of the first difference, or len when equal. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
    if (!memcmp(a, b, len))
        return len;
    for (size_t i = 0; i < len; i += CMP_SECTOR) {
        size_t n = len - i < CMP_SECTOR ? len - i : CMP_SECTOR;
        if (memcmp(a + i, b + i, n))
            return i;
    }
    return len;
}

static size_t first_nonzero(const uint8_t *a, size_t len)
{
    for (size_t i = 0; i < len; i += CMP_SECTOR) {
        size_t n = len - i < CMP_SECTOR ? len - i : CMP_SECTOR;
        for (size_t j = 0; j < n; j++)
            if (a[i + j])
                return i;
    }
    return len;
}

static int mismatch(const struct cmp *c, uint64_t off)
{
    if (!c->quiet)
        printf("Content mismatch at offset %" PRIu64 "!\n", off);
    return CMP_EXIT_DIFF;
}

static int read_err(ic_error *err)
{
    cli_fail(err, CMP_EXIT_READ);
    return CMP_EXIT_READ;
}

/* Checks that @img reads as zeroes over [off, off+len). */
static int check_zero(struct cmp *c, ic_image *img, uint64_t off, uint64_t len)
{
    while (len > 0) {
        ic_block_status st;
        ic_error *err = NULL;
        if (ic_image_block_status(img, NULL, off, len, &st, &err) < 0)
            return cli_fail(err, CMP_EXIT_STATUS);
        uint64_t n = st.length;
        if (!(st.flags & IC_BS_ZERO)) {
            for (uint64_t done = 0; done < n;) {
                size_t k = (size_t)(n - done < CMP_BUF_SIZE ? n - done : CMP_BUF_SIZE);
                if (ic_image_pread(img, c->b1, k, off + done, &err) < 0)
                    return read_err(err);
                size_t z = first_nonzero(c->b1, k);
                if (z < k)
                    return mismatch(c, off + done + z);
                done += k;
            }
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int compare_images(struct cmp *c, ic_image *a, ic_image *b)
{
    uint64_t s1 = ic_image_size(a), s2 = ic_image_size(b);
    uint64_t common = s1 < s2 ? s1 : s2;
    uint64_t off = 0;
    ic_error *err = NULL;
    c->total = s1 > s2 ? s1 : s2;
    progress(c, 0);
    while (off < common) {
        ic_block_status st1, st2;
        if (ic_image_block_status(a, NULL, off, common - off, &st1, &err) < 0 ||
            ic_image_block_status(b, NULL, off, common - off, &st2, &err) < 0)
            return cli_fail(err, CMP_EXIT_STATUS);
        uint64_t n = st1.length < st2.length ? st1.length : st2.length;
        bool z1 = (st1.flags & IC_BS_ZERO) != 0, z2 = (st2.flags & IC_BS_ZERO) != 0;
        if (c->strict && ((st1.flags & (IC_BS_ALLOCATED | IC_BS_ZERO)) !=
                          (st2.flags & (IC_BS_ALLOCATED | IC_BS_ZERO)))) {
            if (!c->quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            return CMP_EXIT_DIFF;
        }
        int r = 0;
        if (z1 && z2) {
            /* both read as zeroes */
        } else if (z1) {
            r = check_zero(c, b, off, n);
        } else if (z2) {
            r = check_zero(c, a, off, n);
        } else {
            for (uint64_t done = 0; done < n;) {
                size_t k = (size_t)(n - done < CMP_BUF_SIZE ? n - done : CMP_BUF_SIZE);
                if (ic_image_pread(a, c->b1, k, off + done, &err) < 0 ||
                    ic_image_pread(b, c->b2, k, off + done, &err) < 0)
                    return read_err(err);
                size_t d = first_diff(c->b1, c->b2, k);
                if (d < k)
                    return mismatch(c, off + done + d);
                done += k;
            }
        }
        if (r)
            return r;
        off += n;
        progress(c, off);
    }
    if (s1 != s2) {
        if (c->strict) {
            if (!c->quiet)
                printf("Strict mode: Image size mismatch!\n");
            return CMP_EXIT_DIFF;
        }
        if (!c->quiet)
            printf("Warning: Image size mismatch!\n");
        int r = check_zero(c, s1 > s2 ? a : b, common, (s1 > s2 ? s1 : s2) - common);
        if (r)
            return r;
        progress(c, c->total);
    }
    if (!c->quiet)
        printf("Images are identical.\n");
    return CLI_EXIT_OK;
}

static int run_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    ic_cache_mode cache = IC_CACHE_DEFAULT;
    bool share = false;
    struct cmp c = { 0 };
    int ch;
    optind = 1;
    opterr = 0;
    bool want_progress = false;
    c.ui.operation = "compare";
    c.ui.last = -1;
    while ((ch = getopt_long(argc, argv, ":f:F:T:spqUh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            fmt1 = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 's':
            c.strict = true;
            break;
        case 'p':
            want_progress = true;
            break;
        case 'T':
            if (cli_parse_cache("compare", optarg, &cache) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'q':
            c.quiet = true;
            break;
        case 'U':
            share = true;
            break;
        case 'h':
            printf("usage: imgchain compare [-f FMT] [-F FMT] [-T CACHE] [-s] [-p] [-q] [-U] A B\n");
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("compare", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error("compare", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("compare", argc - optind < 2 ? "two images are required"
                                                            : "too many arguments");
    /* As qemu-img: -f is the first image's format, -F the second's; an
     * image without one is probed. */
    unsigned flags = share ? IC_OPEN_FORCE_SHARE : 0;
    ic_image *a = NULL, *b = NULL;
    int rc = cli_open_image_cache(&a, argv[optind], fmt1, flags, cache);
    if (rc)
        return rc == CLI_EXIT_LOCKED ? rc : CMP_EXIT_OPEN;
    rc = cli_open_image_cache(&b, argv[optind + 1], fmt2, flags, cache);
    if (rc) {
        ic_image_close(a);
        return rc == CLI_EXIT_LOCKED ? rc : CMP_EXIT_OPEN;
    }
    c.b1 = aligned_alloc(4096, CMP_BUF_SIZE); /* block-aligned: large reads may go direct */
    c.b2 = aligned_alloc(4096, CMP_BUF_SIZE);
    if (!c.b1 || !c.b2) {
        cli_errorf("out of memory");
        rc = CMP_EXIT_READ;
    } else {
        /* -p as in qemu-img (not with -q); shown only on a terminal */
        c.ui.tty = want_progress && !c.quiet && cli_isatty_stderr();
        rc = compare_images(&c, a, b);
        if (c.ui.tty && c.ui.last >= 0)
            fputc('\n', stderr);
    }
    free(c.b1);
    free(c.b2);
    ic_image_close(a);
    ic_image_close(b);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
        cli_errorf("writing the output failed");
        return CMP_EXIT_READ;
    }
    return rc;
}

CLI_COMMAND(cmd_compare, "compare", run_compare,
            "compare [-f FMT] [-F FMT] [-T CACHE] [-s] [-p] [-q] [-U] A B")
