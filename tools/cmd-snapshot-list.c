/*
 * cmd-snapshot-list.c - `imgchain snapshot-list | snapshot-info |
 * snapshot-dumpxml | snapshot-current | snapshot-parent`: the snapshot
 * tree of a domain, with virsh's options and output layouts.
 *
 * Design notes:
 *  1. snapshot-list collects as virsh's virshSnapshotListCollect does:
 *     the library list (imgchain/domain.h, libvirt's filter flags) from
 *     the domain or from --from/--current; with --tree every entry carries
 *     its parent and the start snapshot is added without one; then the
 *     names are sorted case-insensitively unless --topological.
 *  2. The table is vshTable's layout (cli_table_print), the tree
 *     vshTreePrint's; --output=json prints the collected entries as an
 *     array of objects instead.
 *  3. Every command's output is followed by one empty line, as virsh
 *     prints it; errors are one line on stderr.
 *  4. Exit codes: 0 ok, 1 failed (no such snapshot, no parent, no
 *     current), 64 usage, 75 domain locked (snapshot-current NAME).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "cli-domain.h"
#include "cli-util.h"

enum {
    OPT_DOMAIN = 0x300, OPT_PARENT, OPT_ROOTS, OPT_LEAVES, OPT_NO_LEAVES, OPT_METADATA,
    OPT_NO_METADATA, OPT_INACTIVE, OPT_ACTIVE, OPT_DISK_ONLY, OPT_INTERNAL, OPT_EXTERNAL,
    OPT_TREE, OPT_FROM, OPT_CURRENT, OPT_DESCENDANTS, OPT_NAME, OPT_TOPOLOGICAL,
    OPT_SECURE, OPT_SNAPNAME,
};

static int exclusive(const char *cmd, const char *a, const char *b)
{
    cli_errorf("%s: Options --%s and --%s are mutually exclusive", cmd, a, b);
    return CLI_EXIT_USAGE;
}

static const char *not_found(void)
{
    return "Domain snapshot not found: no domain snapshot with matching name";
}

/* virshLookupSnapshot: NAME, or --current. */
static int lookup(const ic_snapshot_def **out, ic_domain *dom, const char *name, bool current,
                  const char *arg)
{
    if (name && current) {
        cli_errorf("--%s and --current are mutually exclusive", arg);
        return CLI_EXIT_USAGE;
    }
    if (name) {
        *out = ic_domain_snapshot_lookup(dom, name);
        if (!*out) {
            cli_errorf("%s '%s'", not_found(), name);
            return CLI_EXIT_FAIL;
        }
    } else if (current) {
        *out = ic_domain_snapshot_current(dom);
        if (!*out) {
            cli_errorf("Domain snapshot not found: the domain does not have a current snapshot");
            return CLI_EXIT_FAIL;
        }
    } else {
        cli_errorf("--%s or --current is required", arg);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* ---- snapshot-list ------------------------------------------------------ */

struct entry {
    const char *name;
    const char *parent;   /* with --tree (NULL for a root or the start) */
};

static int cmp_entry(const void *a, const void *b)
{
    return strcasecmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* vshTreePrint. @indent holds the current prefix. */
static void tree_print(const struct entry *v, size_t n, size_t id, size_t lastdev, bool root,
                       char *indent, size_t ilen)
{
    printf("%.*s%s%s\n", (int)ilen, indent, root ? "" : "+- ", v[id].name);
    if (!root) {
        indent[ilen++] = id == lastdev ? ' ' : '|';
        indent[ilen++] = ' ';
    }
    size_t nextlast = (size_t)-1;
    for (size_t i = 0; i < n; i++)
        if (v[i].parent && !strcmp(v[i].parent, v[id].name))
            nextlast = i;
    if (nextlast != (size_t)-1)
        printf("%.*s  |\n", (int)ilen, indent);
    indent[ilen] = ' ';
    indent[ilen + 1] = ' ';
    for (size_t i = 0; i < n; i++)
        if (v[i].parent && !strcmp(v[i].parent, v[id].name))
            tree_print(v, n, i, nextlast, false, indent, ilen + 2);
    if (nextlast == (size_t)-1 && id == lastdev)
        printf("%.*s\n", (int)ilen, indent);
}

static void format_time(char *buf, size_t len, long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm))
        snprintf(buf, len, "%lld", t);
}

static json_object *entry_json(ic_domain *dom, const ic_snapshot_def *def)
{
    const ic_snapshot_def *cur = ic_domain_snapshot_current(dom);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(def->name));
    json_object_object_add(o, "creationTime", json_object_new_int64(def->creation_time));
    json_object_object_add(o, "state",
                           json_object_new_string(ic_snapshot_state_name(def->state)
                                                      ? ic_snapshot_state_name(def->state)
                                                      : "nostate"));
    json_object_object_add(o, "parent",
                           def->parent_name ? json_object_new_string(def->parent_name) : NULL);
    json_object_object_add(o, "current", json_object_new_boolean(cur == def));
    json_object_object_add(o, "location",
                           json_object_new_string(ic_domain_snapshot_is_external(def)
                                                      ? "external" : "internal"));
    json_object_object_add(o, "children",
                           json_object_new_int64((int64_t)ic_domain_snapshot_num_children(
                               dom, def->name, false)));
    json_object_object_add(o, "descendants",
                           json_object_new_int64((int64_t)ic_domain_snapshot_num_children(
                               dom, def->name, true)));
    return o;
}

