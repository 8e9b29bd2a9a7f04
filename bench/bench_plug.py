"""Plug N VIFs: vifplug's engine against the raw OVSDB + netlink floor.

Each run starts its own sandbox Open vSwitch (userspace datapath) in a private
network namespace, so nothing on the host is touched, and prints:

- floor: N taps created through netlink, then all N ports added in ONE IDL
  transaction, then waiting until every interface has an ofport;
- vifplug: N plugs through ``Service.plug`` from ``--threads`` threads
  (each waits for its ofport), the engine coalescing what is concurrent;
- unplug of all N, both ways.

Usage: python bench/bench_plug.py [-n 1000] [--threads 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "functional"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "devtools"))

import nsisolate


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU a process has used (to show where the time goes)."""
    if pid is None:
        return 0.0
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(remote: str, n: int, bridge: str) -> tuple[float, float]:
    from pyroute2 import IPRoute

    from vifplug.ovsdb import connection, ops

    conn = connection.Connection(remote).start()
    conn.transact(ops.ensure_bridge_op(ops.BridgeSpec(bridge, datapath_type="netdev")))
    names = [f"fl{i:05d}" for i in range(n)]
    t0 = time.perf_counter()
    with IPRoute() as ipr:
        for name in names:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", ifname=name, state="up", group=4242)
    specs = [
        ops.PortSpec(
            bridge=bridge,
            name=name,
            iface_status=None,
            external_ids={"iface-id": str(uuid.uuid4())},
        )
        for name in names
    ]
    conn.transact(lambda t: [ops.ensure_port(t, s) for s in specs], timeout=300)
    for name in names:
        conn.wait_interface(name, lambda v: v.has_ofport, 300)
    plug = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.transact(lambda t: [ops.remove_port_op(name)(t) for name in names], timeout=300)
    with IPRoute() as ipr:
        ipr.link("del", group=4242)
    unplug = time.perf_counter() - t0
    conn.stop()
    return plug, unplug


def engine_run(
    remote: str, n: int, bridge: str, threads: int, state: Path
) -> tuple[float, float, int]:
    from engine_fixture import ovs_vif, plug_request, running_engine, settings_for, vif_id_of

    settings = settings_for(remote, state, bridge=bridge, timeout=300.0)
    with running_engine(settings) as eng:
        assert eng.service is not None and eng.ovsdb is not None
        vifs = [ovs_vif(bridge=bridge, name=f"vp{i:05d}") for i in range(n)]
        # Warm the bridge so both runs start from an existing bridge.
        eng.service.plug(plug_request(ovs_vif(bridge=bridge, name="vpwarm")))
        before = eng.ovsdb.transactions
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda v: eng.service.plug(plug_request(v)), vifs))
        plug = time.perf_counter() - t0
        txns = eng.ovsdb.transactions - before
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda v: eng.service.unplug(vif_id_of(v)), vifs))
        unplug = time.perf_counter() - t0
    return plug, unplug, txns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=256)
    args = parser.parse_args()
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    import ovs_sandbox

    directory = tempfile.mkdtemp(prefix="vpbench-", dir="/tmp")
    sb = ovs_sandbox.OvsSandbox(directory).start()
    try:
        c0 = cpu_seconds(sb.vswitchd_pid)
        f_plug, f_unplug = floor(sb.remote, args.n, "brfloor")
        c1 = cpu_seconds(sb.vswitchd_pid)
        e_plug, e_unplug, txns = engine_run(
            sb.remote, args.n, "brvifplug", args.threads, Path(directory) / "state"
        )
        c2 = cpu_seconds(sb.vswitchd_pid)
    finally:
        sb.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{args.n} VIFs, {args.threads} threads, {os.cpu_count()} CPUs")
    print(
        f"  floor   (netlink + 1 OVSDB transaction): plug {f_plug:7.3f} s   "
        f"unplug {f_unplug:7.3f} s"
    )
    print(
        f"  vifplug (Service.plug, engine)         : plug {e_plug:7.3f} s   "
        f"unplug {e_unplug:7.3f} s   ({txns} OVSDB transactions)"
    )
    print(f"  ratio vifplug/floor: plug {e_plug / f_plug:.2f}x   unplug {e_unplug / f_unplug:.2f}x")
    print(f"  ovs-vswitchd CPU: floor {c1 - c0:.2f} s, vifplug {c2 - c1:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
