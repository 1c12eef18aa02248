/*
 * cmd-io.c - `imgchain io`: qemu-io's read/write/discard/flush commands on
 * an image chain, for tests and quick pokes.
 *
 *   imgchain io [-f FMT] [-t CACHE] [-r] [-U] [-q] FILE -c CMD [-c CMD ...]
 *   read    [-P PATTERN] OFF LEN     reads; with -P verifies every byte
 *   write   [-P PATTERN] [-z [-u]] [-c] OFF LEN
 *                                    writes PATTERN (default 0xcd), zeroes
 *                                    (-z; -u may deallocate) or compressed
 *   discard OFF LEN
 *   flush
 *   sleep   MS                       waits (holds the image open; for tests)
 *
 * Design notes:
 *  1. Every command is parsed before the image is opened: a malformed one
 *     is a usage error (exit 64) and nothing is touched.
 *  2. Commands run in order and stop at the first failure (qemu-io goes on,
 *     but a failed write leaves the image in a state later commands should
 *     not build on); the exit code is then 1.  A pattern mismatch prints
 *     qemu-io's "Pattern verification failed at offset N, N bytes" and
 *     also exits 1.
 *  3. Summaries are qemu-io's: "wrote 4096/4096 bytes at offset 0" and a
 *     timing line ("4 KiB, 1 ops; 00.00 sec (...)"); -q hides them.
 *  4. Large lengths are processed in IO_CHUNK pieces so memory stays small.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"

/* Largest buffer one command uses. */
#define IO_CHUNK ((size_t)16 << 20)
/* Most words a command line may have. */
#define IO_MAX_WORDS 16

enum io_op { IO_READ, IO_WRITE, IO_DISCARD, IO_FLUSH, IO_SLEEP };

struct io_cmd {
    enum io_op op;
    bool has_pattern, zero, unmap, compressed;
    uint8_t pattern;
    uint64_t off, len;
};

static int parse_pattern(const char *s, uint8_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end || v < 0 || v > UCHAR_MAX)
        return -1;
    *out = (uint8_t)v;
    return 0;
}

