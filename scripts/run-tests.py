#!/usr/bin/env python3
"""Every test of the workspace, each test binary under its own timeout (README's test command runs this).

Why not plain `cargo test`: it has no timeout, so one hung end-to-end test ends a CI run with no name, and it
does not say where the time went. This builds every test binary once (`cargo test --no-run`), runs each as cargo
would (from its package's directory), kills a binary's whole process group when
it outlives its budget, goes on with the rest (like `--no-fail-fast`), runs the doc tests, and ends with one line
per binary: its time and its result, slowest first. Exits 1 if any binary failed or timed out.

A budget is about three times the binary's time in CI (`BUDGETS`, seconds); a binary not listed gets
`DEFAULT_BUDGET`. Usage: `scripts/run-tests.py [filter...]`; a filter is passed to every test binary, as
`cargo test -- <filter>` would.
"""
import json
import os
import signal
import subprocess
import sys
import time

DEFAULT_BUDGET = 600
# The end-to-end suites (package `berth-e2e`'s tests) boot fleets of real Kafka, ZooKeeper and systemd hosts.
BUDGETS = {
    "asg": 1800,
    "crash_in_every_state": 1500,
    "fleet_of_three": 1500,
    "kraft_without_zookeeper": 1500,
    "kraft_staggered_birth": 900,
    "mass_boot": 1200,
    "roll": 1500,
    "shutting_down_replacement": 1200,
    "systemd_host": 1800,
    "secured_kafka": 1800,
}
GRACE_SECONDS = 15


def test_binaries():
    """(label, target name, executable, package dir) of every test binary `cargo test --workspace` runs."""
    build = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"],
        stdout=subprocess.PIPE, text=True)
    if build.returncode != 0:
        sys.exit(f"run-tests: the test build failed (cargo exit {build.returncode})")
    binaries = []
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        target = message["target"]
        package_dir = os.path.dirname(message["manifest_path"])
        label = f"{os.path.relpath(package_dir)}: {target['name']} ({'/'.join(target['kind'])})"
        binaries.append((label, target["name"], message["executable"], package_dir))
    return binaries


def run(label, command, cwd, budget, env):
    """Runs one test binary under its budget; returns (seconds, result)."""
    print(f"\n=== {label} (budget {budget} s)", flush=True)
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    try:
        code = child.wait(timeout=budget)
        result = "ok" if code == 0 else f"FAILED (exit {code})"
    except KeyboardInterrupt:
        # This run is being stopped (Ctrl-C, SIGTERM): the binary's own session goes with it.
        os.killpg(child.pid, signal.SIGKILL)
        raise
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        result = f"TIMED OUT after {budget} s"
        print(f"run-tests: {label} {result}", file=sys.stderr, flush=True)
    return time.monotonic() - started, result


def main(filters):
    outcomes = []
    for label, name, executable, package_dir in test_binaries():
        env = dict(os.environ, CARGO_MANIFEST_DIR=package_dir)
        budget = BUDGETS.get(name, DEFAULT_BUDGET)
        outcomes.append((label, *run(label, [executable, *filters], package_dir, budget, env)))
    doc = ["cargo", "test", "--workspace", "--doc", "--", *filters]
    outcomes.append(("doc tests", *run("doc tests", doc, os.getcwd(), DEFAULT_BUDGET, dict(os.environ))))
    print("\nrun-tests: seconds per test binary, slowest first")
    for label, seconds, result in sorted(outcomes, key=lambda outcome: -outcome[1]):
        print(f"{seconds:8.1f}  {result:24}  {label}")
    failed = [label for label, _, result in outcomes if result != "ok"]
    print(f"run-tests: {len(outcomes)} binaries, {sum(o[1] for o in outcomes):.0f} s, {len(failed)} failed"
          + (": " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


def stop_on_sigterm(signum, frame):
    """SIGTERM (a CI job's timeout, `kill`) stops the run as Ctrl-C does, so the running binary is killed too."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    sys.exit(main(sys.argv[1:]))
