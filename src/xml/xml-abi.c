/*
 * xml-abi.c - is a <domain> ABI-compatible with another one?  The check
 * snapshot-revert makes before it switches a domain to the definition a
 * snapshot stored.
 *
 * Design notes
 * ------------
 * Owns: ic_domain_abi_check() and ic_domain_abi_check_xml().  The rules
 * are a subset of libvirt's virDomainDefCheckABIStability, in its order,
 * with its messages: "Target" is the domain being switched to (the
 * snapshot's), "source" the domain as it is now, so reverting a one-disk
 * domain to a snapshot taken with two disks reports "Target domain disk
 * count 2 does not match source 1", as virsh snapshot-revert does.
 *
 * What is compared:
 *   1. the virt type (<domain type=>), the maximum memory (<memory>, in
 *      KiB, units scaled as libvirt scales them), the maximum vCPU count
 *      (<vcpu> text, 1 when absent), the OS type, architecture and machine
 *      type (<os><type arch= machine=>);
 *   2. per device class of <devices>, the number of devices and, pairwise
 *      in document order, the attributes that decide what the guest sees:
 *      disks (device, bus, target), controllers (type, index, model),
 *      interfaces (model), inputs (type, bus), sounds / videos / watchdogs
 *      / balloons / rngs / panics / tpms (model), host devices (mode,
 *      type), character devices (target type), filesystems (target).
 *
 * Invariants:
 *  1. Pure tree walking over ic_xml_node: no libxml2 here except in the
 *     string entry point, which parses both documents first.
 *  2. The result is the first difference only (libvirt stops at the first
 *     one too); no difference leaves *why NULL.
 *  3. Attributes libvirt would fill with a default when the document omits
 *     them are defaulted the same way where the default is known from the
 *     document alone (disk device "disk", disk bus from the target prefix,
 *     controller index 0); otherwise an absent attribute compares as the
 *     empty value, so "absent" equals only "absent".
 *
 * Libvirt also fills in implicit devices (controllers, inputs, balloon)
 * when it parses a domain; imgchain compares what the documents hold.
 * Both documents of a revert come from the same store, so implicit
 * devices are either spelled out in both or in neither.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"

static int oom(ic_error **errp)
{
    return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
}

/* Sets *why to a formatted message; 1 (a difference was found) or -ENOMEM. */
static int differ(char **why, ic_error **errp, const char *fmt, ...) IC_PRINTF(3, 4);
static int differ(char **why, ic_error **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(why, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *why = NULL;
        return oom(errp);
    }
    return 1;
}

static bool is_elem(const ic_xml_node *n, const char *name)
{
    return n && n->name && !strcmp(n->name, name);
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static bool same_str(const char *a, const char *b)
{
    return !strcmp(str_or_empty(a), str_or_empty(b));
}

/* Children of @parent named @name, in document order (borrowed pointers). */
static int collect(const ic_xml_node ***out, size_t *n, const ic_xml_node *parent,
                   const char *name, ic_error **errp)
{
    *out = NULL;
    *n = 0;
    if (!parent)
        return 0;
    size_t count = 0;
    for (size_t i = 0; i < parent->nchildren; i++)
        if (is_elem(parent->children[i], name))
            count++;
    if (!count)
        return 0;
    const ic_xml_node **v = calloc(count, sizeof(*v));
    if (!v)
        return oom(errp);
    for (size_t i = 0; i < parent->nchildren; i++)
        if (is_elem(parent->children[i], name))
            v[(*n)++] = parent->children[i];
    *out = v;
    return 0;
}

/* ---- scalar settings ---------------------------------------------------- */

/* libvirt's virScaleInteger units for <memory unit=>: the multiplier to
 * KiB-times-1024 (bytes); 0 for an unknown unit. */
static unsigned long long unit_bytes(const char *unit)
{
    static const struct { const char *name; unsigned long long mult; } units[] = {
        { "b", 1 }, { "bytes", 1 },
        { "k", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "KB", 1000ULL },
        { "m", 1ULL << 20 }, { "MiB", 1ULL << 20 }, { "MB", 1000000ULL },
        { "g", 1ULL << 30 }, { "GiB", 1ULL << 30 }, { "GB", 1000000000ULL },
        { "t", 1ULL << 40 }, { "TiB", 1ULL << 40 }, { "TB", 1000000000000ULL },
        { "p", 1ULL << 50 }, { "PiB", 1ULL << 50 }, { "PB", 1000000000000000ULL },
        { "e", 1ULL << 60 }, { "EiB", 1ULL << 60 }, { "EB", 1000000000000000000ULL },
    };
    if (!unit || !*unit)
        return 1ULL << 10;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        /* the single-letter forms are case-insensitive, the others exact */
        if (units[i].name[1] == '\0' ? !strcasecmp(units[i].name, unit)
                                     : !strcmp(units[i].name, unit))
            return units[i].mult;
    }
    return 0;
}

