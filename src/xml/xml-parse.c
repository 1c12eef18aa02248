/*
 * xml-parse.c - libvirt <domainsnapshot> documents -> ic_snapshot_def.
 *
 * Design notes
 * ------------
 * Owns: reading documents with libxml2, the generic ic_xml_node trees
 * (embedded <domain>, <inactiveDomain>, <cookie>, source children), the
 * storage <source> parser shared with xml-domain.c, and the snapshot parser.
 * The rules are
 * those of libvirt's virDomainSnapshotDefParse / virDomainSnapshotDiskDefParseXML
 * and the messages are libvirt's, without the trailing period.
 *
 * Invariants:
 *  1. No libxml2 object outlives a public call: every document is freed
 *     before returning, results are copied into our own structs.
 *  2. The parse either returns a complete definition or sets *errp and
 *     leaves *out NULL; nothing half-built escapes.
 *  3. Values read the way libvirt's XPath helpers read them: string(./x)
 *     of the first matching child, and an empty string counts as absent.
 *  4. Without REDEFINE the document is a creation request: state,
 *     creationTime, parent, domain, inactiveDomain, cookie and revertDisks
 *     are ignored, creationTime becomes now and a missing name becomes the
 *     creation time in decimal seconds (virDomainMomentDefPostParse).
 *  5. A disk with a source path or a format and no snapshot= is external;
 *     a path with another mode, a relative path, an unknown type or driver
 *     and a disk named twice are refused (the last two libvirt refuses at
 *     alignment and in its schema; refusing them here gives the same answer
 *     earlier).
 *  6. Network documents never fetch anything: XML_PARSE_NONET, no entity
 *     substitution, no DTD loading.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


#include "xml.h"

/* ---- enum name tables (libvirt's VIR_ENUM_IMPL order) ------------------ */

static const char *const state_names[] = {
    "nostate", "running", "blocked", "paused", "shutdown", "shutoff",
    "crashed", "pmsuspended", "disk-snapshot",
};
static const char *const location_names[] = {
    "default", "no", "internal", "external", "manual",
};
static const char *const storage_type_names[] = {
    "none", "file", "block", "dir", "network", "volume", "nvme", "vhostuser",
};
static const char *const format_names[] = {
    "none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat",
    "vhd", "ploop", "cow", "qcow", "qcow2", "qed", "vmdk",
};
static const char *const net_protocols[] = {
    "nbd", "rbd", "sheepdog", "gluster", "iscsi", "http", "https", "ftp",
    "ftps", "tftp", "ssh", "vxhs", "nfs",
};
/* Children of <source> kept verbatim (libvirt's source sub-elements); any
 * other child is ignored as libvirt ignores it. */
static const char *const source_children[] = {
    "initiator", "ssl", "cookies", "readahead", "timeout", "reconnect",
    "identity", "knownHosts", "slices", "seclabel", "auth", "encryption",
    "reservations",
};

IC_STATIC_ASSERT(IC_ARRAY_SIZE(state_names) == IC_SNAPSHOT_STATE_DISK_SNAPSHOT + 1,
                 "state names");
IC_STATIC_ASSERT(IC_ARRAY_SIZE(location_names) == IC_SNAPSHOT_LOCATION_MANUAL + 1,
                 "location names");
IC_STATIC_ASSERT(IC_ARRAY_SIZE(storage_type_names) == IC_STORAGE_VHOSTUSER + 1,
                 "storage type names");
IC_STATIC_ASSERT(IC_ARRAY_SIZE(format_names) == IC_DISK_FORMAT_VMDK + 1, "format names");

int ic_xml_enum_lookup(const char *const *names, size_t n, const char *s)
{
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return (int)i;
    return -1;
}

int ic_storage_type_from_name(const char *s)
{
    return ic_xml_enum_lookup(storage_type_names, IC_ARRAY_SIZE(storage_type_names), s);
}

int ic_disk_format_from_name(const char *s)
{
    return ic_xml_enum_lookup(format_names, IC_ARRAY_SIZE(format_names), s);
}

int ic_snapshot_location_from_name(const char *s)
{
    return ic_xml_enum_lookup(location_names, IC_ARRAY_SIZE(location_names), s);
}

int ic_snapshot_state_from_name(const char *s)
{
    return ic_xml_enum_lookup(state_names, IC_ARRAY_SIZE(state_names), s);
}

const char *ic_snapshot_state_name(ic_snapshot_state state)
{
    return (unsigned)state < IC_ARRAY_SIZE(state_names) ? state_names[state] : NULL;
}

