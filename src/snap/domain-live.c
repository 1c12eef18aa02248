/*
 * domain-live.c - snapshots of a running domain: imgchain makes the
 * overlays, qemu is asked only to quiesce (through the guest agent) and to
 * switch onto them (one QMP transaction).
 *
 * Design notes
 * ------------
 * Owns: the domain's QMP and agent sockets (private file keys "qmp" and
 * "qga"), the "is it running" question, live snapshot-create and the
 * recovery of its journal.  Spec: docs/domain-live.md.
 *
 * Invariants:
 *  1. A domain is running exactly when its QMP socket answers a QMP
 *     greeting; nothing is inferred from image locks.
 *  2. An image qemu holds is never written by imgchain: what is needed of
 *     it (node name, file, format, virtual size, cluster size, bitmaps)
 *     comes from query-block and query-named-block-nodes, and only the new
 *     overlay file is written.
 *  3. The freeze window holds only the freeze, the transaction and the
 *     thaw: files are made and nodes added before the freeze.  The guest
 *     is frozen only after its agent said "thawed" (a freeze we did not
 *     make is never thawed), and every path out of a freeze thaws.
 *  4. The journal (D.journal, op "snapshot-create-live") is written before
 *     the first file or node is made and names every file, node and the
 *     freeze; the transaction is the point of no return and qemu records
 *     it: a recovery that finds a disk's active node to be our overlay
 *     finishes the snapshot, otherwise it thaws, deletes our nodes and
 *     unlinks our files.  A VM that died meanwhile is judged by the
 *     overlays: one that grew past its created size took guest writes.
 *  5. IMGCHAIN_TEST_LIVE_FAULT injects failures for the tests (a refused
 *     blockdev-add, a refused transaction, SIGKILL between steps); each
 *     makes qemu itself fail or kills the process, so the recovery paths
 *     are the real ones.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "domain-internal.h"
#include "imgchain/image.h"
#include "io/io-dir.h"
#include "io/io.h"
#include "qmp/qmp.h"
#include "util/error.h"

struct ic_dom_live {
    char **mountpoints;
    size_t nmountpoints;
};

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static bool fault(const char *what)
{
    const char *f = getenv("IMGCHAIN_TEST_LIVE_FAULT");
    return f && !strcmp(f, what);
}

static void fault_kill(const char *what)
{
    if (fault(what))
        raise(SIGKILL);
}

void ic_dom_live_free(struct ic_dom_live *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nmountpoints; i++)
        free(l->mountpoints[i]);
    free(l->mountpoints);
    free(l);
}

/* ---- sockets in the private file ------------------------------------------ */

