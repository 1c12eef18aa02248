#!/bin/sh
# tests/cli/xml.sh - `imgchain xml format|validate|align` (issue 6).
#
# Golden documents live in tests/data/xml.  Every document imgchain formats
# here is also checked with libvirt's own `virt-xml-validate FILE
# domainsnapshot`, and, when virsh is installed, compared with what
# libvirt's test driver prints for the same input (`virsh -c
# test:///default`: snapshot-create --redefine + snapshot-dumpxml), so the
# byte-for-byte claim is checked against libvirt itself.
. "$(dirname "$0")/../lib.sh"
D=$IC_TOP/tests/data/xml
cd "$IC_TOP" || exit 1

# creationTime of a creation request is "now": mask it.
mask() { sed 's|<creationTime>[0-9]*</creationTime>|<creationTime>NOW</creationTime>|'; }
same() { # DESC GOLDEN FILE
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1"; diff "$2" "$3" | head -n 20 | sed 's/^/    /'; fi
}
validates() { # DESC FILE
    expect "$1 is valid for virt-xml-validate" virt-xml-validate "$2" domainsnapshot
}

# ---- round trips, byte for byte ---------------------------------------------
ic xml format --redefine --secure "$D/full.xml" > "$T/full.secure"
same "redefine --secure reproduces libvirt's secure output" "$D/full.xml" "$T/full.secure"
validates "secure output" "$T/full.secure"
ic xml format --redefine "$D/full.xml" > "$T/full.public"
same "redefine without --secure drops passwords as libvirt does" "$D/full.public.xml" "$T/full.public"
validates "public output" "$T/full.public"
expect "public output has no passwd" sh -c "! grep -q passwd= '$T/full.public'"
ic xml format --redefine --validate --secure "$D/domain-metadata.xml" > "$T/dm"
same "domain <metadata> is printed as libvirt prints it" "$D/domain-metadata.out.xml" "$T/dm"
validates "domain metadata output" "$T/dm"
ic xml format --metadata "$D/full.meta.xml" > "$T/full.meta"
same "--metadata writes the on-disk form (warning comment, active)" "$D/full.meta.xml" "$T/full.meta"
validates "metadata form" "$T/full.meta"
ic xml format --metadata "$D/meta-extras.xml" > "$T/extras"
same "--metadata keeps revertDisks, snapshotDeleteInProgress, cookie, old domain form" \
    "$D/meta-extras.xml" "$T/extras"
# The installed schema is libvirt 9.0's: it predates <revertDisks> (9.9) and
# lacks <snapshotDeleteInProgress/>; everything else must validate.
sed '/snapshotDeleteInProgress/d; /<revertDisks>/,/<\/revertDisks>/d' "$T/extras" > "$T/extras.90"
validates "metadata extras (less the elements newer than the 9.0 schema)" "$T/extras.90"
ic xml format "$D/create.xml" | mask > "$T/create"
same "a creation request drops state, parent, domain, cookie, active" "$D/create.out.xml" "$T/create"
validates "creation output" "$T/create"
ic xml format "$D/disk-snapshot.xml" | mask > "$T/ds"
same "empty <source/> and <driver/> disappear (libvirt's disk_snapshot fixture)" \
    "$D/disk-snapshot.out.xml" "$T/ds"
validates "disk_snapshot output" "$T/ds"
printf '<domainsnapshot><description>no name</description></domainsnapshot>' > "$T/noname.xml"
ic xml format "$T/noname.xml" > "$T/noname"
t=$(sed -n 's|.*<creationTime>\([0-9]*\)</creationTime>|\1|p' "$T/noname")
expect_out "an unnamed snapshot is named by its creation time" "<name>$t</name>" cat "$T/noname"
validates "unnamed output" "$T/noname"
expect_out "format reads stdin" "<name>create</name>" sh -c "'$IMGCHAIN_BIN' xml format - < '$D/create.xml'"

# ---- validate -----------------------------------------------------------------
expect_out "validate accepts a valid document" "validates" ic xml validate "$D/full.xml"
printf '<domainsnapshot><name>a</name><bogus/></domainsnapshot>\n' > "$T/bogus.xml"
expect_rc "validate refuses an unknown element" 1 ic xml validate "$T/bogus.xml"
expect_out "... saying why" "bogus.xml: XML document failed to validate against schema: .*bogus" \
    ic xml validate "$T/bogus.xml"
expect_rc "format ignores the unknown element" 0 ic xml format "$T/bogus.xml"
expect_rc "format --validate refuses it" 1 ic xml format --validate "$T/bogus.xml"
printf '<domainsnapshot><state>pmsuspended</state></domainsnapshot>\n' > "$T/pm.xml"
expect_rc "validate refuses pmsuspended" 1 ic xml validate "$T/pm.xml"
expect_rc "validate refuses malformed XML" 1 ic xml validate "$T/noname"x
printf '<domainsnapshot><name>a</name>' > "$T/cut.xml"
expect_out "validate reports malformed XML" "malformed XML at line" ic xml validate "$T/cut.xml"

