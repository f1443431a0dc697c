#!/usr/bin/env bash
# Installs everything berth's tests, demo and benchmarks need on a fresh Debian 12 machine (run as root).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(zookeeper xfsprogs e2fsprogs lvm2 cryptsetup-bin btrfs-progs gdisk iproute2 nftables util-linux procps python3-venv lintian curl
  openjdk-17-jre-headless maven kcat)
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

# Apache Kafka from Maven Central, one directory of jars per version in tests/kafka/versions, outside the repo.
# Each is built in a temporary directory and renamed into place, so a version is either whole or absent; a stamp
# of the inputs (pom, version, profile) makes a second run a no-op. Maven's own download cache is ~/.m2.
KAFKA_CACHE="${BERTH_CACHE:-/var/cache/berth}/kafka"
install_kafka() {
  local version=$1 profile=$2 target="$KAFKA_CACHE/$1"
  local stamp
  stamp="$(sha256sum tests/kafka/pom.xml | cut -d' ' -f1) $version $profile"
  if [[ -f "$target/libs/kafka_2.13-$version.jar" && "$(cat "$target/stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  echo "setup: resolving Apache Kafka $version ($profile) into $target"
  # Leftovers of an interrupted run (we hold the cache's lock, so no other run is using them).
  rm -rf "$KAFKA_CACHE/.$version".*
  local temp
  temp=$(mktemp -d "$KAFKA_CACHE/.$version.XXXXXX")
  if ! mvn -q -B -f tests/kafka/pom.xml -P "$profile" -Dkafka.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$temp/libs" >"$temp/mvn.log" 2>&1; then
    cat "$temp/mvn.log" >&2
    rm -rf "$temp"
    echo "setup: resolving Apache Kafka $version failed" >&2
    return 1
  fi
  rm -f "$temp/mvn.log"
  echo "$stamp" >"$temp/stamp"
  chmod -R a+rX "$temp"
  if [[ -e "$target" ]]; then
    mv "$target" "$temp.old"
  fi
  mv "$temp" "$target"
  rm -rf "$temp.old"
}
mkdir -p "$KAFKA_CACHE"
(
  flock 9 # one setup at a time fills the cache
  while read -r version profile; do
    [[ -z "$version" || "$version" == \#* ]] && continue
    install_kafka "$version" "$profile"
  done <tests/kafka/versions
) 9>"$KAFKA_CACHE/.lock"

# The kernel modules the namespace and loop-device tests rely on (built in on most kernels; harmless if so).
for module in loop veth bridge; do modprobe -q "$module" 2>/dev/null || true; done
echo "setup: ok"
