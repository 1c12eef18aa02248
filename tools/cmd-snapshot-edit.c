/*
 * cmd-snapshot-edit.c - `imgchain snapshot-edit`, `snapshot-export` and
 * `snapshot-import`: snapshot metadata edited by hand, or moved between
 * hosts, always through libvirt's REDEFINE rules (ic_domain_snapshot_create
 * with IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE), so nothing invalid is stored.
 *
 * Design notes:
 *  1. snapshot-edit is virsh's: the secure XML goes to a temporary file,
 *     $VISUAL, else $EDITOR, else vi edits it (run through sh -c, so an
 *     editor command with arguments works), and the result is validated
 *     against libvirt's schema and redefined (with --current: made
 *     current; a disk-snapshot state adds DISK_ONLY).  An unchanged file
 *     is reported and nothing is written; a new name needs --rename (the
 *     old metadata is then removed) or --clone.
 *  2. snapshot-export DOMAIN DIR writes each snapshot's secure XML as
 *     DIR/NAME.xml and DIR/order (parents before children, the current
 *     one marked "current"); --move then removes the metadata here (the
 *     seed's migration recipe: METADATA_ONLY delete on the source).
 *     snapshot-import DOMAIN DIR redefines them in that order and makes
 *     the marked one current.  Images are not touched, and imported
 *     snapshots' files are never imgchain's to delete.
 *  3. Exit codes: 0 ok, 1 refused or failed, 64 usage, 75 locked.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-domain.h"

enum {
    OPT_DOMAIN = 0x300, OPT_CURRENT, OPT_RENAME, OPT_CLONE, OPT_MOVE, OPT_SNAPNAME,
};

static int write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_errorf("%s: %s", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0 || !ok) {
        cli_errorf("%s: %s", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* "<name>X</name>" of a <domainsnapshot> (heap), or NULL. */
static char *doc_name(const char *xml)
{
    ic_snapshot_def *def = NULL;
    if (ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, NULL) < 0)
        return NULL;
    char *n = def->name ? strdup(def->name) : NULL;
    ic_snapshot_def_free(def);
    return n;
}

/* ---- snapshot-edit ------------------------------------------------------ */

