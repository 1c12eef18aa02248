/*
 * cli-util.c - helpers shared by the image subcommands (see cli-util.h).
 *
 * Design notes:
 *  1. Everything here reports through cli.h: a malformed argument is a
 *     usage error (exit 64) naming the option; a library failure prints the
 *     library's one-line message, which already names the file.
 *  2. JSON is built and serialised by json-c only; cli_print_json() merely
 *     widens json-c's 2-space indentation to qemu's 4 spaces, which is safe
 *     because json-c never emits a raw newline inside a string.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli-util.h"

int cli_parse_output(const char *cmd, const char *arg, bool *json)
{
    if (!strcmp(arg, "human"))
        *json = false;
    else if (!strcmp(arg, "json"))
        *json = true;
    else
        return cli_usage_error(cmd, "--output must be 'human' or 'json', not '%s'", arg);
    return 0;
}

int cli_parse_size(const char *cmd, const char *what, const char *arg, uint64_t *out)
{
    if (ic_parse_size(arg, out) < 0)
        return cli_usage_error(cmd, "invalid %s '%s'", what, arg);
    return 0;
}

int cli_parse_rate(const char *cmd, const char *arg, uint64_t *out)
{
    int r = ic_parse_size(arg, out);
    if (r == -ERANGE || (r == 0 && *out > INT64_MAX))
        return cli_usage_error(cmd, "Invalid rate limit specified. Must be between 0 and "
                                    "9223372036854775807.");
    if (r < 0)
        return cli_usage_error(cmd, "Invalid rate limit specified. You may use k, M, G, T, P "
                                    "or E suffixes for kilobytes, megabytes, gigabytes, "
                                    "terabytes, petabytes and exabytes.");
    return 0;
}

void cli_print_json(json_object *obj)
{
    const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                        JSON_C_TO_STRING_SPACED |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE);
    /* Double each line's leading indentation (json-c indents by 2). */
    const char *p = s;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        size_t lead = 0;
        while (lead < len && p[lead] == ' ')
            lead++;
        for (size_t i = 0; i < lead; i++)
            fputs("  ", stdout);
        fwrite(p + lead, 1, len - lead, stdout);
        fputc('\n', stdout);
        p += len + (nl ? 1 : 0);
    }
}

int cli_parse_snapshot_arg(const char *cmd, const char *arg, struct cli_snapshot_arg *out)
{
    memset(out, 0, sizeof(*out));
    out->buf = strdup(arg);
    if (!out->buf) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    if (strncmp(arg, "snapshot.", 9) != 0) {
        out->id_or_name = out->buf;
        return 0;
    }
    /* snapshot.id=..,snapshot.name=..  (",," would be a literal comma in
     * qemu's syntax; snapshot names with commas are rare, and we keep the
     * simple split but honour the escape). */
    char *p = out->buf;
    while (*p) {
        char *key = p;
        char *eq = strchr(p, '=');
        if (!eq)
            goto bad;
        *eq = '\0';
        char *val = eq + 1, *w = val, *r = val;
        while (*r) {
            if (*r == ',') {
                if (r[1] == ',') {
                    *w++ = ',';
                    r += 2;
                    continue;
                }
                break;
            }
            *w++ = *r++;
        }
        char *next = *r ? r + 1 : r;
        *w = '\0';
        if (!strcmp(key, "snapshot.id"))
            out->id = val;
        else if (!strcmp(key, "snapshot.name"))
            out->name = val;
        else
            goto bad;
        p = next;
    }
    if (!out->id && !out->name)
        goto bad;
    return 0;
bad:
    cli_snapshot_arg_free(out);
    return cli_usage_error(cmd, "invalid -l argument '%s' (snapshot.id=ID,snapshot.name=NAME "
                                "or ID_OR_NAME)", arg);
}

