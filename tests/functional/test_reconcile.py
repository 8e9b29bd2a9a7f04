"""Start-up reconciliation against real OVS and netlink.

Each test leaves the host in a state a crash could leave it in (by stopping
an engine without unplugging, then changing the system or the state behind
its back), starts a new engine on the same state and marks, and checks what
it converged to.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import host_view
import pytest
from engine_fixture import ovs_vif, plug_request, settings_for, vif_id_of
from pyroute2 import IPRoute
from test_engine import link, ports_of
from test_netdev_delete import forget, record_lookups

import ovs_sandbox
from helpers import unique
from vifplug import conf
from vifplug.plugging import engine
from vifplug.records import Allocation, Lifecycle


@dataclasses.dataclass
class Host:
    settings: conf.Settings
    owner: str
    bridge: str

    def engine(self) -> engine.Engine:
        return engine.Engine(self.settings, owner=self.owner).start()


@pytest.fixture
def host(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[Host]:
    br = unique("vpbr")
    h = Host(
        settings_for(ovs.remote, tmp_path / "state", bridge=br),
        owner=f"test-{uuid.uuid4().hex[:8]}",
        bridge=br,
    )
    try:
        yield h
    finally:
        e = h.engine()
        assert e.service is not None
        for r in e.service.list():
            e.service.unplug(r.vif_id)
        e.stop()
        ovs.vsctl("--if-exists", "del-br", br)
        with IPRoute() as ipr:
            if any(m.get("group") == h.settings.netdev.link_group for m in ipr.get_links()):
                ipr.link("del", group=h.settings.netdev.link_group)


def plug_some(h: Host, n: int) -> list[str]:
    e = h.engine()
    try:
        assert e.service is not None
        vifs = [ovs_vif(bridge=h.bridge, name=unique("vpr")) for _ in range(n)]
        for v in vifs:
            e.service.plug(plug_request(v))
        return [vif_id_of(v) for v in vifs]
    finally:
        e.stop()


def test_plugged_vifs_survive_restart_untouched(host: Host, ovs: ovs_sandbox.OvsSandbox) -> None:
    ids = plug_some(host, 3)
    e = host.engine()
    try:
        assert e.service is not None and e.reconciler is not None
        report = e.reconciler.last
        assert report is not None
        assert report.repaired == [] and report.leaked_links == [] and report.leaked_ports == []
        assert sorted(r.vif_id for r in e.service.list()) == sorted(ids)
        for r in e.service.list():
            assert r.lifecycle == Lifecycle.PLUGGED
            assert r.allocation is not None
            assert link(r.allocation.device) is not None
            assert e.service.ofport(r) is not None and e.service.ofport(r) > 0  # type: ignore[operator]
    finally:
        e.stop()


def test_an_unplug_after_a_restart_reads_nothing_the_inventory_read(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted daemon knows its taps from the start-up inventory's dump:
    unplugging a VIF plugged before the restart asks the kernel no more
    about its tap (``netdev/owned.py``)."""
    ids = plug_some(host, 3)
    e = host.engine()
    assert e.service is not None
    taps = [alloc.device for r in e.service.list() if (alloc := r.allocation) is not None]
    e.stop()
    forget(taps)  # what a new process does not know
    asked = record_lookups(monkeypatch)
    e = host.engine()
    try:
        assert e.service is not None
        for vif_id in ids:
            e.service.unplug(vif_id)
        assert asked == [] and len(taps) == 3
        assert [name for name in taps if link(name) is not None] == []
    finally:
        e.stop()


