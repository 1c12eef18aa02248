/*
 * test-xml-align.c - snapshot disks aligned with the domain's
 * (src/xml/xml-align.c, libvirt's alignment rules).
 *
 * The host is faked: a table tells the path probe what each domain source
 * is, so block devices and missing files need no real devices.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imgchain/xml.h"
#include "util/error.h"

static const struct { const char *path; ic_path_kind kind; } host[] = {
    { "/img/vm.qcow2", IC_PATH_REGULAR },
    { "/img/data", IC_PATH_REGULAR },
    { "/dev/sdb", IC_PATH_BLOCK },
    { "/img/d.raw", IC_PATH_REGULAR },
    { "/img.d/disk", IC_PATH_REGULAR },
    { "/img/a.qcow2", IC_PATH_REGULAR },
    { "/img/a.raw", IC_PATH_REGULAR },
    { "/img/dir", IC_PATH_OTHER },
};

static int probes;

static ic_path_kind fake_kind(const char *path, void *payload)
{
    assert_ptr_equal(payload, &probes);
    probes++;
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++)
        if (!strcmp(host[i].path, path))
            return host[i].kind;
    return IC_PATH_MISSING;
}

/* vda file, vdb file without suffix, vdc block, hdc empty cdrom, vdd file
 * the domain keeps out of snapshots, vde file in a dotted directory, vdf
 * network; document order differs from libvirt's (vdf first). */
static const char domain_xml[] =
    "<domain type='kvm'><name>vm</name><uuid>u</uuid><devices>"
    "<disk type='network'><source protocol='nbd' name='e'><host name='h'/></source>"
    "<target dev='vdf' bus='virtio'/></disk>"
    "<disk type='file'><driver name='qemu' type='qcow2'/><source file='/img/vm.qcow2'/>"
    "<target dev='vda' bus='virtio'/></disk>"
    "<disk type='file'><source file='/img/data'/><target dev='vdb' bus='virtio'/></disk>"
    "<disk type='block'><source dev='/dev/sdb'/><target dev='vdc' bus='virtio'/></disk>"
    "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"
    "<disk type='file' snapshot='no'><source file='/img/d.raw'/><target dev='vdd' bus='virtio'/>"
    "</disk>"
    "<disk type='file'><source file='/img.d/disk'/><target dev='vde' bus='virtio'/></disk>"
    "</devices></domain>";

static ic_domain_def *domain(const char *xml)
{
    ic_domain_def *dom = NULL;
    ic_error *err = NULL;
    if (ic_domain_def_parse(&dom, xml, strlen(xml), &err) < 0)
        fail_msg("%s", ic_error_message(err));
    return dom;
}

static ic_snapshot_def *snap(const char *disks)
{
    char xml[4096];
    snprintf(xml, sizeof(xml), "<domainsnapshot><name>snap1</name><disks>%s</disks>"
             "</domainsnapshot>", disks);
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    if (ic_snapshot_def_parse(&def, xml, strlen(xml), 0, &err) < 0)
        fail_msg("%s", ic_error_message(err));
    return def;
}

static ic_snapshot_align_options opts_with(ic_snapshot_location mode)
{
    ic_snapshot_align_options o = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
    o.default_mode = mode;
    o.path_kind = fake_kind;
    o.payload = &probes;
    return o;
}

/* "name:mode[:path]" of every disk, space-separated. */
static char *summary(const ic_snapshot_def *def)
{
    static char buf[2048];
    buf[0] = '\0';
    for (size_t i = 0; i < def->ndisks; i++) {
        const ic_snapshot_disk_def *d = &def->disks[i];
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, "%s%s:%s%s%s", i ? " " : "", d->name,
                 ic_snapshot_location_name(d->snapshot), d->src->path ? ":" : "",
                 d->src->path ? d->src->path : "");
    }
    return buf;
}

