/*
 * cmd-snapshot-delete.c - `imgchain snapshot-delete DOMAIN SNAPSHOT`:
 * virsh's snapshot-delete over ic_domain_snapshot_delete()
 * (imgchain/domain.h).
 *
 * Design notes:
 *  1. Options are virsh's: --snapshotname, --current, --children,
 *     --children-only, --metadata.
 *  2. Output is virsh's: "Domain snapshot S deleted" ("S children
 *     deleted" with --children-only) and the empty line after it.
 *  3. Exit codes: 0 ok, 1 refused or failed, 64 usage, 75 domain locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-domain.h"
#include "cli-util.h"

enum {
    OPT_DOMAIN = 0x300, OPT_SNAPNAME, OPT_CURRENT, OPT_CHILDREN, OPT_CHILDREN_ONLY,
    OPT_METADATA,
};

static const char usage[] =
    "snapshot-delete [--state-dir DIR] DOMAIN {SNAPSHOT | --current} "
    "[--children | --children-only] [--metadata]";

static int run_snapshot_delete(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "snapshotname", required_argument, NULL, OPT_SNAPNAME },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "children", no_argument, NULL, OPT_CHILDREN },
        { "children-only", no_argument, NULL, OPT_CHILDREN_ONLY },
        { "metadata", no_argument, NULL, OPT_METADATA },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *domain = NULL, *snap = NULL;
    bool current = false;
    unsigned flags = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_SNAPNAME: snap = optarg; break;
        case OPT_CURRENT: current = true; break;
        case OPT_CHILDREN: flags |= IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN; break;
        case OPT_CHILDREN_ONLY: flags |= IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY; break;
        case OPT_METADATA: flags |= IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY; break;
        case 'h':
            printf("usage: imgchain %s\n", usage);
            return 0;
        default:
            return cli_usage_error("snapshot-delete", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!snap && optind < argc)
        snap = argv[optind++];
    if (!domain || optind != argc || (!snap && !current))
        return cli_usage_error("snapshot-delete", "expects DOMAIN {SNAPSHOT | --current}");
    if (snap && current)
        return cli_usage_error("snapshot-delete",
                               "--snapshotname and --current are mutually exclusive");
    if ((flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN) &&
        (flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY))
        return cli_usage_error("snapshot-delete", "Options --children and --children-only "
                                                  "are mutually exclusive");
    char *dir = NULL, *name = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    if (rc == 0 && current) {
        const ic_snapshot_def *cur = ic_domain_snapshot_current(dom);
        if (!cur) {
            cli_errorf("Domain snapshot not found: the domain does not have a current snapshot");
            rc = CLI_EXIT_FAIL;
        } else {
            snap = cur->name;
        }
    }
    if (rc == 0 && !(name = strdup(snap))) {
        cli_errorf("out of memory");
        rc = CLI_EXIT_FAIL;
    }
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_delete(dom, name, flags, &err) < 0)
            rc = cli_domain_fail(err);
        else if (flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
            printf("Domain snapshot %s children deleted\n\n", name);
        else
            printf("Domain snapshot %s deleted\n\n", name);
    }
    free(name);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_delete, "snapshot-delete", run_snapshot_delete,
            "snapshot-delete [--state-dir DIR] DOMAIN {SNAPSHOT | --current} "
            "[--children | --children-only] [--metadata]")