/* <memory> in KiB: 0 when absent, -EINVAL (with a message) when unreadable. */
static int read_memory(unsigned long long *kib, const ic_xml_node *dom, const char *which,
                       ic_error **errp)
{
    *kib = 0;
    const ic_xml_node *m = ic_xml_node_child(dom, "memory");
    if (!m)
        return 0;
    const char *unit = ic_xml_node_attr(m, "unit");
    unsigned long long mult = unit_bytes(unit);
    char *end = NULL;
    errno = 0;
    unsigned long long v = m->text ? strtoull(m->text, &end, 10) : 0;
    if (!mult || !m->text || end == m->text || *end || errno ||
        (v && mult > ULLONG_MAX / v))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s domain: invalid memory size '%s%s%s'", which,
                            str_or_empty(m->text), unit ? " " : "", str_or_empty(unit));
    /* libvirt rounds a byte count up to whole KiB */
    unsigned long long bytes = v * mult;
    *kib = bytes / 1024 + (bytes % 1024 != 0);
    return 0;
}

/* <vcpu> text: the maximum vCPU count; 1 when absent (libvirt's default). */
static int read_vcpus(long *out, const ic_xml_node *dom, const char *which, ic_error **errp)
{
    *out = 1;
    const ic_xml_node *v = ic_xml_node_child(dom, "vcpu");
    if (!v)
        return 0;
    char *end = NULL;
    errno = 0;
    long n = v->text ? strtol(v->text, &end, 10) : 0;
    if (!v->text || end == v->text || *end || errno || n <= 0 || n > INT_MAX)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s domain: invalid vCPU count '%s'", which,
                            str_or_empty(v->text));
    *out = n;
    return 0;
}

static const ic_xml_node *os_type(const ic_xml_node *dom)
{
    return ic_xml_node_child(ic_xml_node_child(dom, "os"), "type");
}

static int check_basics(const ic_xml_node *dst, const ic_xml_node *src, char **why,
                        ic_error **errp)
{
    const char *dv = ic_xml_node_attr(dst, "type"), *sv = ic_xml_node_attr(src, "type");
    if (!same_str(dv, sv))
        return differ(why, errp, "Target domain virt type %s does not match source %s",
                      str_or_empty(dv), str_or_empty(sv));

    unsigned long long dmem, smem;
    int ret = read_memory(&dmem, dst, "target", errp);
    if (ret == 0)
        ret = read_memory(&smem, src, "source", errp);
    if (ret < 0)
        return ret;
    if (dmem != smem)
        return differ(why, errp, "Target domain max memory %llu does not match source %llu",
                      dmem, smem);

    long dcpu, scpu;
    ret = read_vcpus(&dcpu, dst, "target", errp);
    if (ret == 0)
        ret = read_vcpus(&scpu, src, "source", errp);
    if (ret < 0)
        return ret;
    if (dcpu != scpu)
        return differ(why, errp, "Target domain vCPU max %ld does not match source %ld", dcpu,
                      scpu);

    const ic_xml_node *dos = os_type(dst), *sos = os_type(src);
    const char *dt = dos ? dos->text : NULL, *st = sos ? sos->text : NULL;
    if (!same_str(dt, st))
        return differ(why, errp, "Target domain OS type %s does not match source %s",
                      str_or_empty(dt), str_or_empty(st));
    dv = ic_xml_node_attr(dos, "arch");
    sv = ic_xml_node_attr(sos, "arch");
    if (!same_str(dv, sv))
        return differ(why, errp, "Target domain architecture %s does not match source %s",
                      str_or_empty(dv), str_or_empty(sv));
    dv = ic_xml_node_attr(dos, "machine");
    sv = ic_xml_node_attr(sos, "machine");
    if (!same_str(dv, sv))
        return differ(why, errp, "Target domain machine type %s does not match source %s",
                      str_or_empty(dv), str_or_empty(sv));
    return 0;
}

