/*
 * domain.c - domains in the state folder: define, undefine, list, open.
 *
 * Design notes
 * ------------
 * Owns: DIR/D.xml (the domain document), DIR/D.imgchain.json (the private
 * file) and DIR/D.lock; the snapshot files DIR/D/NAME.xml belong to the
 * store (snap-meta.c).  Spec: docs/domain-lifecycle.md sections 2-4.
 *
 * Invariants:
 *  1. Every command that changes a domain holds the writer lock of D.lock
 *     (qemu-compatible locks through src/io) from before it reads the
 *     files until after its last write; readers hold the reader lock.  So
 *     a reader never sees a half-done multi-file change unless a writer
 *     crashed, and then D.journal says so (ic_domain_pending()).
 *  2. D.xml and D.imgchain.json are replaced atomically (io-dir.c).
 *  3. The tree is the document: everything imgchain does not model (every
 *     element but the disk sources it moves) is written back as it was
 *     read.  @def is always the parse of @tree.
 *  4. The private file lists only files imgchain created; nothing else is
 *     ever deleted by the domain code.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "domain-internal.h"
#include "io/io-dir.h"
#include "io/io.h"
#include "util/error.h"

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* libvirt's virXMLEmitWarning as written above a persistent domain. */
static const char domain_warning[] =
    "<!--\n"
    "WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n"
    "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n"
    "  virsh edit %s\n"
    "or other application using the libvirt API.\n"
    "-->\n\n";

char *ic_dom_path(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

const char *ic_dom_jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

bool ic_dom_jbool(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

int ic_domain_state_dir(char **out, const char *dir, ic_error **errp)
{
    *out = NULL;
    const char *env = getenv("IMGCHAIN_STATE_DIR");
    char *p = NULL;
    if (dir && *dir) {
        p = strdup(dir);
    } else if (env && *env) {
        p = strdup(env);
    } else if (geteuid() == 0) {
        p = strdup("/var/lib/imgchain");
    } else {
        const char *xdg = getenv("XDG_STATE_HOME");
        const char *home = getenv("HOME");
        if (xdg && *xdg)
            p = ic_dom_path(xdg, "imgchain", "");
        else if (home && *home)
            p = ic_dom_path(home, ".local/state/imgchain", "");
        else
            return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                                "no state folder: give --state-dir or set IMGCHAIN_STATE_DIR");
    }
    if (!p)
        return oom(errp);
    *out = p;
    return 0;
}

static int check_domain_name(const char *name, ic_error **errp)
{
    if (!name || !*name || strchr(name, '/') || name[0] == '.' || strchr(name, '\n'))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid domain name '%s'",
                            name ? name : "");
    return 0;
}

/* ---- the lock ------------------------------------------------------------ */

static int take_lock(ic_io **out, const char *dir, const char *name, bool write,
                     ic_error **errp)
{
    *out = NULL;
    char *path = ic_dom_path(dir, name, ".lock");
    if (!path)
        return oom(errp);
    int ret = 0;
    if (write) {
        ret = ic_dir_mkdir_p(dir, IC_DOM_DIR_MODE, errp);
        if (ret == 0)
            ret = ic_io_open_file(out, path, IC_IO_RDWR | IC_IO_CREATE, errp);
    } else if (ic_dir_path_type(path) == IC_DIR_PATH_REGULAR) {
        ret = ic_io_open_file(out, path, 0, errp);
    }
    if (ret == -EBUSY) {
        if (errp && *errp) {
            ic_error_free(*errp);
            *errp = NULL;
        }
        ret = ic_error_set(errp, IC_ERR_BUSY, EBUSY, "%s: domain is locked by another process",
                           name);
    }
    free(path);
    return ret;
}

/* ---- the document --------------------------------------------------------- */

static int parse_def(ic_domain_def **out, const ic_xml_node *tree, ic_error **errp)
{
    char *xml = NULL;
    int ret = ic_xml_tree_format(&xml, tree, true, errp);
    if (ret == 0)
        ret = ic_domain_def_parse(out, xml, strlen(xml), errp);
    free(xml);
    return ret;
}

static int format_file(char **out, const ic_xml_node *tree, const char *name, ic_error **errp)
{
    char *xml = NULL;
    int ret = ic_xml_tree_format(&xml, tree, true, errp);
    if (ret < 0)
        return ret;
    size_t n = sizeof(domain_warning) + strlen(name) + strlen(xml) + 1;
    char *doc = malloc(n);
    if (!doc) {
        free(xml);
        return oom(errp);
    }
    int k = snprintf(doc, n, domain_warning, name);
    snprintf(doc + k, n - (size_t)k, "%s", xml);
    free(xml);
    *out = doc;
    return 0;
}

