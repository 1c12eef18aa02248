/*
 * domain-delete.c - snapshot-delete: internal snapshots deleted from every
 * disk, external ones merged away (commit down or stream up), metadata
 * re-parented, and no image that anything still uses deleted.
 *
 * Design notes
 * ------------
 * Owns: the plan of a delete.  Spec: docs/domain-lifecycle.md section 8;
 * libvirt's tree rules (children re-parented to the parent, the parent
 * current when the current one goes, CHILDREN / CHILDREN_ONLY / METADATA).
 *
 * For an external snapshot S of disk d, F is the image S froze (the source
 * in S's <domain>) and O the overlay S made (its <disks> source).  S's
 * point in time is F; deleting it merges the boundary between F and O:
 *
 *   orphan      O is no longer used (not active, no overlay on it, no
 *               snapshot froze it): O is removed if imgchain made it (the
 *               writes in it were never captured: libvirt drops them too).
 *   commit down nothing but O reads F: O is committed into F, O's children
 *               are rebased (unsafe) onto F, the domain moves to F when it
 *               was on O, every snapshot naming O now names F, O removed.
 *   stream up   F has other users, and O is nobody's snapshot point: each
 *               child of O is rebased safely onto F (O's data copied into
 *               it), O removed.
 *   keep        otherwise (O holds internal snapshots, or is a snapshot
 *               point while F is shared, or is the active layer over a
 *               shared F): the images stay as they are, only the metadata
 *               goes.  Every remaining snapshot still reads what it read.
 *
 * Invariants:
 *  1. Users of an image are found before the first write: overlays whose
 *     backing file it is (ic_chain_dependents over every folder the
 *     domain's images live in), the active layer of every domain of the
 *     state folder, and every remaining snapshot's <domain> and <disks>.
 *  2. Only files listed in the private file are ever unlinked.
 *  3. The whole plan is journalled with its commit record before the first
 *     image write; the steps are idempotent (domain-steps.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-internal.h"
#include "imgchain/chain-edit.h"
#include "imgchain/image.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"
#include "util/error.h"

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
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

/* ---- folders and users -------------------------------------------------- */

static int add_dir(char ***v, size_t *n, const char *path)
{
    if (!path || path[0] != '/')
        return 0;
    const char *slash = strrchr(path, '/');
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    for (size_t i = 0; i < *n; i++)
        if (strlen((*v)[i]) == len && !strncmp((*v)[i], path, len))
            return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    if (!(nv[*n] = strndup(path, len)))
        return -ENOMEM;
    if (ic_dir_path_type(nv[*n]) != IC_DIR_PATH_DIRECTORY) {
        free(nv[*n]);
        return 0;
    }
    (*n)++;
    return 0;
}

int ic_dom_image_dirs(char ***out, size_t *n_out, const ic_domain *dom, ic_error **errp)
{
    char **v = NULL;
    size_t n = 0;
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < dom->def->ndisks; i++)
        ret = add_dir(&v, &n, dom->def->disks[i].src->path);
    const char **names = NULL;
    size_t k = 0;
    if (ret == 0 && ic_snapmeta_list(&names, &k, dom->meta, NULL, true, errp) < 0)
        ret = -ENOMEM;
    for (size_t s = 0; ret == 0 && s < k; s++) {
        const ic_snapshot_def *d = ic_snapmeta_lookup(dom->meta, names[s]);
        for (size_t i = 0; ret == 0 && i < d->ndisks; i++)
            ret = add_dir(&v, &n, d->disks[i].src->path);
        for (size_t i = 0; ret == 0 && i < d->nrevert_disks; i++)
            ret = add_dir(&v, &n, d->revert_disks[i].src->path);
        for (size_t i = 0; ret == 0 && d->dom && i < d->dom->ndisks; i++)
            ret = add_dir(&v, &n, d->dom->disks[i].src->path);
    }
    free(names);
    if (ret < 0) {
        ic_domain_names_free(v, n);
        return oom(errp);
    }
    *out = v;
    *n_out = n;
    return 0;
}

