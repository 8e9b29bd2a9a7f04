"""Macvtap devices on a physical parent, for ``VIFDirect`` (direct/pool networks).

A macvtap is created, configured (MAC, MTU, group) and brought up by one
rtnetlink message, so there is no moment where it exists outside our link
group.  Its forward mode decides how VMs on the same parent reach each other
(``vepa``: through the external switch; ``bridge``: inside the parent;
``private``: not at all; ``passthru``: the VM owns the parent).
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any, Literal

from vifplug import exceptions
from vifplug.netdev import links, names, rtnl

MacvtapMode = Literal["vepa", "bridge", "private", "passthru"]
MODES: tuple[str, ...] = ("vepa", "bridge", "private", "passthru")
_ALIASES = {"passthrough": "passthru"}  # the spelling of libvirt and vifplug.conf


@dataclasses.dataclass(frozen=True, kw_only=True)
class MacvtapSpec:
    """A macvtap ``name`` on ``parent`` in forward ``mode``."""

    name: str
    parent: str
    mode: MacvtapMode
    link_group: int
    mac: str | None = None
    mtu: int | None = None
    adopt_foreign: bool = False  # adopt a device not in link_group (not ours)


def normalize_mode(mode: str) -> str:
    """``mode`` as the kernel names it; ``InvalidRequest`` for an unknown one."""
    norm = _ALIASES.get(mode, mode)
    if norm not in MODES:
        raise exceptions.InvalidRequest(
            reason=f"macvtap mode {mode!r} is not one of {', '.join(MODES)}"
        )
    return norm


def ensure_macvtap(spec: MacvtapSpec, *, vif_id: str | None = None) -> tuple[links.LinkInfo, bool]:
    """Make sure macvtap ``spec.name`` exists on ``spec.parent`` as specified, up.

    Returns the device and whether this call created it.  An existing
    macvtap on the same parent, in the same mode and with the same MAC (if
    given) is adopted (MTU, group, state fixed up), never recreated.
    Raises ``PhysicalDeviceNotFound`` (naming ``vif_id``) when the parent is
    missing, ``DeviceInUse`` when the name is taken by something else or the
    parent cannot take the macvtap (``passthru`` on a parent that already has
    one), ``InvalidDeviceName``/``InvalidRequest`` before touching anything
    for an unusable spec, ``NetdevError`` when the kernel refuses.
    """
    names.validate_name(spec.name)
    names.validate_name(spec.parent)
    mode = normalize_mode(spec.mode)
    mac = links.normalize_mac(spec.mac) if spec.mac else None
    links.check_mtu(spec.mtu)
    links.check_group(spec.link_group)
    with links.name_lock(spec.name):
        parent = links.get_link(spec.parent)
        if parent is None:
            raise exceptions.PhysicalDeviceNotFound(
                device=spec.parent, vif_id=vif_id or "(not given)"
            )
        if spec.mtu is not None and spec.mtu > parent.mtu:
            raise exceptions.InvalidRequest(
                reason=f"MTU {spec.mtu} of macvtap {spec.name} exceeds the MTU "
                f"{parent.mtu} of its parent {spec.parent}"
            )
        info = _create(spec, parent, mode, mac)
        if info is not None:
            return info, True
        existing = links.require(spec.name, "adopt")
        _check_adoptable(existing, spec, parent, mode, mac)
        return links.fix_up(
            existing, mtu=spec.mtu, group=spec.link_group, adopt_foreign=spec.adopt_foreign
        ), False


def _create(
    spec: MacvtapSpec, parent: links.LinkInfo, mode: str, mac: str | None
) -> links.LinkInfo | None:
    """Create it in one message; ``None`` if the name is taken."""
    request: dict[str, Any] = {
        "ifname": spec.name,
        "kind": "macvtap",
        "link": parent.index,
        "macvtap_mode": mode,
        "group": spec.link_group,
        "state": "up",
    }
    if mac is not None:
        request["address"] = mac
    if spec.mtu is not None:
        request["mtu"] = spec.mtu
    try:
        with rtnl.kernel_call(f"create macvtap ({mode}) on {spec.parent}", spec.name):
            rtnl.ipr().link("add", **request)
    except exceptions.DeviceInUse as err:
        if rtnl.caused_by(err, errno.EEXIST):
            return None
        # EBUSY: another stack (bridge, bond, Open vSwitch) holds the parent.
        raise _parent_busy(spec, mode, errno.EBUSY) from err.__cause__
    except exceptions.NetdevError as err:
        # The MTU was checked above, so EINVAL almost always means that
        # passthru and the other modes do not mix on this parent.
        if rtnl.caused_by(err, errno.EINVAL):
            raise _parent_busy(spec, mode, errno.EINVAL) from err.__cause__
        raise
    info = links.require(spec.name, "read back")
    # In passthru mode the kernel gives the macvtap its parent's MAC; setting
    # ours afterwards sets it on the parent too, which is what passthru means.
    if mac is not None and (info.mac or "").lower() != mac:
        try:
            with rtnl.kernel_call("set MAC", spec.name):
                rtnl.ipr().link("set", index=info.index, address=mac)
        except exceptions.VifplugError:
            links.delete_one(info)
            raise
        info = links.require(spec.name, "read back")
    return info


def _parent_busy(spec: MacvtapSpec, mode: str, code: int) -> exceptions.DeviceInUse:
    if code == errno.EBUSY:
        reason = "it is already a port of a bridge, bond or Open vSwitch"
    elif mode == "passthru":
        reason = "passthru needs the parent to itself and it already has a macvtap or macvlan"
    else:
        reason = "a passthru macvtap holds it (or it is not an Ethernet device)"
    return exceptions.DeviceInUse(
        device=spec.parent, reason=f"it cannot take {mode} macvtap {spec.name}: {reason}"
    )


def _check_adoptable(
    info: links.LinkInfo,
    spec: MacvtapSpec,
    parent: links.LinkInfo,
    mode: str,
    mac: str | None,
) -> None:
    def refuse(reason: str) -> exceptions.DeviceInUse:
        return exceptions.DeviceInUse(device=spec.name, reason=reason)

    if info.kind != "macvtap":
        raise refuse(f"it is a {info.kind or 'physical'} device, not a macvtap")
    if info.parent_index != parent.index:
        raise refuse(f"it is a macvtap on {info.parent or info.parent_index}, not on {spec.parent}")
    if info.macvtap_mode != mode:
        raise refuse(f"it is a macvtap in {info.macvtap_mode} mode, not {mode}")
    if mac is not None and (info.mac or "").lower() != mac:
        raise refuse(f"it is a macvtap with MAC {info.mac}, not {mac}")