def test_missing_tap_and_port_of_a_plugged_vif_are_recreated(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    ids = plug_some(host, 2)
    e = host.engine()
    assert e.service is not None
    lost_tap = e.service.get(ids[0]).allocation
    lost_port = e.service.get(ids[1]).allocation
    e.stop()
    assert lost_tap is not None and lost_port is not None
    with IPRoute() as ipr:
        ipr.link("del", ifname=lost_tap.device)
    ovs.vsctl("del-port", host.bridge, lost_port.port or "")
    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert sorted(e.reconciler.last.repaired) == sorted(ids)
        assert link(lost_tap.device) is not None
        assert lost_port.port in ports_of(ovs, host.bridge)
        deadline = time.monotonic() + 10
        assert e.service is not None
        while not all((e.service.ofport(r) or 0) > 0 for r in e.service.list()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        e.stop()


def test_interrupted_plug_is_rolled_back_and_interrupted_unplug_finished(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    ids = plug_some(host, 2)
    e = host.engine()
    assert e.service is not None and e.store is not None
    # A plug that crashed after creating its tap and port, before its outcome:
    record = e.service.get(ids[0])
    e.store.begin_unplug(ids[0])
    e.store.finish_unplug(ids[0])
    e.store.begin_plug(record.with_changes(lifecycle=Lifecycle.PLUGGING))
    # An unplug that crashed before it removed anything:
    e.store.begin_unplug(ids[1])
    devices = [e.service.get(i).allocation.device for i in ids]  # type: ignore[union-attr]
    e.stop()
    for dev in devices:
        assert link(dev) is not None and dev in ports_of(ovs, host.bridge)

    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert e.reconciler.last.rolled_back == [ids[0]]
        assert e.reconciler.last.finished_unplugs == [ids[1]]
        assert e.service is not None and e.service.list() == []
        for dev in devices:
            assert link(dev) is None
            assert dev not in ports_of(ovs, host.bridge)
    finally:
        e.stop()


def test_leaks_are_removed_and_nothing_else_is_touched(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    ids = plug_some(host, 1)
    group = host.settings.netdev.link_group
    leaked_tap, foreign_tap, foreign_group_tap = unique("vpl"), unique("vpf"), unique("vpg")
    other_group = random.randint(0x10000, 0x7FFF0000)
    with IPRoute() as ipr:
        for name, g in ((leaked_tap, group), (foreign_tap, 0), (foreign_group_tap, other_group)):
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", ifname=name, group=g)
    leaked_port, foreign_port = unique("vpl"), unique("vpo")
    ovs.vsctl(
        "add-port",
        host.bridge,
        leaked_port,
        "--",
        "set",
        "Interface",
        leaked_port,
        "type=internal",
        f"external_ids:vifplug-owner={host.owner}",
        "external_ids:vifplug-vif-id=gone",
    )
    ovs.vsctl(
        "add-port",
        host.bridge,
        foreign_port,
        "--",
        "set",
        "Interface",
        foreign_port,
        "type=internal",
        "external_ids:iface-id=someone-elses",
    )
    # A port of another vifplug daemon on the same OVS is not ours either.
    other_daemon_port = unique("vpd")
    ovs.vsctl(
        "add-port",
        host.bridge,
        other_daemon_port,
        "--",
        "set",
        "Interface",
        other_daemon_port,
        "type=internal",
        "external_ids:vifplug-owner=another-daemon",
    )
    try:
        e = host.engine()
        try:
            assert e.reconciler is not None and e.reconciler.last is not None
            report = e.reconciler.last
            assert report.leaked_links == [leaked_tap]
            assert report.leaked_ports == [leaked_port]
            assert link(leaked_tap) is None
            assert leaked_port not in ports_of(ovs, host.bridge)
            assert link(foreign_tap) is not None and link(foreign_group_tap) is not None
            assert {foreign_port, other_daemon_port} <= ports_of(ovs, host.bridge)
            assert [r.vif_id for r in e.service.list()] == ids  # type: ignore[union-attr]
        finally:
            e.stop()
    finally:
        with IPRoute() as ipr:
            for name in (foreign_tap, foreign_group_tap):
                ipr.link("del", ifname=name)
        for port in (foreign_port, other_daemon_port):
            ovs.vsctl("--if-exists", "del-port", port)


def _on_host(ovs: ovs_sandbox.OvsSandbox, vif: dict[str, object]) -> host_view.Found:
    """The VIF's Interfaces and devices, found by its MAC and iface-id alone."""
    data = vif["versioned_object.data"]
    assert isinstance(data, dict)
    return host_view.find(
        str(data["address"]), str(data["id"]), host_view.interfaces(ovs), host_view.links()
    )


def _wait_complete(ovs: ovs_sandbox.OvsSandbox, vif: dict[str, object], deadline: float) -> None:
    """One tap with the VIF's MAC, one Interface with its iface-id on it, with an ofport."""
    while True:
        found = _on_host(ovs, vif)
        ok = (
            len(found.links) == 1
            and len(found.interfaces) == 1
            and found.interfaces[0].name == found.links[0].name
            and found.interfaces[0].ofport > 0
        )
        if ok:
            return
        assert time.monotonic() < deadline, f"VIF {vif_id_of(vif)} is not whole: {found}"
        time.sleep(0.1)


def test_ovsdb_server_restart_during_churn_loses_nothing(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """Plugs keep coming while ovsdb-server restarts.  Plugs succeed before
    and after it; during it they may be refused, never lost: afterwards every
    acknowledged VIF has its tap and its port with an ofport (found in OVSDB
    and the kernel by MAC and iface-id), and a refused one left nothing."""
    import threading

    from vifplug import exceptions

    e = host.engine()
    try:
        assert e.service is not None and e.ovsdb is not None and e.reconciler is not None
        before = [ovs_vif(bridge=host.bridge, name=unique("vpc")) for _ in range(5)]
        for v in before:
            e.service.plug(plug_request(v))
        vifs = [ovs_vif(bridge=host.bridge, name=unique("vpc")) for _ in range(40)]
        errors: list[BaseException] = []
        done: list[str] = []
        started = threading.Barrier(5)

        def worker(chunk: list[dict[str, object]]) -> None:
            started.wait()
            for v in chunk:
                try:
                    e.service.plug(plug_request(v))  # type: ignore[union-attr]
                    done.append(vif_id_of(v))
                except exceptions.VifplugError as exc:  # a refusal is fine; a loss is not
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(vifs[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        started.wait()
        generation = e.ovsdb.generation
        runs = e.reconciler.runs
        ovs.restart_ovsdb()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a plug hung across the restart"
        deadline = time.monotonic() + 60
        while e.ovsdb.generation == generation or not e.ovsdb.connected:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Let the reconciliation the reconnect triggered finish.
        while e.reconciler.runs == runs or e.reconciler.running:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        after = [ovs_vif(bridge=host.bridge, name=unique("vpc")) for _ in range(5)]
        for v in after:
            e.service.plug(plug_request(v))  # must succeed: OVSDB is back
        by_id = {vif_id_of(v): v for v in before + vifs + after}
        acked = [vif_id_of(v) for v in before + after] + done
        listed = {r.vif_id for r in e.service.list() if r.lifecycle == Lifecycle.PLUGGED}
        assert set(acked) <= listed, "an acknowledged plug was lost"
        for vif_id in listed:
            _wait_complete(ovs, by_id[vif_id], deadline)
        assert e.deleter is not None
        e.deleter.flush()  # the refused plugs' taps, put aside, are deleted
        for vif_id in set(by_id) - listed:
            assert _on_host(ovs, by_id[vif_id]).empty, f"refused VIF {vif_id} left something"
        print(f"{len(done)} plugs acknowledged, {len(errors)} refused during the restart")
    finally:
        e.stop()


def test_ovs_vswitchd_restart_brings_every_port_back(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    ids = plug_some(host, 5)
    e = host.engine()
    try:
        assert e.service is not None
        ovs.restart_vswitchd()
        deadline = time.monotonic() + 30
        records = [e.service.get(i) for i in ids]
        while not all((e.service.ofport(r) or 0) > 0 for r in records):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for r in records:
            assert r.allocation is not None and link(r.allocation.device) is not None
    finally:
        e.stop()


def test_device_lost_across_vswitchd_restart_is_recreated(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """ovs-vswitchd goes away, a VIF's tap disappears meanwhile; when the switch
    comes back it reports the interface broken, and the daemon (running all
    along) recreates the tap, so the port gets its ofport again."""
    ids = plug_some(host, 2)
    e = host.engine()
    try:
        assert e.service is not None and e.reconciler is not None
        victim = e.service.get(ids[0]).allocation
        assert victim is not None
        runs = e.reconciler.runs
        ovs.stop_vswitchd()
        with IPRoute() as ipr:
            ipr.link("del", ifname=victim.device)
        ovs.start_vswitchd()
        deadline = time.monotonic() + 30
        while e.reconciler.runs == runs or link(victim.device) is None:
            assert time.monotonic() < deadline, "the lost tap was not recreated"
            time.sleep(0.1)
        assert e.reconciler.last is not None and ids[0] in e.reconciler.last.repaired
        while (e.service.ofport(e.service.get(ids[0])) or 0) <= 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        e.stop()


def test_allocation_record_format_is_what_reconciliation_reads() -> None:
    alloc = Allocation(
        plugin="ovs",
        device="tapx",
        bridge="br",
        port="tapx",
        created_devices=("tapx",),
        created_port=True,
    )
    assert Allocation.from_dict(alloc.to_dict()) == alloc


def test_shared_linux_bridge_survives_restart_while_in_use(host: Host) -> None:
    import uuid as _uuid

    from engine_fixture import instance, mac

    from vifplug import objects

    lb = unique("vplb")
    vif = objects.vif.VIFBridge(
        id=str(_uuid.uuid4()),
        address=mac(),
        plugin="linux_bridge",
        bridge_name=lb,
        vif_name=unique("vpt"),
        network=objects.network.Network(id=str(_uuid.uuid4())),
    )
    e = host.engine()
    assert e.service is not None
    rec = e.service.plug(plug_request(vif.obj_to_primitive(), instance())).record
    e.stop()
    e = host.engine()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert lb not in e.reconciler.last.leaked_links
        assert link(lb) is not None and link(rec.allocation.device) is not None  # type: ignore[union-attr]
        assert link(rec.allocation.device)["master"] == link(lb)["index"]  # type: ignore[index,union-attr]
    finally:
        e.stop()


def test_many_lost_ports_are_repaired_in_shared_transactions(
    host: Host, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """As after ovsdb-server lost its database: every port is gone, the taps
    remain.  Repairs run concurrently and share OVSDB transactions."""
    ids = plug_some(host, 30)
    ports = [p for p in ports_of(ovs, host.bridge) if p.startswith("vpr")]
    assert len(ports) == 30
    ovs.vsctl(*[arg for p in ports for arg in ("--", "del-port", p)][1:])
    # Each repair announces its port write; a gathering bound far above any
    # machine's slowness makes the batch wait for every announced one.
    settings = dataclasses.replace(
        host.settings, ovs=dataclasses.replace(host.settings.ovs, gather_max=120.0)
    )
    e = engine.Engine(settings, owner=host.owner).start()
    try:
        assert e.reconciler is not None and e.reconciler.last is not None
        assert sorted(e.reconciler.last.repaired) == sorted(ids)
        assert set(ports) <= ports_of(ovs, host.bridge)
        assert e.ovsdb is not None
        print(f"30 repairs at start-up: {e.ovsdb.transactions} OVSDB transactions in all")
        assert e.ovsdb.transactions < 15
    finally:
        e.stop()
