"""A lost state, a state that does not match the host, and a host reboot,
against real OVS and netlink (the engine in-process).

Each test plugs VIFs with one engine, stops it without unplugging (as a
crash or a restart leaves the host), changes the state or the boot id behind
its back, starts a new engine on the same marks, and reads the host back
through ``ovs-vsctl`` and pyroute2 (never through vifplug's own look-ups).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import primitives as prim
import pytest
from daemon_fixture import Daemon, DaemonFactory
from engine_fixture import (
    Frame,
    mac,
    mac_bytes,
    open_tap,
    ovs_vif,
    plug_request,
    settings_for,
    vif_id_of,
)
from pyroute2 import IPRoute

import ovs_sandbox
from helpers import unique
from vifplug import conf
from vifplug.plugging import engine, reconcile
from vifplug.records import Lifecycle
from vifplug.state import store as state_store

DEADLINE = 30.0


@dataclasses.dataclass
class Host:
    settings: conf.Settings
    owner: str
    bridge: str
    boot_id_file: Path

    def engine(self) -> engine.Engine:
        return engine.Engine(self.settings, owner=self.owner).start()

    @property
    def state_path(self) -> Path:
        return Path(self.settings.host.state_dir) / engine.STATE_FILE

    def reboot(self) -> None:
        """What a reboot changes that a test can: a new boot id."""
        self.boot_id_file.write_text(str(uuid.uuid4()) + "\n")


def make_host(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path, **limits: object) -> Host:
    br = unique("vpbr")
    boot = tmp_path / "boot_id"
    boot.write_text(str(uuid.uuid4()) + "\n")
    base = settings_for(ovs.remote, tmp_path / "state", bridge=br)
    settings = dataclasses.replace(
        base,
        reconcile=dataclasses.replace(
            conf.ReconcileSettings(boot_id_file=str(boot)),
            **limits,  # type: ignore[arg-type]
        ),
    )
    return Host(settings, owner=f"test-{uuid.uuid4().hex[:8]}", bridge=br, boot_id_file=boot)


def cleanup(ovs: ovs_sandbox.OvsSandbox, h: Host) -> None:
    ovs.vsctl("--if-exists", "del-br", h.bridge)
    with IPRoute() as ipr:
        for group in (h.settings.netdev.link_group, h.settings.netdev.delete_group):
            if any(m.get("group") == group for m in ipr.get_links()):
                ipr.link("del", group=group)


@pytest.fixture
def host(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[Host]:
    h = make_host(ovs, tmp_path)
    try:
        yield h
    finally:
        cleanup(ovs, h)


# -- independent readouts ------------------------------------------------------------


def ifindex(name: str) -> int | None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        return found[0] if found else None


def ports_of(ovs: ovs_sandbox.OvsSandbox, bridge: str) -> set[str]:
    if bridge not in ovs.vsctl("list-br").split():
        return set()
    return set(ovs.vsctl("list-ports", bridge).split())


def ofport(ovs: ovs_sandbox.OvsSandbox, name: str) -> int:
    return int(ovs.vsctl("get", "Interface", name, "ofport").strip().strip('"') or -1)


def wait_ofports(ovs: ovs_sandbox.OvsSandbox, names: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = {n: ofport(ovs, n) for n in names}
        if all(v > 0 for v in found.values()):
            return found
        assert time.monotonic() < deadline, f"no ofport in time: {found}"
        time.sleep(0.1)


def port_other_config(ovs: ovs_sandbox.OvsSandbox, name: str) -> dict[str, str]:
    out = ovs.vsctl("--format=json", "--columns=other_config", "list", "Port", name)
    pairs = json.loads(out)["data"][0][0][1]
    return {k: v for k, v in pairs}


def lose_state(h: Host, how: str) -> None:
    """The operator's mistake: the state file deleted, or emptied in place."""
    path = h.state_path
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        with open(path, "r+b") as f:
            f.truncate(0)


def frame_passes(fd_from: int, fd_to: int, src_mac: str) -> bool:
    """A broadcast frame written into one tap (as a VM sends it) comes out of the other."""
    payload = b"vifplug-lost-state-" + uuid.uuid4().bytes
    frame = Frame(
        dst=b"\xff" * 6, src=mac_bytes(src_mac), ethertype=0x88B5, payload=payload.ljust(46, b"\0")
    ).pack()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        os.write(fd_from, frame)
        ready, _, _ = select.select([fd_to], [], [], 0.5)
        while ready:
            if payload in os.read(fd_to, 65536):
                return True
            ready, _, _ = select.select([fd_to], [], [], 0.1)
    return False


