#!/bin/sh
# Usage errors exit 64, missing files exit 1 with one line naming the file,
# and a failing command never exits 0 (every subcommand of this CLI part).
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
ic create -q -f raw a.raw 1M >/dev/null

# one_line DESC RC PATTERN CMD...: exit code RC, exactly one line of output
# on stderr matching PATTERN, nothing on stdout.
one_line() {
    _d=$1; _want=$2; _pat=$3; shift 3
    "$@" >"$T/.so" 2>"$T/.se"; _rc=$?
    _n=$(wc -l <"$T/.se")
    if [ "$_rc" = "$_want" ] && [ "$_n" = 1 ] && grep -Eq -- "$_pat" "$T/.se" && [ ! -s "$T/.so" ]; then
        pass "$_d"
    else
        fail "$_d (rc $_rc, $_n stderr lines)"; sed 's/^/    /' "$T/.se" "$T/.so" | head -n 10
    fi
}

for cmd in create info map convert compare io; do
    one_line "$cmd: unknown option is a usage error" 64 "unknown option" ic $cmd --bogus a.raw
    expect_rc "$cmd -h prints usage and succeeds" 0 ic $cmd -h
done
one_line "info: missing FILE" 64 "missing FILE" ic info
one_line "info: too many arguments" 64 "too many" ic info a.raw a.raw
one_line "info: bad --output" 64 "--output must be" ic info --output=xml a.raw
one_line "info: -f needs an argument" 64 "needs an argument" ic info a.raw -f
one_line "map: bad --start-offset" 64 "invalid --start-offset" ic map --start-offset=12q a.raw
one_line "map: bad --max-length" 64 "invalid --max-length" ic map --max-length=-1 a.raw
one_line "map: bad -l" 64 "invalid -l" ic map -l snapshot.bogus=1 a.raw
one_line "create: missing FILE" 64 "missing FILE" ic create
one_line "create: bad size" 64 "invalid size" ic create -f raw b.raw 12xyz
one_line "create: no size and no backing file" 64 "SIZE is required" ic create -f raw b.raw
one_line "create: too many arguments" 64 "too many" ic create -f raw b.raw 1M 2M
one_line "convert: one file only" 64 "SRC and DST" ic convert a.raw
one_line "convert: bad cache mode" 64 "invalid cache mode" ic convert -t bogus a.raw b.raw
one_line "convert: bad -l" 64 "invalid -l" ic convert -l snapshot.x=1 a.raw b.raw
one_line "compare: one image only" 64 "two images" ic compare a.raw
one_line "io: no command" 64 "no command" ic io a.raw
one_line "io: unknown command" 64 "unknown command 'frob'" ic io -c 'frob 0 1' a.raw
one_line "io: bad pattern" 64 "pattern byte" ic io -c 'write -P 300 0 1' a.raw
one_line "io: bad offset" 64 "invalid offset" ic io -c 'read 1x 1' a.raw
one_line "io: missing length" 64 "OFFSET and LENGTH" ic io -c 'read 0' a.raw
one_line "io: flush takes no arguments" 64 "flush takes no" ic io -c 'flush 1' a.raw
one_line "io: -U without -r" 64 "-U needs -r" ic io -U -c 'read 0 1' a.raw
expect "io: a malformed command is refused before any command runs" \
    sh -c "! '$IMGCHAIN_BIN' io -f raw -c 'write -P 7 0 4k' -c 'bogus' a.raw >/dev/null 2>&1 && \
           '$IMGCHAIN_BIN' io -f raw -c 'read -P 0 0 4k' a.raw"

# Missing files: exit 1, one line that names the file.
one_line "info: missing file" 1 "nope\.img: No such file" ic info nope.img
one_line "map: missing file" 1 "nope\.img: No such file" ic map nope.img
one_line "io: missing file" 1 "nope\.img: No such file" ic io -c 'read 0 1' nope.img
one_line "convert: missing source" 1 "nope\.img: No such file" ic convert nope.img out.raw
expect "convert: a failed convert leaves no target behind" test ! -e out.raw
one_line "compare: missing first image exits 2" 2 "nope\.img: No such file" ic compare nope.img a.raw
one_line "compare: missing second image exits 2" 2 "nope\.img: No such file" ic compare a.raw nope.img
one_line "create: backing file missing" 1 "nope\.img" ic create -q -f qcow2 -b nope.img -F qcow2 c.qcow2
expect "create: a refused create leaves no file" test ! -e c.qcow2
one_line "create: directory that does not exist" 1 "nodir/x\.raw" ic create -q -f raw nodir/x.raw 1M
one_line "create: unknown format" 1 "unknown format 'vmdk'" ic create -q -f vmdk x.img 1M
one_line "info: unknown format" 1 "unknown format 'bogus'" ic info -f bogus a.raw
one_line "io: read beyond the end" 1 "a\.raw: .*beyond the virtual size" ic io -f raw -c 'read 1M 1' a.raw
one_line "io: write to a read-only open" 1 "a\.raw: .*read-only" ic io -r -f raw -c 'write 0 1' a.raw
one_line "convert: -c to raw is refused" 1 "does not support compression" ic convert -c -f raw -O raw a.raw y.raw
one_line "convert: unknown output format" 1 "unknown output format 'vhd'" ic convert -f raw -O vhd a.raw y.raw
one_line "convert: target is the source" 1 "target is the source" ic convert -f raw -O raw a.raw ./a.raw
expect "convert: the source survived the refused convert" test -s a.raw -o "$(stat -c %s a.raw)" = 1048576
one_line "convert: a bad -o option is refused" 1 "y\.raw" ic convert -f raw -O raw -o bogus=1 a.raw y.raw
expect "convert: no target after a refused -o" test ! -e y.raw
one_line "io: directory instead of image" 1 "[Ii]s a directory" ic io -c 'read 0 1' .
finish