static const char *priv_str(const ic_domain *dom, const char *key)
{
    json_object *v = NULL;
    if (!dom || !dom->priv || !json_object_object_get_ex(dom->priv, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

const char *ic_domain_qmp_socket(const ic_domain *dom)
{
    return priv_str(dom, "qmp");
}

const char *ic_domain_qga_socket(const ic_domain *dom)
{
    return priv_str(dom, "qga");
}

int ic_domain_set_sockets(ic_domain *dom, const char *qmp, const char *qga, ic_error **errp)
{
    if (!dom || !dom->writable)
        return ic_error_set(errp, IC_ERR_INVALID, EROFS,
                            "ic_domain_set_sockets: the domain is not opened for writing");
    if (qga && !qmp)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: a guest agent socket needs a QMP socket", dom->name);
    const char *p[2] = { qmp, qga };
    for (int i = 0; i < 2; i++)
        if (p[i] && p[i][0] != '/')
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "%s: socket path '%s' must be absolute", dom->name, p[i]);
    json_object_object_add(dom->priv, "qmp", qmp ? json_object_new_string(qmp) : NULL);
    json_object_object_add(dom->priv, "qga", qga ? json_object_new_string(qga) : NULL);
    return ic_dom_save_priv(dom, errp);
}

bool ic_domain_snapshot_quiesced(const ic_domain *dom, const char *name)
{
    json_object *a = NULL;
    if (!dom || !dom->priv || !json_object_object_get_ex(dom->priv, "quiesced", &a) ||
        !json_object_is_type(a, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(a); i++)
        if (!strcmp(json_object_get_string(json_object_array_get_idx(a, i)), name))
            return true;
    return false;
}

int ic_domain_set_quiesce_mountpoints(ic_domain *dom, const char *const *mps, size_t n,
                                      ic_error **errp)
{
    if (!dom)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "no domain");
    if (!dom->live && !(dom->live = calloc(1, sizeof(*dom->live))))
        return oom(errp);
    struct ic_dom_live *l = dom->live;
    for (size_t i = 0; i < l->nmountpoints; i++)
        free(l->mountpoints[i]);
    free(l->mountpoints);
    l->mountpoints = NULL;
    l->nmountpoints = 0;
    if (!n)
        return 0;
    if (!(l->mountpoints = calloc(n, sizeof(char *))))
        return oom(errp);
    for (size_t i = 0; i < n; i++) {
        if (!mps[i] || mps[i][0] != '/')
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "quiesce mountpoint '%s' must be an absolute path",
                                mps[i] ? mps[i] : "");
        if (!(l->mountpoints[i] = strdup(mps[i])))
            return oom(errp);
        l->nmountpoints = i + 1;
    }
    return 0;
}

/* ---- running? -------------------------------------------------------------- */

/* Connects to @path: 1 with *out, 0 when nothing listens there. */
static int dial_qmp(ic_qmp **out, const char *path, const char *dom_name, ic_error **errp)
{
    ic_error *e = NULL;
    int ret = ic_qmp_connect(out, path, IC_QMP_TIMEOUT_MS, &e);
    if (ret == -ENOENT || ret == -ECONNREFUSED) {
        ic_error_free(e);
        return 0;
    }
    if (ret < 0) {
        ic_error_propagate(errp, e);
        ic_error_prepend(errp, "%s: is the domain running? its QMP socket", dom_name);
        return ret;
    }
    return 1;
}

int ic_domain_is_running(ic_domain *dom, ic_error **errp)
{
    const char *path = ic_domain_qmp_socket(dom);
    if (!path)
        return 0;
    ic_qmp *q = NULL;
    int ret = dial_qmp(&q, path, dom->name, errp);
    ic_qmp_close(q);
    return ret;
}

int ic_dom_live_refuse(ic_domain *dom, const char *what, ic_error **errp)
{
    int ret = ic_domain_is_running(dom, errp);
    if (ret <= 0)
        return ret;
    return ic_error_set(errp, IC_ERR_UNSUPPORTED, EBUSY,
                        "%s: cannot %s a running domain (qemu holds its images): stop it first",
                        dom->name, what);
}

/* ---- what qemu says is active ------------------------------------------------ */

struct live_disk {
    const char *target;
    char *node;       /* the format node of the active layer */
    char *file;
    char *format;
    uint64_t size;
    uint64_t cluster;
    json_object *bitmaps;  /* enabled persistent bitmaps of the active node (array) */
};

static void live_disks_free(struct live_disk *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].node);
        free(d[i].file);
        free(d[i].format);
        json_object_put(d[i].bitmaps);
    }
    free(d);
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *jgets(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* Does the image chain @img (query-block's "image") hold @path? */
static bool chain_holds(json_object *img, const char *path)
{
    for (int depth = 0; img && depth < 1000; depth++) {
        const char *f = jgets(img, "filename");
        if (f && ic_dom_same_file(f, path))
            return true;
        img = jget(img, "backing-image");
    }
    return false;
}

/* Maps every disk of the domain with a source to the qemu device whose
 * chain holds it; disks qemu does not have get node NULL. */
static int live_disks(ic_qmp *q, const ic_domain *dom, struct live_disk **out, ic_error **errp)
{
    *out = NULL;
    json_object *blocks = NULL, *nodes = NULL;
    int ret = ic_qmp_execute(q, "query-block", NULL, &blocks, errp);
    if (ret < 0)
        return ret;
    json_object *args = json_object_new_object();
    if (args)
        json_object_object_add(args, "flat", json_object_new_boolean(1));
    ret = ic_qmp_execute(q, "query-named-block-nodes", args, &nodes, errp);
    if (ret < 0) {
        json_object_put(blocks);
        return ret;
    }
    struct live_disk *d = calloc(dom->def->ndisks + 1, sizeof(*d));
    if (!d)
        ret = oom(errp);
    for (size_t i = 0; ret == 0 && i < dom->def->ndisks; i++) {
        const ic_domain_disk_def *dd = &dom->def->disks[i];
        d[i].target = dd->target;
        if (!dd->src->path)
            continue;
        for (size_t k = 0; k < json_object_array_length(blocks); k++) {
            json_object *ins = jget(json_object_array_get_idx(blocks, k), "inserted");
            json_object *img = jget(ins, "image");
            if (!ins || !chain_holds(img, dd->src->path))
                continue;
            const char *node = jgets(ins, "node-name");
            const char *file = jgets(img, "filename");
            const char *fmt = jgets(img, "format");
            json_object *vs = jget(img, "virtual-size");
            json_object *cs = jget(img, "cluster-size");
            if (!node || !file || !fmt || !vs) {
                ret = ic_error_set(errp, IC_ERR_IO, EPROTO,
                                   "disk '%s': query-block lacks node-name, file, format or "
                                   "size", dd->target);
                break;
            }
            if (!(d[i].node = strdup(node)) || !(d[i].file = strdup(file)) ||
                !(d[i].format = strdup(fmt)) || !(d[i].bitmaps = json_object_new_array())) {
                ret = oom(errp);
                break;
            }
            d[i].size = (uint64_t)json_object_get_int64(vs);
            d[i].cluster = cs ? (uint64_t)json_object_get_int64(cs) : 0;
            for (size_t n = 0; n < json_object_array_length(nodes); n++) {
                json_object *nd = json_object_array_get_idx(nodes, n);
                const char *nn = jgets(nd, "node-name");
                if (!nn || strcmp(nn, node))
                    continue;
                json_object *bms = jget(nd, "dirty-bitmaps");
                for (size_t b = 0; bms && b < json_object_array_length(bms); b++) {
                    json_object *bm = json_object_array_get_idx(bms, b);
                    if (json_object_get_boolean(jget(bm, "persistent")) &&
                        json_object_get_boolean(jget(bm, "recording")))
                        json_object_array_add(d[i].bitmaps, json_object_get(bm));
                }
            }
            break;
        }
    }
    json_object_put(blocks);
    json_object_put(nodes);
    if (ret < 0) {
        live_disks_free(d, dom->def->ndisks);
        return ret;
    }
    *out = d;
    return 0;
}

int ic_domain_refresh_live(ic_domain *dom, ic_error **errp)
{
    const char *path = ic_domain_qmp_socket(dom);
    if (!path)
        return 0;
    ic_qmp *q = NULL;
    int ret = dial_qmp(&q, path, dom->name, errp);
    if (ret <= 0)
        return ret;
    struct live_disk *d = NULL;
    size_t n = dom->def->ndisks;
    ret = live_disks(q, dom, &d, errp);
    ic_qmp_close(q);
    /* targets are borrowed from the def the updates below replace */
    char **targets = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; ret == 0 && i < n; i++)
        if (!targets || !(targets[i] = strdup(dom->def->disks[i].target)))
            ret = oom(errp);
    for (size_t i = 0; ret == 0 && i < n; i++)
        if (d[i].node && !ic_dom_same_file(d[i].file, dom->def->disks[i].src->path ?
                                                         dom->def->disks[i].src->path : ""))
            ret = ic_dom_set_disk_source(dom, targets[i], d[i].file, d[i].format, errp);
    for (size_t i = 0; targets && i < n; i++)
        free(targets[i]);
    free(targets);
    live_disks_free(d, n);
    return ret < 0 ? ret : 1;
}

/* ---- the live external snapshot ------------------------------------------------ */

struct lstep {
    const char *target;
    struct live_disk *ld;
    const char *file;
    const char *fmt;
    bool create;      /* the file is ours to make (missing before) */
    bool reuse;
    bool made;
    bool added_file, added_fmt;
    char file_node[32], fmt_node[32];
    int64_t created_size;
};

struct lplan {
    ic_domain *dom;
    ic_snapshot_def *def;
    unsigned flags;
    ic_qmp *q;
    ic_qga *g;
    const char *qga_path;
    struct live_disk *ld;
    struct lstep *steps;
    size_t n;
    bool frozen;      /* a freeze was asked (and maybe happened) */
    json_object *j;
};

static json_object *journal_steps(const struct lplan *p)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < p->n; i++) {
        const struct lstep *s = &p->steps[i];
        json_object *o = json_object_new_object();
        if (!o) {
            json_object_put(a);
            return NULL;
        }
        json_object_object_add(o, "disk", json_object_new_string(s->target));
        json_object_object_add(o, "kind", json_object_new_string("external"));
        json_object_object_add(o, "image", json_object_new_string(s->ld->file));
        json_object_object_add(o, "file", json_object_new_string(s->file));
        json_object_object_add(o, "format", json_object_new_string(s->fmt));
        json_object_object_add(o, "backing_format", json_object_new_string(s->ld->format));
        json_object_object_add(o, "created", json_object_new_boolean(s->create));
        json_object_object_add(o, "emptied", json_object_new_boolean(0));
        json_object_object_add(o, "reuse", json_object_new_boolean(s->reuse));
        json_object_object_add(o, "node", json_object_new_string(s->ld->node));
        json_object_object_add(o, "file_node", json_object_new_string(s->file_node));
        json_object_object_add(o, "fmt_node", json_object_new_string(s->fmt_node));
        json_object_object_add(o, "created_size", json_object_new_int64(s->created_size));
        json_object_array_add(a, o);
    }
    return a;
}

