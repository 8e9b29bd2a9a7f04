"""Reading a peer's refusal of our HostInfo: which version it says it reads.

Seed 004: a manager with an older os-vif answers with an error naming the
newest HostInfo version it reads, and the host backlevels and retries.  The
push to the network manager (``vifplug.negotiation.push``) is the only
reader.  Nothing here raises on odd input, since the text is the peer's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from vifplug.negotiation import hostinfo
from vifplug.negotiation.hostinfo import HOST_INFO
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi

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
    target = hostinfo.producible(HOST_INFO, hi.HostInfo.VERSION, peer, cap=True)
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
        if isinstance(name, str) and hostinfo.NAME_RE.fullmatch(name) and version is not None:
            found.setdefault(name, version)
    for text in _texts(mapping, plain):
        for match in _OSLO_TEXT_RE.finditer(text):
            found.setdefault(match.group(1), match.group(2))
    return found
