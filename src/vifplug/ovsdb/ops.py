"""The few writes vifplug makes into OVSDB, as plain functions.

Each ``*_op`` returns a write function for ``Connection.submit``.  They are
idempotent ("make it so") because a transaction may be rebuilt and retried,
and they only set the keys they own: keys that others wrote into an
``external_ids`` column are never removed.

What is written follows the Open vSwitch IntegrationGuide: ``system-id`` in
``Open_vSwitch``, ``bridge-id`` and ``other_config:hwaddr`` in ``Bridge``,
``iface-id``/``attached-mac``/``vm-id``/``iface-status`` in ``Interface``.

One exception, by rule (``IFACE_ID_RULES``): on a host whose controller binds
by ``iface-id`` alone (OVN, recognised by ``Open_vSwitch
external_ids:ovn-remote``), an inactive interface keeps its iface-id under
``views.HIDDEN_IFACE_ID`` instead, and activating an interface moves the key
back on it and away from the others in the same transaction: the controller
then claims exactly the active interface.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vifplug import exceptions
from vifplug.ovsdb import views
from vifplug.ovsdb.schema import Row
from vifplug.ovsdb.txn import Txn, col, is_new

ACTIVE = "active"
INACTIVE = "inactive"

#: Where an inactive interface carries its iface-id: ``auto`` hides it when
#: ``Open_vSwitch external_ids:ovn-remote`` is set, ``hide`` always, ``keep``
#: never (every interface keeps ``iface-id``, as the IntegrationGuide says).
IFACE_ID_RULES = ("auto", "hide", "keep")
IFACE_ID = "iface-id"


@dataclasses.dataclass(frozen=True)
class HostSpec:
    system_id: str | None = None
    system_type: str | None = None
    system_version: str | None = None
    enable_statistics: bool | None = None


@dataclasses.dataclass(frozen=True)
class BridgeSpec:
    name: str
    datapath_type: str | None = None
    bridge_id: str | None = None
    hwaddr: str | None = None
    external_ids: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PortSpec:
    """An OVS port with one interface of the same name.

    ``external_ids`` are the Interface keys vifplug sets; ``iface_status`` is
    applied with ``exclusive`` semantics (see ``set_iface_status``).
    """

    bridge: str
    name: str
    iface_type: str = ""
    external_ids: Mapping[str, str] = dataclasses.field(default_factory=dict)
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    iface_status: str | None = ACTIVE
    exclusive: bool = True
    ingress_policing_rate: int | None = None
    ingress_policing_burst: int | None = None
    mtu_request: int | None = None
    iface_id_rule: str = "auto"
    require_ids: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """An existing port is taken over only if its interface already carries
    all these external_ids (vifplug's own marks for this VIF); any other port
    or interface of that name is someone else's and is refused."""
    transient: bool = False
    """``Port other_config:transient=true``, as libvirt and ovn-kubernetes mark
    ports whose device dies with the host: ``ovs-ctl --delete-transient-ports``
    removes them at boot, instead of leaving ports without devices."""


Op = Callable[[Txn], Any]


def _carries(iface: Row, wanted: Mapping[str, str]) -> bool:
    ids = col(iface, "external_ids", {})
    return all(ids.get(k) == v for k, v in wanted.items())


def _set_keys(row: Row, column: str, values: Mapping[str, str]) -> None:
    if is_new(row):
        merged = dict(col(row, column, {}))
        merged.update(values)
        setattr(row, column, merged)
        return
    current = getattr(row, column)
    for key, value in values.items():
        if current.get(key) != value:
            row.setkey(column, key, value)


def ensure_host_op(spec: HostSpec) -> Op:
    """Set the Open_vSwitch row's identity; returns the system-id in effect."""

    def op(t: Txn) -> str | None:
        host = t.host()
        if host is None:
            raise exceptions.OvsdbTransactionFailed(
                status="error",
                reason="the Open_vSwitch table has no row; run 'ovs-vsctl init' first",
            )
        if spec.system_id is not None:
            _set_keys(host, "external_ids", {"system-id": spec.system_id})
        if spec.system_type is not None and host.system_type != [spec.system_type]:
            host.system_type = spec.system_type
        if spec.system_version is not None and host.system_version != [spec.system_version]:
            host.system_version = spec.system_version
        if spec.enable_statistics is not None:
            _set_keys(
                host,
                "other_config",
                {"enable-statistics": "true" if spec.enable_statistics else "false"},
            )
        result: str | None = spec.system_id or host.external_ids.get("system-id")
        return result

    return op


def ensure_bridge_op(spec: BridgeSpec) -> Op:
    """Create the bridge (with its internal port, as ovs-vsctl does) if missing.

    Returns True when this transaction created it.  An existing bridge keeps
    its datapath type; only the identity keys are brought up to date.
    """

    def op(t: Txn) -> bool:
        return ensure_bridge(t, spec)

    return op


def ensure_bridge(t: Txn, spec: BridgeSpec) -> bool:
    bridge = t.bridge(spec.name)
    created = False
    if bridge is None:
        host = t.host()
        if host is None:
            raise exceptions.OvsdbTransactionFailed(
                status="error", reason="the Open_vSwitch table has no row"
            )
        iface = t.insert("Interface", spec.name)
        iface.type = "internal"
        port = t.insert("Port", spec.name)
        port.interfaces = [iface]
        bridge = t.insert("Bridge", spec.name)
        bridge.ports = [port]
        if spec.datapath_type:
            bridge.datapath_type = spec.datapath_type
        host.addvalue("bridges", bridge)
        created = True
    ids = dict(spec.external_ids)
    if spec.bridge_id:
        ids["bridge-id"] = spec.bridge_id
    _set_keys(bridge, "external_ids", ids)
    if spec.hwaddr:
        _set_keys(bridge, "other_config", {"hwaddr": spec.hwaddr})
    return created


def ensure_port_op(spec: PortSpec, *, bridge: BridgeSpec | None = None) -> Op:
    """Attach the port to ``spec.bridge`` (creating the bridge from ``bridge``
    when given) and set its interface's keys; returns the names of other
    interfaces that were made inactive because this one became active."""

    def op(t: Txn) -> list[str]:
        if bridge is not None:
            ensure_bridge(t, bridge)
        return ensure_port(t, spec)

    return op


def ensure_port(t: Txn, spec: PortSpec) -> list[str]:
    br = t.bridge(spec.bridge)
    if br is None:
        raise exceptions.InterfaceError(
            device=spec.name, bridge=spec.bridge, reason=f"bridge {spec.bridge} does not exist"
        )
    port = t.port(spec.name)
    existing = t.interface(spec.name)
    if (
        (port is not None or existing is not None)
        and spec.require_ids
        and (existing is None or not _carries(existing, spec.require_ids))
    ):
        raise exceptions.DeviceInUse(
            device=spec.name,
            reason="an OVS port or interface of that name exists "
            "and vifplug did not make it for this VIF",
        )
    if port is None:
        iface = t.insert("Interface", spec.name)
        port = t.insert("Port", spec.name)
        port.interfaces = [iface]
        t.attach_port(br, port)
    else:
        current = t.bridge_of_port(port)
        if current is None or current.uuid != br.uuid:
            if current is not None:
                current.delvalue("ports", port)
            t.attach_port(br, port)
        iface = t.interface(spec.name)
        if iface is None:
            iface = t.insert("Interface", spec.name)
            port.interfaces = [iface]
    if spec.transient:
        _set_keys(port, "other_config", {"transient": "true"})
    if col(iface, "type", "") != spec.iface_type or is_new(iface):
        iface.type = spec.iface_type
    ids = dict(spec.external_ids)
    iface_id = ids.pop(IFACE_ID, None)
    _set_iface_config(iface, spec)
    if is_new(iface):
        return _new_iface_keys(t, iface, spec, ids, iface_id)
    _set_keys(iface, "external_ids", ids)
    if spec.iface_status is None:
        if iface_id:
            _place_iface_id(t, iface, iface_id, visible=True)
        return []
    return _apply_status(
        t,
        iface,
        spec.iface_status,
        exclusive=spec.exclusive,
        rule=spec.iface_id_rule,
        iface_id=iface_id,
    )


def _set_iface_config(iface: Row, spec: PortSpec) -> None:
    """The interface's options, policing and MTU request, where they differ."""
    _set_keys(iface, "options", spec.options)
    if (
        spec.ingress_policing_rate is not None
        and col(iface, "ingress_policing_rate", 0) != spec.ingress_policing_rate
    ):
        iface.ingress_policing_rate = spec.ingress_policing_rate
    if (
        spec.ingress_policing_burst is not None
        and col(iface, "ingress_policing_burst", 0) != spec.ingress_policing_burst
    ):
        iface.ingress_policing_burst = spec.ingress_policing_burst
    if spec.mtu_request is not None and col(iface, "mtu_request", []) != [spec.mtu_request]:
        iface.mtu_request = spec.mtu_request


def _new_iface_keys(
    t: Txn, iface: Row, spec: PortSpec, ids: Mapping[str, str], iface_id: str | None
) -> list[str]:
    """A new interface's external_ids (its marks, its iface-id where the rule
    puts it, its iface-status) in one write, with what ``_apply_status``
    does to the others; returns the interfaces made inactive.

    Every write of a map column converts each key and value again: the
    three writes of the general path cost the IDL thread about 100 us a new
    port, one write 30 us, and the IDL thread builds every transaction."""
    status = spec.iface_status
    merged = dict(col(iface, "external_ids", {}))  # an earlier write of the batch
    merged.update(ids)
    demoted: list[str] = []
    visible = True
    if status is not None:
        iface_id = iface_id or _iface_id_in(merged)
        hide = _hides(t, spec.iface_id_rule)
        demoted = _demote_others(t, iface, iface_id, status, exclusive=spec.exclusive, hide=hide)
        visible = status == ACTIVE or not hide
        merged["iface-status"] = status
    if iface_id:
        want, other = _iface_id_keys(visible)
        merged.pop(other, None)
        merged[want] = iface_id
    iface.external_ids = merged
    if iface_id:
        t.note_iface_id(iface, iface_id)
    return demoted


def effective_iface_id(iface: Row) -> str | None:
    """The interface's iface-id, shown or hidden."""
    return _iface_id_in(col(iface, "external_ids", {}))


def _iface_id_in(ids: Mapping[str, str]) -> str | None:
    return ids.get(IFACE_ID) or ids.get(views.HIDDEN_IFACE_ID)


def _iface_id_keys(visible: bool) -> tuple[str, str]:
    """The key an iface-id goes under, and the one it leaves."""
    return (IFACE_ID, views.HIDDEN_IFACE_ID) if visible else (views.HIDDEN_IFACE_ID, IFACE_ID)


def _hides(t: Txn, rule: str) -> bool:
    """Whether inactive interfaces hide their iface-id on this host now."""
    if rule != "auto":
        return rule == "hide"
    host = t.host()
    return host is not None and "ovn-remote" in col(host, "external_ids", {})


def _place_iface_id(t: Txn, iface: Row, iface_id: str, *, visible: bool) -> None:
    """Put ``iface_id`` under ``iface-id`` (``visible``) or the hidden key,
    and remove it from the other one."""
    want, other = _iface_id_keys(visible)
    ids = col(iface, "external_ids", {})
    if is_new(iface):
        merged = {k: v for k, v in ids.items() if k != other}
        merged[want] = iface_id
        iface.external_ids = merged
    else:
        if ids.get(want) != iface_id:
            iface.setkey("external_ids", want, iface_id)
        if other in ids:
            iface.delkey("external_ids", other)
    t.note_iface_id(iface, iface_id)


def _apply_status(
    t: Txn, iface: Row, status: str, *, exclusive: bool, rule: str, iface_id: str | None = None
) -> list[str]:
    """Set iface-status; activating one interface makes the others with the same
    iface-id inactive in this same transaction (seed: vswitch.xml iface-status)
    and, where inactive interfaces hide their iface-id, moves it onto this one
    and away from the others."""
    iface_id = iface_id or effective_iface_id(iface)
    hide = _hides(t, rule)
    demoted = _demote_others(t, iface, iface_id, status, exclusive=exclusive, hide=hide)
    if iface_id:
        _place_iface_id(t, iface, iface_id, visible=status == ACTIVE or not hide)
    _set_keys(iface, "external_ids", {"iface-status": status})
    return demoted


def _demote_others(
    t: Txn, iface: Row, iface_id: str | None, status: str, *, exclusive: bool, hide: bool
) -> list[str]:
    """Activating ``iface`` makes the others with its iface-id inactive (and,
    where inactive interfaces hide it, hides theirs); their names."""
    demoted: list[str] = []
    if status != ACTIVE or not exclusive or not iface_id:
        return demoted
    for other in t.interfaces_with_iface_id(iface_id):
        if other.uuid == iface.uuid:
            continue
        if col(other, "external_ids", {}).get("iface-status") == ACTIVE:
            _set_keys(other, "external_ids", {"iface-status": INACTIVE})
            demoted.append(other.name)
        if hide:
            _place_iface_id(t, other, iface_id, visible=False)
    return demoted


def enforce_iface_id_rule_op(names: list[str], *, rule: str) -> Op:
    """Place the iface-id of each named interface by the rule and its current
    iface-status (reconciliation: the host became, or stopped being, an OVN
    host while vifplug was away).  Changes nothing that is already right."""

    def op(t: Txn) -> None:
        hide = _hides(t, rule)
        for name in names:
            iface = t.interface(name)
            iface_id = effective_iface_id(iface) if iface is not None else None
            if iface is None or iface_id is None:
                continue
            status = col(iface, "external_ids", {}).get("iface-status")
            _place_iface_id(t, iface, iface_id, visible=status != INACTIVE or not hide)

    return op


def set_iface_status_op(
    name: str, status: str, *, exclusive: bool = True, rule: str = "auto"
) -> Op:
    """Returns the names of the interfaces made inactive by activating ``name``."""
    if status not in (ACTIVE, INACTIVE):
        raise exceptions.InvalidRequest(
            reason=f"iface_status must be active or inactive, not {status!r}"
        )

    def op(t: Txn) -> list[str]:
        iface = t.interface(name)
        if iface is None:
            raise exceptions.InterfaceError(
                device=name, bridge="?", reason="the interface is not in OVSDB"
            )
        return _apply_status(t, iface, status, exclusive=exclusive, rule=rule)

    return op


def remove_port_op(name: str, *, require_ids: Mapping[str, str] | None = None) -> Op:
    """Remove the port ``name`` from its bridge; True if there was one.

    With ``require_ids``, only a port whose interface carries all those
    external_ids is removed: vifplug never removes ports that others made,
    nor one VIF the port of another."""

    def op(t: Txn) -> bool:
        port = t.port(name)
        if port is None:
            return False
        if require_ids:
            iface = t.interface(name)
            if iface is None or not _carries(iface, require_ids):
                return False
        bridge = t.bridge_of_port(port)
        if bridge is None:
            return False
        t.detach_port(bridge, port)
        return True

    return op
