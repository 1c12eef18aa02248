/*
 * snap-meta.c - the snapshot metadata store (one NAME.xml per snapshot).
 *
 * Design notes
 * ------------
 * Owns: the folder ROOT/DOMAIN and its NAME.xml files, the in-memory tree
 * (parent links by name, the current snapshot) and the order in which
 * files are rewritten, as libvirt's qemu driver keeps them: its on-disk
 * form and load-time checks, the current snapshot and re-parenting on
 * create and delete --metadata.  Files are written by io-dir.c
 * (ic_dir_write_atomic), documents by src/xml.
 *
 * Invariants:
 *  1. In memory: names are unique; every parent_name names a snapshot of
 *     the store; following parents from any snapshot ends at a root (no
 *     cycle); at most one snapshot is current.  ic_snapmeta_open() refuses
 *     a folder that breaks one of them.
 *  2. Each file is replaced atomically, so each holds a complete old or new
 *     document whatever happens (io-dir.c invariant 1).
 *  3. Across files the order keeps invariant 1 true on disk after a crash
 *     between any two steps:
 *       - changing the current: the old current is rewritten with
 *         <active>0</active> first, then the new one with 1.  If we crash
 *         in between there is no current snapshot, never two.
 *       - put with a parent: the parent exists on disk already (checked in
 *         memory, which mirrors the disk).
 *       - remove: children are re-parented first (each then points to the
 *         grandparent, which exists), then the file is unlinked, then the
 *         parent is made current if the removed one was.  A crash after
 *         any step leaves a valid tree.
 *  4. Memory follows disk: it changes only after the corresponding file
 *     write succeeded (after a failed demotion/promotion the in-memory
 *     current is what the files say).
 *  5. Names containing '/' or starting with '.' are refused (the file is
 *     NAME.xml; temporary files start with '.').
 *
 * State of the current marker (per store):
 *
 *     NONE --put(make_current) / set_current(X)--> CURRENT(X)
 *     CURRENT(X) --set_current(Y): demote X [-> NONE on disk], promote Y--> CURRENT(Y)
 *     CURRENT(X) --remove(X): unlink X [NONE], promote parent--> CURRENT(parent) | NONE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "imgchain/snapmeta.h"
#include "io/io-dir.h"
#include "util/error.h"

/* One metadata file holds a snapshot document with its embedded domain:
 * tens of KiB in practice; anything past this is not ours. */
#define SNAPMETA_MAX_FILE (64u << 20)
/* libvirt creates the folder 0777 (umask applies) and the files 0600. */
#define SNAPMETA_DIR_MODE 0777u
#define SNAPMETA_FILE_MODE 0600u

struct ic_snapmeta {
    char *dir;
    char *domain;
    ic_snapshot_def **defs;     /* in no particular order */
    size_t n;
    size_t cap;
    ic_snapshot_def *current;   /* one of defs, or NULL */
};

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static ssize_t find(const ic_snapmeta *m, const char *name)
{
    for (size_t i = 0; name && i < m->n; i++)
        if (!strcmp(m->defs[i]->name, name))
            return (ssize_t)i;
    return -1;
}

static int check_name(const char *name, ic_error **errp)
{
    if (!name || !*name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "snapshot has no name");
    if (strchr(name, '/'))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "invalid snapshot name '%s': name can't contain '/'", name);
    if (name[0] == '.')
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "invalid snapshot name '%s': name can't start with '.'", name);
    return 0;
}

static char *file_of(const ic_snapmeta *m, const char *name)
{
    size_t n = strlen(m->dir) + 1 + strlen(name) + 5;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s.xml", m->dir, name);
    return p;
}

/* Writes @def's file with <active> = @current (invariant 2). */
static int write_def(ic_snapmeta *m, const ic_snapshot_def *def, bool current, ic_error **errp)
{
    char *xml = NULL;
    int ret = ic_snapshot_def_format_metadata(&xml, def, current, errp);
    if (ret < 0)
        return ret;
    char *path = file_of(m, def->name);
    if (!path) {
        free(xml);
        return oom(errp);
    }
    ret = ic_dir_mkdir_p(m->dir, SNAPMETA_DIR_MODE, errp);
    if (ret == 0)
        ret = ic_dir_write_atomic(path, xml, strlen(xml), SNAPMETA_FILE_MODE, errp);
    free(path);
    free(xml);
    return ret;
}

