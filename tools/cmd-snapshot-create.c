/*
 * cmd-snapshot-create.c - `imgchain snapshot-create` and
 * `snapshot-create-as`: virsh's commands over ic_domain_snapshot_create().
 *
 * Design notes:
 *  1. Options and messages are virsh's ("Domain snapshot NAME created",
 *     "... created from 'FILE'"); snapshot-create without a file sends
 *     <domainsnapshot/>; snapshot-create-as builds the document as virsh
 *     does (--diskspec DISK[,snapshot=..][,driver=..][,stype=..][,file=..]
 *     with ",," for a literal comma, --memspec [file=]F[,snapshot=..]),
 *     and --print-xml prints it instead of creating.
 *  2. Exit codes: 0 ok, 1 refused or failed (nothing changed), 64 usage,
 *     75 domain or image locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-domain.h"

enum {
    OPT_REDEFINE = 0x300, OPT_CURRENT, OPT_NO_METADATA, OPT_HALT, OPT_DISK_ONLY,
    OPT_REUSE, OPT_QUIESCE, OPT_ATOMIC, OPT_LIVE, OPT_VALIDATE, OPT_PRINT_XML,
    OPT_XMLFILE, OPT_NAME, OPT_DESC, OPT_MEMSPEC, OPT_DISKSPEC, OPT_DOMAIN,
    OPT_QUIESCE_MP,
};

/* --quiesce-mountpoint M (repeatable, snapshot-create-as): the guest file
 * systems a live --quiesce freezes (docs/domain-live.md). */
static const char **quiesce_mps;
static size_t nquiesce_mps;

#define COMMON_CREATE_OPTS                                                    \
    { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },              \
    { "domain", required_argument, NULL, OPT_DOMAIN },                        \
    { "no-metadata", no_argument, NULL, OPT_NO_METADATA },                    \
    { "halt", no_argument, NULL, OPT_HALT },                                  \
    { "disk-only", no_argument, NULL, OPT_DISK_ONLY },                        \
    { "reuse-external", no_argument, NULL, OPT_REUSE },                       \
    { "quiesce", no_argument, NULL, OPT_QUIESCE },                            \
    { "atomic", no_argument, NULL, OPT_ATOMIC },                              \
    { "live", no_argument, NULL, OPT_LIVE },                                  \
    { "validate", no_argument, NULL, OPT_VALIDATE },                          \
    { "print-xml", no_argument, NULL, OPT_PRINT_XML },                        \
    { "help", no_argument, NULL, 'h' }

static bool common_flag(int c, unsigned *flags, bool *print_xml)
{
    switch (c) {
    case OPT_REDEFINE: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE; return true;
    case OPT_CURRENT: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_CURRENT; return true;
    case OPT_NO_METADATA: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA; return true;
    case OPT_HALT: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_HALT; return true;
    case OPT_DISK_ONLY: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY; return true;
    case OPT_REUSE: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT; return true;
    case OPT_QUIESCE: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE; return true;
    case OPT_ATOMIC: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_ATOMIC; return true;
    case OPT_LIVE: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_LIVE; return true;
    case OPT_VALIDATE: *flags |= IC_DOMAIN_SNAPSHOT_CREATE_VALIDATE; return true;
    case OPT_PRINT_XML: *print_xml = true; return true;
    default: return false;
    }
}

/* Opens the domain for writing, creates, prints virsh's message. */
static int create(const char *sd, const char *domain, const char *xml, size_t len,
                  unsigned flags, const char *from)
{
    char *dir = NULL, *name = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    if (rc == 0) {
        ic_error *err = NULL;
        if (nquiesce_mps &&
            ic_domain_set_quiesce_mountpoints(dom, quiesce_mps, nquiesce_mps, &err) < 0)
            rc = cli_domain_fail(err);
    }
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_create(dom, xml, len, flags, &name, &err) < 0) {
            if (from && ic_error_kind_of(err) != IC_ERR_BUSY) {
                cli_errorf("%s: %s", from, ic_error_message(err));
                ic_error_free(err);
                rc = CLI_EXIT_FAIL;
            } else {
                rc = cli_domain_fail(err);
            }
        } else if (from) {
            printf("Domain snapshot %s created from '%s'\n", name, from);
        } else {
            printf("Domain snapshot %s created\n", name);
        }
    }
    free(name);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

/* ---- snapshot-create ---------------------------------------------------- */

