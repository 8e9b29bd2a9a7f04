"""Loading the os_vif primitives a caller sent into vifplug's objects.

oslo's ``obj_from_primitive`` (``base.from_primitive``) trusts its input and
fails with whatever exception the bad spot raises.  A primitive from the
network deserves better: every way it can be wrong (not a JSON object,
another namespace, an unknown name, not a VIF, a malformed version or data,
an ``id`` that is not a UUID, no ``plugin``, a version newer than this host
knows) becomes an ``InvalidObject`` with one sentence saying why, which the
API answers with 400.  ``primitive_identity`` checks the shape without
comparing versions, so that admission can first check the version against
the chosen plugin's range and name that range when it refuses.

``check_writable`` is the one pass over everything a primitive carries that
refuses what no layer below can hold (``UnwritableValue``): ovsdb-server
drops the connection on a ``\\u0000`` or an unpaired surrogate in a
transaction (and a connection drop takes every write of the batch with it),
SQLite cannot encode a surrogate, the kernel's names end at a NUL, and a
control character or a line separator in an id forges log lines.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import TypeVar

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


def _invalid(label: str, reason: str) -> exceptions.InvalidObject:
    return exceptions.InvalidObject(what=label, reason=reason)


def primitive_identity(primitive: object, *, what: str = "object") -> tuple[str, str]:
    """``(object name, version)`` of an os_vif primitive, after checking its shape.

    Checks that it is a JSON object with the four ``versioned_object.*``
    keys, the ``os_vif`` namespace, a name this host knows and that is of
    the kind ``what`` asks for (``"vif"``, ``"instance"``, ``"host_info"``,
    ``"port_profile"``; anything else accepts any os_vif object), and a
    well-formed version.  It does *not* compare the version with this
    host's, so that the caller can first check it against a plugin's range.
    Raises ``InvalidObject``.
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
    if not obj_base.is_version(version):
        raise _invalid(label, f"its version {str(version)[:40]!r} is not of the form X.Y.")
    if not isinstance(primitive[obj_base.KEY_DATA], Mapping):
        raise _invalid(label, "its versioned_object.data is not a JSON object.")
    changes = primitive.get(obj_base.KEY_CHANGES, [])
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        raise _invalid(label, "its versioned_object.changes is not a list of field names.")
    return name, version


# What no string vifplug writes may hold: the C0 and C1 control characters
# (NUL among them), unpaired surrogates (not UTF-8: neither SQLite nor
# ovsdb-server can store one), and the line and paragraph separators (a
# newline to every JavaScript reader and to log viewers).  The same set as
# the characters Nova refuses in names, less the format characters (Cf):
# those are printable text (a zero-width joiner in an emoji, say).
_UNWRITABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_INT64 = (-(2**63), 2**63 - 1)
_SEGMENT_MAX = 40  # characters of one key shown in a field path


def _character(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char == "\x00":
        return f"a NUL ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"an unpaired surrogate ({code})"
    if char in "\u2028\u2029":
        return f"a {'line' if char == chr(0x2028) else 'paragraph'} separator ({code})"
    return f"a control character ({code})"


def _segment(key: str) -> str:
    """A key as a field path shows it: escaped if it is itself unwritable,
    and cut short (a key can be as long as the body)."""
    shown = key.encode("ascii", "backslashreplace").decode() if _UNWRITABLE.search(key) else key
    return shown if len(shown) <= _SEGMENT_MAX else shown[: _SEGMENT_MAX - 3] + "..."


def _check_scalar(field: str, value: object, *, key: bool = False) -> None:
    if isinstance(value, str):
        bad = _UNWRITABLE.search(value)
        if bad is not None:
            raise exceptions.UnwritableValue(
                field=field,
                problem=f"{'has a key that contains' if key else 'contains'} "
                f"{_character(bad.group())} at index {bad.start()}",
                character=f"U+{ord(bad.group()):04X}",
                index=bad.start(),
            )
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise exceptions.UnwritableValue(
            field=field, problem="is a number outside the 64-bit integer range"
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise exceptions.UnwritableValue(field=field, problem="is not a finite number")


def check_writable(value: object, where: str) -> None:
    """Refuse, with ``UnwritableValue`` naming the field path
    (``vif.port_profile.interface_id``, ``vif.network.subnets.objects[0]...``),
    the first string anywhere in ``value`` (dict keys included) that holds a
    character of ``_UNWRITABLE``, and the first number outside 64-bit
    integers or not finite.  A primitive's ``versioned_object.data`` adds no
    segment to the path: its fields are the object's.  Iterative, so any
    nesting JSON allows is walked without recursion.  Pure.
    """
    if not _has_unwritable(value):
        return  # the common case: no field path built for a body with nothing wrong
    stack: list[tuple[str, object]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, Mapping):
            is_object = obj_base.KEY_NAME in item
            children = []
            for key, child in item.items():
                name = str(key)
                _check_scalar(path, name, key=True)
                sub = (
                    path if is_object and name == obj_base.KEY_DATA else f"{path}.{_segment(name)}"
                )
                children.append((sub, child))
            stack.extend(reversed(children))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))
        else:
            _check_scalar(path, item)


