/*
 * domain-create.c - snapshot-create over every disk of a domain.
 *
 * Design notes
 * ------------
 * Owns: the sequence of a domain snapshot: parse, align, plan, journal,
 * per-disk work, commit, metadata.  Spec: docs/domain-lifecycle.md
 * section 6; libvirt's rules (flags, alignment, messages) are those of
 * virDomainSnapshotCreateXML for an inactive domain.
 *
 * Invariants:
 *  1. Everything that can be refused is refused before the journal is
 *     written: flags, document, alignment, and per disk the image (format,
 *     lock, an existing snapshot of the same name) and the overlay file
 *     (exists and not empty, reuse whose backing is not the disk's image).
 *  2. Images changed by the operation stay open (and locked) from their
 *     check to the end, so nothing can slip in between plan and work.
 *  3. Until the commit record, every step done can be undone: an overlay
 *     we created is unlinked (an empty file we formatted is emptied
 *     again), an internal snapshot is deleted (the plan refused a name
 *     already present, so one found there is ours).  The undo runs in
 *     reverse order, and again from the journal after a crash.
 *  4. After the commit record only idempotent metadata writes remain
 *     (ic_dom_create_finish), redone from the journal after a crash.  A
 *     failed write of the commit record itself undoes nothing: the rename
 *     may have reached the disk, so the journal file decides (recovery).
 *  5. One snapshot is internal on all its selected disks or external on
 *     all of them (libvirt's rule); a tree may mix both.
 *  6. A new qcow2 overlay gets an enabled, empty persistent bitmap of the
 *     same name and granularity for every enabled, consistent bitmap of
 *     the image it freezes (libvirt does the same), so an incremental
 *     backup that tracks the disk goes on in the overlay, where the writes
 *     now land.  Disabled and in-use bitmaps stay behind, unchanged: the
 *     frozen image is only read.  Adding them is part of the overlay's
 *     step, so a failure undoes the overlay like any other.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-internal.h"
#include "imgchain/bitmap.h"
#include "imgchain/image.h"
#include "imgchain/snapshot.h"
#include "io/io-dir.h"
#include "io/io.h"
#include "util/error.h"

struct step {
    const char *target;
    bool external;
    char *image;          /* the disk's active layer (absolute) */
    const char *image_fmt;
    const char *file;     /* external: the overlay (absolute) */
    const char *fmt;      /* external: the overlay's format */
    bool create;          /* external: the file did not exist: we create it */
    bool emptied;         /* external: it existed empty: we format it */
    bool reuse;           /* external: --reuse-external, the user's file */
    bool made;            /* external: this process created the file */
    ic_image *img;        /* internal: the active layer, open read-write */
    char *img_fmt_buf;
    bool done;
};

struct plan {
    ic_domain *dom;
    ic_snapshot_def *def;
    unsigned flags;
    struct step *steps;
    size_t n;
};

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        ic_image_close(p->steps[i].img);
        free(p->steps[i].image);
        free(p->steps[i].img_fmt_buf);
    }
    free(p->steps);
    ic_snapshot_def_free(p->def);
}

static const char *flag_name(unsigned f)
{
    switch (f) {
    case IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE: return "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE";
    case IC_DOMAIN_SNAPSHOT_CREATE_CURRENT: return "VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT";
    case IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA: return "VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA";
    case IC_DOMAIN_SNAPSHOT_CREATE_HALT: return "VIR_DOMAIN_SNAPSHOT_CREATE_HALT";
    case IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY: return "VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY";
    case IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE: return "VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE";
    default: return "?";
    }
}

