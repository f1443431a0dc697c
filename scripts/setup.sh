#!/usr/bin/env bash
# Installs everything berth's tests, demo and benchmarks need on a fresh Debian 12 machine (run as root).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(zookeeper xfsprogs e2fsprogs lvm2 cryptsetup-bin btrfs-progs gdisk iproute2 nftables util-linux procps python3-venv lintian curl)
MOTO_VERSION="5.2.5"
VENV="${BERTH_VENV:-$PWD/.venv}"

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$VENV/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "setup: creating $VENV with moto[server]==$MOTO_VERSION"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# The kernel modules the namespace and loop-device tests rely on (built in on most kernels; harmless if so).
for module in loop veth bridge; do modprobe -q "$module" 2>/dev/null || true; done
echo "setup: ok"
