"""What this host can plug: HostInfo, HostPluginInfo, HostVIFInfo, HostPortProfileInfo.

The host describes itself to the network manager with these objects (one
HostPluginInfo per plugin, one HostVIFInfo per VIF object the plugin consumes,
with the range of versions it accepts and its port profiles), so that the
manager only sends VIFs the host can plug.  A manager with an older os-vif
may not read the newest versions; ``vifplug.negotiation.hostinfo`` backlevels them.

The look-up helpers mirror os-vif's, exceptions included: ``KeyError`` for an
unknown name and ``ValueError`` when no common version exists.
"""

from __future__ import annotations

from collections.abc import Iterable

from oslo_versionedobjects import fields

from vifplug.objects import base


def _common_version(object_name: str, min_version: str, max_version: str) -> str:
    """The newest version of ``object_name`` this process can produce within
    ``[min_version, max_version]``.

    os-vif only answers its own class VERSION when that lies in the range;
    vifplug can backlevel, so any version from ``MAJOR.0`` to its own
    VERSION is producible and the answer is the highest one in range.
    """
    cls = base.classes().get(object_name)
    if cls is None:
        raise KeyError(object_name)
    oldest = base.oldest_of_major(cls.VERSION)
    best = min(base.version_tuple(max_version), base.version_tuple(cls.VERSION))
    if best < max(base.version_tuple(min_version), base.version_tuple(oldest)):
        raise ValueError(
            f"{object_name} versions {min_version} to {max_version} do not meet the "
            f"versions {oldest} to {cls.VERSION} this host has"
        )
    return base.version_string(best)


@base.register
class HostPortProfileInfo(base.VersionedObject, base.Comparable, base.PrintableMixin):
    """A port profile object a plugin accepts, and its range of versions."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        # Object name of a VIFPortProfileBase subclass.
        "profile_object_name": fields.StringField(),
        # Oldest and newest version the plugin understands.
        "min_version": fields.StringField(),
        "max_version": fields.StringField(),
    }

    profile_object_name: str
    min_version: str
    max_version: str

    def get_common_version(self) -> str:
        """Newest version of the profile both sides can use.

        Raises ``KeyError`` for a profile this host does not know and
        ``ValueError`` when the ranges do not meet.
        """
        return _common_version(self.profile_object_name, self.min_version, self.max_version)


@base.register
class HostVIFInfo(base.VersionedObject, base.Comparable, base.PrintableMixin):
    """A VIF object a plugin accepts, its range of versions and its port profiles."""

    # 1.0: initial version
    # 1.1: added supported_port_profiles
    VERSION = "1.1"

    fields = {
        # Object name of a VIFBase subclass.
        "vif_object_name": fields.StringField(),
        # Oldest and newest version the plugin understands.
        "min_version": fields.StringField(),
        "max_version": fields.StringField(),
        "supported_port_profiles": fields.ListOfObjectsField("HostPortProfileInfo"),
    }

    fields_added_in = {"supported_port_profiles": "1.1"}

    vif_object_name: str
    min_version: str
    max_version: str
    supported_port_profiles: list[HostPortProfileInfo]

    def port_profiles(self) -> list[HostPortProfileInfo]:
        """The declared port profiles; empty for a 1.0 object, which has none."""
        if not self.obj_attr_is_set("supported_port_profiles"):
            return []
        return list(self.supported_port_profiles)

    def has_port_profile(self, name: str) -> bool:
        return any(p.profile_object_name == name for p in self.port_profiles())

    def get_port_profile(self, name: str) -> HostPortProfileInfo:
        """Raises ``KeyError`` when the plugin declares no such profile."""
        for profile in self.port_profiles():
            if profile.profile_object_name == name:
                return profile
        raise KeyError(name)

    def get_common_version(self) -> str:
        """Newest version of the VIF object both sides can use.

        Raises ``KeyError`` for a VIF object this host does not know and
        ``ValueError`` when the ranges do not meet.
        """
        return _common_version(self.vif_object_name, self.min_version, self.max_version)


@base.register
class HostPluginInfo(base.VersionedObject, base.Comparable, base.PrintableMixin):
    """One installed plugin and the VIF objects it consumes."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "plugin_name": fields.StringField(),
        "vif_info": fields.ListOfObjectsField("HostVIFInfo"),
    }

    plugin_name: str
    vif_info: list[HostVIFInfo]

    def has_vif(self, name: str) -> bool:
        return any(v.vif_object_name == name for v in self.vif_info)

    def get_vif(self, name: str) -> HostVIFInfo:
        """Raises ``KeyError`` when the plugin does not consume ``name``."""
        for vif in self.vif_info:
            if vif.vif_object_name == name:
                return vif
        raise KeyError(name)

    def filter_vif_types(self, permitted_vif_type_names: Iterable[str]) -> None:
        """Keep only the VIF objects named (in place, as os-vif does)."""
        permitted = set(permitted_vif_type_names)
        self.vif_info = [v for v in self.vif_info if v.vif_object_name in permitted]


@base.register
class HostInfo(base.VersionedObject, base.Comparable, base.PrintableMixin):
    """This host: its installed plugins."""

    # 1.0: initial version (os-vif leaves VERSION to oslo's default, 1.0)
    VERSION = "1.0"

    fields = {
        "plugin_info": fields.ListOfObjectsField("HostPluginInfo"),
    }

    plugin_info: list[HostPluginInfo]

    def has_plugin(self, name: str) -> bool:
        return any(p.plugin_name == name for p in self.plugin_info)

    def get_plugin(self, name: str) -> HostPluginInfo:
        """Raises ``KeyError`` when no plugin of that name is installed."""
        for plugin in self.plugin_info:
            if plugin.plugin_name == name:
                return plugin
        raise KeyError(name)

    def filter_vif_types(self, permitted_vif_type_names: Iterable[str]) -> None:
        """Keep only the VIF objects named, and the plugins left with any."""
        permitted = set(permitted_vif_type_names)
        kept = []
        for plugin in self.plugin_info:
            plugin.filter_vif_types(permitted)
            if plugin.vif_info:
                kept.append(plugin)
        self.plugin_info = kept