/* libvirt's public-API flag rules (VIR_EXCLUSIVE_FLAGS_RET, VIR_REQUIRE_FLAG_RET). */
static int check_flags(unsigned flags, ic_error **errp)
{
    const unsigned all = 0x3ffu;
    if (flags & ~all)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~all);
    static const unsigned excl[][2] = {
        { IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE, IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA },
        { IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE, IC_DOMAIN_SNAPSHOT_CREATE_HALT },
    };
    for (size_t i = 0; i < sizeof(excl) / sizeof(excl[0]); i++)
        if ((flags & excl[i][0]) && (flags & excl[i][1]))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "Flags '%s' and '%s' are mutually exclusive",
                                flag_name(excl[i][0]), flag_name(excl[i][1]));
    if ((flags & IC_DOMAIN_SNAPSHOT_CREATE_CURRENT) && !(flags & IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Flag '%s' is required by flag '%s'",
                            flag_name(IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE),
                            flag_name(IC_DOMAIN_SNAPSHOT_CREATE_CURRENT));
    if ((flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE) && !(flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Flag '%s' is required by flag '%s'",
                            flag_name(IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY),
                            flag_name(IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE));
    if (flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "quiesce requires a running domain with a guest agent: "
                            "imgchain snapshots offline domains");
    if (flags & IC_DOMAIN_SNAPSHOT_CREATE_LIVE)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "live snapshot creation is supported only during full system "
                            "snapshots of a running domain");
    return 0;
}

static bool is_online_state(ic_snapshot_state s)
{
    return s == IC_SNAPSHOT_STATE_RUNNING || s == IC_SNAPSHOT_STATE_BLOCKED ||
           s == IC_SNAPSHOT_STATE_PAUSED || s == IC_SNAPSHOT_STATE_PMSUSPENDED;
}

static bool is_disk_only(const ic_snapshot_def *def)
{
    return def->state == IC_SNAPSHOT_STATE_DISK_SNAPSHOT;
}

/* ---- redefine ------------------------------------------------------------ */

static int redefine(ic_domain *dom, ic_snapshot_def *def, unsigned flags, char **name_out,
                    ic_error **errp)
{
    const char *uuid = ic_domain_uuid(dom);
    if (!def->domain && !def->domain_uuid && !ic_snapmeta_lookup(dom->meta, def->name)) {
        ic_snapshot_def_free(def);
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing domain in snapshot");
    }
    if (def->domain_uuid && uuid && strcasecmp(def->domain_uuid, uuid)) {
        int ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "definition for snapshot %s must use uuid %s", def->name, uuid);
        ic_snapshot_def_free(def);
        return ret;
    }
    if ((flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY) && !is_disk_only(def)) {
        int ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "disk-only flag for snapshot %s requires disk-snapshot state",
                               def->name);
        ic_snapshot_def_free(def);
        return ret;
    }
    const ic_snapshot_def *old = ic_snapmeta_lookup(dom->meta, def->name);
    if (old) {
        const char *why = NULL;
        if (is_online_state(old->state) != is_online_state(def->state))
            why = "online and offline snapshot state";
        else if (is_disk_only(old) != is_disk_only(def))
            why = "disk only and full system";
        if (why) {
            int ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                   "cannot change between %s in snapshot %s", why, def->name);
            ic_snapshot_def_free(def);
            return ret;
        }
    }
    if (def->dom) {
        ic_snapshot_align_options ao = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
        ao.default_mode = (def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL || is_disk_only(def))
                              ? IC_SNAPSHOT_LOCATION_EXTERNAL
                              : IC_SNAPSHOT_LOCATION_INTERNAL;
        ao.path_kind = ic_snapmeta_path_kind;
        int ret = ic_snapshot_def_align_disks(def, NULL, &ao, errp);
        if (ret < 0) {
            ic_snapshot_def_free(def);
            return ret;
        }
    }
    char *name = name_out ? strdup(def->name) : NULL;
    if (name_out && !name) {
        ic_snapshot_def_free(def);
        return oom(errp);
    }
    int ret = ic_snapmeta_put(dom->meta, def, flags & IC_DOMAIN_SNAPSHOT_CREATE_CURRENT, errp);
    if (ret < 0) {
        free(name);
        return ret;
    }
    if (name_out)
        *name_out = name;
    return 0;
}

/* ---- planning ------------------------------------------------------------ */

/* The domain's path when absolute (recorded as the backing name as the
 * domain spells it), else resolved. */
static char *absolute(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char *r = realpath(path, NULL);
    return r ? r : strdup(path);
}

/* The format of @path as the engine opens it (the domain's driver type
 * when it names one). */
