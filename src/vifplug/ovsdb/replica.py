"""What vifplug keeps of the database between transactions.

The IDL holds the rows; this module keeps what vifplug needs on top of them,
fed by the IDL thread (``Replica.on_row`` for every change the IDL reports,
``Replica.rebuild`` after a reconnect, when the IDL reloaded every row without
reporting the deletions it missed) and read from any thread:

- ``Index``: name -> row uuid for bridges, ports and interfaces, iface-id ->
  interface names, port -> bridge.  Write functions look rows up through it
  (``txn.Txn``) instead of scanning tables.  An update costs O(1) per changed
  row (O(ports) for a changed Bridge), so nothing per VIF grows with the
  number of VIFs.
- Interface snapshots (``views.InterfaceView``): immutable, so no reader ever
  touches an IDL row outside the IDL thread.
- Waiters (``wait_interface``): woken from the IDL thread, which only sets an
  ``Event``.
- Watchers (``add_interface_watcher``, ``add_resync_callback``): never run in
  the IDL thread.  Like ovsdbapp's ``RowEventHandler``, notifications go
  through a queue to one thread of their own (``ovsdb-notify``) and run there
  one after the other, in the order they happened: a slow watcher delays the
  watchers after it, never a transaction.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ovs.db.idl
from ovs.db.data import Datum

from vifplug import exceptions, threadnames
from vifplug.ovsdb import views
from vifplug.ovsdb.schema import Row

LOG = logging.getLogger(__name__)

InterfaceWatcher = Callable[[views.InterfaceView], None]
ResyncCallback = Callable[[], None]
Predicate = Callable[[views.InterfaceView], bool]

NAMED_TABLES = ("Bridge", "Port", "Interface")


class Index:
    """Name, iface-id and port->bridge indexes over the IDL's rows.

    Changed only in the IDL thread; ``Txn`` reads it there while a transaction
    is built.  ``Replica`` guards the iface-id part with its lock, since it
    also answers other threads from it.
    """

    def __init__(self) -> None:
        self.names: dict[str, dict[str, uuid.UUID]] = {t: {} for t in NAMED_TABLES}
        self.row_names: dict[uuid.UUID, tuple[str, str]] = {}
        self.iface_ids: dict[str, set[str]] = collections.defaultdict(set)
        self.iface_id_of: dict[str, str] = {}
        self.port_bridge: dict[uuid.UUID, uuid.UUID] = {}
        self.bridge_ports: dict[uuid.UUID, frozenset[uuid.UUID]] = {}

    # -- look-ups (what Txn uses) ------------------------------------------------
    def uuid_by_name(self, table: str, name: str) -> uuid.UUID | None:
        return self.names[table].get(name)

    def bridge_of_port(self, port_uuid: uuid.UUID) -> uuid.UUID | None:
        return self.port_bridge.get(port_uuid)

    def names_with_iface_id(self, iface_id: str) -> list[str]:
        return list(self.iface_ids.get(iface_id, ()))

    # -- updates -------------------------------------------------------------------
    def clear(self) -> None:
        for names in self.names.values():
            names.clear()
        self.row_names.clear()
        self.iface_ids.clear()
        self.iface_id_of.clear()
        self.port_bridge.clear()
        self.bridge_ports.clear()

    def on_named(self, table: str, event: str, row: Row) -> None:
        names = self.names[table]
        if event == ovs.db.idl.ROW_DELETE:
            known = self.row_names.pop(row.uuid, None)
            if known is not None and names.get(known[1]) == row.uuid:
                del names[known[1]]
            return
        name = row.name
        names[name] = row.uuid
        self.row_names[row.uuid] = (table, name)

    def on_bridge_ports(self, event: str, row: Row) -> None:
        old = self.bridge_ports.pop(row.uuid, frozenset())
        new: frozenset[uuid.UUID] = frozenset()
        if event != ovs.db.idl.ROW_DELETE:
            new = _ref_uuids(row, "ports")
            self.bridge_ports[row.uuid] = new
        for port_uuid in old - new:
            if self.port_bridge.get(port_uuid) == row.uuid:
                del self.port_bridge[port_uuid]
        for port_uuid in new - old:
            self.port_bridge[port_uuid] = row.uuid

    def set_iface_id(self, name: str, iface_id: str | None) -> None:
        old = self.iface_id_of.get(name)
        if old == iface_id:
            return
        if old is not None:
            self.iface_ids[old].discard(name)
            if not self.iface_ids[old]:
                del self.iface_ids[old]
        if iface_id is None:
            self.iface_id_of.pop(name, None)
        else:
            self.iface_id_of[name] = iface_id
            self.iface_ids[iface_id].add(name)


class Notifier:
    """One thread that runs what is posted to it, in order (ovsdbapp's notify
    thread), so that nothing a watcher does runs in the IDL thread."""

    def __init__(self, name: str = "ovsdb-notify") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threadnames.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def post(self, fn: Callable[[], None]) -> None:
        if not self._stopping:
            self._queue.put(fn)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what is still queued and wait for the running callback, if any."""
        self._stopping = True
        self._queue.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None or self._stopping:
                return
            try:
                fn()
            except Exception:  # the notify thread must never die
                LOG.exception("OVSDB notification failed")


