"""How a ``VifRecord`` is laid out in a row of the ``vifs`` table, and back.

Kept apart from the store so that the on-disk format is in one small place:
the columns, the canonical JSON of the request, and the versioned JSON of the
allocation.  The allocation has its own ``format`` number because it changes
with the plugins (a new field for a new kind of device) far more often than
the table does; a newer daemon upgrades older formats when it reads them and
an older daemon refuses a format it does not know instead of dropping fields.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from vifplug.records import (
    Allocation,
    Lifecycle,
    Teaming,
    VifRecord,
    canonical_json,
    request_object,
)

#: The allocation JSON format this code writes.
#: 2 added the VF fields of the ``hostdev`` plugin (``vf_index``, ``vlan``,
#: ``previous_mac``, ``previous_vlan``): a daemon that does not know them must
#: refuse the record rather than unplug without restoring the VF.
ALLOCATION_FORMAT = 2

#: ``_ALLOCATION_UPGRADES[n]`` turns format ``n`` into ``n + 1``; applied in order on read.
_ALLOCATION_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda data: data,  # the new fields default to None
}

COLUMNS: tuple[str, ...] = (
    "vif_id",
    "lifecycle",
    "plugin",
    "obj_name",
    "obj_version",
    "instance_uuid",
    "instance_name",
    "iface_id",
    "iface_status",
    "mac",
    "teaming_type",
    "teaming_peer",
    "request_json",
    "request_digest",
    "allocation_json",
    "created_at",
    "updated_at",
)

# What may change after begin_plug: everything but the id, the request and its
# digest, and the creation time.  Updates write only these.
IMMUTABLE_COLUMNS = frozenset({"vif_id", "request_json", "request_digest", "created_at"})
MUTABLE_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in IMMUTABLE_COLUMNS)

SELECT_SQL = f"SELECT {', '.join(COLUMNS)} FROM vifs ORDER BY created_at, vif_id"
INSERT_SQL = f"INSERT INTO vifs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
UPDATE_SQL = f"UPDATE vifs SET {', '.join(f'{c} = ?' for c in MUTABLE_COLUMNS)} WHERE vif_id = ?"
DELETE_SQL = "DELETE FROM vifs WHERE vif_id = ?"


class FormatTooNew(ValueError):
    """A stored value has a format number above what this code understands."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"format {found} is newer than {supported}")
        self.found = found
        self.supported = supported


#: Canonical JSON: the same value always gives the same text (and digest).
dumps = canonical_json


def encode_allocation(allocation: Allocation | None) -> str | None:
    if allocation is None:
        return None
    data = allocation.to_dict()
    data["format"] = ALLOCATION_FORMAT
    return dumps(data)


def decode_allocation(text: str | None) -> Allocation | None:
    """Read an allocation of any format up to ``ALLOCATION_FORMAT``.

    Raises ``FormatTooNew`` for a newer format and ``ValueError`` for text that
    is not an allocation.
    """
    if text is None:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("allocation is not a JSON object")
    found = data.pop("format", None)
    if not isinstance(found, int) or found < 1:
        raise ValueError(f"allocation has no valid format number: {found!r}")
    if found > ALLOCATION_FORMAT:
        raise FormatTooNew(found, ALLOCATION_FORMAT)
    for version in range(found, ALLOCATION_FORMAT):
        data = _ALLOCATION_UPGRADES[version](data)
    try:
        return Allocation.from_dict(data)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"allocation is incomplete: {exc}") from exc


def _column_values(record: VifRecord) -> dict[str, Any]:
    """Each column's value for ``record``; raises ``TypeError``/``ValueError``
    for unencodable data."""
    return {
        "vif_id": record.vif_id,
        "lifecycle": record.lifecycle.value,
        "plugin": record.plugin,
        "obj_name": record.obj_name,
        "obj_version": record.obj_version,
        "instance_uuid": record.instance_uuid,
        "instance_name": record.instance_name,
        "iface_id": record.iface_id,
        "iface_status": record.iface_status,
        "mac": record.mac,
        "teaming_type": record.teaming_type.value if record.teaming_type else None,
        "teaming_peer": record.teaming_peer,
        "request_json": record.request_json,
        "request_digest": record.request_digest,
        "allocation_json": encode_allocation(record.allocation),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def insert_params(record: VifRecord) -> tuple[Any, ...]:
    """Parameters of ``INSERT_SQL``, in ``COLUMNS`` order."""
    values = _column_values(record)
    return tuple(values[c] for c in COLUMNS)


def update_params(record: VifRecord) -> tuple[Any, ...]:
    """Parameters of ``UPDATE_SQL``: the mutable columns, then the id."""
    values = _column_values(record)
    return (*(values[c] for c in MUTABLE_COLUMNS), record.vif_id)


def record_from_row(row: sqlite3.Row | tuple[Any, ...]) -> VifRecord:
    """Decode one row of ``SELECT_SQL``.

    Raises ``FormatTooNew`` or ``ValueError`` when the row cannot be read.
    """
    values = dict(zip(COLUMNS, tuple(row), strict=True))
    request_object(values["request_json"])  # refuses a row whose request is no object
    return VifRecord(
        vif_id=values["vif_id"],
        plugin=values["plugin"],
        obj_name=values["obj_name"],
        obj_version=values["obj_version"],
        instance_uuid=values["instance_uuid"],
        instance_name=values["instance_name"],
        request_json=values["request_json"],
        request_digest=values["request_digest"],
        lifecycle=Lifecycle(values["lifecycle"]),
        iface_id=values["iface_id"],
        iface_status=values["iface_status"],
        mac=values["mac"],
        allocation=decode_allocation(values["allocation_json"]),
        teaming_type=Teaming(values["teaming_type"]) if values["teaming_type"] else None,
        teaming_peer=values["teaming_peer"],
        created_at=float(values["created_at"]),
        updated_at=float(values["updated_at"]),
    )