static int journal_save(struct lplan *p, const char *phase, ic_error **errp)
{
    json_object *steps = journal_steps(p);
    if (!steps)
        return oom(errp);
    json_object_object_add(p->j, "phase", json_object_new_string(phase));
    json_object_object_add(p->j, "frozen", json_object_new_boolean(p->frozen));
    json_object_object_add(p->j, "steps", steps);
    return ic_dom_journal_write(p->dom, p->j, errp);
}

static int64_t file_size(const char *path)
{
    ic_io *io = NULL;
    if (ic_io_open_file(&io, path, IC_IO_NOLOCK, NULL) < 0)
        return -1;
    int64_t size = ic_io_get_size(io);
    ic_io_close(io);
    return size;
}

/* Deletes node @name when qemu has it. */
static int del_node(ic_qmp *q, const char *name, ic_error **errp)
{
    json_object *args = json_object_new_object();
    if (!args)
        return oom(errp);
    json_object_object_add(args, "node-name", json_object_new_string(name));
    ic_error *e = NULL;
    int ret = ic_qmp_execute(q, "blockdev-del", args, NULL, &e);
    if (ret < 0 && e && strstr(ic_error_message(e), "Failed to find node")) {
        ic_error_free(e);
        return 0;
    }
    ic_error_propagate(errp, e);
    return ret;
}

/* Thaws when the agent says the guest is frozen (our freeze: we froze
 * only a thawed guest).  0, or -errno. */
static int thaw(ic_qga *g, ic_error **errp)
{
    bool frozen = false;
    int ret = ic_qga_fsfreeze_status(g, &frozen, errp);
    if (ret < 0 || !frozen)
        return ret;
    ret = ic_qga_fsfreeze_thaw(g, errp);
    return ret < 0 ? ret : 0;
}

/* Undoes, newest first, what this process did before the transaction:
 * thaw, nodes, files.  The first undo error is dropped (the original
 * error is what the caller reports). */
static void undo(struct lplan *p)
{
    if (p->frozen && p->g)
        thaw(p->g, NULL);
    for (size_t k = p->n; k-- > 0;) {
        struct lstep *s = &p->steps[k];
        if (s->added_fmt && del_node(p->q, s->fmt_node, NULL) == 0)
            s->added_fmt = false;
        if (s->added_file && !s->added_fmt && del_node(p->q, s->file_node, NULL) == 0)
            s->added_file = false;
        if (s->made && !s->added_file)
            ic_dir_unlink(s->file, NULL);
    }
    ic_dom_journal_remove(p->dom, NULL);
}

/* The metadata of a switched snapshot (ic_dom_create_finish), with
 * "quiesced" recorded in the private file in the same write. */
static int finish(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *name = jgets(j, "snapshot");
    if (name && ic_dom_jbool(j, "quiesce") && !ic_dom_jbool(j, "no_metadata") &&
        !ic_domain_snapshot_quiesced(dom, name)) {
        json_object *a = NULL;
        if (!json_object_object_get_ex(dom->priv, "quiesced", &a) ||
            !json_object_is_type(a, json_type_array)) {
            if (!(a = json_object_new_array()))
                return oom(errp);
            json_object_object_add(dom->priv, "quiesced", a);
        }
        if (json_object_array_add(a, json_object_new_string(name)) < 0)
            return oom(errp);
    }
    /* it saves the private file (every step is external) */
    return ic_dom_create_finish(dom, j, errp);
}

