"""Tap devices for VMs: created persistent, owned by the VM's user, in our link group.

The kernel cannot create a tun/tap device through rtnetlink; it is made with
``ioctl``s on ``/dev/net/tun`` (what ``ip tuntap add`` and pyroute2's
``kind='tuntap'`` do).  We issue them ourselves, with pyroute2's per-platform
ioctl numbers, for one reason: pyroute2 drops ``IFF_TUN_EXCL``, and without
it "creating" a tap that already exists silently attaches to it and succeeds,
so two racing plugs would both believe they created the device and both
would delete it on rollback.  With ``IFF_TUN_EXCL`` the kernel answers EBUSY
and we adopt the existing device instead.  Its carrier is turned off
(``TUNSETCARRIER``), then MAC, MTU, group and up are one rtnetlink message
while the tap is still attached (see ``_create``).

Flags: ``IFF_NO_PI`` as ``ip tuntap`` sets by default; no ``IFF_VNET_HDR``
(libvirt/QEMU set it when they attach); ``IFF_MULTI_QUEUE`` when asked, which
must match what QEMU will ask for, since the kernel refuses an attach whose
multi-queue flag differs from the device's.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import (
    IFT_MULTI_QUEUE,
    IFT_NO_PI,
    IFT_TAP,
    IFT_TUN_EXCL,
)
from pyroute2.netlink.rtnl.ifinfmsg import tuntap as _tuntap

from vifplug import exceptions
from vifplug.netdev import links, names, owned, rtnl

LOG = logging.getLogger(__name__)

TUN_DEVICE = "/dev/net/tun"
#: The tun driver's largest MTU for a tap: 65535 less its Ethernet header.
TAP_MAX_MTU = 65535 - 14
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, flags, rest of the union
_INT = struct.Struct("i")
#: ``_IOW('T', 226, int)``: the encoding of ``TUNSETIFF`` (``_IOW('T', 202,
#: int)``, pyroute2's per-platform number) with the command number 226.
TUNSETCARRIER = None if _tuntap.TUNSETIFF is None else _tuntap.TUNSETIFF + (226 - 202)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TapSpec:
    """What a VM's tap device must look like.

    ``owner``/``group_owner`` are the uid/gid allowed to attach to the tap
    (the QEMU user), ``None`` for root only.  ``link_group`` is the daemon's
    kernel link group, by which it finds its own devices.
    """

    name: str
    link_group: int
    mac: str | None = None
    mtu: int | None = None
    adopt_foreign: bool = False  # adopt a device not in link_group (not ours)
    owner: int | None = None
    group_owner: int | None = None
    multiqueue: bool = False


def ensure_tap(
    spec: TapSpec, *, before_keeping: Callable[[], object] | None = None
) -> tuple[links.LinkInfo, bool]:
    """Make sure the tap ``spec.name`` exists as specified, up, in ``spec.link_group``.

    Returns the device and whether this call created it.  A tap of that name
    with the same multi-queue flag, and the same MAC, uid and gid where the
    spec gives them, is adopted: its MTU, group and state are fixed up, it is
    never recreated (a running VM may be attached).  Concurrent calls for one
    name in this process are serialized, so exactly one reports ``created``.

    Raises ``InvalidDeviceName`` or ``InvalidRequest`` before touching
    anything when the spec is unusable, ``DeviceInUse`` when a device of that
    name exists but is something else, ``NetdevError`` when the kernel
    refuses.  A tap this call created is deleted again if configuring it fails.

    ``before_keeping`` is called before anything outlives the call: a new
    tap exists, configured, but is made persistent only once it returns; an
    existing one is adopted only then.  If it raises, the new tap is gone
    with its descriptor and an existing one is left untouched.  The caller
    records its intent meanwhile (the tap is made while the intent is
    written, not after).
    """
    names.validate_name(spec.name)
    mac = links.normalize_mac(spec.mac) if spec.mac else None
    links.check_mtu(spec.mtu)
    links.check_group(spec.link_group)
    with links.name_lock(spec.name):
        info, created = _create_or_adopt(spec, mac, before_keeping)
        owned.OWNED.note(spec.name, info.index, spec.link_group)  # its unplug asks no kernel
        return info, created


def _create_or_adopt(
    spec: TapSpec, mac: str | None, before_keeping: Callable[[], object] | None
) -> tuple[links.LinkInfo, bool]:
    # Try to create first: that is the common case, and with
    # IFF_TUN_EXCL the kernel tells us atomically whether the name was free.
    created = _create(spec, mac, before_keeping)
    if created is not None:
        return created, True
    if before_keeping is not None:
        before_keeping()
        # The tap of that name may have been deleted (put aside) meanwhile.
        created = _create(spec, mac)
        if created is not None:
            return created, True
    existing = links.require(spec.name, "adopt")
    _check_adoptable(existing, spec, mac)
    return links.fix_up(
        existing, mtu=spec.mtu, group=spec.link_group, adopt_foreign=spec.adopt_foreign
    ), False


def _configure_new(spec: TapSpec, mac: str | None, *, up: bool) -> int:
    """MAC, MTU and group (and up, when its carrier is off) in one message, on
    a tap not yet persistent; returns its index."""
    changes: dict[str, Any] = {"group": spec.link_group}
    if mac is not None:
        changes["address"] = mac
    if spec.mtu is not None:
        changes["mtu"] = spec.mtu
    try:
        with rtnl.kernel_call("configure new tap", spec.name):
            index = socket.if_nametoindex(spec.name)
            rtnl.set_link(index, up=up, **changes)
    except exceptions.VifplugError as err:
        info = links.get_link(spec.name)
        if info is not None and rtnl.caused_by(err, errno.EINVAL):
            links.check_mtu_fits(info, spec.mtu)  # say so if the MTU was the reason
        raise
    return index


def _carrier_off(fd: int, name: str) -> bool:
    """Turn the attached tap's carrier off; False where the kernel cannot
    (``TUNSETCARRIER`` came with Linux 5.0).

    Up with a carrier, the tap would get an IPv6 link-local address and send
    DAD, router solicitations and MLD reports out of the VM's port, and
    ovs-vswitchd would handle each (three times the CPU of a plug on a
    thousand taps).  Without a carrier it stays silent; the kernel turns the
    carrier on when the VM's QEMU attaches, as on a tap that ``ip tuntap``
    made.  So the tap can be set up in the message that configures it,
    instead of one more once it is detached (``_bring_up``)."""
    if TUNSETCARRIER is None:
        return False
    try:
        fcntl.ioctl(fd, TUNSETCARRIER, _INT.pack(0))
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENOTTY):
            return False
        raise exceptions.NetdevError(
            operation="turn off the carrier of", device=name, reason=err.strerror or str(err)
        ) from err
    return True


def _bring_up(spec: TapSpec, index: int) -> None:
    """Set the new tap up, once no descriptor is attached to it (and so it has
    no carrier): on a kernel without ``TUNSETCARRIER`` only."""
    with rtnl.kernel_call("set up new tap", spec.name):
        rtnl.ipr().link("set", index=index, state="up")


def _delete_new(name: str, index: int) -> None:
    """Delete a tap this call made and could not finish; it is never reported
    as created, so nobody else would."""
    try:
        with rtnl.kernel_call("delete", name):
            rtnl.ipr().link("del", index=index)
    except Exception:
        LOG.exception("could not delete the new tap %s again; reconciliation will", name)


def _create(
    spec: TapSpec, mac: str | None, before_keeping: Callable[[], object] | None = None
) -> links.LinkInfo | None:
    """Create the tap, configured and persistent; None if the name is taken.

    The tap is configured (our link group, MAC, MTU, up with its carrier
    off: ``_carrier_off``) while this call still holds the descriptor that
    keeps it alive, and made persistent only then.  Killed at any moment
    before it is persistent, or failing to configure it, the kernel removes
    the tap with the descriptor: a tap that outlives this call always
    carries our link group, so it is never taken for someone else's.
    """
    if _tuntap.TUNSETIFF is None:
        raise exceptions.NetdevError(
            operation="create tap",
            device=spec.name,
            reason="tun ioctls are not known for this CPU architecture",
        )
    flags = IFT_TAP | IFT_NO_PI | IFT_TUN_EXCL
    if spec.multiqueue:
        flags |= IFT_MULTI_QUEUE
    ifreq = _IFREQ.pack(spec.name.encode("utf-8"), flags)
    with rtnl.kernel_call("create tap", spec.name):
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            with rtnl.kernel_call("create tap", spec.name):
                fcntl.ioctl(fd, _tuntap.TUNSETIFF, ifreq)
        except exceptions.DeviceInUse as err:
            if rtnl.caused_by(err, errno.EBUSY):  # IFF_TUN_EXCL: the name is taken
                return None
            raise
        with rtnl.kernel_call("create tap", spec.name):
            if spec.owner is not None:
                fcntl.ioctl(fd, _tuntap.TUNSETOWNER, spec.owner)
            if spec.group_owner is not None:
                fcntl.ioctl(fd, _tuntap.TUNSETGROUP, spec.group_owner)
        silent = _carrier_off(fd, spec.name)
        index = _configure_new(spec, mac, up=silent)
        if before_keeping is not None:
            before_keeping()  # raising, it leaves the tap to vanish with fd
        with rtnl.kernel_call("create tap", spec.name):
            fcntl.ioctl(fd, _tuntap.TUNSETPERSIST, 1)
    finally:
        os.close(fd)
    try:
        if not silent:
            _bring_up(spec, index)
        return _as_created(spec, mac, index)
    except BaseException:  # ours and persistent now: delete it again
        _delete_new(spec.name, index)
        raise


def _as_created(spec: TapSpec, mac: str | None, index: int) -> links.LinkInfo:
    """The tap this call just made, without reading it back when possible.

    Parsing the kernel's RTM_NEWLINK answer was half of pyroute2's cost of a
    plug.  When the spec fixed the MAC and MTU, every field is known: what
    we set, the tun driver's fixed MTU bounds, and the index.
    Otherwise (the kernel chose a random MAC, or the default MTU) read it.
    """
    if mac is None or spec.mtu is None:
        return links.require(spec.name, "read back")
    return links.LinkInfo(
        index=index,
        name=spec.name,
        kind="tun",
        mac=mac,
        mtu=spec.mtu,
        group=spec.link_group,
        up=True,
        operstate="DOWN",  # no carrier until a VM attaches
        min_mtu=links.MIN_MTU,
        max_mtu=TAP_MAX_MTU,
        tun_type="tap",
        multi_queue=spec.multiqueue,
        tun_owner=spec.owner,
        tun_group=spec.group_owner,
        tun_persist=True,
    )


def _check_adoptable(info: links.LinkInfo, spec: TapSpec, mac: str | None) -> None:
    """Raise ``DeviceInUse`` unless ``info`` is a tap ``spec`` may take over."""

    def refuse(reason: str) -> exceptions.DeviceInUse:
        return exceptions.DeviceInUse(device=spec.name, reason=reason)

    if not info.is_tap:
        kind = info.tun_type if info.kind == "tun" else info.kind or "physical"
        what = f"a {kind} device"
        raise refuse(f"it is {what}, not a tap")
    if mac is not None and (info.mac or "").lower() != mac:
        raise refuse(f"it is a tap with MAC {info.mac}, not {mac}")
    if info.multi_queue is not None and info.multi_queue != spec.multiqueue:
        has = "is" if info.multi_queue else "is not"
        raise refuse(f"it is a tap that {has} multi-queue, and that cannot change")
    if spec.owner is not None and info.tun_owner != spec.owner:
        raise refuse(f"it is a tap for {_who('uid', info.tun_owner)}, not uid {spec.owner}")
    if spec.group_owner is not None and info.tun_group != spec.group_owner:
        raise refuse(f"it is a tap for {_who('gid', info.tun_group)}, not gid {spec.group_owner}")


def _who(what: str, value: int | None) -> str:
    return f"{what} {value}" if value is not None else f"no particular {what}"
