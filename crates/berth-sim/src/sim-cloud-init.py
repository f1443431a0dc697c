#!/usr/bin/python3
"""sim-cloud-init: a stand-in for cloud-init on a berth-sim host (NOT cloud-init; crates/berth-sim/src/cloud_init.rs).

It keeps cloud-init's contract for a user data shell script (the scripts_user module): the user data is read from
the instance's IMDS (IMDSv2 token), stored as /var/lib/cloud/instances/<instance-id>/user-data.txt and, when it
starts with `#!`, written to .../scripts/part-001 and run once per instance as root (the semaphore
.../sem/config_scripts_user is written before it runs, so a later boot runs nothing, even after a failure), its
output appended to /var/log/cloud-init-output.log. A failure is reported: the errors in
/var/lib/cloud/data/result.json, and this unit fails. User data of any other form (#cloud-config, MIME
multi-part, gzip) is refused, not skipped: this stand-in does not model it.

This boot's outcome, for the simulator: /run/sim-cloud-init/result.json
({"instance_id", "ran", "exit_code", "errors"}).
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

IMDS = "http://169.254.169.254"
LOG = "/var/log/cloud-init-output.log"
CLOUD = "/var/lib/cloud"
BOOT_RESULT = "/run/sim-cloud-init/result.json"


def imds(path, token=None, method="GET"):
    """The body of an IMDS path (None on 404), with an IMDSv2 token (or asking for one)."""
    headers = {"X-aws-ec2-metadata-token-ttl-seconds": "300"} if token is None else {
        "X-aws-ec2-metadata-token": token}
    request = urllib.request.Request(IMDS + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def write(path, content, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as file:
        file.write(content)


def log(line):
    with open(LOG, "a") as output:
        output.write(f"sim-cloud-init: {line}\n")
    print(line, flush=True)


def run_script(instance, user_data):
    """scripts_user: the script run as root, its output appended to the log; its exit code."""
    script = f"{instance}/scripts/part-001"
    write(script, user_data, 0o700)
    log(f"scripts_user: running {script}")
    with open(LOG, "ab") as output:
        code = subprocess.run([script], stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                              cwd="/", check=False).returncode
    log(f"scripts_user: {script} exited {code}")
    return code


def main():
    token = imds("/latest/api/token", method="PUT").decode()
    instance_id = imds("/latest/meta-data/instance-id", token).decode()
    instance = f"{CLOUD}/instances/{instance_id}"
    semaphore = f"{instance}/sem/config_scripts_user"
    outcome = {"instance_id": instance_id, "ran": False, "exit_code": None, "errors": []}
    if os.path.exists(semaphore):
        log(f"scripts_user already ran for {instance_id} ({semaphore}): nothing to do")
    else:
        user_data = imds("/latest/user-data", token)
        write(f"{instance}/user-data.txt", user_data or b"", 0o600)
        if os.path.lexists(f"{CLOUD}/instance"):
            os.remove(f"{CLOUD}/instance")
        os.symlink(instance, f"{CLOUD}/instance")
        write(semaphore, b"", 0o644)
        if user_data is None:
            log(f"no user data for {instance_id}")
        elif not user_data.startswith(b"#!"):
            outcome["errors"].append("user data is not a shell script (#!): this stand-in runs nothing else")
        else:
            outcome["ran"] = True
            outcome["exit_code"] = run_script(instance, user_data)
            if outcome["exit_code"] != 0:
                outcome["errors"].append(
                    f"Failed to run module scripts_user: part-001 exited {outcome['exit_code']}")
        for error in outcome["errors"]:
            log(error)
        write(f"{CLOUD}/data/result.json",
              json.dumps({"v1": {"datasource": "sim-cloud-init", "errors": outcome["errors"]}}).encode(),
              0o644)
    write(BOOT_RESULT, json.dumps(outcome).encode(), 0o644)
    return 1 if outcome["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
