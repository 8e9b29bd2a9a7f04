"""Caller mistakes: each answered 4xx with the error envelope, and nothing changes.

After every bad request, OVSDB (bridges, their ports, every Interface's
external_ids), the kernel's links and the daemon's own list of VIFs are
exactly what they were before.  One daemon serves the whole module, with one
VIF already plugged, so "never touches state it does not name" is checked
against something real.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import primitives as prim
import pytest
from daemon_fixture import Daemon, base_config, cleanup_host, links, merge, start_daemon

import ovs_sandbox

MAX_BODY = 65536


@dataclass
class Ctx:
    daemon: Daemon
    bridge: str
    existing: dict[str, Any]  # the body of the VIF plugged at module start

    @property
    def existing_id(self) -> str:
        return str(prim.data(self.existing["vif"])["id"])

    def vif(self, **changes: Any) -> dict[str, Any]:
        return prim.mutate(prim.vif_ovs(bridge=self.bridge), **changes)


@dataclass
class Bad:
    """One bad request: what to send and what must come back."""

    method: str = "POST"
    path: str = "/v1/vifs"
    json_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    status: int = 400
    code: str | None = None


@pytest.fixture(scope="module")
def ctx(ovs: ovs_sandbox.OvsSandbox) -> Iterator[Ctx]:
    workdir = Path(tempfile.mkdtemp(prefix="vpbad-", dir="/tmp"))
    config = merge(base_config(workdir, ovs.remote), {"api": {"max_body_bytes": MAX_BODY}})
    daemon = start_daemon(workdir, config)
    try:
        bridge = daemon.bridge
        existing = prim.body(prim.vif_ovs(bridge=bridge))
        with daemon.client() as c:
            r = c.post("/v1/vifs", json=existing)
            assert r.status_code == 201, r.text
        yield Ctx(daemon=daemon, bridge=bridge, existing=existing)
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
        cleanup_host(ovs, daemon, {"br-evil"})
        shutil.rmtree(workdir, ignore_errors=True)


def host_snapshot(ovs: ovs_sandbox.OvsSandbox, daemon: Daemon) -> dict[str, Any]:
    bridges = sorted(ovs.vsctl("list-br").split())
    ifaces = json.loads(
        ovs.vsctl("--format=json", "--columns=name,external_ids,ofport", "list", "Interface")
    )["data"]
    with daemon.client() as c:
        vifs = c.get("/v1/vifs").json()
    return {
        "bridges": bridges,
        "ports": {br: sorted(ovs.vsctl("list-ports", br).split()) for br in bridges},
        "interfaces": sorted(json.dumps(row, sort_keys=True) for row in ifaces),
        "links": sorted(links()),
        "vifs": vifs,
    }


def vif_with_data(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    return prim.body(ctx.vif(**changes))


def nested_profile(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    vif = ctx.vif()
    profile = prim.data(vif)["port_profile"]
    profile.update(changes)
    return prim.body(vif)


def network_change(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    vif = ctx.vif()
    prim.data(vif)["network"]["versioned_object.data"].update(changes)
    return prim.body(vif)


def top(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    vif = ctx.vif()
    vif.update(changes)
    return prim.body(vif)


def _with_data_value(primitive: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``primitive`` with one data field set to ``value`` (``mutate`` removes on None)."""
    prim.data(primitive)[key] = value
    return primitive


def _duplicate(body: dict[str, Any], key: str, second: Any) -> bytes:
    """``body`` as JSON with ``key`` given a second time, as ``second``."""
    text = json.dumps(body)
    assert text.endswith("}")
    return f"{text[:-1]}, {json.dumps(key)}: {json.dumps(second)}}}".encode()


def profile_data(ctx: Ctx, **changes: Any) -> dict[str, Any]:
    vif = ctx.vif()
    prim.data(prim.data(vif)["port_profile"]).update(changes)
    return prim.body(vif)


def ascii_json(body: Any) -> bytes:
    """JSON with every non-ASCII character escaped, as a client in another
    language may send it: the only way to put an unpaired surrogate (or NaN)
    on the wire, since no UTF-8 encoder takes one."""
    return json.dumps(body, ensure_ascii=True).encode()


def _deep(n: int) -> bytes:
    return b'{"vif": ' + b"[" * n + b"]" * n + b', "instance": {}}'


