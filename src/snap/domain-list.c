/*
 * domain-list.c - snapshot queries: lookup, current, children, the list
 * filters of virDomainListAllSnapshots / virDomainSnapshotListAllChildren.
 *
 * Design notes
 * ------------
 * Owns no file: reads the store (snap-meta.c).  Spec: libvirt's list
 * flags (docs/domain-lifecycle.md section 7): the start set is the whole
 * tree (or its roots with ROOTS) or, from a snapshot, its children (or
 * descendants with DESCENDANTS, the same bit); then each filter group
 * keeps what matches one of its bits, a group with no bit or every bit
 * set keeps everything, and groups are AND'ed; except the leaves group,
 * whose two bits are each a condition (libvirt's filter: LEAVES and
 * NO_LEAVES together keep nothing).
 * Order: by name (strcmp), or with TOPOLOGICAL depth first from the
 * roots, children by name, so every parent comes before its children.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain-internal.h"
#include "util/error.h"

size_t ic_domain_snapshot_count(const ic_domain *dom)
{
    return dom ? ic_snapmeta_count(dom->meta) : 0;
}

const ic_snapshot_def *ic_domain_snapshot_lookup(const ic_domain *dom, const char *name)
{
    return dom && name ? ic_snapmeta_lookup(dom->meta, name) : NULL;
}

const ic_snapshot_def *ic_domain_snapshot_current(const ic_domain *dom)
{
    return dom ? ic_snapmeta_current(dom->meta) : NULL;
}

bool ic_domain_snapshot_is_external(const ic_snapshot_def *def)
{
    if (!def)
        return false;
    if (def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL)
        return true;
    for (size_t i = 0; i < def->ndisks; i++)
        if (def->disks[i].snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL)
            return true;
    return def->memory == IC_SNAPSHOT_LOCATION_DEFAULT &&
           def->state == IC_SNAPSHOT_STATE_DISK_SNAPSHOT;
}

/* Appends the descendants of @name (NULL: every snapshot) depth first. */
static int walk(const char ***v, size_t *n, size_t *cap, const ic_snapmeta *m,
                const char *name, bool recurse, ic_error **errp)
{
    const char **kids = NULL;
    size_t nk = 0;
    int ret = ic_snapmeta_list(&kids, &nk, m, name, false, errp);
    for (size_t i = 0; ret == 0 && i < nk; i++) {
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 16;
            const char **nv = realloc(*v, c * sizeof(*nv));
            if (!nv) {
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
                break;
            }
            *v = nv;
            *cap = c;
        }
        (*v)[(*n)++] = kids[i];
        if (recurse)
            ret = walk(v, n, cap, m, kids[i], true, errp);
    }
    free(kids);
    return ret;
}

size_t ic_domain_snapshot_num_children(const ic_domain *dom, const char *name,
                                       bool descendants)
{
    const char **v = NULL;
    size_t n = 0, cap = 0;
    if (!dom || !name || !ic_snapmeta_lookup(dom->meta, name))
        return 0;
    if (walk(&v, &n, &cap, dom->meta, name, descendants, NULL) < 0)
        n = 0;
    free(v);
    return n;
}

/* A two-bit group: @bit_yes selects snapshots for which @yes holds, the
 * other bit those for which it does not. */
static bool group_match(unsigned flags, unsigned group, unsigned bit_yes, bool yes)
{
    unsigned sel = flags & group;
    if (!sel || sel == group)
        return true;
    return sel == bit_yes ? yes : !yes;
}

static bool state_match(unsigned flags, const ic_snapshot_def *def)
{
    const unsigned group = IC_DOMAIN_SNAPSHOT_LIST_INACTIVE | IC_DOMAIN_SNAPSHOT_LIST_ACTIVE |
                           IC_DOMAIN_SNAPSHOT_LIST_DISK_ONLY;
    unsigned sel = flags & group;
    if (!sel || sel == group)
        return true;
    if (def->state == IC_SNAPSHOT_STATE_SHUTOFF)
        return sel & IC_DOMAIN_SNAPSHOT_LIST_INACTIVE;
    if (def->state == IC_SNAPSHOT_STATE_DISK_SNAPSHOT)
        return sel & IC_DOMAIN_SNAPSHOT_LIST_DISK_ONLY;
    return sel & IC_DOMAIN_SNAPSHOT_LIST_ACTIVE;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ic_domain_snapshot_list(const char ***names_out, size_t *n_out, const ic_domain *dom,
                            const char *from, unsigned flags, ic_error **errp)
{
    *names_out = NULL;
    *n_out = 0;
    if (!dom)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_domain_snapshot_list: no domain");
    if (flags & ~0x7ffu)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~0x7ffu);
    if (from && !ic_snapmeta_lookup(dom->meta, from))
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", from);
    const char **v = NULL;
    size_t n = 0, cap = 0;
    int ret;
    if (from)
        ret = walk(&v, &n, &cap, dom->meta, from, flags & IC_DOMAIN_SNAPSHOT_LIST_DESCENDANTS,
                   errp);
    else
        ret = walk(&v, &n, &cap, dom->meta, NULL, !(flags & IC_DOMAIN_SNAPSHOT_LIST_ROOTS),
                   errp);
    if (ret < 0) {
        free(v);
        return ret;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const ic_snapshot_def *def = ic_snapmeta_lookup(dom->meta, v[i]);
        bool leaf = ic_domain_snapshot_num_children(dom, v[i], false) == 0;
        bool keep =
            !((flags & IC_DOMAIN_SNAPSHOT_LIST_LEAVES) && !leaf) &&
            !((flags & IC_DOMAIN_SNAPSHOT_LIST_NO_LEAVES) && leaf) &&
            group_match(flags,
                        IC_DOMAIN_SNAPSHOT_LIST_METADATA | IC_DOMAIN_SNAPSHOT_LIST_NO_METADATA,
                        IC_DOMAIN_SNAPSHOT_LIST_METADATA, true) &&
            state_match(flags, def) &&
            group_match(flags, IC_DOMAIN_SNAPSHOT_LIST_INTERNAL | IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL,
                        IC_DOMAIN_SNAPSHOT_LIST_EXTERNAL, ic_domain_snapshot_is_external(def));
        if (keep)
            v[k++] = v[i];
    }
    if (k > 1 && !(flags & IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL))
        qsort(v, k, sizeof(*v), cmp_name);
    *names_out = v;
    *n_out = k;
    return 0;
}

int ic_domain_snapshot_get_xml(const ic_domain *dom, const char *name, unsigned flags,
                               char **out, ic_error **errp)
{
    *out = NULL;
    if (flags & ~IC_DOMAIN_SNAPSHOT_XML_SECURE)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)", flags);
    const ic_snapshot_def *def = ic_domain_snapshot_lookup(dom, name);
    if (!def)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", name ? name : "");
    return ic_snapshot_def_format(out, def,
                                  (flags & IC_DOMAIN_SNAPSHOT_XML_SECURE)
                                      ? IC_SNAPSHOT_FORMAT_SECURE : 0,
                                  errp);
}

int ic_domain_snapshot_set_current(ic_domain *dom, const char *name, ic_error **errp)
{
    if (!dom || !dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_set_current: the domain is not opened for "
                            "writing");
    if (!ic_snapmeta_lookup(dom->meta, name))
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", name ? name : "");
    return ic_snapmeta_set_current(dom->meta, name, errp);
}
