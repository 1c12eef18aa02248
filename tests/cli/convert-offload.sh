#!/bin/sh
# convert -C (copy offloading): data runs of a raw target are copied in the
# kernel (copy_file_range; IMGCHAIN_TRACE=copyrange shows each call) and the
# result equals the source; runs that cannot be offloaded (compressed
# clusters, qcow2 targets, -r) go through memory; qemu-img's refusals of -C
# with -c, -S and --salvage, with its words.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

qimg create -q -f qcow2 base.qcow2 64M
qio -c 'write -P 1 0 3M' -c 'write -P 9 40M 1M' base.qcow2 >/dev/null
qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 2 1M 1M' -c 'write -P 0 8M 64k' -c 'write -P 3 20M 2M' top.qcow2 >/dev/null
# a compressed cluster in the chain
qimg create -q -f qcow2 c.qcow2 64M
qio -c 'write -c -P 5 0 64k' -c 'write -P 6 64k 64k' c.qcow2 >/dev/null

# copies: count TRACE lines of CMD matching PATTERN
count() {
    _pat=$1; shift
    IMGCHAIN_TRACE=copyrange "$@" 2>&1 >/dev/null | grep -Ec -- "$_pat"
}

n=$(count 'copy_range out\.raw ' ic convert -C -O raw top.qcow2 out.raw)
expect "convert -C -O raw offloads the data runs" test "$n" -ge 3
expect "convert -C -O raw equals the source" qimg compare -q top.qcow2 out.raw
expect "convert -C -O raw keeps the unallocated runs sparse" \
    sh -c "[ \$(du -k out.raw | cut -f1) -lt 16384 ]"
rm -f out.raw
n=$(count 'copy_range' ic convert -C -t unsafe -O raw top.qcow2 out.raw)
expect "convert -C -t unsafe offloads as well" test "$n" -ge 3
expect "convert -C -t unsafe equals the source" qimg compare -q top.qcow2 out.raw

n=$(count 'copy_range' ic convert -C -O qcow2 top.qcow2 out.qcow2)
expect "convert -C -O qcow2 copies through memory (no offload into qcow2)" test "$n" -eq 0
expect "convert -C -O qcow2 equals the source" qimg compare -q top.qcow2 out.qcow2
expect "convert -C -O qcow2 checks clean" qimg check -q out.qcow2

rm -f c.raw
n=$(count 'copy_range' ic convert -C -O raw c.qcow2 c.raw)
expect "a compressed cluster is not offloaded, its plain neighbour is" test "$n" -eq 1
expect "convert -C over a compressed cluster equals the source" qimg compare -q c.qcow2 c.raw

rm -f out.raw
n=$(count 'copy_range' ic convert -C -r 1G -O raw top.qcow2 out.raw)
expect "convert -C -r copies through memory so the limit sees every byte" test "$n" -eq 0
expect "convert -C -r equals the source" qimg compare -q top.qcow2 out.raw

# a raw source: its runs are copied file to file as well
ic convert -O raw top.qcow2 src.raw
rm -f out.raw
n=$(count 'copy_range' ic convert -C -f raw -O raw src.raw out.raw)
expect "convert -C from a raw file offloads" test "$n" -ge 1
expect "convert -C from a raw file equals it" cmp src.raw out.raw

for spec in "-c -O qcow2:Cannot enable copy offloading when -c is used" \
            "-S 4k:Cannot enable copy offloading when -S is used" \
            "--salvage:Cannot use copy offloading in salvaging mode"; do
    o=${spec%%:*}; m=${spec#*:}
    rm -f x.out
    # shellcheck disable=SC2086
    expect_rc "convert -C $o exits 1" 1 ic convert -C $o top.qcow2 x.out
    # shellcheck disable=SC2086
    expect_out "convert -C $o says why, naming the target" "^imgchain: x.out: $m\$" \
        ic convert -C $o top.qcow2 x.out
    expect "convert -C $o creates nothing" test ! -e x.out
done
finish