const char *ic_snapshot_location_name(ic_snapshot_location loc)
{
    return (unsigned)loc < IC_ARRAY_SIZE(location_names) ? location_names[loc] : NULL;
}

const char *ic_storage_type_name(ic_storage_type type)
{
    return (unsigned)type < IC_ARRAY_SIZE(storage_type_names) ? storage_type_names[type] : NULL;
}

const char *ic_disk_format_name(ic_disk_format fmt)
{
    return (unsigned)fmt < IC_ARRAY_SIZE(format_names) ? format_names[fmt] : NULL;
}

/* ---- frees -------------------------------------------------------------- */

void ic_xml_node_free(ic_xml_node *node)
{
    if (!node)
        return;
    free(node->name);
    for (size_t i = 0; i < node->nattrs; i++) {
        free(node->attrs[i].name);
        free(node->attrs[i].value);
    }
    free(node->attrs);
    free(node->text);
    for (size_t i = 0; i < node->nchildren; i++)
        ic_xml_node_free(node->children[i]);
    free(node->children);
    free(node->raw);
    free(node);
}

const char *ic_xml_node_attr(const ic_xml_node *node, const char *name)
{
    if (!node)
        return NULL;
    for (size_t i = 0; i < node->nattrs; i++)
        if (!strcmp(node->attrs[i].name, name))
            return node->attrs[i].value;
    return NULL;
}

const ic_xml_node *ic_xml_node_child(const ic_xml_node *node, const char *name)
{
    if (!node)
        return NULL;
    for (size_t i = 0; i < node->nchildren; i++)
        if (node->children[i]->name && !strcmp(node->children[i]->name, name))
            return node->children[i];
    return NULL;
}

void ic_storage_source_free(ic_storage_source *src)
{
    while (src) {
        ic_storage_source *next = src->backing;
        free(src->path);
        free(src->protocol);
        free(src->query);
        for (size_t i = 0; i < src->nhosts; i++) {
            free(src->hosts[i].name);
            free(src->hosts[i].transport);
            free(src->hosts[i].socket);
        }
        free(src->hosts);
        free(src->snapshot_name);
        free(src->config_file);
        for (size_t i = 0; i < src->nextra; i++)
            ic_xml_node_free(src->extra[i]);
        free(src->extra);
        free(src);
        src = next;
    }
}

static void disk_clear(ic_snapshot_disk_def *d)
{
    free(d->name);
    ic_storage_source_free(d->src);
    memset(d, 0, sizeof(*d));
}

void ic_snapshot_def_free(ic_snapshot_def *def)
{
    if (!def)
        return;
    free(def->name);
    free(def->description);
    free(def->parent_name);
    free(def->memory_file);
    for (size_t i = 0; i < def->ndisks; i++)
        disk_clear(&def->disks[i]);
    free(def->disks);
    for (size_t i = 0; i < def->nrevert_disks; i++)
        disk_clear(&def->revert_disks[i]);
    free(def->revert_disks);
    ic_xml_node_free(def->domain);
    ic_domain_def_free(def->dom);
    free(def->domain_uuid);
    ic_xml_node_free(def->inactive_domain);
    ic_xml_node_free(def->cookie);
    free(def);
}

/* ---- libxml2 helpers ---------------------------------------------------- */

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* libxml2 messages end with a newline; ours are one line without it. */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '.'))
        s[--n] = '\0';
}

int ic_xml_read(xmlDocPtr *out, const char *xml, size_t len, const char *root,
                const char *root2, ic_error **errp)
{
    *out = NULL;
    if (!xml)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "no XML document");
    if (len > IC_XML_MAX_DOC)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "XML document of %zu bytes is larger than the %u byte limit",
                            len, IC_XML_MAX_DOC);
    /* every other libxml2 call works on the document made here */
    int lret = ic_xml_lib_load(errp);
    if (lret < 0)
        return lret;
    xmlParserCtxtPtr ctxt = IC_XML(xmlNewParserCtxt)();
    if (!ctxt)
        return oom(errp);
    /* NOBLANKS: drop the indentation between elements (libvirt strips it
     * too before it pretty-prints <metadata>).  NONET: never fetch. */
    xmlDocPtr doc = IC_XML(xmlCtxtReadMemory)(ctxt, xml, (int)len, "document", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOBLANKS |
                                      XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc || !ctxt->wellFormed) {
        const xmlError *e = IC_XML(xmlCtxtGetLastError)(ctxt);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", e && e->message ? e->message : "parse error");
        chomp(msg);
        int line = e ? e->line : 0;
        IC_XML(xmlFreeDoc)(doc);
        IC_XML(xmlFreeParserCtxt)(ctxt);
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "malformed XML at line %d: %s",
                            line, msg);
    }
    IC_XML(xmlFreeParserCtxt)(ctxt);
    xmlNodePtr r = IC_XML(xmlDocGetRootElement)(doc);
    if (!r || (strcmp((const char *)r->name, root) &&
               (!root2 || strcmp((const char *)r->name, root2)))) {
        int ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "expecting root element of '%s', not '%s'", root,
                               r ? (const char *)r->name : "");
        IC_XML(xmlFreeDoc)(doc);
        return ret;
    }
    *out = doc;
    return 0;
}

