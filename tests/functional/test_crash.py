"""kill -9 at random moments while clients plug and unplug; nothing lost or leaked.

The daemon runs as a real subprocess with an OVS integration bridge and a
passthrough pool of three 'physical' devices (veth ends).  Several client
threads plug and unplug VIFs from a fixed set over the unix socket; the
daemon is SIGKILLed at a random moment, restarted, and after it reports
ready the host is checked against what the API acknowledged:

- lost: a VIF whose plug was acknowledged (and not unplugged since) that is
  not listed, or has no port with an ofport, or no device;
- leaked: a device in the daemon's link group, or an OVS interface carrying
  its owner mark, that belongs to no listed VIF; a pool device held by a VIF
  that is not listed, or by two VIFs.

Outcomes the killed daemon never answered are uncertain and may go either way.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from daemon_fixture import base_config, cleanup_host, links_in_group, start_daemon
from engine_fixture import instance, mac, ovs_vif

import ovs_sandbox
from helpers import unique
from vifplug import objects

KILLS = 20
CLIENTS = 4


def direct_body(vif_id: str) -> dict[str, Any]:
    vif = objects.vif.VIFDirect(
        id=vif_id,
        address=mac(),
        plugin="direct",
        vif_name="vpd" + vif_id[:12],
        network=objects.network.Network(id=str(uuid.uuid4()), label="pool"),
    )
    return {"vif": vif.obj_to_primitive(), "instance": instance()}


class World:
    """What the clients were told, per VIF: True plugged, False gone, None unknown."""

    def __init__(self, bodies: dict[str, dict[str, Any]]) -> None:
        self.bodies = bodies
        self.acked: dict[str, bool | None] = {v: False for v in bodies}
        self.lock = threading.Lock()
        self.requests = 0

    def settle(self, listed: set[str]) -> None:
        """After a check, the listed state is the truth for unknown outcomes."""
        with self.lock:
            for v in self.acked:
                if self.acked[v] is None:
                    self.acked[v] = v in listed


def client(sock: str, world: World, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    transport = httpx.HTTPTransport(uds=sock)
    with httpx.Client(transport=transport, base_url="http://vifplugd", timeout=30) as c:
        while not stop.is_set():
            vif_id = rng.choice(list(world.bodies))
            with world.lock:
                if world.acked[vif_id] is None:
                    continue
                plugged = world.acked[vif_id]
                world.acked[vif_id] = None  # in flight: outcome unknown until answered
            try:
                if plugged:
                    r = c.delete(f"/v1/vifs/{vif_id}")
                    outcome = False if r.status_code in (204, 404) else None
                else:
                    r = c.post("/v1/vifs", json=world.bodies[vif_id])
                    if r.status_code in (200, 201):
                        outcome = True
                    elif r.status_code == 409 and r.json()["error"]["code"] == "pool_exhausted":
                        outcome = False
                    else:
                        outcome = None
                with world.lock:
                    world.requests += 1
            except httpx.HTTPError:
                outcome = None
            with world.lock:
                world.acked[vif_id] = outcome
            if outcome is None and stop.is_set():
                return


def owned_interfaces(ovs: ovs_sandbox.OvsSandbox, owner: str) -> dict[str, int]:
    out = json.loads(
        ovs.vsctl("--format=json", "--columns=name,ofport,external_ids", "list", "Interface")
    )
    result = {}
    for name, ofport, ids in out["data"]:
        ext = dict(ids[1])
        if ext.get("vifplug-owner") == owner:
            result[name] = ofport if isinstance(ofport, int) else -2
    return result


def check(
    ovs: ovs_sandbox.OvsSandbox, c: httpx.Client, world: World, owner: str, group: int
) -> tuple[int, int, set[str]]:
    vifs = {v["vif_id"]: v for v in c.get("/v1/vifs").raise_for_status().json()["vifs"]}
    lost = leaked = 0
    interfaces = owned_interfaces(ovs, owner)
    devices = set(links_in_group(group))
    for vif_id, state in world.acked.items():
        if state is True:
            v = vifs.get(vif_id)
            if v is None or v["lifecycle"] != "plugged" or v["device"] not in devices:
                lost += 1
            elif v["bridge"] and interfaces.get(v["port"], -1) <= 0:
                lost += 1
        elif state is False and vif_id in vifs:
            leaked += 1
    expected_devices = {v["device"] for v in vifs.values()}
    expected_ports = {v["port"] for v in vifs.values() if v["bridge"]}
    leaked += len(devices - expected_devices) + len(set(interfaces) - expected_ports)
    pools = c.get("/v1/networks").raise_for_status().json()["networks"]
    for net in pools:
        for dev in net["devices"]:
            holders = dev["vifs"]
            if len(holders) > 1 or any(h not in vifs for h in holders):
                leaked += 1
    for v in vifs.values():
        if v["network"] == "pool":
            held = [d for n in pools for d in n["devices"] if v["vif_id"] in d["vifs"]]
            if len(held) != 1 or held[0]["device"] != v["pool_device"]:
                lost += 1
    return lost, leaked, set(vifs)


def test_kill_9_at_random_moments_loses_and_leaks_nothing(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path, nics: list[str]
) -> None:
    bridge = unique("vpbk")
    config = base_config(tmp_path, ovs.remote, bridge=bridge)
    config["network:pool"] = {"type": "direct", "devices": nics, "mode": "passthrough"}
    owner = config["DEFAULT"]["owner"]
    group = config["netdev"]["link_group"]
    bodies = {}
    for _ in range(16):
        v = ovs_vif(bridge=bridge, name=unique("vpk"))
        bodies[v["versioned_object.data"]["id"]] = {"vif": v, "instance": instance()}
    for _ in range(5):
        vid = str(uuid.uuid4())
        bodies[vid] = direct_body(vid)
    world = World(bodies)
    rng = random.Random(1234)
    total_lost = total_leaked = 0
    daemon = None
    try:
        for kill in range(KILLS):
            daemon = start_daemon(tmp_path, config)
            with daemon.client() as c:
                lost, leaked, listed = check(ovs, c, world, owner, group)
            world.settle(listed)
            total_lost += lost
            total_leaked += leaked
            print(
                f"restart {kill}: {len(listed)} listed, lost {lost}, leaked {leaked}, "
                f"{world.requests} requests so far"
            )
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=client, args=(daemon.socket_path, world, stop, kill * 100 + i)
                )
                for i in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, 1.5))
            daemon.signal(signal.SIGKILL)
            daemon.wait()
            stop.set()
            for t in threads:
                t.join(timeout=60)
        daemon = start_daemon(tmp_path, config)
        with daemon.client() as c:
            lost, leaked, listed = check(ovs, c, world, owner, group)
        total_lost += lost
        total_leaked += leaked
        print(
            f"after {KILLS} kills and {world.requests} answered requests: "
            f"lost {total_lost}, leaked {total_leaked}"
        )
        assert world.requests > KILLS, "the clients never got through"
        assert total_lost == 0
        assert total_leaked == 0
    finally:
        if daemon is not None:
            with daemon.client() as c:
                for vif_id in list(bodies):
                    c.delete(f"/v1/vifs/{vif_id}")
            daemon.stop()
            cleanup_host(ovs, daemon, {bridge})
