#!/bin/sh
# Cache modes (-t/-T) of every command that takes them reach the file
# descriptors: IMGCHAIN_TRACE=open prints the flags the kernel reports for
# each descriptor opened (fcntl F_GETFL), so O_DIRECT and O_DSYNC are seen
# where the mode asks for them and nowhere else.  Unknown modes are usage
# errors, and every mode leaves a correct image (qemu-img check/compare).
# IMGCHAIN_TRACE=flush and =alloc show which flushes reach a file and which
# bulk writes are allocated first (src/io/io-posix.c note 9), and
# IMGCHAIN_TRACE=missdirect which reads of a source go around the page
# cache (note 11).
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# trace DESC PATTERN CMD...: the open trace of CMD matches grep -E PATTERN.
trace() {
    _d=$1; _pat=$2; shift 2
    IMGCHAIN_TRACE=open,flush,alloc,missdirect "$@" >"$T/.out" 2>&1
    if grep -Eq -- "$_pat" "$T/.out"; then pass "$_d"; else fail "$_d (no match for /$_pat/)"; sed 's/^/    /' "$T/.out" | head -n 20; fi
}
# notrace DESC PATTERN CMD...: no line of the trace matches.
notrace() {
    _d=$1; _pat=$2; shift 2
    IMGCHAIN_TRACE=open,flush,alloc,missdirect "$@" >"$T/.out" 2>&1
    if grep -Eq -- "$_pat" "$T/.out"; then fail "$_d (unexpected /$_pat/)"; sed 's/^/    /' "$T/.out" | head -n 20; else pass "$_d"; fi
}

