"""Linux bridges, for the hybrid plug (one ``qbr`` bridge per VIF, as os-vif makes).

Created up, in our link group, with STP off and a forward delay of 0 (what
os-vif sets), in a single message: a port added to it forwards at once.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

from vifplug import exceptions
from vifplug.netdev import links, names, rtnl


@dataclasses.dataclass(frozen=True, kw_only=True)
class BridgeSpec:
    """A linux bridge ``name``."""

    name: str
    link_group: int
    mtu: int | None = None
    adopt_foreign: bool = False  # adopt a device not in link_group (not ours)


def ensure_bridge(spec: BridgeSpec) -> tuple[links.LinkInfo, bool]:
    """Make sure linux bridge ``spec.name`` exists, up, in ``spec.link_group``.

    Returns the bridge and whether this call created it.  An existing linux
    bridge of that name is adopted (MTU, group, state fixed up; its ports and
    bridge options are left alone).  Raises ``DeviceInUse`` when the name is
    taken by another kind of device, ``InvalidDeviceName``/``InvalidRequest``
    before touching anything for an unusable spec, ``NetdevError`` when the
    kernel refuses.
    """
    names.validate_name(spec.name)
    links.check_mtu(spec.mtu)
    links.check_group(spec.link_group)
    with links.name_lock(spec.name):
        info = _create(spec)
        if info is not None:
            return info, True
        existing = links.require(spec.name, "adopt")
        if existing.kind != "bridge":
            raise exceptions.DeviceInUse(
                device=spec.name,
                reason=f"it is a {existing.kind or 'physical'} device, not a linux bridge",
            )
        return links.fix_up(
            existing, mtu=spec.mtu, group=spec.link_group, adopt_foreign=spec.adopt_foreign
        ), False


def _create(spec: BridgeSpec) -> links.LinkInfo | None:
    request: dict[str, Any] = {
        "ifname": spec.name,
        "kind": "bridge",
        "br_stp_state": 0,
        "br_forward_delay": 0,
        "group": spec.link_group,
        "state": "up",
    }
    if spec.mtu is not None:
        request["mtu"] = spec.mtu
    try:
        with rtnl.kernel_call("create bridge", spec.name):
            rtnl.ipr().link("add", **request)
    except exceptions.DeviceInUse as err:
        if rtnl.caused_by(err, errno.EEXIST):
            return None
        raise
    return links.require(spec.name, "read back")
