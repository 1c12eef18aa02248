/*
 * cli-domain.c - helpers of the domain commands (see cli-domain.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-domain.h"

/* Matches the library's document limit. */
#define DOC_MAX (64u << 20)

int cli_domain_fail(ic_error *err)
{
    return cli_fail(err, CLI_EXIT_FAIL);
}

int cli_state_dir(char **out, const char *arg)
{
    ic_error *err = NULL;
    if (ic_domain_state_dir(out, arg, &err) < 0)
        return cli_domain_fail(err);
    return CLI_EXIT_OK;
}

int cli_domain_open(ic_domain **out, const char *dir, const char *name, bool write)
{
    ic_error *err = NULL;
    if (ic_domain_open(out, dir, name, write ? IC_DOMAIN_OPEN_WRITE : 0, &err) < 0)
        return cli_domain_fail(err);
    if (!write && ic_domain_live_pending(*out)) {
        /* an interrupted live snapshot may hold the guest frozen: every
         * command on the domain recovers it (docs/domain-live.md) */
        ic_domain_close(*out);
        *out = NULL;
        int rc = cli_domain_open(out, dir, name, true);
        if (rc)
            return rc;
        ic_domain_close(*out);
        *out = NULL;
        return cli_domain_open(out, dir, name, false);
    }
    const char *r = ic_domain_recovered(*out);
    const char *p = ic_domain_pending(*out);
    if (r)
        cli_errorf("%s: %s", name, r);
    else if (p)
        cli_errorf("warning: %s: %s: shown as before it (run a command that changes "
                   "the domain, or see 'imgchain check --domain')", name, p);
    return CLI_EXIT_OK;
}

int cli_read_document(char **out, size_t *len_out, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        cli_errorf("%s: %s", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    int rc = CLI_EXIT_OK;
    while (buf) {
        if (len == cap) {
            if (cap >= DOC_MAX) {
                cli_errorf("%s: larger than %u bytes", path, DOC_MAX);
                rc = CLI_EXIT_FAIL;
                break;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                cli_errorf("%s: %s", path, strerror(errno));
                rc = CLI_EXIT_FAIL;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    if (rc != CLI_EXIT_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *len_out = len;
    return CLI_EXIT_OK;
}

int cli_table_init(struct cli_table *t, size_t ncols, const char *const *header)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    return cli_table_add(t, header);
}

int cli_table_add(struct cli_table *t, const char *const *row)
{
    char **c = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*c));
    if (!c)
        return -ENOMEM;
    t->cells = c;
    for (size_t i = 0; i < t->ncols; i++) {
        c[t->nrows * t->ncols + i] = strdup(row[i] ? row[i] : "");
        if (!c[t->nrows * t->ncols + i]) {
            while (i-- > 0)
                free(c[t->nrows * t->ncols + i]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

/* vshTable: each cell " %s", padded to its column's width + 2 except the
 * last; the dividing line is (width + 3) dashes per column. */
static void print_row(const struct cli_table *t, size_t r, const size_t *w)
{
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = t->cells[r * t->ncols + i];
        printf(" %s", s);
        if (i + 1 < t->ncols)
            printf("%*s", (int)(w[i] - strlen(s) + 2), "");
    }
    putchar('\n');
}

void cli_table_print(const struct cli_table *t)
{
    size_t *w = calloc(t->ncols, sizeof(*w));
    if (!w)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i])
                w[i] = l;
        }
    print_row(t, 0, w);
    for (size_t i = 0; i < t->ncols; i++)
        for (size_t k = 0; k < w[i] + 3; k++)
            putchar('-');
    putchar('\n');
    for (size_t r = 1; r < t->nrows; r++)
        print_row(t, r, w);
    free(w);
}

void cli_table_free(struct cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}
