"""One command for the figures of issue 11, each beside the floor it is compared with.

Starts its own sandbox Open vSwitch (userspace datapath) in a private network
namespace and a real ``vifplugd`` subprocess, stops both at the end, and
prints ONE table measured in this run:

- the plug floor (N taps through netlink, all N ports in one OVSDB
  transaction, every ofport awaited) and the unplug floor (one transaction
  plus one netlink delete of the taps as a group), from ``bench_plug.floor``;
- for each client count (16 and 128; 16 only with ``--quick``): N plugs
  through the HTTP API (``wait=ofport``) and N unplugs, each against its
  floor; vifplugd's CPU seconds per VIF (``/proc/PID/stat`` utime+stime,
  plugs and unplugs together); ovs-vswitchd's CPU during the same run; the
  OVSDB transactions vifplugd committed for the plugs (from ``/metrics``)
  against the floor's one; vifplugd's RSS (``VmRSS``) with N VIFs plugged.

Every row is ``| figure | value | floor | ratio |``; a cell without a floor
is ``-``. Timings are only printed, never checked: read them as ranges on a
busy machine. Not measured here yet (issue 11): the 16-to-a-transaction
floor, single-plug p50/p95, ready-after-restart, os-vif, scaling.

Usage: python bench/run.py [--n 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))
sys.path.insert(0, str(HERE.parent / "devtools"))

import nsisolate  # noqa: E402

QUICK_N = 20


@dataclass
class Row:
    figure: str
    value: float
    floor: float | None = None


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ovsdb_transactions(request: Callable[[str, str], tuple[int, bytes]]) -> float:
    """The daemon's count of committed OVSDB transactions, from ``/metrics``."""
    status, text = request("GET", "/metrics")
    found = re.search(r"^vifplug_ovsdb_transactions(?:_total)?\s+(\S+)", text.decode(), re.M)
    if status != 200 or found is None:
        raise RuntimeError("vifplug_ovsdb_transactions not found in /metrics")
    return float(found.group(1))


def client_run(sock: str, bridge: str, n: int, clients: int, pid: int, vswitchd: int) -> list[Row]:
    """N plugs then N unplugs by ``clients`` keep-alive HTTP clients, with the
    costs read around them; the interface names carry the client count so
    that rounds on one daemon never reuse a name."""
    import bench_api
    import bench_plug
    from engine_fixture import instance, ovs_vif, vif_id_of

    local = threading.local()
    opened: list[bench_api.UnixHTTPConnection] = []

    def request(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = bench_api.UnixHTTPConnection(sock)
            opened.append(conn)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def plug(vif: dict[str, object]) -> None:
        body = json.dumps({"vif": vif, "instance": instance()}).encode()
        status, text = request("POST", "/v1/vifs?wait=ofport", body)
        if status != 201:
            raise RuntimeError(f"plug answered {status}: {text[:200]!r}")

    def unplug(vif: dict[str, object]) -> None:
        status, text = request("DELETE", f"/v1/vifs/{vif_id_of(vif)}")
        if status != 204:
            raise RuntimeError(f"unplug answered {status}: {text[:200]!r}")

    vifs = [ovs_vif(bridge=bridge, name=f"v{clients}x{i:05d}") for i in range(n)]
    txn0 = ovsdb_transactions(request)
    cpu0 = bench_plug.cpu_seconds(pid), bench_plug.cpu_seconds(vswitchd)
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(plug, vifs))
        plugged = time.perf_counter() - t0
        txns = ovsdb_transactions(request) - txn0
        rss = rss_mb(pid)
        t0 = time.perf_counter()
        list(pool.map(unplug, vifs))
        unplugged = time.perf_counter() - t0
    cpu1 = bench_plug.cpu_seconds(pid), bench_plug.cpu_seconds(vswitchd)
    for conn in opened:
        conn.close()
    return [
        Row(f"plug, {clients} clients, wait=ofport (s)", plugged),
        Row(f"unplug, {clients} clients (s)", unplugged),
        Row(
            f"vifplugd CPU per VIF, plug+unplug, {clients} clients (ms)",
            (cpu1[0] - cpu0[0]) * 1000 / n,
        ),
        Row(f"ovs-vswitchd CPU, {clients} clients (s)", cpu1[1] - cpu0[1]),
        Row(f"OVSDB transactions for the plugs, {clients} clients", txns, 1.0),
        Row(f"vifplugd RSS, {n} VIFs plugged, {clients} clients (MB)", rss),
    ]


def measure(n: int, client_counts: list[int]) -> list[Row]:
    """Floors first, then one daemon for every client count, all on one sandbox."""
    import bench_api
    import bench_plug

    import ovs_sandbox

    directory = Path(tempfile.mkdtemp(prefix="vpbench-", dir="/tmp"))
    sb = ovs_sandbox.OvsSandbox(directory / "ovs").start()
    proc = None
    try:
        vswitchd = sb.vswitchd_pid
        assert vswitchd is not None
        c0 = bench_plug.cpu_seconds(vswitchd)
        f_plug, f_unplug = bench_plug.floor(sb.remote, n, "brfloor")
        f_cpu = bench_plug.cpu_seconds(vswitchd) - c0
        rows = [
            Row("plug floor: netlink + 1 OVSDB transaction (s)", f_plug),
            Row("unplug floor: 1 transaction + link-group delete (s)", f_unplug),
            Row("ovs-vswitchd CPU, floor (s)", f_cpu),
        ]
        proc, sock = bench_api.start_daemon(directory, sb.remote, "brapi")
        for clients in client_counts:
            for row in client_run(sock, "brapi", n, clients, proc.pid, vswitchd):
                floors = {
                    "plug,": f_plug,
                    "unplug,": f_unplug,
                    "ovs-vswitchd": f_cpu,
                }
                for prefix, value in floors.items():
                    if row.figure.startswith(prefix):
                        row.floor = value
                rows.append(row)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        sb.stop()
        log = directory / "vifplugd.log"
        if log.exists():
            shutil.copy(log, "/tmp/vifplugd-bench.log")
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def table(rows: list[Row]) -> str:
    """The rows as one markdown table; ``-`` where a figure has no floor."""
    width = max(len(r.figure) for r in rows)
    lines = [
        f"| {'figure':<{width}} | {'value':>10} | {'floor':>10} | {'ratio':>7} |",
        f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 12}|{'-' * 9}|",
    ]
    for r in rows:
        floor = "-" if r.floor is None else f"{r.floor:.3f}"
        ratio = "-" if not r.floor else f"{r.value / r.floor:.2f}"
        lines.append(f"| {r.figure:<{width}} | {r.value:>10.3f} | {floor:>10} | {ratio:>7} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", "-n", type=int, default=None, help="VIFs per run (default 1000)")
    parser.add_argument(
        "--quick", action="store_true", help=f"a small run for CI: N={QUICK_N}, 16 clients only"
    )
    args = parser.parse_args()
    n = args.n if args.n is not None else (QUICK_N if args.quick else 1000)
    client_counts = [16] if args.quick else [16, 128]
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    rows = measure(n, client_counts)
    print(f"{n} VIFs, clients {', '.join(map(str, client_counts))}, {os.cpu_count()} CPUs")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