static int make_overlay(struct lplan *p, struct lstep *s, ic_error **errp)
{
    if (s->reuse)
        return 0;
    int ret = ic_dir_create_empty(s->file, IC_DOM_FILE_MODE, errp);
    if (ret < 0)
        return ret;
    s->made = true;
    char opts[64] = "";
    if (!strcmp(s->fmt, "qcow2") && s->ld->cluster)
        snprintf(opts, sizeof(opts), "cluster_size=%llu", (unsigned long long)s->ld->cluster);
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = s->fmt;
    co.size = s->ld->size;
    co.size_set = true;
    co.backing_file = s->ld->file;
    co.backing_format = s->ld->format;
    co.no_backing_open = true;   /* qemu holds it: nothing is read from it */
    co.options = opts[0] ? opts : NULL;
    co.open_file = p->dom->open_file;
    co.payload = p->dom->open_payload;
    if ((ret = ic_image_create(s->file, &co, errp)) < 0)
        return ret;
    s->created_size = file_size(s->file);
    return 0;
}

static int add_nodes(struct lplan *p, struct lstep *s, bool inject, ic_error **errp)
{
    json_object *a = json_object_new_object();
    if (!a)
        return oom(errp);
    json_object_object_add(a, "driver", json_object_new_string("file"));
    json_object_object_add(a, "node-name", json_object_new_string(s->file_node));
    json_object_object_add(a, "filename", json_object_new_string(s->file));
    int ret = ic_qmp_execute(p->q, "blockdev-add", a, NULL, errp);
    if (ret < 0)
        return ret;
    s->added_file = true;
    if (!(a = json_object_new_object()))
        return oom(errp);
    json_object_object_add(a, "driver", json_object_new_string(s->fmt));
    json_object_object_add(a, "node-name", json_object_new_string(s->fmt_node));
    json_object_object_add(a, "file", json_object_new_string(s->file_node));
    /* opened without its chain: blockdev-snapshot attaches the old top */
    json_object_object_add(a, "backing", NULL);
    if (inject)
        json_object_object_add(a, "imgchain-test-fault", json_object_new_boolean(1));
    ret = ic_qmp_execute(p->q, "blockdev-add", a, NULL, errp);
    if (ret == 0)
        s->added_fmt = true;
    return ret;
}

static int transaction(struct lplan *p, ic_error **errp)
{
    json_object *args = json_object_new_object();
    json_object *actions = json_object_new_array();
    if (!args || !actions) {
        json_object_put(args);
        json_object_put(actions);
        return oom(errp);
    }
    for (size_t i = 0; i < p->n; i++) {
        struct lstep *s = &p->steps[i];
        for (size_t b = 0; b < json_object_array_length(s->ld->bitmaps); b++) {
            json_object *bm = json_object_array_get_idx(s->ld->bitmaps, b);
            json_object *act = json_object_new_object(), *data = json_object_new_object();
            json_object_object_add(data, "node", json_object_new_string(s->fmt_node));
            json_object_object_add(data, "name", json_object_new_string(jgets(bm, "name")));
            json_object_object_add(data, "persistent", json_object_new_boolean(1));
            json_object_object_add(data, "disabled", json_object_new_boolean(0));
            json_object_object_add(data, "granularity",
                                   json_object_new_int64(json_object_get_int64(
                                       jget(bm, "granularity"))));
            json_object_object_add(act, "type",
                                   json_object_new_string("block-dirty-bitmap-add"));
            json_object_object_add(act, "data", data);
            json_object_array_add(actions, act);
        }
        json_object *act = json_object_new_object(), *data = json_object_new_object();
        json_object_object_add(data, "node", json_object_new_string(s->ld->node));
        json_object_object_add(data, "overlay", json_object_new_string(s->fmt_node));
        json_object_object_add(act, "type", json_object_new_string("blockdev-snapshot"));
        json_object_object_add(act, "data", data);
        json_object_array_add(actions, act);
    }
    if (fault("transaction")) {
        /* a last action qemu refuses: the whole transaction is undone */
        json_object *act = json_object_new_object(), *data = json_object_new_object();
        json_object_object_add(data, "node", json_object_new_string("imgchain-no-such-node"));
        json_object_object_add(data, "name", json_object_new_string("x"));
        json_object_object_add(act, "type", json_object_new_string("block-dirty-bitmap-add"));
        json_object_object_add(act, "data", data);
        json_object_array_add(actions, act);
    }
    json_object_object_add(args, "actions", actions);
    return ic_qmp_execute(p->q, "transaction", args, NULL, errp);
}

static int freeze(struct lplan *p, ic_error **errp)
{
    struct ic_dom_live *l = p->dom->live;
    size_t n = l ? l->nmountpoints : 0;
    p->frozen = true;
    int ret = journal_save(p, "prepare", errp);
    if (ret < 0)
        return ret;
    ret = ic_qga_fsfreeze(p->g, n ? (const char *const *)l->mountpoints : NULL, n, errp);
    if (ret < 0)
        return ret;
    if (n && (size_t)ret != n)
        return ic_error_set(errp, IC_ERR_IO, EIO,
                            "%s: the guest agent froze %d file systems, %zu were asked",
                            p->qga_path, ret, n);
    if (!n && ret == 0)
        return ic_error_set(errp, IC_ERR_IO, EIO,
                            "%s: the guest agent froze no file system", p->qga_path);
    return 0;
}

/* The stored definition: disk-only state, the domain as it is now (its
 * sources name the images being frozen), parent = current. */
