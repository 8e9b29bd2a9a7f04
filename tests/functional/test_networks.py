"""Logical networks: device pools for macvtap, portgroups, bandwidth; real netlink.

Physical devices are stood in for by veth ends (dummy devices do not exist on
this kernel); a macvtap on a veth behaves like one on a NIC.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_fixture import instance, mac, ovs_vif, plug_request, settings_for, vif_id_of
from pyroute2 import IPRoute
from test_engine import link, ports_of

import ovs_sandbox
from helpers import unique
from vifplug import exceptions, objects
from vifplug.plugging import engine, networks
from vifplug.records import Bandwidth

MACVLAN_MODE = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru"}


def direct_vif(network: str, *, vif_id: str | None = None, profile: Any = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "id": vif_id or str(uuid.uuid4()),
        "address": mac(),
        "plugin": "direct",
        "vif_name": unique("vpm"),
        "network": objects.network.Network(id=str(uuid.uuid4()), label=network),
    }
    if profile is not None:
        kwargs["port_profile"] = profile
    primitive: dict[str, Any] = objects.vif.VIFDirect(**kwargs).obj_to_primitive()
    return primitive


def macvtap_of(name: str) -> tuple[str, str] | None:
    """(parent device, mode) of macvtap ``name`` as the kernel reports it."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        msg = ipr.get_links(idx[0])[0]
        mode = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_MACVTAP_MODE")
        parent = ipr.get_links(msg.get("link"))[0].get("ifname")
        return parent, MACVLAN_MODE.get(mode, str(mode))


def make_engine(
    ovs: ovs_sandbox.OvsSandbox,
    state: Path,
    bridge: str,
    defs: dict[str, networks.NetworkDef],
    owner: str,
) -> engine.Engine:
    settings = settings_for(
        ovs.remote, state, bridge=bridge, link_group=0x5A5A0000 + (hash(owner) & 0xFFFF)
    )
    return engine.Engine(settings, owner=owner, network_defs=defs).start()


