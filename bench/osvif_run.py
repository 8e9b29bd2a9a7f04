"""os-vif's ovs plugin plugging N ``VIFOpenVSwitch`` VIFs one after another,
as Nova calls it; run by ``bench/run.py`` as a subprocess.

A subprocess because oslo.versionedobjects keeps one registry per process and
vifplug registers its own objects in the ``os_vif`` namespace: this process
never imports vifplug. It inherits the benchmark's network namespace, so it
sees the same sandbox Open vSwitch and creates its taps beside vifplug's.

How it is set up, as on a compute node:

- oslo.config is parsed from a file (``cfg.CONF(["--config-file", ...])``)
  with ``[os_vif_ovs] ovsdb_connection`` = the sandbox's OVSDB socket,
  ``ovsdb_interface = native`` (ovsdbapp over the Python IDL, os-vif's
  default) and ``network_device_mtu``; then ``os_vif.initialize()``.
- Privsep is the real daemon, not the in-process shortcut: os-vif's
  privileged calls (``vif_plug_ovs.privsep.vif_plug``: create and delete
  the tap, set its MTU) go to a ``privsep-helper`` daemon that oslo.privsep
  starts on the first such call with its ROOTWRAP method. Its
  ``[vif_plug_ovs_privileged] helper_command`` is the venv's own
  ``privsep-helper --config-file FILE`` without ``sudo`` (we are root
  already: the default command is ``sudo privsep-helper``), so the daemon
  drops to CAP_NET_ADMIN as on a host and every privileged call is a round
  trip over its unix socket.
- Each VIF's port profile is ``VIFPortProfileOpenVSwitch`` 1.4 with
  ``datapath_type='netdev'`` (the sandbox is userspace), ``create_port=True``
  (without it os-vif 5.3 leaves a ``VIFOpenVSwitch`` port to libvirt and
  does nothing) and ``create_tap=True``: os-vif then adds the port (one
  transaction) and creates the tap itself through privsep, as vifplug does,
  so both sides pay for their own devices.
- os-vif returns from ``plug()`` when its transaction has committed; it does
  not wait for ovs-vswitchd. vifplug answers at the ofport. To compare the
  same thing, the plug figure runs until every one of the N interfaces has
  its ofport, read from os-vif's own IDL replica after the last ``plug()``.
- One VIF is plugged and unplugged before the timing, so that the privsep
  daemon runs, the IDL is connected and the bridge exists, as in a
  nova-compute that has been up a while.

Prints one JSON object: ``{"plug": s, "plug_calls": s, "unplug": s}``.

Usage: python bench/osvif_run.py --remote unix:PATH --bridge BR --n N --dir DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def configure(directory: Path, remote: str, mtu: int) -> None:
    from oslo_config import cfg

    helper = Path(sys.executable).parent / "privsep-helper"
    if not helper.exists():
        raise SystemExit(f"{helper} not found: oslo.privsep is not in this venv")
    conf = directory / "os-vif.conf"
    conf.write_text(
        "[os_vif_ovs]\n"
        f"ovsdb_connection = {remote}\n"
        "ovsdb_interface = native\n"
        f"network_device_mtu = {mtu}\n"
        "ovs_vsctl_timeout = 300\n"
        "[vif_plug_ovs_privileged]\n"
        f"helper_command = {helper} --config-file {conf}\n"
    )
    cfg.CONF(["--config-file", str(conf)], project="osvif-bench")


def make_vif(bridge: str, name: str, mtu: int) -> Any:
    from os_vif import objects

    vif_id = str(uuid.uuid4())
    mac = "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3])
    return objects.vif.VIFOpenVSwitch(
        id=vif_id,
        address=mac,
        vif_name=name,
        plugin="ovs",
        network=objects.network.Network(id=str(uuid.uuid4()), bridge=bridge, mtu=mtu),
        port_profile=objects.vif.VIFPortProfileOpenVSwitch(
            interface_id=vif_id,
            datapath_type="netdev",
            create_port=True,
            create_tap=True,
        ),
    )


def wait_ofports(names: set[str], timeout: float = 300) -> None:
    """Until os-vif's own IDL replica shows an ofport for every name."""
    import os_vif

    manager = os_vif._EXT_MANAGER
    assert manager is not None
    rows = manager["ovs"].obj.ovsdb.ovsdb.tables["Interface"].rows
    deadline = time.monotonic() + timeout
    while True:
        try:
            have = {r.name for r in list(rows.values()) if r.ofport and r.ofport[0] > 0}
        except RuntimeError:  # the replica changed under us: look again
            have = set()
        if names <= have:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names - have)} interfaces have no ofport")
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", required=True)
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--mtu", type=int, default=1400)
    args = parser.parse_args()
    configure(args.dir, args.remote, args.mtu)

    import os_vif
    from os_vif import objects

    os_vif.initialize()  # registers os-vif's objects: objects.vif exists from here
    if "create_tap" not in objects.vif.VIFPortProfileOpenVSwitch.fields:
        raise SystemExit("os-vif >= 5.3 is needed (create_tap): pip install '.[bench]'")
    instance = objects.instance_info.InstanceInfo(
        uuid=str(uuid.uuid4()), name="osvif-bench", project_id=str(uuid.uuid4())
    )
    warm = make_vif(args.bridge, "ovwarm", args.mtu)
    os_vif.plug(warm, instance)
    wait_ofports({"ovwarm"})
    os_vif.unplug(warm, instance)

    vifs = [make_vif(args.bridge, f"ov{i:05d}", args.mtu) for i in range(args.n)]
    t0 = time.perf_counter()
    for vif in vifs:
        os_vif.plug(vif, instance)
    calls = time.perf_counter() - t0
    wait_ofports({v.vif_name for v in vifs})
    plug = time.perf_counter() - t0
    t0 = time.perf_counter()
    for vif in vifs:
        os_vif.unplug(vif, instance)
    unplug = time.perf_counter() - t0
    print(json.dumps({"plug": plug, "plug_calls": calls, "unplug": unplug}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
