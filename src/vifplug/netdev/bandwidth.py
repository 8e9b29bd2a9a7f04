"""Bandwidth limits on a VM's host device, with tc through pyroute2.

Directions are named from the host device's side, because that is where tc
works: *egress* is what the device transmits and is shaped by a TBF root
qdisc (packets wait in a queue); *ingress* is what the device receives and
is policed by an ingress qdisc with a match-all u32 filter and a ``police``
action (packets over the rate are dropped: there is no queue on ingress).
This is what libvirt does, with the same units: a rate in ``kbps`` is tc's,
1000 bytes per second; a burst in ``kb`` is 1024 bytes.

Which of them is "into the VM" depends on the device, and libvirt swaps
them for the same reason (``virNetDevBandwidthSet(..., swapped)``):

* tap (and the veth/bridge of a hybrid plug): what the VM sends is written
  into the tap and arrives on the host as the tap's *ingress*; what the host
  sends to the VM is the tap's *egress*.  libvirt's ``inbound`` (into the
  VM) is the tap's egress, ``outbound`` is its ingress.
* macvtap: what the VM writes is transmitted by the macvtap (its *egress*)
  towards the parent; what arrives for the VM is received by the macvtap
  (its *ingress*) and queued to the VM.  ``inbound`` is ingress,
  ``outbound`` egress: the other way round.

``Bandwidth.for_vm`` does this mapping; the functional tests check both
directions by writing frames into a tap and a macvtap.

Kernels without ``act_police`` (``CONFIG_NET_ACT_POLICE``) cannot limit
ingress; ``set_bandwidth`` then raises ``NetdevError`` saying so and leaves
no ingress qdisc behind.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

from pyroute2.netlink.rtnl import TC_H_INGRESS, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import common as tc_common
from pyroute2.protocols import ETH_P_ALL

from vifplug import exceptions
from vifplug.netdev import links, rtnl

KBPS = 1000
"""Bytes per second in one tc ``kbps`` (libvirt's "kilobytes per second")."""

KB = 1024
"""Bytes in one tc ``kb`` (libvirt's burst unit)."""

MIN_BURST_KB = 64
"""Smallest default burst: one 64 KiB GSO packet must fit, or TCP stalls."""

MAX_KBPS = (2**32 - 1) // KBPS
"""The classic tc rate field is 32 bits of bytes per second (~34 Gbit/s)."""

LATENCY_S = 0.05
"""How long a packet may wait in the egress queue (sets the TBF limit)."""

POLICE_MTU = 64 * KB
"""Largest packet the police action lets through, as libvirt sets it (GSO)."""

ROOT_HANDLE = 0x10000  # 1:
INGRESS_HANDLE = 0xFFFF0000  # ffff:
FILTER_PRIO = 1
_FLOWID = 0x1  # :1, as libvirt's "flowid :1"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bandwidth:
    """Rates in kbps (1000 B/s) and bursts in kb (1024 B) per host-device direction.

    ``None`` rate: no limit in that direction.
    """

    ingress_kbps: int | None = None
    ingress_burst_kb: int | None = None
    egress_kbps: int | None = None
    egress_burst_kb: int | None = None

    @classmethod
    def for_vm(
        cls,
        device_kind: str,
        *,
        inbound_kbps: int | None = None,
        inbound_burst_kb: int | None = None,
        outbound_kbps: int | None = None,
        outbound_burst_kb: int | None = None,
    ) -> Bandwidth:
        """Map libvirt's VM-side ``inbound``/``outbound`` onto the device's directions.

        ``device_kind`` is the ``LinkInfo.kind`` of the device (``macvtap``
        swaps; ``tun``, ``veth`` and the rest do not), see the module docstring.
        """
        if device_kind == "macvtap":
            return cls(
                ingress_kbps=inbound_kbps,
                ingress_burst_kb=inbound_burst_kb,
                egress_kbps=outbound_kbps,
                egress_burst_kb=outbound_burst_kb,
            )
        return cls(
            ingress_kbps=outbound_kbps,
            ingress_burst_kb=outbound_burst_kb,
            egress_kbps=inbound_kbps,
            egress_burst_kb=inbound_burst_kb,
        )

    @property
    def unlimited(self) -> bool:
        return self.ingress_kbps is None and self.egress_kbps is None


def _check(direction: str, kbps: int | None, burst_kb: int | None) -> None:
    if kbps is None:
        if burst_kb is not None:
            raise exceptions.InvalidRequest(reason=f"{direction} burst given without a rate")
        return
    if not 1 <= kbps <= MAX_KBPS:
        raise exceptions.InvalidRequest(
            reason=f"{direction} rate {kbps} kbps is outside 1..{MAX_KBPS}"
        )
    if burst_kb is not None and not 1 <= burst_kb <= (2**32 - 1) // KB:
        raise exceptions.InvalidRequest(reason=f"{direction} burst {burst_kb} kb is out of range")


def _burst_bytes(kbps: int, burst_kb: int | None) -> int:
    # libvirt's default burst is the rate's worth of one second.
    return (burst_kb if burst_kb is not None else max(kbps, MIN_BURST_KB)) * KB


def set_bandwidth(
    name: str,
    *,
    ingress_kbps: int | None = None,
    ingress_burst_kb: int | None = None,
    egress_kbps: int | None = None,
    egress_burst_kb: int | None = None,
) -> Bandwidth:
    """Make the limits of device ``name`` exactly these (host-device directions).

    A direction with no rate gets no limit (an existing one is removed).
    Idempotent.  Returns what the kernel then reports.  Raises
    ``InvalidRequest`` for impossible values before touching anything,
    ``NetdevError`` when the device is missing or the kernel refuses (the
    device is then left without limits rather than half-configured).
    """
    _check("ingress", ingress_kbps, ingress_burst_kb)
    _check("egress", egress_kbps, egress_burst_kb)
    info = links.require(name, "set bandwidth")
    try:
        _clear_ingress(info)
        if ingress_kbps is not None:
            _police_ingress(info, ingress_kbps, _burst_bytes(ingress_kbps, ingress_burst_kb))
        if egress_kbps is not None:
            _shape_egress(info, egress_kbps, _burst_bytes(egress_kbps, egress_burst_kb))
        else:
            _clear_egress(info)
    except exceptions.VifplugError:
        _clear_quietly(info)
        raise
    return _read(info)


def clear_bandwidth(name: str) -> None:
    """Remove the limits ``set_bandwidth`` installs; a device without any is fine.

    Raises ``NetdevError`` when the device is missing or the kernel refuses.
    """
    info = links.require(name, "clear bandwidth")
    _clear_ingress(info)
    _clear_egress(info)


def get_bandwidth(name: str) -> Bandwidth:
    """The limits on device ``name`` as the kernel reports them (rounded to kbps/kb).

    Only the shapes ``set_bandwidth`` installs are recognised: a TBF root
    qdisc and a police action on the ingress qdisc.
    """
    return _read(links.require(name, "read bandwidth"))


# --- egress: TBF root qdisc ------------------------------------------------------


def _shape_egress(info: links.LinkInfo, kbps: int, burst: int) -> None:
    rate = kbps * KBPS
    with rtnl.kernel_call("shape egress (tbf)", info.name):
        rtnl.ipr().tc(
            "replace",
            "tbf",
            index=info.index,
            handle=ROOT_HANDLE,
            rate=rate,
            burst=burst,
            limit=int(rate * LATENCY_S) + burst,
        )


def _root_qdisc(info: links.LinkInfo) -> Any | None:
    with rtnl.kernel_call("list qdiscs", info.name):
        qdiscs = list(rtnl.ipr().tc("dump", index=info.index))
    for qdisc in qdiscs:
        if qdisc["index"] == info.index and qdisc["parent"] == TC_H_ROOT:
            return qdisc
    return None


def _clear_egress(info: links.LinkInfo) -> None:
    root = _root_qdisc(info)
    # Only our own shape is removed; a root qdisc someone else set is theirs.
    if root is not None and root.get_attr("TCA_KIND") == "tbf":
        with rtnl.kernel_call("remove egress shaping", info.name):
            rtnl.ipr().tc("del", index=info.index, parent=TC_H_ROOT, handle=root["handle"])


# --- ingress: ingress qdisc + u32 match-all + police ---------------------------


def _filter_key(index: int) -> dict[str, Any]:
    """What names our u32 filter (and matches every packet), for adding and deleting it."""
    return {
        "index": index,
        "parent": INGRESS_HANDLE,
        "prio": FILTER_PRIO,
        "protocol": ETH_P_ALL,
        "target": _FLOWID,
        "keys": ["0x0/0x0+0"],
    }


def police_request(index: int, kbps: int, burst: int) -> dict[str, Any]:
    """The ``tc("add-filter", "u32", ...)`` arguments of our ingress policer.

    libvirt's ``u32 match u32 0 0 police rate <kbps>kbps burst <kb>kb mtu
    64kb drop flowid :1``: every packet, over the rate dropped.
    """
    police = {"rate": kbps * KBPS, "burst": burst, "mtu": POLICE_MTU, "action": "drop"}
    return {**_filter_key(index), **police}


def _police_ingress(info: links.LinkInfo, kbps: int, burst: int) -> None:
    if _ingress_filters(info) is None:
        with rtnl.kernel_call("add ingress qdisc", info.name):
            rtnl.ipr().tc("add", "ingress", index=info.index)
    try:
        with rtnl.kernel_call("police ingress (u32 + police)", info.name):
            rtnl.ipr().tc("add-filter", "u32", **police_request(info.index, kbps, burst))
    except exceptions.NetdevError as err:
        if rtnl.caused_by(err, errno.ENOENT):  # the kernel has no such action
            raise exceptions.NetdevError(
                operation="police ingress",
                device=info.name,
                reason="this kernel has no tc police action "
                "(CONFIG_NET_ACT_POLICE / module act_police)",
            ) from err.__cause__
        raise


def _ingress_filters(info: links.LinkInfo) -> list[Any] | None:
    """The filters under the device's ingress qdisc; ``None`` when it has none."""
    with rtnl.kernel_call("list qdiscs", info.name):
        qdiscs = list(rtnl.ipr().tc("dump", index=info.index))
    if not any(q["index"] == info.index and q["parent"] == TC_H_INGRESS for q in qdiscs):
        return None
    with rtnl.kernel_call("list ingress filters", info.name):
        return list(rtnl.ipr().get_filters(index=info.index, parent=INGRESS_HANDLE))


def _is_ours(msg: Any) -> bool:
    """Our policer: the u32 filter at our priority (a u32 dump also lists its hash table)."""
    return bool(msg.get_attr("TCA_KIND") == "u32" and (msg["info"] >> 16) == FILTER_PRIO)


def _clear_ingress(info: links.LinkInfo) -> None:
    """Remove our policer; the ingress qdisc goes too unless others' filters use it.

    Open vSwitch (``ingress_policing_rate``) and others put their own filters
    on the same qdisc; those are left alone.
    """
    filters = _ingress_filters(info)
    if filters is None:
        return
    ours = [f for f in filters if _is_ours(f)]
    if len(ours) == len(filters):  # only ours, or an empty qdisc left by a failure
        with rtnl.kernel_call("remove ingress policing", info.name):
            rtnl.ipr().tc("del", "ingress", index=info.index)
    elif ours:
        with rtnl.kernel_call("remove ingress policer", info.name):
            rtnl.ipr().tc("del-filter", "u32", **_filter_key(info.index))


def _clear_quietly(info: links.LinkInfo) -> None:
    for clear in (_clear_ingress, _clear_egress):
        try:
            clear(info)
        except exceptions.VifplugError:
            pass


# --- reading back ------------------------------------------------------------------


def _ticks_to_kb(rate: int, ticks: int) -> int:
    """Inverse of tc's ``calc_xmittime``: a burst given in scheduler ticks, in kb."""
    if not rate:
        return 0
    per_sec = float(tc_common.TIME_UNITS_PER_SEC * tc_common.tick_in_usec)
    return round(ticks * rate / per_sec / KB)


def _read(info: links.LinkInfo) -> Bandwidth:
    egress_kbps = egress_burst_kb = ingress_kbps = ingress_burst_kb = None
    root = _root_qdisc(info)
    if root is not None and root.get_attr("TCA_KIND") == "tbf":
        parms = root.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")
        egress_kbps = round(parms["rate"] / KBPS)
        egress_burst_kb = _ticks_to_kb(parms["rate"], parms["buffer"])
    police = _ingress_police(info)
    if police is not None:
        ingress_kbps, ingress_burst_kb = police
    return Bandwidth(
        ingress_kbps=ingress_kbps,
        ingress_burst_kb=ingress_burst_kb,
        egress_kbps=egress_kbps,
        egress_burst_kb=egress_burst_kb,
    )


def _ingress_police(info: links.LinkInfo) -> tuple[int, int] | None:
    """Rate (kbps) and burst (kb) of our ingress policer, if there is one."""
    for msg in _ingress_filters(info) or []:
        found = police_params(msg) if _is_ours(msg) else None
        if found is not None:
            return found
    return None


def police_params(msg: Any) -> tuple[int, int] | None:
    """Rate (kbps) and burst (kb) of the police action in a u32 filter message.

    The kernel reports a police given the classic way (``TCA_U32_POLICE``)
    the same way back; one added as an action comes back in ``TCA_U32_ACT``.
    """
    options = msg.get_attr("TCA_OPTIONS")
    if msg.get_attr("TCA_KIND") != "u32" or options is None:
        return None
    tbf = None
    police = options.get_attr("TCA_U32_POLICE")
    if police is not None:
        tbf = police.get_attr("TCA_POLICE_TBF")
    for action in _actions(options.get_attr("TCA_U32_ACT")):
        if tbf is None and action.get_attr("TCA_ACT_KIND") == "police":
            tbf = action.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_POLICE_TBF")
    if tbf is None:
        return None
    return round(tbf["rate"] / KBPS), _ticks_to_kb(tbf["rate"], tbf["burst"])


def _actions(prio: Any) -> list[Any]:
    if prio is None:
        return []
    return [value for _key, value in prio.get("attrs", [])]
