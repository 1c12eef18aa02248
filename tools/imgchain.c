/*
 * imgchain.c - the CLI's entry point: finds the subcommand and runs it.
 *
 * Design notes: subcommands live in tools/cmd-*.c and register through
 * CLI_COMMAND (cli.h).  This file owns only dispatch, help and the helpers
 * in cli.h that every command uses.  Errors are printed once, as one line
 * "imgchain: <file>: <problem>", by the command that failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static struct cli_command *commands;

void cli_register(struct cli_command *cmd)
{
    /* Keep the list sorted by name so help output is stable. */
    struct cli_command **p = &commands;
    while (*p && strcmp((*p)->name, cmd->name) < 0)
        p = &(*p)->next;
    cmd->next = *p;
    *p = cmd;
}

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    fputs("imgchain: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_fail(ic_error *err, int fallback)
{
    int code = fallback;
    if (err) {
        cli_errorf("%s", ic_error_message(err));
        if (ic_error_kind_of(err) == IC_ERR_BUSY)
            code = CLI_EXIT_LOCKED;
        else if (ic_error_kind_of(err) == IC_ERR_PENDING)
            code = CLI_EXIT_PENDING;
        ic_error_free(err);
    } else {
        cli_errorf("operation failed");
    }
    return code;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "imgchain %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'imgchain help %s')\n", cmd);
    return CLI_EXIT_USAGE;
}

void cli_format_size(uint64_t v, char *buf, size_t len)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    if (v < 1024) {
        snprintf(buf, len, "%" PRIu64 " B", v);
        return;
    }
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 6) {
        d /= 1024;
        u++;
    }
    /* qemu prints up to 3 significant digits, dropping a trailing ".0". */
    char tmp[32];
    if (d >= 100)
        snprintf(tmp, sizeof(tmp), "%.0f", d);
    else if (d >= 10)
        snprintf(tmp, sizeof(tmp), "%.1f", d);
    else
        snprintf(tmp, sizeof(tmp), "%.2f", d);
    /* strip trailing zeros of the fraction */
    char *dot = strchr(tmp, '.');
    if (dot) {
        char *e = tmp + strlen(tmp) - 1;
        while (e > dot && *e == '0')
            *e-- = '\0';
        if (e == dot)
            *e = '\0';
    }
    snprintf(buf, len, "%s %s", tmp, units[u]);
}

bool cli_isatty_stderr(void)
{
    return isatty(STDERR_FILENO);
}

static void print_help(FILE *f)
{
    fprintf(f, "imgchain %s - native qcow2/QED image chains and snapshots\n\n", ic_version());
    fprintf(f, "usage: imgchain COMMAND [options] ...\n\ncommands:\n");
    for (struct cli_command *c = commands; c; c = c->next)
        fprintf(f, "  %s\n", c->usage);
    fprintf(f, "\nexit codes: 0 ok, 1 failed, 64 usage error, 75 image locked,\n"
               "76 an interrupted operation must be finished first (--resume);\n"
               "check and compare use qemu-img's codes (see README.md)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        if (argc > 2) {
            for (struct cli_command *c = commands; c; c = c->next)
                if (!strcmp(c->name, argv[2])) {
                    printf("usage: imgchain %s\n", c->usage);
                    return 0;
                }
            cli_errorf("unknown command '%s'", argv[2]);
            return CLI_EXIT_USAGE;
        }
        print_help(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("imgchain version %s\n", ic_version());
        return 0;
    }
    for (struct cli_command *c = commands; c; c = c->next)
        if (!strcmp(c->name, name))
            return c->run(argc - 1, argv + 1);
    cli_errorf("unknown command '%s' (see 'imgchain help')", name);
    return CLI_EXIT_USAGE;
}