int ic_dom_save_xml(ic_domain *dom, ic_error **errp)
{
    char *doc = NULL;
    int ret = format_file(&doc, dom->tree, dom->name, errp);
    if (ret == 0)
        ret = ic_dir_write_atomic(dom->xml_path, doc, strlen(doc), IC_DOM_FILE_MODE, errp);
    free(doc);
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

const char *ic_dom_tree_disk_source(const ic_xml_node *tree, const char *target)
{
    const ic_xml_node *d = ic_dom_tree_disk((ic_xml_node *)(uintptr_t)tree, target);
    const ic_xml_node *src = ic_xml_node_child(d, "source");
    return src ? ic_xml_node_attr(src, "file") : NULL;
}

int ic_dom_tree_set_disk_source(ic_xml_node *tree, const char *target, const char *path,
                                const char *format)
{
    ic_xml_node *disk = ic_dom_tree_disk(tree, target);
    if (!disk)
        return -ENOENT;
    ic_xml_node *driver = ic_xml_tree_child(disk, "driver");
    bool fresh_driver = !driver;
    ic_xml_node *source = NULL;
    int ret = ic_xml_tree_set_attr(disk, "type", "file");
    if (ret == 0 && !(driver = ic_xml_tree_child_make(disk, "driver")))
        ret = -ENOMEM;
    if (ret == 0 && fresh_driver)
        ret = ic_xml_tree_set_attr(driver, "name", "qemu");
    if (ret == 0 && format)
        ret = ic_xml_tree_set_attr(driver, "type", format);
    if (ret == 0 && !(source = ic_xml_tree_child_make(disk, "source")))
        ret = -ENOMEM;
    if (ret == 0) {
        ic_xml_tree_del_attr(source, "dev");
        ic_xml_tree_del_attr(source, "protocol");
        ic_xml_tree_del_attr(source, "name");
        ret = ic_xml_tree_set_attr(source, "file", path);
    }
    ic_xml_tree_del_children(disk, "backingStore");
    return ret;
}

int ic_dom_replace_tree(ic_domain *dom, ic_xml_node *tree, ic_error **errp)
{
    ic_domain_def *def = NULL;
    int ret = parse_def(&def, tree, errp);
    if (ret < 0) {
        ic_xml_node_free(tree);
        return ret;
    }
    ic_xml_node_free(dom->tree);
    ic_domain_def_free(dom->def);
    dom->tree = tree;
    dom->def = def;
    return 0;
}

int ic_dom_set_disk_source(ic_domain *dom, const char *target, const char *path,
                           const char *format, ic_error **errp)
{
    ic_xml_node *copy = ic_xml_tree_clone(dom->tree);
    if (!copy)
        return oom(errp);
    int ret = ic_dom_tree_set_disk_source(copy, target, path, format);
    if (ret < 0) {
        ic_xml_node_free(copy);
        if (ret == -ENOENT)
            return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "domain %s has no disk '%s'",
                                dom->name, target);
        return oom(errp);
    }
    return ic_dom_replace_tree(dom, copy, errp);
}

static int new_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return 0;
}

/* Adds <uuid> right after <name>, where libvirt formats it. */
static int insert_uuid(ic_xml_node *tree, const char *uuid)
{
    ic_xml_node *u = calloc(1, sizeof(*u));
    ic_xml_node **v = realloc(tree->children, (tree->nchildren + 1) * sizeof(*v));
    if (v)
        tree->children = v;
    if (!u || !v || !(u->name = strdup("uuid")) || !(u->text = strdup(uuid))) {
        ic_xml_node_free(u);
        return -ENOMEM;
    }
    size_t at = 0;
    for (size_t i = 0; i < tree->nchildren; i++)
        if (tree->children[i]->name && !strcmp(tree->children[i]->name, "name"))
            at = i + 1;
    memmove(&v[at + 1], &v[at], (tree->nchildren - at) * sizeof(*v));
    v[at] = u;
    tree->nchildren++;
    return 0;
}

/* ---- the private file ----------------------------------------------------- */

