"""One command for the figures of issue 11, each beside the floor it is compared with.

Starts its own sandbox Open vSwitch (userspace datapath) in a private network
namespace and a real ``vifplugd`` subprocess, stops both at the end, and
prints ONE table measured in this run, in this order:

1. The floors (``harness.py`` says why each is the floor), on bridges of
   their own, through a bare Python IDL and pyroute2, with no vifplug code:
   N taps then all N ports in ONE transaction; N taps then the ports 16 to a
   transaction, each transaction waiting for its ofports (the floor of 16
   clients that each wait for their ofport: N/16 reconfigurations of
   ovs-vswitchd); the unplug floor (one transaction plus one netlink delete
   of the taps' link group); one tap plus one one-port transaction waiting
   for its ofport, ``--samples`` times one after another (p50 and p95);
   ovs-vswitchd's CPU during each plug floor and its unplug.
2. os-vif 5.3's ``ovs`` plugin (``osvif_run.py``, a subprocess: it says how
   its privsep daemon and config are set up) plugging the same N
   ``VIFOpenVSwitch`` VIFs one after another as Nova calls it, creating its
   own taps (``create_tap``), until every ofport; then unplugging them.
   It runs while no vifplugd is up, so that nothing else competes with it.
3. vifplugd over its HTTP API (``POST /v1/vifs?wait=ofport``, one keep-alive
   connection per client), for 16 and for 128 clients: N plugs, then the
   OVSDB transactions it committed (``/metrics``) and its RSS; in the
   16-client round it is then stopped with SIGTERM with the N VIFs in its
   state and started again (ready = the first 200 of ``/readyz``, the
   contract's readiness: OVSDB connected and state reconciled), against a
   fresh interpreter importing ``vifplug.daemon`` (least of 3) just before;
   then N unplugs. vifplugd's CPU (``/proc/PID/stat``) is read around the
   plugs and around the unplugs, so plug and unplug have rows of their own.
4. Scaling: more 16-client rounds on the same daemon at the ``--scaling``
   sizes (default N/10, 3N/10 and N: 100, 300, 1000 by default), each
   printing the plug wall time per VIF against the 16-to-a-transaction floor
   at that size (measured with the floors), and vifplugd's CPU per VIF.
5. Single plugs through the HTTP API, one after another, ``--samples``
   times: p50 and p95 against the single floor, and p50 against the same
   floor measured again just before them (ovs-vswitchd after the rounds).

Every row is ``| figure | value | floor | ratio |`` with ratio =
value / floor; a cell without a floor is ``-``. The os-vif rows compared with
vifplug put vifplug's figure in the floor column, so their ratio reads "os-vif
takes this many times vifplug's time". Timings are only printed, never
checked: read them as ranges on a busy machine.

Usage: python bench/run.py [--n 1000] [--quick] [--samples 100]
                           [--scaling 100,300,1000 | --no-scaling]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))
sys.path.insert(0, str(HERE.parent / "devtools"))

import harness  # noqa: E402

import nsisolate  # noqa: E402

QUICK_N = 20
QUICK_SCALING = [10, 20]
QUICK_SAMPLES = 10
BATCH = 16


@dataclass
class Row:
    figure: str
    value: float
    floor: float | None = None


@dataclass
class Plan:
    n: int
    client_counts: list[int]
    samples: int
    scaling: list[int]


@dataclass
class Floors:
    """Every floor of the run, measured before any vifplugd starts."""

    one: tuple[float, float] = (0.0, 0.0)
    one_cpu: float = 0.0
    batched: tuple[float, float] = (0.0, 0.0)
    batched_cpu: float = 0.0
    single: list[float] = field(default_factory=list)
    scaling: dict[int, float] = field(default_factory=dict)


@dataclass
class Round:
    """One round of N plugs and N unplugs by ``clients`` HTTP clients."""

    clients: int
    n: int
    plug: float = 0.0
    unplug: float = 0.0
    cpu_plug: float = 0.0
    cpu_unplug: float = 0.0
    threads_plug: dict[str, float] = field(default_factory=dict)
    threads_unplug: dict[str, float] = field(default_factory=dict)
    vswitchd: float = 0.0
    txns: float = 0.0
    rss: float = 0.0
    stop: float | None = None
    ready: float | None = None
    imported: float | None = None


def measure_floors(remote: str, vswitchd: int, plan: Plan) -> Floors:
    f = Floors()
    harness.warm(remote)
    c0 = harness.cpu_seconds(vswitchd)
    f.one = harness.floor_batched(remote, plan.n, "brfone", plan.n, vswitchd)
    c1 = harness.cpu_seconds(vswitchd)
    f.batched = harness.floor_batched(remote, plan.n, "brfbat", BATCH, vswitchd)
    c2 = harness.cpu_seconds(vswitchd)
    f.one_cpu, f.batched_cpu = c1 - c0, c2 - c1
    harness.settle(vswitchd, remote=remote)
    f.single = harness.floor_single(remote, plan.samples, "brfsgl")
    for size in plan.scaling:
        if size == plan.n:
            f.scaling[size] = f.batched[0]
        else:
            f.scaling[size] = harness.floor_batched(remote, size, f"brs{size}", BATCH, vswitchd)[0]
    return f


def measure_osvif(remote: str, n: int, directory: Path) -> dict[str, float]:
    """os-vif in its own process (see ``osvif_run.py``); its JSON figures."""
    argv = [sys.executable, "-W", "ignore", str(HERE / "osvif_run.py")]
    argv += ["--remote", remote, "--bridge", "brosvif", "--n", str(n), "--dir", str(directory)]
    # os-vif never imports vifplug: no src/ on its path, as on a compute node.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"os-vif run failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def ovsdb_transactions(c: harness.Clients) -> float:
    """The daemon's count of committed OVSDB transactions, from ``/metrics``."""
    status, text = c.request("GET", "/metrics")
    found = re.search(r"^vifplug_ovsdb_transactions(?:_total)?\s+(\S+)", text.decode(), re.M)
    if status != 200 or found is None:
        raise RuntimeError("vifplug_ovsdb_transactions not found in /metrics")
    return float(found.group(1))


