"""kill -9 mid-request while clients plug and unplug; nothing lost or leaked.

The daemon runs as a real subprocess with an OVS integration bridge and a
passthrough pool of three 'physical' devices (veth ends).  Several client
threads plug and unplug VIFs from a fixed set over the unix socket; the
daemon is SIGKILLed while requests are in flight, restarted, and after it
reports ready the host is checked against what the API acknowledged.

The check does not take the daemon's word for anything: each VIF's port and
devices are found in OVSDB and the kernel by the VIF's MAC and iface-id,
whatever their names (``host_view``), and pool holdings by the macvtaps'
parents.  Per VIF:

- acknowledged plugged (a 2xx to its plug, nothing since): exactly one tap or
  macvtap with its MAC and, for OVS, exactly one Interface with its iface-id
  on that device with an ofport; otherwise it is lost;
- acknowledged gone (a 2xx to its unplug, or never plugged): no Interface and
  no device with its MAC or iface-id; otherwise it is leaked;
- uncertain (the request was sent and the daemon died before answering):
  either of the two above, never half of one;
- and the daemon's listing must agree with what the host holds.

A request refused before it was sent (the connection was refused: the daemon
was dead) changes nothing and leaves the VIF's state as acknowledged.  Only
2xx answers count as progress, every kill must land while requests are in
flight, and reconciliation must have found interrupted operations to finish
or roll back, or the test proved nothing.
"""

from __future__ import annotations

import dataclasses
import random
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import host_view
import httpx
from daemon_fixture import Daemon, base_config, cleanup_host, start_daemon
from engine_fixture import instance, mac, ovs_vif

import ovs_sandbox
from helpers import unique
from vifplug import objects

KILLS = 20
CLIENTS = 4
JOIN_TIMEOUT = 60.0
OFPORT_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Vif:
    vif_id: str
    mac: str
    kind: str  # "ovs" or "direct"
    body: dict[str, Any]


def ovs_body(bridge: str) -> Vif:
    address = mac()
    v = ovs_vif(bridge=bridge, name=unique("vpk"), address=address)
    vif_id = v["versioned_object.data"]["id"]
    return Vif(vif_id, address, "ovs", {"vif": v, "instance": instance()})


def direct_body() -> Vif:
    vif_id = str(uuid.uuid4())
    address = mac()
    vif = objects.vif.VIFDirect(
        id=vif_id,
        address=address,
        plugin="direct",
        vif_name="vpd" + vif_id[:12],
        network=objects.network.Network(id=str(uuid.uuid4()), label="pool"),
    )
    return Vif(vif_id, address, "direct", {"vif": vif.obj_to_primitive(), "instance": instance()})


class World:
    """What the clients were told, per VIF: True plugged, False gone, None
    uncertain (sent, never answered) until the next check settles it."""

    def __init__(self, vifs: list[Vif]) -> None:
        self.vifs = {v.vif_id: v for v in vifs}
        self.state: dict[str, bool | None] = {v.vif_id: False for v in vifs}
        self.busy: set[str] = set()
        self.lock = threading.Lock()
        self.acked = 0  # 2xx answers
        self.inflight = 0
        self.uncertain = 0  # requests sent that the kill left unanswered
        self.unexpected: list[str] = []
        self.lost_by_answer: list[str] = []  # an acknowledged VIF the daemon said it did not know

    def pick(self, rng: random.Random) -> Vif | None:
        with self.lock:
            free = [v for v, s in self.state.items() if s is not None and v not in self.busy]
            if not free:
                return None
            vif_id = rng.choice(free)
            self.busy.add(vif_id)
            self.inflight += 1
            return self.vifs[vif_id]

    def done(self, vif: Vif, outcome: bool | None) -> None:
        with self.lock:
            self.state[vif.vif_id] = outcome
            self.busy.discard(vif.vif_id)
            self.inflight -= 1


def _plug_outcome(world: World, vif: Vif, r: httpx.Response) -> bool | None:
    if r.status_code in (200, 201):
        with world.lock:
            world.acked += 1
        return True
    if r.status_code < 500:
        # A refusal changes nothing (pool_exhausted is expected: 5 VIFs, 3 devices).
        if r.json()["error"]["code"] != "pool_exhausted":
            world.unexpected.append(f"plug {vif.vif_id}: {r.status_code} {r.text[:200]}")
        return False
    world.unexpected.append(f"plug {vif.vif_id}: {r.status_code} {r.text[:200]}")
    # 503 (not ready, shutting down) is a refusal like a 4xx; other 5xx may
    # have done part of the work.
    return False if r.status_code == 503 else None