static int probe_image(char **fmt_out, const char *path, const ic_storage_source *src,
                       ic_error **errp)
{
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = src->format ? ic_disk_format_name(src->format) : NULL;
    oo.flags = IC_OPEN_NO_BACKING;
    ic_image *img = NULL;
    int ret = ic_image_open(&img, path, &oo, errp);
    if (ret < 0)
        return ret;
    *fmt_out = strdup(ic_image_format(img));
    ic_image_close(img);
    return *fmt_out ? 0 : oom(errp);
}

static int plan_internal(struct plan *p, struct step *s, const ic_domain_disk_def *dd,
                         ic_error **errp)
{
    if (dd->src->type != IC_STORAGE_FILE && dd->src->type != IC_STORAGE_BLOCK)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "internal snapshot for disk %s unsupported for storage type %s",
                            dd->target, ic_storage_type_name(dd->src->type));
    if (dd->src->format && dd->src->format != IC_DISK_FORMAT_QCOW2)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "internal snapshot for disk %s unsupported for storage type %s",
                            dd->target, ic_disk_format_name(dd->src->format));
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = dd->src->format ? "qcow2" : NULL;
    oo.flags = IC_OPEN_RDWR;
    oo.open_file = p->dom->open_file;
    oo.payload = p->dom->open_payload;
    int ret = ic_image_open(&s->img, s->image, &oo, errp);
    if (ret < 0)
        return ret;
    if (strcmp(ic_image_format(s->img), "qcow2"))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "internal snapshot for disk %s unsupported for storage type %s",
                            dd->target, ic_image_format(s->img));
    s->image_fmt = "qcow2";
    ic_snapshot_info *list = NULL;
    int n = ic_snapshot_list(s->img, &list, errp);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++)
        if (list[i].name && !strcmp(list[i].name, p->def->name))
            ret = ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                               "%s already holds an internal snapshot named '%s'", s->image,
                               p->def->name);
    ic_snapshot_list_free(list, (size_t)n);
    return ret;
}

static int plan_external(struct plan *p, struct step *s, const ic_domain_disk_def *dd,
                         ic_snapshot_disk_def *sd, ic_error **errp)
{
    if (dd->readonly)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot for readonly disk %s is not supported", dd->target);
    if (dd->src->type != IC_STORAGE_FILE && dd->src->type != IC_STORAGE_BLOCK)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot of a '%s' disk is not supported offline "
                            "(imgchain cannot open its source)",
                            ic_storage_type_name(dd->src->type));
    if (sd->src->type != IC_STORAGE_FILE)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot target of type '%s' is not supported offline: "
                            "give a file",
                            ic_storage_type_name(sd->src->type));
    if (!sd->src->format)
        sd->src->format = IC_DISK_FORMAT_QCOW2;
    if (sd->src->format != IC_DISK_FORMAT_QCOW2 && sd->src->format != IC_DISK_FORMAT_QED)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot format for disk %s is unsupported: %s",
                            dd->target, ic_disk_format_name(sd->src->format));
    s->fmt = ic_disk_format_name(sd->src->format);
    s->file = sd->src->path;
    if (!s->file || s->file[0] != '/')
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "disk snapshot image path '%s' must be absolute",
                            s->file ? s->file : "");
    int ret = probe_image(&s->img_fmt_buf, s->image, dd->src, errp);
    if (ret < 0)
        return ret;
    s->image_fmt = s->img_fmt_buf;
    bool reuse = p->flags & IC_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
    switch (ic_dir_path_type(s->file)) {
    case IC_DIR_PATH_MISSING:
        if (reuse)
            return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                                "missing existing file for disk %s: %s", dd->target, s->file);
        s->create = true;
        return 0;
    case IC_DIR_PATH_REGULAR:
        break;
    case IC_DIR_PATH_BLOCK:
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot target %s for disk %s is a block device: "
                            "not supported offline", s->file, dd->target);
    case IC_DIR_PATH_DIRECTORY:
    case IC_DIR_PATH_OTHER:
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "external snapshot target %s for disk %s is not a regular file",
                            s->file, dd->target);
    }
    ic_io *io = NULL;
    ret = ic_io_open_file(&io, s->file, IC_IO_NOLOCK, errp);
    if (ret < 0)
        return ret;
    int64_t size = ic_io_get_size(io);
    ic_io_close(io);
    if (size < 0)
        return ic_error_set_errno(errp, (int)size, "%s", s->file);
    if (!reuse) {
        if (size > 0)
            return ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                                "external snapshot file for disk %s already exists and is "
                                "not a block device: %s", dd->target, s->file);
        s->emptied = true;
        return 0;
    }
    /* --reuse-external: the user's image must already sit on the disk's image */
    s->reuse = true;
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = s->fmt;
    oo.flags = IC_OPEN_NO_BACKING;
    ret = ic_image_open(&img, s->file, &oo, errp);
    if (ret < 0)
        return ret;
    /* the recorded name, resolved against the file's folder (the chain is
     * not opened: only the link matters) */
    const char *bp = ic_image_backing_name(img);
    char *joined = NULL;
    if (bp && bp[0] != '/') {
        const char *slash = strrchr(s->file, '/');
        size_t dl = (size_t)(slash - s->file);
        if ((joined = malloc(dl + 1 + strlen(bp) + 1)))
            snprintf(joined, dl + 1 + strlen(bp) + 1, "%.*s/%s", (int)dl, s->file, bp);
    }
    char *rb = bp ? realpath(joined ? joined : bp, NULL) : NULL;
    free(joined);
    char *ri = realpath(s->image, NULL);
    if (!rb || !ri || strcmp(rb, ri))
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "reused file %s for disk %s does not have the disk's current image "
                           "%s as its backing file (it has %s)", s->file, dd->target, s->image,
                           bp ? bp : "none");
    free(rb);
    free(ri);
    ic_image_close(img);
    return ret;
}

