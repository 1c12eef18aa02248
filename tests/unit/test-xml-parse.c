/*
 * test-xml-parse.c - libvirt <domainsnapshot> and <domain> parsing
 * (src/xml/xml-parse.c, src/xml/xml-domain.c, src/xml/xml-validate.c).
 *
 * Documents come from tests/data/xml (run from the top of the tree, as
 * tests/run.sh does) or are written inline.  Every refusal asserts the
 * errno, the error kind and libvirt's message text.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "imgchain/xml.h"
#include "util/error.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static ic_snapshot_def *parse_file(const char *path, unsigned flags)
{
    size_t len;
    char *xml = slurp(path, &len);
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_parse(&def, xml, len, flags, &err);
    if (ret < 0)
        fail_msg("%s: %s", path, ic_error_message(err));
    assert_true(IC_ERR_CONSISTENT(ret, err));
    free(xml);
    return def;
}

static ic_snapshot_def *parse_str(const char *xml, unsigned flags)
{
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_parse(&def, xml, strlen(xml), flags, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    return def;
}

/* Parses @xml expecting a refusal with exactly @msg. */
static void expect_refusal(const char *xml, unsigned flags, int errnum, ic_error_kind kind,
                           const char *msg)
{
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_parse(&def, xml, strlen(xml), flags, &err);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    if (ret >= 0)
        fail_msg("accepted, expected: %s", msg);
    assert_int_equal(ret, -errnum);
    assert_int_equal(ic_error_errno(err), errnum);
    assert_int_equal(ic_error_kind_of(err), kind);
    assert_string_equal(ic_error_message(err), msg);
    assert_null(def);
    ic_error_free(err);
}

#define RD IC_SNAPSHOT_PARSE_REDEFINE
#define HEAD "<domainsnapshot><name>s</name><state>running</state><creationTime>5</creationTime>"