static void expect_align_error(const char *disks, const ic_snapshot_align_options *o,
                               const char *msg)
{
    ic_domain_def *dom = domain(domain_xml);
    ic_snapshot_def *def = snap(disks);
    char before[2048];
    snprintf(before, sizeof(before), "%s", summary(def));
    ic_error *err = NULL;
    int ret = ic_snapshot_def_align_disks(def, dom, o, &err);
    assert_int_equal(ret, -EINVAL);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_int_equal(ic_error_kind_of(err), IC_ERR_INVALID);
    assert_string_equal(ic_error_message(err), msg);
    /* all or nothing: the definition is untouched */
    assert_string_equal(summary(def), before);
    ic_error_free(err);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void align_ok(ic_snapshot_def *def, const ic_domain_def *dom,
                     const ic_snapshot_align_options *o)
{
    ic_error *err = NULL;
    int ret = ic_snapshot_def_align_disks(def, dom, o, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    assert_null(err);
}

static void test_xml_align__fills_missing_disks_in_domain_order(void **state)
{
    (void)state;
    ic_domain_def *dom = domain(domain_xml);
    ic_snapshot_def *def = snap("<disk name='vdb'><source file='/snap/b.new'/></disk>");
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_INTERNAL);
    probes = 0;
    align_ok(def, dom, &o);
    /* libvirt's domain order (checked with `virsh define; dumpxml`): the
     * virtio disks sorted, the ide cdrom after them */
    assert_string_equal(summary(def),
                        "vda:internal vdb:external:/snap/b.new vdc:internal vdd:no "
                        "vde:internal vdf:internal hdc:no");
    assert_int_equal(probes, 0);    /* nothing to name */
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__matches_by_source_path_and_renames_to_target(void **state)
{
    (void)state;
    ic_domain_def *dom = domain(domain_xml);
    ic_snapshot_def *def = snap("<disk name='/img.d/disk' snapshot='no'/>"
                                "<disk name='/img/vm.qcow2' snapshot='manual'/>");
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_NO);
    align_ok(def, dom, &o);
    assert_string_equal(summary(def),
                        "vda:manual vdb:no vdc:no vdd:no vde:no vdf:no hdc:no");
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__generates_default_external_names(void **state)
{
    (void)state;
    ic_domain_def *dom = domain(domain_xml);
    ic_snapshot_def *def = snap("<disk name='vdc' snapshot='no'/><disk name='vdf' snapshot='no'/>"
                                "<disk name='vdd' snapshot='external'><driver type='qed'/></disk>");
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_EXTERNAL);
    align_ok(def, dom, &o);
    /* last suffix of the last component replaced; a dot in a directory is
     * not a suffix; a request overrides the domain's snapshot='no' */
    assert_string_equal(summary(def),
                        "vda:external:/img/vm.snap1 vdb:external:/img/data.snap1 vdc:no "
                        "vdd:external:/img/d.snap1 vde:external:/img.d/disk.snap1 vdf:no hdc:no");
    assert_int_equal(def->disks[3].src->format, IC_DISK_FORMAT_QED);
    assert_int_equal(def->disks[0].src->type, IC_STORAGE_FILE);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__names_an_unnamed_snapshot_file_by_creation_time(void **state)
{
    (void)state;
    ic_domain_def *dom = domain("<domain type='kvm'><devices><disk><source file='/img/vm.qcow2'/>"
                                "<target dev='vda'/></disk></devices></domain>");
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_parse(&def, "<domainsnapshot/>", 17, 0, &err), 0);
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_EXTERNAL);
    align_ok(def, dom, &o);
    char want[64];
    snprintf(want, sizeof(want), "/img/vm.%lld", def->creation_time);
    assert_string_equal(def->name + 0, want + strlen("/img/vm."));
    assert_string_equal(def->disks[0].src->path, want);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__refuses_block_devices_and_non_regular_files(void **state)
{
    (void)state;
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_NO);
    expect_align_error("<disk name='vda' snapshot='external' type='block'/>", &o,
                       "cannot generate external snapshot name for disk 'vda' on a 'block' device");
    expect_align_error("<disk name='vdf' snapshot='external' type='network'/>", &o,
                       "cannot generate external snapshot name for disk 'vdf' on a 'network' device");
    expect_align_error("<disk name='vdc' snapshot='external'/>", &o,
                       "source for disk 'vdc' is not a regular file; refusing to generate "
                       "external snapshot name");
    expect_align_error("<disk name='vdf' snapshot='external'/>", &o,
                       "source for disk 'vdf' is not a regular file; refusing to generate "
                       "external snapshot name");
    expect_align_error("<disk name='hdc' snapshot='external'/>", &o,
                       "cannot generate external snapshot name for disk 'hdc' without source");
    ic_snapshot_align_options noprobe = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
    noprobe.default_mode = IC_SNAPSHOT_LOCATION_NO;
    expect_align_error("<disk name='vda' snapshot='external'/>", &noprobe,
                       "cannot generate external snapshot name for disk 'vda': no way to inspect "
                       "'/img/vm.qcow2'");
}

