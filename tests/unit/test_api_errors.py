"""The error table: every failure has its status, and caller mistakes are 4xx."""

from __future__ import annotations

import inspect

import pytest

from vifplug import exceptions
from vifplug.api import errors

ALL: list[type[exceptions.VifplugError]] = [
    cls
    for _, cls in inspect.getmembers(exceptions, inspect.isclass)
    if issubclass(cls, exceptions.VifplugError)
]

CALLER_MISTAKES: tuple[type[exceptions.VifplugError], ...] = (
    exceptions.InvalidRequest,
    exceptions.InvalidObject,
    exceptions.UnsupportedVersion,
    exceptions.NoMatchingPlugin,
    exceptions.UnsupportedVIFType,
    exceptions.UnsupportedPortProfile,
    exceptions.BridgeNotAllowed,
    exceptions.InvalidDeviceName,
    exceptions.VersionNotAvailable,
    exceptions.VIFNotFound,
    exceptions.VIFConflict,
    exceptions.Unauthorized,
    exceptions.NetworkNotFound,
)


@pytest.mark.parametrize("cls", ALL, ids=[c.__name__ for c in ALL])
def test_every_exception_class_has_a_row_in_the_table(cls: type[exceptions.VifplugError]) -> None:
    assert cls.code in errors.STATUS, f"{cls.__name__} ({cls.code}) has no HTTP status"


@pytest.mark.parametrize("cls", list(CALLER_MISTAKES), ids=[c.__name__ for c in CALLER_MISTAKES])
def test_caller_mistakes_are_4xx(cls: type[exceptions.VifplugError]) -> None:
    assert 400 <= errors.status_for(cls.code) < 500


def test_contract_statuses() -> None:
    assert errors.status_for("unsupported_version") == 400
    assert errors.status_for("version_not_available") == 406
    assert errors.status_for("vif_not_found") == 404
    assert errors.status_for("vif_conflict") == 409
    assert errors.status_for("plug_timeout") == 504
    assert errors.status_for("request_too_large") == 413
    assert errors.status_for("no such code") == 500


def test_envelope_shape() -> None:
    exc = exceptions.VersionNotAvailable(
        obj_name="HostInfo", version="2.0", min_version="1.0", max_version="1.0"
    )
    response = errors.from_exception(exc)
    assert response.status_code == 406
    import json

    body = json.loads(bytes(response.body))
    assert body == {
        "error": {
            "code": "version_not_available",
            "message": exc.message,
            "details": {
                "obj_name": "HostInfo",
                "version": "2.0",
                "min_version": "1.0",
                "max_version": "1.0",
            },
        }
    }