void cli_snapshot_arg_free(struct cli_snapshot_arg *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

int cli_open_image(ic_image **out, const char *path, const char *fmt, unsigned flags)
{
    return cli_open_image_cache(out, path, fmt, flags, IC_CACHE_DEFAULT);
}

int cli_open_image_cache(ic_image **out, const char *path, const char *fmt, unsigned flags,
                         ic_cache_mode cache)
{
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.format = fmt;
    o.flags = flags;
    o.cache = cache;
    ic_error *err = NULL;
    if (ic_image_open(out, path, &o, &err) < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    return 0;
}

json_object *cli_snapshot_json(const ic_snapshot_info *sn)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(sn->id ? sn->id : ""));
    json_object_object_add(o, "name", json_object_new_string(sn->name ? sn->name : ""));
    json_object_object_add(o, "vm-state-size", json_object_new_int64((int64_t)sn->vm_state_size));
    json_object_object_add(o, "date-sec", json_object_new_int64(sn->date_sec));
    json_object_object_add(o, "date-nsec", json_object_new_int64(sn->date_nsec));
    json_object_object_add(o, "vm-clock-sec",
                           json_object_new_int64((int64_t)(sn->vm_clock_nsec / 1000000000u)));
    json_object_object_add(o, "vm-clock-nsec",
                           json_object_new_int64((int64_t)(sn->vm_clock_nsec % 1000000000u)));
    if (sn->icount != -1)
        json_object_object_add(o, "icount", json_object_new_int64(sn->icount));
    return o;
}

/* qemu's bdrv_snapshot_dump; a NULL @sn prints the header. */
void cli_snapshot_line(const ic_snapshot_info *sn)
{
    if (!sn) {
        printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
               "ICOUNT");
        return;
    }
    char date[64] = "", clock[64], size[32], icount[32] = "";
    time_t t = (time_t)sn->date_sec;
    struct tm tm;
    if (localtime_r(&t, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t ns = sn->vm_clock_nsec, secs = ns / 1000000000u;
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60), (int)((ns / 1000000u) % 1000u));
    cli_format_size(sn->vm_state_size, size, sizeof(size));
    if (sn->icount != -1)
        snprintf(icount, sizeof(icount), "%" PRId64, sn->icount);
    printf("%-10s%-17s%8s%20s%13s%11s\n", sn->id ? sn->id : "", sn->name ? sn->name : "", size,
           date, clock, icount);
}

void cli_progress_cb(uint64_t done, uint64_t total, void *payload)
{
    struct cli_progress *ui = payload;
    int now = total ? (int)((double)done * 10000.0 / (double)total) : 10000;
    if (now == ui->last)
        return;
    if (ui->json) {
        /* one line per whole percent, and the end */
        if (ui->last >= 0 && now / 100 == ui->last / 100 && done != total)
            return;
        ui->last = now;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "operation", json_object_new_string(ui->operation));
        json_object_object_add(o, "done", json_object_new_int64((int64_t)done));
        json_object_object_add(o, "total", json_object_new_int64((int64_t)total));
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
        json_object_put(o);
        return;
    }
    ui->last = now;
    fprintf(stderr, "    (%d.%02d/100%%)\r", now / 100, now % 100);
    fflush(stderr);
}

void cli_warn_cb(const char *line, void *payload)
{
    (void)payload;
    cli_errorf("warning: %s", line);
}

int cli_parse_progress(const char *cmd, const char *arg, bool *progress, struct cli_progress *ui)
{
    if (arg && !strcmp(arg, "json"))
        ui->json = true;
    else if (!arg || !strcmp(arg, "human"))
        *progress = true;
    else
        return cli_usage_error(cmd, "--progress takes 'human' or 'json', not '%s'", arg);
    return 0;
}

int cli_parse_cache(const char *cmd, const char *arg, ic_cache_mode *out)
{
    if (ic_cache_mode_parse(arg, out) < 0)
        return cli_usage_error(cmd, "invalid cache mode '%s' (none, directsync, writeback, "
                                    "writethrough or unsafe)", arg);
    return 0;
}