xmlNodePtr ic_xml_child(xmlNodePtr node, const char *name)
{
    for (xmlNodePtr c = node ? node->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
            return c;
    return NULL;
}

char *ic_xml_prop(xmlNodePtr node, const char *name)
{
    /* xmlGetNoNsProp: libvirt's virXMLPropString reads the attribute with no
     * namespace. */
    xmlChar *v = IC_XML(xmlGetNoNsProp)(node, (const xmlChar *)name);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    IC_XML_FREE(v);
    return s;
}

/* Heap copy of the string value of @node (NULL if empty); *failed on OOM. */
static char *node_string(xmlNodePtr node, bool *failed)
{
    if (!node)
        return NULL;
    xmlChar *v = IC_XML(xmlNodeGetContent)(node);
    if (!v) {
        *failed = true;
        return NULL;
    }
    char *s = NULL;
    if (*v) {
        s = strdup((const char *)v);
        if (!s)
            *failed = true;
    }
    IC_XML_FREE(v);
    return s;
}

char *ic_xml_child_string(xmlNodePtr node, const char *name)
{
    bool failed = false;
    return node_string(ic_xml_child(node, name), &failed);
}

/* ---- generic trees ------------------------------------------------------ */

static bool is_blank(const xmlChar *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

static int node_add_attr(ic_xml_node *n, const char *name, const char *value)
{
    ic_xml_attr *a = realloc(n->attrs, (n->nattrs + 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    n->attrs = a;
    a[n->nattrs].name = strdup(name);
    a[n->nattrs].value = strdup(value ? value : "");
    if (!a[n->nattrs].name || !a[n->nattrs].value) {
        free(a[n->nattrs].name);
        free(a[n->nattrs].value);
        return -ENOMEM;
    }
    n->nattrs++;
    return 0;
}

static int node_add_child(ic_xml_node *n, ic_xml_node *c)
{
    ic_xml_node **v = realloc(n->children, (n->nchildren + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    n->children = v;
    v[n->nchildren++] = c;
    return 0;
}

/* "prefix:name" of an element or attribute as written. */
static char *qname(const xmlChar *name, xmlNsPtr ns)
{
    if (!ns || !ns->prefix)
        return strdup((const char *)name);
    size_t n = strlen((const char *)ns->prefix) + 1 + strlen((const char *)name) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s:%s", (const char *)ns->prefix, (const char *)name);
    return s;
}

static void strip_blank_text(xmlNodePtr node)
{
    xmlNodePtr c = node->children;
    bool has_elem = false;
    for (xmlNodePtr x = c; x; x = x->next)
        if (x->type == XML_ELEMENT_NODE)
            has_elem = true;
    while (c) {
        xmlNodePtr next = c->next;
        if (c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE ||
            (has_elem && c->type == XML_TEXT_NODE && is_blank(c->content))) {
            IC_XML(xmlUnlinkNode)(c);
            IC_XML(xmlFreeNode)(c);
        } else if (c->type == XML_ELEMENT_NODE) {
            strip_blank_text(c);
        }
        c = next;
    }
}

/*
 * <metadata> of a domain is printed by libvirt with xmlNodeDump (double
 * quotes, its own namespace handling), so it is kept pre-serialized the
 * same way.  The copy into a fresh document re-declares any namespace the
 * subtree borrowed from its ancestors.
 */
static int node_raw(char **out, xmlNodePtr node)
{
    *out = NULL;
    int ret = -ENOMEM;
    xmlDocPtr d = IC_XML(xmlNewDoc)((const xmlChar *)"1.0");
    xmlBufferPtr b = IC_XML(xmlBufferCreate)();
    xmlNodePtr c = d ? IC_XML(xmlDocCopyNode)(node, d, 1) : NULL;
    if (!d || !b || !c) {
        IC_XML(xmlFreeNode)(c);
        goto out;
    }
    IC_XML(xmlDocSetRootElement)(d, c);
    strip_blank_text(c);
    int save = IC_XML_GLOBAL(xmlIndentTreeOutput);
    IC_XML_GLOBAL(xmlIndentTreeOutput) = 1;
    int n = IC_XML(xmlNodeDump)(b, d, c, 0, 1);
    IC_XML_GLOBAL(xmlIndentTreeOutput) = save;
    if (n < 0)
        goto out;
    *out = strdup((const char *)IC_XML(xmlBufferContent)(b));
    if (*out)
        ret = 0;
out:
    IC_XML(xmlBufferFree)(b);
    IC_XML(xmlFreeDoc)(d);
    return ret;
}

static int node_convert(ic_xml_node **out, xmlNodePtr node, int depth)
{
    *out = NULL;
    if (depth > 256)
        return -E2BIG;
    ic_xml_node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    int ret = -ENOMEM;
    n->name = qname(node->name, node->ns);
    if (!n->name)
        goto fail;
    if (depth == 1 && !strcmp((const char *)node->name, "metadata") && !node->ns) {
        ret = node_raw(&n->raw, node);
        if (ret < 0)
            goto fail;
        *out = n;
        return 0;
    }
    for (xmlAttrPtr a = node->properties; a; a = a->next) {
        char *an = qname(a->name, a->ns);
        xmlChar *v = IC_XML(xmlNodeListGetString)(node->doc, a->children, 1);
        int r = an ? node_add_attr(n, an, v ? (const char *)v : "") : -ENOMEM;
        free(an);
        IC_XML_FREE(v);
        if (r < 0)
            goto fail;
    }
    for (xmlNsPtr ns = node->nsDef; ns; ns = ns->next) {
        char an[256];
        if (ns->prefix)
            snprintf(an, sizeof(an), "xmlns:%s", (const char *)ns->prefix);
        else
            snprintf(an, sizeof(an), "xmlns");
        if (node_add_attr(n, an, (const char *)ns->href) < 0)
            goto fail;
    }
    bool has_elem = false;
    for (xmlNodePtr c = node->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            has_elem = true;
    if (!has_elem) {
        xmlChar *v = IC_XML(xmlNodeGetContent)(node);
        if (v && *v) {
            n->text = strdup((const char *)v);
            if (!n->text) {
                IC_XML_FREE(v);
                goto fail;
            }
        }
        IC_XML_FREE(v);
        *out = n;
        return 0;
    }
    for (xmlNodePtr c = node->children; c; c = c->next) {
        ic_xml_node *child = NULL;
        if (c->type == XML_ELEMENT_NODE) {
            ret = node_convert(&child, c, depth + 1);
            if (ret < 0)
                goto fail;
        } else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
                   !is_blank(c->content)) {
            /* mixed content: a nameless child carries the text */
            child = calloc(1, sizeof(*child));
            if (!child || !(child->text = strdup((const char *)c->content))) {
                free(child);
                ret = -ENOMEM;
                goto fail;
            }
        } else {
            continue;
        }
        if (node_add_child(n, child) < 0) {
            ic_xml_node_free(child);
            ret = -ENOMEM;
            goto fail;
        }
    }
    *out = n;
    return 0;
fail:
    ic_xml_node_free(n);
    return ret < 0 ? ret : -ENOMEM;
}

int ic_xml_node_from(ic_xml_node **out, xmlNodePtr node, ic_error **errp)
{
    int ret = node_convert(out, node, 0);
    if (ret == -E2BIG)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "element '%s' is nested too deeply", (const char *)node->name);
    if (ret < 0)
        return oom(errp);
    return 0;
}

/* ---- storage sources ---------------------------------------------------- */

static int invalid_attr(ic_error **errp, const char *attr, const char *elem, const char *v)
{
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                        "Invalid value for attribute '%s' in element '%s': '%s'",
                        attr, elem, v ? v : "(null)");
}

static int parse_host(ic_net_host *h, xmlNodePtr node, ic_error **errp)
{
    char *transport = ic_xml_prop(node, "transport");
    int ret = 0;
    if (transport && strcmp(transport, "tcp") && strcmp(transport, "unix") &&
        strcmp(transport, "rdma")) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                           "unknown protocol transport type '%s'", transport);
        free(transport);
        return ret;
    }
    bool is_unix = transport && !strcmp(transport, "unix");
    if (transport && !strcmp(transport, "tcp")) {
        /* tcp is libvirt's zero value: it is never formatted */
        free(transport);
        transport = NULL;
    }
    h->transport = transport;
    h->socket = ic_xml_prop(node, "socket");
    if (is_unix && !h->socket)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing socket for unix transport");
    if (!is_unix && h->socket)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "transport '%s' does not support socket attribute",
                            h->transport ? h->transport : "tcp");
    if (is_unix)
        return 0;
    if (!(h->name = ic_xml_prop(node, "name")))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing name for host");
    char *port = ic_xml_prop(node, "port");
    if (port) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(port, &end, 10);
        if (!*port || *end || errno || port[0] == '-')
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "failed to parse port number '%s'", port);
        else if (v > 65535)
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "port '%s' out of range", port);
        else
            h->port = (unsigned)v;
        free(port);
    }
    return ret;
}

