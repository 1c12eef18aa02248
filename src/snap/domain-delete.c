/*
 * domain-delete.c - snapshot-delete of an offline domain: internal
 * snapshots deleted from every disk, external ones merged away, or only
 * the metadata removed (--metadata).
 *
 * Design notes
 * ------------
 * Owns: the delete sequence.  Spec: docs/domain-snapshots.md section 8.
 *
 * Invariants:
 *  1. --children / --children-only delete the descendants one snapshot at
 *     a time, leaves first, then (--children) the snapshot itself: each
 *     single delete is a complete operation of its own, so the tree is
 *     consistent between two of them.  The store re-parents children and
 *     moves the current snapshot to the parent, as libvirt does.
 *  2. A single delete refuses everything it can before the journal is
 *     written: a missing internal snapshot, an overlay imgchain did not
 *     create (never deleted), an image to be merged away that holds
 *     internal snapshots (they would go with it).
 *  3. External disk of snapshot T, frozen image F, overlay O (T's
 *     <disks>): *commit down*.  O's data is written into F (F's only
 *     reader is O, so no other image sees the change, and F's own content
 *     was T's point in time, which is what is being deleted), O's
 *     children are rebased unsafely onto F (their content is unchanged:
 *     F now reads as O did), O is unlinked and leaves the private file.
 *     Every remaining snapshot whose <domain>, <disks> or <revertDisks>
 *     names O is rewritten to name F, and so is the domain when O was its
 *     active layer.
 *  4. When F has other readers too (a branch: a revert made an overlay on
 *     it), F cannot change: *stream up* instead.  Every reader of F is
 *     rebased safely onto F's backing file (each then holds F's data
 *     itself, its content unchanged) and F is unlinked, when imgchain made
 *     F and F holds no internal snapshot and is no other snapshot's point
 *     in time; a user's F simply stays and only the metadata goes.  The
 *     records naming F as an overlay (the parent's <disks>) then name O.
 *  5. The journal is written with its commit record first and every step
 *     is idempotent: the commit is redone while O exists (resuming the
 *     engine's own journal if it left one), an unsafe rebase onto F is
 *     the same rebase twice, unlinking a missing file is done, an internal
 *     snapshot already gone is done, the snapshot rewrites are skipped
 *     once T has left the store (they precede its removal).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-ops.h"
#include "imgchain/chain-edit.h"
#include "imgchain/image.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"
#include "util/error.h"
#include "xml/xml-tree.h"

#define DELETE_FLAGS (IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN | \
                      IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY | \
                      IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static char *dir_of(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return NULL;
    char *slash = strrchr(d, '/');
    if (!slash) {
        free(d);
        return strdup(".");
    }
    slash[slash == d ? 1 : 0] = '\0';
    return d;
}

/* ---- the images that read a file ----------------------------------------- */

struct readers {
    char **dirs;
    size_t ndirs;
};

static int add_dir(struct readers *r, const char *path)
{
    char *d = dir_of(path);
    if (!d)
        return -ENOMEM;
    for (size_t i = 0; i < r->ndirs; i++)
        if (!strcmp(r->dirs[i], d)) {
            free(d);
            return 0;
        }
    char **nd = realloc(r->dirs, (r->ndirs + 1) * sizeof(*nd));
    if (!nd) {
        free(d);
        return -ENOMEM;
    }
    r->dirs = nd;
    r->dirs[r->ndirs++] = d;
    return 0;
}

static void readers_free(struct readers *r)
{
    for (size_t i = 0; i < r->ndirs; i++)
        free(r->dirs[i]);
    free(r->dirs);
}

/* The images whose backing file is @target (depth 1), in the scanned folders. */
static int direct_readers(ic_dependents **out, const struct readers *r, const char *target,
                          ic_error **errp)
{
    return ic_chain_dependents(out, target, (const char *const *)r->dirs, r->ndirs, NULL, errp);
}

/* ---- one snapshot ------------------------------------------------------------ */

