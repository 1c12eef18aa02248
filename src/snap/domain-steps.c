/*
 * domain-steps.c - the steps of a journalled revert or delete, and the
 * executor that runs them from the journal.
 *
 * Design notes
 * ------------
 * Owns: the step vocabulary of D.journal after its commit record
 * (docs/domain-lifecycle.md section 5).  A revert or delete plans every
 * step, writes them into the journal with "next": 0, then runs them; after
 * each step that copies data or applies a snapshot (commit, rebase,
 * internal-apply) the journal is rewritten with the next index.  Recovery runs the same executor from the recorded
 * index.
 *
 * Invariants:
 *  1. Every step is idempotent: running it again after it completed (a
 *     crash between the step and its progress mark) changes nothing more.
 *     commit re-copies the same data (its own engine journal is resumed
 *     when present); a rebase whose image already names the new backing
 *     is skipped; internal delete skips an absent snapshot; apply re-applies
 *     the same snapshot; unlink skips a missing file; the metadata steps
 *     write whole final documents.
 *  2. Steps only ever run after the plan proved them allowed (the used-
 *     image rule is checked by the planner, not here): this file does
 *     what the journal says.
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

static int bad_step(ic_domain *dom, size_t k, ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: step %zu is incomplete",
                        dom->journal_path, k);
}

static bool engine_journal(const char *image)
{
    char *p = NULL;
    if (asprintf(&p, "%s.imgchain-journal", image) < 0)
        return false;
    bool r = ic_dir_path_type(p) != IC_DIR_PATH_MISSING;
    free(p);
    return r;
}

static int open_rw(const ic_domain *dom, ic_image **img, const char *path, ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_RDWR;
    oo.open_file = dom->open_file;
    oo.payload = dom->open_payload;
    return ic_image_open(img, path, &oo, errp);
}

static int step_internal(const ic_domain *dom, const char *image, const char *name, bool apply,
                         ic_error **errp)
{
    ic_image *img = NULL;
    int ret = open_rw(dom, &img, image, errp);
    if (ret < 0)
        return ret;
    ic_snapshot_info *v = NULL;
    int n = ic_snapshot_list(img, &v, errp);
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= v[i].name && !strcmp(v[i].name, name);
    if (n >= 0)
        ic_snapshot_list_free(v, (size_t)n);
    if (n < 0)
        ret = n;
    else if (apply && !found)
        ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "%s: no internal snapshot '%s'",
                           image, name);
    else if (found)
        ret = apply ? ic_snapshot_apply(img, name, errp) : ic_snapshot_delete(img, name, errp);
    int cret = ic_image_close(img);
    if (ret == 0 && cret < 0)
        ret = ic_error_set_errno(errp, cret, "%s: flush", image);
    return ret;
}

static int step_rebase(const ic_domain *dom, const char *image, const char *backing,
                       const char *bfmt, bool unsafe, ic_error **errp)
{
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.flags = IC_OPEN_NO_BACKING | IC_OPEN_FORCE_SHARE;
    bool resume = engine_journal(image);
    if (!resume && ic_image_open(&img, image, &oo, NULL) == 0) {
        const char *cur = ic_image_backing_name(img);
        bool done = cur && !strcmp(cur, backing);
        ic_image_close(img);
        if (done)
            return 0;
    }
    ic_rebase_options ro = IC_REBASE_OPTIONS_INIT;
    ro.backing = backing;
    ro.backing_format = bfmt;
    ro.unsafe = unsafe;
    ro.resume = resume;
    ro.open_file = dom->open_file;
    ro.payload = dom->open_payload;
    return ic_chain_rebase(image, &ro, errp);
}

static int step_commit(const ic_domain *dom, const char *top, const char *base, ic_error **errp)
{
    ic_commit_options co = IC_COMMIT_OPTIONS_INIT;
    co.open_file = dom->open_file;
    co.payload = dom->open_payload;
    co.base = base;
    co.drop = true;
    co.no_dependents_scan = true;
    co.resume = engine_journal(top);
    return ic_chain_commit(top, &co, errp);
}

static int step_put(ic_domain *dom, const char *xml, bool current, ic_error **errp)
{
    ic_snapshot_def *def = NULL;
    int ret = ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, errp);
    if (ret < 0)
        return ret;
    /* a snapshot the step keeps current stays current (the store keeps it) */
    return ic_snapmeta_put(dom->meta, def, current, errp);
}

static int step_domain(ic_domain *dom, const char *xml, ic_error **errp)
{
    ic_xml_node *tree = NULL;
    int ret = ic_xml_tree_parse(&tree, xml, strlen(xml), "domain", errp);
    if (ret == 0)
        ret = ic_dom_replace_tree(dom, tree, errp);
    if (ret == 0)
        ret = ic_dom_save_xml(dom, errp);
    return ret;
}

