"""SR-IOV virtual functions: the MAC and VLAN of a VF, set through its PF.

libvirt's ``<interface type='hostdev'>`` gives the guest a VF whose MAC (and
VLAN) the host sets beforehand through the PF, by netlink on the PF's link
(``IFLA_VFINFO_LIST`` holding ``IFLA_VF_MAC`` and ``IFLA_VF_VLAN``): the only
way the MAC survives the VF driver's initialisation in the guest, and what
QEMU's virtio failover needs (both members of the pair have one MAC).

Not exercised on real hardware: the machine this was written on has no
SR-IOV device (no VFs, no netdevsim).  ``find_vf`` reads sysfs and is tested
against a tree made in a temporary directory; ``vf_request`` is what
``set_vf`` sends, and its test encodes it with pyroute2 exactly as
``IPRoute.link("set", ...)`` does, without sending it, and checks the
``IFLA_VFINFO_LIST`` it carries.  ``set_vf`` and ``get_vf`` are the two
kernel calls, kept to a few lines each.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from vifplug import exceptions
from vifplug.netdev import pci, rtnl


@dataclasses.dataclass(frozen=True)
class VfRef:
    """A VF as its PF knows it: the PF's netdev name and the VF's index."""

    pf: str
    index: int


@dataclasses.dataclass(frozen=True)
class VfState:
    """What the PF reports for one VF."""

    mac: str | None
    vlan: int


def find_vf(address: str, *, sysfs: str = "/sys") -> VfRef | None:
    """The PF and index of VF ``address``, or None when ``address`` is not a
    VF (no ``physfn``) or its PF has no network device here.

    sysfs: ``devices/<vf>/physfn`` links to the PF, whose ``virtfn<N>`` links
    to each of its VFs, and whose ``net/`` holds the PF's netdev."""
    vf_dir = pci.pci_device_dir(address, sysfs=sysfs)
    physfn = os.path.join(vf_dir, "physfn")
    if not os.path.isdir(physfn):
        return None
    pf_name = _only_entry(os.path.join(physfn, "net"))
    if pf_name is None:
        return None
    vf_real = os.path.realpath(vf_dir)
    for entry in sorted(os.listdir(physfn)):
        if entry.startswith("virtfn") and entry[6:].isdigit():
            if os.path.realpath(os.path.join(physfn, entry)) == vf_real:
                return VfRef(pf=pf_name, index=int(entry[6:]))
    return None


def _only_entry(directory: str) -> str | None:
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return names[0] if names else None


def vf_request(pf_index: int, vf_index: int, mac: str, vlan: int) -> dict[str, Any]:
    """The ``IPRoute.link("set", ...)`` arguments that give VF ``vf_index`` of
    the PF at ``pf_index`` its MAC and VLAN (0: none), in one RTM_NEWLINK."""
    if not 0 <= vlan <= 4095:
        raise exceptions.InvalidRequest(reason=f"VLAN {vlan} is not between 0 and 4095")
    return {"index": pf_index, "vf": {"vf": vf_index, "mac": mac, "vlan": vlan}}


def set_vf(pf: str, vf_index: int, mac: str, vlan: int) -> None:
    """Set VF ``vf_index``'s MAC and VLAN through PF ``pf`` (not exercised on
    real hardware here; see the module)."""
    with rtnl.kernel_call("set the VF's MAC and VLAN", f"{pf} vf {vf_index}"):
        sock = rtnl.ipr()
        sock.link("set", **vf_request(_index(sock, pf), vf_index, mac, vlan))


def get_vf(pf: str, vf_index: int) -> VfState | None:
    """VF ``vf_index``'s MAC and VLAN as PF ``pf`` reports them, or None when
    the PF reports no such VF."""
    with rtnl.kernel_call("read the VF's MAC and VLAN", f"{pf} vf {vf_index}"):
        sock = rtnl.ipr()
        (msg,) = sock.link("get", index=_index(sock, pf), ext_mask=1)
    vfs = msg.get_attr("IFLA_VFINFO_LIST")
    for info in vfs.get_attrs("IFLA_VF_INFO") if vfs is not None else ():
        mac = info.get_attr("IFLA_VF_MAC") or {}
        if mac.get("vf") == vf_index:
            vlan = info.get_attr("IFLA_VF_VLAN") or {}
            return VfState(mac=mac.get("mac"), vlan=int(vlan.get("vlan", 0)))
    return None


def _index(sock: Any, pf: str) -> int:
    found = sock.link_lookup(ifname=pf)
    if not found:
        raise exceptions.NetdevError(operation="look up the PF", device=pf, reason="no such device")
    return int(found[0])
