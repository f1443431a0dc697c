"""A moto server whose EC2 attach calls validate like real EC2, plus a control endpoint for tests.

moto 5.2.5 performs no attach validation: attaching an in-use ENI or volume, a volume in another AZ, or a second
ENI at a taken device index all succeed. Real EC2 refuses each of these, and berth's takeover logic is only
tested when the simulated EC2 refuses too. This launcher patches moto's backends before starting
ThreadedMotoServer:

* AttachNetworkInterface: InvalidNetworkInterface.InUse (ENI in use), InvalidParameterCombination (ENI in another
  AZ than the instance), InvalidParameterValue (device index taken), IncorrectInstanceState (instance
  shutting-down or terminated).
* AttachVolume: VolumeInUse, InvalidVolume.ZoneMismatch, InvalidParameterValue (device name taken),
  IncorrectInstanceState.
* ModifyNetworkInterfaceAttribute: honours `Attachment.DeleteOnTermination` (moto ignores it), so an attachment
  that would be deleted with its instance can be shown, as real EC2 shows it.
* TerminateInstances: optionally holds the instance in `shutting-down` (attachments kept, as on EC2) for a
  configurable time before it becomes `terminated`; at that point its secondary ENIs are either detached (real
  EC2, `--eni-on-terminate detach`) or left in-use on the dead instance (moto's own behaviour, `keep`).

The control endpoint (plain HTTP, JSON bodies) lets a test change these switches at run time:

* GET  /config                    -> {"terminate_hold_seconds": float, "eni_on_terminate": "detach"|"keep"}
* POST /config  {same keys}       -> updates the given keys, answers the whole config
* POST /finish  {"instance_id"}   -> ends a shutting-down hold now (the instance becomes terminated)
* POST /shutting-down {"instance_id", "seconds"} -> puts a running instance into shutting-down for `seconds`
  (0 or absent: until /finish)

Usage: strict_moto.py --host 127.0.0.1 --port 0 --control-port 0 [--eni-on-terminate detach|keep]
                      [--terminate-hold-seconds 0]
Port 0 picks a free port. Once both servers listen, one line is printed to stdout:
  READY {"endpoint": "http://host:port", "control": "http://host:port"}
The process then serves until it receives SIGTERM or SIGINT (or its stdin closes, with --exit-on-stdin-eof).
Run it inside a network namespace with a prefix such as `ip netns exec <ns>`; nothing here depends on the host.
"""

import argparse
import logging
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.server import ThreadedMotoServer

STATE = {"terminate_hold_seconds": 0.0, "eni_on_terminate": "detach"}
LOCK = threading.RLock()
# instance id -> threading.Timer finishing its shutting-down hold (None when held until /finish)
HOLDS = {}

DEAD_STATES = ("shutting-down", "terminated")

_original_attach_eni = NetworkInterfaceBackend.attach_network_interface
_original_attach_volume = EBSBackend.attach_volume
_original_terminate = Instance.terminate
_original_modify_eni = ElasticNetworkInterfaces.modify_network_interface_attribute


def _check_instance_alive(instance):
    if instance.state in DEAD_STATES:
        raise EC2ClientError(
            "IncorrectInstanceState",
            f"The instance '{instance.id}' is not in a valid state for this operation.",
        )


def strict_attach_network_interface(self, eni_id, instance_id, device_index):
    """AttachNetworkInterface with real EC2's refusals."""
    with LOCK:
        eni = self.get_network_interface(eni_id)
        instance = self.get_instance(instance_id)
        _check_instance_alive(instance)
        if eni.instance is not None or eni.status != "available":
            raise EC2ClientError("InvalidNetworkInterface.InUse", f"Interface: [{eni_id}] in use.")
        eni_zone = eni.subnet.availability_zone if eni.subnet else None
        if eni_zone != instance.availability_zone:
            raise EC2ClientError(
                "InvalidParameterCombination",
                "You may not attach a network interface to an instance if they are not in the same availability zone",
            )
        if int(device_index) in instance.nics:
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Instance '{instance_id}' already has an interface attached at device index '{int(device_index)}'.",
            )
        return _original_attach_eni(self, eni_id, instance_id, device_index)


def strict_attach_volume(self, volume_id, instance_id, device_path, delete_on_termination=False):
    """AttachVolume with real EC2's refusals."""
    with LOCK:
        volume = self.get_volume(volume_id)
        instance = self.get_instance(instance_id)
        _check_instance_alive(instance)
        if volume.attachment is not None:
            raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
        if volume.availability_zone != instance.availability_zone:
            raise EC2ClientError(
                "InvalidVolume.ZoneMismatch",
                f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
            )
        if device_path in instance.block_device_mapping:
            raise EC2ClientError("InvalidParameterValue", f"Attachment point {device_path} is already in use")
        return _original_attach_volume(self, volume_id, instance_id, device_path, delete_on_termination)


