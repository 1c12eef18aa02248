#!/bin/sh
# Errors speak of files and problems, never of the library's functions: a
# failing command prints "imgchain: FILE: problem", and no message carries
# an internal name such as "ic_chain_commit:".
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

qimg create -q -f qcow2 base.qcow2 1M
qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qimg create -q -f qcow2 lone.qcow2 1M
mv base.qcow2 gone.qcow2

# said DESC PATTERN CMD...: CMD fails, its one-line error matches PATTERN and
# names no library function.
said() {
    _d=$1; _pat=$2; shift 2
    "$@" >"$T/.out" 2>&1; _rc=$?
    if [ "$_rc" = 0 ]; then fail "$_d (exit 0)"
    elif grep -Eq 'ic_[a-z_]+:' "$T/.out"; then fail "$_d (a function name)"; sed 's/^/    /' "$T/.out"
    elif ! grep -Eq -- "$_pat" "$T/.out"; then fail "$_d (no /$_pat/)"; sed 's/^/    /' "$T/.out"
    else pass "$_d"; fi
}

said "commit of an overlay whose backing file is gone" \
    '^imgchain: top\.qcow2: could not open backing file: (\./)?base\.qcow2: No such file or directory$' \
    ic commit top.qcow2
said "commit of an image without a backing file" \
    '^imgchain: lone\.qcow2: image does not have a backing file$' ic commit lone.qcow2
said "rebase onto a missing file" "^imgchain: .*could not open new backing file 'nothere\\.qcow2'" \
    ic rebase -b nothere.qcow2 -F qcow2 lone.qcow2
said "check of a missing file" '^imgchain: .*nothere\.qcow2: No such file or directory' \
    ic check nothere.qcow2
said "dependents in a missing folder" '^imgchain: .*nofolder: No such file or directory$' \
    ic dependents lone.qcow2 nofolder
said "bitmap dump of a raw image" '^imgchain: .*x\.raw: ' sh -c "truncate -s 1M x.raw && '$IMGCHAIN_BIN' bitmap --dump -f raw x.raw b"
finish
