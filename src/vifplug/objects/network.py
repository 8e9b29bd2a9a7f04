"""The network a VIF is attached to: Network, Subnet, FixedIP, Route and their lists.

os-vif spreads these over four modules; they are small and only ever travel
inside a ``Network``, so vifplug keeps them together.  Plugins read little of
them (the MTU, the bridge), but a VIF primitive carries them whole, so every
field must load and round-trip unchanged.
"""

from __future__ import annotations

from typing import Any

from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields

from vifplug.objects import base
from vifplug.objects import fields as vp_fields


@base.register
class FixedIP(base.VersionedObject):
    """An address of the port on a subnet, with the floating IPs mapped to it."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "address": fields.IPAddressField(),
        "floating_ips": vp_fields.ListOfIPAddressField(),
    }

    address: Any
    floating_ips: list[Any]


@base.register
class FixedIPList(base.VersionedObject, ovo_base.ObjectListBase[FixedIP]):
    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "objects": fields.ListOfObjectsField("FixedIP"),
    }


@base.register
class Route(base.VersionedObject):
    """A route of a subnet."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "cidr": fields.IPNetworkField(),
        "gateway": fields.IPAddressField(),
        # Never set by Nova, but part of the object since 1.0.
        "interface": fields.StringField(),
    }

    cidr: Any
    gateway: Any
    interface: str


@base.register
class RouteList(base.VersionedObject, ovo_base.ObjectListBase[Route]):
    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "objects": fields.ListOfObjectsField("Route"),
    }


@base.register
class Subnet(base.VersionedObject):
    """A subnet of the network, with the port's addresses on it."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "cidr": fields.IPNetworkField(),
        "dns": vp_fields.ListOfIPAddressField(),
        "gateway": fields.IPAddressField(),
        "ips": fields.ObjectField("FixedIPList"),
        "routes": fields.ObjectField("RouteList"),
        "dhcp_server": fields.IPAddressField(),
    }

    cidr: Any
    dns: list[Any]
    gateway: Any
    ips: FixedIPList
    routes: RouteList
    dhcp_server: Any


@base.register
class SubnetList(base.VersionedObject, ovo_base.ObjectListBase[Subnet]):
    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "objects": fields.ListOfObjectsField("Subnet"),
    }


@base.register
class Network(base.VersionedObject):
    """The network a VIF is attached to."""

    # 1.0: initial version
    # 1.1: added mtu
    VERSION = "1.1"

    fields = {
        "id": fields.UUIDField(),
        "bridge": fields.StringField(),
        "label": fields.StringField(),
        "subnets": fields.ObjectField("SubnetList"),
        "multi_host": fields.BooleanField(),
        "should_provide_bridge": fields.BooleanField(),
        "should_provide_vlan": fields.BooleanField(),
        "bridge_interface": fields.StringField(nullable=True),
        "vlan": fields.IntegerField(nullable=True),
        "mtu": vp_fields.IntegerField(nullable=True),  # 1.5 or true is not an MTU
    }

    fields_added_in = {"mtu": "1.1"}

    id: str
    bridge: str
    label: str
    subnets: SubnetList
    multi_host: bool
    should_provide_bridge: bool
    should_provide_vlan: bool
    bridge_interface: str | None
    vlan: int | None
    mtu: int | None

    def __init__(self, **kwargs: Any) -> None:
        # os-vif sets these in the constructor, and oslo calls the constructor
        # when it loads a primitive: a Network that arrives without them has
        # them afterwards on both sides, so it re-serialises identically.
        kwargs.setdefault("subnets", SubnetList(objects=[]))
        kwargs.setdefault("multi_host", False)
        kwargs.setdefault("should_provide_bridge", False)
        kwargs.setdefault("should_provide_vlan", False)
        kwargs.setdefault("mtu", None)
        super().__init__(**kwargs)
