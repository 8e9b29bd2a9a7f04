"""What the benchmarks share: the floors, a real vifplugd and its clients, and
the readings of ``/proc``.

The floors talk to OVSDB through a bare ``ovs.db.idl.Idl`` driven in the
calling thread (no vifplug code on the path: vifplug's own connection batches
and holds writes, which is what is being measured, not the floor) and create
taps through one pyroute2 ``IPRoute``. Each floor is the least that any
plugging agent using OVSDB and netlink has to do for its pattern:

- ``floor_one_txn``: N taps, then all N ports in ONE transaction, then every
  ofport awaited (one reconfiguration of ovs-vswitchd in all);
- ``floor_batched``: N taps, then the ports ``batch`` to a transaction, each
  transaction waiting for its ofports before the next is sent. ``batch``
  clients that each wait for their ofport cannot put more than ``batch``
  ports in one transaction, so N/batch transactions and reconfigurations are
  the floor for that pattern;
- ``floor_single``: one tap plus one transaction of one port waiting for its
  ofport, one after another: the floor of a lone plug's latency;
- every unplug floor: the ports removed in one transaction, then the taps
  deleted by one netlink request for their link group.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FLOOR_GROUP = 4242


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU a process has used, from ``/proc/PID/stat``."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: How ``thread_cpu`` groups vifplugd's threads, by the names the daemon
#: gives them for the kernel (``vifplug.threadnames``; 15 bytes kept).
THREAD_GROUPS = (
    ("API workers", "api-worker_"),
    ("OVSDB thread", "ovsdb-"),
    ("state writer", "vifplug-state-w"),
    ("device deleter and reaper", "netdev-"),
)
MAIN_THREAD = "event loop (HTTP)"
OTHER_THREADS = "other threads"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads, by group (``THREAD_GROUPS``,
    the main thread, the rest).

    Read from each thread's ``schedstat`` (its time on a CPU, in ns), not
    its ``stat``: ``stat`` counts whole clock ticks per thread, and 16 API
    workers with a few milliseconds each would all read 0."""
    out = dict.fromkeys([g for g, _ in THREAD_GROUPS] + [MAIN_THREAD, OTHER_THREADS], 0.0)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            if task.name == str(pid):
                raise  # no schedstat on this kernel (CONFIG_SCHED_INFO), or no process
            continue  # the thread ended meanwhile
        group = MAIN_THREAD if task.name == str(pid) else _group_of(comm)
        out[group] += ns / 1e9
    return out


def _group_of(comm: str) -> str:
    return next(
        (group for group, prefix in THREAD_GROUPS if comm.startswith(prefix)), OTHER_THREADS
    )


