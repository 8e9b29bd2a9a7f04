"""What a write function sees while its transaction is being built.

The IDL thread hands each pending write function a ``Txn``; all the functions
of one batch share it.  Look-ups go through name indexes (kept by the
connection from IDL notifications) plus the rows this transaction inserted,
so a bridge created by one function of the batch is found by the next, and no
look-up scans a table.
"""

from __future__ import annotations

import uuid
from typing import Any

import ovs.db.idl

from vifplug.ovsdb.replica import Index
from vifplug.ovsdb.schema import Row


def col(row: Row, column: str, default: Any = None) -> Any:
    """A column of a row, also for rows inserted by this transaction, which
    have no value for columns not yet assigned (the IDL raises for those)."""
    try:
        return getattr(row, column)
    except AttributeError:
        return default


def is_new(row: Row) -> bool:
    return row._data is None


class Txn:
    """A transaction under construction; only ever used in the IDL thread."""

    def __init__(self, idl: ovs.db.idl.Idl, txn: ovs.db.idl.Transaction, index: Index) -> None:
        self.idl = idl
        self.txn = txn
        self._index = index
        self._inserted: dict[tuple[str, str], Row] = {}
        self._deleted: set[uuid.UUID] = set()
        self._bridge_of_new_port: dict[uuid.UUID, Row] = {}
        self._iface_ids: dict[str, dict[uuid.UUID, Row]] = {}  # set in this transaction

    # -- look-ups ----------------------------------------------------------------
    def _row(self, table: str, name: str) -> Row:
        row = self._inserted.get((table, name))
        if row is not None:
            return row
        row_uuid = self._index.uuid_by_name(table, name)
        if row_uuid is None or row_uuid in self._deleted:
            return None
        return self.idl.tables[table].rows.get(row_uuid)

    def bridge(self, name: str) -> Row:
        return self._row("Bridge", name)

    def port(self, name: str) -> Row:
        return self._row("Port", name)

    def interface(self, name: str) -> Row:
        return self._row("Interface", name)

    def bridge_of_port(self, port: Row) -> Row:
        new = self._bridge_of_new_port.get(port.uuid)
        if new is not None:
            return new
        bridge_uuid = self._index.bridge_of_port(port.uuid)
        if bridge_uuid is None:
            return None
        return self.idl.tables["Bridge"].rows.get(bridge_uuid)

    def interfaces_with_iface_id(self, iface_id: str) -> list[Row]:
        rows = []
        for name in self._index.names_with_iface_id(iface_id):
            row = self.interface(name)
            if row is not None:
                rows.append(row)
        for row in self._iface_ids.get(iface_id, {}).values():
            if row not in rows and row.uuid not in self._deleted:
                rows.append(row)
        return rows

    def note_iface_id(self, iface: Row, iface_id: str | None) -> None:
        """Remember that this transaction gave ``iface`` this iface-id, so the
        next write of the batch finds it without scanning what was inserted."""
        if iface_id is not None:
            self._iface_ids.setdefault(iface_id, {})[iface.uuid] = iface

    def host(self) -> Row:
        for row in self.idl.tables["Open_vSwitch"].rows.values():
            return row
        return None

    # -- changes ---------------------------------------------------------------
    def insert(self, table: str, name: str) -> Row:
        row = self.txn.insert(self.idl.tables[table])
        row.name = name
        self._inserted[(table, name)] = row
        return row

    def attach_port(self, bridge: Row, port: Row) -> None:
        bridge.addvalue("ports", port)
        self._bridge_of_new_port[port.uuid] = bridge

    def detach_port(self, bridge: Row, port: Row) -> None:
        """Remove the port from its bridge; OVSDB garbage-collects it and its
        interfaces, since nothing else references them."""
        ifaces = list(col(port, "interfaces", []))
        inserts = bridge._mutations.get("_inserts", {}).get("ports")
        if port.uuid in self._bridge_of_new_port and inserts and port in inserts:
            # Attached earlier in this same transaction (a plug and its
            # rollback coalesced together): cancel the insertion instead of
            # sending an insert and a delete whose order the server decides.
            inserts.discard(port)
            if is_new(port):
                for iface in ifaces:
                    if is_new(iface):
                        iface.delete()
                port.delete()
        else:
            bridge.delvalue("ports", port)
        self._deleted.add(port.uuid)
        for iface in ifaces:
            self._deleted.add(iface.uuid)
        self._bridge_of_new_port.pop(port.uuid, None)
        for key, row in list(self._inserted.items()):
            if row is port or row in ifaces:
                del self._inserted[key]
