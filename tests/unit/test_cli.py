"""The ``vifplug`` CLI against a small real HTTP server on a unix socket.

The stub speaks the contract's API v1 (paths, statuses, error envelopes) from
canned data and records every request, so each test checks both sides: what
the CLI sent (method, path, query, body, headers) and what it printed and
returned.  No daemon, no OVS: this is the client alone.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vifplug
from vifplug import cli
from vifplug import conf as vconf

VIF_ID = "6f1c3a52-8d9e-4b7a-a1c2-0e5d4f3b2a10"
OTHER_ID = "0d2e4f60-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
INSTANCE_UUID = "0c7f2d1e-3b4a-4c5d-8e9f-a0b1c2d3e4f5"

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vif-ovs.json"


def _ovo(name: str, version: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "versioned_object.namespace": "os_vif",
        "versioned_object.name": name,
        "versioned_object.version": version,
        "versioned_object.data": data,
    }


HOST_INFO = _ovo(
    "HostInfo",
    "1.0",
    {
        "plugin_info": [
            _ovo(
                "HostPluginInfo",
                "1.0",
                {
                    "plugin_name": "ovs",
                    "vif_info": [
                        _ovo(
                            "HostVIFInfo",
                            "1.1",
                            {
                                "vif_object_name": "VIFOpenVSwitch",
                                "min_version": "1.0",
                                "max_version": "1.0",
                                "supported_port_profiles": [
                                    _ovo(
                                        "HostPortProfileInfo",
                                        "1.0",
                                        {
                                            "profile_object_name": "VIFPortProfileOpenVSwitch",
                                            "min_version": "1.0",
                                            "max_version": "1.4",
                                        },
                                    ),
                                ],
                            },
                        ),
                    ],
                },
            ),
            _ovo(
                "HostPluginInfo",
                "1.0",
                {
                    "plugin_name": "noop",
                    "vif_info": [
                        _ovo(
                            "HostVIFInfo",
                            "1.1",
                            {
                                "vif_object_name": "VIFVHostUser",
                                "min_version": "1.0",
                                "max_version": "1.1",
                                "supported_port_profiles": [],
                            },
                        ),
                    ],
                },
            ),
        ]
    },
)


def _vif(
    vif_id: str, *, name: str, device: str, ofport: int | None, status: str = "active"
) -> dict[str, Any]:
    return {
        "vif_id": vif_id,
        "instance": {"uuid": INSTANCE_UUID, "name": name},
        "plugin": "ovs",
        "vif_object": {"name": "VIFOpenVSwitch", "version": "1.0"},
        "lifecycle": "plugged",
        "device": device,
        "bridge": "br-int",
        "port": device,
        "ofport": ofport,
        "iface_id": vif_id,
        "iface_status": status,
        "mac": "fa:16:3e:11:22:33",
        "network": None,
        "pool_device": None,
        "mode": None,
        "portgroup": None,
        "teaming_type": None,
        "teaming_peer": None,
        "created_at": "2023-11-14T22:13:20Z",
        "updated_at": "2023-11-14T22:13:21.5Z",
    }


NETWORKS = {
    "networks": [
        {
            "name": "tenant",
            "type": "ovs",
            "bridge": "br-tenant",
            "mode": "vepa",
            "bridge_id": "tenant",
            "devices": [],
            "portgroups": [],
        },
        {
            "name": "uplink",
            "type": "direct",
            "bridge": None,
            "mode": "vepa",
            "bridge_id": "uplink",
            "devices": [{"device": "ens1f0", "vifs": [VIF_ID]}, {"device": "ens1f1", "vifs": []}],
            "portgroups": [
                {"name": "web", "default": True, "virtualport": None, "bandwidth": None},
                {"name": "backup", "default": False, "virtualport": None, "bandwidth": None},
            ],
        },
    ]
}


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


@dataclasses.dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class StubDaemon:
    """The API v1 of the contract, from canned data; thread-safe enough for
    one CLI at a time."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.vifs: dict[str, dict[str, Any]] = {
            VIF_ID: _vif(VIF_ID, name="demo-vm", device="tap6f1c3a52-8d", ofport=7),
            OTHER_ID: _vif(
                OTHER_ID, name="other-vm", device="tap0d2e4f60-1a", ofport=None, status="inactive"
            ),
        }
        self.plug_bodies: dict[str, Any] = {}
        self.errors: list[BaseException | None] = []

    def handle(self, seen: Seen) -> tuple[int, Any]:
        self.requests.append(seen)
        parts = seen.path.split("/")
        route = (seen.method, seen.path)
        if route == ("GET", "/v1/host-info"):
            version = seen.query.get("version", ["1.0"])[0]
            if version not in ("1.0",):
                return 406, _error(
                    "version_not_available",
                    f"HostInfo cannot be produced at version {version}; "
                    "this host serves 1.0 to 1.0.",
                    max_version="1.0",
                    min_version="1.0",
                )
            return 200, HOST_INFO
        if route == ("GET", "/v1/vifs"):
            return 200, {"vifs": list(self.vifs.values())}
        if route == ("POST", "/v1/vifs"):
            return self._plug(seen.body)
        if route == ("GET", "/v1/networks"):
            return 200, NETWORKS
        if len(parts) in (4, 5) and parts[:3] == ["", "v1", "vifs"]:
            vif_id = urllib.parse.unquote(parts[3])
            if vif_id not in self.vifs:
                return 404, _error(
                    "vif_not_found",
                    f"No VIF with id {vif_id} is plugged on this host.",
                    vif_id=vif_id,
                )
            if len(parts) == 4 and seen.method == "GET":
                return 200, self.vifs[vif_id]
            if len(parts) == 4 and seen.method == "DELETE":
                del self.vifs[vif_id]
                return 204, None
            if parts[4] == "status" and seen.method == "PUT":
                self.vifs[vif_id]["iface_status"] = seen.body["iface_status"]
                return 200, self.vifs[vif_id]
        return 404, _error("not_found", f"There is no {seen.path} in API v1.")

    def _plug(self, body: Any) -> tuple[int, Any]:
        try:
            vif_id = body["vif"]["versioned_object.data"]["id"]
        except (KeyError, TypeError):
            return 400, _error(
                "invalid_object", "The vif is not a valid os_vif object: it has no id.", what="vif"
            )
        if vif_id in self.plug_bodies:
            if self.plug_bodies[vif_id] != body:
                return 409, _error(
                    "vif_conflict",
                    f"VIF {vif_id} is already plugged with different content (address).",
                    vif_id=vif_id,
                )
            return 200, self.vifs[vif_id]
        self.plug_bodies[vif_id] = copy.deepcopy(body)
        self.vifs[vif_id] = _vif(vif_id, name="demo-vm", device="tap" + vif_id[:11], ofport=9)
        return 201, self.vifs[vif_id]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _UnixHTTPServer

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        seen = Seen(
            method=self.command,
            path=url.path,
            query=urllib.parse.parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        status, answer = self.server.stub.handle(seen)
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes the client address, which a unix socket lacks.
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    # server_close() joins the handler threads: none outlives its test.
    daemon_threads = False
    block_on_close = True

    def __init__(self, path: str, stub: StubDaemon) -> None:
        self.stub = stub
        super().__init__(path, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection is normal; anything else
        # is a bug in the stub, which the fixture turns into a failure.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.stub.errors.append(error)


@pytest.fixture
def daemon(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubDaemon]:
    """The stub serving on a fresh unix socket named by $VIFPLUG_SOCKET."""
    path = str(short_tmp / "vifplug.sock")
    stub = StubDaemon()
    server = _UnixHTTPServer(path, stub)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-vifplugd"
    )
    thread.start()
    monkeypatch.setenv(cli.SOCKET_ENV, path)
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert stub.errors == [], "the stub daemon failed while serving"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- host-info ---------------------------------------------------------------------


def test_host_info_table_lists_plugins_vif_objects_and_profiles(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "host-info")
    assert (status, err) == (0, "")
    [seen] = daemon.requests
    assert (seen.method, seen.path, seen.query) == ("GET", "/v1/host-info", {})
    lines = out.splitlines()
    assert lines[0] == "HostInfo 1.0"
    assert lines[2].split() == ["PLUGIN", "VIF", "OBJECT", "VERSIONS", "PORT", "PROFILES"]
    assert lines[3].split() == [
        "ovs",
        "VIFOpenVSwitch",
        "1.0",
        "VIFPortProfileOpenVSwitch",
        "1.0-1.4",
    ]
    assert lines[4].split() == ["noop", "VIFVHostUser", "1.0-1.1", "-"]


def test_host_info_sends_version_and_manifest_and_json_is_the_primitive(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"
    status, out, _ = run(capsys, "--json", "host-info", "--version", "1.0", "--manifest", manifest)
    assert status == 0
    assert daemon.requests[0].query == {"version": ["1.0"], "manifest": [manifest]}
    assert json.loads(out) == HOST_INFO


def test_host_info_406_exits_1_with_message_and_json_envelope_on_stdout(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "host-info", "--version", "2.0", "--json")
    assert status == cli.EXIT_API_ERROR
    assert "HostInfo cannot be produced at version 2.0" in err
    assert "[version_not_available]" in err
    assert json.loads(out)["error"]["details"] == {"max_version": "1.0", "min_version": "1.0"}


@pytest.mark.parametrize(
    "argv",
    [
        ["host-info", "--version", "one"],
        ["host-info", "--manifest", "HostInfo"],
        ["host-info", "--manifest", ""],
    ],
)
def test_host_info_bad_versions_are_usage_errors_and_send_nothing(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, _, err = run(capsys, *argv)
    assert status == cli.EXIT_USAGE
    assert "usage:" in err
    assert daemon.requests == []


# --- list and show -----------------------------------------------------------------


def test_list_prints_a_table_with_whole_vif_ids(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "list")
    assert (status, err) == (0, "")
    assert [(r.method, r.path) for r in daemon.requests] == [("GET", "/v1/vifs")]
    lines = out.splitlines()
    assert lines[0].split() == [
        "VIF",
        "ID",
        "INSTANCE",
        "PLUGIN",
        "DEVICE",
        "BRIDGE",
        "OFPORT",
        "IFACE-STATUS",
        "STATE",
        "TEAMING",
    ]
    assert lines[1].split() == [
        VIF_ID,
        "demo-vm",
        "ovs",
        "tap6f1c3a52-8d",
        "br-int",
        "7",
        "active",
        "plugged",
        "-",
    ]
    assert lines[2].split() == [
        OTHER_ID,
        "other-vm",
        "ovs",
        "tap0d2e4f60-1a",
        "br-int",
        "-",
        "inactive",
        "plugged",
        "-",
    ]


def test_list_json_is_the_api_body(daemon: StubDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "list", "--json")
    assert status == 0
    assert json.loads(out) == {"vifs": list(daemon.vifs.values())}


def test_list_of_nothing_prints_only_the_header(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.vifs.clear()
    status, out, _ = run(capsys, "list")
    assert status == 0
    assert out.splitlines() == [
        "VIF ID  INSTANCE  PLUGIN  DEVICE  BRIDGE  OFPORT  IFACE-STATUS  STATE  TEAMING"
    ]


def test_show_prints_every_field(daemon: StubDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "show", VIF_ID)
    assert status == 0
    assert daemon.requests[0].path == f"/v1/vifs/{VIF_ID}"
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["VIF ID"] == VIF_ID
    assert fields["Instance"] == f"demo-vm ({INSTANCE_UUID})"
    assert fields["VIF object"] == "VIFOpenVSwitch 1.0"
    assert fields["OFPort"] == "7"
    assert fields["iface-id"] == VIF_ID
    assert fields["Pool device"] == "-"
    assert fields["Created"].startswith("2023-11-1")


def test_show_of_unknown_vif_exits_1_with_the_envelope_message(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "show", "no-such-vif")
    assert status == cli.EXIT_API_ERROR
    assert out == ""
    assert err == (
        "vifplug: error: No VIF with id no-such-vif is plugged on this host. [vif_not_found]\n"
    )


def test_vif_ids_are_sent_as_one_path_segment(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "show", "../host-info")
    assert status == cli.EXIT_API_ERROR
    assert daemon.requests[0].path == "/v1/vifs/..%2Fhost-info"
    assert "No VIF with id ../host-info" in err


# --- plug --------------------------------------------------------------------------


def test_plug_posts_the_file_with_wait_and_timeout(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(EXAMPLE.read_text())
    status, out, err = run(
        capsys, "plug", str(EXAMPLE), "--wait", "ovn-installed", "--timeout", "45"
    )
    assert (status, err) == (0, "")
    [seen] = daemon.requests
    assert (seen.method, seen.path) == ("POST", "/v1/vifs")
    assert seen.query == {"wait": ["ovn-installed"], "timeout": ["45"]}
    assert seen.body == body
    assert seen.headers["content-type"] == "application/json"
    assert out.splitlines()[0] == f"Plugged VIF {VIF_ID}."


def test_plug_without_options_leaves_wait_to_the_daemon(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, _ = run(capsys, "plug", str(EXAMPLE))
    assert status == 0
    assert daemon.requests[0].query == {}


def test_second_plug_with_same_body_reports_nothing_changed(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "plug", str(EXAMPLE))[0] == 0
    status, out, _ = run(capsys, "plug", str(EXAMPLE))
    assert status == 0
    assert out.splitlines()[0] == (
        f"VIF {VIF_ID} was already plugged with this request; nothing changed."
    )


def test_plug_conflict_exits_1(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = json.loads(EXAMPLE.read_text())
    assert run(capsys, "plug", str(EXAMPLE))[0] == 0
    body["vif"]["versioned_object.data"]["address"] = "fa:16:3e:99:99:99"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(body))
    status, _, err = run(capsys, "plug", str(changed))
    assert status == cli.EXIT_API_ERROR
    assert "[vif_conflict]" in err


def test_plug_from_stdin(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(EXAMPLE.read_text()))
    status, out, _ = run(capsys, "--json", "plug", "-", "--wait", "none")
    assert status == 0
    assert daemon.requests[0].body == json.loads(EXAMPLE.read_text())
    assert daemon.requests[0].query == {"wait": ["none"]}
    assert json.loads(out)["vif_id"] == VIF_ID


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b"\xff\xfe{}"])
def test_plug_of_a_bad_file_is_a_usage_error_and_sends_nothing(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    status, _, err = run(capsys, "plug", str(bad))
    assert status == cli.EXIT_USAGE
    assert str(bad) in err
    assert daemon.requests == []


def test_plug_of_a_missing_file_is_a_usage_error(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run(capsys, "plug", str(tmp_path / "nope.json"))
    assert status == cli.EXIT_USAGE
    assert "No such file" in err
    assert daemon.requests == []


def test_plug_rejected_by_the_daemon_exits_1(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "novif.json"
    f.write_text('{"instance": {}}')
    status, _, err = run(capsys, "plug", str(f))
    assert status == cli.EXIT_API_ERROR
    assert "The vif is not a valid os_vif object" in err


# --- unplug, set-status, networks -----------------------------------------------------


def test_unplug_sends_delete_and_a_second_one_is_404(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "unplug", VIF_ID)
    assert status == 0
    assert out == f"Unplugged VIF {VIF_ID}.\n"
    assert (daemon.requests[0].method, daemon.requests[0].path) == ("DELETE", f"/v1/vifs/{VIF_ID}")
    status, _, err = run(capsys, "unplug", VIF_ID)
    assert status == cli.EXIT_API_ERROR
    assert "[vif_not_found]" in err


def test_unplug_json_prints_nothing_for_204(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--json", "unplug", VIF_ID) == (0, "", "")


def test_set_status_puts_the_status_body(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "set-status", OTHER_ID, "active")
    assert status == 0
    [seen] = daemon.requests
    assert (seen.method, seen.path, seen.body) == (
        "PUT",
        f"/v1/vifs/{OTHER_ID}/status",
        {"iface_status": "active"},
    )
    assert out == f"VIF {OTHER_ID} iface-status is active.\n"


def test_set_status_can_allow_dual_active(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "set-status", OTHER_ID, "active", "--allow-dual-active")[0] == 0
    assert daemon.requests[0].body == {"iface_status": "active", "allow_dual_active": True}


def test_set_status_refuses_other_values_before_sending(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "set-status", VIF_ID, "up")
    assert status == cli.EXIT_USAGE
    assert "invalid choice" in err
    assert daemon.requests == []


def test_networks_table_shows_pools_and_holders(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "networks")
    assert status == 0
    assert daemon.requests[0].path == "/v1/networks"
    lines = out.splitlines()
    assert lines[0].split() == ["NETWORK", "TYPE", "BRIDGE", "MODE", "DEVICES", "PORTGROUPS"]
    assert lines[1].split() == ["tenant", "ovs", "br-tenant", "-", "-", "-"]
    assert lines[2].split() == ["uplink", "direct", "-", "vepa", "ens1f0,ens1f1", "web*,backup"]
    assert ["uplink", "ens1f0", VIF_ID] in [line.split() for line in lines]
    assert ["uplink", "ens1f1", "-"] in [line.split() for line in lines]


def test_networks_json(daemon: StubDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "networks", "--json")
    assert (status, json.loads(out)) == (0, NETWORKS)


# --- connection, usage -------------------------------------------------------------


def test_unreachable_socket_exits_3_naming_the_socket(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(short_tmp / "nobody.sock")
    status, out, err = run(capsys, "--socket", path, "list")
    assert status == cli.EXIT_UNREACHABLE
    assert out == ""
    assert f"cannot reach vifplugd at unix socket {path}" in err


def test_socket_without_listener_exits_3(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(short_tmp / "dead.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)  # bound, never listening: connect() is refused
    try:
        status, _, err = run(capsys, "list", "--socket", path)
    finally:
        sock.close()
    assert status == cli.EXIT_UNREACHABLE
    assert path in err and "nothing listens" in err


def test_socket_option_wins_over_the_environment(
    daemon: StubDaemon, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "--socket", str(short_tmp / "other.sock"), "list")
    assert status == cli.EXIT_UNREACHABLE
    assert "other.sock" in err
    assert daemon.requests == []


def test_default_socket_is_the_daemons_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.SOCKET_ENV, raising=False)
    assert cli.DEFAULT_SOCKET == vconf.ApiSettings().socket_path
    args = cli.build_parser().parse_args(["list"])
    for key, value in cli._COMMON_DEFAULTS.items():
        setattr(args, key, getattr(args, key, value))
    assert cli.endpoint_from(args, {}).socket_path == cli.DEFAULT_SOCKET


def test_token_is_sent_as_bearer(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert run(capsys, "--token-file", str(token), "list")[0] == 0
    assert daemon.requests[0].headers["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["show"],
        ["--socket", "/a", "--url", "https://h:1", "list"],
        ["--token", "x", "--token-file", "/dev/null", "list"],
        ["--url", "ftp://h", "list"],
        ["--ca-file", "/etc/ssl/ca.pem", "list"],
        ["plug", "x.json", "--wait", "forever"],
        ["plug", "x.json", "--timeout", "-1"],
    ],
)
def test_bad_usage_exits_2_and_sends_nothing(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == cli.EXIT_USAGE
    assert out == ""
    assert err.startswith(("usage:", "vifplug: error:"))
    assert daemon.requests == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "set-status" in out


def test_a_non_envelope_error_still_exits_1(
    capsys: pytest.CaptureFixture[str], daemon: StubDaemon
) -> None:
    def teapot(seen: Seen) -> tuple[int, Any]:
        return 502, None

    daemon.handle = teapot  # type: ignore[method-assign]
    status, _, err = run(capsys, "list")
    assert status == cli.EXIT_API_ERROR
    assert "HTTP 502" in err


# --- the installed entry point -------------------------------------------------------


def test_console_script_plugs_from_stdin_and_exits_with_the_status(daemon: StubDaemon) -> None:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "vifplug.cli"]
    done = subprocess.run(
        [*cmd, "plug", "-"],
        input=EXAMPLE.read_text(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Plugged VIF {VIF_ID}." in done.stdout
    assert daemon.requests[0].body == json.loads(EXAMPLE.read_text())
    done = subprocess.run(
        [*cmd, "show", "nope"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "No VIF with id nope" in done.stderr


# --- scripting: --if-exists, filters, -f value -c, help, version, completion --------------


def test_unplug_if_exists_of_an_unknown_vif_is_success(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "unplug", "--if-exists", VIF_ID)
    assert (status, err) == (0, "")
    assert out == f"Unplugged VIF {VIF_ID}.\n"
    status, out, err = run(capsys, "unplug", "--if-exists", VIF_ID)
    assert (status, err) == (0, "")
    assert out == f"VIF {VIF_ID} is not plugged; nothing to do.\n"
    assert [(r.method, r.path) for r in daemon.requests] == [("DELETE", f"/v1/vifs/{VIF_ID}")] * 2
    status, _, err = run(capsys, "unplug", VIF_ID)
    assert status == cli.EXIT_API_ERROR
    assert "[vif_not_found]" in err


def test_unplug_if_exists_still_fails_on_other_errors(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    def busy(seen: Seen) -> tuple[int, Any]:
        return 409, _error("vif_busy", "VIF is being plugged; try again.")

    daemon.handle = busy  # type: ignore[method-assign]
    status, _, err = run(capsys, "unplug", "--if-exists", VIF_ID)
    assert status == cli.EXIT_API_ERROR
    assert "[vif_busy]" in err
    # Nor does a 404 that is not about the VIF (an older daemon without the path).
    daemon.handle = lambda seen: (404, _error("not_found", "There is no such path."))  # type: ignore[method-assign]
    assert run(capsys, "unplug", "--if-exists", VIF_ID)[0] == cli.EXIT_API_ERROR


def _diversify(daemon: StubDaemon) -> None:
    other = daemon.vifs[OTHER_ID]
    other["instance"] = {"uuid": "11111111-2222-4333-8444-555555555555", "name": "other-vm"}
    other["bridge"] = "br-ex"
    other["lifecycle"] = "unplugging"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--instance", "demo-vm"], [VIF_ID]),
        (["--instance", INSTANCE_UUID], [VIF_ID]),
        (["--instance", "11111111-2222-4333-8444-555555555555"], [OTHER_ID]),
        (["--bridge", "br-ex"], [OTHER_ID]),
        (["--state", "plugged"], [VIF_ID]),
        (["--state", "unplugging", "--bridge", "br-int"], []),
        (["--instance", "nobody"], []),
        ([], [VIF_ID, OTHER_ID]),
    ],
)
def test_list_filters(
    daemon: StubDaemon,
    capsys: pytest.CaptureFixture[str],
    filters: list[str],
    expected: list[str],
) -> None:
    _diversify(daemon)
    status, out, err = run(capsys, "list", *filters, "-f", "value", "-c", "vif_id")
    assert (status, err) == (0, "")
    assert out.splitlines() == expected
    status, out, _ = run(capsys, "list", *filters, "--json")
    assert [v["vif_id"] for v in json.loads(out)["vifs"]] == expected


def test_value_format_prints_the_chosen_cells_without_header(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "list", "-f", "value", "-c", "VIF ID", "-c", "ofport")
    assert (status, err) == (0, "")
    assert out.splitlines() == [f"{VIF_ID} 7", f"{OTHER_ID} -"]
    status, out, _ = run(capsys, "-f", "value", "list")
    assert out.splitlines()[0].split() == [
        VIF_ID,
        "demo-vm",
        "ovs",
        "tap6f1c3a52-8d",
        "br-int",
        "7",
        "active",
        "plugged",
        "-",  # TEAMING: not a member of a failover pair
    ]


def test_columns_select_and_order_a_table(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "list", "-c", "iface-status", "-c", "vif_id")
    assert status == 0
    assert out.splitlines() == [
        "IFACE-STATUS  VIF ID",
        f"active        {VIF_ID}",
        f"inactive      {OTHER_ID}",
    ]


def test_show_value_of_one_field_is_just_the_value(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "show", VIF_ID, "-f", "value", "-c", "ofport")
    assert (status, err, out) == (0, "", "7\n")
    status, out, _ = run(capsys, "show", OTHER_ID, "-f", "value", "-c", "ofport", "-c", "device")
    assert out == "-\ntap0d2e4f60-1a\n"
    status, out, _ = run(capsys, "show", VIF_ID, "-c", "mac", "-c", "iface_id")
    assert out.splitlines() == ["MAC:      fa:16:3e:11:22:33", f"iface-id: {VIF_ID}"]


def test_plug_value_prints_the_vif_fields_only(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "plug", str(EXAMPLE), "-f", "value", "-c", "device")
    assert (status, err) == (0, "")
    assert out == "tap" + VIF_ID[:11] + "\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "-c", "nonesuch"],
        ["list", "--json", "-c", "vif_id"],
        ["list", "--json", "-f", "table"],
        ["networks", "-f", "value"],
        ["unplug", VIF_ID, "-c", "vif_id"],
        ["list", "-f", "yaml"],
    ],
)
def test_output_options_a_command_cannot_honour_are_usage_errors(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == cli.EXIT_USAGE
    assert out == ""
    assert err.startswith(("usage:", "vifplug: error:"))
    assert daemon.requests == []


def test_connection_options_are_described_once_and_accepted_everywhere(
    daemon: StubDaemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_path = os.environ[cli.SOCKET_ENV]
    status, top, _ = run(capsys, "--help")
    assert status == 0
    assert top.count("\n  --token-file FILE") == 1
    for command in ("list", "show", "plug", "unplug", "host-info", "completion"):
        status, text, _ = run(capsys, command, "--help")
        assert status == 0
        assert "--socket" not in text.split("The connection options")[0], command
        assert "--token-file" not in text
        assert "-f {table,value,json}" in text
    monkeypatch.delenv(cli.SOCKET_ENV)
    status, _, err = run(capsys, "list", "--socket", socket_path)
    assert (status, err) == (0, "")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert (status, out) == (0, f"vifplug {vifplug.__version__}\n")


def test_bash_completion_completes_commands_and_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, script, err = run(capsys, "completion", "bash")
    assert (status, err) == (0, "")
    path = tmp_path / "vifplug.bash"
    path.write_text(script)
    probe = (
        f"source {path}\n"
        "complete() { :; }\n"
        'COMP_WORDS=(vifplug pu); COMP_CWORD=1; _shtab_vifplug; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(vifplug unplug --if); COMP_CWORD=2; _shtab_vifplug; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(vifplug list -f v); COMP_CWORD=3; _shtab_vifplug; echo "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        ["purge-leaks"],
        ["--if-exists"],
        ["value"],
    ]


@pytest.mark.parametrize("shell", cli.COMPLETION_SHELLS)
def test_completion_for_every_shell_names_every_command(
    capsys: pytest.CaptureFixture[str], shell: str
) -> None:
    status, script, _ = run(capsys, "completion", shell)
    assert status == 0
    for command in ("host-info", "plug", "unplug", "list", "purge-leaks"):
        assert command in script, (shell, command)


def test_the_cli_loads_no_server_dependencies() -> None:
    code = (
        "import sys; import vifplug.cli; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'oslo_config', 'shtab', 'ovs', 'pyroute2') "
        "if m in sys.modules]; print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_times_print_as_local_iso_8601_whether_rfc_3339_or_epoch() -> None:
    """The API answers RFC 3339 UTC; an older daemon answered epoch floats."""
    expected = (
        datetime.datetime.fromtimestamp(1700000000, tz=datetime.UTC)
        .astimezone()
        .isoformat(timespec="seconds")
    )
    assert cli._when("2023-11-14T22:13:20Z") == expected
    assert cli._when("2023-11-14T22:13:20.25+00:00") == expected
    assert cli._when(1700000000.0) == expected
    assert cli._when(0) is None
    assert cli._when(None) is None