struct dstep {
    const char *target;
    bool external;
    char *image;            /* internal: the image holding T; external: F */
    char *image_fmt;
    char *overlay;          /* external: O */
    char **children;        /* commit down: O's direct readers */
    size_t nchildren;
    bool stream;            /* F has several readers: stream up instead */
    bool delete_frozen;     /* stream up: F is ours and goes */
    char *backing;          /* F's backing file (stream up rebases onto it), or NULL */
    char *backing_fmt;
    char **readers;         /* F's direct readers */
    size_t nreaders;
};

struct dplan {
    ic_domain *dom;
    const ic_snapshot_def *snap;
    struct dstep *steps;
    size_t n;
    struct readers r;
};

static void plan_free(struct dplan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct dstep *s = &p->steps[i];
        free(s->image);
        free(s->image_fmt);
        free(s->overlay);
        for (size_t k = 0; k < s->nchildren; k++)
            free(s->children[k]);
        free(s->children);
        for (size_t k = 0; k < s->nreaders; k++)
            free(s->readers[k]);
        free(s->readers);
        free(s->backing);
        free(s->backing_fmt);
    }
    free(p->steps);
    readers_free(&p->r);
}

static int open_ro(ic_image **img, const char *path, const char *fmt, ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = fmt;
    oo.flags = IC_OPEN_NO_BACKING;
    return ic_image_open(img, path, &oo, errp);
}

static int snapshot_count(const char *path, const char *name, bool *has_name, ic_error **errp)
{
    ic_image *img = NULL;
    int ret = open_ro(&img, path, NULL, errp);
    if (ret < 0)
        return ret;
    ic_snapshot_info *list = NULL;
    int n = strcmp(ic_image_format(img), "qcow2") ? 0 : ic_snapshot_list(img, &list, errp);
    ic_image_close(img);
    if (n < 0)
        return n;
    if (has_name) {
        *has_name = false;
        for (int i = 0; i < n; i++)
            *has_name |= list[i].name && name && !strcmp(list[i].name, name);
    }
    ic_snapshot_list_free(list, (size_t)n);
    return n;
}

static int plan_internal(struct dplan *p, struct dstep *s, ic_error **errp)
{
    bool has = false;
    int n = snapshot_count(s->image, p->snap->name, &has, errp);
    if (n < 0)
        return n;
    if (!has)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "%s holds no internal snapshot '%s' (--metadata removes only the "
                            "metadata)", s->image, p->snap->name);
    return 0;
}

/* Whether a snapshot other than @skip has @path as a frozen image (its
 * <domain> names it as a disk source). */
static bool frozen_elsewhere(const ic_domain *dom, const char *path, const char *skip)
{
    const char **names = NULL;
    size_t n = 0;
    bool found = false;
    if (ic_snapmeta_list(&names, &n, dom->meta, NULL, true, NULL) < 0)
        return true;
    for (size_t i = 0; i < n && !found; i++) {
        if (!strcmp(names[i], skip))
            continue;
        const ic_snapshot_def *d = ic_snapmeta_lookup(dom->meta, names[i]);
        ic_domain_def *owned = NULL;
        ic_error *e = NULL;
        const ic_domain_def *sdom = d ? ic_dom_snapshot_domain(d, &owned, &e) : NULL;
        ic_error_free(e);
        for (size_t k = 0; sdom && k < sdom->ndisks && !found; k++)
            found = ic_dom_same_file(sdom->disks[k].src->path, path);
        ic_domain_def_free(owned);
    }
    free(names);
    return found;
}

/* A list of the depth-1 readers of @target in heap strings. */
static int readers_of(char ***out, size_t *n, const struct dplan *p, const char *target,
                      ic_error **errp)
{
    ic_dependents *deps = NULL;
    int ret = direct_readers(&deps, &p->r, target, errp);
    if (ret < 0)
        return ret;
    *out = calloc(deps->nb ? deps->nb : 1, sizeof(**out));
    *n = 0;
    if (!*out)
        ret = oom(errp);
    for (size_t i = 0; ret == 0 && i < deps->nb; i++)
        if (deps->list[i].depth == 1 && !((*out)[(*n)++] = strdup(deps->list[i].filename)))
            ret = oom(errp);
    ic_dependents_free(deps);
    return ret;
}