struct list_opts {
    bool tree, names, parent, roots, current, descendants, json;
    const char *from;
    unsigned flags;
    const char *filter_opt;   /* first filter option given (for the --tree check) */
};

static int list_print(ic_domain *dom, const struct list_opts *o)
{
    const ic_snapshot_def *start = NULL;
    int rc = 0;
    if ((o->from || o->current) && (rc = lookup(&start, dom, o->from, o->current, "from")))
        return rc;
    const char **names = NULL;
    size_t n = 0;
    ic_error *err = NULL;
    if (ic_domain_snapshot_list(&names, &n, dom, start ? start->name : NULL, o->flags, &err) < 0)
        return cli_domain_fail(err);
    struct entry *v = calloc(n + 1, sizeof(*v));
    if (!v) {
        free(names);
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].name = names[i];
        if (o->tree)
            v[i].parent = ic_domain_snapshot_lookup(dom, names[i])->parent_name;
    }
    if (o->tree && start)
        v[n++].name = start->name;
    if (!(o->flags & IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL))
        qsort(v, n, sizeof(*v), cmp_entry);
    if (o->json) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < n; i++)
            json_object_array_add(arr, entry_json(dom, ic_domain_snapshot_lookup(dom, v[i].name)));
        cli_print_json(arr);
        json_object_put(arr);
    } else if (o->tree) {
        /* a prefix grows by 2 per level: the depth is at most n */
        char *indent = malloc(2 * n + 4);
        for (size_t i = 0; indent && i < n; i++)
            if (!v[i].parent)
                tree_print(v, n, i, i, true, indent, 0);
        free(indent);
        putchar('\n');
    } else if (o->names) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", v[i].name);
        putchar('\n');
    } else {
        static const char *const h3[] = { "Name", "Creation Time", "State" };
        static const char *const h4[] = { "Name", "Creation Time", "State", "Parent" };
        struct cli_table t;
        cli_table_init(&t, o->parent ? 4 : 3, o->parent ? h4 : h3);
        for (size_t i = 0; i < n; i++) {
            const ic_snapshot_def *d = ic_domain_snapshot_lookup(dom, v[i].name);
            char when[64];
            format_time(when, sizeof(when), d->creation_time);
            const char *st = ic_snapshot_state_name(d->state);
            const char *row[] = { d->name, when, st ? st : "nostate",
                                  d->parent_name ? d->parent_name : "" };
            cli_table_add(&t, row);
        }
        cli_table_print(&t);
        cli_table_free(&t);
        putchar('\n');
    }
    free(v);
    free(names);
    return 0;
}

