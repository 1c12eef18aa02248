/*
 * domain-revert.c - snapshot-revert of an offline domain, every disk at
 * once: internal snapshots applied, external ones reached through a fresh
 * overlay on the snapshot's frozen images (libvirt 9.9's way).
 *
 * Design notes
 * ------------
 * Owns: the revert sequence (checks, plan, journal, per-disk steps,
 * metadata).  Spec: docs/domain-snapshots.md section 8.
 *
 * Invariants:
 *  1. Everything that can be refused is refused before the journal is
 *     written, so a refusal changes nothing: flags (--running/--paused
 *     need qemu), the snapshot (missing, no <domain>, memory state), an
 *     internal snapshot whose image an external snapshot froze since
 *     (always), the domain's ABI changing and a disk's current state that
 *     no snapshot captured (both unless --force; the message names the
 *     disk and the file whose state would be lost).
 *  2. A disk's current state is captured when an internal snapshot of its
 *     active image still is that state (ic_snapshot_differs) or when the
 *     active image is an overlay holding nothing of its own
 *     (ic_image_layer_allocated): its backing image is frozen by the
 *     snapshot that created the overlay.
 *  3. The journal is written with its commit record first: the plan
 *     carries every final document (domain, snapshot, private entries) and
 *     every step is idempotent (applying a snapshot twice gives the same
 *     image; an overlay whose name the plan reserved is made again unless
 *     it already is the empty overlay wanted).  Recovery redoes it all.
 *  4. An overlay's name is the frozen image's path minus its last suffix
 *     plus the revert time (libvirt's default external name with a fresh
 *     timestamp), the next second when that file exists.
 *  5. --discard deletes an abandoned active layer only when imgchain made
 *     it, no snapshot that stays names it, and no other image in its
 *     folder uses it as a backing file.
 *  6. Disks the snapshot left alone (snapshot='no', or absent from it)
 *     keep their current <disk> element: the revert does not move them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain-ops.h"
#include "imgchain/chain-edit.h"
#include "imgchain/image.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"
#include "util/error.h"
#include "xml/xml-tree.h"

#define REVERT_FLAGS (IC_DOMAIN_SNAPSHOT_REVERT_RUNNING | IC_DOMAIN_SNAPSHOT_REVERT_PAUSED | \
                      IC_DOMAIN_SNAPSHOT_REVERT_FORCE |                                     \
                      IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN |                           \
                      IC_DOMAIN_SNAPSHOT_REVERT_DISCARD)

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* ---- the state a disk would lose ---------------------------------------- */

/* 0: captured; 1: lost, *what says what; -errno. */
static int disk_state_lost(const char *target, const char *active, char **what,
                           ic_error **errp)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    int ret = ic_image_open(&img, active, &oo, errp);
    if (ret < 0)
        return ret;
    uint64_t diff_at = 0;
    bool had_snapshots = false;
    if (!strcmp(ic_image_format(img), "qcow2")) {
        ic_snapshot_info *list = NULL;
        int n = ic_snapshot_list(img, &list, errp);
        if (n < 0) {
            ic_image_close(img);
            return n;
        }
        had_snapshots = n > 0;
        for (int i = 0; i < n && ret == 0; i++) {
            uint64_t at = 0;
            int d = ic_snapshot_differs(img, list[i].name, &at, errp);
            if (d < 0)
                ret = d;
            else if (d == 0)
                ret = 2; /* captured */
            else if (i == n - 1)
                diff_at = at; /* the newest snapshot's difference, for the message */
        }
        ic_snapshot_list_free(list, (size_t)n);
        if (ret != 0) {
            ic_image_close(img);
            return ret == 2 ? 0 : ret;
        }
    }
    bool overlay = ic_image_backing_name(img) != NULL;
    uint64_t first = 0;
    int alloc = overlay ? ic_image_layer_allocated(img, &first, errp) : 1;
    ic_image_close(img);
    if (alloc < 0)
        return alloc;
    if (alloc == 0)
        return 0;
    int n;
    if (overlay)
        n = asprintf(what, "disk '%s': the data written to %s since it was created (from "
                           "offset %llu) was captured by no snapshot and would be lost",
                     target, active, (unsigned long long)first);
    else if (had_snapshots)
        n = asprintf(what, "disk '%s': the current state of %s differs from every snapshot "
                           "it holds (from offset %llu) and would be lost",
                     target, active, (unsigned long long)diff_at);
    else
        n = asprintf(what, "disk '%s': no snapshot captured the current state of %s, which "
                           "would be lost", target, active);
    if (n < 0) {
        *what = NULL;
        return oom(errp);
    }
    return 1;
}