static int complete_def(struct lplan *p, ic_error **errp)
{
    ic_snapshot_def *def = p->def;
    def->state = IC_SNAPSHOT_STATE_DISK_SNAPSHOT;
    def->memory = IC_SNAPSHOT_LOCATION_NO;
    free(def->parent_name);
    def->parent_name = NULL;
    const ic_snapshot_def *cur = ic_snapmeta_current(p->dom->meta);
    if (cur && !(def->parent_name = strdup(cur->name)))
        return oom(errp);
    ic_xml_node_free(def->domain);
    if (!(def->domain = ic_xml_tree_clone(p->dom->tree)))
        return oom(errp);
    free(def->domain_uuid);
    def->domain_uuid = NULL;
    if (p->dom->def->uuid && !(def->domain_uuid = strdup(p->dom->def->uuid)))
        return oom(errp);
    return 0;
}

static int plan_step(struct lplan *p, struct lstep *s, ic_snapshot_disk_def *sd, ic_error **errp)
{
    if (!s->ld->node)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "no device of the running qemu uses the disk's image %s",
                            p->dom->def->disks[s->ld - p->ld].src->path);
    if (sd->src->type != IC_STORAGE_FILE)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot target of type '%s' is not supported: give a "
                            "file", ic_storage_type_name(sd->src->type));
    if (!sd->src->format)
        sd->src->format = IC_DISK_FORMAT_QCOW2;
    if (sd->src->format != IC_DISK_FORMAT_QCOW2 && sd->src->format != IC_DISK_FORMAT_QED)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "external snapshot format %s is unsupported",
                            ic_disk_format_name(sd->src->format));
    s->fmt = ic_disk_format_name(sd->src->format);
    s->file = sd->src->path;
    if (!s->file || s->file[0] != '/')
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "disk snapshot image path '%s' must be absolute",
                            s->file ? s->file : "");
    bool reuse = p->flags & IC_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
    enum ic_dir_path_type t = ic_dir_path_type(s->file);
    if (t == IC_DIR_PATH_MISSING) {
        if (reuse)
            return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT, "missing existing file %s",
                                s->file);
        s->create = true;
        return 0;
    }
    if (t != IC_DIR_PATH_REGULAR)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "external snapshot target %s is not a regular file", s->file);
    if (!reuse)
        return ic_error_set(errp, IC_ERR_EXISTS, EEXIST,
                            "external snapshot file %s already exists", s->file);
    /* --reuse-external: the user's image must sit on the active layer */
    ic_image *img = NULL;
    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = s->fmt;
    oo.flags = IC_OPEN_NO_BACKING;
    int ret = ic_image_open(&img, s->file, &oo, errp);
    if (ret < 0)
        return ret;
    const char *bp = ic_image_backing_name(img);
    if (!bp || bp[0] != '/' || !ic_dom_same_file(bp, s->ld->file))
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "reused file %s does not have the active image %s as its "
                           "(absolute) backing file (it has %s)", s->file, s->ld->file,
                           bp ? bp : "none");
    ic_image_close(img);
    s->reuse = true;
    return ret;
}