class _Waiter:
    __slots__ = ("event", "gone", "predicate", "view")

    def __init__(self, predicate: Predicate) -> None:
        self.predicate = predicate
        self.event = threading.Event()
        self.view: views.InterfaceView | None = None
        self.gone = False

    def offer(self, view: views.InterfaceView) -> None:
        """Wake the waiter if ``view`` is what it waits for (IDL thread)."""
        if self.event.is_set():
            return
        try:
            ok = self.predicate(view)
        except Exception:
            LOG.exception("interface wait predicate failed for %s", view.name)
            return
        if ok:
            self.view = view
            self.event.set()

    def deleted(self) -> None:
        self.gone = True
        self.event.set()


def _opt_str(value: str | list[str] | None) -> str | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value or None


def _opt_int(value: int | list[int] | None) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return int(value) if value is not None else None


def _ref_uuids(row: Row, column: str) -> frozenset[uuid.UUID]:
    """The UUIDs a reference set holds, read from the row's datum.

    ``row.ports`` would build a Row object for every port of the bridge, on
    every change of the bridge: O(ports) per OVSDB transaction, the one cost
    in the IDL thread that grew with the host.  The datum's atoms are the UUIDs.
    """
    if row._data is None:  # a row a transaction is inserting (never in the replica)
        return frozenset(r.uuid for r in getattr(row, column))
    return frozenset(atom.value for atom in row._data[column].values)


def interface_view(row: Row) -> views.InterfaceView:
    """The snapshot of an Interface row, read from its datums when it can be.

    Built in the IDL thread on every change of every Interface, a few times
    per plug.  ``row.external_ids`` converts a map three times over
    (``Row.__getattr__`` merges pending mutations by converting back and
    forth), and every optional column goes through a list; the committed
    datum's atoms are the values.  A row with changes of a transaction in
    flight (or one being inserted) is read the IDL's way, which shows them.
    """
    data = row._data
    if data is None or row._changes or row._mutations:
        return _interface_view_by_attributes(row)
    return views.InterfaceView(
        uuid=str(row.uuid),
        name=_atom(data["name"]),
        type=_atom(data["type"]),
        external_ids=_string_map(data["external_ids"]),
        ofport=_atom(data["ofport"], None),
        error=_atom(data["error"], None),
        link_state=_atom(data["link_state"], None),
        options=_string_map(data["options"]),
        ingress_policing_rate=_atom(data["ingress_policing_rate"], 0),
        ingress_policing_burst=_atom(data["ingress_policing_burst"], 0),
    )


def _atom(datum: Datum, default: Any = "") -> Any:
    """The value of a scalar or optional column's datum (``default`` when empty)."""
    for atom in datum.values:
        return atom.value
    return default


def _string_map(datum: Datum) -> dict[str, str]:
    return {key.value: value.value for key, value in datum.values.items()}


def _interface_view_by_attributes(row: Row) -> views.InterfaceView:
    return views.InterfaceView(
        uuid=str(row.uuid),
        name=row.name,
        type=row.type,
        external_ids=dict(row.external_ids),
        ofport=_opt_int(row.ofport),
        error=_opt_str(row.error),
        link_state=_opt_str(row.link_state),
        options=dict(row.options),
        ingress_policing_rate=int(row.ingress_policing_rate),
        ingress_policing_burst=int(row.ingress_policing_burst),
    )


