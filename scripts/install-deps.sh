#!/bin/sh
# Installs whatever is missing of the packages imgchain builds and tests with.
# Idempotent, and silent when everything is already present.
set -e
PKGS="build-essential pkg-config libxml2-dev zlib1g-dev libzstd-dev libaio-dev
libjson-c-dev libcmocka-dev qemu-utils libxml2-utils libvirt-clients libvirt0 valgrind time
python3 qemu-system-x86 qemu-guest-agent"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
