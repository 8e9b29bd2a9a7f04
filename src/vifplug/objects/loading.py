"""Loading the os_vif primitives a caller sent into vifplug's objects.

Every way a primitive can be wrong (not a JSON object, another namespace, an
unknown name, not a VIF, a malformed version or data, an ``id`` that is not a
UUID, no ``plugin``, a version newer than this host knows) becomes an
``InvalidObject`` with one sentence saying why.  ``primitive_identity`` checks
the shape without comparing versions, so that admission can first check the
version against the chosen plugin's range and name that range when it refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from oslo_versionedobjects import exception as ovo_exception

from vifplug import exceptions
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs

# What a ``what`` argument means, and how messages call it.
_KINDS: dict[str, tuple[str, type[obj_base.VersionedObject]]] = {
    "vif": ("VIF", vifs.VIFBase),
    "instance": ("instance", ii.InstanceInfo),
    "host_info": ("host info", hi.HostInfo),
    "port_profile": ("port profile", vifs.VIFPortProfileBase),
}


_T = TypeVar("_T", bound=obj_base.VersionedObject)


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
    if not isinstance(version, str) or not _well_formed(version):
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


def load_vif(primitive: object) -> vifs.VIFBase:
    """Load a VIF primitive the network manager sent.

    Raises ``InvalidObject`` (one sentence on what is wrong: not an object,
    wrong namespace, unknown name, not a VIF, malformed version or data, an
    ``id`` that is not a UUID, no ``plugin``, a version newer than this
    host knows).
    """
    primitive_identity(primitive, what="vif")
    assert isinstance(primitive, Mapping)  # primitive_identity checked it
    data = primitive[obj_base.KEY_DATA]
    _require_uuid("VIF", data, "id")
    plugin = data.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise _invalid("VIF", "its plugin is missing or not a non-empty string.")
    return _load(primitive, "vif", vifs.VIFBase)


def load_instance(primitive: object) -> ii.InstanceInfo:
    """Load an InstanceInfo primitive; its ``uuid`` must be a UUID (vifplug
    writes it into OVS as ``vm-id``).  Raises ``InvalidObject``."""
    primitive_identity(primitive, what="instance")
    assert isinstance(primitive, Mapping)
    _require_uuid("instance", primitive[obj_base.KEY_DATA], "uuid")
    return _load(primitive, "instance", ii.InstanceInfo)


def _well_formed(version: str) -> bool:
    try:
        obj_base.version_tuple(version)
    except ValueError:
        return False
    return True
