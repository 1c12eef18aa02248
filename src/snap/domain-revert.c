/*
 * domain-revert.c - snapshot-revert: every disk back to a snapshot,
 * offline.
 *
 * Design notes
 * ------------
 * Owns: the checks and plan of a revert.  Spec: docs/domain-lifecycle.md
 * section 8: internal snapshots are applied on their image; external ones
 * get a fresh overlay on the image the snapshot froze (libvirt 9.9's way:
 * the frozen image is never written), named as libvirt names it or as the
 * caller says.  The domain's document becomes the snapshot's <domain> with
 * those sources, and the snapshot becomes current.
 *
 * Refusals, before anything is written (stricter than libvirt offline,
 * which drops uncaptured state silently):
 *  - state no snapshot captured would be lost (an overlay with allocated
 *    clusters; an image whose content differs from the current internal
 *    snapshot's), unless FORCE;
 *  - the snapshot's <domain> is not ABI-compatible with the domain's
 *    (machine, architecture, vCPUs, memory, the list, type and bus of the
 *    devices), unless FORCE;
 *  - an internal snapshot in an image an external snapshot froze since, or
 *    that other images use as their backing file: applying it would change
 *    what those read (always);
 *  - --running/--paused and --reset-nvram (imgchain never starts qemu).
 *
 * Invariants:
 *  1. The new overlays are made under a prepare-phase journal (unlinked by
 *     recovery); the commit record then holds every other step (apply,
 *     metadata, discard), all idempotent (domain-steps.c).
 *  2. --discard removes an abandoned active layer only if imgchain made it
 *     and nothing uses it after the revert (no overlay on it, no snapshot
 *     naming it, no internal snapshot in it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain-internal.h"
#include "imgchain/chain.h"
#include "imgchain/image.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"
#include "util/error.h"

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* ---- ABI ------------------------------------------------------------------ */

/* libvirt's rules and words (ic_domain_abi_check, src/xml/xml-abi.c): the
 * target is the snapshot's domain, the source the domain as it is, so the
 * refusal reads as virsh's ("Target domain vCPU max 2 does not match
 * source 4"). */
static int abi_check(const ic_domain *dom, const ic_snapshot_def *S, ic_error **errp)
{
    char *why = NULL;
    int ret = ic_domain_abi_check(S->domain, dom->tree, &why, errp);
    if (ret == 0 && why)
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "revert requires force: %s", why);
    free(why);
    return ret;
}

/* ---- state no snapshot captured ------------------------------------------ */

/* Bytes @img's own layer allocates (0: an untouched overlay). */
static int own_allocation(uint64_t *out, const char *path, ic_error **errp)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_FORCE_SHARE;
    int ret = ic_image_open(&img, path, &oo, errp);
    if (ret < 0)
        return ret;
    uint64_t size = ic_image_size(img), off = 0, total = 0;
    const ic_image *base = ic_image_backing(img);
    while (ret == 0 && off < size) {
        ic_block_status bs;
        ret = ic_image_block_status(img, base, off, size - off, &bs, errp);
        if (ret < 0)
            break;
        if ((bs.flags & IC_BS_ALLOCATED) && bs.depth == 0)
            total += bs.length;
        off += bs.length;
    }
    ic_image_close(img);
    *out = total;
    return ret;
}

/* Does @path read the same now as in its internal snapshot @name? */
static int same_as_internal(bool *out, const char *path, const char *name, ic_error **errp)
{
    ic_image *now = NULL, *then = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_FORCE_SHARE;
    int ret = ic_image_open(&now, path, &oo, errp);
    *out = false;
    /* equal cluster mappings are equal content: answered from the metadata
     * (ic_snapshot_differs), the usual case of no write since the snapshot */
    int d = ret == 0 ? ic_snapshot_differs(now, name, NULL, errp) : 0;
    if (d <= 0 && ret == 0) {
        *out = d == 0;
        ic_image_close(now);
        return d;
    }
    if (ret == 0)
        ret = ic_image_open(&then, path, &oo, errp);
    if (ret == 0)
        ret = ic_image_snapshot_load_tmp(then, NULL, name, false, errp);
    if (ret == 0 && ic_image_size(now) == ic_image_size(then)) {
        enum { CHUNK = 1 << 20 };
        char *a = malloc(CHUNK), *b = malloc(CHUNK);
        bool same = a && b;
        if (!same)
            ret = oom(errp);
        uint64_t size = ic_image_size(now);
        for (uint64_t off = 0; ret == 0 && same && off < size; off += CHUNK) {
            size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
            ret = ic_image_pread(now, a, n, off, errp);
            if (ret == 0)
                ret = ic_image_pread(then, b, n, off, errp);
            if (ret == 0 && memcmp(a, b, n))
                same = false;
        }
        free(a);
        free(b);
        *out = ret == 0 && same;
    }
    ic_image_close(then);
    ic_image_close(now);
    return ret;
}