def plug_three(h: Host) -> list[tuple[dict[str, object], str]]:
    """Three plugged VIFs (primitive, tap name), then the engine stops as a crash would."""
    vifs = []
    e = h.engine()
    try:
        assert e.service is not None
        for _ in range(3):
            name = unique("vpls")
            v = ovs_vif(bridge=h.bridge, name=name, address=mac())
            e.service.plug(plug_request(v))
            vifs.append((v, name))
    finally:
        e.stop()
    return vifs


# -- the lost state ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_lost_state_removes_nothing_and_replugs_adopt_ports_and_taps(
    host: Host, ovs: ovs_sandbox.OvsSandbox, how: str
) -> None:
    vifs = plug_three(host)
    names = [n for _, n in vifs]
    before_index = {n: ifindex(n) for n in names}
    before_ofport = wait_ofports(ovs, names)
    # Two VMs are attached to their taps, as QEMU is, all along.
    fd_a, fd_b = open_tap(names[0]), open_tap(names[1])
    try:
        lose_state(host, how)
        e = host.engine()
        try:
            assert e.reconciler is not None and e.service is not None
            report = e.reconciler.last
            assert report is not None
            assert report.leaked_ports == [] and report.leaked_links == []
            assert report.held_ports == sorted(names) and report.held_links == sorted(names)
            guard = e.reconciler.guard
            assert guard.held and guard.reason is not None and "is new" in guard.reason
            assert (guard.ports, guard.links) == (3, 3)
            # Nothing was touched: the same devices, the same ports and ofports.
            assert {n: ifindex(n) for n in names} == before_index
            assert set(names) <= ports_of(ovs, host.bridge)
            assert wait_ofports(ovs, names) == before_ofport
            assert frame_passes(fd_a, fd_b, str(vifs[0][0]["versioned_object.data"]["address"]))  # type: ignore[index]

            # The compute service plugs its VIFs again (Nova does at start-up):
            # each plug adopts the existing tap and port.
            for v, _ in vifs[:2]:
                result = e.service.plug(plug_request(v))
                assert result.created and result.record.lifecycle == Lifecycle.PLUGGED
            assert {n: ifindex(n) for n in names} == before_index
            assert wait_ofports(ovs, names) == before_ofport
            assert frame_passes(fd_b, fd_a, str(vifs[1][0]["versioned_object.data"]["address"]))  # type: ignore[index]

            # A later run keeps the guard: the third VM may just not be re-plugged yet.
            again = e.reconciler.run()
            assert again.leaked_ports == [] and again.held_ports == [names[2]]
            assert ifindex(names[2]) == before_index[names[2]]
            leaks = e.reconciler.leaks()
            assert leaks.ports == {names[2]: vif_id_of(vifs[2][0])}  # type: ignore[arg-type]
            assert leaks.links == [names[2]]
        finally:
            e.stop()

        # The guard is kept in the state: a restart still removes nothing.
        e = host.engine()
        try:
            assert e.reconciler is not None and e.reconciler.guard.held
            assert ifindex(names[2]) == before_index[names[2]]
            assert e.reconciler.last is not None and e.reconciler.last.repaired == []
            # The operator's purge removes what no VIF accounts for, and only that.
            purged = e.purge_leaks()
            assert purged.leaked_ports == [names[2]] and purged.leaked_links == [names[2]]
            assert not e.reconciler.guard.held
            assert ifindex(names[2]) is None and names[2] not in ports_of(ovs, host.bridge)
            assert {n: ifindex(n) for n in names[:2]} == {n: before_index[n] for n in names[:2]}
            assert wait_ofports(ovs, names[:2]) == {n: before_ofport[n] for n in names[:2]}
        finally:
            e.stop()
        e = host.engine()
        try:
            assert e.reconciler is not None and not e.reconciler.guard.held
        finally:
            e.stop()
    finally:
        os.close(fd_a)
        os.close(fd_b)