int ic_dom_children_of(char ***out, size_t *n_out, const ic_domain *dom, const char *path,
                       ic_error **errp)
{
    *out = NULL;
    *n_out = 0;
    char **dirs = NULL;
    size_t nd = 0;
    int ret = ic_dom_image_dirs(&dirs, &nd, dom, errp);
    if (ret < 0)
        return ret;
    ic_dependents *deps = NULL;
    ic_dependents_options o = IC_DEPENDENTS_OPTIONS_INIT;
    o.max_depth = 4;
    ret = ic_chain_dependents(&deps, path, (const char *const *)dirs, nd, &o, errp);
    ic_domain_names_free(dirs, nd);
    if (ret < 0)
        return ret;
    char **v = calloc(deps->nb + 1, sizeof(*v));
    size_t k = 0;
    bool failed = !v;
    for (size_t i = 0; !failed && i < deps->nb; i++) {
        if (deps->list[i].depth != 1)
            continue;
        if (!(v[k] = realpath(deps->list[i].filename, NULL)) &&
            !(v[k] = strdup(deps->list[i].filename)))
            failed = true;
        else
            k++;
    }
    ic_dependents_free(deps);
    if (failed) {
        ic_domain_names_free(v, k);
        return oom(errp);
    }
    *out = v;
    *n_out = k;
    return 0;
}

/* Is @path the active layer of a disk of any domain of the state folder
 * other than @dom (whose own disks the caller checks)? */
static int active_elsewhere(bool *out, const ic_domain *dom, const char *path, ic_error **errp)
{
    *out = false;
    char **names = NULL;
    size_t n = 0;
    int ret = ic_domain_list(&names, &n, dom->state_dir, errp);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n && !*out; i++) {
        if (!strcmp(names[i], dom->name))
            continue;
        ic_domain *other = NULL;
        ic_error *e = NULL;
        if (ic_domain_open(&other, dom->state_dir, names[i], 0, &e) < 0) {
            /* a domain that cannot be read might use it: say so */
            ret = ic_error_set(errp, IC_ERR_BUSY, EBUSY,
                               "cannot tell whether domain '%s' uses %s: %s", names[i], path,
                               ic_error_message(e));
            ic_error_free(e);
            break;
        }
        for (size_t d = 0; d < other->def->ndisks; d++)
            if (ic_dom_same_file(other->def->disks[d].src->path, path))
                *out = true;
        ic_domain_close(other);
    }
    ic_domain_names_free(names, n);
    return ret;
}

/* ---- planning one snapshot ------------------------------------------------ */

struct repl {
    const char *disk;
    char *from, *to, *fmt;
};

struct dplan {
    ic_domain *dom;
    const ic_snapshot_def *victim;
    json_object *steps;        /* image steps, in order */
    json_object *tail;         /* unlink / drop-image steps, after the metadata */
    struct repl *repl;
    size_t nrepl;
};

static int add_step(json_object *arr, json_object *s, ic_error **errp)
{
    if (!s || json_object_array_add(arr, s) < 0) {
        json_object_put(s);
        return oom(errp);
    }
    return 0;
}

/* The backing format O records, or NULL. */
static char *backing_format_of(const char *overlay)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    if (ic_image_open(&img, overlay, &oo, NULL) < 0)
        return NULL;
    const char *f = ic_image_backing_format(img);
    char *r = f ? strdup(f) : NULL;
    ic_image_close(img);
    return r;
}

static int internal_count(const char *path, int *n_out, ic_error **errp)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    int ret = ic_image_open(&img, path, &oo, errp);
    if (ret < 0)
        return ret;
    ic_snapshot_info *v = NULL;
    int n = strcmp(ic_image_format(img), "qcow2") ? 0 : ic_snapshot_list(img, &v, errp);
    if (n > 0)
        ic_snapshot_list_free(v, (size_t)n);
    ic_image_close(img);
    if (n < 0)
        return n;
    *n_out = n;
    return 0;
}

/* Does a snapshot other than @skip have @path as its point on @disk (it
 * froze it, or lives in it)? */
