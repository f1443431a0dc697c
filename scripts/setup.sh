#!/usr/bin/env bash
# Installs everything berth's tests, demo and benchmarks need on a fresh Debian 12 machine (run as root).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus is here for its promtool, which checks and unit-tests docs/examples/berth-alerts.yaml (crates/berth/tests/
# alerting.rs); nothing runs its server.
APT_PACKAGES=(zookeeper xfsprogs e2fsprogs lvm2 cryptsetup-bin btrfs-progs gdisk iproute2 nftables util-linux procps python3-venv lintian curl
  systemd-container debootstrap openjdk-17-jre-headless maven kcat prometheus)
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

# ---- Host image: the Debian 12 root every simulated host boots with real systemd (systemd-nspawn) ----
# Built once with debootstrap and cached outside the repository under a name that is the hash of its inputs, so it
# is rebuilt only when the input list changes; built in a temporary directory and renamed into place, so a
# half-built image is never used. Hosts never write into it: each boots an overlay of it (berth-sim's container
# host). The newest is linked as `current`, which berth-sim boots (BERTHSIM_HOST_IMAGE overrides).
HOST_IMAGE_CACHE=/var/cache/berth/host-image
HOST_IMAGE_SUITE=bookworm
HOST_IMAGE_MIRROR=http://deb.debian.org/debian
# systemd and dbus: the host's init and bus; iproute2, util-linux, e2fsprogs, xfsprogs: what berth and an operator
# use on a broker host; openjdk-17-jre-headless: Debian's Java for Kafka.
HOST_IMAGE_PACKAGES=(systemd systemd-sysv dbus iproute2 util-linux e2fsprogs xfsprogs openjdk-17-jre-headless)
# Units a headless test host never needs, masked so a container boots faster (measured: READY 0.8 s -> 0.6 s):
# no console or logins, no periodic maintenance.
HOST_IMAGE_MASKED=(getty@tty1.service console-getty.service systemd-logind.service systemd-update-utmp.service
  systemd-update-utmp-runlevel.service e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer
  dpkg-db-backup.timer e2scrub_all.timer fstrim.timer)
# Bump when the customisation below changes (it is an input too).
HOST_IMAGE_REVISION=2
# (debootstrap and systemd-container, which boots the hosts, are in APT_PACKAGES above.)
host_image_key=$(printf '%s\n' "$HOST_IMAGE_SUITE" "$HOST_IMAGE_MIRROR" minbase "$HOST_IMAGE_REVISION" \
  "${HOST_IMAGE_PACKAGES[@]}" "${HOST_IMAGE_MASKED[@]}" | sha256sum | cut -c1-16)
