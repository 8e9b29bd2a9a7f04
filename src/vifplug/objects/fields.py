"""The field types os-vif adds to oslo's, with the same class names.

The class names and the order of the valid values are part of every object's
fingerprint (oslo prints ``VIFDirectMode(default=...,valid_values=(...))``
into the hash), so they must stay exactly as os-vif has them.
"""

from __future__ import annotations

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