static bool keep_source_child(const char *name)
{
    return ic_xml_enum_lookup(source_children, IC_ARRAY_SIZE(source_children), name) >= 0;
}

int ic_xml_source_child_rank(const char *name)
{
    int r = ic_xml_enum_lookup(source_children, IC_ARRAY_SIZE(source_children), name);
    return r < 0 ? (int)IC_ARRAY_SIZE(source_children) : r;
}

static int parse_network(ic_storage_source *src, xmlNodePtr node, ic_error **errp)
{
    src->protocol = ic_xml_prop(node, "protocol");
    if (!src->protocol)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing network source protocol type");
    if (ic_xml_enum_lookup(net_protocols, IC_ARRAY_SIZE(net_protocols), src->protocol) < 0)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unknown protocol type '%s'",
                            src->protocol);
    src->path = ic_xml_prop(node, "name");
    if (!src->path && strcmp(src->protocol, "nbd"))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing name for disk source");
    src->query = ic_xml_prop(node, "query");
    char *tls = ic_xml_prop(node, "tls");
    if (tls) {
        if (!strcmp(tls, "yes"))
            src->tls = IC_TRISTATE_YES;
        else if (!strcmp(tls, "no"))
            src->tls = IC_TRISTATE_NO;
        else {
            int ret = invalid_attr(errp, "tls", "source", tls);
            free(tls);
            return ret;
        }
        free(tls);
    }
    for (xmlNodePtr c = node->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "host"))
            continue;
        ic_net_host *h = realloc(src->hosts, (src->nhosts + 1) * sizeof(*h));
        if (!h)
            return oom(errp);
        src->hosts = h;
        memset(&h[src->nhosts], 0, sizeof(*h));
        src->nhosts++;
        int ret = parse_host(&h[src->nhosts - 1], c, errp);
        if (ret < 0)
            return ret;
    }
    xmlNodePtr s = ic_xml_child(node, "snapshot");
    if (s)
        src->snapshot_name = ic_xml_prop(s, "name");
    xmlNodePtr cfg = ic_xml_child(node, "config");
    if (cfg)
        src->config_file = ic_xml_prop(cfg, "file");
    return 0;
}

