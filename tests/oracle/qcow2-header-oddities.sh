#!/bin/sh
# qcow2 headers qemu 7.2 reads in its own way: a virtual size that is not a
# multiple of 512 is rounded down to whole sectors, and header_length is
# taken as given (not necessarily a multiple of 8: the extensions start
# there).  info, map, check and convert -O raw agree with qemu-img.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
poke() { python3 "$IC_TOP/tests/helpers/qcow2-poke.py" "$@"; }

# json_same IMG: qemu-img and imgchain info --output=json give the same
# object (key order and the host-side size aside)
json_same() {
    python3 - "$1" "$IMGCHAIN_BIN" <<'PY'
import json, subprocess, sys
def get(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return ("error", p.returncode != 0)
    j = json.loads(p.stdout)
    j.pop("actual-size", None)
    return j
a = get(["qemu-img", "info", "--output=json", sys.argv[1]])
b = get([sys.argv[2], "info", "--output=json", sys.argv[1]])
if a != b:
    print(a); print(b); sys.exit(1)
PY
}

qimg create -q -f qcow2 base.qcow2 1M
qio -c 'write -P 7 0 1M' base.qcow2 >/dev/null
for plus in 1 100 511; do
    cp base.qcow2 s$plus.qcow2
    poke s$plus.qcow2 size-plus=$plus
    expect "info of a size 1M+$plus equals qemu-img's" json_same s$plus.qcow2
    rm -f q.raw i.raw
    qimg convert -O raw s$plus.qcow2 q.raw
    expect_rc "convert -O raw of 1M+$plus" 0 ic convert -O raw s$plus.qcow2 i.raw
    expect "... gives qemu-img's bytes and length" cmp q.raw i.raw
    expect "map of 1M+$plus equals qemu-img's" \
        sh -c "[ \"\$(qemu-img map --output=json s$plus.qcow2)\" = \"\$('$IMGCHAIN_BIN' map --output=json s$plus.qcow2)\" ]"
    expect_rc "check of 1M+$plus is clean" 0 ic check s$plus.qcow2
    expect_out "... counting qemu-img's clusters" "16/16 = 100.00% allocated" ic check s$plus.qcow2
done

# header_length: qemu's verdict (opens or not) and its info, for each value
qimg create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
for hl in 104 105 107 108 111 112 120 4096 65536 65537; do
    cp ov.qcow2 h$hl.qcow2
    poke h$hl.qcow2 header-length=$hl
    qemu-img info h$hl.qcow2 >/dev/null 2>&1; qrc=$?
    ic info h$hl.qcow2 >/dev/null 2>&1; irc=$?
    expect "header_length $hl: imgchain opens it exactly when qemu-img does ($irc vs $qrc)" \
        test $((qrc != 0)) = $((irc != 0))
    if [ $qrc = 0 ]; then
        expect "header_length $hl: info equals qemu-img's" json_same h$hl.qcow2
        expect "header_length $hl: imgchain writes it and qemu-img checks it clean" \
            sh -c "'$IMGCHAIN_BIN' io -q h$hl.qcow2 -c 'write -P 4 0 4k' && qemu-img check -q h$hl.qcow2"
        expect "header_length $hl: qemu-io reads the write and the backing data" \
            sh -c "qemu-io -c 'read -P 4 0 4k' -c 'read -P 7 4k 60k' h$hl.qcow2 | grep -vq 'fail'"
    fi
done
finish
