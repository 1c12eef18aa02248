/*
 * xml-domain.c - the disks of a libvirt <domain> document.
 *
 * Design notes
 * ------------
 * Owns: ic_domain_def / ic_domain_disk_def, read from a <domain> (or a
 * snapshot's <inactiveDomain>) element.  Only what snapshots need is
 * modelled: the domain's type, name and uuid, and for every
 * <devices><disk>: type, device, driver name and type, source (file, dev,
 * dir or network), target dev and bus, snapshot=, <transient/>,
 * <readonly/> and the <backingStore> chain.  Everything else of the domain
 * is kept verbatim by the snapshot parser (ic_xml_node), not here.
 * It reads what snapshot alignment needs from the domain;
 * the checks and messages are those of libvirt's virDomainDiskDefParseXML.
 *
 * Invariants:
 *  1. Disks are in libvirt's domain order: document order, except that the
 *     disks of one bus are kept sorted by target index (virDomainDiskInsert;
 *     a bus missing from <target> is derived from the target prefix).
 *     Alignment fills missing snapshot disks in this order.
 *  2. Every disk has a target and a non-NULL src; src->format is the
 *     <driver type=> of the disk.
 *  3. A <backingStore> chain is finite: it ends with NULL (unknown) or with
 *     backing_terminated (explicit empty <backingStore/>), and its depth is
 *     bounded by IC_DOMAIN_MAX_BACKING.
 *  4. Sources of types imgchain cannot open (volume, nvme, vhostuser) are
 *     accepted with no path rather than failing the whole domain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

/* libvirt 12.0 allows backing chains 200 deep; a bit of slack above that. */
#define IC_DOMAIN_MAX_BACKING 256

static const char *const device_names[] = { "floppy", "disk", "cdrom", "lun" };

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

static int invalid_attr(ic_error **errp, const char *attr, const char *elem, const char *v)
{
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                        "Invalid value for attribute '%s' in element '%s': '%s'", attr, elem, v);
}

static void disk_clear(ic_domain_disk_def *d)
{
    free(d->device);
    free(d->driver_name);
    ic_storage_source_free(d->src);
    free(d->target);
    free(d->bus);
}

void ic_domain_def_free(ic_domain_def *def)
{
    if (!def)
        return;
    free(def->type);
    free(def->name);
    free(def->uuid);
    for (size_t i = 0; i < def->ndisks; i++)
        disk_clear(&def->disks[i]);
    free(def->disks);
    free(def);
}

int ic_domain_def_disk_index(const ic_domain_def *def, const char *name)
{
    /* virDomainDiskIndexByName(allow_ambiguous = false): a name without a
     * leading slash is a target; a path must match exactly one source. */
    int candidate = -1;
    if (!def || !name)
        return -1;
    for (size_t i = 0; i < def->ndisks; i++) {
        const ic_domain_disk_def *d = &def->disks[i];
        if (name[0] != '/') {
            if (d->target && !strcmp(d->target, name))
                return (int)i;
        } else if (d->src->path && !strcmp(d->src->path, name)) {
            if (candidate >= 0)
                return -1;
            candidate = (int)i;
        }
    }
    return candidate;
}

static bool source_parseable(ic_storage_type t)
{
    return t == IC_STORAGE_FILE || t == IC_STORAGE_BLOCK || t == IC_STORAGE_DIR ||
           t == IC_STORAGE_NETWORK;
}

/* Reads a storage type attribute; @dflt when absent. */
static int parse_type(ic_storage_type *out, xmlNodePtr node, const char *elem,
                      ic_storage_type dflt, ic_error **errp)
{
    char *v = ic_xml_prop(node, "type");
    if (!v) {
        *out = dflt;
        return 0;
    }
    int t = ic_storage_type_from_name(v);
    int ret = 0;
    if (t <= 0)
        ret = invalid_attr(errp, "type", elem, v);
    else
        *out = (ic_storage_type)t;
    free(v);
    return ret;
}

static int parse_format(ic_disk_format *out, xmlNodePtr node, ic_error **errp)
{
    char *v = node ? ic_xml_prop(node, "type") : NULL;
    int ret = 0;
    if (v && *v) {
        int f = ic_disk_format_from_name(v);
        if (f <= 0)
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "unknown driver format value '%s'", v);
        else
            *out = (ic_disk_format)f;
    }
    free(v);
    return ret;
}