void ic_snapmeta_free(ic_snapmeta *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        ic_snapshot_def_free(m->defs[i]);
    free(m->defs);
    free(m->dir);
    free(m->domain);
    free(m);
}

static int append(ic_snapmeta *m, ic_snapshot_def *def)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        ic_snapshot_def **v = realloc(m->defs, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        m->defs = v;
        m->cap = cap;
    }
    m->defs[m->n++] = def;
    return 0;
}

/* Invariant 1 on a freshly loaded store. */
static int check_relations(const ic_snapmeta *m, ic_error **errp)
{
    for (size_t i = 0; i < m->n; i++) {
        const ic_snapshot_def *d = m->defs[i];
        if (d->parent_name && find(m, d->parent_name) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "Snapshots have inconsistent relations for domain %s: "
                                "snapshot '%s' lacks parent '%s'",
                                m->domain, d->name, d->parent_name);
    }
    for (size_t i = 0; i < m->n; i++) {
        const ic_snapshot_def *d = m->defs[i];
        size_t steps = 0;
        while (d->parent_name) {
            if (++steps > m->n)
                return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                    "Snapshots have inconsistent relations for domain %s: "
                                    "snapshot '%s' is in a circular chain",
                                    m->domain, m->defs[i]->name);
            d = m->defs[find(m, d->parent_name)];
        }
    }
    return 0;
}

static int load(ic_snapmeta *m, ic_error **errp)
{
    char **names = NULL;
    size_t n = 0;
    int ret = ic_dir_list(&names, &n, m->dir, ".xml", true, errp);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n && ret == 0; i++) {
        char *full = NULL, *xml = NULL;
        size_t len = 0;
        ic_snapshot_def *def = NULL;
        size_t fl = strlen(m->dir) + 1 + strlen(names[i]) + 1;
        if (!(full = malloc(fl))) {
            ret = oom(errp);
            break;
        }
        snprintf(full, fl, "%s/%s", m->dir, names[i]);
        ret = ic_dir_read_file(&xml, &len, full, SNAPMETA_MAX_FILE, errp);
        if (ret == 0) {
            ret = ic_snapshot_def_parse(&def, xml, len,
                                        IC_SNAPSHOT_PARSE_REDEFINE | IC_SNAPSHOT_PARSE_METADATA,
                                        errp);
            if (ret < 0)
                ic_error_prepend(errp, "%s", full);
        }
        if (ret == 0) {
            size_t stem = strlen(names[i]) - 4;
            if (strlen(def->name) != stem || strncmp(def->name, names[i], stem))
                ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                   "%s: holds snapshot '%s', not '%.*s'", full, def->name,
                                   (int)stem, names[i]);
        }
        if (ret == 0 && def->active == 1) {
            if (m->current)
                ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                   "Too many snapshots claiming to be current for domain %s",
                                   m->domain);
            else
                m->current = def;
        }
        if (ret == 0 && append(m, def) < 0)
            ret = oom(errp);
        if (ret < 0) {
            if (m->current == def)
                m->current = NULL;
            ic_snapshot_def_free(def);
        }
        free(xml);
        free(full);
    }
    ic_dir_list_free(names, n);
    if (ret == 0)
        ret = check_relations(m, errp);
    return ret;
}

