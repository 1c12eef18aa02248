/*
 * xml-format.c - ic_snapshot_def -> libvirt <domainsnapshot> text.
 *
 * Design notes
 * ------------
 * Owns: the output buffer (after libvirt's virBuffer) and the formatter of
 * snapshot definitions, their disks and sources, and the generic trees
 * (embedded domain, inactiveDomain, cookie, source children).
 * Spec: libvirt-snapshots.md 1.4 (output rules) and 1.5 (on-disk form); the
 * layout is that of libvirt's virDomainSnapshotDefFormatInternal and
 * virDomainSnapshotDiskDefFormat, checked against libvirt's own output
 * (tests/cli/xml.sh compares with `virsh -c test:///default`).
 *
 * Invariants:
 *  1. Element order: name, description, state, parent, creationTime,
 *     memory, disks, revertDisks, domain, inactiveDomain, cookie, active.
 *  2. Indentation is two spaces per level and is written only at the start
 *     of an add that begins a line (virBufferApplyIndent), so a text value
 *     containing newlines is written verbatim.
 *  3. Attribute values are single-quoted; text and attribute values are
 *     escaped as virBufferEscapeString does: < > & ' " become entities and
 *     control characters other than tab, newline and carriage return are
 *     dropped.
 *  4. An element with neither attributes nor children is omitted where
 *     libvirt uses virXMLFormatElement (disk <driver>, <source>): so an
 *     empty <source/> or <driver/> disappears.
 *  5. A disk gets type=, <driver> and <source> only when it has a path or a
 *     format; its snapshot= only when the mode is not DEFAULT.
 *  6. Without SECURE the embedded domains lose the passwd= of their
 *     <graphics> (VIR_DOMAIN_DEF_FORMAT_SECURE); the root's id= is never
 *     written (libvirt formats the embedded domain as inactive).
 *  7. Allocation failure is sticky in the buffer and reported once.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"
#include "xml-tree.h"

/* ---- buffer ------------------------------------------------------------- */

static void sbuf_append(struct ic_sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sbuf_apply_indent(struct ic_sbuf *b)
{
    static const char spaces[] = "                                ";
    if (b->indent <= 0 || (b->len > 0 && b->data[b->len - 1] != '\n'))
        return;
    for (int left = b->indent; left > 0;) {
        int n = left < (int)sizeof(spaces) - 1 ? left : (int)sizeof(spaces) - 1;
        sbuf_append(b, spaces, (size_t)n);
        left -= n;
    }
}

void ic_sbuf_add(struct ic_sbuf *b, const char *s)
{
    sbuf_apply_indent(b);
    sbuf_append(b, s, strlen(s));
}

void ic_sbuf_addf(struct ic_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        ic_sbuf_add(b, small);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ic_sbuf_add(b, big);
    free(big);
}

/* Escaped copy of @s (invariant 3); NULL on allocation failure. */
static char *escape(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += *p == '&' ? 5 : (*p == '\'' || *p == '"') ? 6 : (*p == '<' || *p == '>') ? 4 : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '\'': rep = "&apos;"; break;
        case '"': rep = "&quot;"; break;
        default:
            if (*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r')
                *o++ = (char)*p;
            continue;
        }
        size_t l = strlen(rep);
        memcpy(o, rep, l);
        o += l;
    }
    *o = '\0';
    return out;
}

void ic_sbuf_esc(struct ic_sbuf *b, const char *pre, const char *s, const char *post)
{
    if (!s)
        return;
    char *e = escape(s);
    if (!e) {
        b->oom = true;
        return;
    }
    /* one add, so a value with newlines gets no indentation (invariant 2) */
    ic_sbuf_addf(b, "%s%s%s", pre, e, post);
    free(e);
}

void ic_sbuf_indent(struct ic_sbuf *b, int delta)
{
    b->indent += delta;
    if (b->indent < 0)
        b->indent = 0;
}