static int live_external(struct lplan *p, char **name_out, ic_error **errp)
{
    ic_domain *dom = p->dom;
    ic_snapshot_def *def = p->def;
    int ret = live_disks(p->q, dom, &p->ld, errp);
    if (ret < 0)
        return ret;
    if (!(p->steps = calloc(def->ndisks + 1, sizeof(*p->steps))))
        return oom(errp);
    unsigned long stamp = (unsigned long)time(NULL) & 0xffffffu;
    for (size_t i = 0; i < def->ndisks; i++) {
        ic_snapshot_disk_def *sd = &def->disks[i];
        if (sd->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
            continue;
        struct lstep *s = &p->steps[p->n++];
        s->target = dom->def->disks[i].target;
        s->ld = &p->ld[i];
        snprintf(s->file_node, sizeof(s->file_node), "ic%06lx-%x-%u-f", stamp,
                 (unsigned)getpid() & 0xfffffu, (unsigned)i & 0xffu);
        snprintf(s->fmt_node, sizeof(s->fmt_node), "ic%06lx-%x-%u-o", stamp,
                 (unsigned)getpid() & 0xfffffu, (unsigned)i & 0xffu);
        if ((ret = plan_step(p, s, sd, errp)) < 0) {
            ic_error_prepend(errp, "disk '%s'", s->target);
            return ret;
        }
        for (size_t k = 0; k + 1 < p->n; k++)
            if (!strcmp(p->steps[k].file, s->file))
                return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                    "disk '%s': external snapshot file %s is also the target "
                                    "of disk '%s'", s->target, s->file, p->steps[k].target);
    }
    bool quiesce = p->flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE;
    if (quiesce) {
        if (!(p->qga_path = ic_domain_qga_socket(dom)))
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "quiesce requires a guest agent: the domain has no agent "
                                "socket (define --qmp SOCK --qga SOCK)");
        if ((ret = ic_qga_connect(&p->g, p->qga_path, IC_QMP_TIMEOUT_MS, errp)) < 0)
            return ret;
        bool frozen = false;
        if ((ret = ic_qga_fsfreeze_status(p->g, &frozen, errp)) < 0)
            return ret;
        if (frozen)
            return ic_error_set(errp, IC_ERR_INVALID, EBUSY,
                                "%s: the guest's file systems are already frozen (not by "
                                "this snapshot): thaw them first", p->qga_path);
    }
    if ((ret = complete_def(p, errp)) < 0)
        return ret;
    char *xml = NULL;
    if ((ret = ic_snapshot_def_format(&xml, def, IC_SNAPSHOT_FORMAT_SECURE, errp)) < 0)
        return ret;
    if (!(p->j = json_object_new_object())) {
        free(xml);
        return oom(errp);
    }
    json_object_object_add(p->j, "version", json_object_new_int(1));
    json_object_object_add(p->j, "op", json_object_new_string("snapshot-create-live"));
    json_object_object_add(p->j, "snapshot", json_object_new_string(def->name));
    json_object_object_add(p->j, "no_metadata", json_object_new_boolean(
                                                    p->flags & IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA));
    json_object_object_add(p->j, "quiesce", json_object_new_boolean(quiesce));
    json_object_object_add(p->j, "qmp", json_object_new_string(ic_domain_qmp_socket(dom)));
    if (p->qga_path)
        json_object_object_add(p->j, "qga", json_object_new_string(p->qga_path));
    json_object_object_add(p->j, "xml", json_object_new_string(xml));
    free(xml);
    if ((ret = journal_save(p, "prepare", errp)) < 0)
        return ret;
    /* files, then nodes, all before any freeze */
    for (size_t i = 0; i < p->n && ret == 0; i++)
        if ((ret = make_overlay(p, &p->steps[i], errp)) < 0)
            ic_error_prepend(errp, "disk '%s'", p->steps[i].target);
    if (ret == 0)
        ret = journal_save(p, "prepare", errp);  /* created sizes */
    fault_kill("kill-after-files");
    for (size_t i = 0; i < p->n && ret == 0; i++)
        if ((ret = add_nodes(p, &p->steps[i], i + 1 == p->n && fault("blockdev-add"),
                             errp)) < 0)
            ic_error_prepend(errp, "disk '%s'", p->steps[i].target);
    fault_kill("kill-after-add");
    if (ret == 0 && quiesce)
        ret = freeze(p, errp);
    fault_kill("kill-after-freeze");
    if (ret == 0)
        ret = transaction(p, errp);
    if (ret < 0) {
        undo(p);
        return ret;
    }
    /* switched: from here on the snapshot exists */
    fault_kill("kill-after-transaction");
    int tret = 0;
    ic_error *terr = NULL;
    /* our freeze succeeded: thaw at once (the status round trip of
     * thaw() is for paths that do not know what the freeze did) */
    if (p->frozen)
        tret = ic_qga_fsfreeze_thaw(p->g, &terr);
    ret = journal_save(p, "commit", errp);
    if (ret == 0)
        ret = finish(dom, p->j, errp);
    if (ret == 0 && tret < 0) {
        ic_error_propagate(errp, terr);
        terr = NULL;
        ic_error_prepend(errp, "snapshot '%s' was taken but the guest could not be thawed",
                         def->name);
        ret = tret;
    }
    ic_error_free(terr);
    if (ret == 0 && name_out && !(*name_out = strdup(def->name)))
        ret = oom(errp);
    return ret;
}

/* ---- internal snapshots of a running VM: qemu's snapshot-save job --------- */

static int live_internal(struct lplan *p, char **name_out, ic_error **errp)
{
    ic_domain *dom = p->dom;
    ic_snapshot_def *def = p->def;
    int ret = live_disks(p->q, dom, &p->ld, errp);
    if (ret < 0)
        return ret;
    json_object *devices = json_object_new_array();
    if (!devices)
        return oom(errp);
    const char *vmstate = NULL;
    for (size_t i = 0; i < def->ndisks && ret == 0; i++) {
        if (def->disks[i].snapshot != IC_SNAPSHOT_LOCATION_INTERNAL)
            continue;
        if (!p->ld[i].node)
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "disk '%s': no device of the running qemu uses its image",
                               p->ld[i].target);
        else if (strcmp(p->ld[i].format, "qcow2"))
            ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                               "internal snapshot for disk %s unsupported for storage type %s",
                               p->ld[i].target, p->ld[i].format);
        else {
            json_object_array_add(devices, json_object_new_string(p->ld[i].node));
            if (!vmstate)
                vmstate = p->ld[i].node;
        }
    }
    if (ret == 0 && !vmstate)
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "nothing selected for snapshot");
    json_object *status = NULL;
    if (ret == 0)
        ret = ic_qmp_execute(p->q, "query-status", NULL, &status, errp);
    bool running = status && json_object_get_boolean(jget(status, "running"));
    json_object_put(status);
    if (ret < 0) {
        json_object_put(devices);
        return ret;
    }
    if (running && (ret = ic_qmp_execute(p->q, "stop", NULL, NULL, errp)) < 0) {
        json_object_put(devices);
        return ret;
    }
    char job[80];
    snprintf(job, sizeof(job), "ic-snapshot-save-%ld", (long)getpid());
    json_object *args = json_object_new_object();
    json_object_object_add(args, "job-id", json_object_new_string(job));
    json_object_object_add(args, "tag", json_object_new_string(def->name));
    json_object_object_add(args, "vmstate", json_object_new_string(vmstate));
    json_object_object_add(args, "devices", devices);
    ret = ic_qmp_execute(p->q, "snapshot-save", args, NULL, errp);
    while (ret == 0) {
        json_object *ev = NULL;
        ret = ic_qmp_wait_event(p->q, "JOB_STATUS_CHANGE", "id", job, 600000, &ev, errp);
        const char *st = ret == 0 ? jgets(jget(ev, "data"), "status") : NULL;
        bool done = st && (!strcmp(st, "concluded") || !strcmp(st, "null"));
        json_object_put(ev);
        if (done)
            break;
    }
    if (ret == 0) {
        json_object *jobs = NULL;
        ret = ic_qmp_execute(p->q, "query-jobs", NULL, &jobs, errp);
        for (size_t k = 0; ret == 0 && k < json_object_array_length(jobs); k++) {
            json_object *jb = json_object_array_get_idx(jobs, k);
            const char *id = jgets(jb, "id"), *e = jgets(jb, "error");
            if (id && !strcmp(id, job) && e)
                ret = ic_error_set(errp, IC_ERR_IO, EIO, "snapshot-save: qemu says: %s", e);
        }
        json_object_put(jobs);
        json_object *a = json_object_new_object();
        json_object_object_add(a, "id", json_object_new_string(job));
        ic_qmp_execute(p->q, "job-dismiss", a, NULL, NULL);
    }
    if (running)
        ic_qmp_execute(p->q, "cont", NULL, NULL, ret < 0 ? NULL : errp);
    if (ret < 0)
        return ret;
    ret = complete_def(p, errp);
    if (ret == 0) {
        def->state = running ? IC_SNAPSHOT_STATE_RUNNING : IC_SNAPSHOT_STATE_PAUSED;
        def->memory = IC_SNAPSHOT_LOCATION_INTERNAL;
    }
    char *name = NULL;
    if (ret == 0 && !(name = strdup(def->name)))
        ret = oom(errp);
    if (ret == 0 && !(p->flags & IC_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)) {
        ret = ic_snapmeta_put(dom->meta, def, true, errp);
        p->def = NULL;   /* taken by the store in every case */
    }
    if (ret == 0 && name_out)
        *name_out = name;
    else
        free(name);
    return ret;
}

