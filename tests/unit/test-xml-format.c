/*
 * test-xml-format.c - ic_snapshot_def -> libvirt text (src/xml/xml-format.c).
 *
 * The golden files in tests/data/xml are libvirt's own output where libvirt
 * can produce them: full.public.xml, full.xml (secure) and
 * domain-metadata.out.xml were produced by `virsh -c test:///default`
 * (snapshot-create --redefine + snapshot-dumpxml [--security-info]), and
 * tests/cli/xml.sh re-checks that against the installed libvirt.  The
 * metadata form (full.meta.xml, meta-extras.xml) is libvirt's on-disk form.
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

static ic_snapshot_def *parse(const char *xml, unsigned flags)
{
    ic_snapshot_def *def = NULL;
    ic_error *err = NULL;
    if (ic_snapshot_def_parse(&def, xml, strlen(xml), flags, &err) < 0)
        fail_msg("%s", ic_error_message(err));
    return def;
}

static char *format(const ic_snapshot_def *def, unsigned flags)
{
    char *out = NULL;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_format(&out, def, flags, &err);
    if (ret < 0)
        fail_msg("%s", ic_error_message(err));
    assert_true(IC_ERR_CONSISTENT(ret, err));
    return out;
}

/* Replaces the digits of <creationTime> by NOW, for create-mode outputs. */
static void mask_time(char *s)
{
    char *p = strstr(s, "<creationTime>");
    assert_non_null(p);
    p += strlen("<creationTime>");
    char *e = strchr(p, '<');
    assert_non_null(e);
    memmove(p + 3, e, strlen(e) + 1);
    memcpy(p, "NOW", 3);
}

/* parse(@in, @pflags) formatted with @fflags must equal @golden byte for byte. */
static void round_trip(const char *in, unsigned pflags, unsigned fflags, const char *golden,
                       bool masked)
{
    char *xml = slurp(in, NULL);
    char *want = slurp(golden, NULL);
    ic_snapshot_def *def = parse(xml, pflags);
    char *got = format(def, fflags);
    if (masked)
        mask_time(got);
    assert_string_equal(got, want);
    free(got);
    ic_snapshot_def_free(def);
    free(xml);
    free(want);
}

#define RD IC_SNAPSHOT_PARSE_REDEFINE
#define META (IC_SNAPSHOT_PARSE_REDEFINE | IC_SNAPSHOT_PARSE_METADATA)

static void test_xml_format__reproduces_libvirts_secure_output(void **state)
{
    (void)state;
    round_trip("tests/data/xml/full.xml", RD, IC_SNAPSHOT_FORMAT_SECURE,
               "tests/data/xml/full.xml", false);
}

static void test_xml_format__leaves_passwords_out_unless_secure(void **state)
{
    (void)state;
    round_trip("tests/data/xml/full.xml", RD, 0, "tests/data/xml/full.public.xml", false);
    char *pub = slurp("tests/data/xml/full.public.xml", NULL);
    assert_null(strstr(pub, "passwd="));
    free(pub);
}

static void test_xml_format__reproduces_domain_metadata_as_libvirt(void **state)
{
    (void)state;
    round_trip("tests/data/xml/domain-metadata.xml", RD, IC_SNAPSHOT_FORMAT_SECURE,
               "tests/data/xml/domain-metadata.out.xml", false);
    /* and the result is a fixed point */
    round_trip("tests/data/xml/domain-metadata.out.xml", RD, IC_SNAPSHOT_FORMAT_SECURE,
               "tests/data/xml/domain-metadata.out.xml", false);
}

static void test_xml_format__writes_the_metadata_form_with_warning_and_active(void **state)
{
    (void)state;
    char *xml = slurp("tests/data/xml/full.meta.xml", NULL);
    ic_snapshot_def *def = parse(xml, META);
    char *out = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_format_metadata(&out, def, def->active == 1, &err), 0);
    assert_string_equal(out, xml);
    assert_int_equal(strncmp(out, "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE.", 45), 0);
    assert_non_null(strstr(out, "  <active>1</active>\n</domainsnapshot>\n"));
    free(out);
    /* not current: 0; the flags of the plain formatter give the same */
    assert_int_equal(ic_snapshot_def_format_metadata(&out, def, false, &err), 0);
    assert_non_null(strstr(out, "  <active>0</active>\n</domainsnapshot>\n"));
    char *plain = format(def, IC_SNAPSHOT_FORMAT_SECURE | IC_SNAPSHOT_FORMAT_METADATA);
    assert_string_equal(strstr(out, "<domainsnapshot>"), plain);
    free(plain);
    free(out);
    ic_snapshot_def_free(def);
    free(xml);
    xml = slurp("tests/data/xml/meta-extras.xml", NULL);
    def = parse(xml, META);
    assert_int_equal(ic_snapshot_def_format_metadata(&out, def, false, &err), 0);
    assert_string_equal(out, xml);
    free(out);
    ic_snapshot_def_free(def);
    free(xml);
}