void ic_sbuf_reset(struct ic_sbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int ic_sbuf_finish(struct ic_sbuf *b, char **out, ic_error **errp)
{
    *out = NULL;
    if (!b->oom && !b->data)
        sbuf_append(b, "", 0);
    if (b->oom) {
        ic_sbuf_reset(b);
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    }
    *out = b->data;
    memset(b, 0, sizeof(*b));
    return 0;
}

/* Appends a child buffer's text (already indented) verbatim. */
static void sbuf_add_buffer(struct ic_sbuf *b, struct ic_sbuf *child)
{
    if (child->oom)
        b->oom = true;
    else if (child->len)
        sbuf_append(b, child->data, child->len);
    ic_sbuf_reset(child);
}

static void sbuf_child_init(struct ic_sbuf *child, const struct ic_sbuf *parent)
{
    memset(child, 0, sizeof(*child));
    child->indent = parent->indent + 2;
}

/* virXMLFormatElement: <name attrs/> or <name attrs>\n children </name>,
 * nothing at all when both buffers are empty.  Consumes both buffers. */
static void format_element(struct ic_sbuf *b, const char *name, struct ic_sbuf *attrs,
                           struct ic_sbuf *children)
{
    if (attrs->oom || children->oom)
        b->oom = true;
    if (!attrs->len && !children->len) {
        ic_sbuf_reset(attrs);
        ic_sbuf_reset(children);
        return;
    }
    ic_sbuf_addf(b, "<%s", name);
    sbuf_add_buffer(b, attrs);
    if (children->len) {
        ic_sbuf_add(b, ">\n");
        sbuf_add_buffer(b, children);
        ic_sbuf_addf(b, "</%s>\n", name);
    } else {
        ic_sbuf_reset(children);
        ic_sbuf_add(b, "/>\n");
    }
}

/* ---- generic trees ------------------------------------------------------ */

enum tree_kind {
    TREE_PLAIN,    /* cookie, source children */
    TREE_DOMAIN,   /* embedded <domain>/<inactiveDomain> (invariant 6) */
};

static void format_raw(struct ic_sbuf *b, const char *raw)
{
    /* first line at the current indent, every further line prefixed with it
     * (xmlNodeDump at level indent/2, as libvirt calls it) */
    const char *p = raw;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        sbuf_apply_indent(b);
        sbuf_append(b, p, n);
        sbuf_append(b, "\n", 1);
        p += n;
        if (*p == '\n')
            p++;
    }
}

static void format_tree(struct ic_sbuf *b, const ic_xml_node *n, enum tree_kind kind,
                        int depth, bool secure, const char *rename, bool force_open)
{
    if (n->raw) {
        format_raw(b, n->raw);
        return;
    }
    if (!n->name) {
        ic_sbuf_esc(b, "", n->text ? n->text : "", "\n");
        return;
    }
    const char *name = rename ? rename : n->name;
    /* the start tag and, for a leaf, its text and end tag go in one add */
    struct ic_sbuf tag = { 0 };
    ic_sbuf_addf(&tag, "<%s", name);
    for (size_t i = 0; i < n->nattrs; i++) {
        const char *an = n->attrs[i].name;
        if (kind == TREE_DOMAIN && depth == 0 && !strcmp(an, "id"))
            continue;
        if (kind == TREE_DOMAIN && depth == 2 && !secure && !strcmp(n->name, "graphics") &&
            !strcmp(an, "passwd"))
            continue;
        char *e = escape(n->attrs[i].value);
        if (!e) {
            tag.oom = true;
            break;
        }
        ic_sbuf_addf(&tag, " %s='%s'", an, e);
        free(e);
    }
    if (n->nchildren) {
        ic_sbuf_add(&tag, ">\n");
    } else if (n->text) {
        ic_sbuf_esc(&tag, ">", n->text, "");
        ic_sbuf_addf(&tag, "</%s>\n", name);
    } else if (force_open) {
        ic_sbuf_addf(&tag, ">\n</%s>\n", name);
    } else {
        ic_sbuf_add(&tag, "/>\n");
    }
    if (tag.oom) {
        b->oom = true;
        ic_sbuf_reset(&tag);
        return;
    }
    ic_sbuf_add(b, tag.data);
    ic_sbuf_reset(&tag);
    if (!n->nchildren)
        return;
    ic_sbuf_indent(b, 2);
    for (size_t i = 0; i < n->nchildren; i++)
        format_tree(b, n->children[i], kind, depth + 1, secure, NULL, false);
    ic_sbuf_indent(b, -2);
    ic_sbuf_addf(b, "</%s>\n", name);
}

