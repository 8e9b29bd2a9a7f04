"""vifplugd as a process: systemd notification, signals, its socket, its identity."""

from __future__ import annotations

import concurrent.futures
import contextlib
import grp
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import ovs.json as ovs_json
import primitives as prim
import pytest
from daemon_fixture import (
    Daemon,
    DaemonFactory,
    base_config,
    merge,
    start_daemon,
    write_config,
)

import ovs_sandbox


class Notify:
    """A systemd notification socket (datagrams); ``messages`` holds their lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def read(self, timeout: float) -> list[str]:
        self.sock.settimeout(timeout)
        try:
            while True:
                # One datagram may carry several lines (READY=1 and STATUS=).
                self.messages.extend(self.sock.recv(4096).decode().split("\n"))
                self.sock.settimeout(0.05)
        except (TimeoutError, BlockingIOError):
            pass
        return self.messages

    def wait_for(self, message: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if message in self.read(0.2):
                return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(workdir: Path) -> Iterator[Notify]:
    n = Notify(workdir / "notify.sock")
    try:
        yield n
    finally:
        n.close()


# --- systemd -----------------------------------------------------------------------------


def test_ready_only_when_serving_and_stopping_on_sigterm(
    daemon_factory: DaemonFactory, notify: Notify
) -> None:
    d = daemon_factory(env={"NOTIFY_SOCKET": str(notify.path)}, wait=False)
    assert notify.wait_for("READY=1", 60), d.stderr()
    # READY=1 means the socket answers and the daemon is ready.
    with d.client() as c:
        assert c.get("/readyz").status_code == 200
    assert "STOPPING=1" not in notify.messages
    assert d.stop() == 0
    assert notify.wait_for("STOPPING=1", 5)
    assert notify.messages.index("READY=1") < notify.messages.index("STOPPING=1")
    assert not os.path.exists(d.socket_path)
    # The start-up log says which JSON parser reads OVSDB (docs/performance.md).
    parser = "C (" if ovs_json.PARSER == ovs_json.PARSER_C else "pure Python"
    assert f"OVSDB JSON parser: {parser}" in d.stderr(), d.stderr()


def test_not_ready_until_ovsdb_answers(workdir: Path, notify: Notify, netns_name: str) -> None:
    """OVSDB comes up after the daemon: READY=1 follows it, not the start."""
    ovs_dir = Path(f"/tmp/vpovs-late-{uuid.uuid4().hex[:6]}")
    late = ovs_sandbox.OvsSandbox(ovs_dir, netns=netns_name)
    config = merge(base_config(workdir / "d", late.remote), {"ovs": {"timeout": 1}})
    d = start_daemon(workdir / "d", config, wait=False, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        # However long start-up takes, the daemon gets to OVSDB, finds it
        # absent, and is still not ready.
        deadline = time.monotonic() + 60
        while "OVSDB does not answer" not in d.stderr():
            assert d.proc.poll() is None, d.stderr()
            assert time.monotonic() < deadline, d.stderr()
            time.sleep(0.1)
        assert "READY=1" not in notify.read(0.2)
        assert d.proc.poll() is None
        # Bound before start-up, so that clients wait instead of failing
        # (test_daemon_systemd.py); answered only once ready.
        assert os.path.exists(d.socket_path)
        assert "OVSDB does not answer" in d.stderr()
        late.start()
        assert notify.wait_for("READY=1", 60), d.stderr()
        with d.client() as c:
            assert c.get("/readyz").status_code == 200
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        late.stop()
        subprocess.run(["rm", "-rf", str(ovs_dir)], check=False)


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for ``sig`` (the kernel's SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (sig - 1)))


def wait_until_it_catches(d: Daemon, *sigs: signal.Signals, timeout: float = 60) -> None:
    """Until the daemon's first lines have installed their handlers.  Before
    that only the interpreter runs (some 10-50 ms), where no program can
    handle a signal; waiting for the kernel to say so, not for a time, keeps
    the test honest on a slow machine."""
    deadline = time.monotonic() + timeout
    while not all(catches(d.pid, sig) for sig in sigs):
        assert d.proc.poll() is None, d.stderr()
        assert time.monotonic() < deadline, f"no handler after {timeout}s:\n{d.stderr()}"
        time.sleep(0.001)


def start_without_ovsdb(workdir: Path, notify: Notify) -> Daemon:
    """A daemon that cannot finish starting (its OVSDB does not exist)."""
    return start_daemon(
        workdir / "d",
        base_config(workdir / "d", "unix:/nonexistent/db.sock"),
        wait=False,
        env={"NOTIFY_SOCKET": str(notify.path)},
    )


def loaded(pid: int, library: str) -> bool:
    """Whether the process has mapped a shared library whose path contains ``library``."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        return False