static int run_editor(const char *file)
{
    const char *ed = getenv("VISUAL");
    if (!ed || !*ed)
        ed = getenv("EDITOR");
    if (!ed || !*ed)
        ed = "vi";
    size_t n = strlen(ed) + strlen(file) + 8;
    char *cmd = malloc(n);
    if (!cmd) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    snprintf(cmd, n, "%s '%s'", ed, file);
    int st = system(cmd);
    free(cmd);
    if (st != 0) {
        cli_errorf("%s: the editor '%s' failed", file, ed);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static int edit(ic_domain *dom, const char *name, bool current, bool rename, bool clone)
{
    char *xml = NULL, *edited = NULL, *newname = NULL;
    size_t len = 0;
    ic_error *err = NULL;
    char tmpl[] = "/tmp/imgchain-snapshot-XXXXXX.xml";
    int rc = 0, fd = -1;
    if (ic_domain_snapshot_get_xml(dom, name, IC_DOMAIN_SNAPSHOT_XML_SECURE, &xml, &err) < 0)
        return cli_domain_fail(err);
    if ((fd = mkstemps(tmpl, 4)) < 0) {
        cli_errorf("%s: %s", tmpl, strerror(errno));
        free(xml);
        return CLI_EXIT_FAIL;
    }
    close(fd);
    if ((rc = write_all(tmpl, xml)) || (rc = run_editor(tmpl)) ||
        (rc = cli_read_document(&edited, &len, tmpl)))
        goto out;
    if (!strcmp(xml, edited)) {
        printf("Snapshot %s XML configuration not changed.\n\n", name);
        goto out;
    }
    if (!(newname = doc_name(edited))) {
        /* let the redefine below say what is wrong */
        newname = strdup(name);
    }
    bool renamed = newname && strcmp(newname, name);
    if (renamed && !rename && !clone) {
        cli_errorf("Must use --rename or --clone to change %s to %s", name, newname);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    unsigned flags = IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE | IC_DOMAIN_SNAPSHOT_CREATE_VALIDATE;
    if (current)
        flags |= IC_DOMAIN_SNAPSHOT_CREATE_CURRENT;
    if (strstr(edited, "<state>disk-snapshot</state>"))
        flags |= IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
    if (ic_domain_snapshot_create(dom, edited, len, flags, NULL, &err) < 0) {
        cli_errorf("%s: %s", tmpl, ic_error_message(err));
        ic_error_free(err);
        cli_errorf("Failed to update %s", name);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (renamed && rename) {
        if (ic_domain_snapshot_delete(dom, name, IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY, &err) < 0) {
            rc = cli_domain_fail(err);
            cli_errorf("Failed to clean up %s", name);
            goto out;
        }
        printf("Snapshot %s edited.\n\n", newname);
    } else if (renamed) {
        printf("Snapshot %s cloned to %s.\n\n", name, newname);
    } else {
        printf("Snapshot %s edited.\n\n", name);
    }
out:
    unlink(tmpl);
    free(xml);
    free(edited);
    free(newname);
    return rc;
}

static int run_snapshot_edit(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "snapshotname", required_argument, NULL, OPT_SNAPNAME },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "rename", no_argument, NULL, OPT_RENAME },
        { "clone", no_argument, NULL, OPT_CLONE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *domain = NULL, *snap = NULL;
    bool current = false, rename = false, clone = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_SNAPNAME: snap = optarg; break;
        case OPT_CURRENT: current = true; break;
        case OPT_RENAME: rename = true; break;
        case OPT_CLONE: clone = true; break;
        case 'h':
            printf("usage: imgchain snapshot-edit [--state-dir DIR] DOMAIN [SNAPSHOT] [--current] "
                   "[--rename | --clone]\n");
            return 0;
        default:
            return cli_usage_error("snapshot-edit", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!snap && optind < argc)
        snap = argv[optind++];
    if (!domain || optind != argc)
        return cli_usage_error("snapshot-edit", "expects DOMAIN [SNAPSHOT]");
    if (rename && clone)
        return cli_usage_error("snapshot-edit", "Options --rename and --clone are mutually exclusive");
    char *dir = NULL, *name = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    if (rc == 0) {
        const ic_snapshot_def *cur = ic_domain_snapshot_current(dom);
        if (snap) {
            name = strdup(snap);
        } else if (current && cur) {
            name = strdup(cur->name);
        } else {
            cli_errorf(current ? "domain '%s' has no current snapshot"
                               : "%s: --snapshotname or --current is required", domain);
            rc = CLI_EXIT_FAIL;
        }
        if (rc == 0 && !name) {
            cli_errorf("out of memory");
            rc = CLI_EXIT_FAIL;
        }
    }
    if (rc == 0)
        rc = edit(dom, name, current, rename, clone);
    free(name);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_edit, "snapshot-edit", run_snapshot_edit,
            "snapshot-edit [--state-dir DIR] DOMAIN [SNAPSHOT] [--current] [--rename | --clone]\n"
            "                                                 edit snapshot XML in $EDITOR")

/* ---- snapshot-export / snapshot-import ------------------------------------ */

static int run_snapshot_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "move", no_argument, NULL, OPT_MOVE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL;
    bool move = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_MOVE: move = true; break;
        case 'h':
            printf("usage: imgchain snapshot-export [--state-dir DIR] DOMAIN OUTDIR [--move]\n");
            return 0;
        default:
            return cli_usage_error("snapshot-export", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("snapshot-export", "expects DOMAIN OUTDIR");
    const char *domain = argv[optind], *out = argv[optind + 1];
    char *dir = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, move);
    const char **names = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    if (rc == 0 && ic_domain_snapshot_list(&names, &n, dom, NULL,
                                           IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL, &err) < 0)
        rc = cli_domain_fail(err);
    size_t olen = 0, ocap = 256;
    char *order = rc == 0 ? malloc(ocap) : NULL;
    if (rc == 0 && !order) {
        cli_errorf("out of memory");
        rc = CLI_EXIT_FAIL;
    }
    if (order)
        order[0] = '\0';
    const ic_snapshot_def *cur = rc == 0 ? ic_domain_snapshot_current(dom) : NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *xml = NULL, *path = NULL;
        if (ic_domain_snapshot_get_xml(dom, names[i], IC_DOMAIN_SNAPSHOT_XML_SECURE, &xml,
                                       &err) < 0) {
            rc = cli_domain_fail(err);
            break;
        }
        if (asprintf(&path, "%s/%s.xml", out, names[i]) < 0) {
            free(xml);
            rc = CLI_EXIT_FAIL;
            break;
        }
        rc = write_all(path, xml);
        free(path);
        free(xml);
        size_t need = olen + strlen(names[i]) + 16;
        if (need > ocap) {
            char *no = realloc(order, need * 2);
            if (!no) {
                rc = CLI_EXIT_FAIL;
                break;
            }
            order = no;
            ocap = need * 2;
        }
        olen += (size_t)sprintf(order + olen, "%s%s\n", names[i],
                                cur && !strcmp(cur->name, names[i]) ? " current" : "");
    }
    if (rc == 0) {
        char *path = NULL;
        if (asprintf(&path, "%s/order", out) < 0)
            rc = CLI_EXIT_FAIL;
        else
            rc = write_all(path, order);
        free(path);
    }
    /* --move: this host forgets them, leaves first (METADATA_ONLY) */
    for (size_t i = n; rc == 0 && move && i-- > 0;) {
        char *nm = strdup(names[i]);
        if (!nm || ic_domain_snapshot_delete(dom, nm, IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY,
                                             &err) < 0)
            rc = nm ? cli_domain_fail(err) : CLI_EXIT_FAIL;
        free(nm);
    }
    if (rc == 0)
        printf("Exported %zu snapshot%s of domain '%s' to %s%s\n\n", n, n == 1 ? "" : "s",
               domain, out, move ? " (moved: their metadata is removed here)" : "");
    free(order);
    free(names);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_export, "snapshot-export", run_snapshot_export,
            "snapshot-export [--state-dir DIR] DOMAIN OUTDIR [--move]\n"
            "                                                 write the snapshot metadata for another host")

static int run_snapshot_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case 'h':
            printf("usage: imgchain snapshot-import [--state-dir DIR] DOMAIN INDIR\n");
            return 0;
        default:
            return cli_usage_error("snapshot-import", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("snapshot-import", "expects DOMAIN INDIR");
    const char *domain = argv[optind], *in = argv[optind + 1];
    char *dir = NULL, *order = NULL, *opath = NULL;
    size_t olen = 0, count = 0;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0 && asprintf(&opath, "%s/order", in) < 0)
        rc = CLI_EXIT_FAIL;
    if (rc == 0)
        rc = cli_read_document(&order, &olen, opath);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    char *current = NULL;
    for (char *line = order, *next; rc == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *sp = strchr(line, ' ');
        bool is_current = sp && !strcmp(sp + 1, "current");
        if (sp)
            *sp = '\0';
        if (!*line)
            continue;
        char *path = NULL, *xml = NULL;
        size_t len = 0;
        if (asprintf(&path, "%s/%s.xml", in, line) < 0) {
            rc = CLI_EXIT_FAIL;
            break;
        }
        rc = cli_read_document(&xml, &len, path);
        ic_error *err = NULL;
        unsigned flags = IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE;
        if (rc == 0 && strstr(xml, "<state>disk-snapshot</state>"))
            flags |= IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
        if (rc == 0 && ic_domain_snapshot_create(dom, xml, len, flags, NULL, &err) < 0) {
            cli_errorf("%s: %s", path, ic_error_message(err));
            ic_error_free(err);
            rc = CLI_EXIT_FAIL;
        }
        if (rc == 0) {
            count++;
            if (is_current)
                current = line;
        }
        free(path);
        free(xml);
    }
    if (rc == 0 && current) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_set_current(dom, current, &err) < 0)
            rc = cli_domain_fail(err);
    }
    if (rc == 0)
        printf("Imported %zu snapshot%s into domain '%s'\n\n", count, count == 1 ? "" : "s",
               domain);
    free(order);
    free(opath);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_import, "snapshot-import", run_snapshot_import,
            "snapshot-import [--state-dir DIR] DOMAIN INDIR  redefine exported snapshot metadata")