def test_guard_is_released_when_every_vif_was_replugged(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vifs = plug_three(host)
    lose_state(host, "deleted")
    e = host.engine()
    try:
        assert e.reconciler is not None and e.service is not None
        assert e.reconciler.guard.held
        for v, _ in vifs:
            e.service.plug(plug_request(v))
        report = e.reconciler.run()
        assert report.held_ports == [] and report.leaked_ports == []
        assert not e.reconciler.guard.held
        assert {n for _, n in vifs} <= ports_of(ovs, host.bridge)
        assert all(ifindex(n) is not None for _, n in vifs)
    finally:
        for r in e.service.list() if e.service is not None else []:
            e.service.unplug(r.vif_id)
        e.stop()


def forget_records(h: Host, vif_ids: list[str]) -> None:
    """A stale state: these VIFs' records are gone, the rest of the state is intact."""
    with state_store.Store(str(h.state_path)) as store:
        for vif_id in vif_ids:
            store.begin_unplug(vif_id)
            store.finish_unplug(vif_id)


@pytest.mark.parametrize(
    ("limits", "missing", "reason"),
    [
        ({}, 2, "max_leak_fraction"),  # 2 of 3 ports missing
        ({"max_leak_removal": 1, "max_leak_fraction": 1.0}, 2, "max_leak_removal"),
    ],
)
def test_state_accounting_for_too_few_vifs_removes_nothing(
    ovs: ovs_sandbox.OvsSandbox,
    tmp_path: Path,
    limits: dict[str, object],
    missing: int,
    reason: str,
) -> None:
    h = make_host(ovs, tmp_path, **limits)
    try:
        vifs = plug_three(h)
        forget_records(h, [vif_id_of(v) for v, _ in vifs[:missing]])  # type: ignore[arg-type]
        e = h.engine()
        try:
            assert e.reconciler is not None and e.reconciler.last is not None
            assert e.reconciler.last.leaked_ports == [] and e.reconciler.last.leaked_links == []
            assert len(e.reconciler.last.held_ports) == missing
            assert e.reconciler.guard.reason is not None and reason in e.reconciler.guard.reason
            assert {n for _, n in vifs} <= ports_of(ovs, h.bridge)
            assert all(ifindex(n) is not None for _, n in vifs)
        finally:
            e.stop()
    finally:
        cleanup(ovs, h)


def test_one_leak_among_plugged_vifs_is_still_removed(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vifs = plug_three(host)
    forget_records(host, [vif_id_of(vifs[0][0])])  # type: ignore[arg-type]
    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert e.reconciler.last.leaked_ports == [vifs[0][1]]
        assert not e.reconciler.guard.held
        assert vifs[0][1] not in ports_of(ovs, host.bridge) and ifindex(vifs[0][1]) is None
        assert {n for _, n in vifs[1:]} <= ports_of(ovs, host.bridge)
    finally:
        e.stop()


def test_state_of_another_host_removes_nothing(host: Host, ovs: ovs_sandbox.OvsSandbox) -> None:
    vifs = plug_three(host)
    with state_store.Store(str(host.state_path)) as store:
        store.meta_set(engine.META_SYSTEM_ID, str(uuid.uuid4()))
        vif_id = vif_id_of(vifs[0][0])  # type: ignore[arg-type]
        store.begin_unplug(vif_id)
        store.finish_unplug(vif_id)
    e = host.engine()
    try:
        assert e.reconciler is not None
        guard = e.reconciler.guard
        assert guard.held and guard.reason is not None and "system-id" in guard.reason
        assert vifs[0][1] in ports_of(ovs, host.bridge) and ifindex(vifs[0][1]) is not None
    finally:
        e.stop()


# -- a reboot ---------------------------------------------------------------------------


def test_after_a_reboot_vifs_whose_taps_are_gone_are_forgotten_not_recreated(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    tap = unique("vprb")
    libvirts = unique("vprl")  # a tap libvirt makes (create_tap=False): not ours to lose
    e = host.engine()
    try:
        assert e.service is not None
        ours = ovs_vif(bridge=host.bridge, name=tap)
        theirs = ovs_vif(bridge=host.bridge, name=libvirts, profile={"create_tap": False})
        e.service.plug(plug_request(ours))
        e.service.plug(plug_request(theirs, wait="none"))
    finally:
        e.stop()
    # The port of a tap vifplug makes is transient (ovs-ctl removes it at
    # boot); the port of a tap libvirt makes is not vifplug's to mark.
    assert port_other_config(ovs, tap).get("transient") == "true"
    assert "transient" not in port_other_config(ovs, libvirts)
    # The reboot: the tap is gone (the port stays: ovs-ctl was not told to
    # delete transient ports), and the boot id is new.
    with IPRoute() as ipr:
        ipr.link("del", ifname=tap)
    host.reboot()
    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None and e.service is not None
        report = e.reconciler.last
        assert report.forgotten_after_reboot == [vif_id_of(ours)]
        assert report.repaired == []
        assert ifindex(tap) is None, "a tap was recreated for a VM nobody started"
        assert tap not in ports_of(ovs, host.bridge)
        assert [r.vif_id for r in e.service.list()] == [vif_id_of(theirs)]
        assert libvirts in ports_of(ovs, host.bridge)
        assert e.store is not None
        assert e.store.meta_get(engine.META_BOOT_ID) == host.boot_id_file.read_text().strip()
        # The compute service starts the VM: its plug makes tap and port afresh.
        result = e.service.plug(plug_request(ours))
        assert result.created and ifindex(tap) is not None
        assert wait_ofports(ovs, [tap])[tap] > 0
    finally:
        e.stop()
    # Without a reboot, a lost tap is what it always was: repaired.
    with IPRoute() as ipr:
        ipr.link("del", ifname=tap)
    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert e.reconciler.last.repaired == [vif_id_of(ours)]
        assert e.reconciler.last.forgotten_after_reboot == []
        assert ifindex(tap) is not None
    finally:
        assert e.service is not None
        for r in e.service.list():
            e.service.unplug(r.vif_id)
        e.stop()


def test_the_guard_is_kept_in_the_state_as_json() -> None:
    """What ``_load_guard`` reads back is what ``_hold`` wrote; an unreadable
    value still holds the guard rather than releasing it."""
    assert reconcile._load_guard("") is None
    assert reconcile._load_guard(None) is None
    assert reconcile._load_guard(json.dumps({"reason": "r", "since": 5.0})) == ("r", 5.0)
    held = reconcile._load_guard("not json")
    assert held is not None


# -- the real daemon --------------------------------------------------------------------


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics:\n{text}")


def _cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vifplug.cli", "--socket", daemon.socket_path, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_daemon_started_on_a_lost_state_keeps_every_port_says_so_and_purges_on_request(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox
) -> None:
    first = daemon_factory()
    vifs = [prim.vif_ovs(bridge=first.bridge) for _ in range(2)]
    taps = [prim.data(v)["vif_name"] for v in vifs]
    with first.client() as c:
        for v in vifs:
            assert c.post("/v1/vifs", json=prim.body(v)).status_code == 201
    before_ofport = wait_ofports(ovs, taps)
    before_index = {t: ifindex(t) for t in taps}
    assert first.stop() == 0
    state = Path(first.config["DEFAULT"]["state_dir"]) / engine.STATE_FILE
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)

    second = daemon_factory(config=first.config)
    assert "reconciliation removes nothing" in second.stderr()
    assert " ERROR " in second.stderr()
    with second.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        guard = ready.json()["details"]["leak_guard"]
        assert guard["held"] and "is new" in guard["reason"]
        assert (guard["ports"], guard["devices"]) == (2, 2)
        metrics = c.get("/metrics").text
        assert _metric(metrics, "vifplug_leak_guard_held") == 1.0
        assert _metric(metrics, 'vifplug_leaks_kept{kind="port"}') == 2.0
        assert {t: ifindex(t) for t in taps} == before_index
        assert wait_ofports(ovs, taps) == before_ofport

        listed = c.get("/v1/leaks").json()
        assert sorted(p["name"] for p in listed["ports"]) == sorted(taps)
        assert listed["devices"] == sorted(taps) and listed["guard"]["held"]
        refused = c.post("/v1/leaks/purge", json={})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "purge_not_confirmed"
        assert set(taps) <= ports_of(ovs, second.bridge)

        # The compute service re-plugs the first VIF: its tap and port are adopted.
        again = c.post("/v1/vifs", json=prim.body(vifs[0]))
        assert again.status_code == 201, again.text
        assert again.json()["ofport"] == before_ofport[taps[0]]
        assert ifindex(taps[0]) == before_index[taps[0]]

    dry = _cli(second, "purge-leaks")
    assert dry.returncode == 0, dry.stderr
    assert taps[1] in dry.stdout and taps[0] not in dry.stdout and "--yes" in dry.stdout
    assert set(taps) <= ports_of(ovs, second.bridge) and ifindex(taps[1]) is not None

    done = _cli(second, "purge-leaks", "--yes")
    assert done.returncode == 0, done.stderr
    assert "Removed 1 port(s) and 1 device(s)" in done.stdout
    assert taps[1] not in ports_of(ovs, second.bridge) and ifindex(taps[1]) is None
    assert ifindex(taps[0]) == before_index[taps[0]]
    assert ofport(ovs, taps[0]) == before_ofport[taps[0]]
    with second.client() as c:
        assert c.get("/readyz").json()["details"]["leak_guard"]["held"] is False
        assert _metric(c.get("/metrics").text, "vifplug_leak_guard_held") == 0.0
        assert c.delete(f"/v1/vifs/{prim.data(vifs[0])['id']}").status_code == 204