def wait_until_loaded(d: Daemon, library: str, timeout: float = 60) -> None:
    """Until the daemon's imports reach ``library`` (a C extension of one of
    them): a moment in the middle of importing, found by what the process
    did rather than by how long it took."""
    deadline = time.monotonic() + timeout
    while not loaded(d.pid, library):
        assert d.proc.poll() is None, d.stderr()
        assert not d.stderr(), f"imports done before {library} was loaded:\n{d.stderr()}"
        assert time.monotonic() < deadline, f"{library} not loaded after {timeout}s"
        time.sleep(0.001)


#: When the SIGTERM comes: at the first moment the process catches it, while
#: it imports fastapi (pydantic_core) and oslo.versionedobjects (eventlet's
#: greenlet), or some seconds after exec (importing, or the engine retrying).
MOMENTS: list[str | float] = ["first-handler", "_pydantic_core", "_greenlet", 1.0, 3.0]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigterm_during_start_up_exits_0(
    workdir: Path, notify: Notify, moment: str | float
) -> None:
    """However early the stop comes, the daemon exits 0 without a traceback
    and leaves nothing behind.  Only the interpreter's own start, before the
    daemon's first line runs, is waited out (see ``wait_until_it_catches``)."""
    started = time.monotonic()
    d = start_without_ovsdb(workdir, notify)
    if isinstance(moment, float):
        time.sleep(max(0.0, started + moment - time.monotonic()))
    elif moment != "first-handler":
        wait_until_loaded(d, moment)
    wait_until_it_catches(d, signal.SIGTERM)
    printed = d.stderr()
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.stderr()
    log = d.stderr()
    assert "Traceback" not in log, log
    assert "during start-up" in log, log
    if not printed:
        # Still importing: the first lines' handler, not the event loop's, stopped it.
        assert log == "vifplugd: SIGTERM during start-up; exiting\n", log
    elif isinstance(moment, str):
        raise AssertionError(f"the daemon printed before its imports were done:\n{printed}")
    assert "READY=1" not in notify.read(0.2)
    assert not os.path.exists(d.socket_path)


def test_sigint_and_sighup_during_start_up(workdir: Path, notify: Notify) -> None:
    """SIGHUP (a reload) before there is anything to reload is ignored, not
    fatal; SIGINT (Ctrl-C in a foreground run) stops it like SIGTERM, with
    no KeyboardInterrupt traceback."""
    d = start_without_ovsdb(workdir, notify)
    wait_until_it_catches(d, signal.SIGHUP, signal.SIGTERM)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while "SIGHUP" not in d.stderr():
        assert d.proc.poll() is None, d.stderr()
        assert time.monotonic() < deadline, d.stderr()
        time.sleep(0.01)
    assert d.proc.poll() is None
    d.signal(signal.SIGINT)
    assert d.wait(60) == 0, d.stderr()
    assert "Traceback" not in d.stderr(), d.stderr()


def _loaded(argv0: str, *modules: str, **env: str) -> set[str]:
    """Which of ``modules`` importing ``vifplug.daemon`` under that program
    name loads."""
    probe = (
        "import sys; sys.argv[0] = sys.argv[1]; import vifplug.daemon; "
        "print(' '.join(m for m in sys.argv[2:] if m in sys.modules))"
    )
    environ = {k: v for k, v in os.environ.items() if k != "EVENTLET_NO_GREENDNS"} | env
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe, argv0, *modules],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    return set(out[-1].split()) if out else set()


def test_the_program_loads_neither_eventlets_resolver_nor_httpx() -> None:
    """eventlet comes in with oslo.versionedobjects and the ovs bindings but is
    never used; its resolver (dnspython) alone was 15 MB of the daemon's
    memory.  The program turns it off; a process that only imports the
    module, or an operator who set ``EVENTLET_NO_GREENDNS`` otherwise, keeps
    eventlet's default.  httpx (5 MB) waits for a HostInfo push."""
    assert _loaded("vifplugd", "dns.resolver", "httpx", "eventlet") == {"eventlet"}
    assert _loaded("some-importer", "dns.resolver") == {"dns.resolver"}
    assert _loaded("vifplugd", "dns.resolver", EVENTLET_NO_GREENDNS="no") == {"dns.resolver"}


# --- SIGTERM with requests in flight -------------------------------------------------------