/* ---- devices ------------------------------------------------------------ */

/* Where a compared value lives: attribute @attr of the device element, or
 * of its child element @child when not NULL. */
struct abi_field {
    const char *child;
    const char *attr;
    const char *dflt;       /* value when absent; NULL: compares as "" */
    const char *what;       /* "Target disk bus": the message's subject */
};

struct abi_class {
    const char *element;
    const char *count_what;     /* "Target domain disk count" */
    struct abi_field fields[3];
};

/* A disk's bus when <target bus=> is absent, as libvirt derives it. */
static const char *disk_default_bus(const ic_xml_node *disk)
{
    const char *dev = ic_xml_node_attr(ic_xml_node_child(disk, "target"), "dev");
    const char *device = ic_xml_node_attr(disk, "device");
    if (device && !strcmp(device, "floppy"))
        return "fdc";
    if (!dev)
        return "";
    static const struct { const char *prefix; const char *bus; } p[] = {
        { "hd", "ide" }, { "sd", "scsi" }, { "vd", "virtio" }, { "xvd", "xen" },
        { "ubd", "uml" },
    };
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
        if (!strncmp(dev, p[i].prefix, strlen(p[i].prefix)))
            return p[i].bus;
    return "ide";
}

/* libvirt's order: disks, controllers, filesystems, interfaces, inputs,
 * sounds, videos, host devices, smartcards, serials, parallels, channels,
 * consoles, hubs, redirdevs, rngs, watchdog, balloon, panics, TPMs. */
static const struct abi_class classes[] = {
    { "disk", "Target domain disk count",
      { { NULL, "device", "disk", "Target disk device" },
        { "target", "bus", NULL, "Target disk bus" },
        { "target", "dev", NULL, "Target disk" } } },
    { "controller", "Target domain controller count",
      { { NULL, "type", NULL, "Target controller type" },
        { NULL, "index", "0", "Target controller index" },
        { NULL, "model", NULL, "Target controller model" } } },
    { "filesystem", "Target domain filesystem count",
      { { "target", "dir", NULL,
          "Target filesystem guest target" } } },
    { "interface", "Target domain net card count",
      { { "model", "type", NULL, "Target network card model" } } },
    { "input", "Target domain input device count",
      { { NULL, "type", NULL, "Target input device type" },
        { NULL, "bus", NULL, "Target input device bus" } } },
    { "sound", "Target domain sound card count",
      { { NULL, "model", NULL, "Target sound card model" } } },
    { "video", "Target domain video card count",
      { { "model", "type", NULL, "Target video card model" } } },
    { "hostdev", "Target domain host device count",
      { { NULL, "mode", "subsystem", "Target host device mode" },
        { NULL, "type", NULL, "Target host device subsystem" } } },
    { "smartcard", "Target domain smartcard count",
      { { NULL, "mode", NULL, "Target smartcard mode" } } },
    { "serial", "Target domain serial port count",
      { { "target", "type", NULL, "Target serial type" } } },
    { "parallel", "Target domain parallel port count",
      { { "target", "type", NULL, "Target parallel type" } } },
    { "channel", "Target domain channel count",
      { { "target", "type", NULL, "Target channel type" } } },
    { "console", "Target domain console count",
      { { "target", "type", NULL, "Target console type" } } },
    { "hub", "Target domain hub device count",
      { { NULL, "type", NULL, "Target hub device type" } } },
    { "redirdev", "Target domain redirected devices count",
      { { NULL, "bus", NULL, "Target redirected device bus" } } },
    { "rng", "Target domain RNG device count",
      { { NULL, "model", NULL, "Target RNG model" } } },
    { "watchdog", "Target domain watchdog count",
      { { NULL, "model", NULL, "Target watchdog model" } } },
    { "memballoon", "Target domain memory balloon count",
      { { NULL, "model", NULL, "Target balloon model" } } },
    { "panic", "Target domain panic device count",
      { { NULL, "model", NULL, "Target panic model" } } },
    { "tpm", "Target domain TPM device count",
      { { NULL, "model", NULL, "Target TPM device model" } } },
};