int ic_snapmeta_open(ic_snapmeta **out, const char *root, const char *domain, ic_error **errp)
{
    *out = NULL;
    if (!root || !*root || !domain || !*domain || strchr(domain, '/') ||
        !strcmp(domain, ".") || !strcmp(domain, ".."))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "invalid domain name '%s'",
                            domain ? domain : "");
    ic_snapmeta *m = calloc(1, sizeof(*m));
    size_t dl = strlen(root) + 1 + strlen(domain) + 1;
    if (!m || !(m->dir = malloc(dl)) || !(m->domain = strdup(domain))) {
        ic_snapmeta_free(m);
        return oom(errp);
    }
    snprintf(m->dir, dl, "%s/%s", root, domain);
    int ret = load(m, errp);
    if (ret < 0) {
        ic_snapmeta_free(m);
        return ret;
    }
    *out = m;
    return 0;
}

const char *ic_snapmeta_dir(const ic_snapmeta *m)
{
    return m ? m->dir : NULL;
}

size_t ic_snapmeta_count(const ic_snapmeta *m)
{
    return m ? m->n : 0;
}

const ic_snapshot_def *ic_snapmeta_lookup(const ic_snapmeta *m, const char *name)
{
    ssize_t i = m ? find(m, name) : -1;
    return i < 0 ? NULL : m->defs[i];
}

const ic_snapshot_def *ic_snapmeta_current(const ic_snapmeta *m)
{
    return m ? m->current : NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names of the children of @parent (NULL: roots) appended at @v[*k]. */
static void add_children(const char **v, size_t *k, const ic_snapmeta *m, const char *parent)
{
    size_t start = *k;
    for (size_t i = 0; i < m->n; i++) {
        const char *p = m->defs[i]->parent_name;
        if ((!parent && !p) || (parent && p && !strcmp(p, parent)))
            v[(*k)++] = m->defs[i]->name;
    }
    qsort(v + start, *k - start, sizeof(*v), cmp_str);
}

int ic_snapmeta_list(const char ***names_out, size_t *n_out, const ic_snapmeta *m,
                     const char *parent, bool topological, ic_error **errp)
{
    *names_out = NULL;
    *n_out = 0;
    if (!m)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_snapmeta_list: no store");
    if (parent && find(m, parent) < 0)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "ic_snapmeta_list: no domain snapshot with matching name '%s'",
                            parent);
    const char **v = malloc((m->n + 1) * sizeof(*v));
    if (!v)
        return oom(errp);
    size_t k = 0;
    add_children(v, &k, m, parent);
    if (topological && !parent) {
        /* breadth first: each level's children follow their parents */
        for (size_t i = 0; i < k; i++)
            add_children(v, &k, m, v[i]);
    }
    *names_out = v;
    *n_out = k;
    return 0;
}

/* Is @ancestor met when walking up from @name (inclusive)? */
static bool reaches(const ic_snapmeta *m, const char *name, const char *ancestor)
{
    size_t steps = 0;
    while (name && steps++ <= m->n) {
        if (!strcmp(name, ancestor))
            return true;
        ssize_t i = find(m, name);
        if (i < 0)
            return false;
        name = m->defs[i]->parent_name;
    }
    return false;
}

static int put(ic_snapmeta *m, ic_snapshot_def *def, bool make_current, ic_error **errp)
{
    int ret = check_name(def->name, errp);
    if (ret < 0)
        return ret;
    if (def->parent_name) {
        if (!strcmp(def->parent_name, def->name))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "cannot set moment %s as its own parent", def->name);
        if (find(m, def->parent_name) < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "parent %s for moment %s not found", def->parent_name, def->name);
        if (reaches(m, def->parent_name, def->name))
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "parent %s would create cycle to %s", def->parent_name, def->name);
    }
    ssize_t idx = find(m, def->name);
    ic_snapshot_def *old = idx >= 0 ? m->defs[idx] : NULL;
    bool current = make_current || (old && old == m->current);
    if (make_current && m->current && m->current != old) {
        /* demote first: a crash now leaves no current, never two (inv. 3) */
        ret = write_def(m, m->current, false, errp);
        if (ret < 0)
            return ret;
        m->current = NULL;
    }
    ret = write_def(m, def, current, errp);
    if (ret < 0) {
        /* the file holds the old or the new document, and both carry the
         * same <active> when @old is current: memory stays as it was */
        return ret;
    }
    if (old) {
        m->defs[idx] = def;
        ic_snapshot_def_free(old);
    } else if (append(m, def) < 0) {
        /* the file is written but memory cannot hold it: reloading the store
         * shows it; report the failure */
        return oom(errp);
    }
    if (current)
        m->current = def;
    def->active = current;
    return 0;
}