static int plan_external(struct dplan *p, struct dstep *s, const ic_snapshot_disk_def *sd,
                         ic_error **errp)
{
    ic_domain *dom = p->dom;
    if (!sd->src->path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "the snapshot records no overlay");
    if (!(s->overlay = strdup(sd->src->path)))
        return oom(errp);
    if (ic_dir_path_type(s->overlay) == IC_DIR_PATH_MISSING)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "%s: overlay missing", s->overlay);
    ic_image *img = NULL;
    int ret = open_ro(&img, s->image, NULL, errp);
    if (ret < 0)
        return ret;
    s->image_fmt = strdup(ic_image_format(img));
    /* the backing name as F records it, made absolute against F's folder */
    const char *bn = ic_image_backing_name(img), *bf = ic_image_backing_format(img);
    char *fdir = bn && bn[0] != '/' ? dir_of(s->image) : NULL;
    if (bn && fdir) {
        if (asprintf(&s->backing, "%s/%s", fdir, bn) < 0)
            s->backing = NULL;
    } else {
        s->backing = bn ? strdup(bn) : NULL;
    }
    free(fdir);
    s->backing_fmt = bf ? strdup(bf) : NULL;
    bool oom_hit = !s->image_fmt || (bn && !s->backing) || (bf && !s->backing_fmt);
    ic_image_close(img);
    if (oom_hit)
        return oom(errp);
    if ((ret = add_dir(&p->r, s->image)) < 0 || (ret = add_dir(&p->r, s->overlay)) < 0)
        return oom(errp);
    for (size_t i = 0; i < dom->def->ndisks; i++)
        if (dom->def->disks[i].src->path && add_dir(&p->r, dom->def->disks[i].src->path) < 0)
            return oom(errp);
    if ((ret = readers_of(&s->readers, &s->nreaders, p, s->image, errp)) < 0)
        return ret;
    bool alone = true;
    for (size_t i = 0; i < s->nreaders; i++)
        alone &= ic_dom_same_file(s->readers[i], s->overlay);
    if (alone) {
        /* commit down: O goes, so it must be ours and hold nothing else */
        if (!ic_domain_image_owned(dom, s->overlay))
            return ic_error_set(errp, IC_ERR_INVALID, EPERM,
                                "%s was not created by imgchain for this domain and is never "
                                "deleted (--metadata removes only the metadata)", s->overlay);
        int n = snapshot_count(s->overlay, NULL, NULL, errp);
        if (n < 0)
            return n;
        if (n > 0)
            return ic_error_set(errp, IC_ERR_INVALID, EBUSY,
                                "%s holds %d internal snapshot(s), which merging it away would "
                                "delete", s->overlay, n);
        return readers_of(&s->children, &s->nchildren, p, s->overlay, errp);
    }
    /* stream up: F has several readers (a branch); each gets F's data and
     * F goes, when it is ours; a user's F simply stays */
    s->stream = true;
    if (!ic_domain_image_owned(dom, s->image))
        return 0;
    int n = snapshot_count(s->image, NULL, NULL, errp);
    if (n < 0)
        return n;
    if (n > 0)
        return ic_error_set(errp, IC_ERR_INVALID, EBUSY,
                            "its frozen image %s holds %d internal snapshot(s), which merging "
                            "it away would delete", s->image, n);
    if (frozen_elsewhere(dom, s->image, p->snap->name))
        return ic_error_set(errp, IC_ERR_INVALID, EBUSY,
                            "its frozen image %s is the point in time of another snapshot",
                            s->image);
    s->delete_frozen = true;
    return 0;
}

static void replace_path(ic_storage_source *src, const char *from, const char *to, int *ret)
{
    if (src && src->path && ic_dom_same_file(src->path, from)) {
        char *p = strdup(to);
        if (!p) {
            *ret = -ENOMEM;
            return;
        }
        free(src->path);
        src->path = p;
    }
}

/* Rewrites, in the tree of a <domain>, the disk sources naming a removed
 * overlay; *changed tells whether any did. */
