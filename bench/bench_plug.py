"""Plug N VIFs: vifplug's engine against the raw OVSDB + netlink floor.

Each run starts its own sandbox Open vSwitch (userspace datapath) in a private
network namespace, so nothing on the host is touched, and prints:

- floor: N taps created through netlink, then all N ports added in ONE IDL
  transaction, then waiting until every interface has an ofport
  (``harness.floor_batched``, a bare IDL without vifplug code);
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "functional"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "devtools"))

import harness

import nsisolate


def floor(remote: str, n: int, bridge: str) -> tuple[float, float]:
    """N taps, all N ports in one transaction, every ofport (``harness``)."""
    return harness.floor_batched(remote, n, bridge, n)


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
        harness.warm(sb.remote)
        c0 = harness.cpu_seconds(sb.vswitchd_pid)
        f_plug, f_unplug = floor(sb.remote, args.n, "brfloor")
        c1 = harness.cpu_seconds(sb.vswitchd_pid)
        e_plug, e_unplug, txns = engine_run(
            sb.remote, args.n, "brvifplug", args.threads, Path(directory) / "state"
        )
        c2 = harness.cpu_seconds(sb.vswitchd_pid)
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