static void test_xml_parse__reads_every_field_of_a_redefinition(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse_file("tests/data/xml/full.xml", RD);
    assert_string_equal(def->name, "full");
    assert_string_equal(def->description, "Every element & attribute: <tags>, 'quotes' and "
                                          "\"double\"\nsecond line, UTF-8 \xc3\xa9 \xe2\x9c\x93");
    assert_int_equal(def->state, IC_SNAPSHOT_STATE_RUNNING);
    assert_int_equal(def->creation_time, 1700000000);
    assert_string_equal(def->parent_name, "base");
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_string_equal(def->memory_file, "/var/lib/img/full.mem");
    assert_int_equal(def->active, -1);
    assert_int_equal(def->ndisks, 8);

    const ic_snapshot_disk_def *d = &def->disks[0];
    assert_string_equal(d->name, "vda");
    assert_int_equal(d->snapshot, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(d->src->type, IC_STORAGE_FILE);
    assert_int_equal(d->src->format, IC_DISK_FORMAT_QCOW2);
    assert_int_equal(d->src->metadata_cache_max_size, 1048576);
    assert_string_equal(d->src->path, "/var/lib/img/vm.full");
    assert_int_equal(d->src->nextra, 1);
    assert_string_equal(d->src->extra[0]->name, "seclabel");
    assert_string_equal(ic_xml_node_attr(d->src->extra[0], "relabel"), "no");

    d = &def->disks[1];
    assert_int_equal(d->src->type, IC_STORAGE_BLOCK);
    assert_string_equal(d->src->path, "/dev/vg/data-full");

    d = &def->disks[2];
    assert_int_equal(d->src->type, IC_STORAGE_NETWORK);
    assert_string_equal(d->src->protocol, "nbd");
    assert_string_equal(d->src->path, "export");
    assert_int_equal(d->src->nhosts, 1);
    assert_string_equal(d->src->hosts[0].name, "nbd.example.org");
    assert_int_equal(d->src->hosts[0].port, 10809);

    d = &def->disks[3];
    assert_string_equal(d->src->protocol, "gluster");
    assert_int_equal(d->src->nhosts, 2);
    assert_string_equal(d->src->hosts[1].transport, "unix");
    assert_string_equal(d->src->hosts[1].socket, "/run/gluster.sock");
    assert_null(d->src->hosts[1].name);

    assert_int_equal(def->disks[4].snapshot, IC_SNAPSHOT_LOCATION_INTERNAL);
    assert_int_equal(def->disks[5].snapshot, IC_SNAPSHOT_LOCATION_MANUAL);
    assert_int_equal(def->disks[6].snapshot, IC_SNAPSHOT_LOCATION_NO);
    assert_int_equal(def->disks[7].src->format, IC_DISK_FORMAT_QED);

    assert_non_null(def->domain);
    assert_string_equal(def->domain->name, "domain");
    assert_string_equal(ic_xml_node_attr(def->domain, "type"), "test");
    assert_non_null(ic_xml_node_child(def->domain, "devices"));
    assert_non_null(def->dom);
    assert_int_equal(def->dom->ndisks, 8);
    assert_string_equal(def->domain_uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
    assert_non_null(def->inactive_domain);
    assert_string_equal(ic_xml_node_child(def->inactive_domain, "description")->text,
                        "persistent definition");
    assert_null(def->cookie);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__ignores_redefine_only_elements_on_create(void **state)
{
    (void)state;
    long long before = (long long)time(NULL);
    ic_snapshot_def *def = parse_file("tests/data/xml/create.xml", 0);
    long long after = (long long)time(NULL);
    assert_string_equal(def->name, "create");
    assert_int_equal(def->state, IC_SNAPSHOT_STATE_NONE);
    assert_null(def->parent_name);
    assert_null(def->domain);
    assert_null(def->domain_uuid);
    assert_null(def->cookie);
    assert_int_equal(def->active, -1);
    assert_true(def->creation_time >= before && def->creation_time <= after);
    /* a file alone means external memory; a source alone an external disk */
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(def->disks[0].snapshot, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(def->disks[1].snapshot, IC_SNAPSHOT_LOCATION_NO);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__names_an_unnamed_snapshot_by_its_creation_time(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse_str("<domainsnapshot><description>d</description></domainsnapshot>", 0);
    char want[32];
    snprintf(want, sizeof(want), "%lld", def->creation_time);
    assert_string_equal(def->name, want);
    assert_true(def->creation_time > 1600000000);
    ic_snapshot_def_free(def);
    /* an empty <name/> counts as no name (libvirt's XPath string rule) */
    def = parse_str("<domainsnapshot><name></name></domainsnapshot>", 0);
    snprintf(want, sizeof(want), "%lld", def->creation_time);
    assert_string_equal(def->name, want);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__reads_the_metadata_form(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse_file("tests/data/xml/meta-extras.xml",
                                      RD | IC_SNAPSHOT_PARSE_METADATA);
    assert_int_equal(def->active, 0);
    assert_int_equal(def->state, IC_SNAPSHOT_STATE_PAUSED);
    assert_true(def->disks[0].delete_in_progress);
    assert_false(def->disks[1].delete_in_progress);
    const ic_storage_source *rbd = def->disks[2].src;
    assert_string_equal(rbd->snapshot_name, "base");
    assert_string_equal(rbd->config_file, "/etc/ceph/ceph.conf");
    assert_int_equal(rbd->nhosts, 2);
    assert_int_equal(rbd->hosts[1].port, 0);
    assert_int_equal(rbd->nextra, 1);
    assert_string_equal(rbd->extra[0]->name, "auth");
    assert_int_equal(def->nrevert_disks, 1);
    assert_string_equal(def->revert_disks[0].src->path, "/var/lib/img/vm.revert");
    /* the pre-0.9.5 <domain><uuid/></domain> form */
    assert_null(def->domain);
    assert_null(def->dom);
    assert_string_equal(def->domain_uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
    assert_non_null(def->cookie);
    assert_non_null(ic_xml_node_child(def->cookie, "cpu"));
    assert_non_null(ic_xml_node_child(def->cookie, "slirpHelper"));
    ic_snapshot_def_free(def);

    def = parse_file("tests/data/xml/full.meta.xml", RD | IC_SNAPSHOT_PARSE_METADATA);
    assert_int_equal(def->active, 1);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__defaults_memory_by_state_on_redefine(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse_str(
        "<domainsnapshot><name>a</name><state>shutoff</state><creationTime>1</creationTime>"
        "</domainsnapshot>", RD);
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_NO);
    ic_snapshot_def_free(def);
    def = parse_str(
        "<domainsnapshot><name>a</name><state>disk-snapshot</state><creationTime>1</creationTime>"
        "<cookie><slirpHelper/></cookie></domainsnapshot>", RD);
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_NO);
    assert_null(def->cookie);   /* offline snapshots carry no save cookie */
    ic_snapshot_def_free(def);
    def = parse_str(HEAD "</domainsnapshot>", RD);
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_INTERNAL);
    ic_snapshot_def_free(def);
    /* without REDEFINE the memory mode stays "not given" */
    def = parse_str("<domainsnapshot/>", 0);
    assert_int_equal(def->memory, IC_SNAPSHOT_LOCATION_DEFAULT);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__keeps_network_source_details(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse_str(
        "<domainsnapshot><disks><disk name='vda' type='network'><driver type='qcow2'/>"
        "<source protocol='nbd' name='e' tls='yes' query='x=1'>"
        "<host name='h' port='1' transport='tcp'/><host transport='unix' socket='/s'/>"
        "<seclabel model='dac'/><bogus/></source></disk></disks></domainsnapshot>", 0);
    const ic_storage_source *s = def->disks[0].src;
    assert_int_equal(def->disks[0].snapshot, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(s->tls, IC_TRISTATE_YES);
    assert_string_equal(s->query, "x=1");
    assert_null(s->hosts[0].transport);     /* tcp is libvirt's zero value */
    assert_string_equal(s->hosts[1].transport, "unix");
    assert_int_equal(s->nextra, 0);         /* no seclabel on network, unknown dropped */
    ic_snapshot_def_free(def);
}

static void test_xml_parse__scales_metadata_cache_units(void **state)
{
    (void)state;
    static const struct { const char *unit; unsigned long long want; } cases[] = {
        { "", 7 }, { "b", 7 }, { "bytes", 7 }, { "KiB", 7 * 1024ULL }, { "k", 7 * 1024ULL },
        { "KB", 7000 }, { "MB", 7000000 }, { "M", 7ULL << 20 }, { "GiB", 7ULL << 30 },
        { "T", 7ULL << 40 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char xml[512];
        snprintf(xml, sizeof(xml),
                 "<domainsnapshot><disks><disk name='vda'><driver type='qcow2'><metadata_cache>"
                 "<max_size%s%s%s>7</max_size></metadata_cache></driver></disk></disks>"
                 "</domainsnapshot>",
                 *cases[i].unit ? " unit='" : "", cases[i].unit, *cases[i].unit ? "'" : "");
        ic_snapshot_def *def = parse_str(xml, 0);
        assert_int_equal(def->disks[0].src->metadata_cache_max_size, cases[i].want);
        ic_snapshot_def_free(def);
    }
    expect_refusal("<domainsnapshot><disks><disk name='vda'><driver><metadata_cache>"
                   "<max_size unit='parsec'>1</max_size></metadata_cache></driver></disk></disks>"
                   "</domainsnapshot>", 0, EINVAL, IC_ERR_INVALID, "unknown suffix 'parsec'");
    expect_refusal("<domainsnapshot><disks><disk name='vda'><driver><metadata_cache>"
                   "<max_size unit='EiB'>99</max_size></metadata_cache></driver></disk></disks>"
                   "</domainsnapshot>", 0, ERANGE, IC_ERR_INVALID, "value too large: 99");
}

static void test_xml_parse__refuses_relative_disk_path(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><disks><disk name='vda'><source file='vm.snap'/></disk>"
                   "</disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "disk snapshot image path 'vm.snap' must be absolute");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='block'><source dev='sdb'/>"
                   "</disk></disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "disk snapshot image path 'sdb' must be absolute");
}

static void test_xml_parse__refuses_a_source_with_a_non_external_mode(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><disks><disk name='vda' snapshot='internal'>"
                   "<source file='/x.qcow2'/></disk></disks></domainsnapshot>", 0, EINVAL,
                   IC_ERR_INVALID,
                   "file '/x.qcow2' for disk 'vda' requires use of external snapshot mode");
    expect_refusal("<domainsnapshot><disks><disk name='vdb' snapshot='no'>"
                   "<source file='/y'/></disk></disks></domainsnapshot>", 0, EINVAL,
                   IC_ERR_INVALID, "file '/y' for disk 'vdb' requires use of external snapshot mode");
}

static void test_xml_parse__refuses_unknown_driver_and_disk_types(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><disks><disk name='vda'><driver type='qcow3'/></disk>"
                   "</disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "unknown disk snapshot driver 'qcow3'");
    expect_refusal("<domainsnapshot><disks><disk name='vda'><driver type='none'/></disk>"
                   "</disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "unknown disk snapshot driver 'none'");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='dir'/></disks></domainsnapshot>",
                   0, EINVAL, IC_ERR_INVALID, "unsupported disk snapshot type 'dir'");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='volume'/></disks>"
                   "</domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "unsupported disk snapshot type 'volume'");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='floppy'/></disks>"
                   "</domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "unsupported disk snapshot type 'floppy'");
    expect_refusal("<domainsnapshot><disks><disk name='vda' snapshot='default'/></disks>"
                   "</domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "Invalid value for attribute 'snapshot' in element 'disk': 'default'");
    expect_refusal("<domainsnapshot><disks><disk snapshot='no'/></disks></domainsnapshot>", 0,
                   EINVAL, IC_ERR_INVALID, "missing name from disk snapshot element");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='network'><source name='x'/>"
                   "</disk></disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "missing network source protocol type");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='network'>"
                   "<source protocol='smoke' name='x'/></disk></disks></domainsnapshot>", 0,
                   EINVAL, IC_ERR_INVALID, "unknown protocol type 'smoke'");
    expect_refusal("<domainsnapshot><disks><disk name='vda' type='network'>"
                   "<source protocol='nbd'><host name='h' port='99999'/></source></disk></disks>"
                   "</domainsnapshot>", 0, EINVAL, IC_ERR_INVALID, "port '99999' out of range");
}

static void test_xml_parse__refuses_bad_state(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><name>s</name><state>asleep</state>"
                   "<creationTime>1</creationTime></domainsnapshot>", RD, EINVAL, IC_ERR_INVALID,
                   "Invalid state 'asleep' in domain snapshot XML");
    expect_refusal("<domainsnapshot><name>s</name><state>nostate</state>"
                   "<creationTime>1</creationTime></domainsnapshot>", RD, EINVAL, IC_ERR_INVALID,
                   "Invalid state 'nostate' in domain snapshot XML");
    /* without REDEFINE the state is not even read */
    ic_snapshot_def *def = parse_str("<domainsnapshot><state>asleep</state></domainsnapshot>", 0);
    assert_int_equal(def->state, IC_SNAPSHOT_STATE_NONE);
    ic_snapshot_def_free(def);
}

static void test_xml_parse__refuses_memory_rule_breaks(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><memory snapshot='external'/></domainsnapshot>", 0, EINVAL,
                   IC_ERR_INVALID, "external memory snapshots require a filename");
    expect_refusal("<domainsnapshot><memory file='mem.save'/></domainsnapshot>", 0, EINVAL,
                   IC_ERR_INVALID, "memory snapshot file path (mem.save) must be absolute");
    expect_refusal("<domainsnapshot><memory snapshot='internal' file='/m'/></domainsnapshot>", 0,
                   EINVAL, IC_ERR_INVALID, "memory filename '/m' requires external snapshot");
    expect_refusal("<domainsnapshot><memory snapshot='manual'/></domainsnapshot>", 0, ENOTSUP,
                   IC_ERR_UNSUPPORTED, "'manual' memory snapshot mode not supported");
    expect_refusal("<domainsnapshot><memory snapshot='sometimes'/></domainsnapshot>", 0, EINVAL,
                   IC_ERR_INVALID,
                   "Invalid value for attribute 'snapshot' in element 'memory': 'sometimes'");
    expect_refusal("<domainsnapshot><name>s</name><state>shutoff</state><creationTime>1"
                   "</creationTime><memory snapshot='internal'/></domainsnapshot>", RD, EINVAL,
                   IC_ERR_INVALID, "memory state cannot be saved with offline or disk-only snapshot");
}

static void test_xml_parse__refuses_a_disk_named_twice(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><disks><disk name='vda' snapshot='no'/><disk name='vdb'/>"
                   "<disk name='vda'/></disks></domainsnapshot>", 0, EINVAL, IC_ERR_INVALID,
                   "disk 'vda' specified twice");
}

static void test_xml_parse__refuses_a_redefine_without_name_state_or_time(void **state)
{
    (void)state;
    expect_refusal("<domainsnapshot><state>running</state><creationTime>1</creationTime>"
                   "</domainsnapshot>", RD, EINVAL, IC_ERR_INVALID,
                   "a redefined snapshot must have a name");
    expect_refusal("<domainsnapshot><name>s</name><creationTime>1</creationTime>"
                   "</domainsnapshot>", RD, EINVAL, IC_ERR_INVALID,
                   "missing state from existing snapshot");
    expect_refusal("<domainsnapshot><name>s</name><state>running</state></domainsnapshot>", RD,
                   EINVAL, IC_ERR_INVALID, "missing creationTime from existing snapshot");
    expect_refusal("<domainsnapshot><name>s</name><state>running</state>"
                   "<creationTime>yesterday</creationTime></domainsnapshot>", RD, EINVAL,
                   IC_ERR_INVALID, "missing creationTime from existing snapshot");
}

static void test_xml_parse__requires_active_in_the_metadata_form(void **state)
{
    (void)state;
    expect_refusal(HEAD "</domainsnapshot>", RD | IC_SNAPSHOT_PARSE_METADATA, EINVAL,
                   IC_ERR_INVALID, "Could not find 'active' element");
    expect_refusal(HEAD "<active>yes</active></domainsnapshot>", RD | IC_SNAPSHOT_PARSE_METADATA,
                   EINVAL, IC_ERR_INVALID, "Could not find 'active' element");
}

static void test_xml_parse__refuses_malformed_documents(void **state)
{
    (void)state;
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    const char *bad = "<domainsnapshot><name>x</domainsnapshot>";
    int ret = ic_snapshot_def_parse(&def, bad, strlen(bad), 0, &err);
    assert_int_equal(ret, -EINVAL);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    assert_non_null(strstr(ic_error_message(err), "malformed XML at line 1: "));
    ic_error_free(err);
    err = NULL;
    expect_refusal("<domain type='kvm'/>", 0, EINVAL, IC_ERR_INVALID,
                   "expecting root element of 'domainsnapshot', not 'domain'");
    ret = ic_snapshot_def_parse(&def, "<domainsnapshot/>", 17, 0x80, &err);
    assert_int_equal(ret, -EINVAL);
    assert_string_equal(ic_error_message(err), "ic_snapshot_def_parse: unknown flags 0x80");
    ic_error_free(err);
}

static void test_xml_parse__refuses_an_embedded_domain_libvirt_refuses(void **state)
{
    (void)state;
    expect_refusal(HEAD "<domain type='kvm'><devices><disk type='file'><source file='/a'/>"
                   "</disk></devices></domain></domainsnapshot>", RD, EINVAL, IC_ERR_INVALID,
                   "domain in snapshot: missing target information for device '/a'");
    expect_refusal(HEAD "<inactiveDomain><name>x</name></inactiveDomain></domainsnapshot>", RD,
                   EINVAL, IC_ERR_INVALID,
                   "inactiveDomain in snapshot: missing domain type attribute");
}

static void test_xml_parse__validates_against_libvirts_schema(void **state)
{
    (void)state;
    size_t len;
    char *xml = slurp("tests/data/xml/full.xml", &len);
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_xml_validate(xml, len, &err), 0);
    assert_null(err);
    ic_snapshot_def *def = NULL;
    assert_int_equal(ic_snapshot_def_parse(&def, xml, len, RD | IC_SNAPSHOT_PARSE_VALIDATE, &err), 0);
    ic_snapshot_def_free(def);
    free(xml);

    /* unknown elements: ignored by the parser, refused by the schema */
    const char *bogus = "<domainsnapshot><name>a</name><bogus/></domainsnapshot>";
    def = parse_str(bogus, 0);
    ic_snapshot_def_free(def);
    def = NULL;
    int ret = ic_snapshot_def_parse(&def, bogus, strlen(bogus), IC_SNAPSHOT_PARSE_VALIDATE, &err);
    assert_int_equal(ret, -EINVAL);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    assert_non_null(strstr(ic_error_message(err),
                           "XML document failed to validate against schema: "));
    assert_non_null(strstr(ic_error_message(err), "bogus"));
    ic_error_free(err);
    err = NULL;

    /* refusals that only libvirt's schema check makes */
    static const char *const invalid[] = {
        "<domainsnapshot><state>pmsuspended</state></domainsnapshot>",
        "<domainsnapshot><memory snapshot='external'/></domainsnapshot>",
        "<domainsnapshot><disks><disk name='vda'><driver type='raw'/></disk></disks></domainsnapshot>",
        "<domainsnapshot><disks><disk name='vda' type='block'><source file='/a'/></disk></disks></domainsnapshot>",
        "<domainsnapshot><disks><disk name='vda'><source file='/a' startupPolicy='optional'/></disk></disks></domainsnapshot>",
        "<domainsnapshot><disks><disk name='nvme0n1' snapshot='no'/></disks></domainsnapshot>",
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        ret = ic_snapshot_xml_validate(invalid[i], strlen(invalid[i]), &err);
        if (ret != -EINVAL)
            fail_msg("schema accepted: %s", invalid[i]);
        assert_true(IC_ERR_CONSISTENT(ret, err));
        ic_error_free(err);
        err = NULL;
    }
    const char *memfile = "<domainsnapshot><memory file='/m'/></domainsnapshot>";
    assert_int_equal(ic_snapshot_xml_validate(memfile, strlen(memfile), &err), 0);
}

static void test_xml_parse__reports_a_missing_schema_as_enoent(void **state)
{
    (void)state;
    /* the schema is compiled once per process: this runs in a child */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("IMGCHAIN_SNAPSHOT_RNG", "/nonexistent/domainsnapshot.rng", 1);
        ic_error *err = NULL;
        int ret = ic_snapshot_xml_validate("<domainsnapshot/>", 17, &err);
        bool ok = ret == -ENOENT && ic_error_kind_of(err) == IC_ERR_NOTFOUND &&
                  strstr(ic_error_message(err), "cannot load snapshot schema /nonexistent") != NULL;
        ic_error_free(err);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_xml_parse__reads_the_disks_of_a_domain(void **state)
{
    (void)state;
    const char *xml =
        "<domain type='kvm'><name>vm</name><uuid>u-1</uuid><devices>"
        "<disk type='file' device='disk' snapshot='external'><driver name='qemu' type='qcow2'/>"
        "<source file='/img/top.qcow2'/>"
        "<backingStore type='file'><format type='qcow2'/><source file='/img/mid.qcow2'/>"
        "<backingStore type='block'><format type='raw'/><source dev='/dev/sdc'/><backingStore/>"
        "</backingStore></backingStore><target dev='vdb' bus='virtio'/><transient/></disk>"
        "<disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>"
        "<disk type='network'><source protocol='nbd' name='e'><host name='h'/></source>"
        "<target dev='vda'/></disk>"
        "<disk type='volume'><source pool='p' volume='v'/><target dev='sda' bus='scsi'/></disk>"
        "</devices></domain>";
    ic_domain_def *dom = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_domain_def_parse(&dom, xml, strlen(xml), &err), 0);
    assert_string_equal(dom->type, "kvm");
    assert_string_equal(dom->name, "vm");
    assert_string_equal(dom->uuid, "u-1");
    assert_int_equal(dom->ndisks, 4);
    /* libvirt keeps one bus sorted by target: vda moves before vdb */
    assert_string_equal(dom->disks[0].target, "vda");
    assert_string_equal(dom->disks[0].bus, "virtio");
    assert_int_equal(dom->disks[0].type, IC_STORAGE_NETWORK);
    assert_string_equal(dom->disks[0].src->path, "e");
    const ic_domain_disk_def *d = &dom->disks[1];
    assert_string_equal(d->target, "vdb");
    assert_string_equal(d->device, "disk");
    assert_string_equal(d->driver_name, "qemu");
    assert_int_equal(d->src->format, IC_DISK_FORMAT_QCOW2);
    assert_string_equal(d->src->path, "/img/top.qcow2");
    assert_int_equal(d->snapshot, IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_true(d->transient);
    assert_false(d->readonly);
    assert_non_null(d->src->backing);
    assert_string_equal(d->src->backing->path, "/img/mid.qcow2");
    assert_int_equal(d->src->backing->backing->type, IC_STORAGE_BLOCK);
    assert_string_equal(d->src->backing->backing->path, "/dev/sdc");
    assert_int_equal(d->src->backing->backing->format, IC_DISK_FORMAT_RAW);
    assert_true(d->src->backing->backing->backing_terminated);
    assert_null(d->src->backing->backing->backing);
    d = &dom->disks[2];
    assert_string_equal(d->target, "hdc");
    assert_string_equal(d->device, "cdrom");
    assert_string_equal(d->bus, "ide");
    assert_true(d->readonly);
    assert_int_equal(d->snapshot, IC_SNAPSHOT_LOCATION_NO);   /* read-only default */
    assert_null(d->src->path);
    assert_int_equal(dom->disks[3].type, IC_STORAGE_VOLUME);
    assert_null(dom->disks[3].src->path);

    assert_int_equal(ic_domain_def_disk_index(dom, "vdb"), 1);
    assert_int_equal(ic_domain_def_disk_index(dom, "/img/top.qcow2"), 1);
    assert_int_equal(ic_domain_def_disk_index(dom, "/img/none"), -1);
    assert_int_equal(ic_domain_def_disk_index(dom, "vdz"), -1);
    ic_domain_def_free(dom);
    ic_domain_def_free(NULL);
}

static void test_xml_parse__refuses_domain_disks_libvirt_refuses(void **state)
{
    (void)state;
    static const struct { const char *xml; const char *msg; } cases[] = {
        { "<domain><devices/></domain>", "missing domain type attribute" },
        { "<domain type='kvm'><devices><disk type='file'><source file='/a'/></disk></devices></domain>",
          "missing target information for device '/a'" },
        { "<domain type='kvm'><devices><disk type='tape'><target dev='vda'/></disk></devices></domain>",
          "Invalid value for attribute 'type' in element 'disk': 'tape'" },
        { "<domain type='kvm'><devices><disk device='tape'><target dev='vda'/></disk></devices></domain>",
          "Invalid value for attribute 'device' in element 'disk': 'tape'" },
        { "<domain type='kvm'><devices><disk snapshot='later'><target dev='vda'/></disk></devices></domain>",
          "Invalid value for attribute 'snapshot' in element 'disk': 'later'" },
        { "<domain type='kvm'><devices><disk><driver type='qcow9'/><target dev='vda'/></disk></devices></domain>",
          "unknown driver format value 'qcow9'" },
        { "<domain type='kvm'><devices><disk><source file='/a'/><target dev='vda'/></disk>"
          "<disk><source file='/b'/><target dev='vda'/></disk></devices></domain>",
          "target 'vda' duplicated for disk sources '/a' and '/b'" },
        { "<domainsnapshot/>", "expecting root element of 'domain', not 'domainsnapshot'" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ic_domain_def *dom = NULL;
        ic_error *err = NULL;
        int ret = ic_domain_def_parse(&dom, cases[i].xml, strlen(cases[i].xml), &err);
        assert_int_equal(ret, -EINVAL);
        assert_true(IC_ERR_CONSISTENT(ret, err));
        assert_null(dom);
        assert_string_equal(ic_error_message(err), cases[i].msg);
        ic_error_free(err);
    }
}

static void test_xml_parse__frees_null_safely(void **state)
{
    (void)state;
    ic_snapshot_def_free(NULL);
    ic_xml_node_free(NULL);
    ic_storage_source_free(NULL);
    assert_null(ic_xml_node_attr(NULL, "x"));
    assert_null(ic_xml_node_child(NULL, "x"));
    assert_string_equal(ic_snapshot_state_name(IC_SNAPSHOT_STATE_DISK_SNAPSHOT), "disk-snapshot");
    assert_null(ic_snapshot_state_name((ic_snapshot_state)99));
    assert_string_equal(ic_snapshot_location_name(IC_SNAPSHOT_LOCATION_MANUAL), "manual");
    assert_string_equal(ic_storage_type_name(IC_STORAGE_NETWORK), "network");
    assert_string_equal(ic_disk_format_name(IC_DISK_FORMAT_QED), "qed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: the schema must not be compiled (cached) yet when it forks */
        cmocka_unit_test(test_xml_parse__reports_a_missing_schema_as_enoent),
        cmocka_unit_test(test_xml_parse__reads_every_field_of_a_redefinition),
        cmocka_unit_test(test_xml_parse__ignores_redefine_only_elements_on_create),
        cmocka_unit_test(test_xml_parse__names_an_unnamed_snapshot_by_its_creation_time),
        cmocka_unit_test(test_xml_parse__reads_the_metadata_form),
        cmocka_unit_test(test_xml_parse__defaults_memory_by_state_on_redefine),
        cmocka_unit_test(test_xml_parse__keeps_network_source_details),
        cmocka_unit_test(test_xml_parse__scales_metadata_cache_units),
        cmocka_unit_test(test_xml_parse__refuses_relative_disk_path),
        cmocka_unit_test(test_xml_parse__refuses_a_source_with_a_non_external_mode),
        cmocka_unit_test(test_xml_parse__refuses_unknown_driver_and_disk_types),
        cmocka_unit_test(test_xml_parse__refuses_bad_state),
        cmocka_unit_test(test_xml_parse__refuses_memory_rule_breaks),
        cmocka_unit_test(test_xml_parse__refuses_a_disk_named_twice),
        cmocka_unit_test(test_xml_parse__refuses_a_redefine_without_name_state_or_time),
        cmocka_unit_test(test_xml_parse__requires_active_in_the_metadata_form),
        cmocka_unit_test(test_xml_parse__refuses_malformed_documents),
        cmocka_unit_test(test_xml_parse__refuses_an_embedded_domain_libvirt_refuses),
        cmocka_unit_test(test_xml_parse__validates_against_libvirts_schema),
        cmocka_unit_test(test_xml_parse__reads_the_disks_of_a_domain),
        cmocka_unit_test(test_xml_parse__refuses_domain_disks_libvirt_refuses),
        cmocka_unit_test(test_xml_parse__frees_null_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
