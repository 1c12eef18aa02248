/*
 * cli.h - what every tools/cmd-*.c file shares.
 *
 * Subcommands register themselves with CLI_COMMAND() (a constructor), so
 * adding a command is adding one file: tools/imgchain.c never changes.
 * The CLI includes only the public headers (include/imgchain/).
 *
 * Exit codes (documented in README.md):
 *   0   success
 *   1   the operation failed (I/O error, corrupt or unsupported image,
 *       missing file, ...)
 *   64  usage error: unknown option, missing or malformed argument
 *   75  the image is locked by another process (qemu, qemu-img, imgchain);
 *       only this (IC_ERR_BUSY), so a script may retry on it
 *   76  an interrupted operation's journal must be finished first
 *       (IC_ERR_PENDING: commit/rebase --resume)
 * `check` and `compare` keep qemu-img's own codes (see their files), and use
 * 64 and 75 the same way.
 */
#ifndef IC_TOOLS_CLI_H
#define IC_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <imgchain/imgchain.h>

#define CLI_EXIT_OK     0
#define CLI_EXIT_FAIL   1
#define CLI_EXIT_USAGE  64
#define CLI_EXIT_LOCKED 75
#define CLI_EXIT_PENDING 76

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
    const char *usage;                   /* one or more lines, no trailing newline */
    struct cli_command *next;
};

void cli_register(struct cli_command *cmd);

#define CLI_COMMAND(ident, cname, fn, usage_text)                               \
    static struct cli_command ident = { cname, fn, usage_text, 0 };              \
    __attribute__((constructor)) static void ident##_register(void)             \
    {                                                                            \
        cli_register(&ident);                                                    \
    }

/* Prints "imgchain: <msg>" to stderr (one line). */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the error's message, frees it, and returns the exit code for it
 * (CLI_EXIT_LOCKED for IC_ERR_BUSY, CLI_EXIT_PENDING for IC_ERR_PENDING,
 * else @fallback). */
int cli_fail(ic_error *err, int fallback);
/* Prints a usage error for @cmd and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sizes are parsed with ic_parse_size() (imgchain/util.h). */
/* Human-readable size as qemu prints it: "64 MiB", "1.5 GiB", "512 B". */
void cli_format_size(uint64_t v, char *buf, size_t len);

/* True if stdout is a terminal (for -p progress). */
bool cli_isatty_stderr(void);

#endif