static void test_xml_format__drops_what_a_creation_request_ignores(void **state)
{
    (void)state;
    round_trip("tests/data/xml/create.xml", 0, 0, "tests/data/xml/create.out.xml", true);
}

static void test_xml_format__omits_empty_source_and_driver(void **state)
{
    (void)state;
    /* libvirt's disk_snapshot fixture: <source/> + <driver type='qed'/>
     * keeps the driver only, an empty <driver/> disappears, a disk given
     * without a mode keeps none */
    round_trip("tests/data/xml/disk-snapshot.xml", 0, 0, "tests/data/xml/disk-snapshot.out.xml",
               true);
}

static void test_xml_format__escapes_like_virBufferEscapeString(void **state)
{
    (void)state;
    ic_snapshot_def def = { 0 };
    ic_storage_source src = { 0 };
    ic_snapshot_disk_def disk = { 0 };
    static char lit1[] = "a<b>&'\"";
    def.name = lit1;
    static char lit2[] = "tab\tnl\ncr\rbell\x07" "esc\x1b" "end";
    def.description = lit2;
    def.memory = IC_SNAPSHOT_LOCATION_EXTERNAL;
    static char lit3[] = "/m'&";
    def.memory_file = lit3;
    src.type = IC_STORAGE_FILE;
    static char lit4[] = "/x'y";
    src.path = lit4;
    static char lit5[] = "v\"da";
    disk.name = lit5;
    disk.snapshot = IC_SNAPSHOT_LOCATION_EXTERNAL;
    disk.src = &src;
    def.disks = &disk;
    def.ndisks = 1;
    def.active = -1;
    char *out = format(&def, 0);
    assert_string_equal(out,
        "<domainsnapshot>\n"
        "  <name>a&lt;b&gt;&amp;&apos;&quot;</name>\n"
        "  <description>tab\tnl\ncr\rbellescend</description>\n"
        "  <memory snapshot='external' file='/m&apos;&amp;'/>\n"
        "  <disks>\n"
        "    <disk name='v&quot;da' snapshot='external' type='file'>\n"
        "      <source file='/x&apos;y'/>\n"
        "    </disk>\n"
        "  </disks>\n"
        "</domainsnapshot>\n");
    free(out);
}

static void test_xml_format__orders_elements_as_libvirt(void **state)
{
    (void)state;
    /* input in reverse order, including the optional ones */
    ic_snapshot_def *def = parse(
        "<domainsnapshot><cookie><allowReboot value='yes'/></cookie>"
        "<domain><uuid>u</uuid></domain>"
        "<revertDisks><disk name='vda'><source file='/r'/></disk></revertDisks>"
        "<disks><disk name='vda' snapshot='no'/></disks><memory snapshot='no'/>"
        "<creationTime>9</creationTime><parent><name>p</name></parent>"
        "<state>paused</state><description>d</description><name>n</name>"
        "</domainsnapshot>", RD);
    char *out = format(def, IC_SNAPSHOT_FORMAT_METADATA | IC_SNAPSHOT_FORMAT_CURRENT);
    assert_string_equal(out,
        "<domainsnapshot>\n"
        "  <name>n</name>\n"
        "  <description>d</description>\n"
        "  <state>paused</state>\n"
        "  <parent>\n"
        "    <name>p</name>\n"
        "  </parent>\n"
        "  <creationTime>9</creationTime>\n"
        "  <memory snapshot='no'/>\n"
        "  <disks>\n"
        "    <disk name='vda' snapshot='no'/>\n"
        "  </disks>\n"
        "  <revertDisks>\n"
        "    <disk name='vda' snapshot='external' type='file'>\n"
        "      <source file='/r'/>\n"
        "    </disk>\n"
        "  </revertDisks>\n"
        "  <domain>\n"
        "    <uuid>u</uuid>\n"
        "  </domain>\n"
        "  <cookie>\n"
        "    <allowReboot value='yes'/>\n"
        "  </cookie>\n"
        "  <active>1</active>\n"
        "</domainsnapshot>\n");
    free(out);
    ic_snapshot_def_free(def);
}