static int step_drop_image(ic_domain *dom, const char *path, ic_error **errp)
{
    json_object *images = NULL;
    json_object_object_get_ex(dom->priv, "images", &images);
    size_t n = images ? json_object_array_length(images) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = ic_dom_jstr(json_object_array_get_idx(images, i), "path");
        if (p && !strcmp(p, path)) {
            json_object_array_del_idx(images, i, 1);
            return ic_dom_save_priv(dom, errp);
        }
    }
    return 0;
}

static int run_one(ic_domain *dom, json_object *s, size_t k, ic_error **errp)
{
    const char *op = ic_dom_jstr(s, "do");
    if (!op)
        return bad_step(dom, k, errp);
#define NEED(var, key)                       \
    const char *var = ic_dom_jstr(s, key);   \
    if (!var)                                \
        return bad_step(dom, k, errp)
    if (!strcmp(op, "commit")) {
        NEED(top, "top");
        NEED(base, "base");
        return step_commit(dom, top, base, errp);
    }
    if (!strcmp(op, "rebase")) {
        NEED(image, "image");
        NEED(backing, "backing");
        NEED(bfmt, "backing_format");
        return step_rebase(dom, image, backing, bfmt, ic_dom_jbool(s, "unsafe"), errp);
    }
    if (!strcmp(op, "internal-delete") || !strcmp(op, "internal-apply")) {
        NEED(image, "image");
        NEED(name, "name");
        return step_internal(dom, image, name, !strcmp(op, "internal-apply"), errp);
    }
    if (!strcmp(op, "unlink")) {
        NEED(path, "path");
        if (ic_dir_path_type(path) == IC_DIR_PATH_MISSING)
            return 0;
        return ic_dir_unlink(path, errp);
    }
    if (!strcmp(op, "put")) {
        NEED(xml, "xml");
        return step_put(dom, xml, ic_dom_jbool(s, "current"), errp);
    }
    if (!strcmp(op, "remove")) {
        NEED(name, "name");
        if (!ic_snapmeta_lookup(dom->meta, name))
            return 0;
        return ic_snapmeta_remove(dom->meta, name, errp);
    }
    if (!strcmp(op, "set-current")) {
        NEED(name, "name");
        return ic_snapmeta_set_current(dom->meta, name, errp);
    }
    if (!strcmp(op, "domain")) {
        NEED(xml, "xml");
        return step_domain(dom, xml, errp);
    }
    if (!strcmp(op, "add-image")) {
        NEED(path, "path");
        NEED(disk, "disk");
        NEED(role, "role");
        int ret = ic_dom_priv_add_image(dom, path, ic_dom_jstr(s, "snapshot"), disk, role, errp);
        return ret < 0 ? ret : ic_dom_save_priv(dom, errp);
    }
    if (!strcmp(op, "drop-image")) {
        NEED(path, "path");
        return step_drop_image(dom, path, errp);
    }
#undef NEED
    return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: step %zu: unknown action '%s'",
                        dom->journal_path, k, op);
}

int ic_dom_steps_run(ic_domain *dom, json_object *j, ic_error **errp)
{
    json_object *steps = NULL, *next = NULL;
    if (!json_object_object_get_ex(j, "steps", &steps) ||
        !json_object_is_type(steps, json_type_array))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: no steps", dom->journal_path);
    size_t k = 0;
    if (json_object_object_get_ex(j, "next", &next))
        k = (size_t)json_object_get_int64(next);
    size_t n = json_object_array_length(steps);
    for (; k < n; k++) {
        json_object *step = json_object_array_get_idx(steps, k);
        int ret = run_one(dom, step, k, errp);
        if (ret < 0)
            return ret;
        /* progress is recorded after the steps that copy data or apply a
         * snapshot: every step is idempotent (invariant 1), so recovery may
         * redo the others, and each mark costs two fsyncs; an apply is
         * marked so that a redo never discards writes made after it */
        const char *op = ic_dom_jstr(step, "do");
        bool costly = op && (!strcmp(op, "commit") || !strcmp(op, "rebase") ||
                             !strcmp(op, "internal-apply"));
        json_object_object_add(j, "next", json_object_new_int64((int64_t)k + 1));
        if (costly && k + 1 < n && (ret = ic_dom_journal_write(dom, j, errp)) < 0)
            return ret;
    }
    return ic_dom_journal_remove(dom, errp);
}

json_object *ic_dom_step(const char *op)
{
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, "do", json_object_new_string(op));
    return o;
}

void ic_dom_step_set(json_object *step, const char *key, const char *value)
{
    json_object_object_add(step, key, value ? json_object_new_string(value) : NULL);
}