int ic_xml_source_parse(ic_storage_source *src, xmlNodePtr node, const char *what,
                        ic_error **errp)
{
    int ret;
    (void)what;
    switch (src->type) {
    case IC_STORAGE_FILE:
        src->path = ic_xml_prop(node, "file");
        break;
    case IC_STORAGE_BLOCK:
        src->path = ic_xml_prop(node, "dev");
        break;
    case IC_STORAGE_DIR:
        src->path = ic_xml_prop(node, "dir");
        break;
    case IC_STORAGE_NETWORK:
        ret = parse_network(src, node, errp);
        if (ret < 0)
            return ret;
        break;
    case IC_STORAGE_NONE:
    case IC_STORAGE_VOLUME:
    case IC_STORAGE_NVME:
    case IC_STORAGE_VHOSTUSER:
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "unsupported storage source type '%s'",
                            ic_storage_type_name(src->type));
    }
    if (src->path && !*src->path) {
        /* libvirt treats an empty path as none */
        free(src->path);
        src->path = NULL;
    }
    for (xmlNodePtr c = node->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || c->ns || !keep_source_child((const char *)c->name))
            continue;
        /* libvirt never formats seclabels of network sources */
        if (src->type == IC_STORAGE_NETWORK && !strcmp((const char *)c->name, "seclabel"))
            continue;
        ic_xml_node *n = NULL;
        ret = ic_xml_node_from(&n, c, errp);
        if (ret < 0)
            return ret;
        ic_xml_node **v = realloc(src->extra, (src->nextra + 1) * sizeof(*v));
        if (!v) {
            ic_xml_node_free(n);
            return oom(errp);
        }
        src->extra = v;
        v[src->nextra++] = n;
    }
    return 0;
}

