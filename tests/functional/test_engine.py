"""The engine against a real Open vSwitch and real netlink, in-process."""

from __future__ import annotations

import select
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_fixture import (
    Frame,
    instance,
    mac,
    mac_bytes,
    open_tap,
    ovs_vif,
    plug_request,
    running_engine,
    settings_for,
    vif_id_of,
    with_data,
)
from pyroute2 import IPRoute

import ovs_sandbox
from helpers import unique
from vifplug import exceptions, netdev
from vifplug.plugging import engine as engine_mod
from vifplug.records import Lifecycle


@pytest.fixture
def eng(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[engine_mod.Engine]:
    br = unique("vpbr")
    with running_engine(settings_for(ovs.remote, tmp_path / "state", bridge=br)) as e:
        try:
            yield e
        finally:
            ovs.vsctl("--if-exists", "del-br", br)


def iface_ids(ovs: ovs_sandbox.OvsSandbox, name: str) -> dict[str, str]:
    out = ovs.vsctl("--format=json", "--columns=external_ids", "list", "Interface", name)
    import json

    data = json.loads(out)["data"][0][0]
    return {k: v for k, v in data[1]}


def ports_of(ovs: ovs_sandbox.OvsSandbox, bridge: str) -> set[str]:
    """The ports of a bridge; none when the bridge does not exist (yet)."""
    if bridge not in ovs.vsctl("list-br").split():
        return set()
    return set(ovs.vsctl("list-ports", bridge).split())


def iface_col(ovs: ovs_sandbox.OvsSandbox, name: str, column: str) -> str:
    return ovs.vsctl("get", "Interface", name, column).strip()


def link(name: str) -> dict[str, Any] | None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        msg = ipr.get_links(idx[0])[0]
        return {
            "index": msg["index"],
            "mac": msg.get("address"),
            "mtu": msg.get("mtu"),
            "group": msg.get("group"),
            "master": msg.get("master"),
            "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        }


def bridge_of(eng: engine_mod.Engine) -> str:
    return eng.settings.ovs.integration_bridge


# -- plug, re-plug, unplug -----------------------------------------------------------


def test_plug_creates_tap_and_port_with_integration_guide_ids(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    br = bridge_of(eng)
    name = unique("vpt")
    address = mac()
    vm = str(uuid.uuid4())
    vif = ovs_vif(bridge=br, name=name, address=address, mtu=1400)
    assert eng.service is not None
    result = eng.service.plug(plug_request(vif, instance(vm_uuid=vm)))
    assert result.created
    vid = vif_id_of(vif)

    ids = iface_ids(ovs, name)
    assert ids["iface-id"] == vid
    assert ids["attached-mac"] == address
    assert ids["vm-id"] == vm and ids["vm-uuid"] == vm
    assert ids["iface-status"] == "active"
    assert int(iface_col(ovs, name, "ofport")) > 0
    assert name in ports_of(ovs, br)
    assert eng.ovsdb is not None
    # The Open_vSwitch row carries a system-id.
    assert (
        ovs.vsctl("get", "Open_vSwitch", ".", "external_ids:system-id").strip('"\n')
        == eng.system_id
    )

    kernel = link(name)
    assert kernel is not None
    assert kernel["kind"] == "tun"
    assert kernel["mac"] == address
    assert kernel["mtu"] == 1400
    assert kernel["group"] == eng.settings.netdev.link_group

    record = eng.service.get(vid)
    assert record.lifecycle == Lifecycle.PLUGGED
    assert record.allocation is not None and record.allocation.port == name
    assert eng.service.ofport(record) == int(iface_col(ovs, name, "ofport"))


def test_second_plug_with_same_body_is_idempotent(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    inst = instance()
    first = eng.service.plug(plug_request(vif, inst))
    index = link(name)["index"]  # type: ignore[index]
    uuid_before = iface_col(ovs, name, "_uuid")
    second = eng.service.plug(plug_request(vif, inst))
    assert first.created and not second.created
    assert link(name)["index"] == index  # type: ignore[index]
    assert iface_col(ovs, name, "_uuid") == uuid_before
    assert len(eng.service.list()) == 1


def test_replug_recreates_a_deleted_tap(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    inst = instance()
    eng.service.plug(plug_request(vif, inst))
    with IPRoute() as ipr:
        ipr.link("del", ifname=name)
    assert link(name) is None
    eng.service.plug(plug_request(vif, inst))
    assert link(name) is not None
    assert int(iface_col(ovs, name, "ofport")) > 0


def test_conflicting_body_is_refused_and_changes_nothing(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    inst = instance()
    eng.service.plug(plug_request(vif, inst))
    before = iface_ids(ovs, name)
    other = with_data(vif, address=mac())
    with pytest.raises(exceptions.VIFConflict):
        eng.service.plug(plug_request(other, inst))
    assert iface_ids(ovs, name) == before


def test_unplug_removes_port_and_tap(eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox) -> None:
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    eng.service.plug(plug_request(vif))
    eng.service.unplug(vif_id_of(vif))
    assert name not in ports_of(ovs, bridge_of(eng))
    assert link(name) is None
    with pytest.raises(exceptions.VIFNotFound):
        eng.service.get(vif_id_of(vif))
    with pytest.raises(exceptions.VIFNotFound):
        eng.service.unplug(vif_id_of(vif))


def test_plug_refused_before_any_change(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    ports_before = ovs.vsctl("list", "Interface")
    for bad, error in (
        (ovs_vif(bridge="br-not-allowed", name=name), exceptions.BridgeNotAllowed),
        (ovs_vif(bridge=bridge_of(eng), name="x" * 16), exceptions.InvalidDeviceName),
        (ovs_vif(bridge=bridge_of(eng), name="a/b"), exceptions.InvalidDeviceName),
    ):
        with pytest.raises(error):
            eng.service.plug(plug_request(bad))
    newer = dict(ovs_vif(bridge=bridge_of(eng), name=name))
    newer["versioned_object.version"] = "1.1"
    with pytest.raises(exceptions.UnsupportedVersion) as info:
        eng.service.plug(plug_request(newer))
    assert info.value.context["max_version"] == "1.0"
    assert link(name) is None
    assert ovs.vsctl("list", "Interface") == ports_before
    assert eng.service.list() == []


def test_device_owned_by_someone_else_is_not_taken(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpv")
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=unique("vpp"))
    try:
        vif = ovs_vif(bridge=bridge_of(eng), name=name)
        with pytest.raises(exceptions.DeviceInUse):
            eng.service.plug(plug_request(vif))
        assert link(name)["kind"] == "veth"  # type: ignore[index]
        assert name not in ports_of(ovs, bridge_of(eng))
        assert eng.service.list() == []
    finally:
        with IPRoute() as ipr:
            ipr.link("del", ifname=name)


def test_ovsdb_failure_rolls_back_the_tap(tmp_path: Path) -> None:
    """The tap exists only while its port can: with ovsdb-server gone mid-plug
    the plug fails, the tap is removed, and when the server returns no port
    appears (the removal was queued behind the late write)."""
    directory = tempfile.mkdtemp(prefix="vpdb-", dir="/tmp")
    sb = ovs_sandbox.OvsSandbox(directory)
    try:
        sb.dir.mkdir(parents=True, exist_ok=True)
        sb._run("ovsdb-tool", "create", str(sb.db_path), ovs_sandbox._schema_path())
        sb.start_ovsdb()
        sb.vsctl("--no-wait", "init")
        br = unique("vpbr")
        settings = settings_for(sb.remote, tmp_path / "state", bridge=br, timeout=1.5)
        with running_engine(settings) as e:
            assert e.service is not None
            sb.stop_ovsdb()
            name = unique("vpt")
            vif = ovs_vif(bridge=br, name=name)
            with pytest.raises(exceptions.OvsdbTimeout):
                e.service.plug(plug_request(vif, wait="none"))
            assert link(name) is None
            assert e.service.list() == []
            sb.start_ovsdb()
            deadline = time.monotonic() + 20
            while not (e.ovsdb is not None and e.ovsdb.connected):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # Let the queued write and its removal commit, then look.
            e.ovsdb.transact(lambda t: None)
            assert name not in sb.vsctl("--no-wait", "list", "Interface")
    finally:
        sb.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- iface-status and ofport ---------------------------------------------------------


def test_one_active_interface_per_iface_id(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None and eng.ovsdb is not None
    iface_id = str(uuid.uuid4())
    a, b = unique("vpa"), unique("vpb")
    vif_a = ovs_vif(bridge=bridge_of(eng), name=a, interface_id=iface_id)
    vif_b = ovs_vif(bridge=bridge_of(eng), name=b, interface_id=iface_id)
    eng.service.plug(plug_request(vif_a))
    eng.service.plug(plug_request(vif_b))
    assert iface_ids(ovs, a)["iface-status"] == "inactive"
    assert iface_ids(ovs, b)["iface-status"] == "active"
    assert eng.service.get(vif_id_of(vif_a)).iface_status == "inactive"

    txns = eng.ovsdb.transactions
    eng.service.set_status(vif_id_of(vif_a), "active")
    assert eng.ovsdb.transactions == txns + 1  # switching is one transaction
    assert iface_ids(ovs, a)["iface-status"] == "active"
    assert iface_ids(ovs, b)["iface-status"] == "inactive"
    assert eng.service.get(vif_id_of(vif_b)).iface_status == "inactive"

    # Not an OVN host (no ovn-remote): both keep iface-id, as the
    # IntegrationGuide says.
    assert iface_ids(ovs, a)["iface-id"] == iface_ids(ovs, b)["iface-id"] == iface_id
    assert "vifplug-iface-id" not in iface_ids(ovs, a) | iface_ids(ovs, b)

    # The self-migration exception, asked for explicitly.
    eng.service.set_status(vif_id_of(vif_b), "active", allow_dual_active=True)
    assert iface_ids(ovs, a)["iface-status"] == "active"
    assert iface_ids(ovs, b)["iface-status"] == "active"
    with pytest.raises(exceptions.InvalidRequest):
        eng.service.set_status(vif_id_of(vif_b), "up")


def test_ofport_found_by_iface_id_and_attached_mac(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None and eng.ovsdb is not None
    name = unique("vpt")
    address = mac()
    vif = ovs_vif(bridge=bridge_of(eng), name=name, address=address)
    eng.service.plug(plug_request(vif))
    expected = int(
        ovs.vsctl(
            "--bare",
            "--columns=ofport",
            "find",
            "Interface",
            f'external_ids:attached-mac="{address}"',
        ).strip()
    )
    assert expected > 0
    assert eng.ovsdb.find_ofport(attached_mac=address) == expected
    assert eng.ovsdb.find_ofport(iface_id=vif_id_of(vif)) == expected
    assert eng.ovsdb.find_ofport(iface_id="no-such-id") is None


# -- the datapath ---------------------------------------------------------------------


def test_frame_written_into_one_tap_comes_out_of_another(eng: engine_mod.Engine) -> None:
    assert eng.service is not None
    a, b = unique("vpa"), unique("vpb")
    mac_a, mac_b = mac(), mac()
    eng.service.plug(plug_request(ovs_vif(bridge=bridge_of(eng), name=a, address=mac_a)))
    eng.service.plug(plug_request(ovs_vif(bridge=bridge_of(eng), name=b, address=mac_b)))
    fd_a, fd_b = open_tap(a), open_tap(b)
    try:
        payload = b"vifplug-datapath-" + uuid.uuid4().bytes
        frame = Frame(
            dst=b"\xff" * 6,
            src=mac_bytes(mac_a),
            ethertype=0x88B5,
            payload=payload.ljust(46, b"\0"),
        ).pack()
        deadline = time.monotonic() + 10
        seen = False
        while not seen and time.monotonic() < deadline:
            import os

            os.write(fd_a, frame)
            ready, _, _ = select.select([fd_b], [], [], 0.5)
            while ready:
                data = os.read(fd_b, 65536)
                if payload in data:
                    seen = True
                    break
                ready, _, _ = select.select([fd_b], [], [], 0.1)
        assert seen, "the frame never came out of the second tap"
    finally:
        import os

        os.close(fd_a)
        os.close(fd_b)


# -- concurrency -----------------------------------------------------------------------


def _wait_until(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_many_threads_plugging_share_transactions(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    """Concurrent plugs share OVSDB transactions and concurrent unplugs share
    group deletes.  The test makes the overlap certain instead of hoping the
    scheduler gives it: it announces a write of its own (``expecting()``,
    with a gathering bound far above any machine's slowness) until every
    plug has made its tap, and holds the delete group until every unplug
    has removed its port."""
    from vifplug.netdev import delete as delete_mod

    br = unique("vpbr")
    settings = settings_for(ovs.remote, tmp_path / "state", bridge=br, gather_max=120.0)
    n = 60
    vifs = [ovs_vif(bridge=br, name=unique("vpm")) for _ in range(n)]
    names = [v["versioned_object.data"]["vif_name"] for v in vifs]
    with running_engine(settings) as eng:
        try:
            assert eng.service is not None and eng.ovsdb is not None
            # Make sure the bridge exists so that only port writes are counted.
            eng.service.plug(plug_request(vifs[0]))
            before = eng.ovsdb.transactions
            errors: list[BaseException] = []

            def plug(v: dict[str, Any]) -> None:
                try:
                    eng.service.plug(plug_request(v))  # type: ignore[union-attr]
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=plug, args=(v,)) for v in vifs[1:]]
            with eng.ovsdb.expecting():
                for t in threads:
                    t.start()
                # A tap is made inside its plug's own expecting(), so once all
                # exist every port write is announced and the batch waits for it.
                _wait_until(lambda: all(link(n) is not None for n in names), "taps not made")
            for t in threads:
                t.join(120)
            assert not any(t.is_alive() for t in threads)
            assert not errors
            used = eng.ovsdb.transactions - before
            print(f"{n - 1} concurrent plugs used {used} OVSDB transactions")
            assert used <= 3, used
            ports = ports_of(ovs, br)
            for name in names:
                assert name in ports
                assert int(iface_col(ovs, name, "ofport")) > 0
            assert len(eng.service.list()) == n
            # Concurrent unplugs share device deletions too.
            calls_before = eng.deleter.group_delete_calls
            threads = [
                threading.Thread(target=eng.service.unplug, args=(vif_id_of(v),)) for v in vifs
            ]
            with delete_mod._lock_for(settings.netdev.delete_group):
                for t in threads:
                    t.start()
                _wait_until(lambda: not set(names) & ports_of(ovs, br), "ports not removed")
                # Each unplug deletes its devices right after its port; give the
                # last ones a moment to queue (stragglers only make a batch more).
                # A tap put aside ([netdev] delete_aside) does not queue: its
                # unplug returns, and the reaper's delete waits for the lock.
                deadline = time.monotonic() + 10
                while (
                    len(eng.deleter._pending) < n - 1
                    and any(t.is_alive() for t in threads)
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
            for t in threads:
                t.join(120)
            assert not any(t.is_alive() for t in threads)
            assert eng.service.list() == []
            eng.deleter.flush()
            calls = eng.deleter.group_delete_calls - calls_before
            print(f"{n} concurrent unplugs used {calls} group deletes")
            assert calls <= n // 4, calls
            for name in names:
                assert link(name) is None
        finally:
            ovs.vsctl("--if-exists", "del-br", br)


# -- hybrid plug -------------------------------------------------------------------------


def test_hybrid_plug_builds_linux_bridge_and_veth_into_ovs(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    vid = str(uuid.uuid4())
    tap = unique("vpt")
    qbr = "qbr" + vid[:11]
    vif = ovs_vif(bridge=bridge_of(eng), vif_id=vid, name=tap, obj="VIFBridge", bridge_name=qbr)
    eng.service.plug(plug_request(vif))
    qvb, qvo = "qvb" + vid[:11], "qvo" + vid[:11]
    assert link(qbr)["kind"] == "bridge"  # type: ignore[index]
    assert link(qvb)["kind"] == "veth"  # type: ignore[index]
    assert link(qvb)["master"] == link(qbr)["index"]  # type: ignore[index]
    assert link(tap)["master"] == link(qbr)["index"]  # type: ignore[index]
    assert qvo in ports_of(ovs, bridge_of(eng))
    assert iface_ids(ovs, qvo)["iface-id"] == vid
    assert int(iface_col(ovs, qvo, "ofport")) > 0
    eng.service.unplug(vid)
    for dev in (qbr, qvb, qvo, tap):
        assert link(dev) is None
    assert qvo not in ports_of(ovs, bridge_of(eng))


def test_host_identity_written_as_the_integration_guide_says(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    import dataclasses as dc

    br = unique("vpbr")
    base = settings_for(ovs.remote, tmp_path / "state", bridge=br)
    system_id = str(uuid.uuid4())
    settings = dc.replace(
        base,
        host=dc.replace(
            base.host,
            system_id=system_id,
            system_type="debian",
            system_version="12",
            enable_statistics=True,
        ),
    )
    with running_engine(settings) as e:
        assert e.system_id == system_id
        get = lambda col: ovs.vsctl("get", "Open_vSwitch", ".", col).strip().strip('"')  # noqa: E731
        assert get("external_ids:system-id") == system_id
        assert get("system_type") == "debian"
        assert get("system_version") == "12"
        assert get("other_config:enable-statistics") == "true"
    # Unconfigured, the next start keeps the system-id OVSDB has.
    with running_engine(
        dc.replace(base, host=dc.replace(base.host, state_dir=str(tmp_path / "state2")))
    ) as e:
        assert e.system_id == system_id
    ovs.vsctl("--if-exists", "del-br", br)


def test_taps_are_owned_by_the_configured_user_and_group(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    import dataclasses as dc

    br = unique("vpbr")
    base = settings_for(ovs.remote, tmp_path / "state", bridge=br)
    settings = dc.replace(base, netdev=dc.replace(base.netdev, tap_owner=4242, tap_group=4343))
    try:
        with running_engine(settings) as e:
            assert e.service is not None
            name = unique("vpt")
            e.service.plug(plug_request(ovs_vif(bridge=br, name=name)))
            sysfs = Path("/sys/class/net") / name
            assert (sysfs / "owner").read_text().strip() == "4242"
            assert (sysfs / "group").read_text().strip() == "4343"
    finally:
        ovs.vsctl("--if-exists", "del-br", br)


def test_repeat_with_a_different_option_is_a_conflict(eng: engine_mod.Engine) -> None:
    assert eng.service is not None
    vif = ovs_vif(bridge=bridge_of(eng), name=unique("vpt"))
    inst = instance()
    eng.service.plug(plug_request(vif, inst))
    with pytest.raises(exceptions.VIFConflict):
        eng.service.plug(plug_request(vif, inst, iface_status="inactive"))
    with pytest.raises(exceptions.VIFConflict):
        eng.service.plug(plug_request(vif, inst, allow_dual_active=True))
    # How the caller waits is not content: the same plug with another wait is a repeat.
    assert not eng.service.plug(plug_request(vif, inst, wait="none")).created


def test_operators_linux_bridge_is_used_but_never_taken(eng: engine_mod.Engine) -> None:
    from vifplug import objects

    assert eng.service is not None
    lb = unique("vplb")
    with IPRoute() as ipr:
        ipr.link("add", ifname=lb, kind="bridge")
    try:
        vif = objects.vif.VIFBridge(
            id=str(uuid.uuid4()),
            address=mac(),
            plugin="linux_bridge",
            bridge_name=lb,
            vif_name=unique("vpt"),
            network=objects.network.Network(id=str(uuid.uuid4())),
        )
        rec = eng.service.plug(plug_request(vif.obj_to_primitive())).record
        assert rec.allocation is not None
        assert link(rec.allocation.device)["master"] == link(lb)["index"]  # type: ignore[index]
        assert link(lb)["group"] == 0  # type: ignore[index]
        eng.service.unplug(rec.vif_id)
        assert link(rec.allocation.device) is None
        assert eng.reconciler is not None
        eng.reconciler.run()
        assert link(lb) is not None, "the operator's bridge was removed"
    finally:
        with IPRoute() as ipr:
            ipr.link("del", ifname=lb)


@pytest.mark.parametrize(
    ("mode", "iface_type"), [("client", "dpdkvhostuser"), ("server", "dpdkvhostuserclient")]
)
def test_vhostuser_vif_becomes_an_ovs_dpdk_port(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox, mode: str, iface_type: str
) -> None:
    """As os-vif's ovs plugin does for OVS-DPDK.  This OVS has no DPDK, so the
    port cannot come up (wait=none); what is checked is what OVSDB holds."""
    from vifplug import objects

    assert eng.service is not None
    vid = str(uuid.uuid4())
    path = f"/var/run/vhu/{vid[:8]}.sock"
    vif = objects.vif.VIFVHostUser(
        id=vid,
        address=mac(),
        plugin="ovs",
        mode=mode,
        path=path,
        network=objects.network.Network(id=str(uuid.uuid4()), bridge=bridge_of(eng), mtu=1400),
        port_profile=objects.vif.VIFPortProfileOpenVSwitch(interface_id=vid),
    )
    rec = eng.service.plug(plug_request(vif.obj_to_primitive(), wait="none")).record
    port = "vhu" + vid[:11]
    assert rec.allocation is not None and rec.allocation.port == port
    assert rec.allocation.created_devices == ()
    assert iface_col(ovs, port, "type") == iface_type
    assert iface_ids(ovs, port)["iface-id"] == vid
    options = iface_col(ovs, port, "options")
    assert (f'vhost-server-path="{path}"' in options) == (mode == "server")
    assert iface_col(ovs, port, "mtu_request") == "1400"
    eng.service.unplug(vid)
    assert port not in ports_of(ovs, bridge_of(eng))


# -- what belongs to whom ---------------------------------------------------------


def test_second_vif_with_the_same_device_name_is_refused_and_first_untouched(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    first = ovs_vif(bridge=bridge_of(eng), name=name)
    eng.service.plug(plug_request(first))
    before = (iface_ids(ovs, name), link(name))
    for address in (mac(), first["versioned_object.data"]["address"]):
        second = ovs_vif(bridge=bridge_of(eng), name=name, address=address)
        with pytest.raises(exceptions.DeviceInUse):
            eng.service.plug(plug_request(second))
    assert (iface_ids(ovs, name), link(name)) == before
    assert [r.vif_id for r in eng.service.list()] == [vif_id_of(first)]


def test_the_tap_is_made_while_the_intent_is_written_and_kept_once_it_is_durable(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state writer is held: the plug makes its tap meanwhile, but not
    persistent (killed now, the kernel would remove it with the daemon), no
    port yet, and no leak listed; once the intent is durable it goes on."""
    assert eng.service is not None and eng.store is not None and eng.reconciler is not None
    held, commit = threading.Event(), eng.store._try_commit

    def slow_commit(ops: Any) -> Any:
        assert held.wait(60), "the test never let the writer go"
        return commit(ops)

    monkeypatch.setattr(eng.store, "_try_commit", slow_commit)
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    outcome: list[Any] = []
    plugging = threading.Thread(
        target=lambda: outcome.append(eng.service.plug(plug_request(vif)))  # type: ignore[union-attr]
    )
    plugging.start()
    try:
        _wait_until(lambda: netdev.get_link(name) is not None, "the tap was not made")
        during = netdev.get_link(name)
        assert during is not None and during.in_the_making
        assert eng.service.list() == []
        assert name not in ports_of(ovs, bridge_of(eng))
        assert name not in eng.reconciler.leaks().links
    finally:
        held.set()
        plugging.join(60)
    assert outcome and outcome[0].created
    kept = netdev.get_link(name)
    assert kept is not None and kept.tun_persist
    assert name in ports_of(ovs, bridge_of(eng))


def test_a_refused_intent_leaves_no_tap(eng: engine_mod.Engine) -> None:
    """The first VIF's tap is gone (deleted by hand): the second VIF with its
    name makes a tap while its intent is written, and the refused intent
    takes that tap with it."""
    assert eng.service is not None
    name = unique("vpt")
    first = ovs_vif(bridge=bridge_of(eng), name=name)
    eng.service.plug(plug_request(first))
    with IPRoute() as ipr:
        ipr.link("del", ifname=name)
    second = ovs_vif(bridge=bridge_of(eng), name=name)
    with pytest.raises(exceptions.DeviceInUse):
        eng.service.plug(plug_request(second))
    assert link(name) is None
    assert [r.vif_id for r in eng.service.list()] == [vif_id_of(first)]


def test_devices_and_ports_vifplug_did_not_make_are_refused(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    tap, qbr, port = unique("vpt"), unique("vpq"), unique("vpo")
    with IPRoute() as ipr:
        ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
        ipr.link("add", ifname=qbr, kind="bridge")
    ovs.vsctl(
        "--may-exist",
        "add-br",
        bridge_of(eng),
        "--",
        "set",
        "Bridge",
        bridge_of(eng),
        "datapath_type=netdev",
    )
    ovs.vsctl("add-port", bridge_of(eng), port, "--", "set", "Interface", port, "type=internal")
    try:
        cases = [
            ovs_vif(bridge=bridge_of(eng), name=tap),
            ovs_vif(bridge=bridge_of(eng), obj="VIFBridge", bridge_name=qbr, name=unique("vpt")),
            ovs_vif(bridge=bridge_of(eng), name=port, profile={"create_tap": False}),
        ]
        for vif in cases:
            with pytest.raises(exceptions.DeviceInUse):
                eng.service.plug(plug_request(vif, wait="none"))
        assert link(tap)["group"] == 0 and link(qbr)["group"] == 0  # type: ignore[index]
        assert iface_col(ovs, port, "type") == "internal"
        assert "vifplug-owner" not in iface_ids(ovs, port)
        assert eng.service.list() == []
    finally:
        with IPRoute() as ipr:
            for dev in (tap, qbr):
                ipr.link("del", ifname=dev)
        ovs.vsctl("--if-exists", "del-port", port)


def test_failed_repeat_plug_keeps_the_acknowledged_port(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    inst = instance()
    eng.service.plug(plug_request(vif, inst))
    # Someone replaces the tap with a device of their own; the repeat must
    # refuse it, and must not take the VIF's port down with it.
    with IPRoute() as ipr:
        ipr.link("del", ifname=name)
        ipr.link("add", ifname=name, kind="veth", peer=unique("vpp"))
    try:
        with pytest.raises(exceptions.DeviceInUse):
            eng.service.plug(plug_request(vif, inst))
        assert name in ports_of(ovs, bridge_of(eng))
        assert eng.service.get(vif_id_of(vif)).lifecycle == Lifecycle.PLUGGED
    finally:
        with IPRoute() as ipr:
            ipr.link("del", ifname=name)


def test_port_for_a_tap_libvirt_makes_later_waits_for_it(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """create_tap=False (os-vif: libvirt creates the tap): the plug writes the
    port, waits for its ofport, and answers once the tap appears."""
    assert eng.service is not None
    name = unique("vpt")
    vif = ovs_vif(bridge=bridge_of(eng), name=name, profile={"create_tap": False})

    def libvirt() -> None:
        time.sleep(1.0)
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", ifname=name, state="up")

    t = threading.Thread(target=libvirt)
    t.start()
    try:
        record = eng.service.plug(plug_request(vif, timeout=20)).record
        t.join()
        assert record.allocation is not None and record.allocation.created_devices == ()
        assert int(iface_col(ovs, name, "ofport")) > 0
        eng.service.unplug(record.vif_id)
        assert link(name) is not None, "vifplug deleted a tap it did not create"
    finally:
        t.join()
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=name):
                ipr.link("del", ifname=name)


def test_multicast_mac_is_refused_before_any_change(eng: engine_mod.Engine) -> None:
    assert eng.service is not None
    name = unique("vpt")
    with pytest.raises(exceptions.InvalidRequest):
        eng.service.plug(
            plug_request(ovs_vif(bridge=bridge_of(eng), name=name, address="01:00:5e:00:00:01"))
        )
    assert link(name) is None and eng.service.list() == []


@pytest.fixture
def hiding(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[engine_mod.Engine]:
    """An engine told to hide inactive interfaces' iface-ids, as on OVN hosts."""
    br = unique("vpbr")
    settings = settings_for(ovs.remote, tmp_path / "state", bridge=br, inactive_iface_id="hide")
    with running_engine(settings) as e:
        try:
            yield e
        finally:
            ovs.vsctl("--if-exists", "del-br", br)


def test_hidden_iface_id_moves_with_the_active_interface(
    hiding: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    eng = hiding
    assert eng.service is not None and eng.ovsdb is not None
    iface_id = str(uuid.uuid4())
    a, b = unique("vpa"), unique("vpb")
    vif_a = ovs_vif(bridge=bridge_of(eng), name=a, interface_id=iface_id)
    vif_b = ovs_vif(bridge=bridge_of(eng), name=b, interface_id=iface_id)
    eng.service.plug(plug_request(vif_a))
    eng.service.plug(plug_request(vif_b, iface_status="inactive"))
    assert iface_ids(ovs, a)["iface-id"] == iface_id
    assert "iface-id" not in iface_ids(ovs, b)
    assert iface_ids(ovs, b)["vifplug-iface-id"] == iface_id

    txns = eng.ovsdb.transactions
    eng.service.set_status(vif_id_of(vif_b), "active")
    assert eng.ovsdb.transactions == txns + 1  # both keys move in one transaction
    ids_a, ids_b = iface_ids(ovs, a), iface_ids(ovs, b)
    assert (ids_a.get("iface-id"), ids_a.get("vifplug-iface-id")) == (None, iface_id)
    assert (ids_b.get("iface-id"), ids_b.get("vifplug-iface-id")) == (iface_id, None)
    # The iface-id index still finds both, the active one first.
    assert eng.ovsdb.find_ofport(iface_id=iface_id) == int(
        ovs.vsctl("get", "Interface", b, "ofport").strip()
    )


def test_ovn_wait_timeout_says_what_the_host_sees(eng: engine_mod.Engine) -> None:
    assert eng.service is not None
    vif = ovs_vif(bridge=bridge_of(eng), name=unique("vpw"))
    with pytest.raises(exceptions.PlugTimeout) as info:
        eng.service.plug(plug_request(vif, wait="ovn-installed", timeout=1.0))
    details = info.value.details()
    assert isinstance(details["ofport"], int) and details["ofport"] > 0
    assert details["ovn_keys_present"] == ["iface-id"]
    assert details["ovn_keys_missing"] == ["ovn-installed", "ovn-installed-ts"]
    assert details["waited"] >= 1.0
    assert "no ovn-controller is configured on this host" in info.value.message
    assert eng.service.get(vif_id_of(vif)).lifecycle == Lifecycle.PLUGGED


def test_ovn_wait_ends_at_once_when_a_newer_plug_takes_the_iface_id(
    eng: engine_mod.Engine,
) -> None:
    assert eng.service is not None
    service = eng.service
    iface_id = str(uuid.uuid4())
    first = ovs_vif(bridge=bridge_of(eng), name=unique("vpf"), interface_id=iface_id)
    second = ovs_vif(bridge=bridge_of(eng), name=unique("vps"), interface_id=iface_id)
    outcome: list[BaseException] = []

    def plug_first() -> None:
        try:
            service.plug(plug_request(first, wait="ovn-installed", timeout=120.0))
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=plug_first)
    waiter.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and eng.ovsdb is not None:
        view = eng.ovsdb.interface(str(first["versioned_object.data"]["vif_name"]))
        if view is not None and view.has_ofport:
            break
        time.sleep(0.05)
    started = time.monotonic()
    service.plug(plug_request(second))
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 60  # not the 120 s timeout
    assert len(outcome) == 1 and isinstance(outcome[0], exceptions.IfaceIdTaken)
    assert outcome[0].details()["taken_by"] == second["versioned_object.data"]["vif_name"]