static int lost_state_check(const ic_domain *dom, const ic_snapshot_def *S, ic_error **errp)
{
    const ic_snapshot_def *cur = ic_snapmeta_current(dom->meta);
    for (size_t i = 0; i < dom->def->ndisks; i++) {
        const ic_domain_disk_def *dd = &dom->def->disks[i];
        const char *A = dd->src->path;
        if (!A || dd->src->type != IC_STORAGE_FILE || dd->transient || dd->readonly ||
            ic_dir_path_type(A) != IC_DIR_PATH_REGULAR)
            continue;
        int si = -1;
        for (size_t k = 0; k < S->ndisks; k++)
            if (!strcmp(S->disks[k].name, dd->target))
                si = (int)k;
        if (si < 0 || S->disks[si].snapshot == IC_SNAPSHOT_LOCATION_NO)
            continue;   /* the revert leaves this disk as it is */
        /* captured by the current internal snapshot living in A? */
        if (cur && cur->domain) {
            for (size_t k = 0; k < cur->ndisks; k++) {
                if (strcmp(cur->disks[k].name, dd->target) ||
                    cur->disks[k].snapshot != IC_SNAPSHOT_LOCATION_INTERNAL ||
                    !ic_dom_same_file(ic_dom_tree_disk_source(cur->domain, dd->target), A))
                    continue;
                bool same = false;
                int ret = same_as_internal(&same, A, cur->name, errp);
                if (ret < 0)
                    return ret;
                if (same)
                    goto captured;
                return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                    "revert requires force: disk '%s': %s was written since "
                                    "snapshot '%s' and no snapshot captured it: the writes "
                                    "would be lost", dd->target, A, cur->name);
            }
        }
        /* an overlay that holds nothing reads as its frozen backing file */
        uint64_t used = 0;
        ic_image *probe = NULL;
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.flags = IC_OPEN_FORCE_SHARE | IC_OPEN_NO_BACKING;
        int ret = ic_image_open(&probe, A, &oo, errp);
        if (ret < 0)
            return ret;
        bool has_backing = ic_image_backing_name(probe) != NULL;
        ic_image_close(probe);
        if (has_backing) {
            if ((ret = own_allocation(&used, A, errp)) < 0)
                return ret;
            if (used == 0)
                continue;
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "revert requires force: disk '%s': %s holds %llu bytes written "
                                "since its last snapshot that no snapshot captured: they "
                                "would be lost", dd->target, A, (unsigned long long)used);
        }
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "revert requires force: disk '%s': the current state of %s is "
                            "captured by no snapshot and would be lost", dd->target, A);
captured:;
    }
    return 0;
}

/* ---- internal snapshots frozen since -------------------------------------- */

static int frozen_check(const ic_domain *dom, const ic_snapshot_def *S, ic_error **errp)
{
    const char **names = NULL;
    size_t k = 0;
    int ret = ic_snapmeta_list(&names, &k, dom->meta, NULL, true, errp);
    for (size_t i = 0; ret == 0 && i < S->ndisks; i++) {
        const ic_snapshot_disk_def *sd = &S->disks[i];
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_INTERNAL)
            continue;
        const char *I = ic_dom_tree_disk_source(S->domain, sd->name);
        if (!I || ic_dir_path_type(I) != IC_DIR_PATH_REGULAR) {
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "disk '%s': the image of internal snapshot '%s' (%s) is gone",
                               sd->name, S->name, I ? I : "?");
            break;
        }
        for (size_t s = 0; ret == 0 && s < k; s++) {
            const ic_snapshot_def *E = ic_snapmeta_lookup(dom->meta, names[s]);
            if (E == S || !E->domain)
                continue;
            for (size_t d = 0; d < E->ndisks; d++)
                if (!strcmp(E->disks[d].name, sd->name) &&
                    E->disks[d].snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL &&
                    ic_dom_same_file(ic_dom_tree_disk_source(E->domain, sd->name), I))
                    ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                       "disk '%s': internal snapshot '%s' lives in %s, which "
                                       "external snapshot '%s' froze since: applying it would "
                                       "change what '%s' and the snapshots after it read",
                                       sd->name, S->name, I, E->name, E->name);
        }
        char **kids = NULL;
        size_t nk = 0;
        if (ret == 0 && (ret = ic_dom_children_of(&kids, &nk, dom, I, errp)) == 0 && nk)
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "disk '%s': internal snapshot '%s' lives in %s, which %s uses "
                               "as its backing file: applying it would change what that reads",
                               sd->name, S->name, I, kids[0]);
        ic_domain_names_free(kids, nk);
    }
    free(names);
    return ret;
}

