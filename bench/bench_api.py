"""Plug N VIFs through vifplugd's HTTP API, against the raw OVSDB + netlink floor.

Runs in a private network namespace with its own sandbox Open vSwitch
(userspace datapath) and prints, from the same run:

- floor: N taps through netlink, all N ports in ONE IDL transaction, then
  waiting until every interface has an ofport (``bench_plug.floor``);
- api: ``--clients`` concurrent HTTP clients on the unix socket each POSTing
  plugs (``wait=ofport``, the default) until N are plugged, then DELETE-ing
  them all; the daemon is a real ``vifplugd`` subprocess.

Usage: python bench/bench_api.py [-n 1000] [--clients 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))

import nsisolate  # noqa: E402


def start_daemon(directory: Path, remote: str, bridge: str) -> tuple[subprocess.Popen[bytes],
                                                                      str]:
    sock = str(directory / "api.sock")
    conf = directory / "vifplug.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {directory / 'state'}\n"
        f"[ovs]\nconnection = {remote}\ndatapath_type = netdev\n"
        f"integration_bridge = {bridge}\ntimeout = 300\n"
        f"[api]\nsocket_path = {sock}\ndefault_timeout = 300\n")
    log = open(directory / "vifplugd.log", "wb")
    argv = [sys.executable, "-W", "ignore", "-m", "vifplug.daemon", "--config-file", str(conf)]
    profile = os.environ.get("VIFPLUG_BENCH_PROFILE")
    if profile:  # sample the daemon with py-spy into this SVG/speedscope file
        argv = ["py-spy", "record", "--threads", "--idle", "-f", "raw", "-o", profile,
                "--", *argv]
    proc = subprocess.Popen(argv, stderr=log, stdout=log)
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock),
                              base_url="http://vifplugd") as c:
                if c.get("/readyz").status_code == 200:
                    return proc, sock
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"vifplugd did not become ready; see {directory}/vifplugd.log")
        time.sleep(0.1)


def api_run(sock: str, bridge: str, n: int, clients: int) -> tuple[float, float]:
    import httpx
    from engine_fixture import instance, ovs_vif, vif_id_of

    bodies = [{"vif": ovs_vif(bridge=bridge, name=f"va{i:05d}"), "instance": instance()}
              for i in range(n)]
    local = threading.local()

    def client() -> httpx.Client:
        # One client (one connection) per thread, as separate compute-service
        # workers would have.
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = httpx.Client(transport=httpx.HTTPTransport(uds=sock),
                                            base_url="http://vifplugd", timeout=300)
            opened.append(c)
        return c

    opened: list[httpx.Client] = []

    def plug(body: dict[str, Any]) -> None:
        r = client().post("/v1/vifs", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"plug answered {r.status_code}: {r.text[:200]}")

    def unplug(body: dict[str, Any]) -> None:
        r = client().delete(f"/v1/vifs/{vif_id_of(body['vif'])}")
        if r.status_code != 204:
            raise RuntimeError(f"unplug answered {r.status_code}: {r.text[:200]}")

    plug({"vif": ovs_vif(bridge=bridge, name="vawarm"), "instance": instance()})
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(plug, bodies))
        plugged = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(unplug, bodies))
        unplugged = time.perf_counter() - t0
    for c in opened:
        c.close()
    return plugged, unplugged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=128)
    args = parser.parse_args()
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    import bench_plug

    from vifplug.ovsdb import sandbox

    directory = Path(tempfile.mkdtemp(prefix="vpbench-", dir="/tmp"))
    sb = sandbox.OvsSandbox(directory / "ovs").start()
    proc = None
    try:
        f_plug, f_unplug = (bench_plug.floor(sb.remote, args.n, "brfloor")
                            if not os.environ.get("NOFLOOR") else (1.0, 1.0))
        proc, sock = start_daemon(directory, sb.remote, "brapi")
        a_plug, a_unplug = api_run(sock, "brapi", args.n, args.clients)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        sb.stop()
        log = directory / "vifplugd.log"
        if log.exists():
            shutil.copy(log, "/tmp/vifplugd-bench.log")
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{args.n} VIFs, {args.clients} concurrent API clients, {os.cpu_count()} CPUs "
          f"(run {uuid.uuid4().hex[:6]})")
    print(f"  floor (netlink + 1 OVSDB transaction): plug {f_plug:7.3f} s   "
          f"unplug {f_unplug:7.3f} s")
    print(f"  vifplugd HTTP API                    : plug {a_plug:7.3f} s   "
          f"unplug {a_unplug:7.3f} s")
    print(f"  ratio api/floor: plug {a_plug / f_plug:.2f}x   unplug {a_unplug / f_unplug:.2f}x"
          f"   (target: plug within 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