@pytest.fixture
def make(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[Any]:
    made: list[engine.Engine] = []
    owner = f"test-{uuid.uuid4().hex[:8]}"
    br = unique("vpbr")

    def factory(defs: dict[str, networks.NetworkDef]) -> engine.Engine:
        e = make_engine(ovs, tmp_path / "state", br, defs, owner)
        made.append(e)
        return e

    try:
        yield factory
    finally:
        for e in made:
            if e.ready.is_set():
                assert e.service is not None
                for r in e.service.list():
                    e.service.unplug(r.vif_id)
                e.stop()
        ovs.vsctl("--if-exists", "del-br", br)


def pool(name: str, devices: list[str], mode: str, **kw: Any) -> dict[str, networks.NetworkDef]:
    return {
        name: networks.NetworkDef(name=name, type="direct", devices=tuple(devices), mode=mode, **kw)
    }


def test_passthrough_pool_is_exclusive_and_exhausts_cleanly(make: Any, nics: list[str]) -> None:
    e = make(pool("pt", nics[:2], "passthrough"))
    vifs = [direct_vif("pt") for _ in range(3)]
    got = []
    for v in vifs[:2]:
        r = e.service.plug(plug_request(v)).record
        got.append(r.allocation.pool_device)
        assert macvtap_of(r.allocation.device) == (r.allocation.pool_device, "passthru")
    assert sorted(got) == sorted(nics[:2])
    with pytest.raises(exceptions.PoolExhausted):
        e.service.plug(plug_request(vifs[2]))
    assert link(vifs[2]["versioned_object.data"]["vif_name"]) is None
    assert len(e.service.list()) == 2
    # Release on unplug: the freed device is given to the next VIF.
    e.service.unplug(vif_id_of(vifs[0]))
    r = e.service.plug(plug_request(vifs[2])).record
    assert r.allocation.pool_device == got[0]
    view = {n["name"]: n for n in e.service.networks_view()}["pt"]
    held = {d["device"]: d["vifs"] for d in view["devices"]}
    assert held[got[0]] == [vif_id_of(vifs[2])]
    assert held[got[1]] == [vif_id_of(vifs[1])]


@pytest.mark.parametrize("mode", ["vepa", "bridge", "private"])
def test_shared_modes_share_the_least_used_device(make: Any, nics: list[str], mode: str) -> None:
    e = make(pool("shared", nics[:2], mode))
    records = [e.service.plug(plug_request(direct_vif("shared"))).record for _ in range(4)]
    used = [r.allocation.pool_device for r in records]
    assert sorted(used) == sorted([nics[0], nics[0], nics[1], nics[1]])
    for r in records:
        assert macvtap_of(r.allocation.device) == (r.allocation.pool_device, mode)


def test_private_mode_with_8021qbh_is_exclusive(make: Any, nics: list[str]) -> None:
    e = make(pool("pq", nics[:1], "private"))
    qbh = objects.vif.VIFPortProfile8021Qbh(profile_id="finance")
    e.service.plug(plug_request(direct_vif("pq", profile=qbh)))
    with pytest.raises(exceptions.PoolExhausted):
        e.service.plug(plug_request(direct_vif("pq", profile=qbh)))


def test_pool_allocation_survives_restart(make: Any, nics: list[str]) -> None:
    defs = pool("pt", nics[:2], "passthrough")
    e = make(defs)
    first = e.service.plug(plug_request(direct_vif("pt"))).record
    e.stop()
    e2 = make(defs)
    assert e2.service.get(first.vif_id).allocation.pool_device == first.allocation.pool_device
    second = e2.service.plug(plug_request(direct_vif("pt"))).record
    assert second.allocation.pool_device != first.allocation.pool_device
    assert link(first.allocation.device) is not None


def kernel_polices_ingress(dev: str) -> bool:
    """Whether this kernel has the tc police action (some do not)."""
    from vifplug import netdev

    try:
        netdev.set_bandwidth(dev, ingress_kbps=100)
    except exceptions.NetdevError:
        return False
    netdev.clear_bandwidth(dev)
    return True


def test_portgroup_outbound_bandwidth_on_macvtap_is_shaped_with_tc(
    make: Any, nics: list[str]
) -> None:
    from vifplug import netdev

    bw = Bandwidth(outbound_average=500, outbound_burst=128)
    pg = networks.Portgroup(name="gold", bandwidth=bw)
    e = make(pool("bwnet", nics[:1], "vepa", portgroups={"gold": pg}, default_portgroup="gold"))
    r = e.service.plug(plug_request(direct_vif("bwnet"))).record
    assert r.allocation.portgroup == "gold"
    limits = netdev.get_bandwidth(r.allocation.device)
    expected = netdev.Bandwidth.for_vm("macvtap", outbound_kbps=500, outbound_burst_kb=128)
    assert expected.egress_kbps == 500 and expected.ingress_kbps is None
    assert limits.egress_kbps == 500
    assert limits.ingress_kbps is None
    e.service.unplug(r.vif_id)
    assert link(r.allocation.device) is None


def test_portgroup_inbound_bandwidth_on_macvtap(make: Any, nics: list[str]) -> None:
    """Traffic into the VM is policed at the macvtap's ingress.  On a kernel
    without the police action the plug is refused, with nothing left behind,
    rather than silently plugged without the limit."""
    from vifplug import netdev

    bw = Bandwidth(inbound_average=1000, inbound_burst=256)
    pg = networks.Portgroup(name="gold", bandwidth=bw)
    e = make(pool("bwnet", nics[:1], "vepa", portgroups={"gold": pg}, default_portgroup="gold"))
    v = direct_vif("bwnet")
    if kernel_polices_ingress(nics[2]):
        r = e.service.plug(plug_request(v)).record
        assert netdev.get_bandwidth(r.allocation.device).ingress_kbps == 1000
    else:
        with pytest.raises(exceptions.NetdevError) as info:
            e.service.plug(plug_request(v))
        assert "police" in str(info.value)
        assert link(v["versioned_object.data"]["vif_name"]) is None
        assert e.service.list() == []


def test_portgroup_bandwidth_on_ovs_port_sets_ingress_policing(
    make: Any, ovs: ovs_sandbox.OvsSandbox
) -> None:
    net_bridge = unique("vpbn")
    bw = Bandwidth(outbound_average=1000, outbound_burst=100)
    defs = {
        "tenant": networks.NetworkDef(
            name="tenant",
            type="ovs",
            bridge=net_bridge,
            bridge_id="tenant-net-1",
            hwaddr="02:00:00:aa:bb:cc",
            portgroups={"silver": networks.Portgroup("silver", bandwidth=bw)},
            default_portgroup="silver",
        )
    }
    e = make(defs)
    try:
        name = unique("vpt")
        vif = ovs_vif(bridge="ignored-when-network-is-configured", name=name)
        vif["versioned_object.data"]["network"]["versioned_object.data"]["label"] = "tenant"
        r = e.service.plug(plug_request(vif, instance())).record
        assert r.allocation.bridge == net_bridge
        assert name in ports_of(ovs, net_bridge)
        assert ovs.vsctl("get", "Interface", name, "ingress_policing_rate").strip() == "8000"
        assert ovs.vsctl("get", "Interface", name, "ingress_policing_burst").strip() == "800"
        assert (
            ovs.vsctl("get", "Bridge", net_bridge, "external_ids:bridge-id").strip().strip('"')
            == "tenant-net-1"
        )
        assert (
            ovs.vsctl("get", "Bridge", net_bridge, "other_config:hwaddr").strip().strip('"')
            == "02:00:00:aa:bb:cc"
        )
        e.service.unplug(r.vif_id)
        assert name not in ports_of(ovs, net_bridge)
    finally:
        ovs.vsctl("--if-exists", "del-br", net_bridge)


def test_reload_keeps_networks_that_still_have_vifs(make: Any, nics: list[str]) -> None:
    e = make(pool("pt", nics[:2], "passthrough"))
    r = e.service.plug(plug_request(direct_vif("pt"))).record
    refused = e.reload_networks(pool("other", nics[2:], "vepa"))
    assert refused == ["pt"]
    names = {n["name"] for n in e.service.networks_view()}
    assert names == {"pt", "other"}
    assert link(r.allocation.device) is not None
    e.service.unplug(r.vif_id)
    assert e.reload_networks(pool("other", nics[2:], "vepa")) == []
    assert {n["name"] for n in e.service.networks_view()} == {"other"}


def test_unknown_portgroup_is_refused_before_any_change(make: Any, nics: list[str]) -> None:
    e = make(pool("pt", nics[:1], "passthrough"))
    v = direct_vif("pt")
    with pytest.raises(exceptions.InvalidRequest):
        e.service.plug(plug_request(v, portgroup="nope"))
    assert e.service.list() == []
    assert link(v["versioned_object.data"]["vif_name"]) is None


def test_ovs_vif_naming_a_direct_network_is_refused(make: Any, nics: list[str]) -> None:
    e = make(pool("pt", nics[:1], "passthrough"))
    vif = ovs_vif(bridge=e.settings.ovs.integration_bridge, name=unique("vpt"))
    vif["versioned_object.data"]["network"]["versioned_object.data"]["label"] = "pt"
    with pytest.raises(exceptions.InvalidRequest):
        e.service.plug(plug_request(vif))
    view = {n["name"]: n for n in e.service.networks_view()}["pt"]
    assert all(d["vifs"] == [] for d in view["devices"])