/* ---- the plan --------------------------------------------------------------- */

struct rstep {
    const char *target;
    bool external;
    char *image;        /* internal: the image holding the snapshot; external: frozen */
    char *image_fmt;
    char *file;         /* external: the new overlay */
    char *old_active;   /* the disk's active layer before the revert, or NULL */
};

struct rplan {
    ic_domain *dom;
    const ic_snapshot_def *snap;
    unsigned flags;
    bool has_children;
    struct rstep *steps;
    size_t n;
    char **discard;
    size_t ndiscard;
};

static void plan_free(struct rplan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->steps[i].image);
        free(p->steps[i].image_fmt);
        free(p->steps[i].file);
        free(p->steps[i].old_active);
    }
    free(p->steps);
    for (size_t i = 0; i < p->ndiscard; i++)
        free(p->discard[i]);
    free(p->discard);
}

static char *absolute(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char *r = realpath(path, NULL);
    return r ? r : strdup(path);
}

/* "/vm/a.qcow2" -> "/vm/a.<t>" (the first free second from @t on). */
static int overlay_name(char **out, const char *frozen, const struct rplan *p, ic_error **errp)
{
    const char *slash = strrchr(frozen, '/');
    const char *dot = strrchr(slash ? slash : frozen, '.');
    size_t stem = dot && dot != slash + 1 ? (size_t)(dot - frozen) : strlen(frozen);
    long long t = (long long)time(NULL);
    for (int tries = 0; tries < 1000; tries++, t++) {
        char *name = NULL;
        if (asprintf(&name, "%.*s.%lld", (int)stem, frozen, t) < 0)
            return oom(errp);
        bool taken = ic_dir_path_type(name) != IC_DIR_PATH_MISSING;
        for (size_t k = 0; !taken && k < p->n; k++)
            taken = p->steps[k].file && !strcmp(p->steps[k].file, name);
        if (!taken) {
            *out = name;
            return 0;
        }
        free(name);
    }
    return ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "%s: no free name for a revert overlay",
                        frozen);
}

static int image_format(char **out, const char *path, ic_disk_format hint, ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = hint ? ic_disk_format_name(hint) : NULL;
    oo.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &oo, errp);
    if (ret < 0)
        return ret;
    *out = strdup(ic_image_format(img));
    ic_image_close(img);
    return *out ? 0 : oom(errp);
}

static int holds_snapshot(const char *image, const char *name, ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, image, &oo, errp);
    if (ret < 0)
        return ret;
    ic_snapshot_info *list = NULL;
    int n = ic_snapshot_list(img, &list, errp);
    ic_image_close(img);
    if (n < 0)
        return n;
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= list[i].name && !strcmp(list[i].name, name);
    ic_snapshot_list_free(list, (size_t)n);
    if (!found)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "%s holds no internal snapshot '%s'", image, name);
    return 0;
}

