"""This host's ``HostInfo`` (seed 004), and the primitive a peer reads of it.

The network manager chooses how to plug a port from the HostInfo each host
sends, so HostInfo must promise only what this host can honour, and a
manager whose os-vif is older than ours must still be able to read it.  Pure
logic over ``vifplug.objects``: no I/O, no configuration, no state.

* ``build_host_info`` assembles HostInfo from the plugins' own descriptions
  (``PluginBase.describe``) and refuses a plugin that declares an object or a
  version range vifplug cannot read (the manager would send VIFs that can
  only be refused);
* ``backlevel`` makes the primitive a peer reads, for the API's
  ``GET /v1/host-info?version=X.Y`` and ``?manifest=Name:X.Y,...``
  (``parse_manifest``) and for the push to the network manager
  (``vifplug.negotiation.push``); ``producible`` is its rule for which version
  of an object this host can produce, which ``refusal`` shares;
* ``check_version``: seed 004 says objects outside a plugin's range are
  rejected with a fatal error, which is ``UnsupportedVersion`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_versionedobjects import fields as ovo_fields

from vifplug import exceptions
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi
from vifplug.objects import vif as vifs

HOST_INFO = "HostInfo"

#: An os_vif object name, as a manifest or a peer's refusal spells it.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_MAX_MANIFEST_CHARS = 16384


def parse_version(text: object, *, what: str = "version") -> str:
    """Validate a ``MAJOR.MINOR`` version from a request; returns it unchanged.

    Raises ``InvalidRequest`` for anything else (``"1"``, ``"1.0.0"``,
    ``"latest"``, a number instead of a string).
    """
    if not isinstance(text, str):
        raise exceptions.InvalidRequest(
            reason=f"the {what} must be a string like 1.0, not {type(text).__name__}."
        )
    if not obj_base.is_version(text):
        raise exceptions.InvalidRequest(
            reason=f"the {what} is {text[:40]!r}, not of the form MAJOR.MINOR such as 1.0."
        )
    return text


def producible(obj_name: str, ours: str, wanted: str, *, cap: bool) -> str:
    """The version of ``obj_name`` to produce for a peer that asks for ``wanted``.

    This host can produce every version from ``MAJOR.0`` to its own.  With
    ``cap`` (a manifest entry: the newest version the peer *has*), a newer
    minor of the same major is answered with ours, which such a peer reads.
    Raises ``VersionNotAvailable`` otherwise, with the range it can produce.
    """
    parse_version(wanted, what=f"version of {obj_name}")
    oldest = obj_base.oldest_of_major(ours)
    if cap and obj_base.oldest_of_major(wanted) == oldest:
        return min(wanted, ours, key=obj_base.version_tuple)  # same major: ours at most
    if not obj_base.version_in_range(wanted, oldest, ours):
        raise exceptions.VersionNotAvailable(
            obj_name=obj_name, version=wanted, min_version=oldest, max_version=ours
        )
    return wanted


def check_version(
    obj_name: str, version: str, min_version: str, max_version: str, *, plugin: str
) -> None:
    """Raise ``UnsupportedVersion`` unless ``min_version <= version <= max_version``.

    ``version`` comes from the caller's object; ``min_version`` and
    ``max_version`` from a plugin's description.  A malformed ``version``
    is an ``InvalidObject``.
    """
    if not obj_base.is_version(version):
        raise exceptions.InvalidObject(
            what=obj_name, reason=f"its version {str(version)[:40]!r} is not of the form X.Y."
        )
    if not obj_base.version_in_range(version, min_version, max_version):
        raise exceptions.UnsupportedVersion(
            obj_name=obj_name,
            version=version,
            min_version=min_version,
            max_version=max_version,
            plugin=plugin,
        )


def _check_declared_range(
    plugin: str, name: str, low: str, high: str, kind: type[obj_base.VersionedObject]
) -> None:
    """Raise ``ValueError`` unless ``name`` is a ``kind`` vifplug has and
    ``low`` to ``high`` lies within the versions of it vifplug reads."""
    cls = obj_base.classes().get(name)
    if cls is None or not issubclass(cls, kind):
        raise ValueError(
            f"plugin {plugin} declares {name}, which is not a {kind.obj_name()} vifplug has"
        )
    oldest = obj_base.oldest_of_major(cls.VERSION)
    if not (
        obj_base.version_in_range(low, oldest, cls.VERSION)
        and obj_base.version_in_range(high, low, cls.VERSION)
    ):
        raise ValueError(
            f"plugin {plugin} declares {name} {low} to {high}, but vifplug reads "
            f"{name} {oldest} to {cls.VERSION} only"
        )


def build_host_info(plugins: Iterable[hi.HostPluginInfo]) -> hi.HostInfo:
    """This host's ``HostInfo`` from its plugins' descriptions
    (``PluginBase.describe``), with every declared range checked.

    Plugins are sorted by name so that the answer does not depend on the
    order in which entry points were loaded.  Programming errors raise
    ``ValueError``: two plugins with one name (the manager could not tell
    them apart), or a plugin declaring an object or a version range vifplug
    cannot read (the manager would send VIFs that can only be refused).
    """
    by_name: dict[str, hi.HostPluginInfo] = {}
    for plugin in plugins:
        if plugin.plugin_name in by_name:
            raise ValueError(f"two plugins are both named {plugin.plugin_name!r}")
        for vif_info in plugin.vif_info:
            _check_declared_range(
                plugin.plugin_name,
                vif_info.vif_object_name,
                vif_info.min_version,
                vif_info.max_version,
                vifs.VIFBase,
            )
            for profile in vif_info.port_profiles():
                _check_declared_range(
                    plugin.plugin_name,
                    profile.profile_object_name,
                    profile.min_version,
                    profile.max_version,
                    vifs.VIFPortProfileBase,
                )
        by_name[plugin.plugin_name] = plugin
    return hi.HostInfo(plugin_info=[by_name[name] for name in sorted(by_name)])


def parse_manifest(text: object) -> dict[str, str]:
    """Parse ``HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0`` into a dict.

    Syntax only: every entry is ``Name:MAJOR.MINOR``, separated by commas,
    spaces around them allowed.  Whether this host can produce those
    versions is ``backlevel``'s question.  Raises ``InvalidRequest`` naming
    the first offending entry.
    """
    if not isinstance(text, str):
        raise exceptions.InvalidRequest(
            reason=f"the manifest must be a string, not {type(text).__name__}."
        )
    if len(text) > _MAX_MANIFEST_CHARS:
        raise exceptions.InvalidRequest(
            reason=f"the manifest is longer than {_MAX_MANIFEST_CHARS} characters."
        )
    if not text.strip():
        raise exceptions.InvalidRequest(
            reason="the manifest is empty; give Name:X.Y entries separated by commas."
        )
    manifest: dict[str, str] = {}
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise exceptions.InvalidRequest(
                reason=f"entry {position} of the manifest is empty (two commas in a row?)."
            )
        name, colon, version = (part.strip() for part in entry.partition(":"))
        if not colon:
            raise exceptions.InvalidRequest(
                reason=f"manifest entry {entry[:60]!r} is not of the form Name:X.Y."
            )
        name, version = _manifest_entry(name, version)
        if manifest.get(name, version) != version:
            raise exceptions.InvalidRequest(
                reason=f"the manifest names {name} twice, as {manifest[name]} and {version}."
            )
        manifest[name] = version
    return manifest


def _manifest_entry(name: object, version: object) -> tuple[str, str]:
    """One manifest entry, checked: an object name and a ``MAJOR.MINOR`` version."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise exceptions.InvalidRequest(
            reason=f"{str(name)[:60]!r} in the manifest is not an object name."
        )
    return name, parse_version(version, what=f"version of {name} in the manifest")