static json_object *steps_json(const struct plan *p)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < p->n; i++) {
        const struct step *s = &p->steps[i];
        json_object *o = json_object_new_object();
        if (!o) {
            json_object_put(a);
            return NULL;
        }
        json_object_object_add(o, "disk", json_object_new_string(s->target));
        json_object_object_add(o, "kind", json_object_new_string(s->external ? "external"
                                                                             : "internal"));
        json_object_object_add(o, "image", json_object_new_string(s->image));
        if (s->external) {
            json_object_object_add(o, "file", json_object_new_string(s->file));
            json_object_object_add(o, "format", json_object_new_string(s->fmt));
            json_object_object_add(o, "backing_format", json_object_new_string(s->image_fmt));
            json_object_object_add(o, "created", json_object_new_boolean(s->create));
            json_object_object_add(o, "emptied", json_object_new_boolean(s->emptied));
            json_object_object_add(o, "reuse", json_object_new_boolean(s->reuse));
        }
        json_object_array_add(a, o);
    }
    return a;
}

/* ---- undo ------------------------------------------------------------------ */

/* Undoes an external step: the file we created goes, the empty file we
 * formatted is emptied again, a reused file is the user's. */
static int undo_external(const char *file, bool created, bool emptied, ic_error **errp)
{
    if (created) {
        if (ic_dir_path_type(file) == IC_DIR_PATH_MISSING)
            return 0;
        return ic_dir_unlink(file, errp);
    }
    if (emptied) {
        ic_io *io = NULL;
        int ret = ic_io_open_file(&io, file, IC_IO_RDWR, errp);
        if (ret < 0)
            return ret;
        ret = ic_io_truncate(io, 0);
        if (ret == 0)
            ret = ic_io_flush(io);
        ic_io_close(io);
        if (ret < 0)
            return ic_error_set_errno(errp, ret, "%s: cannot empty", file);
    }
    return 0;
}

/* Deletes internal snapshot @name from @img when it is there. */
static int undo_internal(ic_image *img, const char *name, ic_error **errp)
{
    ic_snapshot_info *list = NULL;
    int n = ic_snapshot_list(img, &list, errp);
    if (n < 0)
        return n;
    bool found = false;
    for (int i = 0; i < n; i++)
        if (list[i].name && !strcmp(list[i].name, name))
            found = true;
    ic_snapshot_list_free(list, (size_t)n);
    return found ? ic_snapshot_delete(img, name, errp) : 0;
}

