/*
 * xml-align.c - align a snapshot's disks with its domain's.
 *
 * Design notes
 * ------------
 * Owns: libvirt's virDomainSnapshotAlignDisks and
 * virDomainSnapshotDefAssignExternalNames, rewritten over our structs.
 * The rules are libvirt's snapshot disk alignment; messages are libvirt's.
 *
 * Invariants:
 *  1. All or nothing: the new disk list is built beside the old one and
 *     swapped in only when every check passed, so on failure the
 *     definition is exactly as the caller gave it.
 *  2. Afterwards there is exactly one entry per domain disk, in domain
 *     order, named by its target, and every mode is decided (no DEFAULT).
 *  3. Mode of a disk: the request's; else the domain disk's snapshot=;
 *     else opts->default_mode.  A disk not requested whose domain drive is
 *     empty (no medium) is 'no'.
 *  4. A default external file name is "<domain source minus the suffix of
 *     its last path component>.<snapshot name>", only for file-type
 *     snapshot disks whose domain source the caller's probe reports as a
 *     regular file, and never equal to an earlier disk's file.
 *  5. This file never looks at the file system itself (src/xml may not):
 *     the probe is the caller's (ic_snapmeta_path_kind() in the library).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

ic_snapshot_location ic_snapshot_align_default_mode(const ic_snapshot_def *def, bool disk_only,
                                                    bool offline)
{
    if (disk_only || (def && def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL))
        return IC_SNAPSHOT_LOCATION_EXTERNAL;
    if (offline && def)
        for (size_t i = 0; i < def->ndisks; i++)
            if (def->disks[i].snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL)
                return IC_SNAPSHOT_LOCATION_EXTERNAL;
    return IC_SNAPSHOT_LOCATION_INTERNAL;
}

/* virStorageSourceIsEmpty: no type, or local storage without a path. */
static bool source_empty(const ic_storage_source *src)
{
    if (!src || src->type == IC_STORAGE_NONE)
        return true;
    return (src->type == IC_STORAGE_FILE || src->type == IC_STORAGE_BLOCK ||
            src->type == IC_STORAGE_DIR) && !src->path;
}

/* "<path minus the last component's suffix>.<name>" (invariant 4). */
static char *external_name(const char *orig, const char *snapname)
{
    size_t base = strlen(orig);
    const char *dot = strrchr(orig, '.');
    if (dot && !strchr(dot, '/'))
        base = (size_t)(dot - orig);
    size_t n = base + 1 + strlen(snapname) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*s.%s", (int)base, orig, snapname);
    return s;
}

struct slot {
    ic_snapshot_disk_def disk;  /* name and mode are ours; src borrowed if !fresh */
    size_t from;                /* index in def->disks, or SIZE_MAX if filled in */
    char *gen_path;             /* generated external file name */
};

static void slots_free(struct slot *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].disk.name);
        free(s[i].gen_path);
        if (s[i].from == SIZE_MAX)
            ic_storage_source_free(s[i].disk.src);
    }
    free(s);
}

static int assign_names(struct slot *slots, const ic_domain_def *dom, const char *snapname,
                        const ic_snapshot_align_options *opts, ic_error **errp)
{
    for (size_t i = 0; i < dom->ndisks; i++) {
        ic_snapshot_disk_def *d = &slots[i].disk;
        if (d->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL || d->src->path)
            continue;
        if (d->src->type != IC_STORAGE_FILE)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "cannot generate external snapshot name for disk '%s' on a '%s' device",
                                d->name, ic_storage_type_name(d->src->type));
        const char *orig = dom->disks[i].src->path;
        if (!orig)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "cannot generate external snapshot name for disk '%s' without source",
                                d->name);
        if (!opts->path_kind)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "cannot generate external snapshot name for disk '%s': no way to inspect '%s'",
                                d->name, orig);
        if (opts->path_kind(orig, opts->payload) != IC_PATH_REGULAR)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "source for disk '%s' is not a regular file; refusing to generate external snapshot name",
                                d->name);
        if (!snapname)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "cannot generate external snapshot name for disk '%s' of an unnamed snapshot",
                                d->name);
        if (!(slots[i].gen_path = external_name(orig, snapname)))
            return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        for (size_t j = 0; j < i; j++) {
            const char *other = slots[j].gen_path ? slots[j].gen_path : slots[j].disk.src->path;
            if (other && !strcmp(other, slots[i].gen_path))
                return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                    "cannot generate external snapshot name for disk '%s': collision with disk '%s'",
                                    d->name, slots[j].disk.name);
        }
    }
    return 0;
}