static int retarget_tree(ic_xml_node *tree, const struct dplan *p, bool *changed)
{
    ic_xml_node *devices = ic_xml_tree_child(tree, "devices");
    for (size_t i = 0; devices && i < devices->nchildren; i++) {
        ic_xml_node *d = devices->children[i];
        if (!d->name || strcmp(d->name, "disk"))
            continue;
        const char *file = ic_xml_node_attr(ic_xml_node_child(d, "source"), "file");
        for (size_t k = 0; file && k < p->n; k++) {
            const struct dstep *s = &p->steps[k];
            if (s->external && !s->stream && ic_dom_same_file(file, s->overlay)) {
                if (ic_dom_tree_set_source(d, s->image, s->image_fmt) < 0)
                    return -ENOMEM;
                *changed = true;
                break;
            }
        }
    }
    return 0;
}

/* Every other snapshot naming a removed overlay, rewritten (invariant 3). */
static int plan_rewrites(json_object *out, const struct dplan *p, ic_error **errp)
{
    const char **names = NULL;
    size_t n = 0;
    int ret = ic_snapmeta_list(&names, &n, p->dom->meta, NULL, true, errp);
    for (size_t i = 0; i < n && ret == 0; i++) {
        if (!strcmp(names[i], p->snap->name))
            continue;
        const ic_snapshot_def *d = ic_snapmeta_lookup(p->dom->meta, names[i]);
        ic_snapshot_def *copy = d ? ic_dom_def_copy(d, errp) : NULL;
        if (!copy) {
            ret = d ? -ENOMEM : 0;
            continue;
        }
        bool changed = false;
        for (size_t k = 0; k < p->n && ret == 0; k++) {
            const struct dstep *s = &p->steps[k];
            if (!s->external || (s->stream && !s->delete_frozen))
                continue;
            /* commit down: O becomes F; stream up: F's record becomes O */
            const char *from = s->stream ? s->image : s->overlay;
            const char *to = s->stream ? s->overlay : s->image;
            for (size_t m = 0; m < copy->ndisks; m++)
                if (copy->disks[m].src->path && ic_dom_same_file(copy->disks[m].src->path, from)) {
                    replace_path(copy->disks[m].src, from, to, &ret);
                    changed = true;
                }
            for (size_t m = 0; m < copy->nrevert_disks; m++)
                if (copy->revert_disks[m].src->path &&
                    ic_dom_same_file(copy->revert_disks[m].src->path, from)) {
                    replace_path(copy->revert_disks[m].src, from, to, &ret);
                    changed = true;
                }
        }
        if (ret == 0 && copy->domain)
            ret = retarget_tree(copy->domain, p, &changed);
        char *xml = NULL;
        if (ret == 0 && changed &&
            (ret = ic_snapshot_def_format(&xml, copy, IC_SNAPSHOT_FORMAT_SECURE, errp)) == 0) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(names[i]));
            json_object_object_add(o, "xml", json_object_new_string(xml));
            json_object_array_add(out, o);
        }
        free(xml);
        ic_snapshot_def_free(copy);
    }
    free(names);
    if (ret == -ENOMEM)
        ret = oom(errp);
    return ret;
}

static json_object *journal_new(const struct dplan *p)
{
    json_object *j = json_object_new_object();
    json_object *steps = json_object_new_array();
    if (!j || !steps) {
        json_object_put(j);
        json_object_put(steps);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct dstep *s = &p->steps[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "disk", json_object_new_string(s->target));
        json_object_object_add(o, "kind", json_object_new_string(s->external ? "external"
                                                                              : "internal"));
        json_object_object_add(o, "image", json_object_new_string(s->image));
        if (s->external) {
            json_object *kids = json_object_new_array(), *readers = json_object_new_array();
            json_object_object_add(o, "mode", json_object_new_string(s->stream ? "stream"
                                                                                : "commit"));
            json_object_object_add(o, "image_format", json_object_new_string(s->image_fmt));
            json_object_object_add(o, "overlay", json_object_new_string(s->overlay));
            for (size_t k = 0; k < s->nchildren; k++)
                json_object_array_add(kids, json_object_new_string(s->children[k]));
            json_object_object_add(o, "children", kids);
            for (size_t k = 0; k < s->nreaders; k++)
                json_object_array_add(readers, json_object_new_string(s->readers[k]));
            json_object_object_add(o, "readers", readers);
            json_object_object_add(o, "delete_frozen", json_object_new_boolean(s->delete_frozen));
            if (s->backing) {
                json_object_object_add(o, "backing", json_object_new_string(s->backing));
                json_object_object_add(o, "backing_format",
                                       json_object_new_string(s->backing_fmt ? s->backing_fmt
                                                                             : "raw"));
            }
        }
        json_object_array_add(steps, o);
    }
    json_object_object_add(j, "version", json_object_new_int(1));
    json_object_object_add(j, "op", json_object_new_string("snapshot-delete"));
    json_object_object_add(j, "snapshot", json_object_new_string(p->snap->name));
    json_object_object_add(j, "phase", json_object_new_string("commit"));
    json_object_object_add(j, "steps", steps);
    json_object_object_add(j, "was_current",
                           json_object_new_boolean(ic_snapmeta_current(p->dom->meta) == p->snap));
    if (p->snap->parent_name)
        json_object_object_add(j, "parent", json_object_new_string(p->snap->parent_name));
    return j;
}