static int load_priv(ic_domain *dom, ic_error **errp)
{
    char *text = NULL;
    size_t len = 0;
    if (ic_dir_path_type(dom->priv_path) == IC_DIR_PATH_MISSING) {
        dom->priv = json_object_new_object();
        if (!dom->priv)
            return oom(errp);
        json_object_object_add(dom->priv, "version", json_object_new_int(1));
        json_object_object_add(dom->priv, "images", json_object_new_array());
        json_object_object_add(dom->priv, "quiesced", json_object_new_array());
        json_object_object_add(dom->priv, "qmp", NULL);
        return 0;
    }
    int ret = ic_dir_read_file(&text, &len, dom->priv_path, IC_DOM_MAX_FILE, errp);
    if (ret < 0)
        return ret;
    dom->priv = json_tokener_parse(text);
    free(text);
    json_object *images = NULL;
    if (!dom->priv || !json_object_is_type(dom->priv, json_type_object) ||
        !json_object_object_get_ex(dom->priv, "images", &images) ||
        !json_object_is_type(images, json_type_array))
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: not an imgchain private file",
                            dom->priv_path);
    return 0;
}

int ic_dom_save_priv(ic_domain *dom, ic_error **errp)
{
    const char *s = json_object_to_json_string_ext(
        dom->priv, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                       JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return oom(errp);
    size_t n = strlen(s);
    char *doc = malloc(n + 2);
    if (!doc)
        return oom(errp);
    memcpy(doc, s, n);
    doc[n] = '\n';
    doc[n + 1] = '\0';
    int ret = ic_dir_write_atomic(dom->priv_path, doc, n + 1, IC_DOM_FILE_MODE, errp);
    free(doc);
    return ret;
}

static json_object *priv_images(const ic_domain *dom)
{
    json_object *images = NULL;
    json_object_object_get_ex(dom->priv, "images", &images);
    return images;
}

bool ic_domain_image_owned(const ic_domain *dom, const char *path)
{
    json_object *images = dom ? priv_images(dom) : NULL;
    for (size_t i = 0; path && images && i < json_object_array_length(images); i++) {
        const char *p = ic_dom_jstr(json_object_array_get_idx(images, i), "path");
        if (p && ic_dom_same_file(p, path))
            return true;
    }
    return false;
}

int ic_dom_priv_add_image(ic_domain *dom, const char *path, const char *snapshot,
                          const char *disk, const char *role, ic_error **errp)
{
    if (ic_domain_image_owned(dom, path))
        return 0;
    json_object *o = json_object_new_object();
    if (!o)
        return oom(errp);
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "snapshot", snapshot ? json_object_new_string(snapshot) : NULL);
    json_object_object_add(o, "disk", json_object_new_string(disk));
    json_object_object_add(o, "role", json_object_new_string(role));
    if (json_object_array_add(priv_images(dom), o) < 0) {
        json_object_put(o);
        return oom(errp);
    }
    return 0;
}

/* ---- open / close --------------------------------------------------------- */

void ic_domain_close(ic_domain *dom)
{
    if (!dom)
        return;
    ic_snapmeta_free(dom->meta);
    ic_domain_def_free(dom->def);
    ic_xml_node_free(dom->tree);
    json_object_put(dom->priv);
    ic_io_close(dom->lock);
    free(dom->state_dir);
    free(dom->name);
    free(dom->xml_path);
    free(dom->priv_path);
    free(dom->journal_path);
    free(dom->pending);
    free(dom->recovered);
    ic_dom_live_free(dom->live);
    free(dom);
}

static int load(ic_domain *dom, ic_error **errp)
{
    char *xml = NULL;
    size_t len = 0;
    if (ic_dir_path_type(dom->xml_path) != IC_DIR_PATH_REGULAR)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "failed to get domain '%s'",
                            dom->name);
    int ret = ic_dir_read_file(&xml, &len, dom->xml_path, IC_DOM_MAX_FILE, errp);
    if (ret == 0)
        ret = ic_xml_tree_parse(&dom->tree, xml, len, "domain", errp);
    free(xml);
    if (ret == 0)
        ret = parse_def(&dom->def, dom->tree, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s", dom->xml_path);
        return ret;
    }
    ret = ic_snapmeta_open(&dom->meta, dom->state_dir, dom->name, errp);
    if (ret == 0)
        ret = load_priv(dom, errp);
    return ret;
}