/* ---- scaled integers (virScaleInteger) ---------------------------------- */

static int parse_scaled(uint64_t *out, xmlNodePtr node, const char *what, ic_error **errp)
{
    bool failed = false;
    char *text = node_string(node, &failed);
    char *unit = ic_xml_prop(node, "unit");
    int ret = 0;
    uint64_t scale = 1;
    if (failed) {
        ret = oom(errp);
        goto out;
    }
    if (unit && *unit && strcasecmp(unit, "b") && strcasecmp(unit, "byte") &&
        strcasecmp(unit, "bytes")) {
        uint64_t base;
        if (!unit[1] || !strcasecmp(unit + 1, "iB"))
            base = 1024;
        else if ((unit[1] == 'b' || unit[1] == 'B') && !unit[2])
            base = 1000;
        else {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unknown suffix '%s'", unit);
            goto out;
        }
        const char *order = "kmgtpe";
        const char *p = strchr(order, unit[0] | 0x20);
        if (!p || !unit[0]) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "unknown suffix '%s'", unit);
            goto out;
        }
        for (const char *q = order; q <= p; q++)
            scale *= base;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = text ? strtoull(text, &end, 10) : 0;
    if (!text || *end || errno || strchr(text, '-')) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "could not parse %s value '%s'",
                           what, text ? text : "");
        goto out;
    }
    if (v > UINT64_MAX / scale) {
        ret = ic_error_set(errp, IC_ERR_INVALID, ERANGE, "value too large: %s", text);
        goto out;
    }
    *out = (uint64_t)v * scale;
out:
    free(text);
    free(unit);
    return ret;
}

/* ---- <domainsnapshot> --------------------------------------------------- */

static int parse_disk(ic_snapshot_disk_def *d, xmlNodePtr node, ic_error **errp)
{
    int ret;
    d->src = calloc(1, sizeof(*d->src));
    if (!d->src)
        return oom(errp);
    if (!(d->name = ic_xml_prop(node, "name")))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "missing name from disk snapshot element");
    char *v = ic_xml_prop(node, "snapshot");
    if (v) {
        int loc = ic_snapshot_location_from_name(v);
        if (loc <= 0) {
            ret = invalid_attr(errp, "snapshot", "disk", v);
            free(v);
            return ret;
        }
        d->snapshot = (ic_snapshot_location)loc;
        free(v);
    }
    v = ic_xml_prop(node, "type");
    if (v) {
        int t = ic_storage_type_from_name(v);
        /* libvirt refuses none, volume and dir here; nvme and vhostuser get
         * past its parser but not its schema nor any snapshot code path, so
         * imgchain refuses them up front. */
        if (t != IC_STORAGE_FILE && t != IC_STORAGE_BLOCK && t != IC_STORAGE_NETWORK) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "unsupported disk snapshot type '%s'", v);
            free(v);
            return ret;
        }
        d->src->type = (ic_storage_type)t;
        free(v);
    } else {
        d->src->type = IC_STORAGE_FILE;
    }
    xmlNodePtr source = ic_xml_child(node, "source");
    if (source) {
        ret = ic_xml_source_parse(d->src, source, d->name, errp);
        if (ret < 0)
            return ret;
    }
    xmlNodePtr driver = ic_xml_child(node, "driver");
    if (driver) {
        v = ic_xml_prop(driver, "type");
        if (v && *v) {
            int f = ic_disk_format_from_name(v);
            if (f <= 0) {
                ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                   "unknown disk snapshot driver '%s'", v);
                free(v);
                return ret;
            }
            d->src->format = (ic_disk_format)f;
        }
        free(v);
        xmlNodePtr max = ic_xml_child(ic_xml_child(driver, "metadata_cache"), "max_size");
        if (max) {
            ret = parse_scaled(&d->src->metadata_cache_max_size, max, "max_size", errp);
            if (ret < 0)
                return ret;
        }
    }
    d->delete_in_progress = ic_xml_child(node, "snapshotDeleteInProgress") != NULL;
    if ((d->src->type == IC_STORAGE_FILE || d->src->type == IC_STORAGE_BLOCK) &&
        d->src->path && d->src->path[0] != '/')
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "disk snapshot image path '%s' must be absolute", d->src->path);
    if (!d->snapshot && (d->src->path || d->src->format))
        d->snapshot = IC_SNAPSHOT_LOCATION_EXTERNAL;
    if (d->src->path && d->snapshot != IC_SNAPSHOT_LOCATION_EXTERNAL)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "file '%s' for disk '%s' requires use of external snapshot mode",
                            d->src->path, d->name);
    return 0;
}