def _has_unwritable(value: object) -> bool:
    """Whether ``check_writable`` would refuse ``value``: the same checks
    (``_UNWRITABLE`` for strings, ``_check_scalar`` for numbers) without the
    field paths, which cost more than the checks themselves (a plug's VIF
    and instance: 85 us with the paths, 30-35 us without)."""
    stack: list[object] = [value]
    try:
        while stack:
            item = stack.pop()
            if isinstance(item, str):  # most nodes: the one rule for strings, inline
                if _UNWRITABLE.search(item) is not None:
                    return True
            elif isinstance(item, Mapping):
                if any(_UNWRITABLE.search(str(key)) is not None for key in item):
                    return True
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            else:
                _check_scalar("", item)  # numbers: the rules in one place
    except exceptions.UnwritableValue:
        return True
    return False


# JSON's name for each Python type json.loads makes (bool before int: a bool is an int).
_JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    ((list, tuple), "array"),
    (Mapping, "object"),
)


def _json_type(value: object) -> str:
    return next((name for t, name in _JSON_TYPES if isinstance(value, t)), type(value).__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")[:200]


def _load(
    primitive: object,
    what: str,
    expected: type[_T],
    check_data: Callable[[Mapping[str, object]], None],
) -> _T:
    """Load a primitive of kind ``what``: its shape (``primitive_identity``),
    then its data (``check_data``), then its version against this host's.

    Raises ``InvalidObject`` for whatever is wrong first.
    """
    name, version = primitive_identity(primitive, what=what)
    assert isinstance(primitive, Mapping)  # primitive_identity checked it
    check_data(primitive[obj_base.KEY_DATA])
    label = _KINDS[what][0]
    cls = obj_base.classes()[name]
    oldest = obj_base.oldest_of_major(cls.VERSION)
    if not obj_base.version_in_range(version, oldest, cls.VERSION):
        raise _invalid(
            label, f"it is {name} {version}, and this host knows {name} {oldest} to {cls.VERSION}."
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


def _require_uuid(label: str, data: Mapping[str, object], field: str) -> None:
    value = data.get(field)
    if not isinstance(value, str):
        raise _invalid(label, f"its {field} is missing or not a string.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise _invalid(label, f"its {field} {value[:60]!r} is not a UUID.") from None


def _check_vif_data(data: Mapping[str, object]) -> None:
    _require_uuid("VIF", data, "id")
    plugin = data.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise _invalid("VIF", "its plugin is missing or not a non-empty string.")


def _check_instance_data(data: Mapping[str, object]) -> None:
    _require_uuid("instance", data, "uuid")


def load_vif(primitive: object) -> vifs.VIFBase:
    """Load a VIF primitive the network manager sent.

    Raises ``InvalidObject`` (one sentence on what is wrong: not an object,
    wrong namespace, unknown name, not a VIF, malformed version or data, an
    ``id`` that is not a UUID, no ``plugin``, a version newer than this
    host knows).
    """
    return _load(primitive, "vif", vifs.VIFBase, _check_vif_data)


def load_instance(primitive: object) -> ii.InstanceInfo:
    """Load an InstanceInfo primitive; its ``uuid`` must be a UUID (vifplug
    writes it into OVS as ``vm-id``).  Raises ``InvalidObject``."""
    return _load(primitive, "instance", ii.InstanceInfo, _check_instance_data)
