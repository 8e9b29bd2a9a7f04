"""The SR-IOV VF path of the hostdev plugin, without a VF.

This machine has no SR-IOV device (no VFs, no netdevsim), so the two halves
are tested apart: finding a VF's PF and index in a sysfs tree made in a
temporary directory, and the RTM_NEWLINK message ``set_vf`` sends, built by
pyroute2 exactly as ``IPRoute.link("set", ...)`` builds it, encoded and
decoded again without being sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute
from pyroute2.iproute.linux import get_arguments_processor
from pyroute2.netlink.nlsocket import NetlinkRequest
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vifplug import exceptions, netdev
from vifplug.netdev import vf

PF = "0000:3b:00.0"
VF2 = "0000:3b:02.2"


def _encoded(kwargs: dict[str, Any]) -> ifinfmsg:
    """The message ``IPRoute.link("set", **kwargs)`` would send, as the kernel reads it."""
    arguments = get_arguments_processor("link", "set", dict(kwargs))
    with IPRoute() as ipr:
        request = NetlinkRequest(
            ipr.asyncore, ifinfmsg(), "set", {"set": (RTM_NEWLINK, "req")}, None, arguments
        )
        request.msg.encode()
        wire = ifinfmsg(request.msg.data)
    wire.decode()
    return wire


def test_set_vf_sends_the_mac_and_vlan_in_one_vf_info() -> None:
    msg = _encoded(vf.vf_request(7, 2, "fa:16:3e:aa:bb:cc", 100))
    assert msg["header"]["type"] == RTM_NEWLINK
    assert msg["index"] == 7  # the PF's link carries the VF's settings
    (info,) = msg.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    assert info.get_attr("IFLA_VF_MAC") == {"vf": 2, "mac": "fa:16:3e:aa:bb:cc"}
    assert info.get_attr("IFLA_VF_VLAN") == {"vf": 2, "vlan": 100, "qos": 0}


def test_vlan_zero_clears_the_vf_vlan() -> None:
    msg = _encoded(vf.vf_request(7, 0, "fa:16:3e:00:00:01", 0))
    (info,) = msg.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    assert info.get_attr("IFLA_VF_VLAN") == {"vf": 0, "vlan": 0, "qos": 0}


@pytest.mark.parametrize("vlan", [-1, 4096])
def test_a_vlan_outside_802_1q_is_refused(vlan: int) -> None:
    with pytest.raises(exceptions.InvalidRequest):
        vf.vf_request(7, 0, "fa:16:3e:00:00:01", vlan)


def _sriov_tree(root: Path) -> Path:
    """sysfs as the kernel lays out a PF with netdev ens1f0 and VFs 0..3."""
    devices = root / "bus/pci/devices"
    real = root / "devices/pci0000:3a"
    (real / PF / "net/ens1f0").mkdir(parents=True)
    devices.mkdir(parents=True)
    os.symlink(real / PF, devices / PF)
    for n in range(4):
        address = f"0000:3b:02.{n}"
        (real / address).mkdir()
        os.symlink(real / address, devices / address)
        os.symlink(real / PF, real / address / "physfn")
        os.symlink(real / address, real / PF / f"virtfn{n}")
    return root


def test_a_vf_is_found_on_its_pf(tmp_path: Path) -> None:
    root = _sriov_tree(tmp_path)
    assert netdev.find_vf(VF2, sysfs=str(root)) == netdev.VfRef(pf="ens1f0", index=2)
    assert netdev.find_vf(VF2.upper(), sysfs=str(root)) == netdev.VfRef(pf="ens1f0", index=2)


def test_a_pf_or_a_plain_device_is_not_a_vf(tmp_path: Path) -> None:
    root = _sriov_tree(tmp_path)
    assert netdev.find_vf(PF, sysfs=str(root)) is None
    (root / "bus/pci/devices/0000:5e:00.0").mkdir()
    assert netdev.find_vf("0000:5e:00.0", sysfs=str(root)) is None
    assert netdev.find_vf("0000:5e:00.1", sysfs=str(root)) is None


def test_a_vf_whose_pf_has_no_netdev_is_not_usable(tmp_path: Path) -> None:
    root = _sriov_tree(tmp_path)
    os.rmdir(root / "devices/pci0000:3a" / PF / "net/ens1f0")
    assert netdev.find_vf(VF2, sysfs=str(root)) is None


def test_pci_device_exists_reads_the_tree(tmp_path: Path) -> None:
    root = _sriov_tree(tmp_path)
    assert netdev.pci_device_exists(VF2, sysfs=str(root))
    assert not netdev.pci_device_exists("0000:3b:03.0", sysfs=str(root))
    with pytest.raises(exceptions.InvalidRequest):
        netdev.pci_device_exists("3b:02.2", sysfs=str(root))
