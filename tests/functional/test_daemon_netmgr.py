"""The HostInfo push to the network manager (seed 004), against a manager in the test.

The manager is a small ``http.server`` on 127.0.0.1 that plays an old
network manager: it reads HostInfo 1.0 only, with every object inside it at
1.0 (an os-vif from before HostVIFInfo 1.1), and answers anything newer with
an error naming the newest version it reads.  The daemon must backlevel and
retry until the manager accepts, and report it in /readyz.
"""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from daemon_fixture import Daemon, DaemonFactory


def versions(primitive: Any) -> list[tuple[str, str]]:
    found = []
    if isinstance(primitive, dict):
        if "versioned_object.name" in primitive:
            found.append(
                (primitive["versioned_object.name"], primitive["versioned_object.version"])
            )
        for value in primitive.values():
            found.extend(versions(value))
    elif isinstance(primitive, list):
        for value in primitive:
            found.extend(versions(value))
    return found


@dataclass
class Manager:
    """What the fake network manager received and how it answers."""

    style: str = "envelope"  # envelope | message | oslo
    fail_first: int = 0  # answer 503 to this many requests first
    received: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def refusal(self, primitive: dict[str, Any]) -> tuple[int, bytes] | None:
        too_new = [(n, v) for n, v in versions(primitive) if v != "1.0"]
        if not too_new:
            return None
        name, version = too_new[0]
        if self.style == "envelope":
            return 406, json.dumps(
                {
                    "error": {
                        "code": "unsupported_version",
                        "message": f"{name} {version} is newer than this manager reads",
                        "details": {"max_version": "1.0"},
                    }
                }
            ).encode()
        if self.style == "message":
            return 400, (
                f"cannot read host info: maximum supported version is 1.0 ({name} {version} given)"
            ).encode()
        return 400, json.dumps(
            {
                "error": {
                    "message": (
                        f"Version {version} of {name} is not supported, supported version is 1.0"
                    )
                }
            }
        ).encode()

    def wait_accepted(self, timeout: float, n: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.accepted) >= n:
                    return list(self.accepted)
            time.sleep(0.05)
        raise AssertionError(
            f"accepted {len(self.accepted)}, received {len(self.received)}: "
            f"{[versions(r) for r in self.received]}"
        )


def serve(manager: Manager) -> Iterator[Manager]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            primitive = json.loads(self.rfile.read(length))
            with manager.lock:
                manager.received.append(primitive)
                manager.headers.append(dict(self.headers))
                failing = manager.fail_first > 0
                if failing:
                    manager.fail_first -= 1
            if failing:
                self._answer(503, b'{"error": {"message": "try later"}}')
                return
            refused = manager.refusal(primitive)
            if refused is not None:
                self._answer(*refused)
                return
            with manager.lock:
                manager.accepted.append(primitive)
            self._answer(201, b"{}")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    manager.url = f"http://127.0.0.1:{httpd.server_address[1]}/v2/host-info"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield manager
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def manager(request: pytest.FixtureRequest) -> Iterator[Manager]:
    params = getattr(request, "param", {})
    yield from serve(Manager(**params))


def start(daemon_factory: DaemonFactory, manager: Manager, **extra: Any) -> Daemon:
    return daemon_factory(
        {"network_manager": {"url": manager.url, "retry_initial": 0.1, "retry_max": 0.5, **extra}}
    )


def readyz_push(d: Daemon) -> dict[str, Any]:
    with d.client() as c:
        r = c.get("/readyz")
    assert r.status_code == 200, r.text
    push: dict[str, Any] = r.json()["details"]["network_manager"]
    return push


@pytest.mark.parametrize(
    "manager",
    [{"style": "envelope"}, {"style": "message"}, {"style": "oslo"}],
    indirect=True,
    ids=["envelope-details", "plain-message", "oslo-message"],
)
def test_push_backlevels_until_an_old_manager_reads_it(
    daemon_factory: DaemonFactory, manager: Manager
) -> None:
    d = start(daemon_factory, manager)
    accepted = manager.wait_accepted(60)
    assert {v for _, v in versions(accepted[0])} == {"1.0"}
    assert accepted[0]["versioned_object.name"] == "HostInfo"
    assert not [n for n, _ in versions(accepted[0]) if n == "HostPortProfileInfo"]
    # The first attempt was the newest HostInfo; it was refused.
    assert ("HostVIFInfo", "1.1") in versions(manager.received[0])
    # The state says "pushed" a moment before the log line is written: wait
    # for both, as long as a cold machine needs.
    deadline = time.monotonic() + 60
    while readyz_push(d)["state"] != "pushed" or "pushed HostInfo 1.0" not in d.stderr():
        assert time.monotonic() < deadline, (readyz_push(d), d.stderr())
        time.sleep(0.05)
    push = readyz_push(d)
    assert push["state"] == "pushed" and push["pushed_version"] == "1.0"
    assert push["url"] == manager.url
    assert "pushed HostInfo 1.0" in d.stderr()


@pytest.mark.parametrize("manager", [{"fail_first": 3}], indirect=True)
def test_push_retries_other_errors_with_backoff(
    daemon_factory: DaemonFactory, manager: Manager
) -> None:
    d = start(daemon_factory, manager)
    manager.wait_accepted(60)
    assert len(manager.received) >= 4
    assert "retrying in" in d.stderr()
    with d.client() as c:
        assert "vifplug_network_manager_pushes_total" in c.get("/metrics").text


def test_push_again_after_sighup(daemon_factory: DaemonFactory, manager: Manager) -> None:
    d = start(daemon_factory, manager)
    manager.wait_accepted(60)
    d.signal(signal.SIGHUP)
    manager.wait_accepted(60, n=2)
    assert readyz_push(d)["reason"] == "SIGHUP"


def test_push_sends_the_bearer_token(
    daemon_factory: DaemonFactory, manager: Manager, workdir: Any
) -> None:
    token = workdir / "nm-token"
    token.write_text("manager-token\n")
    start(daemon_factory, manager, token_file=str(token))
    manager.wait_accepted(60)
    assert manager.headers[0]["Authorization"] == "Bearer manager-token"


def test_unreachable_manager_never_hurts_the_daemon(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(
        {
            "network_manager": {
                "url": "http://127.0.0.1:9/none",
                "retry_initial": 0.1,
                "retry_max": 0.3,
            }
        }
    )
    deadline = time.monotonic() + 60
    push = readyz_push(d)
    while push["state"] != "retrying" and time.monotonic() < deadline:
        time.sleep(0.1)
        push = readyz_push(d)
    assert push["state"] == "retrying", push
    assert push["last_error"]
    assert push["attempts"] >= 1
    with d.client() as c:
        assert c.get("/healthz").status_code == 200
    assert d.stop() == 0