/* ---- plan ------------------------------------------------------------------- */

struct rdisk {
    const char *disk;
    char *file;      /* the new overlay */
    char *backing;   /* S's frozen image */
    char *bfmt;
    bool made;
};

/* libvirt's name for a new overlay: the frozen image's name without its
 * last suffix, a dot, @stamp (a number). */
static char *default_name(const char *frozen, long long stamp)
{
    const char *slash = strrchr(frozen, '/');
    const char *dot = strrchr(slash ? slash : frozen, '.');
    size_t stem = dot ? (size_t)(dot - frozen) : strlen(frozen);
    char *p = NULL;
    if (asprintf(&p, "%.*s.%lld", (int)stem, frozen, stamp) < 0)
        return NULL;
    return p;
}

static const char *file_for(const char *const *files, size_t n, const char *disk)
{
    size_t l = strlen(disk);
    for (size_t i = 0; i < n; i++)
        if (!strncmp(files[i], disk, l) && files[i][l] == '=')
            return files[i] + l + 1;
    return NULL;
}

static char *format_of(const ic_snapshot_def *S, const char *disk, const char *path)
{
    int idx = S->dom ? ic_domain_def_disk_index(S->dom, disk) : -1;
    if (idx >= 0 && S->dom->disks[idx].src->format)
        return strdup(ic_disk_format_name(S->dom->disks[idx].src->format));
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_FORCE_SHARE | IC_OPEN_NO_BACKING;
    if (ic_image_open(&img, path, &oo, NULL) < 0)
        return NULL;
    char *f = strdup(ic_image_format(img));
    ic_image_close(img);
    return f;
}

static void rdisks_free(struct rdisk *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].file);
        free(v[i].backing);
        free(v[i].bfmt);
    }
    free(v);
}

static int add_step(json_object *arr, json_object *s, ic_error **errp)
{
    if (!s || json_object_array_add(arr, s) < 0) {
        json_object_put(s);
        return oom(errp);
    }
    return 0;
}

/* Is @path used by anything once the revert is done (@tree the new
 * domain, @S_new S's new definition)? */
static int still_used(bool *out, const ic_domain *dom, const char *path, const ic_xml_node *tree,
                      const ic_snapshot_def *S_new, ic_error **errp)
{
    *out = true;
    const char **names = NULL;
    size_t k = 0;
    int ret = ic_snapmeta_list(&names, &k, dom->meta, NULL, true, errp);
    if (ret < 0)
        return ret;
    bool used = false;
    const ic_xml_node *devices = ic_xml_node_child(tree, "devices");
    for (size_t i = 0; devices && i < devices->nchildren && !used; i++) {
        const ic_xml_node *src = ic_xml_node_child(devices->children[i], "source");
        used = ic_dom_same_file(ic_xml_node_attr(src, "file"), path);
    }
    /* a snapshot's point (the image its <domain> names) is used; the
     * overlay a snapshot's <disks> or <revertDisks> name is where writes
     * after it went: abandoned, that is what --discard removes */
    for (size_t s = 0; s < k && !used; s++) {
        const ic_snapshot_def *d = ic_snapmeta_lookup(dom->meta, names[s]);
        if (!strcmp(d->name, S_new->name))
            d = S_new;
        for (size_t i = 0; i < d->ndisks && !used; i++)
            used = d->domain &&
                   ic_dom_same_file(ic_dom_tree_disk_source(d->domain, d->disks[i].name), path);
    }
    free(names);
    if (!used) {
        /* internal snapshots in it are points too */
        ic_image *img = NULL;
        ic_open_options oo = IC_OPEN_OPTIONS_INIT;
        oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
        if ((ret = ic_image_open(&img, path, &oo, errp)) < 0)
            return ret;
        ic_snapshot_info *v = NULL;
        int n = strcmp(ic_image_format(img), "qcow2") ? 0 : ic_snapshot_list(img, &v, errp);
        ic_image_close(img);
        if (n < 0)
            return n;
        ic_snapshot_list_free(v, (size_t)n);
        used = n > 0;
    }
    char **kids = NULL;
    size_t nk = 0;
    if (!used && (ret = ic_dom_children_of(&kids, &nk, dom, path, errp)) < 0)
        return ret;
    ic_domain_names_free(kids, nk);
    *out = used || nk > 0;
    return 0;
}

