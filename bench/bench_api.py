"""Plug N VIFs through vifplugd's HTTP API, against the raw OVSDB + netlink floor.

Runs in a private network namespace with its own sandbox Open vSwitch
(userspace datapath) and prints, from the same run:

- floor: N taps through netlink, all N ports in ONE IDL transaction, then
  waiting until every interface has an ofport (``harness.floor_batched``);
- api: ``--clients`` concurrent HTTP clients on the unix socket each POSTing
  plugs (``wait=ofport``, the default) until N are plugged, then DELETE-ing
  them all; the daemon is a real ``vifplugd`` subprocess.

Usage: python bench/bench_api.py [-n 1000] [--clients 128]
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))
sys.path.insert(0, str(HERE.parent / "devtools"))

import harness  # noqa: E402

import nsisolate  # noqa: E402


def api_run(sock: str, bridge: str, n: int, clients: int) -> tuple[float, float]:
    from engine_fixture import instance, ovs_vif, vif_id_of

    bodies = [
        {"vif": ovs_vif(bridge=bridge, name=f"va{i:05d}"), "instance": instance()} for i in range(n)
    ]
    with harness.clients(sock) as c:

        def plug(body: dict[str, Any]) -> None:
            c.plug(body["vif"], body["instance"])

        def unplug(body: dict[str, Any]) -> None:
            c.unplug(vif_id_of(body["vif"]))

        plug({"vif": ovs_vif(bridge=bridge, name="vawarm"), "instance": instance()})
        with ThreadPoolExecutor(clients) as pool:
            t0 = time.perf_counter()
            list(pool.map(plug, bodies))
            plugged = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(pool.map(unplug, bodies))
            unplugged = time.perf_counter() - t0
    return plugged, unplugged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=128)
    args = parser.parse_args()
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    import ovs_sandbox

    directory = Path(tempfile.mkdtemp(prefix="vpbench-", dir="/tmp"))
    sb = ovs_sandbox.OvsSandbox(directory / "ovs").start()
    daemon = None
    try:
        harness.warm(sb.remote)
        f_plug, f_unplug = harness.floor_batched(sb.remote, args.n, "brfloor", args.n)
        daemon = harness.Daemon(directory, sb.remote, "brapi")
        daemon.start()
        sock, daemon_pid = daemon.sock, daemon.pid
        cpu0 = (
            harness.cpu_seconds(daemon_pid),
            harness.cpu_seconds(sb.vswitchd_pid),
            time.process_time(),
        )
        a_plug, a_unplug = api_run(sock, "brapi", args.n, args.clients)
        cpu1 = (
            harness.cpu_seconds(daemon_pid),
            harness.cpu_seconds(sb.vswitchd_pid),
            time.process_time(),
        )
    finally:
        if daemon is not None:
            daemon.stop()
        sb.stop()
        log = directory / "vifplugd.log"
        if log.exists():
            shutil.copy(log, "/tmp/vifplugd-bench.log")
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"{args.n} VIFs, {args.clients} concurrent API clients, {os.cpu_count()} CPUs "
        f"(run {uuid.uuid4().hex[:6]})"
    )
    print(
        f"  floor (netlink + 1 OVSDB transaction): plug {f_plug:7.3f} s   unplug {f_unplug:7.3f} s"
    )
    print(
        f"  vifplugd HTTP API                    : plug {a_plug:7.3f} s   unplug {a_unplug:7.3f} s"
    )
    print(
        f"  ratio api/floor: plug {a_plug / f_plug:.2f}x   unplug {a_unplug / f_unplug:.2f}x"
        f"   (target: plug within 1.5x)"
    )
    print(
        f"  CPU during the API run: vifplugd {cpu1[0] - cpu0[0]:.2f} s, ovs-vswitchd "
        f"{cpu1[1] - cpu0[1]:.2f} s, the benchmark's clients {cpu1[2] - cpu0[2]:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
