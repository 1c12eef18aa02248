/*
 * cmd-domain.c - `imgchain define | undefine | list | dumpxml | domblklist`:
 * domains in the state folder, with virsh's options and output layouts.
 *
 * Design notes: a thin front end over imgchain/domain.h
 * (docs/domain-lifecycle.md).  Every command takes --state-dir DIR (else
 * $IMGCHAIN_STATE_DIR, /var/lib/imgchain for root, $XDG_STATE_HOME/imgchain).
 * Output is virsh's, including the empty line virsh prints after each
 * command.  Exit codes: 0 ok, 1 failed, 64 usage, 75 domain locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/chain-edit.h>
#include <imgchain/snapshot.h>

#include "cli-domain.h"

#define OPT_STATE_DIR { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR }

/* ---- define ------------------------------------------------------------- */

/* define --qmp SOCK [--qga SOCK]: the sockets of the qemu running the
 * domain, kept in its private file (docs/domain-live.md). */
static int define_sockets(const char *dir, const char *name, const char *qmp, const char *qga)
{
    ic_domain *dom = NULL;
    int rc = cli_domain_open(&dom, dir, name, true);
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_set_sockets(dom, qmp, qga, &err) < 0)
            rc = cli_domain_fail(err);
    }
    ic_domain_close(dom);
    return rc;
}

static int run_define(int argc, char **argv)
{
    static const struct option longopts[] = {
        OPT_STATE_DIR,
        { "file", required_argument, NULL, 'f' },
        { "validate", no_argument, NULL, 'V' },
        { "qmp", required_argument, NULL, 'Q' },
        { "qga", required_argument, NULL, 'G' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *file = NULL, *qmp = NULL, *qga = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case 'f': file = optarg; break;
        case 'V': break; /* the domain schema is libvirt's business: parsed, not validated */
        case 'Q': qmp = optarg; break;
        case 'G': qga = optarg; break;
        case 'h': printf("usage: imgchain define [--state-dir DIR] FILE [--qmp SOCK [--qga SOCK]]\n"); return 0;
        default: return cli_usage_error("define", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!file && optind < argc)
        file = argv[optind++];
    if (!file || optind != argc)
        return cli_usage_error("define", "expects one FILE");
    if (qga && !qmp)
        return cli_usage_error("define", "--qga needs --qmp");
    char *dir = NULL, *xml = NULL, *name = NULL;
    size_t len = 0;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_read_document(&xml, &len, file);
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_define(dir, xml, len, &name, &err) < 0) {
            cli_errorf("%s: %s", file, ic_error_message(err));
            rc = ic_error_kind_of(err) == IC_ERR_BUSY ? CLI_EXIT_LOCKED : CLI_EXIT_FAIL;
            ic_error_free(err);
        } else if (qmp && (rc = define_sockets(dir, name, qmp, qga)) != 0) {
            ;
        } else {
            printf("Domain '%s' defined from %s\n\n", name, file);
        }
    }
    free(name);
    free(xml);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_define, "define", run_define,
            "define [--state-dir DIR] FILE                 define a domain from its XML")

/* ---- undefine ----------------------------------------------------------- */

static int run_undefine(int argc, char **argv)
{
    static const struct option longopts[] = {
        OPT_STATE_DIR,
        { "domain", required_argument, NULL, 'd' },
        { "snapshots-metadata", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *name = NULL;
    unsigned flags = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case 'd': name = optarg; break;
        case 's': flags |= IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA; break;
        case 'h':
            printf("usage: imgchain undefine [--state-dir DIR] DOMAIN [--snapshots-metadata]\n");
            return 0;
        default: return cli_usage_error("undefine", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!name && optind < argc)
        name = argv[optind++];
    if (!name || optind != argc)
        return cli_usage_error("undefine", "expects one DOMAIN");
    char *dir = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_undefine(dir, name, flags, &err) < 0)
            rc = cli_domain_fail(err);
        else
            printf("Domain '%s' has been undefined\n\n", name);
    }
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_undefine, "undefine", run_undefine,
            "undefine [--state-dir DIR] DOMAIN [--snapshots-metadata]\n"
            "                                                 forget a domain (never its images)")

/* ---- list --------------------------------------------------------------- */

