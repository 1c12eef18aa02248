#!/bin/sh
# fresh-check.sh - run the README's two commands on a freshly installed
# Debian 12, the way a new user meets the project.
#
#   sh scripts/fresh-check.sh          # make demo, then make check
#   sh scripts/fresh-check.sh demo     # make demo only
#
# A minimal Debian 12 (debootstrap --variant=minbase) is unpacked into a
# temporary folder; only `make` is added to it, the README's one
# precondition.  The committed tree (git archive HEAD; the working tree when
# this is not a git checkout) is copied in, and each command runs once, with
# an empty environment, in a chroot.  Anything that only works on a warm
# machine (a package installed by hand, a tool on the host's PATH, a build
# left in build/) fails here.
#
# The base system is cached as a tarball (FRESH_CACHE, default
# /var/cache/imgchain-fresh), so only the first run pays for debootstrap.
# Logs go to FRESH_LOG (default /tmp/imgchain-fresh-logs).
#
# Exit status: 0 when both commands passed, or when the check cannot run
# here (not root, no chroot, the package mirror unreachable): it then says
# what it skipped and why.  1 when a command failed on the fresh system.
#
# Safety: the host's /dev and /sys are bind-mounted into the chroot (as
# slaves, so nothing done inside propagates back) and a fresh /proc is
# mounted.  Cleanup unmounts them recursively, checks with findmnt that
# nothing is mounted below the chroot any more, and only then removes it
# with rm --one-file-system; if anything is still mounted it removes
# nothing and says so.
set -u
what=${1:-all}
case "$what" in all|demo) ;; *) echo "usage: sh scripts/fresh-check.sh [demo]" >&2; exit 64 ;; esac

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${FRESH_CACHE:-/var/cache/imgchain-fresh}
logs=${FRESH_LOG:-/tmp/imgchain-fresh-logs}
base="$cache/bookworm-minbase.tar"
say() { echo "fresh-check: $*"; }
skip() { say "skipped: $*"; exit 0; }
fail() { say "FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "not running as root (a chroot and bind mounts need root)"
for c in chroot mount umount findmnt tar; do
    command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed on this machine"
done
mkdir -p "$cache" "$logs" || fail "cannot create $cache or $logs"

mirror() {
    m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    [ -n "$m" ] || m=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    echo "$m"
}

if [ ! -s "$base" ]; then
    url=$(mirror)
    [ -n "$url" ] || skip "no Debian mirror is configured in /etc/apt on this machine"
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends debootstrap; } >"$logs/debootstrap-install.log" 2>&1 ||
            skip "debootstrap is not installed and could not be installed (see $logs/debootstrap-install.log)"
    fi
    tmp=$(mktemp -d /var/tmp/imgchain-debootstrap.XXXXXX) || fail "mktemp"
    say "building a minimal Debian 12 from $url (once; cached in $base)"
    if ! debootstrap --variant=minbase bookworm "$tmp" "$url" >"$logs/debootstrap.log" 2>&1; then
        rm -rf --one-file-system "$tmp"
        # An unreachable mirror is this machine's limit, not the project's fault.
        if grep -qiE 'Failed getting release file|Temporary failure|Could not resolve|Connection (refused|timed out)|Network is unreachable' "$logs/debootstrap.log"; then
            skip "debootstrap cannot reach the package mirror $url (see $logs/debootstrap.log)"
        fi
        fail "debootstrap failed (see $logs/debootstrap.log)"
    fi
    tar -C "$tmp" -cf "$base.part" . && mv "$base.part" "$base" || { rm -rf --one-file-system "$tmp"; fail "cannot write $base"; }
    rm -rf --one-file-system "$tmp"
fi

root=$(mktemp -d /var/tmp/imgchain-fresh.XXXXXX) || fail "mktemp"
cleanup() {
    for m in dev sys proc; do
        if findmnt -rn -o TARGET | grep -qxF "$root/$m"; then umount -R "$root/$m" 2>/dev/null || umount -R -l "$root/$m"; fi
    done
    left=$(findmnt -rn -o TARGET | grep -F "$root/" || true)
    if [ -n "$left" ]; then
        say "still mounted below $root, so nothing was removed:" >&2
        echo "$left" | sed 's/^/    /' >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tar -C "$root" -xf "$base" || fail "cannot unpack $base"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc" || fail "cannot mount /proc in the chroot"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" || fail "cannot bind /dev into the chroot"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" || fail "cannot bind /sys into the chroot"

# Run a command in the chroot with an empty environment, as a fresh login would.
in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c "$1"
}

if ! in_root 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make' \
        >"$logs/make-install.log" 2>&1; then
    if grep -qiE 'Temporary failure|Could not resolve|Failed to fetch|Network is unreachable' "$logs/make-install.log"; then
        skip "the chroot cannot reach the package mirror (see $logs/make-install.log)"
    fi
    fail "cannot install make in the chroot (see $logs/make-install.log)"
fi

mkdir -p "$root/root/imgchain"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" archive HEAD | tar -x -C "$root/root/imgchain" || fail "cannot copy the project (git archive)"
    src="the committed tree ($(git -C "$top" rev-parse --short HEAD))"
else
    tar -C "$top" --exclude=./build -cf - . | tar -x -C "$root/root/imgchain" || fail "cannot copy the project"
    src="the working tree"
fi
say "copied $src into a fresh Debian 12 with only make added"

rc=0
run_step() { # name command
    log="$logs/$1.log"
    start=$(date +%s)
    if in_root "cd /root/imgchain && $2" >"$log" 2>&1; then
        say "  $2: ok on the first run ($(($(date +%s) - start)) s)$(summary "$log")"
    else
        rc=1
        say "  $2: FAILED on the first run ($(($(date +%s) - start)) s, log: $log)$(summary "$log")"
        grep -m 3 -E 'error|Error|FAIL' "$log" | cut -c1-160 | sed 's/^/    /'
        tail -n 15 "$log" | sed 's/^/    /'
    fi
}
summary() {
    s=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    [ -n "$s" ] && printf ': %s' "$s"
}
run_step demo "make demo"
[ "$what" = all ] && run_step check "make check"
[ "$rc" = 0 ] && say "both README commands passed on a fresh Debian 12" || say "a README command failed on a fresh Debian 12"
exit $rc