/* A whole document from a generic tree (xml-tree.h): the <domain> of
 * DIR/D.xml, formatted as the <domain> embedded in snapshots. */
int ic_xml_tree_format(char **out, const ic_xml_node *node, bool secure, ic_error **errp)
{
    *out = NULL;
    struct ic_sbuf b = { 0 };
    format_tree(&b, node, TREE_DOMAIN, 0, secure, NULL, false);
    return ic_sbuf_finish(&b, out, errp);
}

/* ---- sources and disks -------------------------------------------------- */

static int source_cmp_rank(const ic_xml_node *a, const ic_xml_node *b)
{
    return ic_xml_source_child_rank(a->name) - ic_xml_source_child_rank(b->name);
}

/* virDomainDiskSourceFormat for the types a snapshot disk can have. */
static void format_source(struct ic_sbuf *b, const ic_storage_source *src)
{
    struct ic_sbuf attrs = { 0 }, children;
    sbuf_child_init(&children, b);
    switch (src->type) {
    case IC_STORAGE_FILE:
        ic_sbuf_esc(&attrs, " file='", src->path, "'");
        break;
    case IC_STORAGE_BLOCK:
        ic_sbuf_esc(&attrs, " dev='", src->path, "'");
        break;
    case IC_STORAGE_DIR:
        ic_sbuf_esc(&attrs, " dir='", src->path, "'");
        break;
    case IC_STORAGE_NETWORK:
        ic_sbuf_esc(&attrs, " protocol='", src->protocol ? src->protocol : "", "'");
        ic_sbuf_esc(&attrs, " name='", src->path, "'");
        ic_sbuf_esc(&attrs, " query='", src->query, "'");
        if (src->tls != IC_TRISTATE_ABSENT)
            ic_sbuf_addf(&attrs, " tls='%s'", src->tls == IC_TRISTATE_YES ? "yes" : "no");
        for (size_t i = 0; i < src->nhosts; i++) {
            const ic_net_host *h = &src->hosts[i];
            ic_sbuf_add(&children, "<host");
            ic_sbuf_esc(&children, " name='", h->name, "'");
            if (h->port)
                ic_sbuf_addf(&children, " port='%u'", h->port);
            ic_sbuf_esc(&children, " transport='", h->transport, "'");
            ic_sbuf_esc(&children, " socket='", h->socket, "'");
            ic_sbuf_add(&children, "/>\n");
        }
        ic_sbuf_esc(&children, "<snapshot name='", src->snapshot_name, "'/>\n");
        ic_sbuf_esc(&children, "<config file='", src->config_file, "'/>\n");
        break;
    case IC_STORAGE_NONE:
    case IC_STORAGE_VOLUME:
    case IC_STORAGE_NVME:
    case IC_STORAGE_VHOSTUSER:
        break;
    }
    /* kept children in libvirt's order (stable for equal ranks) */
    bool *done = src->nextra ? calloc(src->nextra, sizeof(*done)) : NULL;
    if (src->nextra && !done)
        b->oom = true;
    for (size_t k = 0; done && k < src->nextra; k++) {
        size_t best = src->nextra;
        for (size_t i = 0; i < src->nextra; i++)
            if (!done[i] && (best == src->nextra ||
                             source_cmp_rank(src->extra[i], src->extra[best]) < 0))
                best = i;
        done[best] = true;
        format_tree(&children, src->extra[best], TREE_PLAIN, 0, true, NULL, false);
    }
    free(done);
    format_element(b, "source", &attrs, &children);
}