static int run_snapshot_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_CREATE_OPTS,
        { "xmlfile", required_argument, NULL, OPT_XMLFILE },
        { "redefine", no_argument, NULL, OPT_REDEFINE },
        { "current", no_argument, NULL, OPT_CURRENT },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *domain = NULL, *file = NULL;
    unsigned flags = 0;
    bool print_xml = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (common_flag(c, &flags, &print_xml))
            continue;
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_XMLFILE: file = optarg; break;
        case 'h':
            printf("usage: imgchain %s\n", "snapshot-create [--state-dir DIR] DOMAIN [--xmlfile] "
                   "[FILE] [--redefine [--current]] [--no-metadata] [--disk-only] "
                   "[--reuse-external] [--atomic] [--validate] [--print-xml]");
            return 0;
        default:
            return cli_usage_error("snapshot-create", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!file && optind < argc)
        file = argv[optind++];
    if (!domain || optind != argc)
        return cli_usage_error("snapshot-create", "expects DOMAIN [XMLFILE]");
    char *xml = NULL;
    size_t len = 0;
    if (file) {
        int rc = cli_read_document(&xml, &len, file);
        if (rc)
            return rc;
    } else if (!(xml = strdup("<domainsnapshot/>"))) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    } else {
        len = strlen(xml);
    }
    int rc;
    if (print_xml) {
        /* virsh prints the document, a newline, and its newline after
         * each command */
        printf("%s%s\n\n", xml, len && xml[len - 1] == '\n' ? "" : "\n");
        rc = 0;
    } else {
        rc = create(sd, domain, xml, len, flags, file);
    }
    free(xml);
    return rc;
}

CLI_COMMAND(cmd_snapshot_create, "snapshot-create", run_snapshot_create,
            "snapshot-create [--state-dir DIR] DOMAIN [--xmlfile FILE] [--redefine [--current]]\n"
            "      [--no-metadata] [--disk-only] [--reuse-external] [--atomic] [--validate]\n"
            "      [--print-xml]                             snapshot every disk of a domain")

/* ---- snapshot-create-as -------------------------------------------------- */

struct buf {
    char *s;
    size_t len, cap;
    bool oom;
};

static void add(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->s, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->s = d;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* virBufferEscapeString: pre + escaped value + post, nothing for NULL. */
static void add_esc(struct buf *b, const char *pre, const char *v, const char *post)
{
    if (!v)
        return;
    add(b, pre);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char one[2] = { (char)*p, 0 };
        switch (*p) {
        case '<': add(b, "&lt;"); break;
        case '>': add(b, "&gt;"); break;
        case '&': add(b, "&amp;"); break;
        case '\'': add(b, "&apos;"); break;
        case '"': add(b, "&quot;"); break;
        default:
            if (*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r')
                add(b, one);
        }
    }
    add(b, post);
}

/* vshStringToArray: split on ',', ",," is a literal comma.  Returns the
 * count; *out holds heap strings in one block (free(out[0]); free(out)). */
static size_t split(char ***out, const char *s)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) {
        if (p[0] == ',' && p[1] == ',')
            p++;
        else if (*p == ',')
            n++;
    }
    char **v = calloc(n, sizeof(*v));
    char *copy = malloc(strlen(s) + 1);
    if (!v || !copy) {
        free(v);
        free(copy);
        *out = NULL;
        return 0;
    }
    size_t k = 0;
    char *o = copy;
    v[k++] = o;
    for (const char *p = s; *p; p++) {
        if (p[0] == ',' && p[1] == ',') {
            *o++ = ',';
            p++;
        } else if (*p == ',') {
            *o++ = '\0';
            v[k++] = o;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    *out = v;
    return n;
}

static bool prefix(const char *s, const char *p, const char **val)
{
    size_t n = strlen(p);
    if (strncmp(s, p, n))
        return false;
    *val = s + n;
    return true;
}

static int diskspec(struct buf *b, const char *spec)
{
    char **a = NULL;
    size_t n = split(&a, spec);
    const char *snapshot = NULL, *driver = NULL, *stype = NULL, *file = NULL;
    int rc = 0;
    if (!n || !*a[0])
        rc = -1;
    for (size_t i = 1; rc == 0 && i < n; i++) {
        if (!snapshot && prefix(a[i], "snapshot=", &snapshot))
            continue;
        if (!driver && prefix(a[i], "driver=", &driver))
            continue;
        if (!stype && prefix(a[i], "stype=", &stype))
            continue;
        if (!file && prefix(a[i], "file=", &file))
            continue;
        rc = -1;
    }
    bool is_file = true;
    if (rc == 0 && stype) {
        if (!strcmp(stype, "block")) {
            is_file = false;
        } else if (strcmp(stype, "file")) {
            cli_errorf("Unknown storage type: '%s'", stype);
            rc = -1;
        }
    }
    if (rc == 0) {
        add(b, "    ");
        add_esc(b, "<disk name='", a[0], "'");
        add_esc(b, " snapshot='", snapshot, "'");
        add_esc(b, " type='", stype, "'");
        if (driver || file) {
            add(b, ">\n");
            add_esc(b, "      <driver type='", driver, "'/>\n");
            add_esc(b, is_file ? "      <source file='" : "      <source dev='", file, "'/>\n");
            add(b, "    </disk>\n");
        } else {
            add(b, "/>\n");
        }
    }
    if (a)
        free(a[0]);
    free(a);
    if (rc < 0)
        cli_errorf("unable to parse diskspec: %s", spec);
    return rc;
}

static int memspec(struct buf *b, const char *spec)
{
    char **a = NULL;
    size_t n = split(&a, spec);
    const char *snapshot = NULL, *file = NULL;
    int rc = n ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!snapshot && prefix(a[i], "snapshot=", &snapshot))
            continue;
        if (!file && prefix(a[i], "file=", &file))
            continue;
        if (!file && a[i][0] == '/') {
            file = a[i];
            continue;
        }
        rc = -1;
    }
    if (rc == 0) {
        add(b, "  <memory");
        add_esc(b, " snapshot='", snapshot, "'");
        add_esc(b, " file='", file, "'");
        add(b, "/>\n");
    }
    if (a)
        free(a[0]);
    free(a);
    if (rc < 0)
        cli_errorf("unable to parse memspec: %s", spec);
    return rc;
}