def settle(
    *pids: int,
    remote: str | None = None,
    busy: float = 0.1,
    window: float = 0.25,
    limit: float = 120.0,
) -> float:
    """Wait until ovs-vswitchd applied every configuration written to
    ``remote`` (``cur_cfg`` caught up with ``next_cfg``) and every process in
    ``pids`` used under ``busy`` of a CPU over ``window`` seconds; returns
    the seconds waited.  Quiet CPU alone is not enough: removing hundreds of
    ports from the userspace datapath blocks ovs-vswitchd for seconds with
    little CPU.

    After a round, ovs-vswitchd goes on for seconds (it answered the last
    write, then reconfigures, and follows the kernel deleting a thousand
    taps): a round started then measures its backlog, not the round (the
    first 16 plugs of a round once waited 10 s for their ofports).  Every
    timed phase starts from a quiet host, the floors' as vifplug's.
    """
    t0 = time.monotonic()
    while remote is not None and time.monotonic() - t0 < limit and not _applied(remote):
        time.sleep(0.05)
    while time.monotonic() - t0 < limit:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(window)
        if all(cpu_seconds(p) - b < busy * window for p, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - t0


def _applied(remote: str) -> bool:
    """Whether ovs-vswitchd has applied every configuration written so far."""
    out = subprocess.run(
        ["ovs-vsctl", f"--db={remote}", "get", "Open_vSwitch", ".", "cur_cfg", "next_cfg"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]) >= int(out[1])


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(samples: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- the floors ------------------------------------------------------------


class RawIdl:
    """A bare Python IDL of the columns a plug needs, run in the caller's
    thread: what the floors commit through."""

    COLUMNS = {
        "Open_vSwitch": ["bridges"],
        "Bridge": ["name", "ports", "datapath_type"],
        "Port": ["name", "interfaces"],
        "Interface": ["name", "ofport", "external_ids"],
    }

    def __init__(self, remote: str) -> None:
        import ovs.db.idl

        import ovs_sandbox

        helper = ovs.db.idl.SchemaHelper(ovs_sandbox._schema_path())
        for table, columns in self.COLUMNS.items():
            helper.register_columns(table, columns)
        self.remote = remote
        self.idl = ovs.db.idl.Idl(remote, helper)
        self.block_until(self.idl.has_ever_connected, 30)

    def close(self) -> None:
        self.idl.close()

    def block_until(self, done: Callable[[], bool], timeout: float) -> None:
        """Run the IDL until ``done()``, sleeping in its poller in between."""
        import ovs.poller

        deadline = time.monotonic() + timeout
        while True:
            self.idl.run()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("OVSDB did not get there in time")
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(100)
            poller.block()

    def commit(self, fill: Callable[[Any], None]) -> Any:
        """One transaction filled by ``fill(txn)``, committed and awaited."""
        import ovs.db.idl

        txn = ovs.db.idl.Transaction(self.idl)
        fill(txn)
        status = txn.commit_block()
        if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            raise RuntimeError(f"OVSDB transaction: {status} {txn.get_error()}")
        return txn

    def ensure_bridge(self, name: str) -> None:
        """The bridge, userspace datapath, made by ovs-vsctl outside any timing."""
        subprocess.run(
            [
                *("ovs-vsctl", f"--db={self.remote}", "--may-exist", "add-br", name),
                *("--", "set", "bridge", name, "datapath_type=netdev"),
            ],
            check=True,
            capture_output=True,
        )
        self.block_until(lambda: self._bridge(name) is not None, 30)

    def _bridge(self, name: str) -> Any:
        for row in self.idl.tables["Bridge"].rows.values():
            if row.name == name:
                return row
        return None

    def add_ports(self, bridge: str, names: list[str]) -> list[uuid.UUID]:
        """One transaction adding a port and interface per name; the
        interfaces' UUIDs as the database assigned them."""
        inserted: list[Any] = []

        def fill(txn: Any) -> None:
            br = self._bridge(bridge)
            for name in names:
                iface = txn.insert(self.idl.tables["Interface"])
                iface.name = name
                iface.external_ids = {"iface-id": str(uuid.uuid4())}
                port = txn.insert(self.idl.tables["Port"])
                port.name = name
                port.interfaces = [iface]
                br.addvalue("ports", port.uuid)
                inserted.append(iface)

        txn = self.commit(fill)
        return [txn.get_insert_uuid(row.uuid) for row in inserted]

    def wait_ofports(self, ifaces: list[uuid.UUID], timeout: float = 300) -> None:
        """Until ovs-vswitchd has given every interface its ofport."""
        rows = self.idl.tables["Interface"].rows

        def done() -> bool:
            for u in ifaces:
                row = rows.get(u)
                if row is None or not row.ofport or row.ofport[0] <= 0:
                    return False
            return True

        self.block_until(done, timeout)

    def remove_ports(self, bridge: str, names: list[str]) -> None:
        """One transaction removing the named ports from the bridge."""
        wanted = set(names)

        def fill(txn: Any) -> None:
            br = self._bridge(bridge)
            for port in list(self.idl.tables["Port"].rows.values()):
                if port.name in wanted:
                    br.delvalue("ports", port.uuid)
                    port.delete()

        self.commit(fill)


def make_taps(names: list[str]) -> None:
    """Each tap created and set up by netlink, in the floors' link group."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for name in names:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", ifname=name, state="up", group=FLOOR_GROUP)


def delete_taps() -> None:
    """Every tap of the floors' link group, in one netlink request."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("del", group=FLOOR_GROUP)


def warm(remote: str) -> None:
    """Untimed: ovs-vswitchd creates its userspace datapath with the first
    bridge and port, a cost that no plug on a running host pays; a
    benchmark calls this before its first floor."""
    floor_batched(remote, 2, "brwarm", 2)


def floor_batched(
    remote: str, n: int, bridge: str, batch: int, vswitchd: int | None = None
) -> tuple[float, float]:
    """Plug and unplug floors of N ports ``batch`` to a transaction (N for
    one transaction), each transaction waiting for its ofports; seconds.
    Each phase starts once ``vswitchd`` (when given) is quiet."""
    idl = RawIdl(remote)
    quiet = (lambda: settle(vswitchd, remote=remote)) if vswitchd is not None else (lambda: 0.0)
    try:
        idl.ensure_bridge(bridge)
        names = [f"{bridge[:10]}{i:05d}" for i in range(n)]
        quiet()
        t0 = time.perf_counter()
        make_taps(names)
        for start in range(0, n, batch):
            idl.wait_ofports(idl.add_ports(bridge, names[start : start + batch]))
        plug = time.perf_counter() - t0
        quiet()
        t0 = time.perf_counter()
        idl.remove_ports(bridge, names)
        delete_taps()
        unplug = time.perf_counter() - t0
    finally:
        idl.close()
    return plug, unplug


def floor_single(remote: str, samples: int, bridge: str) -> list[float]:
    """Latencies (s) of one tap plus one one-port transaction waiting for
    its ofport, one after another; cleaned up afterwards, untimed."""
    idl = RawIdl(remote)
    times: list[float] = []
    try:
        idl.ensure_bridge(bridge)
        names = [f"{bridge[:10]}{i:05d}" for i in range(samples)]
        for name in names:
            t0 = time.perf_counter()
            make_taps([name])
            idl.wait_ofports(idl.add_ports(bridge, [name]))
            times.append(time.perf_counter() - t0)
        idl.remove_ports(bridge, names)
        delete_taps()
    finally:
        idl.close()
    return times


def import_seconds(repeat: int = 3) -> float:
    """Wall time of a fresh interpreter importing ``vifplug.daemon``, the
    same way the daemon is started: the floor of any start-up. The least of
    ``repeat`` runs, as a floor should be."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        argv = [sys.executable, "-W", "ignore", "-c", "import vifplug.daemon"]
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


# -- a real vifplugd and its clients -----------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: a client that costs little CPU itself."""

    def __init__(self, path: str, timeout: float = 300) -> None:
        super().__init__("vifplugd", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Daemon:
    """One ``vifplugd`` subprocess on a state directory that outlives it, so
    that it can be stopped and started again with its VIFs in its state."""

    def __init__(
        self,
        directory: Path,
        remote: str,
        bridge: str,
        options: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """``options``: more settings by section (``{"ovs": {"hold_max": "0"}}``)."""
        self.directory = directory
        self.remote = remote
        self.sock = str(directory / "api.sock")
        self.conf = directory / "vifplug.conf"
        extra = options or {}

        def more(section: str) -> str:
            return "".join(f"{k} = {v}\n" for k, v in extra.get(section, {}).items())

        self.conf.write_text(
            f"[DEFAULT]\nstate_dir = {directory / 'state'}\n"
            f"[ovs]\nconnection = {remote}\ndatapath_type = netdev\n"
            f"integration_bridge = {bridge}\ntimeout = 300\n{more('ovs')}"
            f"[api]\nsocket_path = {self.sock}\ndefault_timeout = 300\n{more('api')}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120) -> float:
        """Start it and poll ``/readyz`` (OVSDB connected, state reconciled)
        every 10 ms; seconds from the exec to the first 200."""
        argv = [sys.executable, "-W", "ignore", "-m", "vifplug.daemon"]
        log = open(self.directory / "vifplugd.log", "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [*argv, "--config-file", str(self.conf)], stderr=log, stdout=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = UnixHTTPConnection(self.sock, timeout=10)
                try:
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        return time.perf_counter() - t0
                finally:
                    conn.close()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"vifplugd did not become ready; see {self.directory}/vifplugd.log"
                )
            time.sleep(0.01)

    def stop(self, timeout: float = 120) -> float:
        """SIGTERM and wait for the exit; seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.terminate()
        self.proc.wait(timeout=timeout)
        return time.perf_counter() - t0


class Clients:
    """Keep-alive HTTP connections, one per thread, as separate compute
    service workers would have."""

    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.local = threading.local()
        self.opened: list[UnixHTTPConnection] = []

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = UnixHTTPConnection(self.sock)
            self.opened.append(conn)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The daemon closes a kept-alive connection idle past [api]
            # idle_timeout (the main thread's, during a long round); like any
            # HTTP client, open a new one and send again.
            conn.close()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
        return resp.status, resp.read()

    def plug(self, vif: dict[str, Any], instance: dict[str, Any]) -> None:
        body = json.dumps({"vif": vif, "instance": instance}).encode()
        status, text = self.request("POST", "/v1/vifs?wait=ofport", body)
        if status != 201:
            raise RuntimeError(f"plug answered {status}: {text[:200]!r}")

    def unplug(self, vif_id: str) -> None:
        status, text = self.request("DELETE", f"/v1/vifs/{vif_id}")
        if status != 204:
            raise RuntimeError(f"unplug answered {status}: {text[:200]!r}")

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        self.opened.clear()
        self.local = threading.local()


@contextlib.contextmanager
def clients(sock: str) -> Iterator[Clients]:
    c = Clients(sock)
    try:
        yield c
    finally:
        c.close()