int ic_snapmeta_put(ic_snapmeta *m, ic_snapshot_def *def, bool make_current, ic_error **errp)
{
    if (!m || !def) {
        ic_snapshot_def_free(def);
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_snapmeta_put: no store or definition");
    }
    int ret = put(m, def, make_current, errp);
    if (ret < 0) {
        /* put() stores @def only on success */
        ic_snapshot_def_free(def);
    }
    return ret;
}

static int set_current(ic_snapmeta *m, const char *name, ic_error **errp)
{
    ic_snapshot_def *target = NULL;
    if (name) {
        ssize_t i = find(m, name);
        if (i < 0)
            return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                                "no domain snapshot with matching name '%s'", name);
        target = m->defs[i];
    }
    if (target == m->current)
        return 0;
    int ret;
    if (m->current) {
        ret = write_def(m, m->current, false, errp);
        if (ret < 0)
            return ret;
        m->current->active = 0;
        m->current = NULL;
    }
    if (target) {
        ret = write_def(m, target, true, errp);
        if (ret < 0)
            return ret;
        target->active = 1;
        m->current = target;
    }
    return 0;
}

int ic_snapmeta_set_current(ic_snapmeta *m, const char *name, ic_error **errp)
{
    if (!m)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_snapmeta_set_current: no store");
    return set_current(m, name, errp);
}

static int remove_snapshot(ic_snapmeta *m, const char *name, ic_error **errp)
{
    ssize_t idx = find(m, name);
    if (idx < 0)
        return ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                            "no domain snapshot with matching name '%s'", name);
    ic_snapshot_def *victim = m->defs[idx];
    int ret;
    /* 1. children point to the grandparent (inv. 3) */
    for (size_t i = 0; i < m->n; i++) {
        ic_snapshot_def *c = m->defs[i];
        if (!c->parent_name || strcmp(c->parent_name, victim->name))
            continue;
        char *np = victim->parent_name ? strdup(victim->parent_name) : NULL;
        if (victim->parent_name && !np)
            return oom(errp);
        char *saved = c->parent_name;
        c->parent_name = np;
        ret = write_def(m, c, c == m->current, errp);
        if (ret < 0) {
            c->parent_name = saved;
            free(np);
            return ret;
        }
        free(saved);
    }
    /* 2. the file goes */
    char *path = file_of(m, victim->name);
    if (!path)
        return oom(errp);
    ret = ic_dir_unlink(path, errp);
    free(path);
    if (ret < 0)
        return ret;
    bool was_current = victim == m->current;
    char *parent = victim->parent_name;
    victim->parent_name = NULL;
    m->defs[idx] = m->defs[--m->n];
    if (was_current)
        m->current = NULL;
    ic_snapshot_def_free(victim);
    /* 3. the parent inherits the current marker */
    if (was_current && parent)
        ret = set_current(m, parent, errp);
    free(parent);
    return ret;
}

int ic_snapmeta_remove(ic_snapmeta *m, const char *name, ic_error **errp)
{
    if (!m || !name)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_snapmeta_remove: no store or name");
    return remove_snapshot(m, name, errp);
}

ic_path_kind ic_snapmeta_path_kind(const char *path, void *payload)
{
    (void)payload;
    switch (ic_dir_path_type(path)) {
    case IC_DIR_PATH_REGULAR:
        return IC_PATH_REGULAR;
    case IC_DIR_PATH_BLOCK:
        return IC_PATH_BLOCK;
    case IC_DIR_PATH_DIRECTORY:
    case IC_DIR_PATH_OTHER:
        return IC_PATH_OTHER;
    case IC_DIR_PATH_MISSING:
        break;
    }
    return IC_PATH_MISSING;
}
