/*
 * domain-ops.c - helpers snapshot-revert and snapshot-delete share: copies
 * of snapshot definitions, the disks of a snapshot's <domain>, the
 * snapshot tree walked leaves first, and the "is this file still named by
 * a snapshot" question of the used-image rule.
 *
 * Design notes
 * ------------
 * Owns no file.  Spec: docs/domain-snapshots.md section 8.
 *  1. A definition is copied by formatting it (SECURE, so passwords
 *     survive) and parsing it back with REDEFINE: the store takes
 *     ownership of what it is given, and the borrowed one must not change
 *     until the new one is in place.
 *  2. Files are compared by real path when both exist, so a snapshot that
 *     spells a path differently from the domain still matches it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain-ops.h"
#include "util/error.h"
#include "xml/xml-tree.h"

ic_snapshot_def *ic_dom_def_copy(const ic_snapshot_def *def, ic_error **errp)
{
    char *xml = NULL;
    ic_snapshot_def *copy = NULL;
    if (ic_snapshot_def_format(&xml, def, IC_SNAPSHOT_FORMAT_SECURE, errp) == 0)
        ic_snapshot_def_parse(&copy, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, errp);
    free(xml);
    return copy;
}

const ic_domain_def *ic_dom_snapshot_domain(const ic_snapshot_def *def, ic_domain_def **owned,
                                            ic_error **errp)
{
    *owned = NULL;
    if (def->dom)
        return def->dom;
    if (!def->domain) {
        ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "snapshot '%s' lacks domain rollback info",
                     def->name);
        return NULL;
    }
    char *xml = NULL;
    if (ic_xml_tree_format(&xml, def->domain, true, errp) == 0)
        ic_domain_def_parse(owned, xml, strlen(xml), errp);
    free(xml);
    return *owned;
}

const ic_domain_disk_def *ic_dom_find_disk(const ic_domain_def *def, const char *target)
{
    for (size_t i = 0; def && target && i < def->ndisks; i++)
        if (!strcmp(def->disks[i].target, target))
            return &def->disks[i];
    return NULL;
}

bool ic_dom_same_file(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    if (!strcmp(a, b))
        return true;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb && !strcmp(ra, rb);
    free(ra);
    free(rb);
    return same;
}

static bool disks_name(const ic_snapshot_disk_def *d, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL &&
            ic_dom_same_file(d[i].src->path, path))
            return true;
    return false;
}

static bool domain_names(const ic_domain_def *def, const char *path)
{
    for (size_t i = 0; def && i < def->ndisks; i++)
        for (const ic_storage_source *s = def->disks[i].src; s; s = s->backing)
            if (ic_dom_same_file(s->path, path))
                return true;
    return false;
}

bool ic_dom_path_in_snapshots(const ic_domain *dom, const char *path, const char *skip)
{
    const char **names = NULL;
    size_t n = 0;
    bool found = false;
    if (ic_snapmeta_list(&names, &n, dom->meta, NULL, true, NULL) < 0)
        return true; /* cannot tell: treat the file as used */
    for (size_t i = 0; i < n && !found; i++) {
        if (skip && !strcmp(names[i], skip))
            continue;
        const ic_snapshot_def *d = ic_snapmeta_lookup(dom->meta, names[i]);
        if (!d)
            continue;
        ic_domain_def *owned = NULL;
        ic_error *e = NULL;
        const ic_domain_def *sdom = ic_dom_snapshot_domain(d, &owned, &e);
        ic_error_free(e);
        found = disks_name(d->disks, d->ndisks, path) ||
                disks_name(d->revert_disks, d->nrevert_disks, path) || domain_names(sdom, path);
        ic_domain_def_free(owned);
    }
    free(names);
    return found;
}

void ic_dom_priv_remove_image(ic_domain *dom, const char *path)
{
    json_object *images = NULL;
    if (!json_object_object_get_ex(dom->priv, "images", &images))
        return;
    for (size_t i = json_object_array_length(images); i-- > 0;) {
        const char *p = ic_dom_jstr(json_object_array_get_idx(images, i), "path");
        if (p && !strcmp(p, path))
            json_object_array_del_idx(images, i, 1);
    }
}

/* Appends the subtree below @name, children after their own children. */
static int collect(const char ***v, size_t *n, size_t *cap, const ic_domain *dom,
                   const char *name, bool all, ic_error **errp)
{
    const char **kids = NULL;
    size_t nk = 0;
    int ret = ic_snapmeta_list(&kids, &nk, dom->meta, name, false, errp);
    for (size_t i = 0; ret == 0 && i < nk; i++) {
        if (all)
            ret = collect(v, n, cap, dom, kids[i], all, errp);
        if (ret < 0)
            break;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 8;
            const char **nv = realloc(*v, nc * sizeof(*nv));
            if (!nv) {
                ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
                break;
            }
            *v = nv;
            *cap = nc;
        }
        (*v)[(*n)++] = kids[i];
    }
    free(kids);
    return ret;
}

int ic_dom_descendants(const char ***out, size_t *n, const ic_domain *dom, const char *name,
                       bool all, ic_error **errp)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int ret = collect(out, n, &cap, dom, name, all, errp);
    if (ret < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return ret;
}

ic_xml_node *ic_dom_tree_disk(ic_xml_node *tree, const char *target)
{
    ic_xml_node *devices = ic_xml_tree_child(tree, "devices");
    for (size_t i = 0; devices && i < devices->nchildren; i++) {
        ic_xml_node *d = devices->children[i];
        if (!d->name || strcmp(d->name, "disk"))
            continue;
        const char *dev = ic_xml_node_attr(ic_xml_node_child(d, "target"), "dev");
        if (dev && !strcmp(dev, target))
            return d;
    }
    return NULL;
}

/* Points a <disk> element at file @path of format @fmt. */
int ic_dom_tree_set_source(ic_xml_node *disk, const char *path, const char *fmt)
{
    ic_xml_node *driver = ic_xml_tree_child(disk, "driver");
    bool fresh = !driver;
    ic_xml_node *source = NULL;
    if (ic_xml_tree_set_attr(disk, "type", "file") < 0 ||
        !(driver = ic_xml_tree_child_make(disk, "driver")) ||
        (fresh && ic_xml_tree_set_attr(driver, "name", "qemu") < 0) ||
        ic_xml_tree_set_attr(driver, "type", fmt) < 0 ||
        !(source = ic_xml_tree_child_make(disk, "source")))
        return -ENOMEM;
    ic_xml_tree_del_attr(source, "dev");
    ic_xml_tree_del_attr(source, "protocol");
    ic_xml_tree_del_attr(source, "name");
    if (ic_xml_tree_set_attr(source, "file", path) < 0)
        return -ENOMEM;
    ic_xml_tree_del_children(disk, "backingStore");
    return 0;
}