class Replica:
    """Indexes, Interface snapshots, waiters and watchers of one connection.

    ``on_row``, ``rebuild`` and the ``*_views`` builders run in the IDL thread;
    everything else may be called from any thread.  ``start``/``stop`` start
    and stop the notify thread (the connection does, with its own).
    """

    def __init__(self) -> None:
        self.index = Index()
        self.generation = 0
        #: (next_cfg, cur_cfg) of the Open_vSwitch row, as last reported.
        self.cfg: tuple[int, int] | None = None
        #: When (``time.monotonic()``) ovs-vswitchd was last seen caught up
        #: (``cur_cfg >= next_cfg``); None until the row was seen.
        self.cfg_caught_up: float | None = None
        self._lock = threading.Lock()  # guards _ifaces, _waiters, index.iface_ids
        self._ifaces: dict[str, views.InterfaceView] = {}
        self._waiters: dict[str, list[_Waiter]] = collections.defaultdict(list)
        self._iface_watchers: list[InterfaceWatcher] = []
        self._changed: list[views.InterfaceView] = []  # for the watchers, until ``flush``
        self._resync_callbacks: list[ResyncCallback] = []
        self._notifier = Notifier()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._notifier.start()

    def stop(self) -> None:
        self._notifier.stop()

    # -- watchers ----------------------------------------------------------------------
    def add_interface_watcher(self, callback: InterfaceWatcher) -> None:
        self._iface_watchers.append(callback)

    def add_resync_callback(self, callback: ResyncCallback) -> None:
        self._resync_callbacks.append(callback)

    def _tell_interface_watchers(self, changed: list[views.InterfaceView]) -> None:
        watchers = list(self._iface_watchers)
        for view in changed:
            for watcher in watchers:
                try:
                    watcher(view)
                except Exception:
                    LOG.exception("interface watcher failed for %s", view.name)

    def _tell_resync_callbacks(self) -> None:
        for callback in list(self._resync_callbacks):
            try:
                callback()
            except Exception:
                LOG.exception("resync callback failed")

    # -- reads -------------------------------------------------------------------------
    def interface(self, name: str) -> views.InterfaceView | None:
        return self._ifaces.get(name)

    def interfaces(self) -> list[views.InterfaceView]:
        with self._lock:
            return list(self._ifaces.values())

    def interfaces_with_iface_id(self, iface_id: str) -> list[views.InterfaceView]:
        with self._lock:
            names = self.index.names_with_iface_id(iface_id)
            found = (self._ifaces.get(name) for name in names)
            return [view for view in found if view is not None]

    def find_ofport(
        self, *, iface_id: str | None = None, attached_mac: str | None = None
    ) -> int | None:
        """The ofport of the interface with this iface-id (the active one if
        several) or attached-mac, as the IntegrationGuide describes."""
        if iface_id is not None:
            candidates = self.interfaces_with_iface_id(iface_id)
            candidates.sort(key=lambda v: v.external_ids.get("iface-status") != "active")
        else:
            mac = (attached_mac or "").lower()
            candidates = [
                v
                for v in self.interfaces()
                if v.external_ids.get("attached-mac", "").lower() == mac
            ]
        for view in candidates:
            if view.has_ofport:
                return view.ofport
        return None

    def wait_interface(
        self, name: str, predicate: Predicate, timeout: float
    ) -> views.InterfaceView | None:
        """Block until the Interface ``name`` satisfies ``predicate``; return its
        snapshot, or None on timeout.  Driven by row notifications, no polling.
        Raises ``InterfaceGone`` when the interface is deleted meanwhile (an
        unplug raced the wait)."""
        waiter = _Waiter(predicate)
        with self._lock:
            view = self._ifaces.get(name)
            if view is not None and predicate(view):
                return view
            self._waiters[name].append(waiter)
        try:
            if waiter.event.wait(timeout):
                if waiter.gone:
                    raise exceptions.InterfaceGone(device=name)
                return waiter.view
            return None
        finally:
            with self._lock:
                lst = self._waiters.get(name)
                if lst is not None:
                    with contextlib.suppress(ValueError):
                        lst.remove(waiter)
                    if not lst:
                        del self._waiters[name]

    # -- whole-host views, built in the IDL thread (Connection.read) ----------------------
    @staticmethod
    def host_view(idl: ovs.db.idl.Idl) -> views.HostView | None:
        for row in idl.tables["Open_vSwitch"].rows.values():
            return views.HostView(
                external_ids=dict(row.external_ids),
                other_config=dict(row.other_config),
                system_type=_opt_str(row.system_type),
                system_version=_opt_str(row.system_version),
                ovs_version=_opt_str(row.ovs_version),
                cur_cfg=int(row.cur_cfg),
                next_cfg=int(row.next_cfg),
            )
        return None

    @staticmethod
    def bridge_views(idl: ovs.db.idl.Idl) -> dict[str, views.BridgeView]:
        return {
            row.name: views.BridgeView(
                uuid=str(row.uuid),
                name=row.name,
                datapath_type=row.datapath_type,
                external_ids=dict(row.external_ids),
                other_config=dict(row.other_config),
                port_count=len(row.ports),
            )
            for row in idl.tables["Bridge"].rows.values()
        }

    def port_views(self, idl: ovs.db.idl.Idl) -> dict[str, views.PortView]:
        out = {}
        bridges = idl.tables["Bridge"].rows
        for row in idl.tables["Port"].rows.values():
            b_uuid = self.index.bridge_of_port(row.uuid)
            b_row = bridges.get(b_uuid) if b_uuid else None
            out[row.name] = views.PortView(
                uuid=str(row.uuid),
                name=row.name,
                bridge=b_row.name if b_row is not None else None,
                interfaces=tuple(i.name for i in row.interfaces),
                external_ids=dict(row.external_ids),
            )
        return out

    # -- fed by the IDL thread ---------------------------------------------------------
    def on_row(self, event: str, row: Row) -> None:
        """One row change the IDL reported."""
        table = row._table.name
        if table == "Interface":
            self._on_interface(event, row)
        elif table == "Open_vSwitch":
            self._on_host(event, row)
        elif table in ("Port", "Bridge"):
            self.index.on_named(table, event, row)
        if table == "Bridge":
            self.index.on_bridge_ports(event, row)

    def _on_host(self, event: str, row: Row) -> None:
        """Follow ovs-vswitchd's progress (``next_cfg`` - ``cur_cfg``) for the
        metrics: a stuck ovs-vswitchd accepts every write and applies none."""
        if event == ovs.db.idl.ROW_DELETE:
            return
        next_cfg, cur_cfg = int(row.next_cfg), int(row.cur_cfg)
        self.cfg = (next_cfg, cur_cfg)
        if cur_cfg >= next_cfg or self.cfg_caught_up is None:
            self.cfg_caught_up = time.monotonic()

    def vswitchd_lag(self) -> tuple[int, float] | None:
        """(configurations ovs-vswitchd has not applied yet, seconds since it
        last had applied every one: 0 while caught up), or None before the
        Open_vSwitch row was seen."""
        cfg, since = self.cfg, self.cfg_caught_up
        if cfg is None or since is None:
            return None
        behind = max(0, cfg[0] - cfg[1])
        return behind, (time.monotonic() - since) if behind else 0.0

    def _on_interface(self, event: str, row: Row) -> None:
        self.index.on_named("Interface", event, row)
        if event == ovs.db.idl.ROW_DELETE:
            self._interface_deleted(row)
            return
        view = interface_view(row)
        with self._lock:
            self.index.set_iface_id(view.name, view.iface_id)
            self._ifaces[view.name] = view
            waiters = list(self._waiters.get(view.name, ()))
        self._interface_changed(view, waiters)

    def _interface_deleted(self, row: Row) -> None:
        name = row.name
        with self._lock:
            current = self._ifaces.get(name)
            if current is None or current.uuid != str(row.uuid):
                return  # a newer row of the same name replaced it
            del self._ifaces[name]
            self.index.set_iface_id(name, None)
            waiters = list(self._waiters.get(name, ()))
        for w in waiters:  # the interface is gone: stop waiting for it
            w.deleted()

    def _interface_changed(self, view: views.InterfaceView, waiters: list[_Waiter]) -> None:
        for w in waiters:
            w.offer(view)
        if self._iface_watchers:
            self._changed.append(view)

    def flush(self) -> None:
        """Hand the interface changes seen since the last flush to the
        watchers, in one notification (IDL thread, after each ``Idl.run``).

        One update of ovs-vswitchd's carries the ofports of a whole batch;
        posting each change on its own woke the notify thread, and moved the
        GIL, once per interface."""
        if self._changed:
            changed, self._changed = self._changed, []
            self._notifier.post(functools.partial(self._tell_interface_watchers, changed))

    def rebuild(self, idl: ovs.db.idl.Idl) -> None:
        """Rebuild indexes and snapshots from the reloaded replica (O(rows), once
        per reconnect), waking the waiters and watchers of every interface."""
        self.index.clear()
        tables = idl.tables
        for table in ("Bridge", "Port"):
            for row in tables[table].rows.values():
                self.index.on_named(table, ovs.db.idl.ROW_CREATE, row)
        for row in tables["Bridge"].rows.values():
            self.index.on_bridge_ports(ovs.db.idl.ROW_CREATE, row)
        fresh: dict[str, views.InterfaceView] = {}
        for row in tables["Open_vSwitch"].rows.values():
            self._on_host(ovs.db.idl.ROW_CREATE, row)
        for row in tables["Interface"].rows.values():
            self.index.on_named("Interface", ovs.db.idl.ROW_CREATE, row)
            view = interface_view(row)
            fresh[view.name] = view
        with self._lock:
            for view in fresh.values():
                self.index.set_iface_id(view.name, view.iface_id)
            self._ifaces = fresh
            waiting = {name: list(ws) for name, ws in self._waiters.items() if name in fresh}
        for view in fresh.values():
            self._interface_changed(view, waiting.get(view.name, []))
        self.generation += 1

    def resynced(self) -> None:
        """The connection came back and the replica was rebuilt: run the resync
        callbacks (in the notify thread, after the notifications before them)."""
        self.flush()
        if self._resync_callbacks:
            self._notifier.post(self._tell_resync_callbacks)