def _answers(d: Daemon) -> bool:
    """Whether a new connection to the daemon is accepted and answered."""
    try:
        with d.client(timeout=5) as c:
            c.get("/healthz")
    except httpx.HTTPError:
        return False
    return True


def test_sigterm_during_plugs_finishes_them_and_exits_0(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, notify: Notify
) -> None:
    d = daemon_factory(env={"NOTIFY_SOCKET": str(notify.path)})
    vifs = [prim.vif_ovs(bridge=d.bridge) for _ in range(12)]
    taps = [prim.data(v)["vif_name"] for v in vifs]

    def plug(vif: dict[str, object]) -> int:
        with d.client(timeout=120) as c:
            r = c.post(
                "/v1/vifs", params={"wait": "ovn-installed", "timeout": "60"}, json=prim.body(vif)
            )
            return r.status_code

    with concurrent.futures.ThreadPoolExecutor(len(vifs)) as pool:
        futures = [pool.submit(plug, v) for v in vifs]
        # Every plug is in flight once its port is in OVSDB (it then waits for OVN).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ports = set(ovs.vsctl("list-ports", d.bridge).split())
            except ovs_sandbox.SandboxError:
                ports = set()  # the bridge is not made yet
            if set(taps) <= ports:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(d.stderr())
        d.signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING=1", 10)
        # No new connections are accepted while draining (the listener
        # closes soon after STOPPING=1; how soon is the machine's business).
        deadline = time.monotonic() + 30
        while _answers(d):
            assert time.monotonic() < deadline, "still accepting 30 s after STOPPING=1"
            time.sleep(0.05)
        assert d.proc.poll() is None
        assert not any(f.done() for f in futures), "an in-flight plug ended before OVN bound it"
        # OVN "binds" the ports now; the in-flight requests complete.
        for tap in taps:
            ovs.vsctl("set", "Interface", tap, "external_ids:ovn-installed=true")
        statuses = [f.result(timeout=60) for f in futures]
    assert statuses == [201] * len(vifs)
    assert d.wait(60) == 0, d.stderr()
    assert "finishing in-flight requests" in d.stderr()
    # What was acknowledged is still plugged; a new daemon on the same state finds it.
    assert set(taps) <= set(ovs.vsctl("list-ports", d.bridge).split())
    again = start_daemon(d.workdir, d.config)
    try:
        with again.client() as c:
            assert {v["vif_id"] for v in c.get("/v1/vifs").json()["vifs"]} == {
                prim.data(v)["id"] for v in vifs
            }
            for v in vifs:
                assert c.delete(f"/v1/vifs/{prim.data(v)['id']}").status_code == 204
    finally:
        assert again.stop() == 0


# --- SIGHUP --------------------------------------------------------------------------------


def test_sighup_rereads_the_network_definitions(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"network:alpha": {"type": "ovs", "bridge": "vpnalpha"}})
    with d.client() as c:
        assert [n["name"] for n in c.get("/v1/networks").json()["networks"]] == ["alpha"]
    write_config(
        d.config_path, merge(d.config, {"network:beta": {"type": "ovs", "bridge": "vpnbeta"}})
    )
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    names: list[str] = []
    while time.monotonic() < deadline:
        with d.client() as c:
            names = [n["name"] for n in c.get("/v1/networks").json()["networks"]]
        if names == ["alpha", "beta"]:
            break
        time.sleep(0.1)
    assert names == ["alpha", "beta"], d.stderr()
    assert "SIGHUP received" in d.stderr()
    # An invalid file keeps the running definitions.
    d.config_path.write_text(d.config_path.read_text() + "\n[network:broken]\ntype = ovs\n")
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "invalid" not in d.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "keeping the current ones" in d.stderr()
    with d.client() as c:
        assert [n["name"] for n in c.get("/v1/networks").json()["networks"]] == ["alpha", "beta"]
        assert c.get("/readyz").status_code == 200


