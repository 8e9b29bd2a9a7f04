"""vifplugd under systemd's protocols, with the real daemon: socket activation
across restarts, notification (status, progress, reload, watchdog), journal
priorities, and the metrics listener.

systemd itself does not run here; its side of each protocol is played by
the test: it holds the listening socket and starts one daemon after the
other on it (``helpers.Activation``, what ``systemd-socket-activate`` and
PID 1 do), reads the notification socket, and connects the daemon's stderr
where ``JOURNAL_STREAM`` says.
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import primitives as prim
import pytest
from daemon_fixture import Daemon, base_config, cleanup_host, merge, start_daemon

import ovs_sandbox
from helpers import Activation


class Notify:
    """The service manager's notification socket; each datagram a list of lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[list[str]] = []

    def wait_for(self, predicate: Any, timeout: float, *, start: int = 0) -> list[str]:
        """The first datagram (from the ``start``-th on) for which
        ``predicate(lines)`` holds; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = start
        while time.monotonic() < deadline:
            while seen < len(self.messages):
                lines = self.messages[seen]
                seen += 1
                if predicate(lines):
                    return lines
            try:
                self.messages.append(self.sock.recv(65536).decode().split("\n"))
            except TimeoutError:
                pass
        raise AssertionError(f"no such notification in {timeout}s: {self.messages}")

    def lines(self) -> list[str]:
        """Every line received so far (what is queued on the socket, too)."""
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode().split("\n"))
        except TimeoutError:
            pass
        return [line for m in self.messages for line in m]


@pytest.fixture
def notify(workdir: Path) -> Iterator[Notify]:
    n = Notify(workdir / "notify.sock")
    try:
        yield n
    finally:
        n.sock.close()


def _unix_listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1024)
    return sock


def _tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


# --- socket activation -----------------------------------------------------------------


class Clients:
    """Threads plugging, listing and unplugging in a loop over the unix
    socket, each request on a new connection (as the CLI and os-vif's
    clients do), counting what succeeded and what failed."""

    def __init__(self, socket_path: str, bridge: str, n: int = 4) -> None:
        self.socket_path = socket_path
        self.bridge = bridge
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=n)
        self._futures = [self._pool.submit(self._loop) for _ in range(n)]

    def _request(self, method: str, url: str, expect: int, **kw: Any) -> None:
        started = time.monotonic()
        try:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=self.socket_path),
                base_url="http://vifplug",
                timeout=120,
            ) as c:
                r = c.request(method, url, **kw)
            if r.status_code != expect:
                raise AssertionError(f"{method} {url}: {r.status_code} {r.text[:200]}")
        except Exception as exc:
            with self._lock:
                self.failures.append(f"{method} {url}: {exc!r}")
            return
        with self._lock:
            self.ok += 1
            self.slowest = max(self.slowest, time.monotonic() - started)

    def _loop(self) -> None:
        while not self.stop.is_set():
            vif = prim.vif_ovs(bridge=self.bridge)
            vif_id = prim.data(vif)["id"]
            self._request("POST", "/v1/vifs", 201, json=prim.body(vif))
            self._request("GET", "/v1/vifs", 200)
            self._request("DELETE", f"/v1/vifs/{vif_id}", 204)

    def wait_for_more(self, n: int, timeout: float = 120) -> None:
        target = self.ok + n
        deadline = time.monotonic() + timeout
        while self.ok < target and time.monotonic() < deadline and not self.failures:
            time.sleep(0.05)
        assert self.ok >= target, (self.ok, self.failures)

    def finish(self) -> None:
        self.stop.set()
        for f in self._futures:
            f.result(timeout=300)
        self._pool.shutdown()


def test_restarts_under_socket_activation_fail_no_request(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """Three restarts on the socket the 'service manager' holds while clients
    plug, list and unplug: every request is answered, those that came while
    no daemon ran wait in the listen queue.  The metrics socket is passed
    by name beside it; the daemons never unlink the socket they did not bind."""
    config = base_config(workdir, ovs.remote)
    path = config["api"]["socket_path"]
    unix, metrics = _unix_listener(path), _tcp_listener()
    activation = Activation([unix, metrics])
    daemons: list[Daemon] = []
    clients: Clients | None = None

    def start() -> Daemon:
        d = start_daemon(
            workdir,
            config,
            wrap=activation.prefix(["unix", "metrics"]),
            pass_fds=activation.pass_fds,
        )
        daemons.append(d)
        return d

    try:
        d = start()
        assert "sockets passed by systemd: metrics, unix" in d.stderr()
        port = metrics.getsockname()[1]
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 200
        clients = Clients(path, d.bridge)
        clients.wait_for_more(6)
        for _ in range(3):
            assert d.stop() == 0, d.stderr()
            assert Path(path).exists(), "a daemon removed the socket it was passed"
            d = start()
            clients.wait_for_more(6)
        clients.finish()
        assert clients.failures == [], clients.failures
        assert clients.ok >= 24
        # The gap between two daemons (imports, reconciliation) was waited out in the queue.
        assert clients.slowest > 0
        assert d.stop() == 0, d.stderr()
        assert Path(path).exists()
    finally:
        if clients is not None:
            clients.finish()
        for d in daemons:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(10)
        activation.close()
        unix.close()
        metrics.close()
        if daemons:
            cleanup_host(ovs, daemons[-1])


def test_a_socket_passed_under_an_unknown_name_refuses_to_start(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    config = base_config(workdir, ovs.remote)
    unix = _unix_listener(str(workdir / "other.sock"))
    tcp = _tcp_listener()
    activation = Activation([unix, tcp])
    try:
        d = start_daemon(
            workdir,
            config,
            wait=False,
            wrap=activation.prefix(["unix", "api-tcp"]),
            pass_fds=activation.pass_fds,
        )
        assert d.wait() == 2
        assert "systemd passed a socket named 'api-tcp'" in d.stderr()
    finally:
        activation.close()
        unix.close()
        tcp.close()


def test_without_activation_the_socket_is_bound_before_reconciliation(
    workdir: Path, netns_name: str
) -> None:
    """While OVSDB is awaited, the socket exists and a client's connection
    waits in its queue (no ENOENT); the request is answered once the daemon
    serves.  SIGTERM then removes the socket the daemon bound."""
    ovs_dir = Path(f"/tmp/vpovs-early-{time.monotonic_ns() % 10**8}")
    late = ovs_sandbox.OvsSandbox(ovs_dir, netns=netns_name)
    config = merge(base_config(workdir, late.remote), {"ovs": {"timeout": 1}})
    d = start_daemon(workdir, config, wait=False)
    try:
        deadline = time.monotonic() + 60
        while "OVSDB does not answer" not in d.stderr():
            assert time.monotonic() < deadline and d.proc.poll() is None, d.stderr()
            time.sleep(0.05)
        assert Path(d.socket_path).exists()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(lambda: d.client(timeout=120).get("/healthz"))
            time.sleep(0.5)  # the request has been sent and is not answered
            assert not waiting.done()
            late.start()
            assert waiting.result(timeout=120).status_code == 200
        assert d.stop() == 0
        assert not Path(d.socket_path).exists()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        late.stop()
        cleanup_host(late, d)
        import shutil

        shutil.rmtree(ovs_dir, ignore_errors=True)


# --- notification ----------------------------------------------------------------------


def _status(lines: list[str]) -> str | None:
    return next((line[7:] for line in lines if line.startswith("STATUS=")), None)


def test_status_progress_reload_and_watchdog(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox, notify: Notify
) -> None:
    """STATUS= while connecting and reconciling (with counts), EXTEND_TIMEOUT_USEC
    while a reconciliation with work runs before READY=1, WATCHDOG=1 at a third
    of WATCHDOG_USEC, RELOADING=1 with MONOTONIC_USEC then READY=1 around SIGHUP."""
    config = base_config(workdir, ovs.remote)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1500000"}
    d = start_daemon(workdir, config, env=env)
    taps = []
    try:
        with d.client() as c:
            for _ in range(3):
                vif = prim.vif_ovs(bridge=d.bridge)
                taps.append(prim.data(vif)["vif_name"])
                assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
        notify.wait_for(lambda m: "WATCHDOG=1" in m, 30)
        notify.wait_for(lambda m: "WATCHDOG=1" in m, 30)
        assert d.stop() == 0
        first = notify.lines()
        assert any(line.startswith("STATUS=Connecting to OVSDB at") for line in first)
        # Lost ports: the next start repairs them, reporting progress.
        for tap in taps:
            ovs.vsctl("--if-exists", "del-port", d.bridge, tap)
        notify.messages.clear()
        d = start_daemon(workdir, config, env=env)
        lines = notify.lines()
        ready = lines.index("READY=1")
        assert "STATUS=Reconciling: 0/3 VIF(s) done" in lines[:ready], lines
        assert "STATUS=Reconciling: 3/3 VIF(s) done" in lines[:ready], lines
        assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in lines[:ready])
        assert "STATUS=Serving 3 VIF(s)" in lines
        assert "reconciliation: 3 of 3 VIF(s) need work" in d.stderr()

        d.signal(signal.SIGHUP)
        reloading = notify.wait_for(lambda m: "RELOADING=1" in m, 30)
        assert any(re.fullmatch(r"MONOTONIC_USEC=\d+", line) for line in reloading)
        after = notify.messages.index(reloading) + 1
        done = notify.wait_for(lambda m: "READY=1" in m, 30, start=after)
        assert _status(done) == "Serving 3 VIF(s)"
        assert "reload: 0 network(s) configured" in d.stderr()
        assert d.stop() == 0
        stopping = notify.wait_for(lambda m: "STOPPING=1" in m, 30, start=after)
        assert _status(stopping) == "Stopping: finishing in-flight requests"
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        cleanup_host(ovs, d)


# --- the journal -------------------------------------------------------------------------


JOURNAL_WRAP = [
    "bash",
    "-c",
    'export JOURNAL_STREAM=$(stat -L -c %d:%i /dev/stderr); exec "$@"',
    "j",
]


def test_under_journald_lines_carry_priorities_and_no_time_or_pid(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    config = base_config(workdir, ovs.remote)
    d = start_daemon(workdir, config, wrap=JOURNAL_WRAP)
    try:
        d.config_path.write_text("[DEFAULT\nthis is not a configuration file\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "could not be read" not in d.stderr():
            assert time.monotonic() < deadline, d.stderr()
            time.sleep(0.05)
        assert d.stop() == 0
        lines = d.stderr().splitlines()
        assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines
        assert any(re.match(r"<6>\S+: vifplugd ready \(pid \d+\)$", x) for x in lines)
        assert any(
            re.match(r"<3>\S+: reload: the configuration files could not be read", line)
            for line in lines
        ), lines
        assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines)
        assert not any(f" {d.pid} " in line for line in lines)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        cleanup_host(ovs, d)


def test_elsewhere_lines_keep_time_pid_and_level(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """A JOURNAL_STREAM inherited from a shell whose stderr is elsewhere is not ours."""
    config = base_config(workdir, ovs.remote)
    d = start_daemon(workdir, config, env={"JOURNAL_STREAM": "8:12345"})
    try:
        assert d.stop() == 0
        ready = next(x for x in d.stderr().splitlines() if "vifplugd ready" in x)
        assert re.match(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} {d.pid} INFO ", ready), ready
    finally:
        cleanup_host(ovs, d)


# --- the metrics listener ----------------------------------------------------------------


def test_metrics_listener_needs_no_token_and_serves_only_metrics(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    token = workdir / "token"
    token.write_text("s3cret\n")
    config = merge(
        base_config(workdir, ovs.remote),
        {
            "api": {"listen": "127.0.0.1:0", "token_file": str(token), "insecure": True},
            "metrics": {"address": "127.0.0.1", "port": 0},
        },
    )
    d = start_daemon(workdir, config)
    try:
        found = re.search(r"listening on metrics (http://\S+)/metrics", d.stderr())
        assert found, d.stderr()
        base = found.group(1)
        with d.client() as c:
            vif = prim.vif_ovs(bridge=d.bridge)
            assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
        r = httpx.get(f"{base}/metrics", timeout=30)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert re.search(r'^vifplug_vifs\{.*plugin="ovs".*\} 1\.0$', r.text, re.M), r.text
        assert httpx.head(f"{base}/metrics", timeout=30).content == b""
        assert httpx.get(f"{base}/v1/vifs", timeout=30).status_code == 404
        assert httpx.post(f"{base}/metrics", timeout=30).status_code == 405
        # The plug API's TCP listener still wants its token, for /metrics too.
        api = d.tcp_address()
        assert httpx.get(f"{api}/metrics", timeout=30).status_code == 401
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        cleanup_host(ovs, d)


def test_metrics_listener_that_cannot_bind_refuses_to_start(
    workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    taken = _tcp_listener()
    try:
        port = taken.getsockname()[1]
        config = merge(base_config(workdir, ovs.remote), {"metrics": {"port": port}})
        d = start_daemon(workdir, config, wait=False)
        assert d.wait() == 2
        assert f"[metrics] address/port: cannot listen on 127.0.0.1:{port}" in d.stderr()
        assert not Path(d.socket_path).exists()
    finally:
        taken.close()