int ic_dom_create_rollback(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *name = ic_dom_jstr(j, "snapshot");
    json_object *steps = NULL;
    if (!name || !json_object_object_get_ex(j, "steps", &steps) ||
        !json_object_is_type(steps, json_type_array))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    int ret = 0;
    for (size_t k = json_object_array_length(steps); k-- > 0 && ret == 0;) {
        json_object *s = json_object_array_get_idx(steps, k);
        const char *kind = ic_dom_jstr(s, "kind");
        if (kind && !strcmp(kind, "external")) {
            const char *file = ic_dom_jstr(s, "file");
            if (file)
                ret = undo_external(file, ic_dom_jbool(s, "created"), ic_dom_jbool(s, "emptied"),
                                    errp);
        } else if (kind && !strcmp(kind, "internal")) {
            const char *image = ic_dom_jstr(s, "image");
            ic_image *img = NULL;
            ic_open_options oo = IC_OPEN_OPTIONS_INIT;
            oo.format = "qcow2";
            oo.flags = IC_OPEN_RDWR;
            if (!image)
                continue;
            ret = ic_image_open(&img, image, &oo, errp);
            if (ret == 0)
                ret = undo_internal(img, name, errp);
            int cret = ic_image_close(img);
            if (ret == 0 && cret < 0)
                ret = ic_error_set_errno(errp, cret, "%s: flush", image);
        }
    }
    if (ret == 0)
        ret = ic_dom_journal_remove(dom, errp);
    return ret;
}

/* Undoes the steps done in this process, in reverse; the first undo error
 * is reported after the original error. */
static void undo_plan(struct plan *p)
{
    for (size_t k = p->n; k-- > 0;) {
        struct step *s = &p->steps[k];
        ic_error *e = NULL;
        if (s->external && (s->made || s->emptied))
            undo_external(s->file, s->made, s->emptied, &e);
        else if (!s->external && s->done && s->img)
            undo_internal(s->img, p->def->name, &e);
        ic_error_free(e);
    }
}

/* ---- finish ---------------------------------------------------------------- */

int ic_dom_create_finish(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *name = ic_dom_jstr(j, "snapshot");
    json_object *steps = NULL;
    if (!name || !json_object_object_get_ex(j, "steps", &steps))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    int ret = 0;
    if (!ic_dom_jbool(j, "no_metadata")) {
        const char *xml = ic_dom_jstr(j, "xml");
        ic_snapshot_def *def = NULL;
        if (!xml)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                                dom->journal_path);
        ret = ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, errp);
        if (ret == 0)
            ret = ic_snapmeta_put(dom->meta, def, true, errp);
        if (ret < 0)
            return ret;
    }
    bool any = false;
    for (size_t k = 0; k < json_object_array_length(steps) && ret == 0; k++) {
        json_object *s = json_object_array_get_idx(steps, k);
        const char *kind = ic_dom_jstr(s, "kind");
        if (!kind || strcmp(kind, "external"))
            continue;
        const char *file = ic_dom_jstr(s, "file");
        const char *disk = ic_dom_jstr(s, "disk");
        const char *fmt = ic_dom_jstr(s, "format");
        if (!file || !disk || !fmt)
            return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                                dom->journal_path);
        if (ic_dom_jbool(s, "created") || ic_dom_jbool(s, "emptied"))
            ret = ic_dom_priv_add_image(dom, file, name, disk, "overlay", errp);
        if (ret == 0)
            ret = ic_dom_set_disk_source(dom, disk, file, fmt, errp);
        any = true;
    }
    if (ret == 0 && any)
        ret = ic_dom_save_priv(dom, errp);
    if (ret == 0 && any)
        ret = ic_dom_save_xml(dom, errp);
    if (ret == 0)
        ret = ic_dom_journal_remove(dom, errp);
    return ret;
}

/* ---- create ---------------------------------------------------------------- */

static int check_name(const ic_domain *dom, const ic_snapshot_def *def, unsigned flags,
                      ic_error **errp)
{
    if (!(flags & IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)) {
        if (strchr(def->name, '/'))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "invalid snapshot name '%s': name can't contain '/'", def->name);
        if (def->name[0] == '.')
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "invalid snapshot name '%s': name can't start with '.'",
                                def->name);
    }
    if (ic_snapmeta_lookup(dom->meta, def->name))
        return ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "domain moment %s already exists",
                            def->name);
    return 0;
}