def client_round(
    daemon: harness.Daemon,
    bridge: str,
    tag: str,
    n: int,
    clients: int,
    vswitchd: int,
    restart: bool,
) -> Round:
    """N plugs then N unplugs by ``clients`` keep-alive HTTP clients, the
    costs read around each; with ``restart``, the daemon is stopped and
    started again in between. ``tag`` keeps interface names unique."""
    from engine_fixture import instance, ovs_vif, vif_id_of

    r = Round(clients, n)
    vifs = [ovs_vif(bridge=bridge, name=f"v{tag}{i:05d}") for i in range(n)]
    inst = instance()
    with harness.clients(daemon.sock) as c, ThreadPoolExecutor(clients) as pool:
        harness.settle(vswitchd, daemon.pid, remote=daemon.remote)
        txn0 = ovsdb_transactions(c)
        cpu0, vs0 = harness.cpu_seconds(daemon.pid), harness.cpu_seconds(vswitchd)
        threads0 = harness.thread_cpu(daemon.pid)
        t0 = time.perf_counter()
        list(pool.map(lambda v: c.plug(v, inst), vifs))
        r.plug = time.perf_counter() - t0
        r.cpu_plug = harness.cpu_seconds(daemon.pid) - cpu0
        r.threads_plug = since(threads0, harness.thread_cpu(daemon.pid))
        r.vswitchd = harness.cpu_seconds(vswitchd) - vs0
        r.txns = ovsdb_transactions(c) - txn0
        r.rss = harness.rss_mb(daemon.pid)
    if restart:
        r.stop = daemon.stop()
        r.imported = harness.import_seconds()
        r.ready = daemon.start()
    with harness.clients(daemon.sock) as c, ThreadPoolExecutor(clients) as pool:
        harness.settle(vswitchd, daemon.pid, remote=daemon.remote)
        cpu0, vs0 = harness.cpu_seconds(daemon.pid), harness.cpu_seconds(vswitchd)
        threads0 = harness.thread_cpu(daemon.pid)
        t0 = time.perf_counter()
        list(pool.map(lambda v: c.unplug(vif_id_of(v)), vifs))
        r.unplug = time.perf_counter() - t0
        r.cpu_unplug = harness.cpu_seconds(daemon.pid) - cpu0
        r.threads_unplug = since(threads0, harness.thread_cpu(daemon.pid))
        r.vswitchd += harness.cpu_seconds(vswitchd) - vs0
    return r