static int run_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        OPT_STATE_DIR,
        { "all", no_argument, NULL, 'a' },
        { "inactive", no_argument, NULL, 'i' },
        { "name", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL;
    bool names_only = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case 'a': case 'i': break; /* every domain imgchain knows is inactive */
        case 'n': names_only = true; break;
        case 'h': printf("usage: imgchain list [--state-dir DIR] [--all] [--name]\n"); return 0;
        default: return cli_usage_error("list", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error("list", "takes no argument");
    char *dir = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc)
        return rc;
    char **names = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    if (ic_domain_list(&names, &n, dir, &err) < 0) {
        free(dir);
        return cli_domain_fail(err);
    }
    if (names_only) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", names[i]);
    } else {
        static const char *const hdr[] = { "Id", "Name", "State" };
        struct cli_table t;
        cli_table_init(&t, 3, hdr);
        for (size_t i = 0; i < n; i++) {
            const char *row[] = { "-", names[i], "shut off" };
            cli_table_add(&t, row);
        }
        cli_table_print(&t);
        cli_table_free(&t);
    }
    putchar('\n');
    ic_domain_names_free(names, n);
    free(dir);
    return 0;
}

CLI_COMMAND(cmd_list, "list", run_list,
            "list [--state-dir DIR] [--all] [--name]       the domains of the state folder")

/* ---- dumpxml / domblklist ------------------------------------------------ */

