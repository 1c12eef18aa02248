/*
 * cli-util.h - helpers shared by the image subcommands (create, info, map,
 * convert, compare, io): option-value parsing that turns bad input into
 * usage errors (exit 64), JSON printing in qemu-img's layout, and the
 * "-l snapshot.id=..,snapshot.name=.." parser.
 */
#ifndef IC_TOOLS_CLI_UTIL_H
#define IC_TOOLS_CLI_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "cli.h"

/* Long options every --output command takes. */
#define CLI_OPT_OUTPUT 0x100

/* Parses "human" or "json" for --output; else a usage error (64). */
int cli_parse_output(const char *cmd, const char *arg, bool *json);

/* Parses a size or offset argument with ic_parse_size(); a usage error
 * naming @what when malformed. */
int cli_parse_size(const char *cmd, const char *what, const char *arg, uint64_t *out);
/* -r RATE (commit, convert): bytes per second with qemu-img's suffixes, at
 * most INT64_MAX; qemu-img's messages; returns 0 or the usage exit code. */
int cli_parse_rate(const char *cmd, const char *arg, uint64_t *out);

/* Prints @obj as qemu-img does: pretty, 4-space indent, '/' unescaped,
 * followed by a newline.  Does not free @obj. */
void cli_print_json(json_object *obj);

/* A parsed -l argument: either "snapshot.id=ID,snapshot.name=NAME" (both
 * optional, at least one) or a bare ID_OR_NAME.  Strings point into the
 * owned copy in @buf. */
struct cli_snapshot_arg {
    char *buf;
    const char *id;
    const char *name;
    const char *id_or_name;
};
int cli_parse_snapshot_arg(const char *cmd, const char *arg, struct cli_snapshot_arg *out);
void cli_snapshot_arg_free(struct cli_snapshot_arg *s);

/* Opens @path read-only (or read-write) with its chain.  Prints the error
 * and returns the exit code (1, or 75 when locked) on failure, 0 on
 * success. */
int cli_open_image(ic_image **out, const char *path, const char *fmt, unsigned flags);
/* The same in cache mode @cache (-t/-T), for the image and its chain. */
int cli_open_image_cache(ic_image **out, const char *path, const char *fmt, unsigned flags,
                         ic_cache_mode cache);

/* One snapshot as qemu-img's SnapshotInfo JSON object (new reference). */
json_object *cli_snapshot_json(const ic_snapshot_info *sn);
/* One line of qemu's snapshot table (bdrv_snapshot_dump); NULL prints the
 * header line. */
void cli_snapshot_line(const ic_snapshot_info *sn);

/* Progress of a long operation: "    (xx.xx/100%)" on stderr, or with
 * json set one JSON line per whole percent on stdout
 * ({"operation", "done", "total"}).  Pass cli_progress_cb with a
 * struct cli_progress as payload; initialise last to -1. */
struct cli_progress {
    const char *operation;
    bool tty;      /* -p on a terminal (set by the command) */
    bool json;     /* --progress=json */
    int last;      /* hundredths of a percent last printed, -1 none */
};
void cli_progress_cb(uint64_t done, uint64_t total, void *payload);
/* --progress[=human|json]: sets *progress (human) or ui->json; a usage
 * error (64) for anything else. */
int cli_parse_progress(const char *cmd, const char *arg, bool *progress, struct cli_progress *ui);
/* -t/-T CACHE: one of qemu-img's cache modes (ic_cache_mode_parse) into
 * *out; else a usage error (64). */
int cli_parse_cache(const char *cmd, const char *arg, ic_cache_mode *out);
/* Prints "imgchain: warning: LINE" (a library warning callback). */
void cli_warn_cb(const char *line, void *payload);

#endif
