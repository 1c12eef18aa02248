/*
 * test-xml-abi.c - the ABI-compatibility check snapshot-revert makes
 * between a snapshot's <domain> and the domain as it is
 * (src/xml/xml-abi.c).  "Target" is the snapshot's domain, "source" the
 * current one, as in libvirt's messages.
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

/* A domain with the given pieces; NULL pieces take the base values. */
struct dom_parts {
    const char *type, *memory, *vcpu, *os, *devices;
};

static char *domain(const struct dom_parts *p)
{
    char *xml = NULL;
    int n = asprintf(&xml,
                     "<domain type='%s'><name>vm</name>"
                     "<uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>%s%s%s"
                     "<devices>%s</devices></domain>",
                     p->type ? p->type : "kvm",
                     p->memory ? p->memory : "<memory unit='KiB'>1048576</memory>",
                     p->vcpu ? p->vcpu : "<vcpu placement='static'>2</vcpu>",
                     p->os ? p->os
                           : "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>",
                     p->devices ? p->devices
                                : "<disk type='file' device='disk'>"
                                  "<driver name='qemu' type='qcow2'/>"
                                  "<source file='/vm/a.qcow2'/>"
                                  "<target dev='vda' bus='virtio'/></disk>"
                                  "<interface type='network'><source network='default'/>"
                                  "<model type='virtio'/></interface>");
    assert_true(n > 0);
    return xml;
}

/* Runs the check: target = snapshot's domain, source = current. */
static int check(const struct dom_parts *target, const struct dom_parts *source, char **why)
{
    char *t = domain(target), *s = domain(source);
    ic_error *err = NULL;
    int ret = ic_domain_abi_check_xml(t, strlen(t), s, strlen(s), why, &err);
    if (ret < 0)
        fail_msg("unexpected error: %s", ic_error_message(err));
    free(t);
    free(s);
    return ret;
}

static void expect_difference(const struct dom_parts *target, const struct dom_parts *source,
                              const char *message)
{
    char *why = NULL;
    assert_int_equal(check(target, source, &why), 0);
    assert_non_null(why);
    assert_string_equal(why, message);
    free(why);
}

static void expect_compatible(const struct dom_parts *target, const struct dom_parts *source)
{
    char *why = NULL;
    assert_int_equal(check(target, source, &why), 0);
    if (why)
        fail_msg("expected compatible, got: %s", why);
}

static void test_identical_domains_are_compatible(void **state)
{
    (void)state;
    struct dom_parts p = { 0 };
    expect_compatible(&p, &p);
}

static void test_moved_disk_sources_are_still_compatible(void **state)
{
    (void)state;
    /* an external snapshot moves the source: that is no ABI change */
    struct dom_parts now = { .devices = "<disk type='file'><driver name='qemu' type='qcow2'/>"
                                        "<source file='/vm/a.s1'/>"
                                        "<target dev='vda' bus='virtio'/></disk>"
                                        "<interface type='network'><source network='other'/>"
                                        "<model type='virtio'/></interface>" };
    struct dom_parts snap = { 0 };
    expect_compatible(&snap, &now);
}

static void test_a_different_vcpu_count_is_reported_as_libvirt_words_it(void **state)
{
    (void)state;
    struct dom_parts snap = { .vcpu = "<vcpu placement='static' current='1'>4</vcpu>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target domain vCPU max 4 does not match source 2");
}

static void test_a_missing_vcpu_element_counts_as_one_vcpu(void **state)
{
    (void)state;
    struct dom_parts snap = { .vcpu = "<vcpu>1</vcpu>" };
    struct dom_parts now = { .vcpu = "" };
    expect_compatible(&snap, &now);
    struct dom_parts two = { 0 };
    expect_difference(&two, &now, "Target domain vCPU max 2 does not match source 1");
}

static void test_memory_is_compared_in_kib_whatever_the_unit(void **state)
{
    (void)state;
    struct dom_parts gib = { .memory = "<memory unit='GiB'>1</memory>" };
    struct dom_parts kib = { 0 };
    struct dom_parts bare = { .memory = "<memory>1048576</memory>" };
    expect_compatible(&gib, &kib);
    expect_compatible(&bare, &gib);
    struct dom_parts two = { .memory = "<memory unit='M'>2048</memory>" };
    expect_difference(&two, &kib, "Target domain max memory 2097152 does not match source 1048576");
}

