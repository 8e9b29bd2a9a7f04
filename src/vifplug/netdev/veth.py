"""Veth pairs, for the hybrid plug (linux bridge ``qvb`` end, OVS ``qvo`` end).

Both ends are created in one message, already in our link group and with
the same MTU; both are then brought up.  Deleting either end deletes the
pair, so ``delete_links`` needs only one of the names.
"""

from __future__ import annotations

import dataclasses
import errno

from vifplug import exceptions
from vifplug.netdev import links, names, rtnl


@dataclasses.dataclass(frozen=True, kw_only=True)
class VethSpec:
    """A veth pair ``name`` <-> ``peer``."""

    name: str
    peer: str
    link_group: int
    mtu: int | None = None
    adopt_foreign: bool = False  # adopt a device not in link_group (not ours)


def ensure_veth(spec: VethSpec) -> tuple[links.LinkInfo, bool]:
    """Make sure the pair exists, both ends up, in ``spec.link_group``.

    Returns the ``name`` end and whether this call created the pair.  An
    existing veth ``name`` whose peer is ``peer`` is adopted (both ends' MTU,
    group and state fixed up).  Raises ``DeviceInUse`` when either name is
    taken by anything else (including a veth paired with another device),
    ``InvalidDeviceName``/``InvalidRequest`` before touching anything for an
    unusable spec, ``NetdevError`` when the kernel refuses.
    """
    names.validate_name(spec.name)
    names.validate_name(spec.peer)
    if spec.name == spec.peer:
        raise exceptions.InvalidDeviceName(name=spec.peer, reason="a veth peer needs its own name")
    links.check_mtu(spec.mtu)
    links.check_group(spec.link_group)
    with links.name_lock(spec.name, spec.peer):
        info = _create(spec)
        if info is not None:
            return info, True
        existing = links.get_link(spec.name)
        if existing is None:  # the peer's name is what was taken
            raise _peer_taken(spec)
        _check_adoptable(existing, spec)
        peer = links.require(spec.peer, "adopt veth peer")
        links.fix_up(peer, mtu=spec.mtu, group=spec.link_group, adopt_foreign=spec.adopt_foreign)
        return links.fix_up(
            existing, mtu=spec.mtu, group=spec.link_group, adopt_foreign=spec.adopt_foreign
        ), False


def _create(spec: VethSpec) -> links.LinkInfo | None:
    """Create the pair, both ends up; ``None`` if either name is taken."""
    peer: dict[str, object] = {"ifname": spec.peer, "group": spec.link_group}
    extra: dict[str, object] = {}
    if spec.mtu is not None:
        peer["mtu"] = spec.mtu
        extra["mtu"] = spec.mtu
    try:
        with rtnl.kernel_call(f"create veth pair with {spec.peer}", spec.name):
            rtnl.ipr().link(
                "add",
                ifname=spec.name,
                kind="veth",
                peer=peer,
                group=spec.link_group,
                state="up",
                **extra,
            )
    except exceptions.DeviceInUse as err:
        if rtnl.caused_by(err, errno.EEXIST):
            return None
        raise
    try:
        with rtnl.kernel_call("bring up veth peer", spec.peer):
            rtnl.ipr().link("set", ifname=spec.peer, state="up")
    except exceptions.VifplugError:
        created = links.get_link(spec.name)
        if created is not None:
            links.delete_one(created)  # takes the peer with it
        raise
    return links.require(spec.name, "read back")


def _peer_taken(spec: VethSpec) -> exceptions.DeviceInUse:
    other = links.get_link(spec.peer)
    what = f"a {other.kind or 'physical'} device" if other else "a device"
    return exceptions.DeviceInUse(
        device=spec.peer, reason=f"it is {what} that is not the peer of {spec.name}"
    )


def _check_adoptable(info: links.LinkInfo, spec: VethSpec) -> None:
    if info.kind != "veth":
        raise exceptions.DeviceInUse(
            device=spec.name, reason=f"it is a {info.kind or 'physical'} device, not a veth"
        )
    if info.parent != spec.peer:
        raise exceptions.DeviceInUse(
            device=spec.name,
            reason=f"it is a veth paired with {info.parent or 'a device elsewhere'}, "
            f"not with {spec.peer}",
        )
