"""Reading a peer's refusal of our HostInfo: which versions it says it reads.

Seed 004: a network manager with an older os-vif refuses a HostInfo it
cannot load with an error naming the newest version it reads, and the host
backlevels and retries.  Managers word that in many ways (a JSON envelope
with ``details.max_version`` like vifplug's own 406, oslo's "Version 1.1 of
HostVIFInfo is not supported, supported version is 1.0", "maximum version
1.0" in prose), and the limit may be on HostInfo or on an object inside it,
so reading it is a module of its own; the push to the network manager
(``vifplug.negotiation.push``) is its only caller.

* ``max_version_from_error``: the newest HostInfo version the peer reads;
* ``backlevel_version_from_error``: the HostInfo version to retry with;
* ``manifest_from_error``: the per-object limits, as a version manifest for
  ``hostinfo.backlevel``.

The body is the peer's, so odd input gives ``None`` or an empty manifest,
never an exception; only a version this host cannot produce raises
(``VersionNotAvailable``, from ``backlevel_version_from_error``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from vifplug.negotiation import hostinfo
from vifplug.negotiation.hostinfo import HOST_INFO
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi

#: An error body as a peer sent it: raw, or already parsed from JSON.
ErrorBody = str | bytes | Mapping[str, object] | None

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


def _body_mapping(body: ErrorBody) -> tuple[Mapping[str, object], str]:
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


def _texts(mapping: Mapping[str, object], plain: str) -> list[str]:
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


def _details(mapping: Mapping[str, object]) -> list[Mapping[str, object]]:
    """Every object of an error body that may hold ``max_version``, most specific first."""
    error, details = mapping.get("error"), mapping.get("details")
    holders: list[Mapping[str, object]] = []
    if isinstance(error, Mapping):
        if isinstance(error.get("details"), Mapping):
            holders.append(error["details"])
        holders.append(error)
    if isinstance(details, Mapping):
        holders.append(details)
    holders.append(mapping)
    return holders


def max_version_from_error(body: ErrorBody) -> str | None:
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
        found = holder.get("max_version")
        if obj_base.is_version(found) and holder.get("obj_name", HOST_INFO) == HOST_INFO:
            return found
    for text in _texts(mapping, plain):
        oslo_refusals = list(_OSLO_TEXT_RE.finditer(text))
        said = next((m.group(2) for m in oslo_refusals if m.group(1) == HOST_INFO), None)
        plain_max = _MAX_TEXT_RE.search(text)
        # A message that is oslo's refusal of another object says nothing
        # about HostInfo, even if it also contains "max version".
        if said is None and plain_max is not None and not oslo_refusals:
            said = plain_max.group(1)
        if said is not None:
            return said if obj_base.is_version(said) else None
    return None


def backlevel_version_from_error(body: ErrorBody, *, sent: str | None = None) -> str | None:
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
    target = hostinfo.producible(HOST_INFO, hi.HostInfo.VERSION, peer, cap=True)
    if obj_base.is_version(sent) and obj_base.version_tuple(sent) <= obj_base.version_tuple(target):
        return None  # not older than what was sent: retrying would loop
    return target


def manifest_from_error(body: ErrorBody) -> dict[str, str]:
    """The per-object limits a peer's refusal names, as a version manifest.

    An os-vif peer that cannot load a nested object (say HostVIFInfo 1.1)
    says so with oslo's "Version 1.1 of HostVIFInfo is not supported,
    supported version is 1.0"; vifplug's own 406 names the object in
    ``details.obj_name``.  The result can be passed to ``backlevel``.
    """
    mapping, plain = _body_mapping(body)
    found: dict[str, str] = {}
    for holder in _details(mapping):
        name, version = holder.get("obj_name"), holder.get("max_version")
        if (
            isinstance(name, str)
            and hostinfo.NAME_RE.fullmatch(name)
            and obj_base.is_version(version)
        ):
            found.setdefault(name, version)
    for text in _texts(mapping, plain):
        for match in _OSLO_TEXT_RE.finditer(text):
            if obj_base.is_version(match.group(2)):
                found.setdefault(match.group(1), match.group(2))
    return found