static int parse_backing(ic_storage_source *parent, xmlNodePtr node, int depth,
                         ic_error **errp)
{
    xmlNodePtr bs = ic_xml_child(node, "backingStore");
    if (!bs)
        return 0;
    if (depth >= IC_DOMAIN_MAX_BACKING)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "backingStore chain deeper than %d", IC_DOMAIN_MAX_BACKING);
    if (!bs->children && !bs->properties) {
        parent->backing_terminated = true;
        return 0;
    }
    ic_storage_source *src = calloc(1, sizeof(*src));
    if (!src)
        return oom(errp);
    parent->backing = src;
    char *type = ic_xml_prop(bs, "type");
    if (!type)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing disk backing store type");
    free(type);
    int ret = parse_type(&src->type, bs, "backingStore", IC_STORAGE_FILE, errp);
    if (ret < 0)
        return ret;
    xmlNodePtr fmt = ic_xml_child(bs, "format");
    if (!fmt)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing backing store format");
    ret = parse_format(&src->format, fmt, errp);
    if (ret < 0)
        return ret;
    xmlNodePtr source = ic_xml_child(bs, "source");
    if (!source)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing disk backing store source");
    if (source_parseable(src->type)) {
        ret = ic_xml_source_parse(src, source, "backingStore", errp);
        if (ret < 0)
            return ret;
    }
    return parse_backing(src, bs, depth + 1, errp);
}

static int parse_disk(ic_domain_disk_def *d, xmlNodePtr node, ic_error **errp)
{
    int ret;
    if (!(d->src = calloc(1, sizeof(*d->src))))
        return oom(errp);
    ret = parse_type(&d->type, node, "disk", IC_STORAGE_FILE, errp);
    if (ret < 0)
        return ret;
    d->src->type = d->type;
    char *v = ic_xml_prop(node, "device");
    if (v && ic_xml_enum_lookup(device_names, IC_ARRAY_SIZE(device_names), v) < 0) {
        ret = invalid_attr(errp, "device", "disk", v);
        free(v);
        return ret;
    }
    d->device = v ? v : strdup("disk");
    if (!d->device)
        return oom(errp);
    v = ic_xml_prop(node, "snapshot");
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
    xmlNodePtr driver = ic_xml_child(node, "driver");
    if (driver) {
        d->driver_name = ic_xml_prop(driver, "name");
        ret = parse_format(&d->src->format, driver, errp);
        if (ret < 0)
            return ret;
    }
    xmlNodePtr source = ic_xml_child(node, "source");
    if (source && source_parseable(d->type)) {
        ret = ic_xml_source_parse(d->src, source, "disk", errp);
        if (ret < 0)
            return ret;
    }
    xmlNodePtr target = ic_xml_child(node, "target");
    if (target) {
        d->target = ic_xml_prop(target, "dev");
        d->bus = ic_xml_prop(target, "bus");
    }
    if (!d->target || !*d->target)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "missing target information for device '%s'",
                            d->src->path ? d->src->path : "(no source)");
    d->transient = ic_xml_child(node, "transient") != NULL;
    d->readonly = ic_xml_child(node, "readonly") != NULL;
    /* a read-only disk is never snapshotted unless it says so (libvirt also
     * omits snapshot='no' when formatting such a disk) */
    if (d->readonly && !d->snapshot)
        d->snapshot = IC_SNAPSHOT_LOCATION_NO;
    return parse_backing(d->src, node, 0, errp);
}

/* virDiskNameToIndex: "vda" -> 0, "vdz" -> 25, "vdaa" -> 26; -1 when the
 * name has no known prefix or is not letters then digits. */
static int disk_name_index(const char *name)
{
    static const char *const prefixes[] = { "fd", "hd", "vd", "sd", "xvd", "ubd" };
    const char *p = NULL;
    for (size_t i = 0; i < IC_ARRAY_SIZE(prefixes); i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) {
            p = name + strlen(prefixes[i]);
            break;
        }
    if (!p)
        return -1;
    long idx = 0;
    for (size_t i = 0; *p >= 'a' && *p <= 'z'; i++, p++) {
        idx = (idx + (i < 1 ? 0 : 1)) * 26 + (*p - 'a');
        if (idx > 1000000)
            return -1;
    }
    p += strspn(p, "0123456789");
    return *p ? -1 : (int)idx;
}