static void test_a_different_machine_type_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .os = "<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>"
                                    "</os>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now,
                      "Target domain machine type pc-i440fx-7.2 does not match source pc-q35-7.2");
}

static void test_a_different_architecture_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .os = "<os><type arch='aarch64' machine='pc-q35-7.2'>hvm</type>"
                                    "</os>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target domain architecture aarch64 does not match source x86_64");
}

static void test_a_different_virt_type_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .type = "qemu" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target domain virt type qemu does not match source kvm");
}

static void test_an_added_disk_changes_the_disk_count(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vda' bus='virtio'/></disk>"
                                         "<disk type='file'><source file='/vm/b.qcow2'/>"
                                         "<target dev='vdb' bus='virtio'/></disk>" };
    struct dom_parts now = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                        "<target dev='vda' bus='virtio'/></disk>" };
    expect_difference(&snap, &now, "Target domain disk count 2 does not match source 1");
}

static void test_a_disk_moved_to_another_bus_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vda' bus='sata'/></disk>"
                                         "<interface type='network'><model type='virtio'/>"
                                         "</interface>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target disk bus sata does not match source virtio");
}

static void test_a_disk_bus_left_out_is_derived_from_the_target_name(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vda'/></disk>"
                                         "<interface type='network'><model type='virtio'/>"
                                         "</interface>" };
    struct dom_parts now = { 0 };
    expect_compatible(&snap, &now);
    struct dom_parts sd = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                       "<target dev='sda'/></disk>"
                                       "<interface type='network'><model type='virtio'/>"
                                       "</interface>" };
    expect_difference(&sd, &now, "Target disk bus scsi does not match source virtio");
}

static void test_a_disk_turned_into_a_cdrom_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file' device='cdrom'>"
                                         "<source file='/vm/a.qcow2'/>"
                                         "<target dev='vda' bus='virtio'/></disk>"
                                         "<interface type='network'><model type='virtio'/>"
                                         "</interface>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target disk device cdrom does not match source disk");
}

static void test_a_renamed_disk_target_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vdb' bus='virtio'/></disk>"
                                         "<interface type='network'><model type='virtio'/>"
                                         "</interface>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target disk vdb does not match source vda");
}

static void test_a_different_network_card_model_is_incompatible(void **state)
{
    (void)state;
    struct dom_parts snap = { .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vda' bus='virtio'/></disk>"
                                         "<interface type='network'><model type='e1000'/>"
                                         "</interface>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target network card model e1000 does not match source virtio");
}

static void test_controllers_compare_type_and_index_with_index_zero_by_default(void **state)
{
    (void)state;
    const char *disks = "<disk type='file'><source file='/vm/a.qcow2'/>"
                        "<target dev='vda' bus='virtio'/></disk>"
                        "<interface type='network'><model type='virtio'/></interface>";
    char implicit[512], explicit_[512], other[512];
    snprintf(implicit, sizeof(implicit), "%s<controller type='usb' model='qemu-xhci'/>", disks);
    snprintf(explicit_, sizeof(explicit_),
             "%s<controller type='usb' index='0' model='qemu-xhci'/>", disks);
    snprintf(other, sizeof(other), "%s<controller type='usb' index='0' model='ich9-ehci1'/>",
             disks);
    struct dom_parts a = { .devices = implicit }, b = { .devices = explicit_ },
                     c = { .devices = other };
    expect_compatible(&a, &b);
    expect_difference(&c, &b, "Target controller model ich9-ehci1 does not match source qemu-xhci");
    struct dom_parts none = { 0 };
    expect_difference(&a, &none, "Target domain controller count 1 does not match source 0");
}

static void test_the_first_difference_in_libvirt_order_is_the_one_reported(void **state)
{
    (void)state;
    /* vCPUs and disk bus both differ: libvirt checks vCPUs first */
    struct dom_parts snap = { .vcpu = "<vcpu>8</vcpu>",
                              .devices = "<disk type='file'><source file='/vm/a.qcow2'/>"
                                         "<target dev='vda' bus='sata'/></disk>" };
    struct dom_parts now = { 0 };
    expect_difference(&snap, &now, "Target domain vCPU max 8 does not match source 2");
}

