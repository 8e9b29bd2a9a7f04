"""Version negotiation with the network manager, and validation of what it sends.

Pure logic over ``vifplug.objects``: no I/O, no configuration, no state.  It
answers four questions:

* what this host can plug (``build_host_info`` and the ``describe_*``
  helpers, from the plugins' own descriptions);
* how to present that to a peer whose os-vif is older (``backlevel``, for
  ``GET /v1/host-info?version=X.Y`` and ``?manifest=Name:X.Y,...``;
  ``parse_manifest``; and, on the client side, the ``*_from_error``
  functions that read a refusal naming the newest version the peer reads);
* whether a VIF the manager sent is one a plugin accepts (``check_version``,
  ``check_vif``): seed 004 says objects outside a plugin's range are
  rejected with a fatal error, which is ``UnsupportedVersion`` naming it;
* whether a primitive is an os_vif object at all (``primitive_identity``,
  ``load_vif``, ``load_instance``): every way it can be wrong becomes an
  ``InvalidObject`` with one sentence saying why.

Where a VIF's version is newer than this host knows: ``load_vif`` alone can
only say "newer than this host knows" (``InvalidObject``), because which
range would be acceptable depends on the plugin.  The service therefore
checks the primitive's name and version against the chosen plugin's range
first (``primitive_identity`` then ``check_version``, or
``load_vif(..., host_info=...)`` which does both): the manager then gets
``UnsupportedVersion`` with the range, which is what it needs to backlevel
and retry.  ``build_host_info`` refuses a plugin that declares a range
beyond the versions vifplug has, so a VIF that passes that check loads.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from oslo_versionedobjects import exception as ovo_exception
from oslo_versionedobjects import fields as ovo_fields

from vifplug import exceptions
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs

HOST_INFO = "HostInfo"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MAX_MANIFEST_CHARS = 16384

# What a ``what`` argument means, and how messages call it.
_KINDS: dict[str, tuple[str, type[obj_base.VersionedObject]]] = {
    "vif": ("VIF", vifs.VIFBase),
    "instance": ("instance", ii.InstanceInfo),
    "host_info": ("host info", hi.HostInfo),
    "port_profile": ("port profile", vifs.VIFPortProfileBase),
}

_T = TypeVar("_T", bound=obj_base.VersionedObject)


# --- versions -------------------------------------------------------------------


def parse_version(text: object, *, what: str = "version") -> str:
    """Validate a ``MAJOR.MINOR`` version from a request; returns it unchanged.

    Raises ``InvalidRequest`` for anything else (``"1"``, ``"1.0.0"``,
    ``"latest"``, a number instead of a string).
    """
    if not isinstance(text, str):
        raise exceptions.InvalidRequest(
            reason=f"the {what} must be a string like 1.0, not {type(text).__name__}."
        )
    try:
        obj_base.version_tuple(text)
    except ValueError:
        raise exceptions.InvalidRequest(
            reason=f"the {what} is {text[:40]!r}, not of the form MAJOR.MINOR such as 1.0."
        ) from None
    return text


def _producible(obj_name: str, ours: str, wanted: str, *, cap: bool) -> str:
    """The version of ``obj_name`` to produce for a peer that asks for ``wanted``.

    This host can produce every version from ``MAJOR.0`` to its own.  With
    ``cap`` (a manifest entry: the newest version the peer *has*), a newer
    minor of the same major is answered with ours, which such a peer reads.
    Raises ``VersionNotAvailable`` otherwise, with the range it can produce.
    """
    wanted_t = obj_base.version_tuple(parse_version(wanted, what=f"version of {obj_name}"))
    ours_t = obj_base.version_tuple(ours)
    oldest = (ours_t[0], 0)
    if cap and wanted_t[0] == ours_t[0] and wanted_t > ours_t:
        wanted_t = ours_t
    if not oldest <= wanted_t <= ours_t:
        raise exceptions.VersionNotAvailable(
            obj_name=obj_name,
            version=wanted,
            min_version=obj_base.version_string(oldest),
            max_version=ours,
        )
    return obj_base.version_string(wanted_t)


def check_version(
    obj_name: str, version: str, min_version: str, max_version: str, *, plugin: str
) -> None:
    """Raise ``UnsupportedVersion`` unless ``min_version <= version <= max_version``.

    ``version`` comes from the caller's object; ``min_version`` and
    ``max_version`` from a plugin's description.  A malformed ``version``
    is an ``InvalidObject``.
    """
    try:
        got = obj_base.version_tuple(version)
    except ValueError:
        raise exceptions.InvalidObject(
            what=obj_name, reason=f"its version {str(version)[:40]!r} is not of the form X.Y."
        ) from None
    if not obj_base.version_tuple(min_version) <= got <= obj_base.version_tuple(max_version):
        raise exceptions.UnsupportedVersion(
            obj_name=obj_name,
            version=version,
            min_version=min_version,
            max_version=max_version,
            plugin=plugin,
        )


# --- describing this host -------------------------------------------------------


def describe_vif(
    vif_class: type[vifs.VIFBase],
    *,
    min_version: str = "1.0",
    max_version: str | None = None,
    port_profiles: Iterable[type[vifs.VIFPortProfileBase]] = (),
) -> hi.HostVIFInfo:
    """A ``HostVIFInfo`` for a VIF class; the range defaults to every version
    vifplug can read (``1.0`` to the class's VERSION), and each port profile
    gets its full range too."""
    return hi.HostVIFInfo(
        vif_object_name=vif_class.obj_name(),
        min_version=min_version,
        max_version=max_version or vif_class.VERSION,
        supported_port_profiles=[
            hi.HostPortProfileInfo(
                profile_object_name=profile.obj_name(),
                min_version="1.0",
                max_version=profile.VERSION,
            )
            for profile in port_profiles
        ],
    )


def describe_plugin(name: str, vif_info: Iterable[hi.HostVIFInfo]) -> hi.HostPluginInfo:
    """A ``HostPluginInfo`` for a plugin named ``name``."""
    return hi.HostPluginInfo(plugin_name=name, vif_info=list(vif_info))


def _check_declared_range(
    plugin: str, name: str, low: str, high: str, kind: type[obj_base.VersionedObject]
) -> None:
    cls = obj_base.classes().get(name)
    if cls is None or not issubclass(cls, kind):
        raise ValueError(
            f"plugin {plugin} declares {name}, which is not a {kind.obj_name()} vifplug has"
        )
    ours = obj_base.version_tuple(cls.VERSION)
    low_t, high_t = obj_base.version_tuple(low), obj_base.version_tuple(high)
    if not (ours[0], 0) <= low_t <= high_t <= ours:
        raise ValueError(
            f"plugin {plugin} declares {name} {low} to {high}, but vifplug reads "
            f"{name} {ours[0]}.0 to {cls.VERSION} only"
        )


def build_host_info(plugins: Iterable[hi.HostPluginInfo]) -> hi.HostInfo:
    """This host's ``HostInfo`` from its plugins' descriptions.

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


# --- backlevelling HostInfo -------------------------------------------------------


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
        if not _NAME_RE.fullmatch(name):
            raise exceptions.InvalidRequest(
                reason=f"{name[:60]!r} in the manifest is not an object name."
            )
        version = parse_version(version, what=f"version of {name} in the manifest")
        if manifest.get(name, version) != version:
            raise exceptions.InvalidRequest(
                reason=f"the manifest names {name} twice, as {manifest[name]} and {version}."
            )
        manifest[name] = version
    return manifest


def _manifest(manifest: str | Mapping[str, str] | None) -> dict[str, str]:
    if manifest is None:
        return {}
    if isinstance(manifest, str):
        return parse_manifest(manifest)
    checked: dict[str, str] = {}
    for name, version in manifest.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise exceptions.InvalidRequest(
                reason=f"{str(name)[:60]!r} in the manifest is not an object name."
            )
        checked[name] = parse_version(version, what=f"version of {name} in the manifest")
    return checked


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
    pinned = _manifest(manifest)
    ours = host_info.VERSION
    if version is not None:
        target = _producible(HOST_INFO, ours, version, cap=False)
    elif HOST_INFO in pinned:
        target = _producible(HOST_INFO, ours, pinned[HOST_INFO], cap=True)
    else:
        target = ours
    full: dict[str, str] | None = None
    if pinned:
        known = obj_base.classes()
        inside = _reachable(type(host_info))
        full = {name: cls.VERSION for name, cls in known.items()}
        for name, wanted in pinned.items():
            if name in inside and name != HOST_INFO:
                full[name] = _producible(name, known[name].VERSION, wanted, cap=True)
        full[HOST_INFO] = target
    return host_info.obj_to_primitive(target_version=target, version_manifest=full)


# --- reading a peer's refusal ---------------------------------------------------------

# "maximum version 1.0", "max_version=1.0", "max version: 1.0",
# "maximum supported version is 1.0", "HostInfo maximum version of 1.0" ...
_MAX_TEXT_RE = re.compile(
    r"\bmax(?:imum)?[\s_-]*(?:supported[\s_-]*)?(?:HostInfo[\s_-]*)?version"
    r"(?:\s+of\s+HostInfo)?\s*(?:is\s+|of\s+|=\s*|:\s*)?[\"']?v?(\d+\.\d+)\b",
    re.IGNORECASE,
)
# oslo.versionedobjects' IncompatibleObjectVersion, which an os-vif peer
# raises when it cannot load an object.
_OSLO_TEXT_RE = re.compile(
    r"Version\s+\S+\s+of\s+([A-Za-z_][A-Za-z0-9_]*)\s+is\s+not\s+supported,?\s+"
    r"supported\s+version\s+is\s+(\d+\.\d+)",
    re.IGNORECASE,
)


def _body_mapping(body: str | bytes | Mapping[str, Any] | None) -> tuple[Mapping[str, Any], str]:
    """Split an error body into its JSON object (if any) and its plain text."""
    if body is None:
        return {}, ""
    if isinstance(body, Mapping):
        return body, ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}, text
    return (parsed, "") if isinstance(parsed, dict) else ({}, text)