def _checked_manifest(manifest: str | Mapping[str, str] | None) -> dict[str, str]:
    """``backlevel``'s manifest argument as a dict, whichever form it came in."""
    if manifest is None:
        return {}
    if isinstance(manifest, str):
        return parse_manifest(manifest)
    return dict(_manifest_entry(name, version) for name, version in manifest.items())


def _reachable(cls: type[obj_base.VersionedObject]) -> set[str]:
    """Names of the objects that can appear inside an object of ``cls``
    (subclasses of a field's object included, whether or not the field
    allows them: a wider set only means more manifest entries are honoured)."""
    known = obj_base.classes()
    seen = {cls.obj_name()}
    todo = [cls]
    while todo:
        current = todo.pop()
        for field in current.fields.values():
            if not isinstance(field, (ovo_fields.ObjectField, ovo_fields.ListOfObjectsField)):
                continue
            declared = known.get(field.objname)
            if declared is None:
                continue
            for name, other in known.items():
                if name not in seen and issubclass(other, declared):
                    seen.add(name)
                    todo.append(other)
    return seen


def backlevel(
    host_info: hi.HostInfo,
    version: str | None = None,
    manifest: str | Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``host_info`` as a primitive a peer with an older os-vif reads.

    ``version`` (``?version=X.Y``) is the version of HostInfo itself; this
    host produces any from ``1.0`` to its own and refuses others.  The
    objects inside keep their own versions: HostInfo 1.0 has been 1.0 since
    os-vif 1.0, so an old peer needs the manifest.

    ``manifest`` (``?manifest=...``, or a dict) is an oslo version manifest:
    the newest version of each object the peer has.  Every object it names
    wherever it appears inside HostInfo is backlevelled to that version (or
    kept at ours when the peer's is newer); objects it does not name stay as
    they are.  oslo alone would stop at the first unnamed level (a manifest
    naming only ``HostVIFInfo`` would not reach it), so the manifest handed
    to oslo is completed with this host's own versions.  Entries for objects
    that cannot occur in HostInfo (a peer's registry holds many) are ignored.
    When ``manifest`` names HostInfo and ``version`` is not given, that entry
    chooses HostInfo's version.

    Raises ``InvalidRequest`` for a malformed version or manifest and
    ``VersionNotAvailable`` (with ``min_version``/``max_version``) for a
    version this host cannot produce (``0.9``, ``2.0``, ``1.1`` today).
    ``host_info`` is not modified, but oslo stashes the manifest on the
    objects while it serialises them: do not backlevel one HostInfo object
    from two threads at once (``build_host_info`` makes a fresh one cheaply).
    """
    pinned = _checked_manifest(manifest)
    ours = host_info.VERSION
    if version is not None:
        target = producible(HOST_INFO, ours, version, cap=False)
    elif HOST_INFO in pinned:
        target = producible(HOST_INFO, ours, pinned[HOST_INFO], cap=True)
    else:
        target = ours
    full: dict[str, str] | None = None
    if pinned:
        known = obj_base.classes()
        inside = _reachable(type(host_info))
        full = {name: cls.VERSION for name, cls in known.items()}
        for name, wanted in pinned.items():
            if name in inside and name != HOST_INFO:
                full[name] = producible(name, known[name].VERSION, wanted, cap=True)
        full[HOST_INFO] = target
    return host_info.obj_to_primitive(target_version=target, version_manifest=full)