static int domain_new(ic_domain **out, const char *state_dir, const char *name, ic_error **errp)
{
    *out = NULL;
    int ret = check_domain_name(name, errp);
    if (ret < 0)
        return ret;
    ic_domain *dom = calloc(1, sizeof(*dom));
    if (!dom || !(dom->state_dir = strdup(state_dir)) || !(dom->name = strdup(name)) ||
        !(dom->xml_path = ic_dom_path(state_dir, name, ".xml")) ||
        !(dom->priv_path = ic_dom_path(state_dir, name, ".imgchain.json")) ||
        !(dom->journal_path = ic_dom_path(state_dir, name, ".journal"))) {
        ic_domain_close(dom);
        return oom(errp);
    }
    *out = dom;
    return 0;
}

int ic_domain_open(ic_domain **out, const char *state_dir, const char *name, unsigned flags,
                   ic_error **errp)
{
    *out = NULL;
    if (flags & ~IC_DOMAIN_OPEN_WRITE)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_domain_open: unknown flags 0x%x",
                            flags);
    ic_domain *dom = NULL;
    int ret = domain_new(&dom, state_dir, name, errp);
    if (ret < 0)
        return ret;
    dom->writable = flags & IC_DOMAIN_OPEN_WRITE;
    if (dom->writable && ic_dir_path_type(dom->xml_path) != IC_DIR_PATH_REGULAR) {
        /* no lock file for a domain that does not exist */
        ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "failed to get domain '%s'", name);
        goto fail;
    }
    ret = take_lock(&dom->lock, state_dir, name, dom->writable, errp);
    if (ret == 0)
        ret = load(dom, errp);
    if (ret < 0)
        goto fail;
    json_object *j = NULL;
    ret = ic_dom_journal_load(dom, &j, errp);
    if (ret < 0)
        goto fail;
    if (j) {
        dom->pending = ic_dom_journal_describe(j);
        json_object_put(j);
        if (!dom->pending) {
            ret = oom(errp);
            goto fail;
        }
        if (dom->writable && (ret = ic_dom_recover(dom, errp)) < 0)
            goto fail;
    }
    *out = dom;
    return 0;
fail:
    ic_domain_close(dom);
    return ret;
}

void ic_domain_set_open_file(ic_domain *dom, ic_open_file_fn fn, void *payload)
{
    if (!dom)
        return;
    dom->open_file = fn;
    dom->open_payload = payload;
}

const char *ic_domain_name(const ic_domain *dom)
{
    return dom ? dom->name : NULL;
}

const char *ic_domain_uuid(const ic_domain *dom)
{
    return dom && dom->def ? dom->def->uuid : NULL;
}

const ic_domain_def *ic_domain_get_def(const ic_domain *dom)
{
    return dom ? dom->def : NULL;
}

