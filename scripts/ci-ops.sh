#!/usr/bin/env bash
# Operations checks (run as root on Debian 12; .ci/run calls it):
#   1. build the .deb with cargo-deb (workspace `release` profile; `--dist` for the shipping `dist` profile),
#   2. install it with dpkg -i and check that files land where berth.service expects them, that the packaged
#      configuration fails berth check-config saying what to set (and passes once it is set), that the man pages,
#      completions and the kafka.service drop-in are installed, and that the maintainer scripts neither enable nor
#      start berth on install and restart it only after an upgrade, if it runs,
#   3. lintian on the package (findings fail the run unless listed below with the reason),
#   4. systemd-analyze verify on the installed unit (must print nothing),
#   5. systemd-analyze security --offline=yes with the recorded exposure threshold,
#   6. parliament (IAM policy linter, PyPI) on docs/iam-policy.json and docs/iam-policy-kms.json,
#   7. cfn-lint (PyPI) on the CloudFormation templates in docs/examples (the alert rules there are promtool's:
#      crates/berth/tests/alerting.rs),
# then purges the package again. Tools are installed by this script when missing: cargo-deb (cargo install),
# lintian (apt), parliament and cfn-lint (a venv in .venv-ops).
#
# Usage: scripts/ci-ops.sh [--dist] [--deb FILE] [--reuse-build]
#   --deb: check an existing package, skip the build;
#   --reuse-build: the binary must already be built (`make shipped`, which `make test` runs: .ci/run): fail if
#   cargo-deb's build compiles anything, so CI never builds the release tree twice.
set -euo pipefail
cd "$(dirname "$0")/.."

# The unit's exposure as recorded in docs/operations.md ("Unit hardening"): 4.0, i.e. 40 in systemd's tenths.
# Raise it only with a reason written there; lower it when the unit gets tighter.
EXPOSURE_THRESHOLD=40
CARGO_DEB_VERSION=3.8.0
PARLIAMENT_VERSION=1.6.4
CFN_LINT_VERSION=1.58.0
OPS_VENV="${BERTH_OPS_VENV:-$PWD/.venv-ops}"
# Lintian tags accepted, each with the reason (one per line: tag, then the reason after #).
LINTIAN_ACCEPTED=(
  "non-standard-file-perm"          # /etc/berth/berth.toml is 0640 on purpose: it may hold the ZooKeeper digest
  "initial-upload-closes-no-bugs"   # not uploaded to Debian: there is no ITP bug to close
)

profile=release
deb=""
reuse_build=false
while (($#)); do
  case "$1" in
    --dist) profile=dist ;;
    --deb) deb="$2"; shift ;;
    --reuse-build) reuse_build=true ;;
    *) echo "usage: $0 [--dist] [--deb FILE] [--reuse-build]" >&2; exit 2 ;;
  esac
  shift
done

start_all=$(date +%s)
step_start=$start_all
step() {
  local now
  now=$(date +%s)
  echo "ci-ops: ---- $* (previous step $((now - step_start)) s)"
  step_start=$now
}
fail() {
  echo "ci-ops: FAIL: $*" >&2
  exit 1
}

step "tools"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' lintian 2>/dev/null | grep -q "install ok installed"; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (package systemd)"
if [[ -z "$deb" ]] && ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
if ! "$OPS_VENV/bin/python" -c "import parliament, cfnlint" 2>/dev/null \
  || ! "$OPS_VENV/bin/pip" freeze 2>/dev/null | grep -qx "parliament==$PARLIAMENT_VERSION" \
  || ! "$OPS_VENV/bin/pip" freeze 2>/dev/null | grep -qx "cfn-lint==$CFN_LINT_VERSION"; then
  python3 -m venv "$OPS_VENV"
  "$OPS_VENV/bin/pip" install -q --disable-pip-version-check "parliament==$PARLIAMENT_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

if [[ -z "$deb" ]]; then
  step "cargo deb -p berth --profile $profile"
  build_log=$(mktemp)
  if ! deb=$(cargo deb -p berth --locked --profile "$profile" 2>"$build_log" | tail -n 1); then
    cat "$build_log" >&2
    fail "cargo deb -p berth --profile $profile"
  fi
  cat "$build_log" >&2
  compiled=$(grep -c '^ *Compiling ' "$build_log" || true)
  rm -f "$build_log"
  echo "ci-ops: cargo-deb's build compiled $compiled crates"
  if $reuse_build && ((compiled > 0)); then
    fail "cargo deb compiled $compiled crates: the release build of \`make shipped\` was not reused"
  fi
fi
[[ -f "$deb" ]] || fail "no package at '$deb'"
size=$(stat -c %s "$deb")
installed_kib=$(dpkg-deb -f "$deb" Installed-Size)
echo "ci-ops: package $deb: $((size / 1024)) KiB, installed size $installed_kib KiB"