/* ---- entry ----------------------------------------------------------------------- */

bool ic_domain_live_pending(ic_domain *dom)
{
    json_object *j = NULL;
    if (!dom || ic_dom_journal_load(dom, &j, NULL) < 0 || !j)
        return false;
    const char *op = jgets(j, "op");
    bool live = op && !strcmp(op, "snapshot-create-live");
    json_object_put(j);
    return live;
}

int ic_dom_live_check(ic_domain *dom, ic_error **errp)
{
    return ic_domain_is_running(dom, errp);
}

int ic_dom_live_snapshot_create(ic_domain *dom, const char *xml, size_t len, unsigned flags,
                                char **name_out, ic_error **errp)
{
    const unsigned all = 0x3ffu;
    if (flags & ~all)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unsupported flags (0x%x)",
                            flags & ~all);
    if ((flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE) &&
        !(flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY' is required by flag "
                            "'VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE'");
    if ((flags & IC_DOMAIN_SNAPSHOT_CREATE_LIVE) && (flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "live snapshot creation is supported only during full system "
                            "snapshots");
    struct ic_dom_live *l = dom->live;
    if (l && l->nmountpoints && !(flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "quiesce mountpoints need --quiesce");
    unsigned pf = (flags & IC_DOMAIN_SNAPSHOT_CREATE_VALIDATE) ? IC_SNAPSHOT_PARSE_VALIDATE : 0;
    struct lplan p = { .dom = dom, .flags = flags };
    int ret = ic_snapshot_def_parse(&p.def, xml, len, pf, errp);
    if (ret < 0)
        return ret;
    bool disk_only = flags & IC_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
    if (disk_only || p.def->state == IC_SNAPSHOT_STATE_DISK_SNAPSHOT)
        disk_only = true;
    if (p.def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL)
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "memory snapshots of a running domain to a file are not supported: "
                           "take a disk-only snapshot");
    else if (ic_snapmeta_lookup(dom->meta, p.def->name))
        ret = ic_error_set(errp, IC_ERR_EXISTS, EEXIST, "domain moment %s already exists",
                           p.def->name);
    else if (strchr(p.def->name, '/') || p.def->name[0] == '.')
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid snapshot name '%s'",
                           p.def->name);
    if (ret == 0) {
        ic_snapshot_align_options ao = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
        ao.default_mode = ic_snapshot_align_default_mode(p.def, disk_only, false);
        ao.uniform_internal = ao.default_mode == IC_SNAPSHOT_LOCATION_INTERNAL;
        ao.path_kind = ic_snapmeta_path_kind;
        ret = ic_snapshot_def_align_disks(p.def, dom->def, &ao, errp);
    }
    size_t nint = 0, next = 0;
    for (size_t i = 0; ret == 0 && i < p.def->ndisks; i++) {
        if (dom->def->disks[i].transient)
            p.def->disks[i].snapshot = IC_SNAPSHOT_LOCATION_NO;
        nint += p.def->disks[i].snapshot == IC_SNAPSHOT_LOCATION_INTERNAL;
        next += p.def->disks[i].snapshot == IC_SNAPSHOT_LOCATION_EXTERNAL;
        if (p.def->disks[i].snapshot == IC_SNAPSHOT_LOCATION_MANUAL)
            ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                               "disk '%s': 'manual' snapshot mode is not supported",
                               p.def->disks[i].name);
    }
    if (ret == 0 && nint && next)
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "mixing internal and external targets for a snapshot is not yet "
                           "supported");
    if (ret == 0 && !nint && !next)
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "disk-only snapshots require at least one disk to be selected "
                           "for snapshot");
    if (ret == 0 && nint && (disk_only || (flags & IC_DOMAIN_SNAPSHOT_CREATE_QUIESCE)))
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "a running domain cannot take a disk-only internal snapshot");
    if (ret == 0)
        ret = dial_qmp(&p.q, ic_domain_qmp_socket(dom), dom->name, errp) == 1 ? 0 : -ECONNRESET;
    if (ret == -ECONNRESET && errp && !*errp)
        ic_error_set(errp, IC_ERR_IO, ECONNRESET, "%s: the domain stopped running", dom->name);
    if (ret == 0)
        ret = next ? live_external(&p, name_out, errp) : live_internal(&p, name_out, errp);
    if (ret == 0 && (flags & IC_DOMAIN_SNAPSHOT_CREATE_HALT)) {
        ret = ic_qmp_execute(p.q, "quit", NULL, NULL, errp);
        if (ret < 0)
            ic_error_prepend(errp, "snapshot taken, but the domain was not halted");
    }
    ic_qmp_close(p.q);
    ic_qga_close(p.g);
    live_disks_free(p.ld, dom->def ? dom->def->ndisks : 0);
    free(p.steps);
    json_object_put(p.j);
    ic_snapshot_def_free(p.def);
    if (ret < 0)
        ic_error_prepend(errp, "%s", dom->name);
    return ret;
}