static int build_plan(struct plan *p, ic_error **errp)
{
    ic_domain *dom = p->dom;
    ic_snapshot_def *def = p->def;
    if (def->memory == IC_SNAPSHOT_LOCATION_INTERNAL ||
        def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "memory state cannot be saved with offline or disk-only snapshot");
    int ret = check_name(dom, def, p->flags, errp);
    if (ret < 0)
        return ret;
    ic_snapshot_align_options ao = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
    ao.default_mode = ic_snapshot_align_default_mode(
        def, p->flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, true);
    ao.uniform_internal = ao.default_mode == IC_SNAPSHOT_LOCATION_INTERNAL;
    ao.path_kind = ic_snapmeta_path_kind;
    ret = ic_snapshot_def_align_disks(def, dom->def, &ao, errp);
    if (ret < 0)
        return ret;
    size_t nint = 0, next = 0;
    for (size_t i = 0; i < def->ndisks; i++) {
        const ic_domain_disk_def *dd = &dom->def->disks[i];
        ic_snapshot_disk_def *sd = &def->disks[i];
        if (dd->transient && sd->snapshot != IC_SNAPSHOT_LOCATION_NO) {
            /* left alone: whatever alignment gave it (a default overlay
             * name) goes with the mode */
            sd->snapshot = IC_SNAPSHOT_LOCATION_NO;
            free(sd->src->path);
            sd->src->path = NULL;
            sd->src->format = IC_DISK_FORMAT_NONE;
        }
        if (sd->snapshot == IC_SNAPSHOT_LOCATION_INTERNAL)
            nint++;
        else if (sd->snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL)
            next++;
        else if (sd->snapshot == IC_SNAPSHOT_LOCATION_MANUAL)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "disk '%s': 'manual' snapshot mode needs a running domain",
                                sd->name);
    }
    if (nint && next)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "mixing internal and external targets for a snapshot is not yet "
                            "supported");
    if (!nint && !next)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            (p->flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
                                ? "disk-only snapshots require at least one disk to be "
                                  "selected for snapshot"
                                : "nothing selected for snapshot");
    p->steps = calloc(nint + next, sizeof(*p->steps));
    if (!p->steps)
        return oom(errp);
    for (size_t i = 0; i < def->ndisks; i++) {
        const ic_domain_disk_def *dd = &dom->def->disks[i];
        ic_snapshot_disk_def *sd = &def->disks[i];
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_INTERNAL &&
            sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
            continue;
        struct step *s = &p->steps[p->n++];
        s->target = dd->target;
        s->external = sd->snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL;
        if (!dd->src->path) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "disk '%s' has no source",
                               dd->target);
        } else if (!(s->image = absolute(dd->src->path))) {
            ret = oom(errp);
        } else {
            ret = s->external ? plan_external(p, s, dd, sd, errp) : plan_internal(p, s, dd, errp);
        }
        if (ret < 0) {
            ic_error_prepend(errp, "disk '%s'", dd->target);
            return ret;
        }
        for (size_t k = 0; s->external && k + 1 < p->n; k++)
            if (p->steps[k].external && !strcmp(p->steps[k].file, s->file))
                return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                    "disk '%s': external snapshot file %s is also the target "
                                    "of disk '%s'", dd->target, s->file, p->steps[k].target);
    }
    return 0;
}

/* Note 6: the overlay @s->file gets an enabled, empty bitmap for every
 * enabled, consistent bitmap of the image it freezes. */