# ---- refusals ------------------------------------------------------------------
refuse() { # DESC FLAGS XML MESSAGE
    printf '%s\n' "$3" > "$T/neg.xml"
    # shellcheck disable=SC2086
    expect_rc "$1 (exit 1)" 1 ic xml format $2 "$T/neg.xml"
    # shellcheck disable=SC2086
    expect_out "$1 (message)" "neg.xml: $4" ic xml format $2 "$T/neg.xml"
}
refuse "relative disk path" "" \
    "<domainsnapshot><disks><disk name='vda'><source file='vm.snap'/></disk></disks></domainsnapshot>" \
    "disk snapshot image path 'vm.snap' must be absolute"
refuse "source with internal mode" "" \
    "<domainsnapshot><disks><disk name='vda' snapshot='internal'><source file='/a'/></disk></disks></domainsnapshot>" \
    "file '/a' for disk 'vda' requires use of external snapshot mode"
refuse "unknown driver" "" \
    "<domainsnapshot><disks><disk name='vda'><driver type='vhdx'/></disk></disks></domainsnapshot>" \
    "unknown disk snapshot driver 'vhdx'"
refuse "bad state" "--redefine" \
    "<domainsnapshot><name>a</name><state>bored</state><creationTime>1</creationTime></domainsnapshot>" \
    "Invalid state 'bored' in domain snapshot XML"
refuse "external memory without file" "" \
    "<domainsnapshot><memory snapshot='external'/></domainsnapshot>" \
    "external memory snapshots require a filename"
refuse "disk named twice" "" \
    "<domainsnapshot><disks><disk name='vda'/><disk name='vda'/></disks></domainsnapshot>" \
    "disk 'vda' specified twice"
refuse "redefine without name" "--redefine" \
    "<domainsnapshot><state>running</state><creationTime>1</creationTime></domainsnapshot>" \
    "a redefined snapshot must have a name"
refuse "redefine without state" "--redefine" \
    "<domainsnapshot><name>a</name><creationTime>1</creationTime></domainsnapshot>" \
    "missing state from existing snapshot"
refuse "redefine without creationTime" "--redefine" \
    "<domainsnapshot><name>a</name><state>running</state></domainsnapshot>" \
    "missing creationTime from existing snapshot"
refuse "metadata without active" "--metadata" \
    "<domainsnapshot><name>a</name><state>running</state><creationTime>1</creationTime></domainsnapshot>" \
    "Could not find 'active' element"
expect_rc "missing file fails" 1 ic xml format "$T/does-not-exist.xml"
expect_rc "no FILE is a usage error" 64 ic xml format
expect_rc "unknown option is a usage error" 64 ic xml format --frobnicate "$D/full.xml"
expect_rc "unknown subcommand is a usage error" 64 ic xml transmogrify "$D/full.xml"

# ---- align ---------------------------------------------------------------------
: > "$T/vm.qcow2"; : > "$T/data"; : > "$T/other.raw"; : > "$T/other.qcow2"
cat > "$T/domain.xml" <<EOF
<domain type='kvm'>
  <name>vm</name>
  <devices>
    <disk type='file' device='disk'><source file='$T/vm.qcow2'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='$T/data'/><target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><source dev='/dev/null'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
  </devices>
</domain>
EOF
printf "<domainsnapshot><name>s1</name><disks><disk name='vdc' snapshot='no'/></disks></domainsnapshot>\n" > "$T/s1.xml"
ic xml align --domain "$T/domain.xml" --disk-only "$T/s1.xml" | mask > "$T/s1.out"
cat > "$T/s1.want" <<EOF
<domainsnapshot>
  <name>s1</name>
  <creationTime>NOW</creationTime>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <source file='$T/data.s1'/>
    </disk>
    <disk name='vdb' snapshot='external' type='file'>
      <source file='$T/vm.s1'/>
    </disk>
    <disk name='vdc' snapshot='no'/>
    <disk name='hdc' snapshot='no'/>
  </disks>
</domainsnapshot>
EOF
same "align fills disks in domain order with default external names" "$T/s1.want" "$T/s1.out"
validates "aligned output" "$T/s1.out"
printf "<domainsnapshot><name>s1</name><disks><disk name='$T/vm.qcow2' snapshot='no'/></disks></domainsnapshot>\n" > "$T/s2.xml"
expect_out "align matches a disk by source path, renames it, default internal" \
    "<disk name='vdb' snapshot='no'/>" ic xml align --domain "$T/domain.xml" --default internal "$T/s2.xml"
expect_out "align refuses to name a file after a non-regular source" \
    "source for disk 'vdc' is not a regular file; refusing to generate external snapshot name" \
    ic xml align --domain "$T/domain.xml" --disk-only "$T/noname.xml"