static int plan_disk(struct rplan *p, const ic_snapshot_disk_def *sd,
                     const ic_domain_def *sdom, char **lost, ic_error **errp)
{
    ic_domain *dom = p->dom;
    const ic_domain_disk_def *then = ic_dom_find_disk(sdom, sd->name);
    const ic_domain_disk_def *now = ic_dom_find_disk(dom->def, sd->name);
    if (!then || !then->src->path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "the domain stored in the snapshot has no source for disk '%s'",
                            sd->name);
    struct rstep *s = &p->steps[p->n++];
    s->target = sd->name;
    s->external = sd->snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL;
    if (!(s->image = absolute(then->src->path)))
        return oom(errp);
    if (now && now->src->path && !(s->old_active = absolute(now->src->path)))
        return oom(errp);
    int ret;
    if (!s->external) {
        if (s->old_active && !ic_dom_same_file(s->old_active, s->image))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "internal snapshot '%s' lives in %s, which an external "
                                "snapshot froze since (the disk now writes to %s): applying "
                                "it would change what later snapshots read",
                                p->snap->name, s->image, s->old_active);
        if ((ret = holds_snapshot(s->image, p->snap->name, errp)) < 0)
            return ret;
        if (!(s->image_fmt = strdup("qcow2")))
            return oom(errp);
    } else {
        if ((ret = image_format(&s->image_fmt, s->image, then->src->format, errp)) < 0)
            return ret;
        if ((ret = overlay_name(&s->file, s->image, p, errp)) < 0)
            return ret;
    }
    if (s->old_active && !*lost && !(p->flags & IC_DOMAIN_SNAPSHOT_REVERT_FORCE)) {
        ret = disk_state_lost(sd->name, s->old_active, lost, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The abandoned active layers --discard may delete (invariant 5). */
static int plan_discard(struct rplan *p, ic_error **errp)
{
    p->discard = calloc(p->n ? p->n : 1, sizeof(*p->discard));
    if (!p->discard)
        return oom(errp);
    for (size_t i = 0; i < p->n; i++) {
        const struct rstep *s = &p->steps[i];
        if (!s->external || !s->old_active || !ic_domain_image_owned(p->dom, s->old_active))
            continue;
        /* the snapshot's own record of this disk is replaced by the revert */
        if (ic_dom_path_in_snapshots(p->dom, s->old_active, p->snap->name))
            continue;
        /* with children, the snapshot keeps its <disks> (its overlay is
         * their frozen image); without, they are replaced */
        bool kept = false;
        for (size_t k = 0; p->has_children && k < p->snap->ndisks; k++)
            kept |= ic_dom_same_file(p->snap->disks[k].src->path, s->old_active);
        if (kept)
            continue;
        char *dir = strdup(s->old_active);
        if (!dir)
            return oom(errp);
        char *slash = strrchr(dir, '/');
        if (slash)
            slash[slash == dir ? 1 : 0] = '\0';
        const char *dirs[1] = { dir };
        ic_dependents *deps = NULL;
        ic_error *e = NULL;
        int ret = ic_chain_dependents(&deps, s->old_active, dirs, 1, NULL, &e);
        bool used = ret < 0 || deps->nb > 0;
        ic_dependents_free(deps);
        ic_error_free(e);
        free(dir);
        if (used)
            continue;
        if (!(p->discard[p->ndiscard] = strdup(s->old_active)))
            return oom(errp);
        p->ndiscard++;
    }
    return 0;
}

/* ---- the documents the revert ends with ------------------------------------ */

static const struct rstep *step_for(const struct rplan *p, const char *target)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->steps[i].target, target))
            return &p->steps[i];
    return NULL;
}

static const char *overlay_format(const ic_snapshot_def *snap, const char *target)
{
    for (size_t i = 0; i < snap->ndisks; i++)
        if (!strcmp(snap->disks[i].name, target) &&
            snap->disks[i].src->format == IC_DISK_FORMAT_QED)
            return "qed";
    return "qcow2";
}

/* The domain document after the revert (invariant 6). */
static int final_domain(char **out, const struct rplan *p, ic_error **errp)
{
    ic_xml_node *tree = ic_xml_tree_clone(p->snap->domain);
    if (!tree)
        return oom(errp);
    int ret = 0;
    ic_xml_node *devices = ic_xml_tree_child(tree, "devices");
    for (size_t i = 0; devices && i < devices->nchildren && ret == 0; i++) {
        ic_xml_node *d = devices->children[i];
        if (!d->name || strcmp(d->name, "disk"))
            continue;
        const char *dev = ic_xml_node_attr(ic_xml_node_child(d, "target"), "dev");
        if (!dev)
            continue;
        const struct rstep *s = step_for(p, dev);
        if (s && s->external) {
            ret = ic_dom_tree_set_source(d, s->file, overlay_format(p->snap, dev));
        } else if (!s) {
            ic_xml_node *cur = ic_dom_tree_disk(p->dom->tree, dev);
            ic_xml_node *copy = cur ? ic_xml_tree_clone(cur) : NULL;
            if (cur && !copy) {
                ret = -ENOMEM;
            } else if (copy) {
                ic_xml_node_free(d);
                devices->children[i] = copy;
            }
        }
    }
    if (ret < 0)
        ret = oom(errp);
    else
        ret = ic_xml_tree_format(out, tree, true, errp);
    ic_xml_node_free(tree);
    return ret;
}