/* Parses every element child of every <@container> child of @root
 * (libvirt's "./disks/ *" XPath). */
static int parse_disk_list(ic_snapshot_disk_def **out, size_t *nout, xmlNodePtr root,
                           const char *container, ic_error **errp)
{
    size_t n = 0;
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, container))
            for (xmlNodePtr d = c->children; d; d = d->next)
                if (d->type == XML_ELEMENT_NODE)
                    n++;
    if (!n)
        return 0;
    ic_snapshot_disk_def *disks = calloc(n, sizeof(*disks));
    if (!disks)
        return oom(errp);
    *out = disks;
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, container))
            continue;
        for (xmlNodePtr d = c->children; d; d = d->next) {
            if (d->type != XML_ELEMENT_NODE)
                continue;
            /* count first so the caller frees what was filled on failure */
            (*nout)++;
            int ret = parse_disk(&disks[*nout - 1], d, errp);
            if (ret < 0)
                return ret;
            for (size_t j = 0; j + 1 < *nout; j++)
                if (!strcmp(disks[j].name, disks[*nout - 1].name))
                    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                        "disk '%s' specified twice", disks[j].name);
        }
    }
    return 0;
}

static int parse_memory(ic_snapshot_def *def, xmlNodePtr root, bool redefine, bool offline,
                        ic_error **errp)
{
    xmlNodePtr mem = ic_xml_child(root, "memory");
    int ret;
    if (mem) {
        def->memory_file = ic_xml_prop(mem, "file");
        char *v = ic_xml_prop(mem, "snapshot");
        if (v) {
            int loc = ic_snapshot_location_from_name(v);
            if (loc <= 0) {
                ret = invalid_attr(errp, "snapshot", "memory", v);
                free(v);
                return ret;
            }
            def->memory = (ic_snapshot_location)loc;
            free(v);
        }
        if (def->memory == IC_SNAPSHOT_LOCATION_MANUAL)
            return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                                "'manual' memory snapshot mode not supported");
    }
    if (def->memory_file) {
        if (def->memory_file[0] != '/')
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "memory snapshot file path (%s) must be absolute",
                                def->memory_file);
        if (def->memory && def->memory != IC_SNAPSHOT_LOCATION_EXTERNAL)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "memory filename '%s' requires external snapshot",
                                def->memory_file);
        if (!def->memory)
            def->memory = IC_SNAPSHOT_LOCATION_EXTERNAL;
    } else if (def->memory == IC_SNAPSHOT_LOCATION_EXTERNAL) {
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "external memory snapshots require a filename");
    } else if (redefine && !def->memory) {
        def->memory = offline ? IC_SNAPSHOT_LOCATION_NO : IC_SNAPSHOT_LOCATION_INTERNAL;
    }
    if (offline && def->memory && def->memory != IC_SNAPSHOT_LOCATION_NO)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "memory state cannot be saved with offline or disk-only snapshot");
    return 0;
}