static int run_snapshot_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "parent", no_argument, NULL, OPT_PARENT },
        { "roots", no_argument, NULL, OPT_ROOTS },
        { "leaves", no_argument, NULL, OPT_LEAVES },
        { "no-leaves", no_argument, NULL, OPT_NO_LEAVES },
        { "metadata", no_argument, NULL, OPT_METADATA },
        { "no-metadata", no_argument, NULL, OPT_NO_METADATA },
        { "inactive", no_argument, NULL, OPT_INACTIVE },
        { "active", no_argument, NULL, OPT_ACTIVE },
        { "disk-only", no_argument, NULL, OPT_DISK_ONLY },
        { "internal", no_argument, NULL, OPT_INTERNAL },
        { "external", no_argument, NULL, OPT_EXTERNAL },
        { "tree", no_argument, NULL, OPT_TREE },
        { "from", required_argument, NULL, OPT_FROM },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "descendants", no_argument, NULL, OPT_DESCENDANTS },
        { "name", no_argument, NULL, OPT_NAME },
        { "topological", no_argument, NULL, OPT_TOPOLOGICAL },
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const struct { int opt; const char *name; unsigned flag; } filters[] = {
        { OPT_LEAVES, "leaves", IC_DOMAIN_SNAPSHOT_LIST_LEAVES },
        { OPT_NO_LEAVES, "no-leaves", IC_DOMAIN_SNAPSHOT_LIST_NO_LEAVES },
        { OPT_INACTIVE, "inactive", IC_DOMAIN_SNAPSHOT_LIST_INACTIVE },
        { OPT_ACTIVE, "active", IC_DOMAIN_SNAPSHOT_LIST_ACTIVE },
        { OPT_DISK_ONLY, "disk-only", IC_DOMAIN_SNAPSHOT_LIST_DISK_ONLY },
        { OPT_INTERNAL, "internal", IC_DOMAIN_SNAPSHOT_LIST_INTERNAL },
        { OPT_EXTERNAL, "external", IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL },
    };
    const char *sd = NULL, *domain = NULL;
    struct list_opts o = { 0 };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        bool done = false;
        for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
            if (c == filters[i].opt) {
                o.flags |= filters[i].flag;
                if (!o.filter_opt)
                    o.filter_opt = filters[i].name;
                done = true;
            }
        if (done)
            continue;
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_PARENT: o.parent = true; break;
        case OPT_ROOTS: o.roots = true; break;
        case OPT_METADATA: o.flags |= IC_DOMAIN_SNAPSHOT_LIST_METADATA; break;
        case OPT_NO_METADATA: o.flags |= IC_DOMAIN_SNAPSHOT_LIST_NO_METADATA; break;
        case OPT_TREE: o.tree = true; break;
        case OPT_FROM: o.from = optarg; break;
        case OPT_CURRENT: o.current = true; break;
        case OPT_DESCENDANTS: o.descendants = true; break;
        case OPT_NAME: o.names = true; break;
        case OPT_TOPOLOGICAL: o.flags |= IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL; break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("snapshot-list", optarg, &o.json))
                return CLI_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: imgchain snapshot-list [--state-dir DIR] DOMAIN [--parent | --roots | "
                   "--tree | --name] [--from S | --current] [--descendants] [--leaves] "
                   "[--no-leaves] [--inactive] [--active] [--disk-only] [--internal] "
                   "[--external] [--topological] [--output=json]\n");
            return 0;
        default:
            return cli_usage_error("snapshot-list", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!domain || optind != argc)
        return cli_usage_error("snapshot-list", "expects one DOMAIN");
    static const char *const pairs[][2] = {
        { "tree", "name" }, { "parent", "roots" }, { "parent", "tree" },
        { "roots", "tree" }, { "roots", "from" }, { "roots", "current" },
    };
    bool set[6][2] = {
        { o.tree, o.names }, { o.parent, o.roots }, { o.parent, o.tree },
        { o.roots, o.tree }, { o.roots, o.from != NULL }, { o.roots, o.current },
    };
    for (size_t i = 0; i < 6; i++)
        if (set[i][0] && set[i][1])
            return exclusive("snapshot-list", pairs[i][0], pairs[i][1]);
    if (o.tree && o.filter_opt) {
        cli_errorf("--%s and --tree are mutually exclusive", o.filter_opt);
        return CLI_EXIT_USAGE;
    }
    if (o.descendants) {
        if (!o.from && !o.current) {
            cli_errorf("--descendants requires either --from or --current");
            return CLI_EXIT_USAGE;
        }
        o.flags |= IC_DOMAIN_SNAPSHOT_LIST_DESCENDANTS;
    }
    if (o.roots)
        o.flags |= IC_DOMAIN_SNAPSHOT_LIST_ROOTS;
    char *dir = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0 && (rc = cli_domain_open(&dom, dir, domain, false)) == 0)
        rc = list_print(dom, &o);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_list, "snapshot-list", run_snapshot_list,
            "snapshot-list [--state-dir DIR] DOMAIN [--tree | --parent | --name] [--roots |\n"
            "      --from S [--descendants] | --current] [--leaves | --no-leaves]\n"
            "      [--internal | --external] [--inactive] [--disk-only] [--topological]\n"
            "      [--output=json]                           the snapshot tree, as virsh")