static int revert(ic_domain *dom, const ic_snapshot_def *S, const char *const *files,
                  size_t nfiles, unsigned flags, ic_error **errp)
{
    int ret = 0;
    struct rdisk *rd = calloc(S->ndisks + 1, sizeof(*rd));
    size_t nrd = 0;
    json_object *prep = json_object_new_array(), *steps = json_object_new_array();
    json_object *j = NULL;
    ic_xml_node *tree = ic_xml_tree_clone(S->domain);
    ic_snapshot_def *S_new = NULL;
    char *xml = NULL;
    if (!rd || !prep || !steps || !tree) {
        ret = oom(errp);
        goto out;
    }
    long long stamp = (long long)time(NULL);
    for (size_t i = 0; ret == 0 && i < S->ndisks; i++) {
        const ic_snapshot_disk_def *sd = &S->disks[i];
        const char *src = ic_dom_tree_disk_source(S->domain, sd->name);
        if (sd->snapshot == IC_SNAPSHOT_LOCATION_INTERNAL) {
            json_object *s = ic_dom_step("internal-apply");
            ic_dom_step_set(s, "image", src);
            ic_dom_step_set(s, "name", S->name);
            ret = add_step(steps, s, errp);
            continue;
        }
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
            continue;
        if (!src || ic_dir_path_type(src) != IC_DIR_PATH_REGULAR) {
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "disk '%s': the image snapshot '%s' froze (%s) is gone",
                               sd->name, S->name, src ? src : "?");
            break;
        }
        struct rdisk *r = &rd[nrd++];
        r->disk = sd->name;
        r->backing = strdup(src);
        r->bfmt = format_of(S, sd->name, src);
        const char *want = file_for(files, nfiles, sd->name);
        if (want) {
            r->file = strdup(want);
        } else {
            for (long long t = stamp;; t++) {
                free(r->file);
                r->file = default_name(src, t);
                bool clash = !r->file || ic_dir_path_type(r->file) != IC_DIR_PATH_MISSING;
                for (size_t o = 0; !clash && o + 1 < nrd; o++)
                    clash = !strcmp(rd[o].file, r->file);
                if (!clash)
                    break;
            }
        }
        if (!r->backing || !r->bfmt || !r->file) {
            ret = r->bfmt || !r->backing ? oom(errp)
                                         : ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                                        "disk '%s': cannot tell the format of %s",
                                                        sd->name, src);
            break;
        }
        if (r->file[0] != '/')
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "disk '%s': overlay path '%s' must be absolute", sd->name,
                               r->file);
        else if (ic_dir_path_type(r->file) != IC_DIR_PATH_MISSING)
            ret = ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                               "disk '%s': the new overlay %s already exists", sd->name, r->file);
        if (ret < 0)
            break;
        json_object *p = json_object_new_object();
        if (!p) {
            ret = oom(errp);
            break;
        }
        json_object_object_add(p, "disk", json_object_new_string(sd->name));
        json_object_object_add(p, "kind", json_object_new_string("external"));
        json_object_object_add(p, "file", json_object_new_string(r->file));
        json_object_object_add(p, "created", json_object_new_boolean(true));
        ret = add_step(prep, p, errp);
        if (ret == 0 && ic_dom_tree_set_disk_source(tree, sd->name, r->file, "qcow2") < 0)
            ret = oom(errp);
    }
    for (size_t i = 0; ret == 0 && i < nfiles; i++) {
        const char *eq = strchr(files[i], '=');
        bool known = false;
        for (size_t r = 0; eq && r < nrd; r++)
            known |= strlen(rd[r].disk) == (size_t)(eq - files[i]) &&
                     !strncmp(rd[r].disk, files[i], (size_t)(eq - files[i]));
        if (!known)
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "overlay '%s' names no external disk of snapshot '%s'", files[i],
                               S->name);
    }
    if (ret < 0)
        goto out;

    /* S's new definition: the overlays in <revertDisks> when S has
     * children, else in place of its <disks> (libvirt 9.9) */
    {
        char *sx = NULL;
        ret = ic_snapshot_def_format(&sx, S, IC_SNAPSHOT_FORMAT_SECURE, errp);
        if (ret == 0)
            ret = ic_snapshot_def_parse(&S_new, sx, strlen(sx), IC_SNAPSHOT_PARSE_REDEFINE, errp);
        free(sx);
        if (ret < 0)
            goto out;
    }
    if (nrd) {
        bool children = ic_domain_snapshot_num_children(dom, S->name, false) > 0;
        if (children) {
            for (size_t i = 0; i < S_new->nrevert_disks; i++) {
                free(S_new->revert_disks[i].name);
                ic_storage_source_free(S_new->revert_disks[i].src);
            }
            free(S_new->revert_disks);
            S_new->revert_disks = calloc(nrd, sizeof(*S_new->revert_disks));
            S_new->nrevert_disks = 0;
            if (!S_new->revert_disks) {
                ret = oom(errp);
                goto out;
            }
        }
        for (size_t r = 0; r < nrd; r++) {
            ic_snapshot_disk_def *t = NULL;
            if (children) {
                t = &S_new->revert_disks[S_new->nrevert_disks++];
                t->snapshot = IC_SNAPSHOT_LOCATION_EXTERNAL;
                t->name = strdup(rd[r].disk);
                t->src = calloc(1, sizeof(*t->src));
                if (!t->name || !t->src) {
                    ret = oom(errp);
                    goto out;
                }
            } else {
                for (size_t i = 0; i < S_new->ndisks; i++)
                    if (!strcmp(S_new->disks[i].name, rd[r].disk))
                        t = &S_new->disks[i];
                if (!t)
                    continue;
                free(t->src->path);
            }
            t->src->type = IC_STORAGE_FILE;
            t->src->format = IC_DISK_FORMAT_QCOW2;
            if (!(t->src->path = strdup(rd[r].file))) {
                ret = oom(errp);
                goto out;
            }
        }
    }
    if ((ret = ic_snapshot_def_format(&xml, S_new, IC_SNAPSHOT_FORMAT_SECURE, errp)) < 0)
        goto out;
    json_object *s = ic_dom_step("put");
    ic_dom_step_set(s, "xml", xml);
    json_object_object_add(s, "current", json_object_new_boolean(true));
    if ((ret = add_step(steps, s, errp)) < 0)
        goto out;
    free(xml);
    xml = NULL;
    for (size_t r = 0; r < nrd && ret == 0; r++) {
        s = ic_dom_step("add-image");
        ic_dom_step_set(s, "path", rd[r].file);
        ic_dom_step_set(s, "snapshot", S->name);
        ic_dom_step_set(s, "disk", rd[r].disk);
        ic_dom_step_set(s, "role", "revert");
        ret = add_step(steps, s, errp);
    }
    if (ret == 0)
        ret = ic_xml_tree_format(&xml, tree, true, errp);
    if (ret == 0) {
        s = ic_dom_step("domain");
        ic_dom_step_set(s, "xml", xml);
        ret = add_step(steps, s, errp);
    }
    /* --discard: the abandoned active layers imgchain made and nothing uses */
    for (size_t i = 0; ret == 0 && (flags & IC_DOMAIN_SNAPSHOT_REVERT_DISCARD) &&
                       i < dom->def->ndisks; i++) {
        const char *A = dom->def->disks[i].src->path;
        if (!A || !ic_domain_image_owned(dom, A) || ic_dir_path_type(A) != IC_DIR_PATH_REGULAR)
            continue;
        bool used = true;
        ret = still_used(&used, dom, A, tree, S_new, errp);
        if (ret < 0 || used)
            continue;
        s = ic_dom_step("unlink");
        ic_dom_step_set(s, "path", A);
        ret = add_step(steps, s, errp);
        s = ic_dom_step("drop-image");
        ic_dom_step_set(s, "path", A);
        if (ret == 0)
            ret = add_step(steps, s, errp);
    }
    if (ret < 0)
        goto out;

    /* prepare: the overlays, undone by recovery until the commit record */
    if (!(j = json_object_new_object())) {
        ret = oom(errp);
        goto out;
    }
    json_object_object_add(j, "version", json_object_new_int(1));
    json_object_object_add(j, "op", json_object_new_string("snapshot-revert"));
    json_object_object_add(j, "snapshot", json_object_new_string(S->name));
    json_object_object_add(j, "phase", json_object_new_string("prepare"));
    json_object_object_add(j, "steps", json_object_get(prep));
    if (nrd && (ret = ic_dom_journal_write(dom, j, errp)) < 0)
        goto out;
    for (size_t r = 0; r < nrd; r++) {
        if ((ret = ic_dir_create_empty(rd[r].file, IC_DOM_FILE_MODE, errp)) == 0) {
            rd[r].made = true;
            ic_create_options co = IC_CREATE_OPTIONS_INIT;
            co.format = "qcow2";
            co.backing_file = rd[r].backing;
            co.backing_format = rd[r].bfmt;
            co.open_file = dom->open_file;
            co.payload = dom->open_payload;
            ret = ic_image_create(rd[r].file, &co, errp);
        }
        if (ret < 0) {
            ic_error_prepend(errp, "disk '%s'", rd[r].disk);
            for (size_t u = 0; u <= r; u++)
                if (rd[u].made)
                    ic_dir_unlink(rd[u].file, NULL);
            ic_dom_journal_remove(dom, NULL);
            goto out;
        }
    }
    /* the commit record: from here the steps run to the end */
    json_object_object_add(j, "phase", json_object_new_string("commit"));
    json_object_object_add(j, "next", json_object_new_int(0));
    json_object_object_add(j, "steps", json_object_get(steps));
    if ((ret = ic_dom_journal_write(dom, j, errp)) < 0) {
        ic_error_prepend(errp, "snapshot-revert to '%s' interrupted at its commit record (the "
                         "next command that changes the domain finishes or rolls it back)",
                         S->name);
        goto out;
    }
    ret = ic_dom_steps_run(dom, j, errp);
