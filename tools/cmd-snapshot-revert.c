/*
 * cmd-snapshot-revert.c - `imgchain snapshot-revert` and `snapshot-delete`:
 * virsh's commands over ic_domain_snapshot_revert() / _delete().
 *
 * Design notes:
 *  1. Options and messages are virsh's: "Domain snapshot NAME reverted",
 *     "Domain snapshot NAME deleted", "Domain snapshot NAME children
 *     deleted", each followed by the empty line virsh prints.
 *  2. snapshot-revert --running/--paused are refused: imgchain never starts
 *     qemu.  --overlay DISK=PATH names the new overlay of an external
 *     revert (default: libvirt's rule, the frozen image's name without its
 *     suffix, a dot, the revert time).
 *  3. Exit codes: 0 ok, 1 refused or failed, 64 usage, 75 locked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-domain.h"

enum {
    OPT_DOMAIN = 0x300, OPT_CURRENT, OPT_CHILDREN, OPT_CHILDREN_ONLY, OPT_METADATA,
    OPT_FORCE, OPT_RUNNING, OPT_PAUSED, OPT_DELETE_CHILDREN, OPT_DISCARD, OPT_OVERLAY,
    OPT_SNAPNAME, OPT_RESET_NVRAM,
};

static int resolve(ic_domain *dom, const char *snap, bool current, char **name)
{
    if (snap && current) {
        cli_errorf("--snapshotname and --current are mutually exclusive");
        return CLI_EXIT_USAGE;
    }
    if (!snap && !current) {
        cli_errorf("--snapshotname or --current is required");
        return CLI_EXIT_USAGE;
    }
    if (current) {
        const ic_snapshot_def *c = ic_domain_snapshot_current(dom);
        if (!c) {
            cli_errorf("Domain snapshot not found: the domain does not have a current snapshot");
            return CLI_EXIT_FAIL;
        }
        snap = c->name;
    }
    if (!(*name = strdup(snap))) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* ---- snapshot-delete ---------------------------------------------------- */

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
            printf("usage: imgchain snapshot-delete [--state-dir DIR] DOMAIN {SNAPSHOT | "
                   "--current} [--children | --children-only] [--metadata]\n");
            return 0;
        default:
            return cli_usage_error("snapshot-delete", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!snap && optind < argc)
        snap = argv[optind++];
    if (!domain || optind != argc)
        return cli_usage_error("snapshot-delete", "expects DOMAIN [SNAPSHOT]");
    char *dir = NULL, *name = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    if (rc == 0)
        rc = resolve(dom, snap, current, &name);
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_delete(dom, name, flags, &err) < 0) {
            rc = cli_domain_fail(err);
            cli_errorf("Failed to delete snapshot %s", name);
        } else if (flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY) {
            printf("Domain snapshot %s children deleted\n\n", name);
        } else {
            printf("Domain snapshot %s deleted\n\n", name);
        }
    }
    free(name);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_delete, "snapshot-delete", run_snapshot_delete,
            "snapshot-delete [--state-dir DIR] DOMAIN {SNAPSHOT | --current}\n"
            "      [--children | --children-only] [--metadata]\n"
            "                                                 delete snapshots, merging external ones")

/* ---- snapshot-revert ---------------------------------------------------- */

static int run_snapshot_revert(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, CLI_OPT_STATE_DIR },
        { "domain", required_argument, NULL, OPT_DOMAIN },
        { "snapshotname", required_argument, NULL, OPT_SNAPNAME },
        { "current", no_argument, NULL, OPT_CURRENT },
        { "force", no_argument, NULL, OPT_FORCE },
        { "running", no_argument, NULL, OPT_RUNNING },
        { "paused", no_argument, NULL, OPT_PAUSED },
        { "reset-nvram", no_argument, NULL, OPT_RESET_NVRAM },
        { "delete-children", no_argument, NULL, OPT_DELETE_CHILDREN },
        { "discard", no_argument, NULL, OPT_DISCARD },
        { "overlay", required_argument, NULL, OPT_OVERLAY },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sd = NULL, *domain = NULL, *snap = NULL;
    const char **files = calloc((size_t)argc + 1, sizeof(*files));
    size_t nfiles = 0;
    bool current = false;
    unsigned flags = 0;
    int c;
    if (!files) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAIL;
    }
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_STATE_DIR: sd = optarg; break;
        case OPT_DOMAIN: domain = optarg; break;
        case OPT_SNAPNAME: snap = optarg; break;
        case OPT_CURRENT: current = true; break;
        case OPT_FORCE: flags |= IC_DOMAIN_SNAPSHOT_REVERT_FORCE; break;
        case OPT_RUNNING: flags |= IC_DOMAIN_SNAPSHOT_REVERT_RUNNING; break;
        case OPT_PAUSED: flags |= IC_DOMAIN_SNAPSHOT_REVERT_PAUSED; break;
        case OPT_RESET_NVRAM: flags |= IC_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM; break;
        case OPT_DELETE_CHILDREN: flags |= IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN; break;
        case OPT_DISCARD: flags |= IC_DOMAIN_SNAPSHOT_REVERT_DISCARD; break;
        case OPT_OVERLAY: files[nfiles++] = optarg; break;
        case 'h':
            printf("usage: imgchain snapshot-revert [--state-dir DIR] DOMAIN {SNAPSHOT | "
                   "--current} [--force] [--delete-children] [--discard] "
                   "[--overlay DISK=PATH]...\n");
            free(files);
            return 0;
        default:
            free(files);
            return cli_usage_error("snapshot-revert", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!domain && optind < argc)
        domain = argv[optind++];
    if (!snap && optind < argc)
        snap = argv[optind++];
    if (!domain || optind != argc) {
        free(files);
        return cli_usage_error("snapshot-revert", "expects DOMAIN [SNAPSHOT]");
    }
    char *dir = NULL, *name = NULL;
    ic_domain *dom = NULL;
    int rc = cli_state_dir(&dir, sd);
    if (rc == 0)
        rc = cli_domain_open(&dom, dir, domain, true);
    if (rc == 0)
        rc = resolve(dom, snap, current, &name);
    if (rc == 0) {
        ic_error *err = NULL;
        if (ic_domain_snapshot_revert_files(dom, name, files, nfiles, flags, &err) < 0) {
            rc = cli_domain_fail(err);
            cli_errorf("Failed to revert snapshot %s", name);
        } else {
            printf("Domain snapshot %s reverted\n\n", name);
        }
    }
    free(name);
    free(files);
    ic_domain_close(dom);
    free(dir);
    return rc;
}

CLI_COMMAND(cmd_snapshot_revert, "snapshot-revert", run_snapshot_revert,
            "snapshot-revert [--state-dir DIR] DOMAIN {SNAPSHOT | --current} [--force]\n"
            "      [--delete-children] [--discard] [--overlay DISK=PATH]...\n"
            "                                                 revert every disk to a snapshot")