step "dpkg -i"
cleanup() { dpkg --purge berth >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null
unit=/usr/lib/systemd/system/berth.service
[[ -f "$unit" ]] || fail "$unit not installed"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
binary=${exec_start%% *}
[[ -x "$binary" ]] || fail "ExecStart binary $binary is not an executable file"
config=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_start")
[[ -f "$config" ]] || fail "the unit's --config $config is not installed"
dpkg-query -W -f='${Conffiles}\n' berth | grep -q " $config " || fail "$config is not a conffile"
[[ "$(stat -c %a "$config")" == 640 ]] || fail "$config should be mode 0640 (it may hold the ZooKeeper digest)"
"$binary" --version >/dev/null || fail "$binary --version"
# The packaged configuration is minimal: it fails until the required keys are set, naming what to set.
env_dir=$(mktemp -d)
: >"$env_dir/empty"
if said=$("$binary" check-config --env-file "$env_dir/empty" 2>&1); then fail "the packaged $config passed check-config unset"; fi
grep -q "cluster.name: not set.*BERTH_CLUSTER__NAME=" <<<"$said" || fail "check-config did not say what to set: $said"
printf 'BERTH_CLUSTER__NAME=events\nBERTH_CLUSTER__BROKER_COUNT=3\nBERTH_ZOOKEEPER__CONNECT=10.0.1.10:2181\n' >"$env_dir/set"
"$binary" check-config --env-file "$env_dir/set" >/dev/null || fail "the packaged $config with its required keys set fails"
rm -rf "$env_dir"
for doc in README.md operations.md configuration.md aws.md kafka.md architecture.md iam-policy.json iam-policy-kms.json \
  examples/berth-cluster.yaml examples/berth.toml examples/berth-alerts.yaml examples/berth-dashboard.json \
  copyright changelog.Debian.gz; do
  [[ -f "/usr/share/doc/berth/$doc" ]] || fail "/usr/share/doc/berth/$doc is missing"
done
for file in /usr/share/berth/kafka.service.d/berth.conf /usr/share/man/man1/berth.1.gz \
  /usr/share/man/man1/berth-check-config.1.gz /usr/share/bash-completion/completions/berth \
  /usr/share/zsh/vendor-completions/_berth /usr/share/fish/vendor_completions.d/berth.fish; do
  [[ -f "$file" ]] || fail "$file is missing"
done
documentation=$(sed -n 's|^Documentation=file://||p' "$unit")
[[ -f "$documentation" ]] || fail "the unit's Documentation= $documentation is not installed"
# Maintainer scripts (cargo-deb's systemd support): never enable or start on install; after an upgrade, restart
# only a running berth (try-restart); stop it on removal.
scripts=$(mktemp -d)
dpkg-deb --control "$deb" "$scripts"
grep -q 'deb-systemd-invoke try-restart berth.service' "$scripts/postinst" || fail "postinst does not try-restart berth"
! grep -Eq 'deb-systemd-invoke (start|restart) ' "$scripts/postinst" || fail "postinst starts berth"
# dh_installsystemd's --no-enable form: enable again only what was enabled before.
grep -q 'deb-systemd-helper debian-installed berth.service' "$scripts/postinst" || fail "postinst enables berth"
grep -q 'deb-systemd-invoke stop berth.service' "$scripts/prerm" || fail "prerm does not stop berth on removal"
rm -rf "$scripts"
echo "ci-ops: files in place: $binary, $config (conffile), $unit, /usr/share/doc/berth"

step "lintian"
suppress=$(IFS=,; echo "${LINTIAN_ACCEPTED[*]}")
lintian_out=$(lintian --allow-root --tag-display-limit 0 --suppress-tags "$suppress" "$deb" 2>&1 || true)
if [[ -n "$lintian_out" ]]; then
  echo "$lintian_out"
  fail "lintian findings (fix them, or accept them in LINTIAN_ACCEPTED with the reason)"
fi
echo "ci-ops: lintian clean (accepted: ${LINTIAN_ACCEPTED[*]})"

step "systemd-analyze verify"
verify_out=$(systemd-analyze verify "$unit" 2>&1 || true)
if [[ -n "$verify_out" ]]; then
  echo "$verify_out"
  fail "systemd-analyze verify $unit printed the above"
fi
echo "ci-ops: systemd-analyze verify: clean"

step "systemd-analyze security"
exposure=$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for berth.service: \([0-9.]*\).*/\1/p')
echo "ci-ops: exposure $exposure (threshold $EXPOSURE_THRESHOLD tenths)"
systemd-analyze security --offline=yes --threshold="$EXPOSURE_THRESHOLD" "$unit" >/dev/null 2>&1 \
  || fail "exposure $exposure is above $EXPOSURE_THRESHOLD/10"

step "parliament (IAM policy)"
# The policy is a template: fill its placeholders with example values so ARNs are well formed.
fill_placeholders() {
  sed -e 's/REGION/eu-west-1/g; s/ACCOUNT_ID/123456789012/g; s/CLUSTER_NAME/events/g' \
    -e 's/STACK_NAME/kafka-events/g; s/ASG_NAME/events-broker-0/g' \
    -e 's/VOLUME_KMS_KEY_ID/1234abcd-12ab-34cd-56ef-1234567890ab/g' "$1"
}
"$OPS_VENV/bin/parliament" --include-community-auditors --minimum_severity INFO \
  --string "$(fill_placeholders docs/iam-policy.json)" </dev/null \
  || fail "parliament findings on docs/iam-policy.json"
# kms:CreateGrant is a permissions-management action by nature (the community auditor's MEDIUM finding, which
# parliament 1.6.4's ignore_locations cannot silence from a config file): the statement limits it to grants for
# AWS resources (EC2 attaching the volume). Anything above MEDIUM still fails.
"$OPS_VENV/bin/parliament" --include-community-auditors --minimum_severity HIGH \
  --string "$(fill_placeholders docs/iam-policy-kms.json)" </dev/null \
  || fail "parliament findings on docs/iam-policy-kms.json"
echo "ci-ops: parliament: no findings"

step "cfn-lint"
mapfile -t templates < <(grep -l '^AWSTemplateFormatVersion:' docs/examples/*.yaml)
((${#templates[@]})) || fail "no CloudFormation template in docs/examples"
"$OPS_VENV/bin/cfn-lint" --include-checks I -- "${templates[@]}" || fail "cfn-lint findings"
echo "ci-ops: cfn-lint: no findings"

step "done"
echo "ci-ops: ok in $(($(date +%s) - start_all)) s (package $((size / 1024)) KiB, exposure $exposure)"