/* ---- recovery of an interrupted live create ------------------------------------- */

/* What a recovery did, as one line ("thawed the guest, removed node X,
 * removed file F"); truncated, never overflowing, when very long. */
struct note {
    char buf[1024];
    size_t off;
};

static void note_add(struct note *nt, const char *what, const char *name)
{
    if (nt->off >= sizeof(nt->buf) - 1)
        return;
    int w = snprintf(nt->buf + nt->off, sizeof(nt->buf) - nt->off, "%s%s%s",
                     nt->off ? ", " : "", what, name ? name : "");
    if (w > 0)
        nt->off += (size_t)w < sizeof(nt->buf) - nt->off ? (size_t)w : sizeof(nt->buf) - 1 - nt->off;
}

int ic_dom_live_recover(ic_domain *dom, json_object *j, bool *finished, char **detail,
                        ic_error **errp)
{
    *finished = false;
    *detail = NULL;
    json_object *steps = jget(j, "steps");
    const char *qmp = jgets(j, "qmp");
    if (!steps || !json_object_is_type(steps, json_type_array) || !qmp)
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: incomplete journal",
                            dom->journal_path);
    if (!strcmp(jgets(j, "phase") ? jgets(j, "phase") : "", "commit")) {
        *finished = true;
        return finish(dom, j, errp);
    }
    size_t n = json_object_array_length(steps);
    ic_qmp *q = NULL;
    int ret = dial_qmp(&q, qmp, dom->name, errp);
    if (ret < 0)
        return ret;
    bool switched = false;
    if (q) {
        json_object *blocks = NULL;
        ret = ic_qmp_execute(q, "query-block", NULL, &blocks, errp);
        for (size_t k = 0; ret == 0 && k < json_object_array_length(blocks); k++) {
            const char *node = jgets(jget(json_object_array_get_idx(blocks, k), "inserted"),
                                     "node-name");
            for (size_t i = 0; node && i < n; i++) {
                const char *ov = jgets(json_object_array_get_idx(steps, i), "fmt_node");
                if (ov && !strcmp(ov, node))
                    switched = true;
            }
        }
        json_object_put(blocks);
    } else {
        /* the VM is gone: an overlay that grew took the guest's writes */
        for (size_t i = 0; i < n; i++) {
            json_object *s = json_object_array_get_idx(steps, i);
            const char *file = jgets(s, "file");
            int64_t cs = json_object_get_int64(jget(s, "created_size"));
            if (ic_dom_jbool(s, "created") && file && cs > 0 && file_size(file) > cs)
                switched = true;
        }
    }
    struct note nt = { .off = 0 };
    nt.buf[0] = '\0';
    /* thaw: a freeze was asked and the agent says frozen (we froze only a
     * thawed guest) */
    const char *qga = jgets(j, "qga");
    if (ret == 0 && q && ic_dom_jbool(j, "frozen") && qga) {
        ic_qga *g = NULL;
        bool frozen = false;
        ret = ic_qga_connect(&g, qga, IC_QMP_TIMEOUT_MS, errp);
        if (ret == 0)
            ret = ic_qga_fsfreeze_status(g, &frozen, errp);
        if (ret == 0 && frozen && (ret = ic_qga_fsfreeze_thaw(g, errp)) >= 0) {
            note_add(&nt, "thawed the guest", NULL);
            ret = 0;
        }
        ic_qga_close(g);
    }
    if (ret == 0 && switched) {
        ic_qmp_close(q);
        *finished = true;
        ret = finish(dom, j, errp);
        if (ret == 0 && nt.off && !(*detail = strdup(nt.buf)))
            ret = oom(errp);
        return ret;
    }
    for (size_t k = n; ret == 0 && k-- > 0;) {
        json_object *s = json_object_array_get_idx(steps, k);
        const char *nodes[2] = { jgets(s, "fmt_node"), jgets(s, "file_node") };
        for (int m = 0; q && ret == 0 && m < 2; m++) {
            if (!nodes[m])
                continue;
            json_object *args = json_object_new_object();
            json_object_object_add(args, "node-name", json_object_new_string(nodes[m]));
            ic_error *e = NULL;
            int r = ic_qmp_execute(q, "blockdev-del", args, NULL, &e);
            if (r == 0) {
                note_add(&nt, "removed node ", nodes[m]);
            } else if (!strstr(ic_error_message(e), "Failed to find node")) {
                ic_error_propagate(errp, e);
                ret = r;
            } else {
                ic_error_free(e);
            }
        }
        const char *file = jgets(s, "file");
        if (ret == 0 && file && ic_dom_jbool(s, "created") &&
            ic_dir_path_type(file) != IC_DIR_PATH_MISSING &&
            (ret = ic_dir_unlink(file, errp)) == 0)
            note_add(&nt, "removed file ", file);
    }
    ic_qmp_close(q);
    if (ret == 0)
        ret = ic_dom_journal_remove(dom, errp);
    if (ret == 0 && nt.off && !(*detail = strdup(nt.buf)))
        ret = oom(errp);
    return ret;
}