static bool snapshot_point(const ic_domain *dom, const ic_snapshot_def *skip, const char *disk,
                           const char *path)
{
    const char **names = NULL;
    size_t k = 0;
    bool found = false;
    if (ic_snapmeta_list(&names, &k, dom->meta, NULL, true, NULL) < 0)
        return true;   /* cannot tell: treat as used */
    for (size_t s = 0; s < k && !found; s++) {
        const ic_snapshot_def *d = ic_snapmeta_lookup(dom->meta, names[s]);
        if (d == skip || !d->domain)
            continue;
        found = ic_dom_same_file(ic_dom_tree_disk_source(d->domain, disk), path);
    }
    free(names);
    return found;
}

static bool all_owned(const ic_domain *dom, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ic_domain_image_owned(dom, v[i]))
            return false;
    return true;
}

static int plan_external_disk(struct dplan *p, const ic_snapshot_disk_def *sd, ic_error **errp)
{
    ic_domain *dom = p->dom;
    const char *F = ic_dom_tree_disk_source(p->victim->domain, sd->name);
    const char *O = sd->src->path;
    if (!F || !O || ic_dir_path_type(F) != IC_DIR_PATH_REGULAR ||
        ic_dir_path_type(O) != IC_DIR_PATH_REGULAR)
        return 0;   /* nothing on disk to merge: metadata only */
    int ret;
    char **kidsF = NULL, **kidsO = NULL;
    size_t nF = 0, nO = 0;
    char *fmtF = NULL;
    int nint = 0;
    bool elsewhere = false;
    if ((ret = ic_dom_children_of(&kidsF, &nF, dom, F, errp)) < 0 ||
        (ret = ic_dom_children_of(&kidsO, &nO, dom, O, errp)) < 0 ||
        (ret = internal_count(O, &nint, errp)) < 0 ||
        (ret = active_elsewhere(&elsewhere, dom, O, errp)) < 0)
        goto out;
    int idx = ic_domain_def_disk_index(dom->def, sd->name);
    bool activeO = idx >= 0 && ic_dom_same_file(dom->def->disks[idx].src->path, O);
    bool pointO = snapshot_point(dom, p->victim, sd->name, O);
    bool pointF = snapshot_point(dom, p->victim, sd->name, F);
    bool otherF = pointF;
    for (size_t i = 0; i < nF; i++)
        if (!ic_dom_same_file(kidsF[i], O))
            otherF = true;
    bool ours = ic_domain_image_owned(dom, O);
    fmtF = backing_format_of(O);
    if (!fmtF) {
        ret = 0;   /* O records no backing format: never guess one, keep */
        goto out;
    }
    json_object *s;
    if (nint > 0 || elsewhere) {
        ret = 0;   /* keep */
    } else if (!activeO && !nO && !pointO) {
        /* orphan */
        if (ours) {
            s = ic_dom_step("unlink");
            ic_dom_step_set(s, "path", O);
            ret = add_step(p->tail, s, errp);
            s = ic_dom_step("drop-image");
            ic_dom_step_set(s, "path", O);
            if (ret == 0)
                ret = add_step(p->tail, s, errp);
        }
    } else if (!otherF) {
        /* commit down */
        s = ic_dom_step("commit");
        ic_dom_step_set(s, "top", O);
        ic_dom_step_set(s, "base", F);
        ret = add_step(p->steps, s, errp);
        for (size_t i = 0; ret == 0 && i < nO; i++) {
            s = ic_dom_step("rebase");
            ic_dom_step_set(s, "image", kidsO[i]);
            ic_dom_step_set(s, "backing", F);
            ic_dom_step_set(s, "backing_format", fmtF);
            json_object_object_add(s, "unsafe", json_object_new_boolean(true));
            ret = add_step(p->steps, s, errp);
        }
        struct repl *r = realloc(p->repl, (p->nrepl + 1) * sizeof(*r));
        if (ret == 0 && !r)
            ret = oom(errp);
        if (ret == 0) {
            p->repl = r;
            r[p->nrepl].disk = sd->name;
            r[p->nrepl].from = strdup(O);
            r[p->nrepl].to = strdup(F);
            r[p->nrepl].fmt = strdup(fmtF);
            p->nrepl++;
        }
        if (ret == 0 && ours) {
            s = ic_dom_step("unlink");
            ic_dom_step_set(s, "path", O);
            ret = add_step(p->tail, s, errp);
            s = ic_dom_step("drop-image");
            ic_dom_step_set(s, "path", O);
            if (ret == 0)
                ret = add_step(p->tail, s, errp);
        }
    } else if (!pointO && !activeO && all_owned(dom, kidsO, nO)) {
        /* stream up into every child of O (imgchain's own overlays only:
         * another tool's image is not rewritten behind its back) */
        for (size_t i = 0; ret == 0 && i < nO; i++) {
            s = ic_dom_step("rebase");
            ic_dom_step_set(s, "image", kidsO[i]);
            ic_dom_step_set(s, "backing", F);
            ic_dom_step_set(s, "backing_format", fmtF);
            ret = add_step(p->steps, s, errp);
        }
        if (ret == 0 && ours) {
            s = ic_dom_step("unlink");
            ic_dom_step_set(s, "path", O);
            ret = add_step(p->tail, s, errp);
            s = ic_dom_step("drop-image");
            ic_dom_step_set(s, "path", O);
            if (ret == 0)
                ret = add_step(p->tail, s, errp);
        }
    } else {
        ret = 0;   /* keep: O is a point or the active layer, and F is shared */
    }
out:
    ic_domain_names_free(kidsF, nF);
    ic_domain_names_free(kidsO, nO);
    free(fmtF);
    return ret;
}

