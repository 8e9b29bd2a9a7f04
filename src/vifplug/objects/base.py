"""The base every wire object shares: os-vif's namespace, oslo's machinery.

vifplug speaks os-vif's wire format without importing os-vif, so its objects
are declared here with the same namespace (``os_vif``), names, fields and
versions, on top of oslo.versionedobjects.  This module adds the little that
oslo leaves to each project:

* a declarative ``fields_added_in`` table, so that backlevelling an object is
  "drop every field newer than the target version" instead of hand-written
  ``if`` ladders that drift from the version history;
* backlevelling that never crashes on a sub-object with no version rule
  (os-vif 5.3.0 raises ``ObjectActionError`` there, for example when a
  ``Network`` or a ``VIFVHostUser`` with a network is asked for version 1.0):
  such a sub-object keeps its own version, as it would under a manifest;
* strict version parsing and comparison, and small primitive / JSON helpers.

oslo.versionedobjects keeps one registry per process, keyed by object name, so
these classes and os-vif's cannot both be loaded in one process: whichever is
registered last wins.  vifplug never imports os-vif at run time; its tests
compare the two in separate processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, TypeGuard, TypeVar

from oslo_versionedobjects import base as ovo_base

#: The namespace os-vif's objects carry on the wire.
NAMESPACE = "os_vif"

#: Keys of an oslo.versionedobjects primitive.
KEY_NAME = "versioned_object.name"
KEY_NAMESPACE = "versioned_object.namespace"
KEY_VERSION = "versioned_object.version"
KEY_DATA = "versioned_object.data"
KEY_CHANGES = "versioned_object.changes"

_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
#: What ``is_version`` accepts, as a regular expression (the OpenAPI document's pattern).
VERSION_PATTERN = _VERSION_RE.pattern


def version_tuple(version: str) -> tuple[int, int]:
    """``"1.4"`` -> ``(1, 4)``.

    Stricter than oslo's own parser on purpose: only ``MAJOR.MINOR`` with
    decimal digits and no leading zeros, which is all os-vif ever sends, so
    that ``"1.04"``, ``"1.4.0"`` or ``" 1.4"`` are refused rather than
    silently compared as something else.  Raises ``ValueError``.
    """
    if not isinstance(version, str):
        raise ValueError(f"a version must be a string like 1.0, not {type(version).__name__}")
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise ValueError(f"{version!r} is not a version of the form MAJOR.MINOR such as 1.0")
    return int(match.group(1)), int(match.group(2))


def version_string(version: tuple[int, int]) -> str:
    """``(1, 4)`` -> ``"1.4"``."""
    return f"{version[0]}.{version[1]}"


def is_version(text: object) -> TypeGuard[str]:
    """Whether ``text`` is a version ``version_tuple`` accepts; never raises."""
    return isinstance(text, str) and _VERSION_RE.fullmatch(text) is not None


def version_in_range(version: str, low: str, high: str) -> bool:
    """Whether ``low <= version <= high``, compared as versions (1.10 is after 1.9)."""
    return version_tuple(low) <= version_tuple(version) <= version_tuple(high)


def oldest_of_major(version: str) -> str:
    """``"1.4"`` -> ``"1.0"``.

    For an object whose newest version is ``version``, the oldest one vifplug
    reads and produces: oslo backlevels an object to any minor of its major
    and to no other major.
    """
    return f"{version_tuple(version)[0]}.0"


_O = TypeVar("_O", bound="type[VersionedObject]")

# Our own index of the classes this package defines, by object name.  The
# oslo registry is process-global and would also hold anything else that
# registered under the same names; this one holds exactly vifplug's.
_CLASSES: dict[str, type[VersionedObject]] = {}


def register(cls: _O) -> _O:
    """Class decorator: register with oslo and in vifplug's own index."""
    ovo_base.VersionedObjectRegistry.register(cls)
    _CLASSES[cls.obj_name()] = cls
    return cls


def classes() -> dict[str, type[VersionedObject]]:
    """Every os_vif object class vifplug defines, by object name (a copy).

    Only complete once ``vifplug.objects`` has been imported (it imports every
    module of the package).
    """
    return dict(_CLASSES)