def _unplug_outcome(world: World, vif: Vif, r: httpx.Response) -> bool | None:
    if r.status_code == 204:
        with world.lock:
            world.acked += 1
        return False
    if r.status_code == 404:
        world.lost_by_answer.append(vif.vif_id)
        return False
    world.unexpected.append(f"unplug {vif.vif_id}: {r.status_code} {r.text[:200]}")
    return True if r.status_code < 500 or r.status_code == 503 else None


def client(sock: str, world: World, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    transport = httpx.HTTPTransport(uds=sock)
    with httpx.Client(transport=transport, base_url="http://vifplugd", timeout=30) as c:
        while not stop.is_set():
            vif = world.pick(rng)
            if vif is None:
                time.sleep(0.01)
                continue
            plugged = world.state[vif.vif_id]
            outcome: bool | None
            try:
                if plugged:
                    outcome = _unplug_outcome(world, vif, c.delete(f"/v1/vifs/{vif.vif_id}"))
                else:
                    outcome = _plug_outcome(world, vif, c.post("/v1/vifs", json=vif.body))
            except httpx.ConnectError:
                # Never sent: the daemon is gone.  Nothing changed.
                world.done(vif, plugged)
                time.sleep(0.05)
                continue
            except httpx.HTTPError:
                with world.lock:
                    world.uncertain += 1
                outcome = None
            world.done(vif, outcome)


@dataclasses.dataclass
class Tally:
    lost: list[str] = dataclasses.field(default_factory=list)
    leaked: list[str] = dataclasses.field(default_factory=list)
    disagreements: list[str] = dataclasses.field(default_factory=list)


def _complete(vif: Vif, found: host_view.Found, nics: list[str]) -> bool:
    """The VIF's device (and port) exist, once each, and fit together."""
    if len(found.links) != 1:
        return False
    dev = found.links[0]
    if vif.kind == "direct":
        return dev.kind == "macvtap" and dev.parent in nics and not found.interfaces
    if dev.kind != "tun" or len(found.interfaces) != 1:
        return False
    iface = found.interfaces[0]
    return iface.name == dev.name and iface.external_ids.get("iface-id") == vif.vif_id


def _wait_ofports(ovs: ovs_sandbox.OvsSandbox, names: set[str]) -> dict[str, int]:
    """The ofports of ``names`` once all have one (or the deadline passed)."""
    deadline = time.monotonic() + OFPORT_TIMEOUT
    while True:
        ofports = {i.name: i.ofport for i in host_view.interfaces(ovs) if i.name in names}
        if all(ofports.get(n, -1) > 0 for n in names) or time.monotonic() > deadline:
            return ofports
        time.sleep(0.1)


def check(
    ovs: ovs_sandbox.OvsSandbox,
    c: httpx.Client,
    world: World,
    nics: list[str],
    baseline: set[str],
    baseline_ifaces: set[str],
) -> tuple[Tally, set[str]]:
    """Account for every VIF from OVSDB and the kernel; settle the uncertain ones."""
    tally = Tally()
    interfaces = host_view.interfaces(ovs)
    all_links = host_view.links()
    sysfs = host_view.sysfs_addresses()
    ignore = frozenset(nics)
    present: set[str] = set()
    mine_links: set[str] = set()
    mine_ifaces: set[str] = set()
    parents: dict[str, str] = {}
    for vif in world.vifs.values():
        found = host_view.find(vif.mac, vif.vif_id, interfaces, all_links, ignore_links=ignore)
        mine_links |= {lk.name for lk in found.links}
        mine_ifaces |= {i.name for i in found.interfaces}
        by_sysfs = {n for n, a in sysfs.items() if a == vif.mac.lower() and n not in ignore}
        if by_sysfs != {lk.name for lk in found.links}:
            tally.disagreements.append(f"{vif.vif_id}: sysfs {by_sysfs}, netlink {found.links}")
        state = world.state[vif.vif_id]
        if _complete(vif, found, nics):
            present.add(vif.vif_id)
            if state is False:
                tally.leaked.append(f"{vif.vif_id} acknowledged gone, still on the host")
            if vif.kind == "direct":
                parent = found.links[0].parent or ""
                if parent in parents:
                    tally.leaked.append(f"{parent} held by {parents[parent]} and {vif.vif_id}")
                parents[parent] = vif.vif_id
        elif found.empty:
            if state is True:
                tally.lost.append(f"{vif.vif_id} acknowledged plugged, nothing on the host")
        else:
            what = f"{vif.vif_id} half there: {found}"
            (tally.lost if state is True else tally.leaked).append(what)
    ofports = _wait_ofports(ovs, {i.name for i in interfaces if i.name in mine_ifaces})
    for name, ofport in ofports.items():
        if ofport <= 0:
            tally.lost.append(f"interface {name} has no ofport")
    # Anything else that appeared on the host since the test began, and is
    # not a bridge, is a leak whatever carries it.
    bridges = host_view.bridges(ovs)
    extra = {lk.name for lk in all_links} - baseline - mine_links - bridges - {"ovs-netdev"}
    tally.leaked.extend(f"link {n} belongs to no VIF" for n in sorted(extra))
    for iface in interfaces:
        if iface.name not in mine_ifaces | bridges | baseline_ifaces:
            tally.leaked.append(f"interface {iface.name} belongs to no VIF")
    listed = {
        v["vif_id"]
        for v in c.get("/v1/vifs").raise_for_status().json()["vifs"]
        if v["lifecycle"] == "plugged"
    }
    if listed != present:
        tally.disagreements.append(
            f"the daemon lists {sorted(listed - present)} not on the host and "
            f"does not list {sorted(present - listed)} that are"
        )
    return tally, present


def interrupted_work(daemon: Daemon) -> int:
    """How many interrupted plugs and unplugs the start-up reconciliation found."""
    with daemon.client() as c:
        details = c.get("/readyz").raise_for_status().json()["details"]
    summary = details["reconciliation"]["summary"] or ""
    rolled = re.search(r"rolled back (\d+)", summary)
    finished = re.search(r"finished (\d+)", summary)
    assert rolled and finished, f"unexpected reconciliation summary: {summary!r}"
    return int(rolled.group(1)) + int(finished.group(1))


def kill_mid_request(daemon: Daemon, world: World) -> int:
    """SIGKILL once requests are in flight (or after 10 s without); how many were."""
    deadline = time.monotonic() + 10
    while True:
        with world.lock:
            inflight = world.inflight
            if inflight > 0 or time.monotonic() > deadline:
                daemon.signal(signal.SIGKILL)
                return inflight
        time.sleep(0.001)


def round_of_load(daemon: Daemon, world: World, rng: random.Random, seed: int) -> int:
    stop = threading.Event()
    threads = [
        threading.Thread(target=client, args=(daemon.socket_path, world, stop, seed + i))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(rng.uniform(0.2, 1.5))
        inflight = kill_mid_request(daemon, world)
        daemon.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=JOIN_TIMEOUT)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"client threads still running {JOIN_TIMEOUT}s after the kill: {stuck}"
    return inflight


def test_kill_9_mid_request_loses_and_leaks_nothing(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path, nics: list[str]
) -> None:
    bridge = unique("vpbk")
    config = base_config(tmp_path, ovs.remote, bridge=bridge)
    config["network:pool"] = {"type": "direct", "devices": nics, "mode": "passthrough"}
    world = World([ovs_body(bridge) for _ in range(16)] + [direct_body() for _ in range(5)])
    rng = random.Random(1234)
    baseline = {lk.name for lk in host_view.links()}
    baseline_ifaces = {i.name for i in host_view.interfaces(ovs)}
    lost: list[str] = []
    leaked: list[str] = []
    disagreements: list[str] = []
    inflight_at_kills: list[int] = []
    interrupted = 0
    daemon = None
    try:
        for kill in range(KILLS + 1):
            daemon = start_daemon(tmp_path, config)
            if kill > 0:
                interrupted += interrupted_work(daemon)
            with daemon.client() as c:
                tally, present = check(ovs, c, world, nics, baseline, baseline_ifaces)
            lost += tally.lost
            leaked += tally.leaked
            disagreements += tally.disagreements
            with world.lock:
                for v, s in world.state.items():
                    if s is None:
                        world.state[v] = v in present
            print(
                f"restart {kill}: {len(present)} on the host, lost {len(tally.lost)}, "
                f"leaked {len(tally.leaked)}; {world.acked} acknowledged, "
                f"{world.uncertain} unanswered so far, {interrupted} interrupted operations"
            )
            if kill == KILLS:
                break
            inflight_at_kills.append(round_of_load(daemon, world, rng, kill * 100))
        print(f"in flight at each kill: {inflight_at_kills}")
        assert lost == [], lost
        assert leaked == [], leaked
        assert disagreements == [], disagreements
        assert world.lost_by_answer == [], world.lost_by_answer
        # The test proved something only if the load got through and the
        # kills interrupted it.
        assert world.acked >= 10 * KILLS, f"only {world.acked} requests were acknowledged"
        assert world.unexpected == [], world.unexpected
        assert all(n > 0 for n in inflight_at_kills), "a kill landed with no request in flight"
        assert world.uncertain >= KILLS // 2, f"only {world.uncertain} requests were cut off"
        assert interrupted >= KILLS // 4, f"reconciliation found only {interrupted} to do"
    finally:
        if daemon is not None:
            if daemon.proc.poll() is not None:
                daemon = start_daemon(tmp_path, config)
            with daemon.client() as c:
                for vif_id in world.vifs:
                    c.delete(f"/v1/vifs/{vif_id}")
            daemon.stop()
            cleanup_host(ovs, daemon, {bridge})