/* A deep copy of @def through its public form. */
static ic_snapshot_def *copy_def(const ic_snapshot_def *def)
{
    char *xml = NULL;
    ic_snapshot_def *c = NULL;
    if (ic_snapshot_def_format(&xml, def, IC_SNAPSHOT_FORMAT_SECURE, NULL) == 0)
        ic_snapshot_def_parse(&c, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, NULL);
    free(xml);
    return c;
}

static bool replace_in_disks(ic_snapshot_disk_def *v, size_t n, const struct repl *r)
{
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].name, r->disk) || !ic_dom_same_file(v[i].src->path, r->from))
            continue;
        char *np = strdup(r->to);
        if (!np)
            continue;
        free(v[i].src->path);
        v[i].src->path = np;
        changed = true;
    }
    return changed;
}

/* put steps for every remaining snapshot naming a replaced file */
static int plan_rewrites(struct dplan *p, json_object *meta, ic_error **errp)
{
    const char **names = NULL;
    size_t k = 0;
    int ret = ic_snapmeta_list(&names, &k, p->dom->meta, NULL, true, errp);
    const ic_snapshot_def *cur = ic_snapmeta_current(p->dom->meta);
    for (size_t s = 0; ret == 0 && s < k; s++) {
        const ic_snapshot_def *d = ic_snapmeta_lookup(p->dom->meta, names[s]);
        if (d == p->victim)
            continue;
        ic_snapshot_def *c = NULL;
        bool changed = false;
        for (size_t r = 0; r < p->nrepl; r++) {
            const struct repl *rp = &p->repl[r];
            bool in_dom = d->domain &&
                          ic_dom_same_file(ic_dom_tree_disk_source(d->domain, rp->disk), rp->from);
            bool in_disks = false;
            for (size_t i = 0; i < d->ndisks; i++)
                in_disks |= !strcmp(d->disks[i].name, rp->disk) &&
                            ic_dom_same_file(d->disks[i].src->path, rp->from);
            for (size_t i = 0; i < d->nrevert_disks; i++)
                in_disks |= !strcmp(d->revert_disks[i].name, rp->disk) &&
                            ic_dom_same_file(d->revert_disks[i].src->path, rp->from);
            if (!in_dom && !in_disks)
                continue;
            if (!c && !(c = copy_def(d))) {
                ret = oom(errp);
                break;
            }
            if (in_dom && ic_dom_tree_set_disk_source(c->domain, rp->disk, rp->to, rp->fmt) < 0)
                ret = oom(errp);
            replace_in_disks(c->disks, c->ndisks, rp);
            replace_in_disks(c->revert_disks, c->nrevert_disks, rp);
            changed = true;
        }
        if (ret == 0 && changed && c->parent_name && !strcmp(c->parent_name, p->victim->name)) {
            /* already re-parented as the store's remove will: the step then
             * loads before and after the victim is gone (a redo after a
             * crash runs it again once the victim is removed) */
            free(c->parent_name);
            c->parent_name = p->victim->parent_name ? strdup(p->victim->parent_name) : NULL;
            if (p->victim->parent_name && !c->parent_name)
                ret = oom(errp);
        }
        if (ret == 0 && changed) {
            char *xml = NULL;
            ret = ic_snapshot_def_format(&xml, c, IC_SNAPSHOT_FORMAT_SECURE, errp);
            if (ret == 0) {
                json_object *st = ic_dom_step("put");
                ic_dom_step_set(st, "xml", xml);
                json_object_object_add(st, "current", json_object_new_boolean(d == cur));
                ret = add_step(meta, st, errp);
            }
            free(xml);
        }
        ic_snapshot_def_free(c);
    }
    free(names);
    return ret;
}

