/*
 * cli-domain.h - what the domain commands share (tools/cmd-domain.c,
 * tools/cmd-snapshot-*.c): the state folder option, opening a domain,
 * reading a document, and virsh's output conventions.
 *
 * virsh conventions kept: every command's output on stdout is followed
 * by one empty line (virsh prints a newline after each command it runs),
 * tables are vshTable's layout (cli_table_print) and trees vshTreePrint's.
 */
#ifndef IC_TOOLS_CLI_DOMAIN_H
#define IC_TOOLS_CLI_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#include <imgchain/domain.h>

#include "cli.h"

/* An interrupted domain operation (imgchain check --domain), as the
 * engine's journals. */
#ifndef CLI_EXIT_INTERRUPTED
#define CLI_EXIT_INTERRUPTED 76
#endif

/* Long option value for --state-dir (shared by every domain command). */
#define CLI_OPT_STATE_DIR 0x200

/* Resolves the state folder from --state-dir (NULL: the environment and
 * defaults).  Prints the error and returns the exit code on failure. */
int cli_state_dir(char **out, const char *arg);

/* Opens domain @name (writer with @write), printing recovery notes on
 * stderr.  Prints the error and returns the exit code on failure. */
int cli_domain_open(ic_domain **out, const char *dir, const char *name, bool write);

/* Reads @path ("-" = stdin) whole; prints "imgchain: PATH: problem" and
 * returns the exit code on failure. */
int cli_read_document(char **out, size_t *len, const char *path);

/* A vshTable: header row then rows, @ncols cells each. */
struct cli_table {
    size_t ncols;
    size_t nrows;       /* including the header */
    char **cells;       /* nrows * ncols heap strings */
};
int cli_table_init(struct cli_table *t, size_t ncols, const char *const *header);
int cli_table_add(struct cli_table *t, const char *const *row);
void cli_table_print(const struct cli_table *t);
void cli_table_free(struct cli_table *t);

/* `imgchain check --domain DOMAIN [--state-dir DIR]` (called by
 * cmd-check.c): 76 when an interrupted operation is pending, 2 when a
 * disk's chain has errors, else 0. */
int cli_domain_check(int argc, char **argv);

/* Prints @error as virsh does for a library failure: "imgchain: MSG". */
int cli_domain_fail(ic_error *err);

#endif