/* Parses "[--state-dir DIR] DOMAIN" plus @extra boolean options. */
static int domain_args(int argc, char **argv, const char *cmd, const char *extra,
                       const char **sd, const char **name, bool *flag)
{
    struct option longopts[] = {
        OPT_STATE_DIR,
        { "domain", required_argument, NULL, 'd' },
        { extra ? extra : "help", no_argument, NULL, 'x' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: *sd = optarg; break;
        case 'd': *name = optarg; break;
        case 'x':
            if (extra) {
                *flag = true;
                break;
            }
            /* fall through */
        case 'h': printf("usage: imgchain %s [--state-dir DIR] DOMAIN%s%s%s\n", cmd,
                         extra ? " [--" : "", extra ? extra : "", extra ? "]" : "");
            return -1;
        default: return cli_usage_error(cmd, "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!*name && optind < argc)
        *name = argv[optind++];
    if (!*name || optind != argc)
        return cli_usage_error(cmd, "expects one DOMAIN");
    return 0;
}

static int run_dumpxml(int argc, char **argv)
{
    const char *sd = NULL, *name = NULL;
    bool secure = false;
    int rc = domain_args(argc, argv, "dumpxml", "security-info", &sd, &name, &secure);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *dir = NULL, *xml = NULL;
    ic_domain *dom = NULL;
    if ((rc = cli_state_dir(&dir, sd)) == 0 && (rc = cli_domain_open(&dom, dir, name, false)) == 0) {
        ic_error *err = NULL;
        if (ic_domain_refresh_live(dom, &err) < 0)   /* running: qemu's active layers */
            rc = cli_domain_fail(err);
        else if (ic_domain_get_xml(dom, secure ? IC_DOMAIN_XML_SECURE : 0, &xml, &err) < 0)
            rc = cli_domain_fail(err);
        else
            printf("%s\n", xml);
    }
    free(xml);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_dumpxml, "dumpxml", run_dumpxml,
            "dumpxml [--state-dir DIR] DOMAIN              the domain XML (sources = active layers)")

static int run_domblklist(int argc, char **argv)
{
    const char *sd = NULL, *name = NULL;
    bool details = false;
    int rc = domain_args(argc, argv, "domblklist", "details", &sd, &name, &details);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *dir = NULL;
    ic_domain *dom = NULL;
    ic_error *lerr = NULL;
    if ((rc = cli_state_dir(&dir, sd)) == 0 && (rc = cli_domain_open(&dom, dir, name, false)) == 0 &&
        ic_domain_refresh_live(dom, &lerr) < 0)   /* running: qemu's active layers */
        rc = cli_domain_fail(lerr);
    if (rc == 0) {
        const ic_domain_def *def = ic_domain_get_def(dom);
        static const char *const h2[] = { "Target", "Source" };
        static const char *const h4[] = { "Type", "Device", "Target", "Source" };
        struct cli_table t;
        cli_table_init(&t, details ? 4 : 2, details ? h4 : h2);
        for (size_t i = 0; i < def->ndisks; i++) {
            const ic_domain_disk_def *d = &def->disks[i];
            const char *src = d->src->path ? d->src->path : "-";
            const char *type = ic_storage_type_name(d->type);
            const char *r4[] = { type ? type : "-", d->device ? d->device : "disk", d->target,
                                 src };
            const char *r2[] = { d->target, src };
            cli_table_add(&t, details ? r4 : r2);
        }
        cli_table_print(&t);
        cli_table_free(&t);
        putchar('\n');
    }
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_domblklist, "domblklist", run_domblklist,
            "domblklist [--state-dir DIR] DOMAIN [--details]\n"
            "                                                 the domain's disks and active layers")

/* ---- check --domain ------------------------------------------------------ */

/* Does @path hold internal snapshot @name (NULL: just open it)?  -1: the
 * image cannot be read. */
static int holds_internal(const char *path, const char *name)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    ic_error *err = NULL;
    if (ic_image_open(&img, path, &oo, &err) < 0) {
        ic_error_free(err);
        return -1;
    }
    if (!name) {
        ic_image_close(img);
        return 1;
    }
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, &err);
    int found = n < 0 ? -1 : 0;
    for (int i = 0; i < n; i++)
        if (v[i].name && !strcmp(v[i].name, name))
            found = 1;
    if (n > 0)
        ic_snapshot_list_free(v, (size_t)n);
    ic_error_free(err);
    ic_image_close(img);
    return found;
}

/* Every snapshot's point is where its metadata says: the image an external
 * snapshot froze exists, an internal one is in its image.  The count of
 * problems, each printed. */
static int check_snapshot_points(ic_domain *dom)
{
    const char **names = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    if (ic_domain_snapshot_list(&names, &n, dom, NULL, IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL,
                                &err) < 0) {
        cli_domain_fail(err);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const ic_snapshot_def *s = ic_domain_snapshot_lookup(dom, names[i]);
        for (size_t k = 0; s->dom && k < s->ndisks; k++) {
            const ic_snapshot_disk_def *sd = &s->disks[k];
            int idx = ic_domain_def_disk_index(s->dom, sd->name);
            const char *img = idx >= 0 ? s->dom->disks[idx].src->path : NULL;
            if (!img || (sd->snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
                         sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL))
                continue;
            bool internal = sd->snapshot == IC_SNAPSHOT_LOCATION_INTERNAL;
            int h = holds_internal(img, internal ? s->name : NULL);
            if (h < 0) {
                cli_errorf("%s: snapshot '%s': disk '%s': %s cannot be read",
                           ic_domain_name(dom), s->name, sd->name, img);
                bad++;
            } else if (internal && h == 0) {
                cli_errorf("%s: snapshot '%s': disk '%s': %s holds no internal snapshot '%s'",
                           ic_domain_name(dom), s->name, sd->name, img, s->name);
                bad++;
            }
        }
    }
    free(names);
    return bad;
}

int cli_domain_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        OPT_STATE_DIR,
        { "domain", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *name = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case 'd': name = optarg; break;
        case 'h': printf("usage: imgchain check --domain DOMAIN [--state-dir DIR]\n"); return 0;
        default: return cli_usage_error("check", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!name || optind != argc)
        return cli_usage_error("check", "--domain expects DOMAIN and nothing else");
    char *dir = NULL;
    ic_domain *dom = NULL;
    ic_error *err = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0 && ic_domain_open(&dom, dir, name, 0, &err) < 0)
        rc = cli_domain_fail(err);
    if (rc) {
        free(dir);
        return rc;
    }
    const char *pending = ic_domain_pending(dom);
    if (pending) {
        cli_errorf("%s: %s: run a command that changes the domain to finish or roll it back",
                   name, pending);
        rc = CLI_EXIT_INTERRUPTED;
    } else {
        const ic_domain_def *def = ic_domain_get_def(dom);
        for (size_t i = 0; i < def->ndisks; i++) {
            const ic_domain_disk_def *d = &def->disks[i];
            if (!d->src->path || d->src->type != IC_STORAGE_FILE)
                continue;
            ic_chain_check_result *res = NULL;
            ic_chain_check_options co = IC_CHAIN_CHECK_OPTIONS_INIT;
            co.flags = IC_OPEN_FORCE_SHARE;
            if (ic_chain_check(&res, d->src->path, &co, &err) < 0) {
                cli_errorf("%s: disk '%s': %s", name, d->target, ic_error_message(err));
                ic_error_free(err);
                err = NULL;
                rc = 2;
                continue;
            }
            for (size_t k = 0; k < res->nb_findings; k++)
                if (res->findings[k].severity == IC_CHAIN_ERROR) {
                    cli_errorf("%s: disk '%s': %s", name, d->target, res->findings[k].message);
                    rc = 2;
                }
            printf("%s: %s: %zu image%s, %zu error%s\n", d->target, d->src->path,
                   res->nb_images, res->nb_images == 1 ? "" : "s", res->errors,
                   res->errors == 1 ? "" : "s");
            ic_chain_check_result_free(res);
        }
        int bad = check_snapshot_points(dom);
        if (bad) {
            rc = 2;
        } else {
            printf("%zu snapshot%s: every point is in place\n", ic_domain_snapshot_count(dom),
                   ic_domain_snapshot_count(dom) == 1 ? "" : "s");
        }
    }
    ic_domain_close(dom);
    free(dir);
    return rc;
}