def since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds by group of threads between two ``harness.thread_cpu`` readings."""
    return {group: after[group] - before.get(group, 0.0) for group in after}


def single_plugs(daemon: harness.Daemon, bridge: str, samples: int, vswitchd: int) -> list[float]:
    """Latencies (s) of plugs one after another by one client; the VIFs are
    unplugged afterwards, untimed."""
    from engine_fixture import instance, ovs_vif, vif_id_of

    vifs = [ovs_vif(bridge=bridge, name=f"vsgl{i:05d}") for i in range(samples)]
    inst = instance()
    times: list[float] = []
    with harness.clients(daemon.sock) as c:
        harness.settle(vswitchd, daemon.pid, remote=daemon.remote)
        for vif in vifs:
            t0 = time.perf_counter()
            c.plug(vif, inst)
            times.append(time.perf_counter() - t0)
        for vif in vifs:
            c.unplug(vif_id_of(vif))
    return times


def floor_rows(plan: Plan, f: Floors) -> list[Row]:
    p = harness.percentile
    return [
        Row("plug floor: netlink + 1 OVSDB transaction (s)", f.one[0]),
        Row(f"plug floor: netlink + {BATCH} to a transaction, each awaited (s)", f.batched[0]),
        Row("unplug floor: 1 transaction + link-group delete (s)", f.one[1]),
        Row("ovs-vswitchd CPU, floor 1 transaction, plug+unplug (s)", f.one_cpu),
        Row(f"ovs-vswitchd CPU, floor {BATCH} to a transaction, plug+unplug (s)", f.batched_cpu),
        Row(
            "single plug floor p50: 1 tap + 1 IDL transaction + ofport (ms)", p(f.single, 50) * 1e3
        ),
        Row(
            "single plug floor p95: 1 tap + 1 IDL transaction + ofport (ms)", p(f.single, 95) * 1e3
        ),
    ]


def round_rows(r: Round, f: Floors) -> list[Row]:
    k, n = r.clients, r.n
    pattern = f.batched if k == BATCH else f.one
    pattern_cpu = f.batched_cpu if k == BATCH else f.one_cpu
    rows = [Row(f"plug, {k} clients, wait=ofport (s)", r.plug, pattern[0])]
    if k == BATCH:
        rows.append(
            Row(
                f"plug, {k} clients, against 1 transaction (shown, not a target) (s)",
                r.plug,
                f.one[0],
            )
        )
    rows += [
        Row(f"unplug, {k} clients (s)", r.unplug, f.one[1]),
        Row(f"vifplugd CPU per VIF, plug, {k} clients (ms)", r.cpu_plug * 1e3 / n),
        Row(f"vifplugd CPU per VIF, unplug, {k} clients (ms)", r.cpu_unplug * 1e3 / n),
        Row(
            f"vifplugd CPU per VIF, plug+unplug, {k} clients (ms)",
            (r.cpu_plug + r.cpu_unplug) * 1e3 / n,
        ),
        *thread_rows(r),
        Row(f"ovs-vswitchd CPU, {k} clients, plug+unplug (s)", r.vswitchd, pattern_cpu),
        Row(f"OVSDB transactions for the plugs, {k} clients", r.txns, float(math.ceil(n / k))),
        Row(f"vifplugd RSS, {n} VIFs plugged, {k} clients (MB)", r.rss),
    ]
    if r.ready is not None:
        assert r.stop is not None and r.imported is not None
        rows += [
            Row(f"vifplugd stop (SIGTERM to exit), {n} VIFs (s)", r.stop),
            Row(
                f"ready after restart, {n} VIFs, /readyz, against importing vifplug.daemon (s)",
                r.ready,
                r.imported,
            ),
        ]
    return rows


def thread_rows(r: Round) -> list[Row]:
    """Where vifplugd's CPU per VIF went, by group of threads (16 clients only:
    the same split with 128 says little more)."""
    if r.clients != BATCH:
        return []
    return [
        Row(f"vifplugd CPU per VIF, {phase}, {r.clients} clients: {group} (ms)", cpu * 1e3 / r.n)
        for phase, split in (("plug", r.threads_plug), ("unplug", r.threads_unplug))
        for group, cpu in split.items()
    ]


def osvif_rows(n: int, o: dict[str, float], f: Floors, vifplug: Round) -> list[Row]:
    k = vifplug.clients
    return [
        Row(
            f"os-vif plug, {n} one after another, own taps, to every ofport (s)",
            o["plug"],
            f.one[0],
        ),
        Row(f"os-vif unplug, {n} one after another (s)", o["unplug"], f.one[1]),
        Row(
            f"os-vif plug against vifplug plug, {k} clients (s; target ratio >= 10)",
            o["plug"],
            vifplug.plug,
        ),
        Row(f"os-vif unplug against vifplug unplug, {k} clients (s)", o["unplug"], vifplug.unplug),
    ]


def scaling_rows(rounds: dict[int, Round], f: Floors) -> list[Row]:
    rows: list[Row] = []
    for size, r in sorted(rounds.items()):
        rows += [
            Row(
                f"scaling N={size}: plug per VIF, {BATCH} clients (ms)",
                r.plug * 1e3 / size,
                f.scaling[size] * 1e3 / size,
            ),
            Row(
                f"scaling N={size}: vifplugd CPU per VIF, plug+unplug, {BATCH} clients (ms)",
                (r.cpu_plug + r.cpu_unplug) * 1e3 / size,
            ),
        ]
    return rows


def single_rows(http: list[float], f: Floors, again: list[float]) -> list[Row]:
    """``again``: the single floor measured once more just before vifplug's
    single plugs, on the ovs-vswitchd that the rounds left behind (thousands
    of ports added and removed), where the first one had a fresh one."""
    p = harness.percentile
    return [
        Row(
            "single plug p50, HTTP, one after another, wait=ofport (ms)",
            p(http, 50) * 1e3,
            p(f.single, 50) * 1e3,
        ),
        Row(
            "single plug p95, HTTP, one after another, wait=ofport (ms)",
            p(http, 95) * 1e3,
            p(f.single, 95) * 1e3,
        ),
        Row("single plug floor p50, again just before them (ms)", p(again, 50) * 1e3),
        Row(
            "single plug p50, against the floor measured just before them (ms)",
            p(http, 50) * 1e3,
            p(again, 50) * 1e3,
        ),
    ]


def measure(plan: Plan) -> list[Row]:
    """Floors, os-vif, then one daemon for every client round, all on one sandbox."""
    import ovs_sandbox

    directory = Path(tempfile.mkdtemp(prefix="vpbench-", dir="/tmp"))
    sb = ovs_sandbox.OvsSandbox(directory / "ovs").start()
    daemon = None
    try:
        vswitchd = sb.vswitchd_pid
        assert vswitchd is not None
        floors = measure_floors(sb.remote, vswitchd, plan)
        rows = floor_rows(plan, floors)
        harness.settle(vswitchd, remote=sb.remote)
        osvif = measure_osvif(sb.remote, plan.n, directory)
        daemon = harness.Daemon(directory, sb.remote, "brapi")
        daemon.start()
        rounds = {}
        for k in plan.client_counts:
            rounds[k] = client_round(daemon, "brapi", f"{k}a", plan.n, k, vswitchd, k == BATCH)
            rows += round_rows(rounds[k], floors)
        rows += osvif_rows(plan.n, osvif, floors, rounds[BATCH])
        scaled = {}
        for size in plan.scaling:
            scaled[size] = (
                rounds[BATCH]
                if size == plan.n
                else client_round(daemon, "brapi", f"s{size}", size, BATCH, vswitchd, False)
            )
        rows += scaling_rows(scaled, floors)
        harness.settle(vswitchd, daemon.pid, remote=sb.remote)
        again = harness.floor_single(sb.remote, plan.samples, "brfsgl2")
        rows += single_rows(single_plugs(daemon, "brapi", plan.samples, vswitchd), floors, again)
    finally:
        if daemon is not None:
            daemon.stop()
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


def plan_from(args: argparse.Namespace) -> Plan:
    n = args.n if args.n is not None else (QUICK_N if args.quick else 1000)
    samples = args.samples if args.samples is not None else (QUICK_SAMPLES if args.quick else 100)
    if args.no_scaling:
        scaling = []
    elif args.scaling:
        scaling = sorted({int(s) for s in args.scaling.split(",")})
    elif args.quick and args.n is None:
        scaling = QUICK_SCALING
    else:
        scaling = sorted({max(1, n // 10), max(1, n * 3 // 10), n})
    return Plan(n, [BATCH] if args.quick else [BATCH, 128], samples, scaling)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", "-n", type=int, default=None, help="VIFs per run (default 1000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a small run for CI: N={QUICK_N}, 16 clients only, scaling at "
        f"{QUICK_SCALING}, {QUICK_SAMPLES} single plugs",
    )
    parser.add_argument("--samples", type=int, default=None, help="single plugs (default 100)")
    parser.add_argument(
        "--scaling", help="comma-separated N for the scaling rows (default N/10,3N/10,N)"
    )
    parser.add_argument("--no-scaling", action="store_true", help="no scaling rows")
    args = parser.parse_args()
    plan = plan_from(args)
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    rows = measure(plan)
    print(
        f"{plan.n} VIFs, clients {', '.join(map(str, plan.client_counts))}, "
        f"{plan.samples} single plugs, scaling {plan.scaling or 'skipped'}, {os.cpu_count()} CPUs"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