static void dplan_free(struct dplan *p)
{
    json_object_put(p->steps);
    json_object_put(p->tail);
    for (size_t i = 0; i < p->nrepl; i++) {
        free(p->repl[i].from);
        free(p->repl[i].to);
        free(p->repl[i].fmt);
    }
    free(p->repl);
}

static int delete_one(ic_domain *dom, const char *name, ic_error **errp)
{
    const ic_snapshot_def *S = ic_snapmeta_lookup(dom->meta, name);
    if (!S)
        return 0;
    struct dplan p = { .dom = dom, .victim = S };
    p.steps = json_object_new_array();
    p.tail = json_object_new_array();
    json_object *j = NULL;
    int ret = p.steps && p.tail ? 0 : oom(errp);
    for (size_t i = 0; ret == 0 && i < S->ndisks; i++) {
        const ic_snapshot_disk_def *sd = &S->disks[i];
        if (sd->snapshot == IC_SNAPSHOT_LOCATION_INTERNAL) {
            const char *img = S->domain ? ic_dom_tree_disk_source(S->domain, sd->name) : NULL;
            if (img && ic_dir_path_type(img) == IC_DIR_PATH_REGULAR) {
                json_object *s = ic_dom_step("internal-delete");
                ic_dom_step_set(s, "image", img);
                ic_dom_step_set(s, "name", S->name);
                ret = add_step(p.steps, s, errp);
            }
        } else if (sd->snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL) {
            ret = plan_external_disk(&p, sd, errp);
            if (ret < 0)
                ic_error_prepend(errp, "disk '%s'", sd->name);
        }
    }
    if (ret == 0)
        ret = plan_rewrites(&p, p.steps, errp);
    if (ret == 0) {
        json_object *s = ic_dom_step("remove");
        ic_dom_step_set(s, "name", S->name);
        ret = add_step(p.steps, s, errp);
    }
    if (ret == 0 && ic_snapmeta_current(dom->meta) == S && S->parent_name) {
        /* the store promotes the parent after unlinking the current one's
         * file: a crash in between leaves no current snapshot, and the
         * redone "remove" finds nothing to do, so promote it as a step */
        json_object *s = ic_dom_step("set-current");
        ic_dom_step_set(s, "name", S->parent_name);
        ret = add_step(p.steps, s, errp);
    }
    /* the domain leaves the overlays it was on: one document with every
     * replacement (the domain in memory changes only when the step runs) */
    ic_xml_node *work = NULL;
    for (size_t r = 0; ret == 0 && r < p.nrepl; r++) {
        int idx = ic_domain_def_disk_index(dom->def, p.repl[r].disk);
        if (idx < 0 || !ic_dom_same_file(dom->def->disks[idx].src->path, p.repl[r].from))
            continue;
        if (!work && !(work = ic_xml_tree_clone(dom->tree)))
            ret = oom(errp);
        if (ret == 0 &&
            ic_dom_tree_set_disk_source(work, p.repl[r].disk, p.repl[r].to, p.repl[r].fmt) < 0)
            ret = oom(errp);
    }
    if (ret == 0 && work) {
        char *xml = NULL;
        ret = ic_xml_tree_format(&xml, work, true, errp);
        if (ret == 0) {
            json_object *s = ic_dom_step("domain");
            ic_dom_step_set(s, "xml", xml);
            ret = add_step(p.steps, s, errp);
        }
        free(xml);
    }
    ic_xml_node_free(work);
    for (size_t i = 0; ret == 0 && i < json_object_array_length(p.tail); i++)
        ret = add_step(p.steps, json_object_get(json_object_array_get_idx(p.tail, i)), errp);
    if (ret == 0 && !(j = json_object_new_object()))
        ret = oom(errp);
    if (ret == 0) {
        json_object_object_add(j, "version", json_object_new_int(1));
        json_object_object_add(j, "op", json_object_new_string("snapshot-delete"));
        json_object_object_add(j, "snapshot", json_object_new_string(name));
        json_object_object_add(j, "phase", json_object_new_string("commit"));
        json_object_object_add(j, "next", json_object_new_int(0));
        json_object_object_add(j, "steps", json_object_get(p.steps));
        ret = ic_dom_journal_write(dom, j, errp);
    }
    if (ret == 0)
        ret = ic_dom_steps_run(dom, j, errp);
    json_object_put(j);
    dplan_free(&p);
    return ret;
}