/* The snapshot's definition after the revert: the new overlays in
 * <revertDisks> when it has children, else in place of <disks>. */
static int final_snapshot(char **out, const struct rplan *p, ic_error **errp)
{
    ic_snapshot_def *def = ic_dom_def_copy(p->snap, errp);
    if (!def)
        return -ENOMEM;
    int ret = 0;
    for (size_t i = 0; i < def->nrevert_disks; i++) {
        free(def->revert_disks[i].name);
        ic_storage_source_free(def->revert_disks[i].src);
    }
    free(def->revert_disks);
    def->revert_disks = NULL;
    def->nrevert_disks = 0;
    if (p->has_children) {
        def->revert_disks = calloc(p->n ? p->n : 1, sizeof(*def->revert_disks));
        if (!def->revert_disks)
            ret = -ENOMEM;
        for (size_t i = 0; i < p->n && ret == 0; i++) {
            const struct rstep *s = &p->steps[i];
            if (!s->external)
                continue;
            ic_snapshot_disk_def *rd = &def->revert_disks[def->nrevert_disks++];
            rd->snapshot = IC_SNAPSHOT_LOCATION_EXTERNAL;
            rd->name = strdup(s->target);
            rd->src = calloc(1, sizeof(*rd->src));
            if (!rd->name || !rd->src || !(rd->src->path = strdup(s->file)))
                ret = -ENOMEM;
            else {
                rd->src->type = IC_STORAGE_FILE;
                rd->src->format = !strcmp(overlay_format(p->snap, s->target), "qed")
                                      ? IC_DISK_FORMAT_QED
                                      : IC_DISK_FORMAT_QCOW2;
            }
        }
    } else {
        for (size_t i = 0; i < def->ndisks && ret == 0; i++) {
            const struct rstep *s = step_for(p, def->disks[i].name);
            if (!s || !s->external)
                continue;
            char *path = strdup(s->file);
            if (!path) {
                ret = -ENOMEM;
                break;
            }
            free(def->disks[i].src->path);
            def->disks[i].src->path = path;
        }
    }
    if (ret < 0)
        ret = oom(errp);
    else
        ret = ic_snapshot_def_format(out, def, IC_SNAPSHOT_FORMAT_SECURE, errp);
    ic_snapshot_def_free(def);
    return ret;
}

static json_object *journal_new(const struct rplan *p, const char *domain_xml,
                                const char *snap_xml)
{
    json_object *j = json_object_new_object();
    json_object *steps = json_object_new_array();
    json_object *discard = json_object_new_array();
    if (!j || !steps || !discard) {
        json_object_put(j);
        json_object_put(steps);
        json_object_put(discard);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct rstep *s = &p->steps[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "disk", json_object_new_string(s->target));
        json_object_object_add(o, "kind", json_object_new_string(s->external ? "external"
                                                                              : "internal"));
        json_object_object_add(o, "image", json_object_new_string(s->image));
        json_object_object_add(o, "image_format", json_object_new_string(s->image_fmt));
        if (s->external) {
            json_object_object_add(o, "file", json_object_new_string(s->file));
            json_object_object_add(o, "format",
                                   json_object_new_string(overlay_format(p->snap, s->target)));
        }
        json_object_array_add(steps, o);
    }
    for (size_t i = 0; i < p->ndiscard; i++)
        json_object_array_add(discard, json_object_new_string(p->discard[i]));
    json_object_object_add(j, "version", json_object_new_int(1));
    json_object_object_add(j, "op", json_object_new_string("snapshot-revert"));
    json_object_object_add(j, "snapshot", json_object_new_string(p->snap->name));
    json_object_object_add(j, "phase", json_object_new_string("commit"));
    json_object_object_add(j, "steps", steps);
    json_object_object_add(j, "discard", discard);
    json_object_object_add(j, "domain_xml", json_object_new_string(domain_xml));
    json_object_object_add(j, "snapshot_xml", json_object_new_string(snap_xml));
    return j;
}

/* ---- the steps (idempotent: invariant 3) ------------------------------------ */

static int apply_internal(const char *image, const char *name, ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = "qcow2";
    oo.flags = IC_OPEN_RDWR;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, image, &oo, errp);
    if (ret == 0)
        ret = ic_snapshot_apply(img, name, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set_errno(errp, cret, "%s: flush", image);
    return ret;
}