static int carry_bitmaps(struct plan *p, struct step *s, ic_error **errp)
{
    if (strcmp(s->fmt, "qcow2") || !s->image_fmt || strcmp(s->image_fmt, "qcow2"))
        return 0;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = "qcow2";
    oo.flags = IC_OPEN_NO_BACKING;
    oo.open_file = p->dom->open_file;
    oo.payload = p->dom->open_payload;
    ic_image *frozen = NULL;
    ic_image_info *info = NULL;
    int ret = ic_image_open(&frozen, s->image, &oo, errp);
    if (ret == 0)
        ret = ic_image_get_info(frozen, &info, errp);
    ic_image_close(frozen);
    if (ret < 0)
        return ret;
    bool any = false;
    for (size_t i = 0; i < info->nb_bitmaps; i++)
        any |= info->bitmaps[i].enabled && !info->bitmaps[i].in_use;
    ic_image *ov = NULL;
    if (any) {
        oo.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING;
        ret = ic_image_open(&ov, s->file, &oo, errp);
    }
    for (size_t i = 0; any && ret == 0 && i < info->nb_bitmaps; i++) {
        const ic_bitmap_info *b = &info->bitmaps[i];
        if (b->enabled && !b->in_use)
            ret = ic_bitmap_change(ov, IC_BITMAP_ADD, b->name, b->granularity, NULL, NULL,
                                   errp);
    }
    int cret = ic_image_close(ov);
    if (ret == 0 && cret < 0)
        ret = ic_error_set_errno(errp, cret, "%s: flush", s->file);
    if (ret < 0)
        ic_error_prepend(errp, "disk %s: cannot add the persistent bitmaps of %s to %s",
                         s->target, s->image, s->file);
    ic_image_info_free(info);
    return ret;
}

static int run_step(struct plan *p, struct step *s, ic_error **errp)
{
    int ret;
    if (!s->external) {
        ret = ic_snapshot_create(s->img, p->def->name, errp);
        if (ret == 0)
            ret = ic_image_flush(s->img, errp);
        return ret;
    }
    if (s->reuse)
        return 0;
    if (s->create) {
        if ((ret = ic_dir_create_empty(s->file, IC_DOM_FILE_MODE, errp)) < 0)
            return ret;
        s->made = true;
    }
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = s->fmt;
    co.backing_file = s->image;
    co.backing_format = s->image_fmt;
    co.open_file = p->dom->open_file;
    co.payload = p->dom->open_payload;
    if ((ret = ic_image_create(s->file, &co, errp)) < 0)
        return ret;
    return carry_bitmaps(p, s, errp);
}

static json_object *journal_new(const struct plan *p, const char *phase)
{
    json_object *j = json_object_new_object();
    json_object *steps = steps_json(p);
    if (!j || !steps) {
        json_object_put(j);
        json_object_put(steps);
        return NULL;
    }
    json_object_object_add(j, "version", json_object_new_int(1));
    json_object_object_add(j, "op", json_object_new_string("snapshot-create"));
    json_object_object_add(j, "snapshot", json_object_new_string(p->def->name));
    json_object_object_add(j, "phase", json_object_new_string(phase));
    json_object_object_add(j, "no_metadata",
                           json_object_new_boolean(p->flags & IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA));
    json_object_object_add(j, "steps", steps);
    return j;
}

/* The definition stored: offline state, the domain as it is now embedded
 * (its sources still name the images being frozen), parent = current. */
static int complete_def(struct plan *p, ic_error **errp)
{
    ic_snapshot_def *def = p->def;
    ic_domain *dom = p->dom;
    def->state = IC_SNAPSHOT_STATE_SHUTOFF;
    def->memory = IC_SNAPSHOT_LOCATION_NO;
    free(def->parent_name);
    def->parent_name = NULL;
    const ic_snapshot_def *cur = ic_snapmeta_current(dom->meta);
    if (cur && !(def->parent_name = strdup(cur->name)))
        return oom(errp);
    ic_xml_node_free(def->domain);
    if (!(def->domain = ic_xml_tree_clone(dom->tree)))
        return oom(errp);
    free(def->domain_uuid);
    def->domain_uuid = NULL;
    if (dom->def->uuid && !(def->domain_uuid = strdup(dom->def->uuid)))
        return oom(errp);
    /* what the commit record will carry must load back as the store loads
     * it, or the commit could never finish: refuse it now */
    char *xml = NULL;
    ic_snapshot_def *back = NULL;
    int ret = ic_snapshot_def_format(&xml, def, IC_SNAPSHOT_FORMAT_SECURE, errp);
    if (ret == 0)
        ret = ic_snapshot_def_parse(&back, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE, errp);
    free(xml);
    ic_snapshot_def_free(back);
    return ret;
}