def _texts(mapping: Mapping[str, Any], plain: str) -> list[str]:
    """Every human-readable string of an error body, most specific first."""
    found = [plain] if plain else []
    error = mapping.get("error")
    for holder in (error if isinstance(error, Mapping) else {}, mapping):
        for key in ("message", "detail", "title", "faultstring", "explanation"):
            value = holder.get(key)
            if isinstance(value, str):
                found.append(value)
    if isinstance(error, str):
        found.append(error)
    return found


def _details(mapping: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    error = mapping.get("error")
    holders: list[Mapping[str, Any]] = []
    if isinstance(error, Mapping):
        if isinstance(error.get("details"), Mapping):
            holders.append(error["details"])
        holders.append(error)
    if isinstance(mapping.get("details"), Mapping):
        holders.append(mapping["details"])
    holders.append(mapping)
    return holders


def _valid(version: object) -> str | None:
    """``version`` if it is a well-formed MAJOR.MINOR string, else None."""
    if not isinstance(version, str):
        return None
    try:
        obj_base.version_tuple(version)
    except ValueError:
        return None
    return version


def max_version_from_error(body: str | bytes | Mapping[str, Any] | None) -> str | None:
    """The newest HostInfo version a peer's refusal says it reads, or None.

    Understands a JSON envelope with ``error.details.max_version`` (vifplug's
    own, and the natural shape for a manager; a ``details.obj_name`` other
    than HostInfo means the limit is on that object, see
    ``manifest_from_error``), a bare ``{"max_version": ...}``, and a message
    (in JSON or plain text) saying "maximum version 1.0" in one of its usual
    spellings or oslo's "Version 1.1 of HostInfo is not supported, supported
    version is 1.0".  Never raises on odd input.
    """
    mapping, plain = _body_mapping(body)
    for holder in _details(mapping):
        name = holder.get("obj_name", HOST_INFO)
        found = _valid(holder.get("max_version"))
        if found is not None and name == HOST_INFO:
            return found
    for text in _texts(mapping, plain):
        oslo_refusals = list(_OSLO_TEXT_RE.finditer(text))
        for refusal in oslo_refusals:
            if refusal.group(1) == HOST_INFO:
                return refusal.group(2)
        # A message that is oslo's refusal of another object says nothing
        # about HostInfo, even if it also contains "max version".
        plain_max = _MAX_TEXT_RE.search(text)
        if plain_max is not None and not oslo_refusals:
            return _valid(plain_max.group(1))
    return None


def backlevel_version_from_error(
    body: str | bytes | Mapping[str, Any] | None, *, sent: str | None = None
) -> str | None:
    """The HostInfo version to retry with after a peer refused ours.

    ``None`` when the refusal names no version, or when the version it names
    is not older than ``sent`` (what was already tried: retrying would loop).
    A peer newer than this host gets this host's own version.  Raises
    ``VersionNotAvailable`` when the peer's newest is one this host cannot
    produce (an older major, or below 1.0).
    """
    peer = max_version_from_error(body)
    if peer is None:
        return None
    target = _producible(HOST_INFO, hi.HostInfo.VERSION, peer, cap=True)
    if sent is not None and _valid(sent) is not None:
        if obj_base.version_tuple(target) >= obj_base.version_tuple(sent):
            return None
    return target


def manifest_from_error(body: str | bytes | Mapping[str, Any] | None) -> dict[str, str]:
    """The per-object limits a peer's refusal names, as a version manifest.

    An os-vif peer that cannot load a nested object (say HostVIFInfo 1.1)
    says so with oslo's "Version 1.1 of HostVIFInfo is not supported,
    supported version is 1.0"; vifplug's own 406 names the object in
    ``details.obj_name``.  The result can be passed to ``backlevel``.
    """
    mapping, plain = _body_mapping(body)
    found: dict[str, str] = {}
    for holder in _details(mapping):
        name, version = holder.get("obj_name"), _valid(holder.get("max_version"))
        if isinstance(name, str) and _NAME_RE.fullmatch(name) and version is not None:
            found.setdefault(name, version)
    for text in _texts(mapping, plain):
        for match in _OSLO_TEXT_RE.finditer(text):
            found.setdefault(match.group(1), match.group(2))
    return found


# --- validating what the manager sends ---------------------------------------------


def _invalid(what: str, reason: str) -> exceptions.InvalidObject:
    return exceptions.InvalidObject(what=what, reason=reason)


def primitive_identity(primitive: object, *, what: str = "object") -> tuple[str, str]:
    """``(object name, version)`` of an os_vif primitive, after checking its shape.

    Checks that it is a JSON object with the four ``versioned_object.*``
    keys, the ``os_vif`` namespace, a name this host knows and that is of
    the kind ``what`` asks for (``"vif"``, ``"instance"``, ``"host_info"``;
    anything else accepts any os_vif object), and a well-formed version.  It
    does *not* compare the version with this host's, so that the caller can
    first check it against a plugin's range.  Raises ``InvalidObject``.
    """
    label, expected = _KINDS.get(what, (what, obj_base.VersionedObject))
    if not isinstance(primitive, Mapping):
        raise _invalid(label, f"it is a JSON {_json_type(primitive)}, not a JSON object.")
    missing = [
        key
        for key in (
            obj_base.KEY_NAME,
            obj_base.KEY_NAMESPACE,
            obj_base.KEY_VERSION,
            obj_base.KEY_DATA,
        )
        if key not in primitive
    ]
    if missing:
        raise _invalid(label, f"it has no {missing[0]} key.")
    name = primitive[obj_base.KEY_NAME]
    namespace = primitive[obj_base.KEY_NAMESPACE]
    version = primitive[obj_base.KEY_VERSION]
    if namespace != obj_base.NAMESPACE:
        raise _invalid(label, f"its namespace is {str(namespace)[:60]!r}, not 'os_vif'.")
    if not isinstance(name, str):
        raise _invalid(label, f"its object name is a JSON {_json_type(name)}, not a string.")
    cls = obj_base.classes().get(name)
    if cls is None:
        raise _invalid(label, f"{name[:60]!r} is not an os_vif object this host knows.")
    if not issubclass(cls, expected):
        raise _invalid(label, f"it is a {name}, not a {expected.obj_name()}.")
    if not isinstance(version, str) or _valid(version) != version:
        raise _invalid(label, f"its version {str(version)[:40]!r} is not of the form X.Y.")
    if not isinstance(primitive[obj_base.KEY_DATA], Mapping):
        raise _invalid(label, "its versioned_object.data is not a JSON object.")
    changes = primitive.get(obj_base.KEY_CHANGES, [])
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        raise _invalid(label, "its versioned_object.changes is not a list of field names.")
    return name, version


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")[:200]


def _load(primitive: Mapping[str, Any], what: str, expected: type[_T]) -> _T:
    """Load a primitive ``primitive_identity`` accepted; InvalidObject on failure."""
    label = _KINDS.get(what, (what, expected))[0]
    name, version = primitive_identity(primitive, what=what)
    cls = obj_base.classes()[name]
    got, ours = obj_base.version_tuple(version), obj_base.version_tuple(cls.VERSION)
    if got[0] != ours[0] or got > ours:
        raise _invalid(
            label,
            f"it is {name} {version}, and this host knows {name} {ours[0]}.0 to {cls.VERSION}.",
        )
    try:
        obj = obj_base.from_primitive(primitive)
    except RecursionError:
        raise _invalid(label, "it is nested too deeply.") from None
    except (
        ovo_exception.VersionedObjectsException,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        NotImplementedError,
    ) as exc:
        raise _invalid(label, f"its data does not load ({_first_line(exc)}).") from None
    if not isinstance(obj, expected):  # primitive_identity checked the name's class
        raise RuntimeError(f"{name} loaded as {type(obj).__name__}")
    return obj


def _require_uuid(label: str, data: Mapping[str, Any], field: str) -> None:
    value = data.get(field)
    if not isinstance(value, str):
        raise _invalid(label, f"its {field} is missing or not a string.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise _invalid(label, f"its {field} {value[:60]!r} is not a UUID.") from None


def _profile_identity(data: Mapping[str, Any]) -> tuple[str, str] | None:
    profile = data.get("port_profile")
    if not isinstance(profile, Mapping):
        return None
    name, version = profile.get(obj_base.KEY_NAME), profile.get(obj_base.KEY_VERSION)
    if isinstance(name, str) and isinstance(version, str) and _valid(version) == version:
        return name, version
    return None  # malformed: loading says why


def _check_against(
    host_info: hi.HostInfo,
    *,
    plugin: str,
    obj_name: str,
    version: str,
    profile: tuple[str, str] | None,
) -> hi.HostVIFInfo:
    try:
        plugin_info = host_info.get_plugin(plugin)
    except KeyError:
        raise exceptions.NoMatchingPlugin(plugin_name=plugin) from None
    try:
        vif_info = plugin_info.get_vif(obj_name)
    except KeyError:
        raise exceptions.UnsupportedVIFType(plugin=plugin, obj_name=obj_name) from None
    check_version(obj_name, version, vif_info.min_version, vif_info.max_version, plugin=plugin)
    # A plugin that declares no port profiles (a HostVIFInfo 1.0 cannot)
    # restricts none, as os-vif never checks them at all.
    if profile is not None and vif_info.port_profiles():
        profile_name, profile_version = profile
        try:
            accepted = vif_info.get_port_profile(profile_name)
        except KeyError:
            raise exceptions.UnsupportedPortProfile(
                plugin=plugin, profile=profile_name, obj_name=obj_name
            ) from None
        check_version(
            profile_name,
            profile_version,
            accepted.min_version,
            accepted.max_version,
            plugin=plugin,
        )
    return vif_info


def check_vif(vif: vifs.VIFBase, host_info: hi.HostInfo) -> hi.HostVIFInfo:
    """Check a loaded VIF against what this host declared; returns the
    matching ``HostVIFInfo``.

    Raises ``NoMatchingPlugin`` (its ``plugin`` is not installed),
    ``UnsupportedVIFType`` (that plugin does not consume this VIF object),
    ``UnsupportedVersion`` (the VIF's or its port profile's version is
    outside the declared range) or ``UnsupportedPortProfile``.
    """
    profile = None
    if vif.obj_attr_is_set("port_profile") and vif.port_profile is not None:
        profile = (vif.port_profile.obj_name(), vif.port_profile.VERSION)
    return _check_against(
        host_info,
        plugin=vif.plugin,
        obj_name=vif.obj_name(),
        version=vif.VERSION,
        profile=profile,
    )


def load_vif(primitive: object, *, host_info: hi.HostInfo | None = None) -> vifs.VIFBase:
    """Load a VIF primitive the network manager sent.

    Raises ``InvalidObject`` (one sentence on what is wrong: not an object,
    wrong namespace, unknown name, not a VIF, malformed version or data, an
    ``id`` that is not a UUID, no ``plugin``, a version newer than this
    host knows).  With ``host_info``, the VIF is also checked against the
    plugin its ``plugin`` field names, *before* loading, so that a version
    newer than this host knows is reported as ``UnsupportedVersion`` with
    the plugin's range (see ``check_vif`` for the other errors).
    """
    name, version = primitive_identity(primitive, what="vif")
    assert isinstance(primitive, Mapping)  # primitive_identity checked it
    data = primitive[obj_base.KEY_DATA]
    _require_uuid("VIF", data, "id")
    plugin = data.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise _invalid("VIF", "its plugin is missing or not a non-empty string.")
    if host_info is not None:
        _check_against(
            host_info,
            plugin=plugin,
            obj_name=name,
            version=version,
            profile=_profile_identity(data),
        )
    vif = _load(primitive, "vif", vifs.VIFBase)
    if host_info is not None:
        check_vif(vif, host_info)
    return vif


def load_instance(primitive: object) -> ii.InstanceInfo:
    """Load an InstanceInfo primitive; its ``uuid`` must be a UUID (vifplug
    writes it into OVS as ``vm-id``).  Raises ``InvalidObject``."""
    primitive_identity(primitive, what="instance")
    assert isinstance(primitive, Mapping)
    _require_uuid("instance", primitive[obj_base.KEY_DATA], "uuid")
    return _load(primitive, "instance", ii.InstanceInfo)