static void test_xml_align__refuses_colliding_default_names(void **state)
{
    (void)state;
    ic_domain_def *dom = domain("<domain type='kvm'><devices>"
                                "<disk><source file='/img/a.qcow2'/><target dev='vda'/></disk>"
                                "<disk><source file='/img/a.raw'/><target dev='vdb'/></disk>"
                                "</devices></domain>");
    ic_snapshot_def *def = snap("");
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_EXTERNAL);
    ic_error *err = NULL;
    int ret = ic_snapshot_def_align_disks(def, dom, &o, &err);
    assert_int_equal(ret, -EINVAL);
    assert_string_equal(ic_error_message(err),
                        "cannot generate external snapshot name for disk 'vdb': collision with "
                        "disk 'vda'");
    assert_int_equal(def->ndisks, 0);
    ic_error_free(err);
    err = NULL;
    ic_snapshot_def_free(def);
    /* a generated name may also collide with a file the request gave */
    def = snap("<disk name='vda'><source file='/img/a.snap1'/></disk>");
    ret = ic_snapshot_def_align_disks(def, dom, &o, &err);
    assert_int_equal(ret, -EINVAL);
    assert_string_equal(ic_error_message(err),
                        "cannot generate external snapshot name for disk 'vdb': collision with "
                        "disk 'vda'");
    ic_error_free(err);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__refuses_unknown_extra_and_twice_named_disks(void **state)
{
    (void)state;
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_NO);
    expect_align_error("<disk name='vdz' snapshot='no'/>", &o, "no disk named 'vdz'");
    expect_align_error("<disk name='/img/none' snapshot='no'/>", &o, "no disk named '/img/none'");
    expect_align_error("<disk name='vda' snapshot='no'/><disk name='/img/vm.qcow2' snapshot='no'/>",
                       &o, "disk '/img/vm.qcow2' specified twice");
    expect_align_error("<disk name='vda'/><disk name='vdb'/><disk name='vdc'/><disk name='vdd'/>"
                       "<disk name='vde'/><disk name='vdf'/><disk name='hdc'/><disk name='sda'/>",
                       &o, "too many disk snapshot requests for domain");
    /* an ambiguous source path matches nothing */
    ic_domain_def *dom = domain("<domain type='kvm'><devices>"
                                "<disk><source file='/img/a.qcow2'/><target dev='vda'/></disk>"
                                "<disk><source file='/img/a.qcow2'/><target dev='vdb'/></disk>"
                                "</devices></domain>");
    ic_snapshot_def *def = snap("<disk name='/img/a.qcow2' snapshot='no'/>");
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_align_disks(def, dom, &o, &err), -EINVAL);
    assert_string_equal(ic_error_message(err), "no disk named '/img/a.qcow2'");
    ic_error_free(err);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__enforces_uniform_internal_snapshots(void **state)
{
    (void)state;
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_INTERNAL);
    o.uniform_internal = true;
    expect_align_error("<disk name='vda' snapshot='no'/>", &o,
                       "disk 'vda' must use snapshot mode 'internal'");
    ic_domain_def *dom = domain(domain_xml);
    /* no on both sides is fine; the empty cdrom is no */
    ic_snapshot_def *def = snap("<disk name='vdd' snapshot='no'/>");
    align_ok(def, dom, &o);
    assert_string_equal(summary(def),
                        "vda:internal vdb:internal vdc:internal vdd:no vde:internal "
                        "vdf:internal hdc:no");
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__refuses_a_file_without_external_mode(void **state)
{
    (void)state;
    ic_domain_def *dom = domain(domain_xml);
    ic_snapshot_def *def = snap("<disk name='/img/vm.qcow2'><source file='/s/new'/></disk>");
    def->disks[0].snapshot = IC_SNAPSHOT_LOCATION_INTERNAL;  /* what the parser refuses */
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_INTERNAL);
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_align_disks(def, dom, &o, &err), -EINVAL);
    assert_string_equal(ic_error_message(err),
                        "file '/s/new' for disk 'vda' requires use of external snapshot mode");
    ic_error_free(err);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__uses_the_embedded_domain_when_none_is_given(void **state)
{
    (void)state;
    const char *xml =
        "<domainsnapshot><name>s</name><state>shutoff</state><creationTime>1</creationTime>"
        "<domain type='kvm'><devices><disk><source file='/img/vm.qcow2'/><target dev='vda'/>"
        "</disk></devices></domain></domainsnapshot>";
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_parse(&def, xml, strlen(xml), IC_SNAPSHOT_PARSE_REDEFINE,
                                           &err), 0);
    ic_snapshot_align_options o = opts_with(IC_SNAPSHOT_LOCATION_EXTERNAL);
    align_ok(def, NULL, &o);
    assert_string_equal(summary(def), "vda:external:/img/vm.s");
    ic_snapshot_def_free(def);

    def = snap("");
    assert_int_equal(ic_snapshot_def_align_disks(def, NULL, &o, &err), -EINVAL);
    assert_string_equal(ic_error_message(err), "missing domain in snapshot");
    ic_error_free(err);
    err = NULL;
    o.default_mode = IC_SNAPSHOT_LOCATION_DEFAULT;
    ic_domain_def *dom = domain(domain_xml);
    assert_int_equal(ic_snapshot_def_align_disks(def, dom, &o, &err), -EINVAL);
    assert_non_null(strstr(ic_error_message(err), "default mode must be"));
    ic_error_free(err);
    err = NULL;
    o = opts_with(IC_SNAPSHOT_LOCATION_NO);
    o.version = 99;
    assert_int_equal(ic_snapshot_def_align_disks(def, dom, &o, &err), -EINVAL);
    ic_error_free(err);
    /* NULL options: internal by default, and an empty domain is a no-op */
    err = NULL;
    align_ok(def, dom, NULL);
    assert_int_equal(def->ndisks, 7);
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
}