static int parse_domains(ic_snapshot_def *def, xmlNodePtr root, ic_error **errp)
{
    int ret;
    xmlNodePtr dom = ic_xml_child(root, "domain");
    char *type = dom ? ic_xml_prop(dom, "type") : NULL;
    if (type && *type) {
        free(type);
        ret = ic_domain_def_from_node(&def->dom, dom, errp);
        if (ret < 0) {
            ic_error_prepend(errp, "domain in snapshot");
            return ret;
        }
        ret = ic_xml_node_from(&def->domain, dom, errp);
        if (ret < 0)
            return ret;
        if (def->dom->uuid && !(def->domain_uuid = strdup(def->dom->uuid)))
            return oom(errp);
    } else if (dom) {
        /* pre-0.9.5 form <domain><uuid>U</uuid></domain>: libvirt only warns
         * ("parsing older snapshot that lacks domain") */
        free(type);
        def->domain_uuid = ic_xml_child_string(dom, "uuid");
    }
    xmlNodePtr inact = ic_xml_child(root, "inactiveDomain");
    if (inact) {
        ic_domain_def *tmp = NULL;
        ret = ic_domain_def_from_node(&tmp, inact, errp);
        ic_domain_def_free(tmp);
        if (ret < 0) {
            ic_error_prepend(errp, "inactiveDomain in snapshot");
            return ret;
        }
        ret = ic_xml_node_from(&def->inactive_domain, inact, errp);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int parse_long_long(const char *s, long long *out)
{
    if (!s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static int snapshot_parse_doc(ic_snapshot_def *def, xmlNodePtr root, unsigned flags,
                              ic_error **errp)
{
    bool redefine = flags & IC_SNAPSHOT_PARSE_REDEFINE;
    bool offline = false;
    bool failed = false;
    int ret;

    def->active = -1;
    def->name = node_string(ic_xml_child(root, "name"), &failed);
    if (!def->name && redefine)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "a redefined snapshot must have a name");
    def->description = node_string(ic_xml_child(root, "description"), &failed);
    if (failed)
        return oom(errp);

    if (redefine) {
        char *ct = node_string(ic_xml_child(root, "creationTime"), &failed);
        int r = parse_long_long(ct, &def->creation_time);
        free(ct);
        if (r < 0)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "missing creationTime from existing snapshot");
        def->parent_name = node_string(ic_xml_child(ic_xml_child(root, "parent"), "name"),
                                       &failed);
        char *state = node_string(ic_xml_child(root, "state"), &failed);
        if (failed) {
            free(state);
            return oom(errp);
        }
        if (!state)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                "missing state from existing snapshot");
        int st = ic_snapshot_state_from_name(state);
        if (st <= 0) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "Invalid state '%s' in domain snapshot XML", state);
            free(state);
            return ret;
        }
        free(state);
        def->state = (ic_snapshot_state)st;
        offline = def->state == IC_SNAPSHOT_STATE_SHUTOFF ||
                  def->state == IC_SNAPSHOT_STATE_DISK_SNAPSHOT;
        ret = parse_domains(def, root, errp);
        if (ret < 0)
            return ret;
    } else {
        /* virDomainMomentDefPostParse */
        def->creation_time = (long long)time(NULL);
        if (!def->name) {
            char buf[32];
            snprintf(buf, sizeof(buf), "%lld", def->creation_time);
            if (!(def->name = strdup(buf)))
                return oom(errp);
        }
    }

    ret = parse_memory(def, root, redefine, offline, errp);
    if (ret < 0)
        return ret;
    ret = parse_disk_list(&def->disks, &def->ndisks, root, "disks", errp);
    if (ret < 0)
        return ret;
    if (redefine) {
        ret = parse_disk_list(&def->revert_disks, &def->nrevert_disks, root, "revertDisks", errp);
        if (ret < 0) {
            ic_error_prepend(errp, "revertDisks");
            return ret;
        }
    }
    if (flags & IC_SNAPSHOT_PARSE_METADATA) {
        char *a = node_string(ic_xml_child(root, "active"), &failed);
        long long v = 0;
        int r = parse_long_long(a, &v);
        free(a);
        if (r < 0 || v < INT_MIN || v > INT_MAX)
            return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "Could not find 'active' element");
        def->active = v != 0;
    }
    if (redefine && !offline) {
        xmlNodePtr cookie = ic_xml_child(root, "cookie");
        if (cookie) {
            ret = ic_xml_node_from(&def->cookie, cookie, errp);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

int ic_snapshot_def_parse(ic_snapshot_def **out, const char *xml, size_t len, unsigned flags,
                          ic_error **errp)
{
    *out = NULL;
    if (flags & ~(IC_SNAPSHOT_PARSE_REDEFINE | IC_SNAPSHOT_PARSE_METADATA |
                  IC_SNAPSHOT_PARSE_VALIDATE))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_snapshot_def_parse: unknown flags 0x%x", flags);
    xmlDocPtr doc = NULL;
    int ret = ic_xml_read(&doc, xml, len, "domainsnapshot", NULL, errp);
    if (ret < 0)
        return ret;
    if (flags & IC_SNAPSHOT_PARSE_VALIDATE) {
        ret = ic_xml_validate_doc(doc, errp);
        if (ret < 0) {
            IC_XML(xmlFreeDoc)(doc);
            return ret;
        }
    }
    ic_snapshot_def *def = calloc(1, sizeof(*def));
    if (!def) {
        IC_XML(xmlFreeDoc)(doc);
        return oom(errp);
    }
    ret = snapshot_parse_doc(def, IC_XML(xmlDocGetRootElement)(doc), flags, errp);
    IC_XML(xmlFreeDoc)(doc);
    if (ret < 0) {
        ic_snapshot_def_free(def);
        return ret;
    }
    *out = def;
    return 0;
}