# flushed_after_data DESC YES|NO FILE CMD...: whether CMD flushes FILE after
# its first bulk write (the trace's first "alloc FILE" line).
flushed_after_data() {
    _d=$1; _want=$2; _f=$3; shift 3
    IMGCHAIN_TRACE=flush,alloc "$@" >"$T/.out" 2>&1
    _got=$(awk -v f="$_f" '$3 == "alloc" && $4 == f { a = 1 } $3 == "flush" && $4 == f && a { print "YES"; exit }
                           END { if (!a) print "NO-DATA" }' "$T/.out")
    [ -n "$_got" ] || _got=NO
    if [ "$_got" = "$_want" ]; then pass "$_d"; else fail "$_d (got $_got)"; sed 's/^/    /' "$T/.out" | head -n 20; fi
}

mkchain() {
    rm -f base.qcow2 top.qcow2 other.qcow2
    qimg create -q -f qcow2 base.qcow2 8M
    qio -c 'write -P 1 0 1M' base.qcow2 >/dev/null
    qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
    qio -c 'write -P 2 1M 1M' top.qcow2 >/dev/null
    qimg create -q -f qcow2 other.qcow2 8M
}

for cmd in "convert -t bogus top.qcow2 x.raw" "convert -T bogus top.qcow2 x.raw" \
           "commit -t bogus top.qcow2" "rebase -t bogus -b '' top.qcow2" \
           "rebase -T bogus -b '' top.qcow2" "check -T bogus top.qcow2" \
           "compare -T bogus top.qcow2 top.qcow2" "io -t bogus top.qcow2 -c flush"; do
    mkchain
    expect_rc "${cmd%% *}: an unknown cache mode is a usage error (${cmd#* })" 64 \
        sh -c "'$IMGCHAIN_BIN' $cmd"
done

if ! dd if=/dev/zero of=probe.direct bs=4096 count=1 oflag=direct 2>/dev/null; then
    echo "SKIP: no O_DIRECT on $T: descriptor checks skipped"
    finish
fi

mkchain
# convert: -t for the target, -T for the source
trace "convert: the default writes the target O_DIRECT" 'open x\.raw: O_RDWR\|O_DIRECT$' \
    ic convert -O raw top.qcow2 x.raw
rm -f x.qcow2
trace "convert: the default writes a qcow2 target O_DIRECT too" 'open x\.qcow2: O_RDWR\|O_DIRECT$' \
    ic convert -O qcow2 top.qcow2 x.qcow2
expect "convert: the default O_DIRECT qcow2 target equals the source" qimg compare -q top.qcow2 x.qcow2
trace "convert -t none: target O_DIRECT" 'open x\.raw: O_RDWR\|O_DIRECT$' \
    ic convert -t none -O raw top.qcow2 x.raw
trace "convert -t directsync: target O_DIRECT and O_DSYNC" 'open x\.raw: O_RDWR\|O_DIRECT\|O_DSYNC' \
    ic convert -t directsync -O raw top.qcow2 x.raw
trace "convert -t writethrough: target O_DSYNC" 'open x\.raw: O_RDWR\|O_DSYNC' \
    ic convert -t writethrough -O raw top.qcow2 x.raw
notrace "convert -t writeback: the target is never O_DIRECT" 'open x\.raw: .*O_DIRECT' \
    ic convert -t writeback -O raw top.qcow2 x.raw
notrace "convert -t unsafe: the target is never O_DIRECT" 'open x\.raw: .*O_DIRECT' \
    ic convert -t unsafe -O qcow2 top.qcow2 x.qcow2
expect "convert -t unsafe: the target equals the source" qimg compare -q top.qcow2 x.qcow2
expect "convert -t unsafe: the target checks clean" qimg check -q x.qcow2
rm -f x.qcow2 x.raw
flushed_after_data "convert -t unsafe: a target it creates is never flushed after its data" NO \
    x.qcow2 ic convert -t unsafe -O qcow2 top.qcow2 x.qcow2
expect "convert -t unsafe without flushes: the target equals the source" qimg compare -q top.qcow2 x.qcow2
flushed_after_data "convert -t unsafe -O raw: a target it creates is never flushed after its data" NO \
    x.raw ic convert -t unsafe -O raw top.qcow2 x.raw
flushed_after_data "convert -t writeback: the target is flushed after its data" YES \
    x.qcow2 ic convert -t writeback -O qcow2 top.qcow2 x.qcow2
qimg create -q -f qcow2 x.qcow2 8M
flushed_after_data "convert -n -t unsafe: an existing target keeps its ordering flushes" YES \
    x.qcow2 ic convert -n -t unsafe -O qcow2 top.qcow2 x.qcow2
expect "convert -n -t unsafe: the existing target equals the source" qimg compare -q top.qcow2 x.qcow2
trace "convert -t writeback: bulk writes are allocated before they are written" 'alloc x\.raw ' \
    ic convert -t writeback -O raw top.qcow2 x.raw
notrace "convert (default, O_DIRECT): nothing is allocated ahead" 'alloc x\.raw ' \
    ic convert -O raw top.qcow2 x.raw
trace "convert -T none: the source chain is read O_DIRECT" 'open base\.qcow2: O_RDONLY\|O_DIRECT' \
    ic convert -T none -O raw top.qcow2 x.raw
notrace "convert: without -T the source is not O_DIRECT" 'open (top|base)\.qcow2: .*O_DIRECT' \
    ic convert -O raw top.qcow2 x.raw

# commit -t: the whole chain; the base is the image written
mkchain
trace "commit: the default writes the base O_DIRECT" 'open base\.qcow2: O_RDWR\|O_DIRECT$' \
    ic commit top.qcow2
mkchain
trace "commit -t directsync: base O_DIRECT and O_DSYNC" 'open base\.qcow2: O_RDWR\|O_DIRECT\|O_DSYNC' \
    ic commit -t directsync top.qcow2
mkchain
notrace "commit -t writeback: nothing is O_DIRECT" 'O_DIRECT' ic commit -t writeback top.qcow2
mkchain
trace "commit -t writethrough: base O_DSYNC" 'open base\.qcow2: O_RDWR\|O_DSYNC' \
    ic commit -t writethrough top.qcow2
mkchain
notrace "commit -t unsafe: nothing is O_DIRECT" 'O_DIRECT' ic commit -t unsafe top.qcow2
expect "commit -t unsafe: the base holds both layers" qio -r -c 'read -P 1 0 1M' -c 'read -P 2 1M 1M' base.qcow2
expect "commit -t unsafe: the base checks clean" qimg check -q base.qcow2

# rebase -t: FILE; -T: the old and new backing chains
mkchain
trace "rebase: the default writes FILE O_DIRECT" 'open top\.qcow2: O_RDWR\|O_DIRECT$' \
    ic rebase -b other.qcow2 -F qcow2 top.qcow2
mkchain
trace "rebase -t directsync: FILE O_DIRECT and O_DSYNC" 'open top\.qcow2: O_RDWR\|O_DIRECT\|O_DSYNC' \
    ic rebase -t directsync -b other.qcow2 -F qcow2 top.qcow2
mkchain
notrace "rebase -t writeback: FILE is not O_DIRECT" 'open top\.qcow2: O_RDWR.*O_DIRECT' \
    ic rebase -t writeback -b other.qcow2 -F qcow2 top.qcow2
mkchain
trace "rebase -T none: the new backing is read O_DIRECT" 'open other\.qcow2: O_RDONLY\|O_DIRECT' \
    ic rebase -T none -b other.qcow2 -F qcow2 top.qcow2
mkchain
trace "rebase -T none: the old backing is read O_DIRECT" 'open (\./)?base\.qcow2: O_RDONLY\|O_DIRECT' \
    ic rebase -T none -b other.qcow2 -F qcow2 top.qcow2
mkchain
notrace "rebase: without -T the backing files are not O_DIRECT" 'open (\./)?(base|other)\.qcow2: .*O_DIRECT' \
    ic rebase -b other.qcow2 -F qcow2 top.qcow2
expect "rebase: FILE reads the same through the new backing" qio -r -c 'read -P 1 0 1M' -c 'read -P 2 1M 1M' top.qcow2

# check -T, compare -T, io -t
mkchain
trace "check -T none: the image is read O_DIRECT" 'open top\.qcow2: O_RDONLY\|O_DIRECT' ic check -T none top.qcow2
notrace "check: without -T nothing is O_DIRECT" 'O_DIRECT' ic check top.qcow2
trace "check --chain -T none: every image is read O_DIRECT" 'open (\./)?base\.qcow2: O_RDONLY\|O_DIRECT' \
    ic check --chain -T none top.qcow2
trace "compare -T none: both images are read O_DIRECT" 'open other\.qcow2: O_RDONLY\|O_DIRECT' \
    ic compare -T none top.qcow2 other.qcow2
trace "io -t writethrough: the image is written O_DSYNC" 'open top\.qcow2: O_RDWR\|O_DSYNC' \
    ic io -t writethrough top.qcow2 -c 'write -P 3 0 64k'
trace "io -t none: the image is written O_DIRECT" 'open top\.qcow2: O_RDWR\|O_DIRECT' \
    ic io -t none top.qcow2 -c 'write -P 4 0 64k'
notrace "io: without -t nothing is O_DIRECT" 'O_DIRECT' ic io top.qcow2 -c 'write -P 5 0 64k'
expect "io -t unsafe: the write reaches the image" sh -c "'$IMGCHAIN_BIN' io -t unsafe top.qcow2 -c 'write -P 6 0 64k' && qemu-io -r -c 'read -P 6 0 64k' top.qcow2"
expect "io: the image checks clean after every mode" qimg check -q top.qcow2

# Sources in the default mode: a large read of data the page cache holds
# none of goes to the disk directly; cached data and -T writeback are read
# through the cache (src/io/io-posix.c note 11).  On tmpfs the page cache
# is the file, so nothing is ever uncached there.
if [ "$(stat -f -c %T .)" = tmpfs ]; then
    echo "SKIP: $T is tmpfs: no uncached reads to trace"
    finish
fi
rm -f big.qcow2
qimg create -q -f qcow2 big.qcow2 16M
qio -c 'write -P 7 0 8M' big.qcow2 >/dev/null
uncache() { sync "$1" && dd if="$1" iflag=nocache count=0 status=none; }
uncache big.qcow2
trace "convert: an uncached source is read around the page cache" 'trace: miss_direct (\./)?big\.qcow2 [0-9]+ [0-9]+$' \
    ic convert -O raw big.qcow2 x.raw
expect "convert: what was read directly is the source's data" qimg compare -q big.qcow2 x.raw
uncache big.qcow2
notrace "convert -T writeback: the source is read through the page cache" 'miss_direct' \
    ic convert -T writeback -O raw big.qcow2 x.raw
cat big.qcow2 >/dev/null
notrace "convert: a cached source is read from the page cache" 'miss_direct' \
    ic convert -O qcow2 big.qcow2 y.qcow2
expect "convert: the copy of the cached source is the source's data" qimg compare -q big.qcow2 y.qcow2
uncache big.qcow2
trace "compare: an uncached image is read around the page cache" 'trace: miss_direct (\./)?big\.qcow2 ' \
    ic compare big.qcow2 y.qcow2
finish