/* Whether @file already is the empty overlay of @frozen a revert wants. */
static bool overlay_ready(const char *file, const char *fmt, const char *frozen)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = fmt;
    oo.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    ic_error *e = NULL;
    bool ready = false;
    if (ic_image_open(&img, file, &oo, &e) == 0) {
        const char *b = ic_image_backing_name(img);
        ready = b && ic_dom_same_file(b, frozen) && ic_image_layer_allocated(img, NULL, &e) == 0;
    }
    ic_image_close(img);
    ic_error_free(e);
    return ready;
}

static int make_overlay(const char *file, const char *fmt, const char *frozen,
                        const char *frozen_fmt, ic_error **errp)
{
    if (ic_dir_path_type(file) == IC_DIR_PATH_MISSING) {
        int ret = ic_dir_create_empty(file, IC_DOM_FILE_MODE, errp);
        if (ret < 0)
            return ret;
    } else if (overlay_ready(file, fmt, frozen)) {
        return 0;
    }
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = fmt;
    co.backing_file = frozen;
    co.backing_format = frozen_fmt;
    return ic_image_create(file, &co, errp);
}

static int journal_error(ic_domain *dom, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                        dom->journal_path);
}

int ic_dom_revert_finish(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *name = ic_dom_jstr(j, "snapshot");
    const char *domain_xml = ic_dom_jstr(j, "domain_xml");
    const char *snap_xml = ic_dom_jstr(j, "snapshot_xml");
    json_object *steps = NULL, *discard = NULL;
    if (!name || !domain_xml || !snap_xml || !json_object_object_get_ex(j, "steps", &steps) ||
        !json_object_object_get_ex(j, "discard", &discard))
        return journal_error(dom, errp);
    int ret = 0;
    for (size_t k = 0; k < json_object_array_length(steps) && ret == 0; k++) {
        json_object *s = json_object_array_get_idx(steps, k);
        const char *disk = ic_dom_jstr(s, "disk"), *kind = ic_dom_jstr(s, "kind");
        const char *image = ic_dom_jstr(s, "image"), *ifmt = ic_dom_jstr(s, "image_format");
        if (!disk || !kind || !image || !ifmt)
            return journal_error(dom, errp);
        if (!strcmp(kind, "internal")) {
            ret = apply_internal(image, name, errp);
        } else {
            const char *file = ic_dom_jstr(s, "file"), *fmt = ic_dom_jstr(s, "format");
            if (!file || !fmt)
                return journal_error(dom, errp);
            ret = make_overlay(file, fmt, image, ifmt, errp);
            if (ret == 0)
                ret = ic_dom_priv_add_image(dom, file, name, disk, "revert", errp);
        }
        if (ret < 0)
            ic_error_prepend(errp, "disk '%s'", disk);
    }
    ic_snapshot_def *def = NULL;
    if (ret == 0)
        ret = ic_snapshot_def_parse(&def, snap_xml, strlen(snap_xml),
                                    IC_SNAPSHOT_PARSE_REDEFINE, errp);
    if (ret == 0)
        ret = ic_snapmeta_put(dom->meta, def, true, errp);
    if (ret == 0)
        ret = ic_dom_save_priv(dom, errp);
    ic_xml_node *tree = NULL;
    ic_domain_def *ddef = NULL;
    if (ret == 0)
        ret = ic_xml_tree_parse(&tree, domain_xml, strlen(domain_xml), "domain", errp);
    if (ret == 0)
        ret = ic_domain_def_parse(&ddef, domain_xml, strlen(domain_xml), errp);
    if (ret == 0) {
        ic_xml_node_free(dom->tree);
        ic_domain_def_free(dom->def);
        dom->tree = tree;
        dom->def = ddef;
        tree = NULL;
        ret = ic_dom_save_xml(dom, errp);
    }
    ic_xml_node_free(tree);
    for (size_t k = 0; k < json_object_array_length(discard) && ret == 0; k++) {
        const char *path = json_object_get_string(json_object_array_get_idx(discard, k));
        if (!path)
            return journal_error(dom, errp);
        if (ic_dir_path_type(path) != IC_DIR_PATH_MISSING)
            ret = ic_dir_unlink(path, errp);
        ic_dom_priv_remove_image(dom, path);
    }
    if (ret == 0 && json_object_array_length(discard))
        ret = ic_dom_save_priv(dom, errp);
    if (ret == 0)
        ret = ic_dom_journal_remove(dom, errp);
    return ret;
}