static int create(ic_domain *dom, ic_snapshot_def *def, unsigned flags, char **name_out,
                  ic_error **errp)
{
    struct plan p = { .dom = dom, .def = def, .flags = flags };
    json_object *j = NULL;
    int ret = build_plan(&p, errp);
    if (ret == 0)
        ret = complete_def(&p, errp);
    if (ret < 0)
        goto out;
    if (!(j = journal_new(&p, "prepare"))) {
        ret = oom(errp);
        goto out;
    }
    if ((ret = ic_dom_journal_write(dom, j, errp)) < 0)
        goto out;
    for (size_t i = 0; i < p.n; i++) {
        ret = run_step(&p, &p.steps[i], errp);
        if (ret < 0) {
            ic_error_prepend(errp, "disk '%s'", p.steps[i].target);
            undo_plan(&p);
            ic_dom_journal_remove(dom, NULL);
            goto out;
        }
        p.steps[i].done = true;
    }
    /* the point of no return: the commit record carries the definition */
    char *xml = NULL;
    if ((ret = ic_snapshot_def_format(&xml, def, IC_SNAPSHOT_FORMAT_SECURE, errp)) < 0) {
        undo_plan(&p);
        ic_dom_journal_remove(dom, NULL);
        goto out;
    }
    json_object_object_add(j, "phase", json_object_new_string("commit"));
    json_object_object_add(j, "xml", json_object_new_string(xml));
    free(xml);
    if ((ret = ic_dom_journal_write(dom, j, errp)) < 0) {
        /* the record may or may not be durable (a rename done, its fsync
         * failed): only the file on disk can say which phase holds, so the
         * next writer's recovery decides, not this process */
        ic_error_prepend(errp, "snapshot-create of '%s' interrupted at its commit record "
                         "(the next command that changes the domain finishes or rolls it "
                         "back)", def->name);
        goto out;
    }
    /* images close (flushed) before the metadata names them */
    for (size_t i = 0; i < p.n; i++) {
        int cret = ic_image_close(p.steps[i].img);
        p.steps[i].img = NULL;
        if (cret < 0 && ret == 0)
            ret = ic_error_set_errno(errp, cret, "disk '%s': %s: flush", p.steps[i].target,
                                     p.steps[i].image);
    }
    if (ret == 0)
        ret = ic_dom_create_finish(dom, j, errp);
    if (ret == 0 && name_out && !(*name_out = strdup(def->name)))
        ret = oom(errp);
out:
    json_object_put(j);
    plan_free(&p);
    return ret;
}

int ic_domain_snapshot_create(ic_domain *dom, const char *xml, size_t len, unsigned flags,
                              char **name_out, ic_error **errp)
{
    if (name_out)
        *name_out = NULL;
    if (!dom || !xml)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_snapshot_create: no domain or document");
    if (!dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_snapshot_create: %s: the domain is opened read-only",
                            dom->name);
    /* a running domain (its QMP socket answers): qemu switches the disks */
    if (!(flags & IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE)) {
        int live = ic_dom_live_check(dom, errp);
        if (live != 0)
            return live < 0 ? live
                            : ic_dom_live_snapshot_create(dom, xml, len, flags, name_out, errp);
    }
    int ret = check_flags(flags, errp);
    if (ret < 0)
        return ret;
    unsigned pf = 0;
    if (flags & IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        pf |= IC_SNAPSHOT_PARSE_REDEFINE;
    if (flags & IC_DOMAIN_SNAPSHOT_CREATE_VALIDATE)
        pf |= IC_SNAPSHOT_PARSE_VALIDATE;
    ic_snapshot_def *def = NULL;
    ret = ic_snapshot_def_parse(&def, xml, len, pf, errp);
    if (ret < 0)
        return ret;
    if (flags & IC_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        return redefine(dom, def, flags, name_out, errp);
    ret = create(dom, def, flags, name_out, errp);
    if (ret < 0)
        ic_error_prepend(errp, "%s", dom->name);
    return ret;
}