class VersionedObject(ovo_base.VersionedObject):
    """Base of every vifplug wire object, in os-vif's namespace.

    Subclasses list in ``fields_added_in`` each field that did not exist in
    version 1.0 of *that* class, with the version that introduced it; the
    table is what ``obj_make_compatible`` uses to backlevel.  A subclass whose
    own version numbers move in lockstep with its parent's inherits the table;
    one whose numbers differ restates it in its own numbering.
    """

    OBJ_PROJECT_NAMESPACE = NAMESPACE

    fields_added_in: ClassVar[Mapping[str, str]] = {}

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        """Drop the fields ``target_version`` does not have, then let oslo
        backlevel sub-objects (by ``obj_relationships`` or the manifest)."""
        target = version_tuple(target_version)
        for field, since in self.fields_added_in.items():
            if target < version_tuple(since):
                primitive.pop(field, None)
        super().obj_make_compatible(primitive, target_version)

    def obj_to_primitive(
        self,
        target_version: str | None = None,
        version_manifest: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """oslo's primitive, minus fields the primitive's version does not have.

        An object loaded from an older primitive keeps that older VERSION,
        and oslo skips the compatibility step when asked for the object's own
        version; but a constructor may have filled a newer field (Network
        sets ``mtu``), which would then travel in a 1.0 primitive.  os-vif
        sends it; vifplug does not.
        """
        primitive = super().obj_to_primitive(target_version, version_manifest)
        target = version_tuple(primitive[KEY_VERSION])
        stale = {f for f, since in self.fields_added_in.items() if target < version_tuple(since)}
        if stale:
            data = primitive[KEY_DATA]
            for field in stale:
                data.pop(field, None)
            if KEY_CHANGES in primitive:
                primitive[KEY_CHANGES] = [c for c in primitive[KEY_CHANGES] if c not in stale]
                if not primitive[KEY_CHANGES]:
                    del primitive[KEY_CHANGES]
        return primitive

    def _obj_relationship_for(
        self, field: str, target_version: str
    ) -> list[tuple[str, str]] | None:
        # Without a manifest, oslo raises ObjectActionError for a sub-object
        # field that has no obj_relationships rule.  os-vif has rules for
        # almost none of its sub-objects (Network.subnets, VIFBase.network,
        # HostVIFInfo.supported_port_profiles ...), so backlevelling them
        # failed.  No rule means the sub-object did not change with this
        # object's version: it keeps its own version.
        if getattr(self, "_obj_version_manifest", None) is None and (
            field not in self.obj_relationships
        ):
            return None
        return super()._obj_relationship_for(field, target_version)

    def _obj_make_obj_compatible(
        self, primitive: dict[str, Any], target_version: str, field: str
    ) -> None:
        # A field already removed for an older version has no sub-object left
        # to backlevel (oslo would raise KeyError, e.g. for HostVIFInfo 1.0
        # under a manifest that names HostPortProfileInfo).
        if field not in primitive:
            return
        super()._obj_make_obj_compatible(primitive, target_version, field)


class Comparable(ovo_base.ComparableVersionedObject):
    """oslo's value equality, made deterministic.

    oslo compares the two primitives, whose lists of changed fields come
    from sets in no particular order: two equal objects could compare
    unequal.  This compares them with those lists sorted.
    """

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ovo_base.VersionedObject) or not isinstance(
            self, ovo_base.VersionedObject
        ):
            return NotImplemented
        mine = _sorted_changes(self.obj_to_primitive())
        theirs = _sorted_changes(other.obj_to_primitive())
        return bool(mine == theirs)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        # Identity hash, as oslo's mixin: these objects are mutable.
        return object.__hash__(self)


class PrintableMixin:
    """``str()`` of the object is its primitive, as os-vif prints host info."""

    obj_to_primitive: Any

    def __str__(self) -> str:
        return str(self.obj_to_primitive())


def from_primitive(primitive: Mapping[str, Any]) -> VersionedObject:
    """Load any os_vif primitive through the oslo registry.

    No validation beyond oslo's own: callers that take primitives from the
    network use ``vifplug.objects.loading.load_vif`` / ``load_instance``, which
    explain what is wrong in one sentence.  Raises oslo's exceptions,
    ``ValueError``, ``KeyError`` or ``TypeError`` on bad input.
    """
    obj = VersionedObject.obj_from_primitive(dict(primitive))
    if not isinstance(obj, VersionedObject):
        # Another library registered its own classes under os-vif's names in
        # this process (os-vif itself, most likely): a deployment error.
        raise RuntimeError(
            f"{type(obj).__module__}.{type(obj).__name__} answered for "
            f"{primitive.get(KEY_NAME)!r}; another package registered os_vif objects "
            "in this process, and vifplug cannot share the oslo registry with it"
        )
    return obj


def to_json(
    obj: ovo_base.VersionedObject,
    *,
    target_version: str | None = None,
    version_manifest: Mapping[str, str] | None = None,
) -> str:
    """The object's primitive as compact JSON: keys and the lists of changed
    fields sorted, so that equal objects give equal bytes (oslo builds the
    lists from sets, in no particular order)."""
    primitive = obj.obj_to_primitive(
        target_version=target_version,
        version_manifest=dict(version_manifest) if version_manifest is not None else None,
    )
    return json.dumps(_sorted_changes(primitive), sort_keys=True, separators=(",", ":"))


def _sorted_changes(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _sorted_changes(v) for k, v in value.items()}
        if isinstance(out.get(KEY_CHANGES), list):
            out[KEY_CHANGES] = sorted(out[KEY_CHANGES])
        return out
    if isinstance(value, list):
        return [_sorted_changes(v) for v in value]
    return value


def from_json(text: str | bytes) -> VersionedObject:
    """Inverse of ``to_json``; same exceptions as ``from_primitive`` plus
    ``ValueError`` for text that is not a JSON object."""
    primitive = json.loads(text)
    if not isinstance(primitive, dict):
        raise ValueError("an os_vif primitive is a JSON object")
    return from_primitive(primitive)