static const char *field_value(const ic_xml_node *dev, const struct abi_field *f,
                               const char *element)
{
    const ic_xml_node *where = f->child ? ic_xml_node_child(dev, f->child) : dev;
    const char *v = ic_xml_node_attr(where, f->attr);
    if (v)
        return v;
    if (!strcmp(element, "disk") && f->child && !strcmp(f->attr, "bus"))
        return disk_default_bus(dev);
    return str_or_empty(f->dflt);
}

static int check_class(const struct abi_class *c, const ic_xml_node *ddevs,
                       const ic_xml_node *sdevs, char **why, ic_error **errp)
{
    const ic_xml_node **d = NULL, **s = NULL;
    size_t nd = 0, ns = 0;
    int ret = collect(&d, &nd, ddevs, c->element, errp);
    if (ret == 0)
        ret = collect(&s, &ns, sdevs, c->element, errp);
    if (ret < 0)
        goto out;
    if (nd != ns) {
        ret = differ(why, errp, "%s %zu does not match source %zu", c->count_what, nd, ns);
        goto out;
    }
    for (size_t i = 0; i < nd && ret == 0; i++)
        for (size_t k = 0; k < 3 && c->fields[k].attr && ret == 0; k++) {
            const char *dv = field_value(d[i], &c->fields[k], c->element);
            const char *sv = field_value(s[i], &c->fields[k], c->element);
            if (strcmp(dv, sv))
                ret = differ(why, errp, "%s %s does not match source %s", c->fields[k].what,
                             dv, sv);
        }
out:
    free(d);
    free(s);
    return ret;
}

static bool is_domain_root(const ic_xml_node *n)
{
    return is_elem(n, "domain") || is_elem(n, "inactiveDomain");
}

int ic_domain_abi_check(const ic_xml_node *target, const ic_xml_node *source, char **why,
                        ic_error **errp)
{
    if (!why)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "no place for the result");
    *why = NULL;
    if (!is_domain_root(target) || !is_domain_root(source))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ABI check: expecting two <domain> elements");
    int ret = check_basics(target, source, why, errp);
    const ic_xml_node *ddevs = ic_xml_node_child(target, "devices");
    const ic_xml_node *sdevs = ic_xml_node_child(source, "devices");
    for (size_t i = 0; ret == 0 && i < sizeof(classes) / sizeof(classes[0]); i++)
        ret = check_class(&classes[i], ddevs, sdevs, why, errp);
    return ret < 0 ? ret : 0;
}

/* Parses a whole document into a tree. */
static int read_tree(ic_xml_node **out, const char *xml, size_t len, const char *which,
                     ic_error **errp)
{
    xmlDocPtr doc = NULL;
    ic_error *err = NULL;
    int ret = ic_xml_read(&doc, xml, len, "domain", "inactiveDomain", &err);
    if (ret == 0) {
        ret = ic_xml_node_from(out, IC_XML(xmlDocGetRootElement)(doc), &err);
        IC_XML(xmlFreeDoc)(doc);
    }
    if (ret < 0) {
        ret = ic_error_set(errp, ic_error_kind_of(err), -ret, "%s domain: %s", which,
                           ic_error_message(err));
        ic_error_free(err);
    }
    return ret;
}

int ic_domain_abi_check_xml(const char *target, size_t tlen, const char *source, size_t slen,
                            char **why, ic_error **errp)
{
    if (!why)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "no place for the result");
    *why = NULL;
    ic_xml_node *t = NULL, *s = NULL;
    int ret = read_tree(&t, target, tlen, "target", errp);
    if (ret == 0)
        ret = read_tree(&s, source, slen, "source", errp);
    if (ret == 0)
        ret = ic_domain_abi_check(t, s, why, errp);
    ic_xml_node_free(t);
    ic_xml_node_free(s);
    return ret;
}
