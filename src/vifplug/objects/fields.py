"""The field types os-vif adds to oslo's, with the same class names.

The class names and the order of the valid values are part of every object's
fingerprint (oslo prints ``VIFDirectMode(default=...,valid_values=(...))``
into the hash), so they must stay exactly as os-vif has them.
"""

from __future__ import annotations

import json
from typing import Any

from oslo_versionedobjects import fields


class VIFDirectMode(fields.Enum):
    """How a macvtap device reaches its lower device."""

    VEPA = "vepa"
    PASSTHROUGH = "passthrough"
    BRIDGE = "bridge"

    ALL = (VEPA, PASSTHROUGH, BRIDGE)

    def __init__(self) -> None:
        super().__init__(valid_values=self.ALL)


class VIFDirectModeField(fields.BaseEnumField):
    AUTO_TYPE = VIFDirectMode()


class VIFVHostUserMode(fields.Enum):
    """Which side of a vhost-user socket is the server."""

    CLIENT = "client"
    SERVER = "server"

    ALL = (CLIENT, SERVER)

    def __init__(self) -> None:
        super().__init__(valid_values=self.ALL)


class VIFVHostUserModeField(fields.BaseEnumField):
    AUTO_TYPE = VIFVHostUserMode()


class VIFHostDeviceDevType(fields.Enum):
    """``ethernet`` is libvirt's interface type=hostdev, ``generic`` a PCI hostdev."""

    ETHERNET = "ethernet"
    GENERIC = "generic"

    ALL = (ETHERNET, GENERIC)

    def __init__(self) -> None:
        super().__init__(valid_values=self.ALL)


class VIFHostDeviceDevTypeField(fields.BaseEnumField):
    AUTO_TYPE = VIFHostDeviceDevType()


# netaddr ships no type information; the list holds netaddr.IPAddress values.
class ListOfIPAddressField(fields.AutoTypedField[list[Any]]):
    AUTO_TYPE = fields.List(fields.IPAddress())


class Integer(fields.Integer):
    """oslo's ``Integer``, without its ``int(value)``: that reads an MTU of
    ``1.5`` or ``true`` as 1 and ``"1500"`` as 1500.  os-vif writes integers
    as JSON integers, so anything else is the caller's mistake, refused when
    the primitive is loaded.  The class keeps oslo's name, which is part of
    every object's fingerprint (``Integer(default=...)``)."""

    def coerce(self, obj: Any, attr: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                shown = json.dumps(value)  # as the caller wrote it: true, not True
            except (TypeError, ValueError):
                shown = repr(value)
            raise ValueError(f"{attr} must be an integer, not {shown}")
        return value


class IntegerField(fields.AutoTypedField[int]):
    """A whole number, and only that (see ``Integer``)."""

    AUTO_TYPE = Integer()