/* ---- the steps (idempotent: invariant 4) ------------------------------------ */

static int delete_internal(const char *image, const char *name, ic_error **errp)
{
    bool has = false;
    int n = snapshot_count(image, name, &has, errp);
    if (n < 0 || !has)
        return n < 0 ? n : 0;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = "qcow2";
    oo.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, image, &oo, errp);
    if (ret == 0)
        ret = ic_snapshot_delete(img, name, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set_errno(errp, cret, "%s: flush", image);
    return ret;
}

static int commit_down(ic_domain *dom, json_object *s, ic_error **errp)
{
    const char *f = ic_dom_jstr(s, "image"), *ffmt = ic_dom_jstr(s, "image_format");
    const char *o = ic_dom_jstr(s, "overlay");
    json_object *kids = NULL;
    if (!f || !ffmt || !o || !json_object_object_get_ex(s, "children", &kids))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    int ret = 0;
    if (ic_dir_path_type(o) != IC_DIR_PATH_MISSING) {
        ic_commit_options co = IC_COMMIT_OPTIONS_INIT;
        co.drop = true;
        co.no_dependents_scan = true;
        char *engine_journal = NULL;
        if (asprintf(&engine_journal, "%s.imgchain-journal", o) < 0)
            return oom(errp);
        co.resume = ic_dir_path_type(engine_journal) != IC_DIR_PATH_MISSING;
        free(engine_journal);
        ret = ic_chain_commit(o, &co, errp);
    }
    for (size_t k = 0; k < json_object_array_length(kids) && ret == 0; k++) {
        const char *c = json_object_get_string(json_object_array_get_idx(kids, k));
        if (!c || ic_dir_path_type(c) == IC_DIR_PATH_MISSING)
            continue;
        ic_rebase_options ro = IC_REBASE_OPTIONS_INIT;
        ro.unsafe = true;
        ro.backing = f;
        ro.backing_format = ffmt;
        ret = ic_chain_rebase(c, &ro, errp);
    }
    if (ret == 0 && ic_dir_path_type(o) != IC_DIR_PATH_MISSING)
        ret = ic_dir_unlink(o, errp);
    if (ret == 0)
        ic_dom_priv_remove_image(dom, o);
    return ret;
}

/* Stream up: every reader of F rebased safely onto F's backing (each
 * then holds F's data itself), then F unlinked when it is ours. */
static int stream_up(ic_domain *dom, json_object *s, ic_error **errp)
{
    const char *f = ic_dom_jstr(s, "image");
    json_object *readers = NULL;
    if (!f || !json_object_object_get_ex(s, "readers", &readers))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    if (!ic_dom_jbool(s, "delete_frozen"))
        return 0;
    int ret = 0;
    for (size_t k = 0; k < json_object_array_length(readers) && ret == 0; k++) {
        const char *c = json_object_get_string(json_object_array_get_idx(readers, k));
        if (!c || ic_dir_path_type(c) == IC_DIR_PATH_MISSING)
            continue;
        ic_rebase_options ro = IC_REBASE_OPTIONS_INIT;
        ro.backing = ic_dom_jstr(s, "backing");
        ro.backing_format = ic_dom_jstr(s, "backing_format");
        char *engine_journal = NULL;
        if (asprintf(&engine_journal, "%s.imgchain-journal", c) < 0)
            return oom(errp);
        ro.resume = ic_dir_path_type(engine_journal) != IC_DIR_PATH_MISSING;
        free(engine_journal);
        ret = ic_chain_rebase(c, &ro, errp);
    }
    if (ret == 0 && ic_dir_path_type(f) != IC_DIR_PATH_MISSING)
        ret = ic_dir_unlink(f, errp);
    if (ret == 0)
        ic_dom_priv_remove_image(dom, f);
    return ret;
}