printf "<domainsnapshot><name>s</name><disks><disk name='vda' type='block' snapshot='external'/></disks></domainsnapshot>\n" > "$T/s3.xml"
expect_out "align refuses a block device target without a file" \
    "cannot generate external snapshot name for disk 'vda' on a 'block' device" \
    ic xml align --domain "$T/domain.xml" "$T/s3.xml"
cat > "$T/domain2.xml" <<EOF
<domain type='kvm'><devices>
<disk><source file='$T/other.raw'/><target dev='vda'/></disk>
<disk><source file='$T/other.qcow2'/><target dev='vdb'/></disk>
</devices></domain>
EOF
printf "<domainsnapshot><name>s4</name></domainsnapshot>\n" > "$T/s4.xml"
expect_out "align refuses colliding default names" \
    "cannot generate external snapshot name for disk 'vdb': collision with disk 'vda'" \
    ic xml align --domain "$T/domain2.xml" --disk-only "$T/s4.xml"
expect_out "align refuses an unknown disk" "no disk named 'vdz'" sh -c \
    "printf \"<domainsnapshot><disks><disk name='vdz'/></disks></domainsnapshot>\" | '$IMGCHAIN_BIN' xml align --domain '$T/domain.xml' -"
expect_rc "align without any domain fails" 1 ic xml align "$T/s1.xml"

# ---- libvirt itself as the oracle ---------------------------------------------
if command -v virsh >/dev/null 2>&1; then
    oracle() { # FILE NAME [--security-info] : libvirt's output for a redefinition
        virsh -q -c test:///default "snapshot-create-as test base; snapshot-create test $1 --redefine; snapshot-dumpxml test $2 ${3:-}" 2>&1 |
            sed -n '/^<domainsnapshot>/,/^<\/domainsnapshot>/p'
    }
    oracle "$D/full.xml" full --security-info > "$T/o1"
    same "libvirt's test driver prints full.xml as imgchain does (secure)" "$T/o1" "$T/full.secure"
    oracle "$D/full.xml" full > "$T/o2"
    same "libvirt's test driver prints full.xml as imgchain does (public)" "$T/o2" "$T/full.public"
    oracle "$D/domain-metadata.xml" meta --security-info > "$T/o3"
    same "libvirt's test driver prints domain <metadata> as imgchain does" "$T/o3" "$T/dm"
    # alignment of a redefinition against its own domain (default names from
    # real files, defaults from the external memory)
    : > "$T/la.qcow2"; : > "$T/lb.img"
    sed -e "s|/var/lib/img/vm.qcow2|$T/la.qcow2|; s|/var/lib/img/e.qcow2|$T/lb.img|" \
        -e "/<disk name='vda'/,/<\/disk>/d; /<disk name='vde'/d" "$D/full.xml" |
        sed "s|<name>full</name>|<name>aligned</name>|" > "$T/align-in.xml"
    oracle "$T/align-in.xml" aligned --security-info > "$T/o4"
    ic xml align --redefine --secure "$T/align-in.xml" > "$T/a4"
    same "libvirt's test driver aligns a redefinition as imgchain does" "$T/o4" "$T/a4"
    expect_out "... with default names after the domain's files" "<source file='$T/la.aligned'/>" cat "$T/a4"
    validates "libvirt-aligned output" "$T/a4"
else
    echo "SKIP: virsh not installed, libvirt oracle comparisons not run"
fi

# ---- libxml2 is loaded at the first document, not at start -------------------
# (src/xml/xml-lib.c): commands without XML never load it, and a libxml2
# that cannot serve is a clear error, not a crash.
expect "the binary does not link libxml2 (no start-up cost)" \
    sh -c "! objdump -p '$IMGCHAIN_BIN' | grep -q 'NEEDED.*libxml2'"
mkdir -p "$T/fakelib"
printf 'int not_libxml2;\n' > "$T/fakelib/f.c"
if cc -shared -fPIC -o "$T/fakelib/libxml2.so.2" "$T/fakelib/f.c" 2>/dev/null; then
    expect_rc "an unusable libxml2 fails the xml command with exit 1" 1 \
        env LD_LIBRARY_PATH="$T/fakelib" "$IMGCHAIN_BIN" xml format "$D/create.xml"
    expect_out "... naming the library and the missing symbol" \
        "XML support is not available: libxml2.so.2 has no symbol xmlNewParserCtxt" \
        env LD_LIBRARY_PATH="$T/fakelib" "$IMGCHAIN_BIN" xml format "$D/create.xml"
    expect "... while commands without XML work" \
        env LD_LIBRARY_PATH="$T/fakelib" "$IMGCHAIN_BIN" create -f qcow2 "$T/nolib.qcow2" 1M
fi

finish