/* Parses one -c argument into @cmd; usage error (64) when malformed. */
static int parse_cmd(const char *text, struct io_cmd *cmd)
{
    char buf[512];
    if (strlen(text) >= sizeof(buf))
        return cli_usage_error("io", "command too long: '%.40s...'", text);
    snprintf(buf, sizeof(buf), "%s", text);
    char *w[IO_MAX_WORDS];
    int n = 0;
    for (char *tok = strtok(buf, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (n == IO_MAX_WORDS)
            return cli_usage_error("io", "too many words in command '%s'", text);
        w[n++] = tok;
    }
    if (n == 0)
        return cli_usage_error("io", "empty command");
    memset(cmd, 0, sizeof(*cmd));
    const char *name = w[0];
    if (!strcmp(name, "flush")) {
        if (n != 1)
            return cli_usage_error("io", "flush takes no arguments");
        cmd->op = IO_FLUSH;
        return 0;
    }
    if (!strcmp(name, "sleep")) {
        char *end;
        unsigned long ms = n == 2 ? strtoul(w[1], &end, 10) : 0;
        if (n != 2 || *end || w[1][0] == '-' || ms > 3600000)
            return cli_usage_error("io", "sleep takes milliseconds (at most one hour)");
        cmd->op = IO_SLEEP;
        cmd->len = ms;
        return 0;
    }
    if (!strcmp(name, "read"))
        cmd->op = IO_READ;
    else if (!strcmp(name, "write"))
        cmd->op = IO_WRITE;
    else if (!strcmp(name, "discard"))
        cmd->op = IO_DISCARD;
    else
        return cli_usage_error("io", "unknown command '%s' (read, write, discard, flush, sleep)", name);
    int i = 1;
    for (; i < n && w[i][0] == '-' && w[i][1]; i++) {
        const char *f = w[i];
        if (!strcmp(f, "-P") && cmd->op != IO_DISCARD) {
            if (i + 1 >= n || parse_pattern(w[i + 1], &cmd->pattern) < 0)
                return cli_usage_error("io", "%s: -P needs a pattern byte (0..255)", name);
            cmd->has_pattern = true;
            i++;
        } else if (!strcmp(f, "-z") && cmd->op == IO_WRITE) {
            cmd->zero = true;
        } else if (!strcmp(f, "-u") && cmd->op == IO_WRITE) {
            cmd->unmap = true;
        } else if (!strcmp(f, "-c") && cmd->op == IO_WRITE) {
            cmd->compressed = true;
        } else {
            return cli_usage_error("io", "%s: unknown flag '%s'", name, f);
        }
    }
    if (n - i != 2)
        return cli_usage_error("io", "%s needs OFFSET and LENGTH", name);
    if (ic_parse_size(w[i], &cmd->off) < 0)
        return cli_usage_error("io", "%s: invalid offset '%s'", name, w[i]);
    if (ic_parse_size(w[i + 1], &cmd->len) < 0)
        return cli_usage_error("io", "%s: invalid length '%s'", name, w[i + 1]);
    if (cmd->zero && (cmd->has_pattern || cmd->compressed))
        return cli_usage_error("io", "write: -z cannot be combined with -P or -c");
    if (cmd->unmap && !cmd->zero)
        return cli_usage_error("io", "write: -u needs -z");
    if (cmd->op == IO_WRITE && !cmd->has_pattern)
        cmd->pattern = 0xcd;
    return 0;
}

/* qemu-io's cvtstr: "%.3f" with a binary suffix, ".000" trimmed. */
static void cvtstr(double v, char *out, size_t len)
{
    static const char *const units[] = { " bytes", " KiB", " MiB", " GiB", " TiB", " PiB",
                                         " EiB" };
    int u = 0;
    while (v >= 1024.0 && u < 6) {
        v /= 1024.0;
        u++;
    }
    char num[64];
    snprintf(num, sizeof(num), "%.3f", v);
    char *dot = strstr(num, ".000");
    if (dot)
        *dot = '\0';
    snprintf(out, len, "%s%s", num, units[u]);
}

static void report(const char *what, const struct io_cmd *c, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    char total[64], rate[64], ts[64];
    cvtstr((double)c->len, total, sizeof(total));
    cvtstr((double)c->len / secs, rate, sizeof(rate));
    unsigned s = (unsigned)secs, cs = (unsigned)((secs - s) * 100);
    if (s >= 60)
        snprintf(ts, sizeof(ts), "%02u:%02u.%02u", s / 60, s % 60, cs);
    else
        snprintf(ts, sizeof(ts), "%02u.%02u sec", s, cs);
    printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", what, c->len, c->len,
           c->off);
    printf("%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n", total, ts, rate, 1.0 / secs);
}