static int format_disk(struct ic_sbuf *b, const ic_snapshot_disk_def *d, ic_error **errp)
{
    if (!d->name)
        return 0;
    struct ic_sbuf attrs = { 0 }, children;
    sbuf_child_init(&children, b);
    ic_sbuf_esc(&attrs, " name='", d->name, "'");
    if (d->snapshot > 0) {
        const char *m = ic_snapshot_location_name(d->snapshot);
        if (!m)
            goto bad;
        ic_sbuf_addf(&attrs, " snapshot='%s'", m);
    }
    if (d->delete_in_progress)
        ic_sbuf_add(&children, "<snapshotDeleteInProgress/>\n");
    const ic_storage_source *src = d->src;
    if (src && (src->path || src->format)) {
        const char *t = ic_storage_type_name(src->type);
        if (!t || src->type == IC_STORAGE_NONE)
            goto bad;
        ic_sbuf_addf(&attrs, " type='%s'", t);
        struct ic_sbuf dattrs = { 0 }, dchildren;
        sbuf_child_init(&dchildren, &children);
        if (src->format > 0) {
            const char *f = ic_disk_format_name(src->format);
            if (!f) {
                ic_sbuf_reset(&dattrs);
                ic_sbuf_reset(&dchildren);
                goto bad;
            }
            ic_sbuf_addf(&dattrs, " type='%s'", f);
        }
        if (src->metadata_cache_max_size > 0) {
            struct ic_sbuf mattrs = { 0 }, mchildren;
            sbuf_child_init(&mchildren, &dchildren);
            ic_sbuf_addf(&mchildren, "<max_size unit='bytes'>%llu</max_size>\n",
                         (unsigned long long)src->metadata_cache_max_size);
            format_element(&dchildren, "metadata_cache", &mattrs, &mchildren);
        }
        format_element(&children, "driver", &dattrs, &dchildren);
        format_source(&children, src);
    }
    format_element(b, "disk", &attrs, &children);
    return 0;
bad:
    ic_sbuf_reset(&attrs);
    ic_sbuf_reset(&children);
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                        "disk '%s' has an out-of-range mode, type or format", d->name);
}

/* ---- the document ------------------------------------------------------- */