static void test_a_snapshot_embedded_domain_is_checked_as_a_tree(void **state)
{
    (void)state;
    /* the form revert has: the <domain> a snapshot stored, as a tree */
    struct dom_parts cur = { 0 }, old = { .vcpu = "<vcpu>1</vcpu>" };
    char *now = domain(&cur), *then = domain(&old), *snap = NULL;
    assert_true(asprintf(&snap, "<domainsnapshot><name>s1</name><state>shutoff</state>"
                               "<creationTime>1700000000</creationTime>%s</domainsnapshot>",
                         then) > 0);
    ic_snapshot_def *def = NULL, *def_now = NULL;
    ic_error *err = NULL;
    assert_int_equal(ic_snapshot_def_parse(&def, snap, strlen(snap), IC_SNAPSHOT_PARSE_REDEFINE,
                                           &err), 0);
    char *snap_now = NULL;
    assert_true(asprintf(&snap_now, "<domainsnapshot><name>s2</name><state>shutoff</state>"
                                   "<creationTime>1700000000</creationTime>%s</domainsnapshot>",
                         now) > 0);
    assert_int_equal(ic_snapshot_def_parse(&def_now, snap_now, strlen(snap_now),
                                           IC_SNAPSHOT_PARSE_REDEFINE, &err), 0);
    assert_non_null(def->domain);
    char *why = NULL;
    assert_int_equal(ic_domain_abi_check(def->domain, def_now->domain, &why, &err), 0);
    assert_non_null(why);
    assert_string_equal(why, "Target domain vCPU max 1 does not match source 2");
    free(why);
    why = NULL;
    assert_int_equal(ic_domain_abi_check(def_now->domain, def_now->domain, &why, &err), 0);
    assert_null(why);
    ic_snapshot_def_free(def);
    ic_snapshot_def_free(def_now);
    free(now);
    free(then);
    free(snap);
    free(snap_now);
}

static void test_documents_that_are_not_domains_are_refused(void **state)
{
    (void)state;
    struct dom_parts p = { 0 };
    char *d = domain(&p), *why = NULL;
    const char *bad = "<domainsnapshot/>";
    ic_error *err = NULL;
    assert_int_equal(ic_domain_abi_check_xml(bad, strlen(bad), d, strlen(d), &why, &err),
                     -EINVAL);
    assert_null(why);
    assert_non_null(strstr(ic_error_message(err), "target domain: "));
    ic_error_free(err);
    err = NULL;
    struct dom_parts badmem = { .memory = "<memory unit='furlong'>3</memory>" };
    char *b = domain(&badmem);
    assert_int_equal(ic_domain_abi_check_xml(b, strlen(b), d, strlen(d), &why, &err), -EINVAL);
    assert_string_equal(ic_error_message(err), "target domain: invalid memory size '3 furlong'");
    assert_null(why);
    ic_error_free(err);
    free(b);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_domains_are_compatible),
        cmocka_unit_test(test_moved_disk_sources_are_still_compatible),
        cmocka_unit_test(test_a_different_vcpu_count_is_reported_as_libvirt_words_it),
        cmocka_unit_test(test_a_missing_vcpu_element_counts_as_one_vcpu),
        cmocka_unit_test(test_memory_is_compared_in_kib_whatever_the_unit),
        cmocka_unit_test(test_a_different_machine_type_is_incompatible),
        cmocka_unit_test(test_a_different_architecture_is_incompatible),
        cmocka_unit_test(test_a_different_virt_type_is_incompatible),
        cmocka_unit_test(test_an_added_disk_changes_the_disk_count),
        cmocka_unit_test(test_a_disk_moved_to_another_bus_is_incompatible),
        cmocka_unit_test(test_a_disk_bus_left_out_is_derived_from_the_target_name),
        cmocka_unit_test(test_a_disk_turned_into_a_cdrom_is_incompatible),
        cmocka_unit_test(test_a_renamed_disk_target_is_incompatible),
        cmocka_unit_test(test_a_different_network_card_model_is_incompatible),
        cmocka_unit_test(test_controllers_compare_type_and_index_with_index_zero_by_default),
        cmocka_unit_test(test_the_first_difference_in_libvirt_order_is_the_one_reported),
        cmocka_unit_test(test_a_snapshot_embedded_domain_is_checked_as_a_tree),
        cmocka_unit_test(test_documents_that_are_not_domains_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
