"""Bandwidth limits through tc, read back with iproute2's ``tc -j`` (not vifplug's code).

The direction tests write frames the way a VM does (into the tap's file
descriptor, into the macvtap's character device) and look at which qdisc
counts them: that is the evidence behind ``Bandwidth.for_vm``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPBatch
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from test_netdev_support import Devices, police_supported

from vifplug import exceptions, netdev
from vifplug.netdev import bandwidth

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
VNET_HDR_LEN = 10  # a macvtap queue expects a virtio_net_hdr before each frame


def new_tap(dev: Devices) -> netdev.LinkInfo:
    info, _ = netdev.ensure_tap(netdev.TapSpec(name=dev.name("t"), link_group=dev.link_group))
    return info


def _name_of(index: int) -> str:
    for name in os.listdir("/sys/class/net"):
        with contextlib.suppress(OSError), open(f"/sys/class/net/{name}/ifindex") as f:
            if int(f.read()) == index:
                return name
    raise AssertionError(f"no device with index {index}")


def qdiscs(index: int) -> dict[str, dict[str, Any]]:
    """kind -> what ``tc -j -s qdisc show`` says of one device's qdiscs (the
    iproute2 tool, not vifplug's netlink code: an independent readout)."""
    out = subprocess.run(
        ["tc", "-j", "-s", "qdisc", "show", "dev", _name_of(index)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {q["kind"]: q for q in json.loads(out)}


def wait_packets(index: int, done: Callable[[tuple[int, int]], bool]) -> tuple[int, int]:
    """(ingress, egress) packets once ``done`` holds of them, or after 10 s."""
    deadline = time.monotonic() + 10
    while not done(seen := packets(index)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_egress_shaping_round_trip(dev: Devices) -> None:
    tap = new_tap(dev)

    got = netdev.set_bandwidth(tap.name, egress_kbps=8000, egress_burst_kb=128)

    assert got == netdev.Bandwidth(egress_kbps=8000, egress_burst_kb=128)
    assert netdev.get_bandwidth(tap.name) == got
    tbf = qdiscs(tap.index)["tbf"]
    assert (tbf["handle"], tbf.get("root")) == ("1:", True)
    assert tbf["options"]["rate"] == 8000 * 1000  # bytes per second, as tc says
    assert tbf["options"]["burst"] == 128 * 1024

    # Setting again replaces; a direction left out loses its limit.
    assert netdev.set_bandwidth(tap.name, egress_kbps=2000).egress_kbps == 2000
    assert netdev.set_bandwidth(tap.name) == netdev.Bandwidth()
    assert "tbf" not in qdiscs(tap.index)

    netdev.set_bandwidth(tap.name, egress_kbps=2000)
    netdev.clear_bandwidth(tap.name)
    netdev.clear_bandwidth(tap.name)  # idempotent
    assert netdev.get_bandwidth(tap.name).unlimited
    assert "tbf" not in qdiscs(tap.index)


@pytest.mark.parametrize(("kbps", "burst_kb"), [(1000, 1000), (10, 64), (100000, 100000)])
def test_default_burst_is_a_second_of_traffic_but_at_least_64kb(
    dev: Devices, kbps: int, burst_kb: int
) -> None:
    tap = new_tap(dev)
    assert netdev.set_bandwidth(tap.name, egress_kbps=kbps).egress_burst_kb == burst_kb


def test_others_ingress_filters_are_left_alone(dev: Devices) -> None:
    tap = new_tap(dev)
    ipr = netdev.rtnl.ipr()
    ipr.tc("add", "ingress", index=tap.index)
    for prio in (7, bandwidth.FILTER_PRIO):  # someone else's, and one where ours would be
        ipr.tc(
            "add-filter",
            "u32",
            index=tap.index,
            parent=0xFFFF0000,
            prio=prio,
            protocol=3,
            target=0x10001,
            keys=["0x0/0x0+0"],
        )

    netdev.clear_bandwidth(tap.name)

    assert "ingress" in qdiscs(tap.index)
    left = {f["info"] >> 16 for f in ipr.get_filters(index=tap.index, parent=0xFFFF0000)}
    assert left == {7}
    netdev.set_bandwidth(tap.name, egress_kbps=100)  # does not disturb it either
    assert {f["info"] >> 16 for f in ipr.get_filters(index=tap.index, parent=0xFFFF0000)} == {7}


def test_an_empty_ingress_qdisc_is_removed(dev: Devices) -> None:
    tap = new_tap(dev)
    netdev.rtnl.ipr().tc("add", "ingress", index=tap.index)
    netdev.clear_bandwidth(tap.name)
    assert "ingress" not in qdiscs(tap.index)


def test_a_root_qdisc_that_is_not_ours_is_left_alone(dev: Devices) -> None:
    tap = new_tap(dev)
    netdev.rtnl.ipr().tc("add", "htb", index=tap.index, handle=0x10000, default=0x10)

    netdev.clear_bandwidth(tap.name)

    assert "htb" in qdiscs(tap.index)


def test_ingress_policing_round_trip(dev: Devices) -> None:
    if not police_supported():
        pytest.skip("this kernel has no tc police action (CONFIG_NET_ACT_POLICE)")
    tap = new_tap(dev)

    got = netdev.set_bandwidth(tap.name, ingress_kbps=3000, ingress_burst_kb=256, egress_kbps=4000)

    assert got == netdev.Bandwidth(
        ingress_kbps=3000, ingress_burst_kb=256, egress_kbps=4000, egress_burst_kb=4000
    )
    assert "ingress" in qdiscs(tap.index)
    filters = list(netdev.rtnl.ipr().get_filters(index=tap.index, parent=0xFFFF0000))
    assert [bandwidth.police_params(f) for f in filters if bandwidth.police_params(f)] == [
        (3000, 256)
    ]

    netdev.set_bandwidth(tap.name, egress_kbps=4000)
    assert "ingress" not in qdiscs(tap.index)
    netdev.set_bandwidth(tap.name, ingress_kbps=100)
    netdev.clear_bandwidth(tap.name)
    assert set(qdiscs(tap.index)) & {"ingress", "tbf"} == set()


def test_without_police_support_ingress_fails_cleanly(dev: Devices) -> None:
    if police_supported():
        pytest.skip("this kernel has the tc police action")
    tap = new_tap(dev)

    with pytest.raises(exceptions.NetdevError, match="police"):
        netdev.set_bandwidth(tap.name, ingress_kbps=3000, egress_kbps=4000)

    assert set(qdiscs(tap.index)) & {"ingress", "tbf"} == set()
    assert netdev.get_bandwidth(tap.name).unlimited


def test_police_filter_message_round_trips() -> None:
    """The policer request is libvirt's, and police_params reads it back.

    Checked on the compiled message so that it runs on kernels without
    act_police too; the kernel reports a classic police the same way.
    """
    batch = IPBatch()
    try:
        batch.tc("add-filter", "u32", **bandwidth.police_request(7, 3000, 256 * 1024))
        msg = tcmsg(bytes(batch.batch))
    finally:
        batch.close()
    msg.decode()

    assert msg["parent"] == 0xFFFF0000 and msg["index"] == 7
    options = msg.get_attr("TCA_OPTIONS")
    assert options.get_attr("TCA_U32_CLASSID") == 1
    (key,) = options.get_attr("TCA_U32_SEL")["keys"]
    assert (key["key_mask"], key["key_val"]) == (0, 0)  # matches everything
    tbf = options.get_attr("TCA_U32_POLICE").get_attr("TCA_POLICE_TBF")
    assert (tbf["rate"], tbf["mtu"], tbf["action"]) == (3_000_000, 65536, 2)  # 2: drop
    assert bandwidth.police_params(msg) == (3000, 256)


@pytest.mark.parametrize(
    "limits",
    [
        {"ingress_burst_kb": 10},
        {"egress_kbps": 0},
        {"egress_kbps": bandwidth.MAX_KBPS + 1},
        {"ingress_kbps": -5},
        {"egress_kbps": 100, "egress_burst_kb": 0},
    ],
)
def test_impossible_limits_are_refused_before_anything_changes(
    dev: Devices, limits: dict[str, int]
) -> None:
    tap = new_tap(dev)
    with pytest.raises(exceptions.InvalidRequest):
        netdev.set_bandwidth(tap.name, **limits)
    assert set(qdiscs(tap.index)) & {"ingress", "tbf"} == set()


def test_bandwidth_of_a_missing_device(dev: Devices) -> None:
    name = dev.name("t")
    for call in (
        lambda: netdev.set_bandwidth(name, egress_kbps=10),
        lambda: netdev.get_bandwidth(name),
        lambda: netdev.clear_bandwidth(name),
    ):
        with pytest.raises(exceptions.NetdevError, match="no such device"):
            call()


# --- which direction is the VM's ---------------------------------------------------


def count_ingress(index: int) -> None:
    """An ingress qdisc with a match-all filter and no action: it only counts."""
    ipr = netdev.rtnl.ipr()
    ipr.tc("add", "ingress", index=index)
    ipr.tc(
        "add-filter",
        "u32",
        index=index,
        parent=0xFFFF0000,
        prio=1,
        protocol=3,
        target=0x10001,
        keys=["0x0/0x0+0"],
    )


def packets(index: int) -> tuple[int, int]:
    """(ingress, egress) packets counted on a device."""
    seen = qdiscs(index)
    return int(seen["ingress"]["packets"]), int(seen["tbf"]["packets"])


def frame(src: str) -> bytes:
    return bytes.fromhex("ffffffffffff" + src.replace(":", "") + "88b5") + b"vifplug".ljust(50)


FRAMES = 20


def test_what_a_vm_sends_is_tap_ingress(dev: Devices) -> None:
    tap = new_tap(dev)
    netdev.set_bandwidth(tap.name, egress_kbps=1_000_000)
    count_ingress(tap.index)

    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:  # attach as QEMU does, then "transmit" from the VM
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", tap.name.encode(), IFF_TAP | IFF_NO_PI))
        before = packets(tap.index)
        for _ in range(FRAMES):
            os.write(fd, frame("fa:16:3e:00:00:09"))
        after = wait_packets(tap.index, lambda p: p[0] - before[0] >= FRAMES)
    finally:
        os.close(fd)

    assert after[0] - before[0] == FRAMES  # arrived as the tap's ingress
    assert after[1] - before[1] < FRAMES
    mapped = netdev.Bandwidth.for_vm("tun", inbound_kbps=1, outbound_kbps=2)
    assert (mapped.ingress_kbps, mapped.egress_kbps) == (2, 1)  # outbound == ingress


def test_what_a_vm_sends_is_macvtap_egress(dev: Devices, tmp_path: Path) -> None:
    parent, peer = dev.name("v"), dev.name("v")
    netdev.ensure_veth(netdev.VethSpec(name=parent, peer=peer, link_group=dev.link_group))
    mvt, _ = netdev.ensure_macvtap(
        netdev.MacvtapSpec(
            name=dev.name("m"), parent=parent, mode="bridge", link_group=dev.link_group
        )
    )
    netdev.set_bandwidth(mvt.name, egress_kbps=1_000_000)
    count_ingress(mvt.index)

    devno = Path(f"/sys/class/net/{mvt.name}/macvtap/tap{mvt.index}/dev")
    if not devno.exists():
        pytest.skip("sysfs does not show this namespace's macvtap")
    major, minor = map(int, devno.read_text().split(":"))
    node = tmp_path / "tapdev"
    os.mknod(node, 0o600 | 0o020000, os.makedev(major, minor))
    try:
        fd = os.open(node, os.O_RDWR)
    except PermissionError:
        pytest.skip(f"{tmp_path} is mounted nodev; cannot open the macvtap's character device")
    try:
        before = packets(mvt.index)
        for _ in range(FRAMES):
            os.write(fd, bytes(VNET_HDR_LEN) + frame(mvt.mac or ""))
        after = wait_packets(mvt.index, lambda p: p[1] - before[1] >= FRAMES)
    finally:
        os.close(fd)

    assert after[1] - before[1] >= FRAMES  # transmitted: the macvtap's egress
    assert after[0] - before[0] < FRAMES
    mapped = netdev.Bandwidth.for_vm("macvtap", inbound_kbps=1, outbound_kbps=2)
    assert (mapped.ingress_kbps, mapped.egress_kbps) == (1, 2)  # outbound == egress