int ic_domain_get_xml(const ic_domain *dom, unsigned flags, char **out, ic_error **errp)
{
    *out = NULL;
    if (!dom || (flags & ~IC_DOMAIN_XML_SECURE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_get_xml: no domain or unknown flags");
    return ic_xml_tree_format(out, dom->tree, flags & IC_DOMAIN_XML_SECURE, errp);
}

const char *ic_domain_pending(const ic_domain *dom)
{
    return dom && !dom->recovered ? dom->pending : NULL;
}

const char *ic_domain_recovered(const ic_domain *dom)
{
    return dom ? dom->recovered : NULL;
}

/* ---- define / undefine / list -------------------------------------------- */

/* libvirt refuses a second domain with the UUID of another. */
static int uuid_unused(const char *state_dir, const char *name, const char *uuid,
                       ic_error **errp)
{
    char **names = NULL;
    size_t n = 0;
    int ret = ic_domain_list(&names, &n, state_dir, errp);
    for (size_t i = 0; ret == 0 && i < n; i++) {
        if (!strcmp(names[i], name))
            continue;
        ic_domain *other = NULL;
        ic_error *e = NULL;
        if (ic_domain_open(&other, state_dir, names[i], 0, &e) < 0) {
            ic_error_free(e);
            continue;   /* an unreadable domain is reported where it is used */
        }
        if (other->def->uuid && !strcasecmp(other->def->uuid, uuid))
            ret = ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                               "domain '%s' is already defined with uuid %s", names[i], uuid);
        ic_domain_close(other);
    }
    ic_domain_names_free(names, n);
    return ret;
}

int ic_domain_define(const char *state_dir, const char *xml, size_t len, char **name_out,
                     ic_error **errp)
{
    if (name_out)
        *name_out = NULL;
    ic_xml_node *tree = NULL;
    ic_domain_def *def = NULL;
    ic_domain *dom = NULL;
    int ret = ic_xml_tree_parse(&tree, xml, len, "domain", errp);
    if (ret == 0)
        ret = parse_def(&def, tree, errp);
    if (ret < 0)
        goto out;
    if (!def->name) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing name information in domain");
        goto out;
    }
    if ((ret = domain_new(&dom, state_dir, def->name, errp)) < 0)
        goto out;
    bool exists = ic_dir_path_type(dom->xml_path) == IC_DIR_PATH_REGULAR;
    if (exists) {
        /* the old definition, under the writer lock (a journal is finished
         * first, so the UUID compared is the settled one) */
        ic_domain_close(dom);
        dom = NULL;
        if ((ret = ic_domain_open(&dom, state_dir, def->name, IC_DOMAIN_OPEN_WRITE, errp)) < 0)
            goto out;
        const char *old = dom->def->uuid;
        if (def->uuid && old && strcasecmp(def->uuid, old)) {
            ret = ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                               "domain '%s' already exists with uuid %s", def->name, old);
            goto out;
        }
        if (!def->uuid && old && (ret = insert_uuid(tree, old)) < 0) {
            ret = oom(errp);
            goto out;
        }
    } else {
        /* checked before the lock file exists: a refused define leaves no
         * file behind */
        if (def->uuid && (ret = uuid_unused(state_dir, def->name, def->uuid, errp)) < 0)
            goto out;
        if ((ret = take_lock(&dom->lock, state_dir, def->name, true, errp)) < 0)
            goto out;
        char uuid[37];
        if (!def->uuid) {
            if (new_uuid(uuid) < 0) {
                ret = ic_error_set(errp, IC_ERR_IO, EIO, "cannot generate a UUID");
                goto out;
            }
            if (insert_uuid(tree, uuid) < 0) {
                ret = oom(errp);
                goto out;
            }
        }
    }
    ic_domain_def_free(def);
    def = NULL;
    if ((ret = parse_def(&def, tree, errp)) < 0)
        goto out;
    ic_xml_node_free(dom->tree);
    ic_domain_def_free(dom->def);
    dom->tree = tree;
    dom->def = def;
    tree = NULL;
    def = NULL;
    ret = ic_dom_save_xml(dom, errp);
    if (ret == 0 && name_out && !(*name_out = strdup(dom->name)))
        ret = oom(errp);
out:
    ic_domain_close(dom);
    ic_domain_def_free(def);
    ic_xml_node_free(tree);
    return ret;
}

int ic_domain_undefine(const char *state_dir, const char *name, unsigned flags,
                       ic_error **errp)
{
    if (flags & ~IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_domain_undefine: unknown flags 0x%x", flags);
    ic_domain *dom = NULL;
    int ret = ic_domain_open(&dom, state_dir, name, IC_DOMAIN_OPEN_WRITE, errp);
    if (ret < 0)
        return ret;
    size_t n = ic_snapmeta_count(dom->meta);
    if (n && !(flags & IC_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "cannot delete inactive domain with %zu snapshots", n);
        goto out;
    }
    /* leaves first, so that a crash leaves a store that still loads */
    while (ic_snapmeta_count(dom->meta) && ret == 0) {
        const char **names = NULL;
        size_t k = 0;
        ret = ic_snapmeta_list(&names, &k, dom->meta, NULL, true, errp);
        if (ret == 0 && k)
            ret = ic_snapmeta_remove(dom->meta, names[k - 1], errp);
        free(names);
    }
    /* the domain document goes last: a crash before it leaves a defined
     * domain with fewer snapshots, never snapshots without a domain */
    if (ret == 0 && ic_dir_path_type(dom->priv_path) == IC_DIR_PATH_REGULAR)
        ret = ic_dir_unlink(dom->priv_path, errp);
    if (ret == 0)
        ret = ic_dir_unlink(dom->xml_path, errp);
out:
    ic_domain_close(dom);
    return ret;
}

int ic_domain_list(char ***names_out, size_t *n_out, const char *state_dir, ic_error **errp)
{
    *names_out = NULL;
    *n_out = 0;
    char **names = NULL;
    size_t n = 0;
    int ret = ic_dir_list(&names, &n, state_dir, ".xml", true, errp);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n; i++)
        names[i][strlen(names[i]) - 4] = '\0';
    *names_out = names;
    *n_out = n;
    return 0;
}

void ic_domain_names_free(char **names, size_t n)
{
    ic_dir_list_free(names, n);
}