def test_reload_through_the_api_answers_when_it_is_done(daemon_factory: DaemonFactory) -> None:
    """``vifplug reload`` (the unit's ExecReload=) returns once the new
    definitions are in force, and fails, keeping the old ones, when they are
    invalid: ``systemctl reload`` then waits for the reload and reports it."""
    d = daemon_factory({"network:alpha": {"type": "ovs", "bridge": "vpnalpha"}})
    write_config(
        d.config_path, merge(d.config, {"network:beta": {"type": "ovs", "bridge": "vpnbeta"}})
    )
    cli = [sys.executable, "-m", "vifplug.cli", "--socket", d.socket_path]
    done = subprocess.run([*cli, "reload"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Reloaded: network(s) alpha, beta."
    # In force when the command returned: no waiting, no polling.
    with d.client() as c:
        assert [n["name"] for n in c.get("/v1/networks").json()["networks"]] == ["alpha", "beta"]
    d.config_path.write_text(d.config_path.read_text() + "\n[network:broken]\ntype = ovs\n")
    done = subprocess.run([*cli, "reload"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "[reload_failed]" in done.stderr and "keeping the current ones" in done.stderr
    with d.client() as c:
        r = c.post("/v1/reload")
        assert r.status_code == 400 and r.json()["error"]["code"] == "reload_failed"
        assert [n["name"] for n in c.get("/v1/networks").json()["networks"]] == ["alpha", "beta"]
        assert c.get("/readyz").status_code == 200


# --- the socket ------------------------------------------------------------------------------


def test_unix_socket_is_0660_with_the_configured_group(daemon_factory: DaemonFactory) -> None:
    group = grp.getgrnam("adm")
    d = daemon_factory({"api": {"socket_group": "adm"}})
    st = os.stat(d.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == group.gr_gid


def test_stale_socket_is_replaced_and_a_live_one_is_not_stolen(
    daemon_factory: DaemonFactory, workdir: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    stale = workdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on
    d = daemon_factory({"api": {"socket_path": str(stale)}})
    with d.client() as c:
        assert c.get("/healthz").status_code == 200
    # A second daemon on the same socket refuses and leaves the first alone.
    second = daemon_factory({"api": {"socket_path": str(stale)}}, wait=False)
    assert second.wait(60) == 2, second.stderr()
    assert "already running" in second.stderr()
    with d.client() as c:
        assert c.get("/healthz").status_code == 200


def test_invalid_network_definitions_refuse_to_start(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"network:nobridge": {"type": "ovs"}}, wait=False)
    assert d.wait(60) == 2
    assert "network definitions are invalid" in d.stderr()


def test_unknown_option_value_refuses_to_start(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"ovs": {"datapath_type": "quantum"}}, wait=False)
    assert d.wait(60) != 0


# --- identity ----------------------------------------------------------------------------------


def test_configured_system_id_and_host_fields_reach_ovsdb(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox
) -> None:
    previous = (
        ovs.vsctl("--if-exists", "get", "Open_vSwitch", ".", "external_ids:system-id")
        .strip()
        .strip('"')
    )
    system_id = str(uuid.uuid4())
    try:
        daemon_factory(
            {
                "DEFAULT": {
                    "system_id": system_id,
                    "system_type": "vifplug-test",
                    "system_version": "1.2.3",
                    "enable_statistics": True,
                }
            }
        )

        def get(column: str) -> str:
            return ovs.vsctl("get", "Open_vSwitch", ".", column).strip().strip('"')

        assert get("external_ids:system-id") == system_id
        assert get("system_type") == "vifplug-test"
        assert get("system_version") == "1.2.3"
        assert get("other_config:enable-statistics") == "true"
    finally:
        if previous:
            ovs.vsctl("set", "Open_vSwitch", ".", f"external_ids:system-id={previous}")


def test_console_script_runs_the_daemon(workdir: Path, ovs: ovs_sandbox.OvsSandbox) -> None:
    script = Path(sys.executable).parent / "vifplugd"
    if not script.exists():
        pytest.skip("vifplugd console script not installed in this environment")
    config = base_config(workdir, ovs.remote)
    config_path = workdir / "c.conf"
    write_config(config_path, config)
    dropins = workdir / "conf.d"  # empty: the host's /etc/vifplug/vifplug.conf.d is not read
    dropins.mkdir()
    argv = [str(script), "--config-file", str(config_path), "--config-dir", str(dropins)]
    d = start_daemon(workdir, config, argv=argv)
    assert isinstance(d, Daemon)
    assert d.stop() == 0


def test_threads_carry_their_names_for_the_kernel(vifplugd: Daemon) -> None:
    """``top -H`` and ``ps -L`` (and bench/, splitting the CPU by thread)
    read the names from /proc; a refused unplug runs on an API worker."""
    with vifplugd.client() as c:
        assert c.delete(f"/v1/vifs/{uuid.uuid4()}").status_code == 404
    names = set()
    for task in Path(f"/proc/{vifplugd.pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            names.add((task / "comm").read_text().strip())
    assert {"ovsdb-idl", "ovsdb-notify", "vifplug-state-w"} <= names, names
    assert any(n.startswith("api-worker_") for n in names), names