def strict_modify_network_interface_attribute(self):
    """ModifyNetworkInterfaceAttribute, with the attachment's DeleteOnTermination as real EC2 takes it."""
    attachment = self._get_param("Attachment") or {}
    flag = attachment.get("DeleteOnTermination")
    if flag is not None:
        with LOCK:
            eni = self.ec2_backend.get_network_interface(self._get_param("NetworkInterfaceId"))
            if eni.attachment_id != attachment.get("AttachmentId"):
                raise EC2ClientError(
                    "InvalidAttachmentID.NotFound",
                    f"The attachment ID '{attachment.get('AttachmentId')}' does not exist",
                )
            eni.delete_on_termination = str(flag).lower() == "true"
    return _original_modify_eni(self)


def _finish_termination(instance):
    """shutting-down -> terminated: moto's own terminate, then real EC2's ENI release when configured."""
    with LOCK:
        timer = HOLDS.pop(instance.id, None)
        if timer is not None:
            timer.cancel()
        if instance.state == "terminated":
            return
        secondary = [nic for index, nic in instance.nics.items() if index != 0]
        _original_terminate(instance)
        if STATE["eni_on_terminate"] == "detach":
            for nic in secondary:
                if nic.instance is instance and not nic.delete_on_termination:
                    instance.detach_eni(nic)


def _enter_shutting_down(instance, seconds):
    with LOCK:
        if instance.state in DEAD_STATES:
            return
        instance._state.name = "shutting-down"
        instance._state.code = 32
        timer = None
        if seconds and seconds > 0:
            timer = threading.Timer(seconds, _finish_termination, args=(instance,))
            timer.daemon = True
        HOLDS[instance.id] = timer
        if timer is not None:
            timer.start()


def strict_terminate(self):
    """Instance.terminate: through shutting-down when a hold is configured, then the configured ENI release."""
    import copy

    with LOCK:
        previous = copy.copy(self._state)
        hold = float(STATE["terminate_hold_seconds"])
        if self.state == "shutting-down":
            return previous
        if hold > 0:
            _enter_shutting_down(self, hold)
        else:
            _finish_termination(self)
        return previous


def _find_instance(instance_id):
    for account in list(ec2_backends.values()):
        for backend in list(account.values()):
            try:
                return backend.get_instance(instance_id)
            except Exception:  # noqa: BLE001 - moto raises its own not-found error per backend
                continue
    return None


class Control(BaseHTTPRequestHandler):
    """The test control endpoint."""

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        return

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path == "/config":
            with LOCK:
                return self._reply(200, STATE)
        if self.path == "/health":
            return self._reply(200, {"ok": True})
        return self._reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self):  # noqa: N802 - http.server naming
        try:
            body = self._body()
        except ValueError as error:
            return self._reply(400, {"error": f"bad JSON: {error}"})
        if self.path == "/config":
            with LOCK:
                if "terminate_hold_seconds" in body:
                    STATE["terminate_hold_seconds"] = float(body["terminate_hold_seconds"])
                if "eni_on_terminate" in body:
                    if body["eni_on_terminate"] not in ("detach", "keep"):
                        return self._reply(400, {"error": "eni_on_terminate must be detach or keep"})
                    STATE["eni_on_terminate"] = body["eni_on_terminate"]
                return self._reply(200, STATE)
        if self.path in ("/finish", "/shutting-down"):
            instance = _find_instance(body.get("instance_id", ""))
            if instance is None:
                return self._reply(404, {"error": f"no instance {body.get('instance_id')!r}"})
            if self.path == "/finish":
                _finish_termination(instance)
            else:
                _enter_shutting_down(instance, float(body.get("seconds") or 0))
            return self._reply(200, {"instance_id": instance.id, "state": instance.state})
        return self._reply(404, {"error": f"no such path {self.path}"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--eni-on-terminate", choices=("detach", "keep"), default="detach")
    parser.add_argument("--terminate-hold-seconds", type=float, default=0.0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    STATE["eni_on_terminate"] = args.eni_on_terminate
    STATE["terminate_hold_seconds"] = args.terminate_hold_seconds
    NetworkInterfaceBackend.attach_network_interface = strict_attach_network_interface
    EBSBackend.attach_volume = strict_attach_volume
    Instance.terminate = strict_terminate
    ElasticNetworkInterfaces.modify_network_interface_attribute = strict_modify_network_interface_attribute
    assert InstanceBackend.terminate_instances  # the backend calls Instance.terminate, patched above

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    control = ThreadingHTTPServer((args.host, args.control_port), Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    control_port = control.server_address[1]
    ready = {"endpoint": f"http://{_url_host(host)}:{port}", "control": f"http://{_url_host(args.host)}:{control_port}"}
    print("READY " + json.dumps(ready), flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if args.exit_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    control.shutdown()
    server.stop()


def _url_host(host):
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    main()