BAD: dict[str, Callable[[Ctx], Bad]] = {
    # -- the envelope itself --------------------------------------------------------
    "malformed-json": lambda c: Bad(raw=b'{"vif": {', code="malformed_json"),
    "json-array-body": lambda c: Bad(json_body=[1, 2, 3], code="invalid_request"),
    "empty-body": lambda c: Bad(raw=b"", code="invalid_request"),
    "not-json-content-type": lambda c: Bad(
        raw=json.dumps(prim.body(c.vif())).encode(),
        headers={"content-type": "text/plain"},
        status=415,
        code="unsupported_media_type",
    ),
    "form-encoded-body": lambda c: Bad(
        raw=b"vif=1&instance=2",
        headers={"content-type": "application/x-www-form-urlencoded"},
        status=415,
    ),
    "missing-instance": lambda c: Bad(json_body={"vif": c.vif()}, code="invalid_request"),
    "unknown-top-level-field": lambda c: Bad(
        json_body={**prim.body(c.vif()), "colour": "blue"}, code="invalid_request"
    ),
    "vif-is-a-string": lambda c: Bad(
        json_body={"vif": "tap0", "instance": prim.instance()}, code="invalid_request"
    ),
    "iface-status-not-a-status": lambda c: Bad(
        json_body=prim.body(c.vif(), iface_status="up"), code="invalid_request"
    ),
    "allow-dual-active-not-a-bool": lambda c: Bad(
        json_body=prim.body(c.vif(), allow_dual_active="yes"), code="invalid_request"
    ),
    "body-larger-than-max": lambda c: Bad(
        raw=b'{"vif": "' + b"x" * (MAX_BODY + 10) + b'"}', status=413, code="request_too_large"
    ),
    "deeply-nested-json": lambda c: Bad(raw=_deep(30000), code="malformed_json"),
    "invalid-utf8": lambda c: Bad(raw=b'{"vif": "\xff\xfe"}', code="malformed_json"),
    # -- the os_vif objects ---------------------------------------------------------------
    "wrong-namespace": lambda c: Bad(
        json_body=top(c, **{"versioned_object.namespace": "nova"}), code="invalid_object"
    ),
    "unknown-object-name": lambda c: Bad(
        json_body=top(c, **{"versioned_object.name": "VIFTeleport"})
    ),
    "instance-is-a-vif": lambda c: Bad(json_body={"vif": c.vif(), "instance": c.vif()}),
    "vif-is-an-instance": lambda c: Bad(
        json_body={"vif": prim.instance(), "instance": prim.instance()}
    ),
    "no-versioned-object-data": lambda c: Bad(
        json_body=prim.body({k: v for k, v in c.vif().items() if k != "versioned_object.data"})
    ),
    "vif-version-out-of-range": lambda c: Bad(
        json_body=top(c, **{"versioned_object.version": "1.9"}), code="unsupported_version"
    ),
    "vif-version-malformed": lambda c: Bad(
        json_body=top(c, **{"versioned_object.version": "1.0.0"})
    ),
    "vif-major-version-unknown": lambda c: Bad(
        json_body=top(c, **{"versioned_object.version": "2.0"})
    ),
    "profile-version-out-of-range": lambda c: Bad(
        json_body=nested_profile(c, **{"versioned_object.version": "1.9"})
    ),
    "profile-not-for-ovs": lambda c: Bad(
        json_body=prim.body(
            prim.mutate(
                c.vif(), port_profile=prim.obj("VIFPortProfile8021Qbh", "1.1", {"profile_id": "p1"})
            )
        ),
        code="unsupported_port_profile",
    ),
    "invalid-mac": lambda c: Bad(json_body=vif_with_data(c, address="zz:16:3e:00:00:01")),
    "mac-wrong-type": lambda c: Bad(json_body=vif_with_data(c, address=12345)),
    "vif-id-not-a-uuid": lambda c: Bad(json_body=vif_with_data(c, id="not-a-uuid")),
    "vif-id-missing": lambda c: Bad(json_body=vif_with_data(c, id=None)),
    "instance-uuid-invalid": lambda c: Bad(
        json_body=prim.body(
            c.vif(), prim.obj("InstanceInfo", "1.0", {"uuid": "nope", "name": "vm"})
        )
    ),
    "bridge-not-allowed": lambda c: Bad(
        json_body=network_change(c, bridge="br-evil"), code="bridge_not_allowed"
    ),
    "device-name-too-long": lambda c: Bad(
        json_body=vif_with_data(c, vif_name="tap0123456789abc"), code="invalid_device_name"
    ),
    "device-name-with-slash": lambda c: Bad(
        json_body=vif_with_data(c, vif_name="tap/evil"), code="invalid_device_name"
    ),
    "device-name-dot-dot": lambda c: Bad(
        json_body=vif_with_data(c, vif_name=".."), code="invalid_device_name"
    ),
    "device-name-all": lambda c: Bad(
        json_body=vif_with_data(c, vif_name="all"), code="invalid_device_name"
    ),
    "device-name-default": lambda c: Bad(
        json_body=vif_with_data(c, vif_name="default"), code="invalid_device_name"
    ),
    "ovs-vif-without-port-profile": lambda c: Bad(
        json_body=vif_with_data(c, port_profile=None), code="missing_port_profile"
    ),
    "ovs-vif-with-a-null-port-profile": lambda c: Bad(
        json_body=prim.body(_with_data_value(c.vif(), "port_profile", None)),
        code="invalid_object",
    ),
    "network-mtu-a-fraction": lambda c: Bad(
        json_body=network_change(c, mtu=1.5), code="invalid_object"
    ),
    "network-mtu-a-boolean": lambda c: Bad(
        json_body=network_change(c, mtu=True), code="invalid_object"
    ),
    "network-mtu-a-string": lambda c: Bad(
        json_body=network_change(c, mtu="1500"), code="invalid_object"
    ),
    "unknown-plugin": lambda c: Bad(
        json_body=vif_with_data(c, plugin="teleporter"), code="no_matching_plugin"
    ),
    "plugin-for-another-object": lambda c: Bad(json_body=vif_with_data(c, plugin="noop")),
    "network-mtu-not-a-number": lambda c: Bad(json_body=network_change(c, mtu="big")),
    "same-id-other-content": lambda c: Bad(
        json_body=prim.body(
            prim.mutate(c.existing["vif"], address="fa:16:3e:ff:ff:ff"), c.existing["instance"]
        ),
        status=409,
        code="vif_conflict",
    ),
    # -- strings and numbers that OVSDB, the kernel or SQLite cannot hold ---------------
    "nul-in-interface-id": lambda c: Bad(
        json_body=profile_data(c, interface_id=str(uuid.uuid4()) + "\x00"),
        code="unwritable_value",
    ),
    "surrogate-in-interface-id": lambda c: Bad(
        raw=ascii_json(profile_data(c, interface_id="\ud800" + str(uuid.uuid4()))),
        code="unwritable_value",
    ),
    "surrogate-in-a-key": lambda c: Bad(
        raw=ascii_json(vif_with_data(c, **{"x\udc00": "y"})), code="unwritable_value"
    ),
    "surrogate-in-plugin-name": lambda c: Bad(
        raw=ascii_json(vif_with_data(c, plugin="ovs\ud800")), code="unwritable_value"
    ),
    "newline-in-vif-name": lambda c: Bad(
        json_body=vif_with_data(c, vif_name="tap\nevil"), code="unwritable_value"
    ),
    "control-character-in-mac": lambda c: Bad(
        json_body=vif_with_data(c, address="fa:16:3e:00:00:01\x1b"), code="unwritable_value"
    ),
    "line-separator-in-vif-id": lambda c: Bad(
        json_body=vif_with_data(c, id=str(uuid.uuid4()) + "\u2028"), code="unwritable_value"
    ),
    "nul-in-bridge-name": lambda c: Bad(
        json_body=network_change(c, bridge=c.bridge + "\x00"), code="unwritable_value"
    ),
    "nul-in-network-label": lambda c: Bad(
        json_body=network_change(c, label="net\x00"), code="unwritable_value"
    ),
    "nul-in-instance-name": lambda c: Bad(
        json_body=prim.body(c.vif(), prim.instance(name="vm\x00")), code="unwritable_value"
    ),
    # (pydantic refuses a surrogate in a plain string field before admission does)
    "surrogate-in-portgroup": lambda c: Bad(
        raw=ascii_json(prim.body(c.vif(), portgroup="pg\udfff")), code="invalid_request"
    ),
    "nul-in-portgroup": lambda c: Bad(
        json_body=prim.body(c.vif(), portgroup="pg\x00"), code="unwritable_value"
    ),
    "mtu-beyond-64-bits": lambda c: Bad(
        json_body=network_change(c, mtu=2**64), code="unwritable_value"
    ),
    "mtu-nan": lambda c: Bad(
        raw=ascii_json(network_change(c, mtu=float("nan"))), code="unwritable_value"
    ),
    # -- query parameters ---------------------------------------------------------------
    "wait-unknown": lambda c: Bad(
        json_body=prim.body(c.vif()), params={"wait": "forever"}, code="invalid_request"
    ),
    "timeout-negative": lambda c: Bad(
        json_body=prim.body(c.vif()), params={"timeout": "-1"}, code="invalid_request"
    ),
    "timeout-not-a-number": lambda c: Bad(
        json_body=prim.body(c.vif()), params={"timeout": "soon"}, code="invalid_request"
    ),
    "timeout-nan": lambda c: Bad(
        json_body=prim.body(c.vif()), params={"timeout": "nan"}, code="invalid_request"
    ),
    "timeout-infinite": lambda c: Bad(
        json_body=prim.body(c.vif()), params={"timeout": "inf"}, code="invalid_request"
    ),
    # -- JSON that means two things -----------------------------------------------------
    "duplicate-top-level-key": lambda c: Bad(
        raw=_duplicate(prim.body(c.vif(), iface_status="inactive"), "iface_status", "active"),
        code="invalid_request",
    ),
    "duplicate-key-inside-the-vif": lambda c: Bad(
        raw=json.dumps(prim.body(c.vif()))
        .encode()
        .replace(b'"address": ', b'"address": "fa:16:3e:00:00:99", "address": ', 1),
        code="invalid_request",
    ),
    "status-duplicate-key": lambda c: Bad(
        method="PUT",
        path=f"/v1/vifs/{c.existing_id}/status",
        raw=b'{"iface_status": "inactive", "iface_status": "active"}',
        code="invalid_request",
    ),
    "host-info-version-malformed": lambda c: Bad(
        method="GET", path="/v1/host-info", params={"version": "latest"}, code="invalid_request"
    ),
    "host-info-manifest-malformed": lambda c: Bad(
        method="GET",
        path="/v1/host-info",
        params={"manifest": "HostInfo=1.0"},
        code="invalid_request",
    ),
    # -- other endpoints -----------------------------------------------------------------
    "status-not-a-status": lambda c: Bad(
        method="PUT",
        path=f"/v1/vifs/{c.existing_id}/status",
        json_body={"iface_status": "up"},
        code="invalid_request",
    ),
    "status-unknown-field": lambda c: Bad(
        method="PUT",
        path=f"/v1/vifs/{c.existing_id}/status",
        json_body={"iface_status": "inactive", "force": True},
        code="invalid_request",
    ),
    "status-of-unknown-vif": lambda c: Bad(
        method="PUT",
        path=f"/v1/vifs/{uuid.uuid4()}/status",
        json_body={"iface_status": "inactive"},
        status=404,
        code="vif_not_found",
    ),
    "unplug-unknown-vif": lambda c: Bad(
        method="DELETE", path=f"/v1/vifs/{uuid.uuid4()}", status=404, code="vif_not_found"
    ),
    "unplug-path-traversal": lambda c: Bad(
        method="DELETE", path="/v1/vifs/..%2F..%2Fetc", status=404
    ),
    "unknown-route": lambda c: Bad(method="GET", path="/v1/teleport", status=404, code="not_found"),
    "trailing-slash": lambda c: Bad(method="GET", path="/v1/vifs/", status=404),
    "method-not-allowed": lambda c: Bad(
        method="PATCH", path="/v1/vifs", status=405, code="method_not_allowed"
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_request_is_refused_with_the_envelope_and_changes_nothing(
    name: str, ctx: Ctx, ovs: ovs_sandbox.OvsSandbox
) -> None:
    bad = BAD[name](ctx)
    before = host_snapshot(ovs, ctx.daemon)
    with ctx.daemon.client() as c:
        kwargs: dict[str, Any] = {"params": bad.params, "headers": bad.headers}
        if bad.raw is not None:
            kwargs["content"] = bad.raw
            kwargs["headers"] = {"content-type": "application/json", **bad.headers}
        elif bad.json_body is not None:
            kwargs["json"] = bad.json_body
        r = c.request(bad.method, bad.path, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:2000])
    assert r.status_code == bad.status, r.text[:2000]
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"].islower()
    assert body["error"]["message"]
    if bad.code is not None:
        assert body["error"]["code"] == bad.code, body
    assert host_snapshot(ovs, ctx.daemon) == before
    assert ctx.daemon.proc.poll() is None


def test_unsupported_version_names_the_range(ctx: Ctx) -> None:
    vif = ctx.vif()
    vif["versioned_object.version"] = "1.9"
    with ctx.daemon.client() as c:
        r = c.post("/v1/vifs", json=prim.body(vif))
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "unsupported_version"
    assert error["details"]["min_version"] == "1.0"
    assert error["details"]["max_version"] == "1.0"
    assert "1.0" in error["message"]


def test_chunked_body_larger_than_max_is_413(ctx: Ctx, ovs: ovs_sandbox.OvsSandbox) -> None:
    """No Content-Length: the body is counted as it arrives."""
    before = host_snapshot(ovs, ctx.daemon)

    def chunks() -> Iterator[bytes]:
        yield b'{"vif": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    with ctx.daemon.client() as c:
        r = c.post("/v1/vifs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"
    assert host_snapshot(ovs, ctx.daemon) == before


def test_garbage_on_the_socket_does_not_hurt_the_daemon(ctx: Ctx) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(ctx.daemon.socket_path)
    sock.sendall(b"\x00\x01 NOT HTTP\r\n\r\n")
    try:
        answer = sock.recv(4096)
    except OSError:
        answer = b""
    sock.close()
    assert not answer or answer.startswith(b"HTTP/1.1 4")
    with ctx.daemon.client() as c:
        assert c.get("/healthz").status_code == 200


def test_bad_requests_are_many() -> None:
    assert len(BAD) >= 25


# --- HTTP itself: raw requests over the unix socket ------------------------------------


def _exchange(ctx: Ctx, request: bytes) -> bytes:
    """Send ``request`` as is; everything the daemon answers until it closes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(ctx.daemon.socket_path)
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


def _parse(answer: bytes) -> tuple[int, dict[bytes, bytes], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(
        (k.strip().lower(), v.strip()) for k, _, v in (ln.partition(b":") for ln in lines[1:])
    )
    return int(lines[0].split(b" ", 2)[1]), headers, json.loads(body) if body else None


def _is_envelope(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and set(body["error"]) == {"code", "message", "details"}
    )


def test_malformed_http_is_answered_with_the_envelope(
    ctx: Ctx, ovs: ovs_sandbox.OvsSandbox
) -> None:
    before = host_snapshot(ovs, ctx.daemon)
    for request in (
        b"GET /v1/vifs HTTP/1.1\r\nhost: vifplug\r\nthis is not a header\r\n\r\n",
        b"\x00\x01 NOT HTTP\r\n\r\n",
        b"POST /v1/vifs HTTP/1.1\r\nhost: vifplug\r\ncontent-length: twelve\r\n\r\n",
    ):
        status, headers, body = _parse(_exchange(ctx, request))
        assert status == 400, request
        assert headers[b"content-type"] == b"application/json"
        assert _is_envelope(body) and body["error"]["code"] == "malformed_http", body
    assert host_snapshot(ovs, ctx.daemon) == before


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_headers_past_16_kib_are_refused_before_they_take_memory(ctx: Ctx) -> None:
    """A header that never ends is cut off at h11's limit on an incomplete
    event (16 KiB), with the envelope, instead of being gathered in memory
    until the request timer."""
    peak = _peak_rss_kib(ctx.daemon.pid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(ctx.daemon.socket_path)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: vifplug\r\nx-endless: ")
            sock.sendall(b"a" * (32 << 20))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    status, headers, body = _parse(answer)
    assert status == 400 and headers[b"connection"] == b"close", answer[:300]
    assert _is_envelope(body) and body["error"]["code"] == "malformed_http", body
    assert _peak_rss_kib(ctx.daemon.pid) - peak < 8192  # not the 32 MiB it was sent
    with ctx.daemon.client() as c:
        assert c.get("/healthz").status_code == 200


def test_transfer_encoding_with_content_length_is_refused_and_closed(
    ctx: Ctx, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """A valid plug, framed both ways: refused (request smuggling starts so)."""
    before = host_snapshot(ovs, ctx.daemon)
    body = json.dumps(prim.body(ctx.vif())).encode()
    request = (
        b"POST /v1/vifs HTTP/1.1\r\nhost: vifplug\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\ncontent-length: %d\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        % (len(body), len(body), body)
    )
    # A second request behind it on the same connection must not be served.
    answer = _exchange(ctx, request + b"GET /v1/vifs HTTP/1.1\r\nhost: vifplug\r\n\r\n")
    status, headers, envelope = _parse(answer)
    assert status == 400, answer
    assert headers[b"connection"] == b"close"
    assert _is_envelope(envelope) and envelope["error"]["code"] == "invalid_request"
    assert "Transfer-Encoding" in envelope["error"]["message"]
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert host_snapshot(ovs, ctx.daemon) == before


def test_body_of_8_mib_gets_413_with_the_envelope(ctx: Ctx, ovs: ovs_sandbox.OvsSandbox) -> None:
    """The daemon reads what the client sends before it answers: closing with
    unread data would reset the connection and lose the answer."""
    before = host_snapshot(ovs, ctx.daemon)
    raw = b'{"vif": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    with ctx.daemon.client() as c:
        r = c.post("/v1/vifs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text[:2000]
        assert r.json()["error"]["code"] == "request_too_large"
        assert r.json()["error"]["details"] == {"max_body_bytes": MAX_BODY}
        assert c.get("/healthz").status_code == 200
    assert host_snapshot(ovs, ctx.daemon) == before


def test_timeout_nan_is_refused_as_not_a_number(ctx: Ctx) -> None:
    with ctx.daemon.client() as c:
        r = c.post("/v1/vifs", json=prim.body(ctx.vif()), params={"timeout": "nan"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "timeout" in message and "finite number" in message, message
    assert "3600" not in message, message


def test_duplicate_key_is_named(ctx: Ctx) -> None:
    raw = _duplicate(prim.body(ctx.vif(), allow_dual_active=False), "allow_dual_active", True)
    with ctx.daemon.client() as c:
        r = c.post("/v1/vifs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["details"]["key"] == "allow_dual_active", error
    assert "'allow_dual_active' appears twice" in error["message"], error


@pytest.mark.parametrize("control", ["%0A", "%0D", "%E2%80%A8", "%1B%5B2J"])
def test_control_characters_in_a_vif_id_cannot_forge_a_log_line(ctx: Ctx, control: str) -> None:
    forged = f"FORGED-{uuid.uuid4().hex[:8]}"
    with ctx.daemon.client() as c:
        r = c.delete(f"/v1/vifs/x{control}{forged}")
        assert r.status_code == 404, r.text
    # The access log line is written once the answer is sent; wait for it.
    deadline = time.monotonic() + 30
    while forged not in (log := ctx.daemon.stderr()):
        assert time.monotonic() < deadline, log[-4000:]
        time.sleep(0.05)
    for line in log.splitlines():
        if forged in line:
            assert "DELETE /v1/vifs/x\\" in line, line  # escaped, on the access log line
            assert not line.startswith(forged), line
    assert "\x1b" not in log and "\u2028" not in log and "\r" not in log


def test_poisoned_plugs_beside_valid_ones_fail_alone(ctx: Ctx, ovs: ovs_sandbox.OvsSandbox) -> None:
    """A NUL in an iface-id made ovsdb-server drop the connection, and the
    batch carrying it was resent after every reconnect: every plug in it got
    504 and ``/readyz`` stayed 503.  Now the poisoned ones are 400 before
    anything is written, and the valid ones sent at the same moment plug."""
    valid = [prim.body(ctx.vif()) for _ in range(6)]
    poisoned = [
        ascii_json(profile_data(ctx, interface_id=str(uuid.uuid4()) + "\x00")),
        ascii_json(profile_data(ctx, interface_id="\ud800" + str(uuid.uuid4()))),
    ]
    requests = [json.dumps(b).encode() for b in valid] + poisoned
    answers: dict[int, tuple[int, dict[str, Any]]] = {}
    start = threading.Barrier(len(requests))

    def send(i: int, raw: bytes) -> None:
        with ctx.daemon.client() as c:
            start.wait(30)
            r = c.post(
                "/v1/vifs",
                content=raw,
                params={"timeout": "30"},
                headers={"content-type": "application/json"},
            )
            answers[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=send, args=(i, raw)) for i, raw in enumerate(requests)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        for i in range(len(valid)):
            assert answers[i][0] == 201, answers[i]
        for i in range(len(valid), len(requests)):
            status, body = answers[i]
            assert status == 400 and body["error"]["code"] == "unwritable_value", body
            assert body["error"]["details"]["field"] == "vif.port_profile.interface_id"
        with ctx.daemon.client() as c:
            assert c.get("/readyz").status_code == 200
        names = {row["vif_name"] for row in (prim.data(b["vif"]) for b in valid)}
        assert names <= links()
    finally:
        with ctx.daemon.client() as c:
            for b in valid:
                c.delete(f"/v1/vifs/{prim.data(b['vif'])['id']}")