static int run_snapshot_create_as(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_CREATE_OPTS,
        { "name", required_argument, NULL, OPT_NAME },
        { "description", required_argument, NULL, OPT_DESC },
        { "memspec", required_argument, NULL, OPT_MEMSPEC },
        { "diskspec", required_argument, NULL, OPT_DISKSPEC },
        { "quiesce-mountpoint", required_argument, NULL, OPT_QUIESCE_MP },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *domain = NULL, *name = NULL, *desc = NULL, *mem = NULL;
    const char **specs = calloc((size_t)argc, sizeof(*specs));
    const char **mps = calloc((size_t)argc, sizeof(*mps));
    size_t nspecs = 0;
    unsigned flags = 0;
    bool print_xml = false;
    int c;
    if (!specs || !mps) {
        free(specs);
        free(mps);
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    quiesce_mps = mps;
    nquiesce_mps = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (common_flag(c, &flags, &print_xml))
            continue;
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_NAME: name = optarg; break;
        case OPT_DESC: desc = optarg; break;
        case OPT_MEMSPEC: mem = optarg; break;
        case OPT_DISKSPEC: specs[nspecs++] = optarg; break;
        case OPT_QUIESCE_MP: mps[nquiesce_mps++] = optarg; break;
        case 'h':
            printf("usage: imgchain snapshot-create-as [--state-dir DIR] DOMAIN [--name NAME] "
                   "[--description DESC] [--print-xml] [--no-metadata] [--disk-only] "
                   "[--reuse-external] [--atomic] [--validate] [--memspec MEMSPEC] "
                   "[[--diskspec] DISKSPEC]... [--quiesce [--quiesce-mountpoint M]...] "
                   "[--halt]\n");
            free(specs);
            free(mps);
            return 0;
        default:
            free(specs);
            free(mps);
            return cli_usage_error("snapshot-create-as", "bad option '%s'", argv[optind - 1]);
        }
    }
    /* virsh's positional order: DOMAIN NAME DESCRIPTION DISKSPEC... */
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!name && optind < argc)
        name = argv[optind++];
    if (!desc && optind < argc)
        desc = argv[optind++];
    while (optind < argc)
        specs[nspecs++] = argv[optind++];
    if (!domain) {
        free(specs);
        free(mps);
        return cli_usage_error("snapshot-create-as", "expects DOMAIN");
    }
    struct buf b = { 0 };
    int rc = 0;
    add(&b, "<domainsnapshot>\n");
    add_esc(&b, "  <name>", name, "</name>\n");
    add_esc(&b, "  <description>", desc, "</description>\n");
    if (mem && memspec(&b, mem) < 0)
        rc = CLI_EXIT_FAIL;
    if (rc == 0 && nspecs) {
        add(&b, "  <disks>\n");
        for (size_t i = 0; rc == 0 && i < nspecs; i++)
            if (diskspec(&b, specs[i]) < 0)
                rc = CLI_EXIT_FAIL;
        add(&b, "  </disks>\n");
    }
    add(&b, "</domainsnapshot>\n");
    free(specs);
    if (rc == 0 && b.oom) {
        cli_errorf("out of memory");
        rc = CLI_EXIT_FAIL;
    }
    if (rc == 0) {
        if (print_xml)
            printf("%s\n\n", b.s);
        else
            rc = create(sd, domain, b.s, b.len, flags, NULL);
    }
    free(mps);
    quiesce_mps = NULL;
    nquiesce_mps = 0;
    free(b.s);
    return rc;
}

CLI_COMMAND(cmd_snapshot_create_as, "snapshot-create-as", run_snapshot_create_as,
            "snapshot-create-as [--state-dir DIR] DOMAIN [--name NAME] [--description DESC]\n"
            "      [--print-xml] [--no-metadata] [--disk-only] [--reuse-external] [--atomic]\n"
            "      [--validate] [--memspec MEMSPEC] [--diskspec DISK[,snapshot=internal|external|no]\n"
            "      [,driver=qcow2|qed][,stype=file|block][,file=PATH]]...\n"
            "      [--quiesce [--quiesce-mountpoint M]...] [--halt]  (running domains: live)")