/* Leaves first: the descendants of @name in reverse depth-first order. */
static int descendants(const char ***out, size_t *n, const ic_domain *dom, const char *name,
                       ic_error **errp)
{
    int ret = ic_domain_snapshot_list(out, n, dom, name,
                                      IC_DOMAIN_SNAPSHOT_LIST_DESCENDANTS |
                                          IC_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL,
                                      errp);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < *n / 2; i++) {
        const char *t = (*out)[i];
        (*out)[i] = (*out)[*n - 1 - i];
        (*out)[*n - 1 - i] = t;
    }
    return 0;
}

int ic_domain_snapshot_delete(ic_domain *dom, const char *name, unsigned flags, ic_error **errp)
{
    if (!dom || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_snapshot_delete: no domain or snapshot");
    if (!dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_delete: %s: the domain is opened read-only",
                            dom->name);
    const unsigned all = IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN |
                         IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY |
                         IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY;
    if (flags & ~all)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~all);
    if (!(flags & IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)) {
        int live = ic_dom_live_refuse(dom, "delete a snapshot of", errp);
        if (live < 0)
            return live;
    }
    if ((flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN) &&
        (flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and "
                            "'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' are mutually exclusive");
    if (!ic_snapmeta_lookup(dom->meta, name))
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", name);
    const char **victims = NULL;
    size_t n = 0;
    int ret = 0;
    if (flags & (IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN | IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY))
        ret = descendants(&victims, &n, dom, name, errp);
    /* names stay valid while their snapshots exist: copy them */
    char **copy = calloc(n + 1, sizeof(*copy));
    size_t k = 0;
    if (ret == 0 && !copy)
        ret = oom(errp);
    for (size_t i = 0; ret == 0 && i < n; i++)
        if (!(copy[k++] = strdup(victims[i])))
            ret = oom(errp);
    if (ret == 0 && !(flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY) &&
        !(copy[k++] = strdup(name)))
        ret = oom(errp);
    free(victims);
    for (size_t i = 0; ret == 0 && i < k; i++) {
        if (flags & IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            ret = ic_snapmeta_remove(dom->meta, copy[i], errp);
        else
            ret = delete_one(dom, copy[i], errp);
        if (ret < 0)
            ic_error_prepend(errp, "%s: snapshot '%s'", dom->name, copy[i]);
    }
    for (size_t i = 0; copy && i < k; i++)
        free(copy[i]);
    free(copy);
    return ret;
}
