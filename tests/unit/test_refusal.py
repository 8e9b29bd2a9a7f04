"""Reading a peer's refusal of our HostInfo: the HostInfo version, or the
per-object limits, it says it reads (``vifplug.negotiation.refusal``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import host_infos
from vifplug import exceptions
from vifplug.negotiation import hostinfo, refusal
from vifplug.objects import base

VERSION = base.KEY_VERSION


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "x", "message": "no", "details": {"max_version": "1.0"}}},
        json.dumps({"error": {"details": {"max_version": "1.0"}}}),
        json.dumps({"error": {"details": {"max_version": "1.0"}}}).encode(),
        {"error": {"details": {"obj_name": "HostInfo", "max_version": "1.0"}}},
        {"details": {"max_version": "1.0"}},
        {"max_version": "1.0"},
        "HostInfo: maximum version 1.0",
        "unsupported HostInfo; maximum version is 1.0",
        "the manager reads HostInfo max_version=1.0 only",
        "max version: 1.0",
        "Maximum supported version of HostInfo is 1.0.",
        "Version 1.1 of HostInfo is not supported, supported version is 1.0",
        {"error": {"message": "HostInfo maximum version 1.0 (got 1.1)"}},
        {"message": "maximum version 1.0"},
        {"error": "maximum version 1.0"},
    ],
)
def test_max_version_from_error_understands_the_usual_shapes(body: Any) -> None:
    assert refusal.max_version_from_error(body) == "1.0"


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "internal server error",
        b"\xff\xfe",
        "[1, 2]",
        {"error": {"details": {"max_version": "one"}}},
        {"error": {"details": {"max_version": 1.0}}},
        {"error": {"details": {"obj_name": "HostVIFInfo", "max_version": "1.0"}}},
        "Version 1.1 of HostVIFInfo is not supported, supported version is 1.0",
        "Version 1.1 of HostInfo is not supported, supported version is 01.0",
        {"error": {"message": "maximum version 1.x"}},
        {"error": {"message": "maximum version 01.0"}},
    ],
)
def test_max_version_from_error_finds_nothing_where_nothing_is_said(body: Any) -> None:
    assert refusal.max_version_from_error(body) is None


def test_backlevel_version_from_error_gives_the_version_to_retry_with() -> None:
    body = {"error": {"details": {"max_version": "1.0"}}}
    assert refusal.backlevel_version_from_error(body) == "1.0"
    # Already sent 1.0: retrying with 1.0 would loop.
    assert refusal.backlevel_version_from_error(body, sent="1.0") is None
    # A peer newer than us reads ours.
    assert refusal.backlevel_version_from_error("maximum version 1.7") == "1.0"
    assert refusal.backlevel_version_from_error("no version here") is None


@pytest.mark.parametrize("peer", ["0.9", "2.0"])
def test_backlevel_version_from_error_cannot_go_where_we_cannot_produce(peer: str) -> None:
    with pytest.raises(exceptions.VersionNotAvailable):
        refusal.backlevel_version_from_error({"max_version": peer})


def test_manifest_from_error_collects_per_object_limits() -> None:
    body = {
        "error": {
            "message": "Version 1.1 of HostVIFInfo is not supported, supported version is 1.0",
            "details": {"obj_name": "HostPortProfileInfo", "max_version": "1.0"},
        }
    }
    manifest = refusal.manifest_from_error(body)
    assert manifest == {"HostVIFInfo": "1.0", "HostPortProfileInfo": "1.0"}
    primitive = hostinfo.backlevel(host_infos.sample(), manifest=manifest)
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}


def test_manifest_from_error_skips_limits_that_are_not_versions() -> None:
    body = {
        "error": {
            "message": "Version 1.1 of HostVIFInfo is not supported, supported version is 01.0",
            "details": {"obj_name": "HostPortProfileInfo", "max_version": 1.0},
        }
    }
    assert refusal.manifest_from_error(body) == {}


def test_vifplugs_own_406_envelope_reads_back() -> None:
    """The envelope the API makes of VersionNotAvailable is understood by the
    client side of the negotiation."""
    with pytest.raises(exceptions.VersionNotAvailable) as caught:
        hostinfo.backlevel(host_infos.sample(), version="1.1")
    error = caught.value
    envelope = {"error": {"code": error.code, "message": error.message, "details": error.details()}}
    assert refusal.max_version_from_error(json.dumps(envelope)) == "1.0"