/* ---- revert ------------------------------------------------------------------ */

static int revert(ic_domain *dom, const char *name, unsigned flags, ic_error **errp)
{
    if (flags & (IC_DOMAIN_SNAPSHOT_REVERT_RUNNING | IC_DOMAIN_SNAPSHOT_REVERT_PAUSED))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "--running and --paused need a running qemu, which imgchain never "
                            "starts: the domain stays shut off");
    const ic_snapshot_def *snap = ic_snapmeta_lookup(dom->meta, name);
    if (!snap)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "Domain snapshot not found: no domain snapshot with matching name "
                            "'%s'", name);
    if (snap->memory == IC_SNAPSHOT_LOCATION_INTERNAL ||
        snap->memory == IC_SNAPSHOT_LOCATION_EXTERNAL)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "snapshot '%s' holds the memory of a running domain: reverting to "
                            "it needs a running qemu, which imgchain never starts", name);
    ic_domain_def *owned = NULL;
    const ic_domain_def *sdom = ic_dom_snapshot_domain(snap, &owned, errp);
    if (!sdom)
        return -ENOTSUP;
    struct rplan p = { .dom = dom, .snap = snap, .flags = flags };
    p.has_children = ic_domain_snapshot_num_children(dom, name, false) > 0;
    char *why = NULL, *lost = NULL, *domain_xml = NULL, *snap_xml = NULL;
    json_object *j = NULL;
    int ret = ic_domain_abi_check(snap->domain, dom->tree, &why, errp);
    if (ret < 0)
        goto out;
    if (why && !(flags & IC_DOMAIN_SNAPSHOT_REVERT_FORCE)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "revert requires force: %s", why);
        goto out;
    }
    if (!(p.steps = calloc(snap->ndisks ? snap->ndisks : 1, sizeof(*p.steps)))) {
        ret = oom(errp);
        goto out;
    }
    for (size_t i = 0; i < snap->ndisks && ret == 0; i++) {
        const ic_snapshot_disk_def *sd = &snap->disks[i];
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
            sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
            continue;
        ret = plan_disk(&p, sd, sdom, &lost, errp);
        if (ret < 0)
            ic_error_prepend(errp, "disk '%s'", sd->name);
    }
    if (ret < 0)
        goto out;
    if (lost) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "revert requires force: %s", lost);
        goto out;
    }
    if ((flags & IC_DOMAIN_SNAPSHOT_REVERT_DISCARD) && (ret = plan_discard(&p, errp)) < 0)
        goto out;
    if ((ret = final_domain(&domain_xml, &p, errp)) < 0 ||
        (ret = final_snapshot(&snap_xml, &p, errp)) < 0)
        goto out;
    if (!(j = journal_new(&p, domain_xml, snap_xml))) {
        ret = oom(errp);
        goto out;
    }
    /* the point of no return (invariant 3) */
    if ((ret = ic_dom_journal_write(dom, j, errp)) < 0)
        goto out;
    ret = ic_dom_revert_finish(dom, j, errp);
out:
    json_object_put(j);
    free(why);
    free(lost);
    free(domain_xml);
    free(snap_xml);
    plan_free(&p);
    ic_domain_def_free(owned);
    return ret;
}

int ic_domain_snapshot_revert(ic_domain *dom, const char *name, unsigned flags,
                              ic_error **errp)
{
    if (!dom || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_snapshot_revert: no domain or snapshot name");
    if (!dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_revert: %s: the domain is opened read-only",
                            dom->name);
    if (flags & ~REVERT_FLAGS)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~REVERT_FLAGS);
    char *kept = strdup(name);
    if (!kept)
        return oom(errp);
    int ret = revert(dom, kept, flags, errp);
    if (ret == 0 && (flags & IC_DOMAIN_SNAPSHOT_REVERT_DELETE_CHILDREN))
        ret = ic_domain_snapshot_delete(dom, kept, IC_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", dom->name);
    free(kept);
    return ret;
}