/* The bus libvirt assumes when <target bus=> is absent. */
static int default_bus(ic_domain_disk_def *d, ic_error **errp)
{
    const char *bus = "ide";
    if (!strcmp(d->device, "floppy"))
        bus = "fdc";
    else if (!strncmp(d->target, "hd", 2))
        bus = "ide";
    else if (!strncmp(d->target, "sd", 2))
        bus = "scsi";
    else if (!strncmp(d->target, "vd", 2))
        bus = "virtio";
    else if (!strncmp(d->target, "xvd", 3))
        bus = "xen";
    else if (!strncmp(d->target, "ubd", 3))
        bus = "uml";
    if (!(d->bus = strdup(bus)))
        return oom(errp);
    return 0;
}

/*
 * virDomainDiskInsert: libvirt keeps the disks of one bus sorted by target
 * index, so the domain order alignment follows is the order libvirt would
 * hold after parsing, not always the document order.  The array has room
 * (it was sized for every <disk>).
 */
static void insert_disk(ic_domain_def *def, ic_domain_disk_def *d)
{
    long at = -1;
    int nidx = disk_name_index(d->target);
    for (long i = (long)def->ndisks - 1; i >= 0; i--) {
        const ic_domain_disk_def *o = &def->disks[i];
        bool same_bus = !strcmp(o->bus, d->bus);
        if (same_bus && disk_name_index(o->target) > nidx)
            at = i;
        else if (same_bus && at == -1)
            at = i + 1;
    }
    if (at < 0)
        at = (long)def->ndisks;
    memmove(&def->disks[at + 1], &def->disks[at],
            (def->ndisks - (size_t)at) * sizeof(*def->disks));
    def->disks[at] = *d;
    def->ndisks++;
}

int ic_domain_def_from_node(ic_domain_def **out, xmlNodePtr root, ic_error **errp)
{
    *out = NULL;
    ic_domain_def *def = calloc(1, sizeof(*def));
    if (!def)
        return oom(errp);
    int ret = 0;
    def->type = ic_xml_prop(root, "type");
    if (!def->type || !*def->type) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "missing domain type attribute");
        goto fail;
    }
    def->name = ic_xml_child_string(root, "name");
    def->uuid = ic_xml_child_string(root, "uuid");
    xmlNodePtr devices = ic_xml_child(root, "devices");
    size_t n = 0;
    for (xmlNodePtr c = devices ? devices->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "disk"))
            n++;
    if (n) {
        def->disks = calloc(n, sizeof(*def->disks));
        if (!def->disks) {
            ret = oom(errp);
            goto fail;
        }
    }
    for (xmlNodePtr c = devices ? devices->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "disk"))
            continue;
        ic_domain_disk_def d = { 0 };
        ret = parse_disk(&d, c, errp);
        if (ret == 0 && !d.bus)
            ret = default_bus(&d, errp);
        if (ret < 0) {
            disk_clear(&d);
            goto fail;
        }
        for (size_t j = 0; j < def->ndisks; j++)
            if (!strcmp(def->disks[j].target, d.target)) {
                ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                                   "target '%s' duplicated for disk sources '%s' and '%s'",
                                   d.target,
                                   def->disks[j].src->path ? def->disks[j].src->path : "",
                                   d.src->path ? d.src->path : "");
                disk_clear(&d);
                goto fail;
            }
        insert_disk(def, &d);
    }
    *out = def;
    return 0;
fail:
    ic_domain_def_free(def);
    return ret;
}

int ic_domain_def_parse(ic_domain_def **out, const char *xml, size_t len, ic_error **errp)
{
    *out = NULL;
    xmlDocPtr doc = NULL;
    int ret = ic_xml_read(&doc, xml, len, "domain", "inactiveDomain", errp);
    if (ret < 0)
        return ret;
    ret = ic_domain_def_from_node(out, IC_XML(xmlDocGetRootElement)(doc), errp);
    IC_XML(xmlFreeDoc)(doc);
    return ret;
}