/* ---- the small ones ------------------------------------------------------ */

struct one_opts {
    const char *sd, *domain, *snap;
    bool current, name, secure;
};

/* DOMAIN [SNAPSHOT] with --current, --name, --security-info,
 * --snapshotname as @cmd accepts them. */
static int one_args(int argc, char **argv, const char *cmd, const char *usage,
                    struct one_opts *o)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "name", no_argument, NULL, OPT_NAME },
        { "security-info", no_argument, NULL, OPT_SECURE },
        { "snapshotname", required_argument, NULL, OPT_SNAPNAME },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: o->sd = optarg; break;
        case OPT_DOMAIN: o->domain = optarg; break;
        case OPT_CURRENT: o->current = true; break;
        case OPT_NAME: o->name = true; break;
        case OPT_SECURE: o->secure = true; break;
        case OPT_SNAPNAME: o->snap = optarg; break;
        case 'h':
            printf("usage: imgchain %s\n", usage);
            return -1;
        default:
            return cli_usage_error(cmd, "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!o->domain && optind < argc)
        o->domain = argv[optind++];
    if (!o->snap && optind < argc)
        o->snap = argv[optind++];
    if (!o->domain || optind != argc)
        return cli_usage_error(cmd, "expects DOMAIN [SNAPSHOT]");
    return 0;
}

static int open_one(ic_domain **dom, char **dir, const struct one_opts *o, bool write)
{
    int rc = cli_state_dir(dir, o->sd);
    if (rc == 0)
        rc = cli_domain_open(dom, *dir, o->domain, write);
    return rc;
}

static const char *const info_usage =
    "snapshot-info [--state-dir DIR] DOMAIN {SNAPSHOT | --current}";