static void test_xml_format__sorts_source_children_and_formats_network(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse(
        "<domainsnapshot><name>n</name><disks><disk name='vda' type='network'>"
        "<source protocol='rbd' name='p/i' tls='no' query='q'>"
        "<auth username='u'><secret type='ceph' uuid='x'/></auth>"
        "<config file='/c'/><snapshot name='s'/>"
        "<host name='m' port='1' transport='rdma'/>"
        "</source><driver type='qcow2'><metadata_cache><max_size unit='KiB'>2</max_size>"
        "</metadata_cache></driver></disk></disks></domainsnapshot>", 0);
    def->creation_time = 0;     /* leave the creation time out of the comparison */
    char *out = format(def, 0);
    assert_string_equal(out,
        "<domainsnapshot>\n"
        "  <name>n</name>\n"
        "  <disks>\n"
        "    <disk name='vda' snapshot='external' type='network'>\n"
        "      <driver type='qcow2'>\n"
        "        <metadata_cache>\n"
        "          <max_size unit='bytes'>2048</max_size>\n"
        "        </metadata_cache>\n"
        "      </driver>\n"
        "      <source protocol='rbd' name='p/i' query='q' tls='no'>\n"
        "        <host name='m' port='1' transport='rdma'/>\n"
        "        <snapshot name='s'/>\n"
        "        <config file='/c'/>\n"
        "        <auth username='u'>\n"
        "          <secret type='ceph' uuid='x'/>\n"
        "        </auth>\n"
        "      </source>\n"
        "    </disk>\n"
        "  </disks>\n"
        "</domainsnapshot>\n");
    free(out);
    ic_snapshot_def_free(def);
}

static void test_xml_format__never_writes_the_embedded_domain_id(void **state)
{
    (void)state;
    ic_snapshot_def *def = parse(
        "<domainsnapshot><name>n</name><state>running</state><creationTime>1</creationTime>"
        "<domain type='kvm' id='7'><name>vm</name><devices><graphics type='spice' passwd='pw'/>"
        "</devices></domain></domainsnapshot>", RD);
    char *out = format(def, 0);
    assert_non_null(strstr(out, "  <domain type='kvm'>\n    <name>vm</name>\n"));
    assert_non_null(strstr(out, "      <graphics type='spice'/>\n"));
    free(out);
    out = format(def, IC_SNAPSHOT_FORMAT_SECURE);
    assert_non_null(strstr(out, "      <graphics type='spice' passwd='pw'/>\n"));
    free(out);
    ic_snapshot_def_free(def);
}

static void test_xml_format__refuses_out_of_range_values(void **state)
{
    (void)state;
    ic_snapshot_def def = { 0 };
    static char lit6[] = "n";
    def.name = lit6;
    def.state = (ic_snapshot_state)42;
    char *out = NULL;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_format(&out, &def, 0, &err);
    assert_int_equal(ret, -EINVAL);
    assert_true(IC_ERR_CONSISTENT(ret, err));
    assert_null(out);
    assert_string_equal(ic_error_message(err), "state 42 out of range");
    ic_error_free(err);
    err = NULL;
    def.state = IC_SNAPSHOT_STATE_RUNNING;
    ret = ic_snapshot_def_format(&out, &def, 0x100, &err);
    assert_int_equal(ret, -EINVAL);
    assert_string_equal(ic_error_message(err), "ic_snapshot_def_format: unknown flags 0x100");
    ic_error_free(err);
    err = NULL;
    ic_storage_source src = { 0 };
    ic_snapshot_disk_def disk = { 0 };
    src.type = IC_STORAGE_NONE;
    static char lit7[] = "/p";
    src.path = lit7;
    static char lit8[] = "vda";
    disk.name = lit8;
    disk.src = &src;
    def.disks = &disk;
    def.ndisks = 1;
    ret = ic_snapshot_def_format(&out, &def, 0, &err);
    assert_int_equal(ret, -EINVAL);
    assert_string_equal(ic_error_message(err),
                        "disk 'vda' has an out-of-range mode, type or format");
    ic_error_free(err);
    err = NULL;
    ret = ic_snapshot_def_format(&out, NULL, 0, &err);
    assert_int_equal(ret, -EINVAL);
    ic_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_format__reproduces_libvirts_secure_output),
        cmocka_unit_test(test_xml_format__leaves_passwords_out_unless_secure),
        cmocka_unit_test(test_xml_format__reproduces_domain_metadata_as_libvirt),
        cmocka_unit_test(test_xml_format__writes_the_metadata_form_with_warning_and_active),
        cmocka_unit_test(test_xml_format__drops_what_a_creation_request_ignores),
        cmocka_unit_test(test_xml_format__omits_empty_source_and_driver),
        cmocka_unit_test(test_xml_format__escapes_like_virBufferEscapeString),
        cmocka_unit_test(test_xml_format__orders_elements_as_libvirt),
        cmocka_unit_test(test_xml_format__sorts_source_children_and_formats_network),
        cmocka_unit_test(test_xml_format__never_writes_the_embedded_domain_id),
        cmocka_unit_test(test_xml_format__refuses_out_of_range_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