int ic_dom_delete_finish(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *name = ic_dom_jstr(j, "snapshot");
    const char *domain_xml = ic_dom_jstr(j, "domain_xml");
    json_object *steps = NULL, *rewrites = NULL;
    if (!name || !json_object_object_get_ex(j, "steps", &steps) ||
        !json_object_object_get_ex(j, "rewrites", &rewrites))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    int ret = 0;
    bool any_external = false;
    for (size_t k = 0; k < json_object_array_length(steps) && ret == 0; k++) {
        json_object *s = json_object_array_get_idx(steps, k);
        const char *kind = ic_dom_jstr(s, "kind"), *image = ic_dom_jstr(s, "image");
        if (!kind || !image)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                                dom->journal_path);
        if (!strcmp(kind, "internal")) {
            ret = delete_internal(image, name, errp);
        } else {
            const char *mode = ic_dom_jstr(s, "mode");
            ret = mode && !strcmp(mode, "stream") ? stream_up(dom, s, errp)
                                                   : commit_down(dom, s, errp);
            any_external = true;
        }
        if (ret < 0)
            ic_error_prepend(errp, "disk '%s'", ic_dom_jstr(s, "disk"));
    }
    if (ret == 0 && any_external)
        ret = ic_dom_save_priv(dom, errp);
    /* the rewrites precede the removal of the snapshot (invariant 5) */
    if (ret == 0 && ic_snapmeta_lookup(dom->meta, name)) {
        for (size_t k = 0; k < json_object_array_length(rewrites) && ret == 0; k++) {
            const char *xml = ic_dom_jstr(json_object_array_get_idx(rewrites, k), "xml");
            ic_snapshot_def *def = NULL;
            if (!xml)
                return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                                    dom->journal_path);
            ret = ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE,
                                        errp);
            if (ret == 0)
                ret = ic_snapmeta_put(dom->meta, def, false, errp);
        }
        if (ret == 0)
            ret = ic_snapmeta_remove(dom->meta, name, errp);
    }
    /* the store moves current to the parent after removing the file: a
     * crash in between leaves no current snapshot, which this redoes */
    const char *parent = ic_dom_jstr(j, "parent");
    if (ret == 0 && ic_dom_jbool(j, "was_current") && !ic_snapmeta_current(dom->meta) && parent &&
        ic_snapmeta_lookup(dom->meta, parent))
        ret = ic_snapmeta_set_current(dom->meta, parent, errp);
    if (ret == 0 && domain_xml) {
        ic_xml_node *tree = NULL;
        ic_domain_def *ddef = NULL;
        ret = ic_xml_tree_parse(&tree, domain_xml, strlen(domain_xml), "domain", errp);
        if (ret == 0)
            ret = ic_domain_def_parse(&ddef, domain_xml, strlen(domain_xml), errp);
        if (ret == 0) {
            ic_xml_node_free(dom->tree);
            ic_domain_def_free(dom->def);
            dom->tree = tree;
            dom->def = ddef;
            ret = ic_dom_save_xml(dom, errp);
        } else {
            ic_xml_node_free(tree);
        }
    }
    if (ret == 0)
        ret = ic_dom_journal_remove(dom, errp);
    return ret;
}