static void test_xml_align__picks_libvirts_run_default(void **state)
{
    (void)state;
    ic_snapshot_def *def = snap("<disk name='vda' snapshot='no'/>");
    assert_int_equal(ic_snapshot_align_default_mode(def, false, false), IC_SNAPSHOT_LOCATION_INTERNAL);
    assert_int_equal(ic_snapshot_align_default_mode(def, true, false), IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(ic_snapshot_align_default_mode(def, false, true), IC_SNAPSHOT_LOCATION_INTERNAL);
    def->disks[0].snapshot = IC_SNAPSHOT_LOCATION_EXTERNAL;
    assert_int_equal(ic_snapshot_align_default_mode(def, false, true), IC_SNAPSHOT_LOCATION_EXTERNAL);
    assert_int_equal(ic_snapshot_align_default_mode(def, false, false), IC_SNAPSHOT_LOCATION_INTERNAL);
    def->memory = IC_SNAPSHOT_LOCATION_EXTERNAL;
    def->disks[0].snapshot = IC_SNAPSHOT_LOCATION_NO;
    assert_int_equal(ic_snapshot_align_default_mode(def, false, false), IC_SNAPSHOT_LOCATION_EXTERNAL);
    ic_snapshot_def_free(def);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_align__fills_missing_disks_in_domain_order),
        cmocka_unit_test(test_xml_align__matches_by_source_path_and_renames_to_target),
        cmocka_unit_test(test_xml_align__generates_default_external_names),
        cmocka_unit_test(test_xml_align__names_an_unnamed_snapshot_file_by_creation_time),
        cmocka_unit_test(test_xml_align__refuses_block_devices_and_non_regular_files),
        cmocka_unit_test(test_xml_align__refuses_colliding_default_names),
        cmocka_unit_test(test_xml_align__refuses_unknown_extra_and_twice_named_disks),
        cmocka_unit_test(test_xml_align__enforces_uniform_internal_snapshots),
        cmocka_unit_test(test_xml_align__refuses_a_file_without_external_mode),
        cmocka_unit_test(test_xml_align__uses_the_embedded_domain_when_none_is_given),
        cmocka_unit_test(test_xml_align__picks_libvirts_run_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