static int run_snapshot_info(int argc, char **argv)
{
    struct one_opts o = { 0 };
    int rc = one_args(argc, argv, "snapshot-info", info_usage, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *dir = NULL;
    ic_domain *dom = NULL;
    const ic_snapshot_def *d = NULL;
    if ((rc = open_one(&dom, &dir, &o, false)) == 0 &&
        (rc = lookup(&d, dom, o.snap, o.current, "snapshotname")) == 0) {
        const char *st = ic_snapshot_state_name(d->state);
        printf("%-15s %s\n", "Name:", d->name);
        printf("%-15s %s\n", "Domain:", ic_domain_name(dom));
        printf("%-15s %s\n", "Current:", ic_domain_snapshot_current(dom) == d ? "yes" : "no");
        printf("%-15s %s\n", "State:", st ? st : "nostate");
        printf("%-15s %s\n", "Location:",
               ic_domain_snapshot_is_external(d) ? "external" : "internal");
        printf("%-15s %s\n", "Parent:", d->parent_name ? d->parent_name : "-");
        printf("%-15s %zu\n", "Children:", ic_domain_snapshot_num_children(dom, d->name, false));
        printf("%-15s %zu\n", "Descendants:",
               ic_domain_snapshot_num_children(dom, d->name, true));
        printf("%-15s %s\n", "Metadata:", "yes");
        putchar('\n');
    }
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_info, "snapshot-info", run_snapshot_info,
            "snapshot-info [--state-dir DIR] DOMAIN {SNAPSHOT | --current}")

static const char *const dumpxml_usage =
    "snapshot-dumpxml [--state-dir DIR] [--security-info] DOMAIN SNAPSHOT";

static int run_snapshot_dumpxml(int argc, char **argv)
{
    struct one_opts o = { 0 };
    int rc = one_args(argc, argv, "snapshot-dumpxml", dumpxml_usage, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!o.snap)
        return cli_usage_error("snapshot-dumpxml", "expects DOMAIN SNAPSHOT");
    char *dir = NULL, *xml = NULL;
    ic_domain *dom = NULL;
    if ((rc = open_one(&dom, &dir, &o, false)) == 0) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_get_xml(dom, o.snap, o.secure ? IC_DOMAIN_SNAPSHOT_XML_SECURE : 0,
                                       &xml, &err) < 0)
            rc = cli_domain_fail(err);
        else
            printf("%s\n", xml);
    }
    free(xml);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_dumpxml, "snapshot-dumpxml", run_snapshot_dumpxml,
            "snapshot-dumpxml [--state-dir DIR] [--security-info] DOMAIN SNAPSHOT")

static const char *const current_usage =
    "snapshot-current [--state-dir DIR] DOMAIN [--name | --security-info | SNAPSHOTNAME]";

static int run_snapshot_current(int argc, char **argv)
{
    struct one_opts o = { 0 };
    int rc = one_args(argc, argv, "snapshot-current", current_usage, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.name && o.snap)
        return exclusive("snapshot-current", "name", "snapshotname");
    char *dir = NULL, *xml = NULL;
    ic_domain *dom = NULL;
    if ((rc = open_one(&dom, &dir, &o, o.snap != NULL)) == 0) {
        ic_error *err = NULL;
        const ic_snapshot_def *cur = ic_domain_snapshot_current(dom);
        if (o.snap) {
            if (ic_domain_snapshot_set_current(dom, o.snap, &err) < 0)
                rc = cli_domain_fail(err);
            else
                printf("Snapshot %s set as current\n", o.snap);
        } else if (!cur) {
            cli_errorf("domain '%s' has no current snapshot", o.domain);
            rc = CLI_EXIT_FAIL;
        } else if (o.name) {
            printf("%s\n", cur->name);
        } else if (ic_domain_snapshot_get_xml(dom, cur->name,
                                              o.secure ? IC_DOMAIN_SNAPSHOT_XML_SECURE : 0, &xml,
                                              &err) < 0) {
            rc = cli_domain_fail(err);
        } else {
            printf("%s\n", xml);
        }
    }
    free(xml);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_current, "snapshot-current", run_snapshot_current,
            "snapshot-current [--state-dir DIR] DOMAIN [--name | --security-info | SNAPSHOTNAME]")

static const char *const parent_usage =
    "snapshot-parent [--state-dir DIR] DOMAIN {SNAPSHOT | --current}";

static int run_snapshot_parent(int argc, char **argv)
{
    struct one_opts o = { 0 };
    int rc = one_args(argc, argv, "snapshot-parent", parent_usage, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *dir = NULL;
    ic_domain *dom = NULL;
    const ic_snapshot_def *d = NULL;
    if ((rc = open_one(&dom, &dir, &o, false)) == 0 &&
        (rc = lookup(&d, dom, o.snap, o.current, "snapshotname")) == 0) {
        if (!d->parent_name) {
            cli_errorf("snapshot '%s' has no parent", d->name);
            rc = CLI_EXIT_FAIL;
        } else {
            printf("%s\n", d->parent_name);
        }
    }
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_parent, "snapshot-parent", run_snapshot_parent,
            "snapshot-parent [--state-dir DIR] DOMAIN {SNAPSHOT | --current}")