/* Deletes one snapshot with its images (not its descendants). */
static int delete_one(ic_domain *dom, const char *name, ic_error **errp)
{
    const ic_snapshot_def *snap = ic_snapmeta_lookup(dom->meta, name);
    if (!snap)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching name "
                            "'%s'", name);
    ic_domain_def *owned = NULL;
    const ic_domain_def *sdom = ic_dom_snapshot_domain(snap, &owned, errp);
    if (!sdom)
        return -ENOTSUP;
    struct dplan p = { .dom = dom, .snap = snap };
    json_object *j = NULL;
    int ret = 0;
    if (!(p.steps = calloc(snap->ndisks ? snap->ndisks : 1, sizeof(*p.steps)))) {
        ret = oom(errp);
        goto out;
    }
    for (size_t i = 0; i < snap->ndisks && ret == 0; i++) {
        const ic_snapshot_disk_def *sd = &snap->disks[i];
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
            sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
            continue;
        const ic_domain_disk_def *then = ic_dom_find_disk(sdom, sd->name);
        struct dstep *s = &p.steps[p.n++];
        s->target = sd->name;
        s->external = sd->snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL;
        if (!then || !then->src->path)
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "the domain stored in the snapshot has no source for it");
        else if (!(s->image = strdup(then->src->path)))
            ret = oom(errp);
        else
            ret = s->external ? plan_external(&p, s, sd, errp) : plan_internal(&p, s, errp);
        if (ret < 0)
            ic_error_prepend(errp, "cannot delete snapshot '%s': disk '%s'", name, sd->name);
    }
    if (ret < 0)
        goto out;
    if (!(j = journal_new(&p))) {
        ret = oom(errp);
        goto out;
    }
    json_object *rewrites = json_object_new_array();
    json_object_object_add(j, "rewrites", rewrites);
    if ((ret = plan_rewrites(rewrites, &p, errp)) < 0)
        goto out;
    ic_xml_node *tree = ic_xml_tree_clone(dom->tree);
    bool changed = false;
    if (!tree || retarget_tree(tree, &p, &changed) < 0) {
        ic_xml_node_free(tree);
        ret = oom(errp);
        goto out;
    }
    if (changed) {
        char *xml = NULL;
        ret = ic_xml_tree_format(&xml, tree, true, errp);
        if (ret == 0)
            json_object_object_add(j, "domain_xml", json_object_new_string(xml));
        free(xml);
    }
    ic_xml_node_free(tree);
    if (ret < 0)
        goto out;
    /* the point of no return (invariant 5) */
    if ((ret = ic_dom_journal_write(dom, j, errp)) < 0)
        goto out;
    ret = ic_dom_delete_finish(dom, j, errp);
out:
    json_object_put(j);
    plan_free(&p);
    ic_domain_def_free(owned);
    return ret;
}

int ic_domain_snapshot_delete(ic_domain *dom, const char *name, unsigned flags,
                              ic_error **errp)
{
    if (!dom || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_snapshot_delete: no domain or snapshot name");
    if (!dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_delete: %s: the domain is opened read-only",
                            dom->name);
    if (flags & ~DELETE_FLAGS)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~DELETE_FLAGS);
    if ((flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN) &&
        (flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and "
                            "'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' are mutually exclusive");
    if (!ic_snapmeta_lookup(dom->meta, name))
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "%s: Domain snapshot not found: no domain snapshot with matching "
                            "name '%s'", dom->name, name);
    /* the names change under the store: keep copies (invariant 1) */
    const char **kids = NULL;
    size_t nk = 0;
    bool subtree = flags & (IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN |
                            IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY);
    int ret = subtree ? ic_dom_descendants(&kids, &nk, dom, name, true, errp) : 0;
    if (ret < 0)
        return ret;
    size_t total = nk + !(flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY);
    char **order = calloc(total ? total : 1, sizeof(*order));
    size_t n = 0;
    for (size_t i = 0; order && i < nk; i++)
        if ((order[n] = strdup(kids[i])))
            n++;
    if (order && !(flags & IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY) && (order[n] = strdup(name)))
        n++;
    free(kids);
    if (!order || n != total)
        ret = oom(errp);
    for (size_t i = 0; i < n && ret == 0; i++) {
        if (flags & IC_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            ret = ic_snapmeta_remove(dom->meta, order[i], errp);
        else
            ret = delete_one(dom, order[i], errp);
    }
    for (size_t i = 0; i < n; i++)
        free(order[i]);
    free(order);
    if (ret < 0)
        ic_error_prepend(errp, "%s", dom->name);
    return ret;
}