static int align(ic_snapshot_def *def, const ic_domain_def *dom,
                 const ic_snapshot_align_options *opts, ic_error **errp)
{
    if (def->ndisks > dom->ndisks)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "too many disk snapshot requests for domain");
    if (!dom->ndisks)
        return 0;
    struct slot *slots = calloc(dom->ndisks, sizeof(*slots));
    if (!slots)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    int ret = 0;
    for (size_t i = 0; i < dom->ndisks; i++)
        slots[i].from = SIZE_MAX;

    /* the requested disks (rule 2) */
    for (size_t i = 0; i < def->ndisks; i++) {
        const ic_snapshot_disk_def *req = &def->disks[i];
        int idx = ic_domain_def_disk_index(dom, req->name);
        if (idx < 0) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "no disk named '%s'", req->name);
            goto out;
        }
        const ic_domain_disk_def *dd = &dom->disks[idx];
        struct slot *s = &slots[idx];
        if (s->from != SIZE_MAX) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "disk '%s' specified twice",
                               req->name);
            goto out;
        }
        s->from = i;
        s->disk = *req;
        s->disk.name = NULL;
        if (!s->disk.snapshot)
            s->disk.snapshot = dd->snapshot ? dd->snapshot : opts->default_mode;
        if (opts->uniform_internal && s->disk.snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
            !(s->disk.snapshot == IC_SNAPSHOT_LOCATION_NO && dd->snapshot == IC_SNAPSHOT_LOCATION_NO)) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "disk '%s' must use snapshot mode 'internal'", req->name);
            goto out;
        }
        if (req->src->path && s->disk.snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "file '%s' for disk '%s' requires use of external snapshot mode",
                               req->src->path, dd->target);
            goto out;
        }
        if (!(s->disk.name = strdup(dd->target))) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
    }

    /* the others, in domain order (rule 3) */
    for (size_t i = 0; i < dom->ndisks; i++) {
        struct slot *s = &slots[i];
        const ic_domain_disk_def *dd = &dom->disks[i];
        if (s->from != SIZE_MAX)
            continue;
        s->disk.src = calloc(1, sizeof(*s->disk.src));
        s->disk.name = strdup(dd->target);
        if (!s->disk.src || !s->disk.name) {
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        s->disk.src->type = IC_STORAGE_FILE;
        bool empty = source_empty(dd->src);
        if (empty)
            s->disk.snapshot = IC_SNAPSHOT_LOCATION_NO;
        else if (dd->snapshot)
            s->disk.snapshot = dd->snapshot;
        else
            s->disk.snapshot = opts->default_mode;
        if (opts->uniform_internal && !empty &&
            s->disk.snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
            s->disk.snapshot != IC_SNAPSHOT_LOCATION_NO) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "disk '%s' must use snapshot mode 'internal'", dd->target);
            goto out;
        }
    }

    ret = assign_names(slots, dom, def->name, opts, errp);
    if (ret < 0)
        goto out;

    /* commit (invariant 1) */
    ic_snapshot_disk_def *nd = calloc(dom->ndisks, sizeof(*nd));
    if (!nd) {
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < dom->ndisks; i++) {
        struct slot *s = &slots[i];
        nd[i] = s->disk;
        if (s->gen_path) {
            nd[i].src->path = s->gen_path;
            s->gen_path = NULL;
        }
        if (s->from != SIZE_MAX)
            free(def->disks[s->from].name);
        s->disk.name = NULL;
        s->from = 0;    /* ownership moved: slots_free must not free src */
    }
    free(def->disks);
    def->disks = nd;
    def->ndisks = dom->ndisks;
out:
    slots_free(slots, dom->ndisks);
    return ret;
}

int ic_snapshot_def_align_disks(ic_snapshot_def *def, const ic_domain_def *domain,
                                const ic_snapshot_align_options *opts, ic_error **errp)
{
    static const ic_snapshot_align_options defaults = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    if (!def)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_align_disks: no definition");
    if (opts->version != IC_SNAPSHOT_ALIGN_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_align_disks: options version %u unknown",
                            opts->version);
    if (opts->default_mode <= IC_SNAPSHOT_LOCATION_DEFAULT ||
        opts->default_mode > IC_SNAPSHOT_LOCATION_MANUAL)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_align_disks: default mode must be no, internal, external or manual");
    const ic_domain_def *dom = domain ? domain : def->dom;
    if (!dom)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing domain in snapshot");
    return align(def, dom, opts, errp);
}
