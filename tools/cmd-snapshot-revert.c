/*
 * cmd-snapshot-revert.c - `imgchain snapshot-revert DOMAIN SNAPSHOT`:
 * virsh's snapshot-revert over ic_domain_snapshot_revert() (imgchain/domain.h).
 *
 * Design notes:
 *  1. Options are virsh's (--snapshotname, --current, --running, --paused,
 *     --force) plus the seed's --delete-children and --discard.  --running
 *     and --paused reach the library, which refuses them with its message
 *     (an offline domain is never started).
 *  2. Success prints the empty line virsh prints after a command.
 *  3. Exit codes: 0 ok, 1 refused or failed (nothing changed on a
 *     refusal), 64 usage, 75 domain locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-domain.h"
#include "cli-util.h"

enum {
    OPT_DOMAIN = 0x300, OPT_SNAPNAME, OPT_CURRENT, OPT_RUNNING, OPT_PAUSED, OPT_FORCE,
    OPT_DELETE_CHILDREN, OPT_DISCARD,
};

static const char usage[] =
    "snapshot-revert [--state-dir DIR] DOMAIN {SNAPSHOT | --current} [--force] "
    "[--delete-children] [--discard] [--running | --paused]";

static int run_snapshot_revert(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "snapshotname", required_argument, NULL, OPT_SNAPNAME },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "running", no_argument, NULL, OPT_RUNNING },
        { "paused", no_argument, NULL, OPT_PAUSED },
        { "force", no_argument, NULL, OPT_FORCE },
        { "delete-children", no_argument, NULL, OPT_DELETE_CHILDREN },
        { "discard", no_argument, NULL, OPT_DISCARD },
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
        case OPT_RUNNING: flags |= IC_DOMAIN_SNAPSHOT_REVERT_RUNNING; break;
        case OPT_PAUSED: flags |= IC_DOMAIN_SNAPSHOT_REVERT_PAUSED; break;
        case OPT_FORCE: flags |= IC_DOMAIN_SNAPSHOT_REVERT_FORCE; break;
        case OPT_DELETE_CHILDREN: flags |= IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN; break;
        case OPT_DISCARD: flags |= IC_DOMAIN_SNAPSHOT_REVERT_DISCARD; break;
        case 'h':
            printf("usage: imgchain %s\n", usage);
            return 0;
        default:
            return cli_usage_error("snapshot-revert", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!snap && optind < argc)
        snap = argv[optind++];
    if (!domain || optind != argc || (!snap && !current))
        return cli_usage_error("snapshot-revert", "expects DOMAIN {SNAPSHOT | --current}");
    if (snap && current)
        return cli_usage_error("snapshot-revert",
                               "--snapshotname and --current are mutually exclusive");
    if ((flags & IC_DOMAIN_SNAPSHOT_REVERT_RUNNING) && (flags & IC_DOMAIN_SNAPSHOT_REVERT_PAUSED))
        return cli_usage_error("snapshot-revert", "Options --running and --paused are "
                                                  "mutually exclusive");
    char *dir = NULL;
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
    if (rc == 0) {
        ic_error *err = NULL;
        char *name = strdup(snap);
        if (!name) {
            cli_errorf("out of memory");
            rc = CLI_EXIT_FAIL;
        } else if (ic_domain_snapshot_revert(dom, name, flags, &err) < 0) {
            rc = cli_domain_fail(err);
        } else {
            putchar('\n');
        }
        free(name);
    }
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_revert, "snapshot-revert", run_snapshot_revert,
            "snapshot-revert [--state-dir DIR] DOMAIN {SNAPSHOT | --current} [--force] "
            "[--delete-children] [--discard] [--running | --paused]")