host_image="$HOST_IMAGE_CACHE/$host_image_key"
mkdir -p "$HOST_IMAGE_CACHE"
(
  # One builder at a time (another checkout may run setup concurrently); the loser finds the image built.
  flock 9
  if [[ ! -f "$host_image/etc/os-release" ]]; then
    echo "setup: building the host image $host_image (debootstrap, about 2-3 minutes)"
    started=$(date +%s)
    building="$HOST_IMAGE_CACHE/.building-$host_image_key"
    rm -rf "$building"
    packages=$(IFS=,; echo "${HOST_IMAGE_PACKAGES[*]}")
    debootstrap --variant=minbase --include="$packages" "$HOST_IMAGE_SUITE" "$building" "$HOST_IMAGE_MIRROR" \
      >"$HOST_IMAGE_CACHE/.debootstrap-$host_image_key.log" 2>&1 \
      || { echo "setup: debootstrap failed, see $HOST_IMAGE_CACHE/.debootstrap-$host_image_key.log" >&2; exit 1; }
    # Every container gets its own machine id at boot (an empty file makes systemd generate a transient one) and
    # its hostname from berth-sim (not the build machine's).
    : >"$building/etc/machine-id"
    rm -f "$building/var/lib/dbus/machine-id" "$building/etc/hostname"
    for unit in "${HOST_IMAGE_MASKED[@]}"; do ln -sf /dev/null "$building/etc/systemd/system/$unit"; done
    # The journal lives in memory (/run): nothing of a host's journal is written to disk.
    mkdir -p "$building/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$building/etc/systemd/journald.conf.d/volatile.conf"
    # Package lists and downloaded archives are not needed to boot.
    rm -rf "$building"/var/cache/apt/archives/*.deb "$building"/var/lib/apt/lists/*
    mv -T "$building" "$host_image"
    rm -f "$HOST_IMAGE_CACHE/.debootstrap-$host_image_key.log"
    echo "setup: host image built in $(($(date +%s) - started)) s, $(du -sm "$host_image" | cut -f1) MB"
  fi
  ln -sfn "$host_image_key" "$HOST_IMAGE_CACHE/.current-$$"
  mv -T "$HOST_IMAGE_CACHE/.current-$$" "$HOST_IMAGE_CACHE/current"
) 9>"$HOST_IMAGE_CACHE/.lock"

# cargo-deb: the systemd hosts install berth from the package `make deb` builds (same version as scripts/ci-ops.sh).
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "setup: installing cargo-deb $CARGO_DEB_VERSION (cargo install, a few minutes)"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
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
    # Class-data-sharing archives (tests/kafka/bin/make-cds; a no-op once made): Kafka's classes mapped at every
    # start instead of loaded, for this machine's JVM (the test kit's servers) and, inside the hosts' image, for
    # theirs (the fleets' brokers). An archive belongs to one JVM build, so each JVM makes its own.
    tests/kafka/bin/make-cds "$version"
    systemd-nspawn --quiet --register=no --keep-unit --as-pid2 --volatile=overlay --machine=berth-setup-cds \
      -D "$HOST_IMAGE_CACHE/current" \
      --bind="$KAFKA_CACHE/$version/libs:/var/cache/berth/kafka/$version/libs" \
      --bind-ro="$PWD/tests/kafka:/usr/local/lib/berth-sim/kafka" \
      /usr/local/lib/berth-sim/kafka/bin/make-cds "$version" \
      2> >(grep -v 'Attempted to remove disk file system' >&2)
  done <tests/kafka/versions
) 9>"$KAFKA_CACHE/.lock"

# A librdkafka that speaks SCRAM to Kafka 4.x, for kcat against secured listeners: Debian's 2.0.2 repeats the client
# nonce in SCRAM's final message, which Kafka 4.x refuses (fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895).
# PyPI's confluent-kafka wheel carries a self-contained librdkafka (OpenSSL built in); pip downloads the wheel and its
# library is linked as librdkafka.so.1, which berth-testkit puts on LD_LIBRARY_PATH for a secured client's kcat.
CONFLUENT_KAFKA_VERSION=2.16.1
LIBRDKAFKA_CACHE="${BERTH_CACHE:-/var/cache/berth}/librdkafka"
mkdir -p "$LIBRDKAFKA_CACHE"
(
  flock 9
  if [[ "$(cat "$LIBRDKAFKA_CACHE/stamp" 2>/dev/null)" != "$CONFLUENT_KAFKA_VERSION" || ! -e "$LIBRDKAFKA_CACHE/lib/librdkafka.so.1" ]]; then
    echo "setup: extracting librdkafka from confluent-kafka $CONFLUENT_KAFKA_VERSION (PyPI) into $LIBRDKAFKA_CACHE"
    temp=$(mktemp -d "$LIBRDKAFKA_CACHE/.build.XXXXXX")
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$temp/wheel" "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
    "$VENV/bin/python" -m zipfile -e "$temp"/wheel/*.whl "$temp/unpacked"
    mkdir -p "$temp/lib"
    cp "$temp"/unpacked/confluent_kafka.libs/librdkafka-*.so.1 "$temp/lib/librdkafka.so.1"
    chmod -R a+rX "$temp/lib"
    rm -rf "$LIBRDKAFKA_CACHE/lib"
    mv "$temp/lib" "$LIBRDKAFKA_CACHE/lib"
    echo "$CONFLUENT_KAFKA_VERSION" >"$LIBRDKAFKA_CACHE/stamp"
    rm -rf "$temp"
  fi
) 9>"$LIBRDKAFKA_CACHE/.lock"

# Every simulated host is a systemd container, and systemd, journald and the other units each take inotify
# instances: with the kernel's default of 128 per user, a few fleets at once (a test binary runs its tests in
# parallel) fail to boot containers with "Too many open files" (seen with four fleets). Raised, never lowered.
if (($(sysctl -n fs.inotify.max_user_instances) < 1024)); then
  sysctl -qw fs.inotify.max_user_instances=1024
fi

# The kernel modules the namespace and loop-device tests rely on (built in on most kernels; harmless if so).
for module in loop veth bridge; do modprobe -q "$module" 2>/dev/null || true; done
echo "setup: ok"
