#!/bin/sh
# scripts/lint-layers.sh: the tree passes, and each layer rule fails on a
# small tree that breaks it (naming the file), so a rule that stopped
# working is noticed.
. "$(dirname "$0")/../lib.sh"
LINT="$IC_TOP/scripts/lint-layers.sh"

expect "the repository passes every layer rule" sh "$LINT" "$IC_TOP"

# A clean miniature tree, then one violation at a time.
mk() {
    rm -rf "$T/t"; mkdir -p "$T/t/src/util" "$T/t/src/io" "$T/t/src/image" "$T/t/src/chain" "$T/t/tools"
    printf '#include "util/error.h"\n' > "$T/t/src/io/io.c"
    printf '#include "io/io.h"\nint f(void) { return drv->open(0); }\n' > "$T/t/src/image/image.c"
    printf '#include "image/image.h"\n#include "io/io-dir.h"\n' > "$T/t/src/chain/chain.c"
    printf '#include <imgchain/imgchain.h>\n' > "$T/t/tools/cli.c"
}
# violates DESC PATTERN: the lint fails on the tree and says PATTERN.
violates() {
    if sh "$LINT" "$T/t" >"$T/.out" 2>&1; then fail "$1 (the lint passed)"; return; fi
    if grep -Eq -- "$2" "$T/.out"; then pass "$1"; else fail "$1 (no /$2/)"; sed 's/^/    /' "$T/.out"; fi
}

mk
expect "a miniature tree that keeps the rules passes" sh "$LINT" "$T/t"

mk; printf '#include "chain/chain.h"\n' >> "$T/t/src/io/io.c"
violates "an include of a higher layer fails" 'src/io/io.c includes chain/chain.h'
mk; printf '#include "io/io-aio.h"\n' >> "$T/t/src/chain/chain.c"
violates "a private header of another module fails" 'src/chain/chain.c includes io/io-aio.h, a private header'
mk; printf 'int g(struct ic_image *img) { return img->drv->flush(img); }\n' >> "$T/t/src/chain/chain.c"
violates "a driver op called outside src/image fails" 'src/chain/chain.c:.*driver and io ops'
mk; printf 'long h(ic_io *io) { return io->ops->pread(io, 0, 0, 0); }\n' >> "$T/t/src/chain/chain.c"
violates "an io op called outside src/io fails" 'src/chain/chain.c:.*driver and io ops'
mk; printf '#include "image/image.h"\n' >> "$T/t/tools/cli.c"
violates "a private header in tools fails" 'tools/cli.c includes a private header'
mk; printf '#include <fcntl.h>\n' >> "$T/t/src/chain/chain.c"
violates "the OS file API outside src/io's backends fails" 'chain.c uses the OS file API'
mk; printf '#include <libxml/tree.h>\n' >> "$T/t/src/chain/chain.c"
violates "libxml2 outside src/xml fails" 'includes libxml2'
mk; mkdir -p "$T/t/src/rpc"; printf '#include "util/error.h"\n' > "$T/t/src/rpc/rpc.c"
violates "a module without a layer rule fails" 'src/rpc is not a known layer'
mk; printf '#include <sys/socket.h>\n' >> "$T/t/src/chain/chain.c"
violates "a socket outside src/qmp fails" 'chain.c speaks to a socket or builds a QMP message'
mk; printf 'void q(json_object *o) { json_object_object_add(o, "execute", 0); }\n' >> "$T/t/src/chain/chain.c"
violates "a QMP message built outside src/qmp fails" 'chain.c speaks to a socket or builds a QMP message'
# (the patterns are split in this file so that it passes rule 6 itself)
for cite in '../sha''red/reference/x.md' 'CONVENTIONS.''md section 3' 'refer''ence 1.13' \
            'qcow2-qed.''md section 2' '/wo''rk/shared/x'; do
    mk; printf '/* see %s */\n' "$cite" >> "$T/t/src/chain/chain.c"
    violates "a comment citing '$cite' fails" 'chain.c:.*cites a file outside the repository'
done
mk; mkdir -p "$T/t/tests/unit"; printf '/* (refer''ence 4.4) */\n' > "$T/t/tests/unit/test-x.c"
violates "a test citing an outside file fails" 'tests/unit/test-x.c:.*cites a file outside'
finish