static int format_def(struct ic_sbuf *b, const ic_snapshot_def *def, unsigned flags,
                      ic_error **errp)
{
    bool secure = flags & IC_SNAPSHOT_FORMAT_SECURE;
    int ret;

    ic_sbuf_add(b, "<domainsnapshot>\n");
    ic_sbuf_indent(b, 2);
    ic_sbuf_esc(b, "<name>", def->name, "</name>\n");
    ic_sbuf_esc(b, "<description>", def->description, "</description>\n");
    if (def->state) {
        const char *s = ic_snapshot_state_name(def->state);
        if (!s)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "state %d out of range",
                                (int)def->state);
        ic_sbuf_addf(b, "<state>%s</state>\n", s);
    }
    if (def->parent_name) {
        ic_sbuf_add(b, "<parent>\n");
        ic_sbuf_indent(b, 2);
        ic_sbuf_esc(b, "<name>", def->parent_name, "</name>\n");
        ic_sbuf_indent(b, -2);
        ic_sbuf_add(b, "</parent>\n");
    }
    if (def->creation_time)
        ic_sbuf_addf(b, "<creationTime>%lld</creationTime>\n", def->creation_time);
    if (def->memory) {
        const char *m = ic_snapshot_location_name(def->memory);
        if (!m)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "memory mode %d out of range",
                                (int)def->memory);
        ic_sbuf_addf(b, "<memory snapshot='%s'", m);
        ic_sbuf_esc(b, " file='", def->memory_file, "'");
        ic_sbuf_add(b, "/>\n");
    }
    if (def->ndisks) {
        ic_sbuf_add(b, "<disks>\n");
        ic_sbuf_indent(b, 2);
        for (size_t i = 0; i < def->ndisks; i++)
            if ((ret = format_disk(b, &def->disks[i], errp)) < 0)
                return ret;
        ic_sbuf_indent(b, -2);
        ic_sbuf_add(b, "</disks>\n");
    }
    if (def->nrevert_disks) {
        struct ic_sbuf attrs = { 0 }, children;
        sbuf_child_init(&children, b);
        for (size_t i = 0; i < def->nrevert_disks; i++)
            if ((ret = format_disk(&children, &def->revert_disks[i], errp)) < 0) {
                ic_sbuf_reset(&children);
                return ret;
            }
        format_element(b, "revertDisks", &attrs, &children);
    }
    if (def->domain) {
        format_tree(b, def->domain, TREE_DOMAIN, 0, secure, "domain", false);
    } else if (def->domain_uuid) {
        ic_sbuf_add(b, "<domain>\n");
        ic_sbuf_indent(b, 2);
        ic_sbuf_esc(b, "<uuid>", def->domain_uuid, "</uuid>\n");
        ic_sbuf_indent(b, -2);
        ic_sbuf_add(b, "</domain>\n");
    }
    if (def->inactive_domain)
        format_tree(b, def->inactive_domain, TREE_DOMAIN, 0, secure, "inactiveDomain", false);
    if (def->cookie)
        format_tree(b, def->cookie, TREE_PLAIN, 0, true, "cookie", true);
    if (flags & IC_SNAPSHOT_FORMAT_METADATA)
        ic_sbuf_addf(b, "<active>%d</active>\n", (flags & IC_SNAPSHOT_FORMAT_CURRENT) ? 1 : 0);
    ic_sbuf_indent(b, -2);
    ic_sbuf_add(b, "</domainsnapshot>\n");
    return 0;
}

int ic_snapshot_def_format(char **out, const ic_snapshot_def *def, unsigned flags,
                           ic_error **errp)
{
    *out = NULL;
    if (!def)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_snapshot_def_format: no definition");
    if (flags & ~(IC_SNAPSHOT_FORMAT_SECURE | IC_SNAPSHOT_FORMAT_METADATA |
                  IC_SNAPSHOT_FORMAT_CURRENT))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_format: unknown flags 0x%x", flags);
    struct ic_sbuf b = { 0 };
    int ret = format_def(&b, def, flags, errp);
    if (ret < 0) {
        ic_sbuf_reset(&b);
        return ret;
    }
    return ic_sbuf_finish(&b, out, errp);
}

/* libvirt's virXMLEmitWarning as virDomainSnapshotWriteMetadata calls it
 * (no name after the command). */
#define METADATA_WARNING                                                          \
    "<!--\n"                                                                      \
    "WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n"   \
    "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n" \
    "  virsh snapshot-edit\n"                                                     \
    "or other application using the libvirt API.\n"                               \
    "-->\n\n"

int ic_snapshot_def_format_metadata(char **out, const ic_snapshot_def *def, bool current,
                                    ic_error **errp)
{
    *out = NULL;
    if (!def)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_format_metadata: no definition");
    struct ic_sbuf b = { 0 };
    ic_sbuf_add(&b, METADATA_WARNING);
    unsigned flags = IC_SNAPSHOT_FORMAT_SECURE | IC_SNAPSHOT_FORMAT_METADATA |
                     (current ? IC_SNAPSHOT_FORMAT_CURRENT : 0);
    int ret = format_def(&b, def, flags, errp);
    if (ret < 0) {
        ic_sbuf_reset(&b);
        return ret;
    }
    return ic_sbuf_finish(&b, out, errp);
}
