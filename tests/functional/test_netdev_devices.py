"""vifplug.netdev against the real kernel: taps, macvtaps, veths, bridges.

Everything is read back through netlink (and sysfs where the kernel shows
more there), never taken from what we asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_fixture import open_tap
from test_netdev_support import Devices, in_threads, ip_kind, ip_link

from vifplug import exceptions, netdev

IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800
IFF_NO_PI = 0x1000


def sysfs(name: str, attr: str) -> str | None:
    path = Path("/sys/class/net") / name / attr
    return path.read_text().strip() if path.exists() else None


def tap_spec(dev: Devices, name: str | None = None, **kw: Any) -> netdev.TapSpec:
    return netdev.TapSpec(name=name or dev.name("t"), link_group=dev.link_group, **kw)


def veth(dev: Devices, mtu: int | None = None) -> tuple[str, str]:
    name, peer = dev.name("v"), dev.name("v")
    netdev.ensure_veth(netdev.VethSpec(name=name, peer=peer, mtu=mtu, link_group=dev.link_group))
    return name, peer


# --- tap ---------------------------------------------------------------------------


@pytest.mark.parametrize("multiqueue", [True, False])
def test_tap_is_created_as_specified(dev: Devices, multiqueue: bool) -> None:
    spec = tap_spec(
        dev, mac="fa:16:3e:00:00:01", mtu=1442, owner=1234, group_owner=4321, multiqueue=multiqueue
    )
    info, created = netdev.ensure_tap(spec)

    assert created
    read = netdev.get_link(spec.name)
    assert read == info
    assert read is not None
    assert (read.kind, read.tun_type) == ("tun", "tap")
    assert read.mac == "fa:16:3e:00:00:01"
    assert read.mtu == 1442
    assert read.group == dev.link_group
    assert read.up
    assert read.multi_queue is multiqueue
    assert (read.tun_owner, read.tun_group) == (1234, 4321)
    # And as iproute2 reads it, not through vifplug's own code.
    seen = ip_link(spec.name)
    assert seen is not None
    kind, data = ip_kind(seen)
    assert (kind, data["type"], data["pi"], data["persist"]) == ("tun", "tap", False, True)
    assert data["multi_queue"] is multiqueue
    assert (data["user"], data["group"]) == (1234, 4321)
    assert (seen["address"], seen["mtu"], seen["group"]) == (
        "fa:16:3e:00:00:01",
        1442,
        str(dev.link_group),
    )
    assert "UP" in seen["flags"]

    flags = sysfs(spec.name, "tun_flags")
    if flags is not None:  # /sys shows this namespace (nsisolate remounts it)
        expected = IFF_TAP | IFF_NO_PI | IFF_PERSIST | (IFF_MULTI_QUEUE if multiqueue else 0)
        assert int(flags, 16) == expected
        assert sysfs(spec.name, "owner") == "1234"
        assert sysfs(spec.name, "group") == "4321"


def test_new_tap_is_silent_until_a_vm_attaches(dev: Devices) -> None:
    """A new tap is up without a carrier, so the host gives it no IPv6
    address and sends nothing out of it (no DAD, router solicitation or MLD
    report into the VM's network, no packet for ovs-vswitchd to handle)."""
    info, created = netdev.ensure_tap(tap_spec(dev, mac="fa:16:3e:00:00:02", mtu=1450))
    assert created
    assert_silent(info)


def assert_silent(info: netdev.LinkInfo) -> None:
    """Up, no carrier, no address, nothing sent: as the kernel reports it."""
    assert info.up
    seen = ip_link(info.name)
    assert seen is not None
    assert "UP" in seen["flags"] and "NO-CARRIER" in seen["flags"]
    addrs = subprocess.run(
        ["ip", "-j", "addr", "show", "dev", info.name], capture_output=True, text=True, check=True
    )
    assert addrs.stdout.count('"local"') == 0, addrs.stdout
    if sysfs(info.name, "statistics/tx_packets") is not None:
        assert sysfs(info.name, "statistics/tx_packets") == "0"


def test_a_new_tap_gets_its_carrier_when_a_vm_attaches(dev: Devices) -> None:
    """The carrier the new tap was made without is the kernel's to give back:
    it comes on as soon as a VM's QEMU attaches (here the test, through
    ``/dev/net/tun``), and goes again when it lets go."""
    info, created = netdev.ensure_tap(tap_spec(dev, mac="fa:16:3e:00:00:03", mtu=1450))
    assert created
    fd = open_tap(info.name)
    try:
        seen = ip_link(info.name)
        assert seen is not None and "LOWER_UP" in seen["flags"], seen
    finally:
        os.close(fd)
    seen = ip_link(info.name)
    assert seen is not None and "NO-CARRIER" in seen["flags"], seen


@pytest.mark.parametrize("known", [True, False], ids=["refused", "unknown"])
def test_without_tunsetcarrier_a_new_tap_is_set_up_once_detached(
    dev: Devices, monkeypatch: pytest.MonkeyPatch, known: bool
) -> None:
    """On a kernel older than 5.0, the tun driver refuses ``TUNSETCARRIER``
    (EINVAL, as it refuses here a command number it does not have: 250);
    where the ioctl numbers are not known at all it is not tried.  Either
    way the tap is set up by a second message once the creating descriptor
    is closed: silent all the same."""
    unused = None if netdev.tap.TUNSETCARRIER is None else netdev.tap.TUNSETCARRIER + 24
    monkeypatch.setattr(netdev.tap, "TUNSETCARRIER", unused if known else None)
    info, created = netdev.ensure_tap(tap_spec(dev, mac="fa:16:3e:00:00:04", mtu=1450))
    assert created
    assert_silent(info)


def test_tap_without_owner_is_root_only(dev: Devices) -> None:
    info, _ = netdev.ensure_tap(tap_spec(dev))
    assert info.tun_owner is None and info.tun_group is None
    if sysfs(info.name, "owner") is not None:
        assert sysfs(info.name, "owner") == "-1"


def test_existing_tap_is_adopted_not_recreated(dev: Devices) -> None:
    spec = tap_spec(dev, mac="fa:16:3e:00:00:02", mtu=1400)
    first, created = netdev.ensure_tap(spec)
    assert created

    # Drift that a restart or an operator may cause: down, other MTU.
    netdev.rtnl.ipr().link("set", index=first.index, state="down", mtu=1300)
    again, created = netdev.ensure_tap(spec)

    assert not created
    assert again.index == first.index
    assert (again.up, again.group, again.mtu) == (True, dev.link_group, 1400)

    # Out of our link group it is no longer ours: refused, unless asked for.
    netdev.rtnl.ipr().link("set", index=first.index, group=7)
    with pytest.raises(exceptions.DeviceInUse):
        netdev.ensure_tap(spec)
    taken, created = netdev.ensure_tap(dataclasses.replace(spec, adopt_foreign=True))
    assert not created and taken.group == dev.link_group
    # Without a MAC in the spec, any tap of that name is ours to adopt.
    loose, created = netdev.ensure_tap(tap_spec(dev, name=spec.name))
    assert not created and loose.index == first.index


class Refused(Exception):
    pass


def test_a_new_tap_is_kept_only_once_before_keeping_returns(dev: Devices) -> None:
    """Until ``before_keeping`` returns the new tap exists, configured, but not
    persistent; when it raises, the tap is gone with its descriptor."""
    spec = tap_spec(dev, mac="fa:16:3e:00:00:03", mtu=1400)
    seen: list[netdev.LinkInfo | None] = []

    def refuse() -> None:
        seen.append(netdev.get_link(spec.name))
        raise Refused

    with pytest.raises(Refused):
        netdev.ensure_tap(spec, before_keeping=refuse)
    [during] = seen
    assert during is not None and during.in_the_making
    assert (during.group, during.mtu, during.mac) == (dev.link_group, 1400, spec.mac)
    assert netdev.get_link(spec.name) is None

    kept, created = netdev.ensure_tap(spec, before_keeping=lambda: seen.append(None))
    assert created and kept.tun_persist and not kept.in_the_making
    assert kept == netdev.get_link(spec.name)


def test_an_existing_tap_is_adopted_only_once_before_keeping_returns(dev: Devices) -> None:
    spec = tap_spec(dev, mtu=1400)
    first, _ = netdev.ensure_tap(spec)
    netdev.rtnl.ipr().link("set", index=first.index, mtu=1300)

    def refuse() -> None:
        raise Refused

    with pytest.raises(Refused):
        netdev.ensure_tap(spec, before_keeping=refuse)
    left = netdev.get_link(spec.name)
    assert left is not None and left.index == first.index and left.mtu == 1300  # untouched


def test_a_tap_deleted_while_its_adoption_waits_is_made_anew(dev: Devices) -> None:
    spec = tap_spec(dev, mtu=1400)
    first, _ = netdev.ensure_tap(spec)

    def meanwhile() -> None:  # an unplug of the old tap, while the intent is written
        netdev.delete_links([spec.name], delete_group=dev.delete_group)

    info, created = netdev.ensure_tap(spec, before_keeping=meanwhile)
    assert created and info.index != first.index
    shown = ip_link(spec.name)
    assert shown is not None and shown["mtu"] == 1400


def test_concurrent_ensure_of_one_tap_creates_it_once(dev: Devices) -> None:
    for _round in range(5):
        spec = tap_spec(dev, mac="fa:16:3e:00:00:03")

        def ensure(_i: int, spec: netdev.TapSpec = spec) -> tuple[netdev.LinkInfo, bool]:
            return netdev.ensure_tap(spec)

        results = in_threads(8, ensure)

        assert sum(created for _info, created in results) == 1
        assert len({info.index for info, _created in results}) == 1


@pytest.mark.parametrize(
    ("existing", "wanted", "why"),
    [
        ({"mac": "fa:16:3e:00:00:04"}, {"mac": "fa:16:3e:00:00:05"}, "MAC"),
        ({"multiqueue": True}, {"multiqueue": False}, "multi-queue"),
        ({"owner": 1000}, {"owner": 2000}, "uid"),
        ({"group_owner": 1000}, {"group_owner": 2000}, "gid"),
    ],
)
def test_conflicting_tap_is_refused_and_left_alone(
    dev: Devices, existing: dict[str, Any], wanted: dict[str, Any], why: str
) -> None:
    first, _ = netdev.ensure_tap(tap_spec(dev, **existing))

    with pytest.raises(exceptions.DeviceInUse) as caught:
        netdev.ensure_tap(tap_spec(dev, name=first.name, **wanted))

    assert why in caught.value.message
    assert caught.value.context["device"] == first.name
    assert netdev.get_link(first.name) == first


def test_device_of_another_kind_is_not_taken_for_a_tap(dev: Devices) -> None:
    name, _peer = veth(dev)
    before = netdev.get_link(name)

    with pytest.raises(exceptions.DeviceInUse, match="veth"):
        netdev.ensure_tap(tap_spec(dev, name=name))
    assert netdev.get_link(name) == before


def test_tap_mtu_beyond_the_device_limit_is_refused_and_rolled_back(dev: Devices) -> None:
    spec = tap_spec(dev, mtu=65535)  # a tap takes at most 65521

    with pytest.raises(exceptions.InvalidRequest, match="65521"):
        netdev.ensure_tap(spec)
    assert not netdev.link_exists(spec.name)
    assert ip_link(spec.name) is None


# --- names -------------------------------------------------------------------------

BAD_NAMES = [
    "x" * 16,
    "tap/1",
    "",
    "tap 1",
    "..",
    "tap:1",
    "tap%d",
    "täpäpäpäpäpäpä",
    "all",
    "default",
]


@pytest.mark.parametrize("reserved", ["all", "default"])
def test_the_kernel_itself_refuses_all_and_default(dev: Devices, reserved: str) -> None:
    """Why ``validate_name`` refuses them: the kernel keeps them for its
    ``net/ipv4/conf`` entries and fails the registration with EINVAL."""
    proc = subprocess.run(
        ["ip", "link", "add", reserved, "type", "veth", "peer", "name", dev.name("v")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Invalid argument" in proc.stderr, proc


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_names_are_refused_before_anything_is_created(dev: Devices, bad: str) -> None:
    before = {link.name for link in netdev.list_links()}
    parent, peer = veth(dev)
    attempts: list[Callable[[], object]] = [
        lambda: netdev.ensure_tap(netdev.TapSpec(name=bad, link_group=dev.link_group)),
        lambda: netdev.ensure_bridge(netdev.BridgeSpec(name=bad, link_group=dev.link_group)),
        lambda: netdev.ensure_veth(
            netdev.VethSpec(name=bad, peer=dev.name("v"), link_group=dev.link_group)
        ),
        lambda: netdev.ensure_veth(
            netdev.VethSpec(name=dev.name("v"), peer=bad, link_group=dev.link_group)
        ),
        lambda: netdev.ensure_macvtap(
            netdev.MacvtapSpec(name=bad, parent=parent, mode="vepa", link_group=dev.link_group)
        ),
        lambda: netdev.validate_name(bad),
        lambda: netdev.delete_links([bad], delete_group=dev.delete_group),
    ]
    for attempt in attempts:
        with pytest.raises(exceptions.InvalidDeviceName):
            attempt()
    after = {link.name for link in netdev.list_links()}
    assert after - before == {parent, peer}


def test_derive_name_is_nova_and_os_vif_naming() -> None:
    vif_id = str(uuid.UUID("6a5ba9b4-1f3c-4c14-8a8f-2d7fa8e6e0c1"))
    assert netdev.derive_name("tap", vif_id) == "tap6a5ba9b4-1f"
    assert netdev.derive_name("qvo", vif_id) == "qvo6a5ba9b4-1f"
    assert len(netdev.derive_name("tap", vif_id)) == 14
    assert netdev.derive_name("tap", "short") == "tapshort"
    with pytest.raises(exceptions.InvalidDeviceName):
        netdev.derive_name("tap", "a/b")


# --- macvtap -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["vepa", "bridge", "private", "passthru"])
def test_macvtap_in_each_mode(dev: Devices, mode: str) -> None:
    parent, _peer = veth(dev, mtu=1500)
    spec = netdev.MacvtapSpec(
        name=dev.name("m"),
        parent=parent,
        mode=mode,  # type: ignore[arg-type]
        mac="fa:16:3e:00:01:01",
        mtu=1400,
        link_group=dev.link_group,
    )
    info, created = netdev.ensure_macvtap(spec, vif_id="vif-1")

    assert created
    read = netdev.get_link(spec.name)
    assert read == info
    assert read is not None
    assert read.kind == "macvtap"
    assert read.macvtap_mode == mode
    assert (read.parent, read.parent_index) == (parent, netdev.get_link(parent).index)  # type: ignore[union-attr]
    assert read.mac == "fa:16:3e:00:01:01"
    assert (read.mtu, read.group, read.up) == (1400, dev.link_group, True)
    seen = ip_link(spec.name)
    assert seen is not None
    assert ip_kind(seen)[0] == "macvtap"
    assert ip_kind(seen)[1]["mode"] == mode
    assert (seen["link"], seen["address"], seen["mtu"]) == (parent, "fa:16:3e:00:01:01", 1400)
    assert (seen["group"], "UP" in seen["flags"]) == (str(dev.link_group), True)

    again, created = netdev.ensure_macvtap(spec)
    assert not created and again.index == info.index

    other = "bridge" if mode != "bridge" else "vepa"
    with pytest.raises(exceptions.DeviceInUse, match=f"{mode} mode"):
        netdev.ensure_macvtap(
            netdev.MacvtapSpec(
                name=spec.name,
                parent=parent,
                mode=other,  # type: ignore[arg-type]
                link_group=dev.link_group,
            )
        )


def test_macvtap_on_a_missing_parent(dev: Devices) -> None:
    name = dev.name("m")
    spec = netdev.MacvtapSpec(
        name=name, parent=dev.name("x"), mode="vepa", link_group=dev.link_group
    )

    with pytest.raises(exceptions.PhysicalDeviceNotFound) as caught:
        netdev.ensure_macvtap(spec, vif_id="5f0e4c36")

    assert caught.value.context == {"device": spec.parent, "vif_id": "5f0e4c36"}
    assert not netdev.link_exists(name)
    assert ip_link(name) is None


def test_passthru_needs_its_parent_alone(dev: Devices) -> None:
    parent, _peer = veth(dev)
    netdev.ensure_macvtap(
        netdev.MacvtapSpec(
            name=dev.name("m"), parent=parent, mode="vepa", link_group=dev.link_group
        )
    )
    second = dev.name("m")

    with pytest.raises(exceptions.DeviceInUse, match="passthru") as caught:
        netdev.ensure_macvtap(
            netdev.MacvtapSpec(
                name=second, parent=parent, mode="passthru", link_group=dev.link_group
            )
        )
    assert caught.value.context["device"] == parent
    assert not netdev.link_exists(second)
    assert ip_link(second) is None


def test_macvtap_on_a_bridge_port_is_refused(dev: Devices) -> None:
    bridge, _ = netdev.ensure_bridge(
        netdev.BridgeSpec(name=dev.name("b"), link_group=dev.link_group)
    )
    parent, _peer = veth(dev)
    netdev.set_master(parent, bridge.name)
    name = dev.name("m")

    with pytest.raises(exceptions.DeviceInUse, match="already a port") as caught:
        netdev.ensure_macvtap(
            netdev.MacvtapSpec(name=name, parent=parent, mode="vepa", link_group=dev.link_group)
        )
    assert caught.value.context["device"] == parent
    assert not netdev.link_exists(name)
    assert ip_link(name) is None


def test_macvtap_mtu_above_its_parent_is_refused(dev: Devices) -> None:
    parent, _peer = veth(dev, mtu=1400)
    name = dev.name("m")
    with pytest.raises(exceptions.InvalidRequest, match="1400"):
        netdev.ensure_macvtap(
            netdev.MacvtapSpec(
                name=name, parent=parent, mode="bridge", mtu=9000, link_group=dev.link_group
            )
        )
    assert not netdev.link_exists(name)
    assert ip_link(name) is None


# --- veth, bridge, master ----------------------------------------------------------


def test_veth_pair(dev: Devices) -> None:
    spec = netdev.VethSpec(
        name=dev.name("v"), peer=dev.name("v"), mtu=1450, link_group=dev.link_group
    )
    info, created = netdev.ensure_veth(spec)

    assert created
    peer = netdev.get_link(spec.peer)
    assert peer is not None
    for end, other in ((info, peer), (peer, info)):
        assert end.kind == "veth"
        assert end.parent == other.name
        assert (end.mtu, end.group, end.up) == (1450, dev.link_group, True)
        seen = ip_link(end.name)
        assert seen is not None and ip_kind(seen)[0] == "veth"
        assert (seen["link"], seen["mtu"], seen["group"]) == (other.name, 1450, str(dev.link_group))

    again, created = netdev.ensure_veth(spec)
    assert not created and again.index == info.index

    with pytest.raises(exceptions.DeviceInUse, match="paired with"):
        netdev.ensure_veth(
            netdev.VethSpec(name=spec.name, peer=dev.name("v"), link_group=dev.link_group)
        )
    lone = dev.name("v")
    with pytest.raises(exceptions.DeviceInUse, match="not the peer"):
        netdev.ensure_veth(netdev.VethSpec(name=lone, peer=spec.peer, link_group=dev.link_group))
    assert not netdev.link_exists(lone)
    assert ip_link(lone) is None


def test_bridge_and_set_master(dev: Devices) -> None:
    spec = netdev.BridgeSpec(name=dev.name("b"), mtu=1450, link_group=dev.link_group)
    bridge, created = netdev.ensure_bridge(spec)
    assert created
    assert (bridge.kind, bridge.mtu, bridge.group, bridge.up) == (
        "bridge",
        1450,
        dev.link_group,
        True,
    )
    if sysfs(spec.name, "bridge/stp_state") is not None:  # as os-vif sets them
        assert sysfs(spec.name, "bridge/stp_state") == "0"
        assert sysfs(spec.name, "bridge/forward_delay") == "0"
    again, created = netdev.ensure_bridge(spec)
    assert not created and again.index == bridge.index

    port, _peer = veth(dev, mtu=1450)
    attached = netdev.set_master(port, spec.name)
    assert (attached.master, attached.master_index) == (spec.name, bridge.index)
    seen_bridge, seen_port = ip_link(spec.name), ip_link(port)
    assert seen_bridge is not None and seen_port is not None
    assert (ip_kind(seen_bridge)[0], seen_bridge["mtu"]) == ("bridge", 1450)
    assert seen_port.get("master") == spec.name
    assert netdev.set_master(port, spec.name) == attached  # idempotent
    listed = {link.name: link for link in netdev.list_links(dev.link_group)}
    assert listed[port].master == spec.name

    released = netdev.set_master(port, None)
    assert released.master is None

    with pytest.raises(exceptions.NetdevError, match="no such device"):
        netdev.set_master(port, dev.name("b"))
    with pytest.raises(exceptions.DeviceInUse, match="not a linux bridge"):
        netdev.ensure_bridge(netdev.BridgeSpec(name=port, link_group=dev.link_group))


def test_a_port_of_another_bridge_is_not_taken(dev: Devices) -> None:
    one, _ = netdev.ensure_bridge(netdev.BridgeSpec(name=dev.name("b"), link_group=dev.link_group))
    two, _ = netdev.ensure_bridge(netdev.BridgeSpec(name=dev.name("b"), link_group=dev.link_group))
    port, _peer = veth(dev)
    netdev.set_master(port, one.name)

    # The kernel would move the port; set_master refuses unless released first.
    with pytest.raises(exceptions.DeviceInUse, match=f"already a port of {one.name}"):
        netdev.set_master(port, two.name)
    assert netdev.get_link(port).master == one.name  # type: ignore[union-attr]
    netdev.set_master(port, None)
    assert netdev.set_master(port, two.name).master == two.name


# --- reading -----------------------------------------------------------------------


def test_missing_device_reads_as_absent(dev: Devices) -> None:
    name = dev.name("t")
    assert netdev.get_link(name) is None
    assert not netdev.link_exists(name)
    assert ip_link(name) is None


def test_list_links_by_group(dev: Devices) -> None:
    mine, _ = netdev.ensure_tap(tap_spec(dev))
    other_group = dev.link_group + 1
    other, _ = netdev.ensure_tap(netdev.TapSpec(name=dev.name("t"), link_group=other_group))
    try:
        assert [link.name for link in netdev.list_links(dev.link_group)] == [mine.name]
        names = {link.name for link in netdev.list_links()}
        assert {mine.name, other.name, "lo"} <= names
    finally:
        netdev.delete_links([other.name], delete_group=dev.delete_group)


def test_netdev_refuses_to_block_an_event_loop() -> None:
    async def call() -> None:
        netdev.get_link("lo")

    def fresh_thread() -> None:
        try:
            asyncio.run(call())
        finally:
            netdev.close_thread_socket()

    with pytest.raises(RuntimeError, match="to_thread"):
        in_threads(1, lambda _i: fresh_thread())