out:
    free(xml);
    ic_snapshot_def_free(S_new);
    ic_xml_node_free(tree);
    json_object_put(j);
    json_object_put(prep);
    json_object_put(steps);
    rdisks_free(rd, nrd);
    return ret;
}

int ic_domain_snapshot_revert_files(ic_domain *dom, const char *name, const char *const *files,
                                    size_t nfiles, unsigned flags, ic_error **errp)
{
    if (!dom || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_snapshot_revert: no domain or snapshot");
    if (!dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_revert: %s: the domain is opened read-only",
                            dom->name);
    const unsigned all = IC_DOMAIN_SNAPSHOT_REVERT_RUNNING | IC_DOMAIN_SNAPSHOT_REVERT_PAUSED |
                         IC_DOMAIN_SNAPSHOT_REVERT_FORCE | IC_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM |
                         IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN |
                         IC_DOMAIN_SNAPSHOT_REVERT_DISCARD;
    if (flags & ~all)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~all);
    int live = ic_dom_live_refuse(dom, "revert", errp);
    if (live < 0)
        return live;
    if ((flags & IC_DOMAIN_SNAPSHOT_REVERT_RUNNING) && (flags & IC_DOMAIN_SNAPSHOT_REVERT_PAUSED))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and "
                            "'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are mutually exclusive");
    if (flags & (IC_DOMAIN_SNAPSHOT_REVERT_RUNNING | IC_DOMAIN_SNAPSHOT_REVERT_PAUSED))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: imgchain reverts offline domains and never starts qemu: "
                            "--running and --paused are not supported", dom->name);
    if (flags & IC_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: imgchain does not manage NVRAM: --reset-nvram is not supported",
                            dom->name);
    const ic_snapshot_def *S = ic_snapmeta_lookup(dom->meta, name);
    if (!S)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", name);
    char *sname = strdup(S->name);
    if (!sname)
        return oom(errp);
    int ret = 0;
    if (!S->domain)
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "revert requires force: snapshot '%s' lacks domain '%s' rollback "
                           "info", S->name, dom->name);
    if (ret == 0 && !(flags & IC_DOMAIN_SNAPSHOT_REVERT_FORCE))
        ret = abi_check(dom, S, errp);
    if (ret == 0)
        ret = frozen_check(dom, S, errp);
    if (ret == 0 && !(flags & IC_DOMAIN_SNAPSHOT_REVERT_FORCE))
        ret = lost_state_check(dom, S, errp);
    if (ret == 0)
        ret = revert(dom, S, files, nfiles, flags, errp);
    if (ret == 0 && (flags & IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN) &&
        ic_domain_snapshot_num_children(dom, sname, false))
        ret = ic_domain_snapshot_delete(dom, sname, IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", dom->name);
    free(sname);
    return ret;
}

int ic_domain_snapshot_revert(ic_domain *dom, const char *name, unsigned flags, ic_error **errp)
{
    return ic_domain_snapshot_revert_files(dom, name, NULL, 0, flags, errp);
}
