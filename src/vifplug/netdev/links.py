"""Reading links back from the kernel, and the small changes every device needs.

``LinkInfo`` is what the rest of vifplug knows about a device: the kernel's
answer parsed once into plain values, so no pyroute2 message escapes this
package.  The ``ensure_*`` functions of the device modules use the helpers
here to check an existing device before adopting it and to fix up its MTU,
group and state in one netlink message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import re
from collections.abc import Callable, Iterator
from typing import Any

from vifplug import exceptions, keyedlocks
from vifplug.netdev import names, rtnl

IFF_UP = 0x1

MIN_MTU = 68
MAX_MTU = 65535

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    """One network device as the kernel reports it.

    ``kind`` is the kernel's link kind: ``tun`` for tap and tun devices (see
    ``tun_type``), ``macvtap``, ``veth``, ``bridge``, ... or ``None`` for
    physical devices.  ``parent`` is the lower device of a macvtap, or the
    peer of a veth (``None`` when it lives in another namespace).
    """

    index: int
    name: str
    kind: str | None
    mac: str | None
    mtu: int
    group: int
    up: bool
    # Carrier comes and goes (a VM attaching, linkwatch catching up); it is
    # not part of what a device is, so two readings compare equal without it.
    operstate: str = dataclasses.field(compare=False)
    master: str | None = None
    master_index: int | None = None
    parent: str | None = None
    parent_index: int | None = None
    min_mtu: int | None = None
    max_mtu: int | None = None
    macvtap_mode: str | None = None
    tun_type: str | None = None
    multi_queue: bool | None = None
    tun_owner: int | None = None
    tun_group: int | None = None
    #: False for a tun/tap device that vanishes with its last descriptor.
    tun_persist: bool | None = None

    @property
    def is_tap(self) -> bool:
        return self.kind == "tun" and self.tun_type == "tap"

    @property
    def in_the_making(self) -> bool:
        """A tap not persistent yet: being made by a plug whose intent is
        still being written (``tap.ensure_tap``), or dying with its maker.
        Either way it cannot outlive its maker, so it is never a leak."""
        return self.kind == "tun" and self.tun_persist is False


_NAME_LOCKS = keyedlocks.KeyedLocks()


@contextlib.contextmanager
def name_lock(*device_names: str) -> Iterator[None]:
    """Serialize ``ensure_*`` calls on the same names within this process.

    A tap is created and then configured in a second step; without this, a
    concurrent ``ensure`` of the same tap could see it in between (random
    MAC, down) and refuse it as someone else's.  One lock per name, so two
    plugs of different devices never wait for each other.
    """
    with _NAME_LOCKS.held(*device_names):
        yield


def normalize_mac(mac: str) -> str:
    """``mac`` in the kernel's form (lower case, colons); ``InvalidRequest`` if it is not one.

    Multicast addresses are refused: the kernel would reject them on a device.
    """
    norm = mac.strip().lower().replace("-", ":")
    if not _MAC_RE.match(norm):
        raise exceptions.InvalidRequest(reason=f"{mac!r} is not a MAC address")
    if int(norm[:2], 16) & 1:
        raise exceptions.InvalidRequest(reason=f"MAC address {mac} is a multicast address")
    return norm


def check_mtu(mtu: int | None) -> None:
    """Refuse an MTU no Ethernet device takes, before anything is created."""
    if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
        raise exceptions.InvalidRequest(reason=f"MTU {mtu} is outside {MIN_MTU}..{MAX_MTU}")


def check_mtu_fits(info: LinkInfo, mtu: int | None) -> None:
    """Refuse an MTU outside what the kernel reports this device can take."""
    if mtu is None:
        return
    # A max_mtu of 0 means the device sets no upper limit (dev_validate_mtu).
    too_big = info.max_mtu is not None and 0 < info.max_mtu < mtu
    too_small = info.min_mtu is not None and mtu < info.min_mtu
    if too_big or too_small:
        raise exceptions.InvalidRequest(
            reason=f"MTU {mtu} is outside {info.min_mtu}..{info.max_mtu}, "
            f"the range {info.name} accepts"
        )


def check_group(group: int) -> None:
    if not 0 <= group < 2**32:
        raise ValueError(f"link group {group} is not a 32-bit unsigned number")


def _tun_type(value: Any) -> str | None:
    return {1: "tun", 2: "tap"}.get(value)


def parse(msg: Any, resolve: Callable[[int], str | None]) -> LinkInfo:
    """Turn one RTM_NEWLINK message into a ``LinkInfo``.

    ``resolve`` maps an ifindex to a name; it is called for the master and
    the parent only.
    """
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = data = None
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
        data = linkinfo.get_attr("IFLA_INFO_DATA")
    master_index = msg.get_attr("IFLA_MASTER") or None
    parent_index = msg.get_attr("IFLA_LINK") or None
    index = int(msg["index"])
    if parent_index == index:
        parent_index = None
    parent = None
    if parent_index is not None and msg.get_attr("IFLA_LINK_NETNSID") is None:
        parent = resolve(parent_index)
    extra: dict[str, Any] = {}
    if kind == "macvtap" and data is not None:
        extra["macvtap_mode"] = data.get_attr("IFLA_MACVTAP_MODE")
    if kind == "tun" and data is not None:
        extra["tun_type"] = _tun_type(data.get_attr("IFLA_TUN_TYPE"))
        mq = data.get_attr("IFLA_TUN_MULTI_QUEUE")
        extra["multi_queue"] = None if mq is None else bool(mq)
        extra["tun_owner"] = data.get_attr("IFLA_TUN_OWNER")
        extra["tun_group"] = data.get_attr("IFLA_TUN_GROUP")
        persist = data.get_attr("IFLA_TUN_PERSIST")
        extra["tun_persist"] = None if persist is None else bool(persist)
    return LinkInfo(
        index=index,
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind,
        mac=msg.get_attr("IFLA_ADDRESS"),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        group=int(msg.get_attr("IFLA_GROUP") or 0),
        up=bool(msg["flags"] & IFF_UP),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
        master=resolve(master_index) if master_index else None,
        master_index=master_index,
        parent=parent,
        parent_index=parent_index,
        min_mtu=msg.get_attr("IFLA_MIN_MTU"),
        max_mtu=msg.get_attr("IFLA_MAX_MTU"),
        **extra,
    )


def _get_msg(**key: Any) -> Any | None:
    """The RTM_NEWLINK message for ``ifname=`` or ``index=``; ``None`` if absent."""
    device = str(key.get("ifname", key.get("index")))
    try:
        with rtnl.kernel_call("look up", device):
            (msg,) = rtnl.ipr().link("get", **key)
    except exceptions.NetdevError as err:
        if rtnl.caused_by(err, errno.ENODEV):
            return None
        raise
    return msg


def _name_of(index: int) -> str | None:
    msg = _get_msg(index=index)
    return None if msg is None else str(msg.get_attr("IFLA_IFNAME"))


def get_link(name: str) -> LinkInfo | None:
    """The device called ``name``, or ``None`` when there is none.

    Raises ``InvalidDeviceName`` for a name no device can have.
    """
    names.validate_name(name)
    msg = _get_msg(ifname=name)
    return None if msg is None else parse(msg, _name_of)


def link_exists(name: str) -> bool:
    """Whether a device called ``name`` exists in this namespace."""
    return get_link(name) is not None


def list_links(group: int | None = None) -> list[LinkInfo]:
    """Every device, or only those in link ``group``; one netlink dump.

    Costs about 0.2 ms per device on the host (pyroute2 parses every
    message), so call it for reconciliation, not on each request.
    """
    with rtnl.kernel_call("list devices", "*"):
        msgs = list(rtnl.ipr().link("dump"))
    by_index = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in msgs}
    out = [parse(m, by_index.get) for m in msgs]
    if group is not None:
        out = [link for link in out if link.group == group]
    return out


def require(name: str, operation: str) -> LinkInfo:
    """``get_link`` that raises ``NetdevError`` when the device is missing."""
    info = get_link(name)
    if info is None:
        raise exceptions.NetdevError(operation=operation, device=name, reason="no such device")
    return info


def fix_up(info: LinkInfo, *, mtu: int | None, group: int, adopt_foreign: bool = False) -> LinkInfo:
    """Bring an existing device to the wanted MTU and group, and up.

    Only a device already in ``group`` (this daemon's: it made it) is adopted
    unless ``adopt_foreign``: taking over someone else's device would change
    it now and delete it on unplug; it raises ``DeviceInUse`` instead.
    Sends one netlink message with only what differs (none if nothing does)
    and returns the device as the kernel now reports it.
    """
    if info.group != group and not adopt_foreign:
        raise exceptions.DeviceInUse(
            device=info.name,
            reason=f"it is a {info.kind or 'device'} that vifplug did not "
            f"create (link group {info.group}, not {group})",
        )
    check_mtu_fits(info, mtu)
    changes: dict[str, Any] = {}
    if mtu is not None and info.mtu != mtu:
        changes["mtu"] = mtu
    if info.group != group:
        changes["group"] = group
    if not info.up:
        changes["state"] = "up"
    if not changes:
        return info
    with rtnl.kernel_call(f"set {', '.join(sorted(changes))}", info.name):
        rtnl.ipr().link("set", index=info.index, **changes)
    return require(info.name, "read back")


def set_master(name: str, master: str | None) -> LinkInfo:
    """Make ``master`` (a bridge) the master of ``name``; ``None`` releases it.

    Idempotent: nothing is sent when the device already has that master.
    Raises ``NetdevError`` when either device is missing, ``DeviceInUse``
    when the device already has another master (another bridge, Open
    vSwitch; release it first) or the kernel says it is busy.
    """
    operation = f"attach to {master}" if master else "release from its master"
    info = require(name, operation)
    if master is None:
        if info.master_index is None:
            return info
        with rtnl.kernel_call(operation, name):
            rtnl.ipr().link("set", index=info.index, master=0)
        return require(name, "read back")
    upper = require(master, f"use as master of {name}")
    if info.master_index == upper.index:
        return info
    if info.master_index is not None:
        # Taking a port from another bridge (or from OVS) would change state
        # the caller did not name; it must release it first.
        raise exceptions.DeviceInUse(
            device=name, reason=f"it is already a port of {info.master or info.master_index}"
        )
    with rtnl.kernel_call(operation, name):
        rtnl.ipr().link("set", index=info.index, master=upper.index)
    return require(name, "read back")


def delete_one(info: LinkInfo) -> None:
    """Delete a device this module just created, to undo a failed ``ensure``.

    A device already gone is fine.
    """
    try:
        with rtnl.kernel_call("delete", info.name):
            rtnl.ipr().link("del", index=info.index)
    except exceptions.NetdevError as err:
        if not rtnl.caused_by(err, errno.ENODEV):
            raise