static int run_cmd(ic_image *img, const struct io_cmd *c, uint8_t *buf, bool quiet)
{
    ic_error *err = NULL;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = 0;
    bool mismatch = false;
    switch (c->op) {
    case IO_SLEEP: {
        struct timespec ts = { (time_t)(c->len / 1000), (long)(c->len % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
            ;
        return CLI_EXIT_OK;
    }
    case IO_FLUSH:
        ret = ic_image_flush(img, &err);
        return ret < 0 ? cli_fail(err, CLI_EXIT_FAIL) : CLI_EXIT_OK;
    case IO_DISCARD:
        ret = ic_image_discard(img, c->off, c->len, &err);
        break;
    case IO_WRITE:
        if (c->zero) {
            ret = ic_image_pwrite_zeroes(img, c->off, c->len, c->unmap ? IC_ZERO_MAY_UNMAP : 0,
                                         &err);
            break;
        }
        if (c->compressed && c->len > IO_CHUNK) {
            cli_errorf("%s: compressed writes are limited to %zu bytes", ic_image_filename(img),
                       IO_CHUNK);
            return CLI_EXIT_FAIL;
        }
        memset(buf, c->pattern, (size_t)(c->len < IO_CHUNK ? c->len : IO_CHUNK));
        if (c->compressed) {
            ret = ic_image_pwrite_compressed(img, buf, (size_t)c->len, c->off, &err);
            break;
        }
        for (uint64_t done = 0; done < c->len && ret == 0;) {
            size_t n = (size_t)(c->len - done < IO_CHUNK ? c->len - done : IO_CHUNK);
            ret = ic_image_pwrite(img, buf, n, c->off + done, &err);
            done += n;
        }
        break;
    case IO_READ:
        for (uint64_t done = 0; done < c->len && ret == 0;) {
            size_t n = (size_t)(c->len - done < IO_CHUNK ? c->len - done : IO_CHUNK);
            ret = ic_image_pread(img, buf, n, c->off + done, &err);
            if (ret == 0 && c->has_pattern && !mismatch)
                for (size_t i = 0; i < n; i++)
                    if (buf[i] != c->pattern) {
                        mismatch = true;
                        break;
                    }
            done += n;
        }
        if (ret == 0 && mismatch)
            printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
                   c->off, c->len);
        break;
    }
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    if (!quiet)
        report(c->op == IO_READ ? "read" : c->op == IO_WRITE ? "wrote" : "discard", c, &t0);
    return mismatch ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int run_io(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "cmd", required_argument, NULL, 'c' },
        { "read-only", no_argument, NULL, 'r' },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    ic_cache_mode cache = IC_CACHE_DEFAULT;
    bool ro = false, share = false, quiet = false;
    const char **texts = calloc((size_t)argc, sizeof(*texts));
    if (!texts) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    size_t nb = 0;
    int ch, rc = CLI_EXIT_OK;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:c:t:rUqh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            fmt = optarg;
            break;
        case 'c':
            texts[nb++] = optarg;
            break;
        case 'r':
            ro = true;
            break;
        case 't':
            if (cli_parse_cache("io", optarg, &cache) != 0) {
                free(texts);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'U':
            share = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            free(texts);
            printf("usage: imgchain io [-f FMT] [-t CACHE] [-r] [-U] [-q] FILE -c CMD [-c CMD ...]\n");
            return CLI_EXIT_OK;
        case ':':
            free(texts);
            return cli_usage_error("io", "option '%s' needs an argument", argv[optind - 1]);
        default:
            free(texts);
            return cli_usage_error("io", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) {
        free(texts);
        return cli_usage_error("io", argc - optind < 1 ? "missing FILE" : "too many arguments");
    }
    if (nb == 0) {
        free(texts);
        return cli_usage_error("io", "no command given (-c CMD)");
    }
    if (share && !ro) {
        free(texts);
        return cli_usage_error("io", "-U needs -r (force-share is read-only)");
    }
    struct io_cmd *cmds = calloc(nb, sizeof(*cmds));
    if (!cmds) {
        free(texts);
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < nb && rc == CLI_EXIT_OK; i++)
        rc = parse_cmd(texts[i], &cmds[i]);
    free(texts);
    if (rc != CLI_EXIT_OK) {
        free(cmds);
        return rc;
    }
    ic_image *img = NULL;
    unsigned flags = (ro ? 0 : IC_OPEN_RDWR) | (share ? IC_OPEN_FORCE_SHARE : 0);
    rc = cli_open_image_cache(&img, argv[optind], fmt, flags, cache);
    if (rc) {
        free(cmds);
        return rc;
    }
    uint8_t *buf = malloc(IO_CHUNK);
    if (!buf) {
        cli_errorf("out of memory");
        rc = CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < nb && rc == CLI_EXIT_OK; i++)
        rc = run_cmd(img, &cmds[i], buf, quiet);
    free(buf);
    free(cmds);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
        cli_errorf("writing the output failed");
        rc = CLI_EXIT_FAIL;
    }
    int cret = ic_image_close(img);
    if (cret < 0 && rc == CLI_EXIT_OK) {
        cli_errorf("%s: closing the image failed: %s", argv[optind], strerror(-cret));
        rc = CLI_EXIT_FAIL;
    }
    return rc;
}

CLI_COMMAND(cmd_io, "io", run_io, "io [-f FMT] [-t CACHE] [-r] [-U] [-q] FILE -c CMD [-c CMD ...]")
