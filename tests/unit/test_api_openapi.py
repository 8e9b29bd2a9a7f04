"""docs/openapi.json is the API's document; regenerate it when the API changes:

python -m vifplug.api > docs/openapi.json
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vifplug.api import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_docs_openapi_json_is_up_to_date() -> None:
    current = app.openapi_document()
    kept = json.loads(DOC.read_text())
    assert kept == json.loads(json.dumps(current)), (
        "docs/openapi.json is stale: run `python -m vifplug.api > docs/openapi.json`"
    )


def test_document_answers_400_not_422() -> None:
    doc = app.openapi_document()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(json.loads(DOC.read_text()))


#: The operationIds client generators name their methods after: part of the API.
OPERATION_IDS = {
    ("get", "/v1/host-info"): "getHostInfo",
    ("post", "/v1/vifs"): "plugVif",
    ("get", "/v1/vifs"): "listVifs",
    ("get", "/v1/vifs/{vif_id}"): "showVif",
    ("delete", "/v1/vifs/{vif_id}"): "unplugVif",
    ("put", "/v1/vifs/{vif_id}/status"): "setVifStatus",
    ("get", "/v1/networks"): "listNetworks",
    ("get", "/v1/leaks"): "listLeaks",
    ("post", "/v1/leaks/purge"): "purgeLeaks",
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("post", "/v1/reload"): "reloadConfiguration",
    ("get", "/metrics"): "getMetrics",
}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def test_every_operation_has_its_stable_operation_id() -> None:
    doc = app.openapi_document()
    found = {(m, p): op.get("operationId") for m, p, op in _operations(doc)}
    assert found == OPERATION_IDS


def test_bearer_scheme_is_declared_and_optional_per_listener() -> None:
    doc = app.openapi_document()
    scheme = doc["components"]["securitySchemes"][app.BEARER_SCHEME]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    # No credentials (the unix socket) or the token (TCP).
    assert doc["security"] == [{}, {app.BEARER_SCHEME: []}]
    for method, path, operation in _operations(doc):
        assert "401" in operation["responses"], (method, path)


def _is_envelope(answer: dict[str, Any]) -> bool:
    schema = answer["content"]["application/json"]["schema"]
    return bool(schema == {"$ref": "#/components/schemas/ErrorEnvelope"})


def test_server_failures_are_documented_with_the_envelope() -> None:
    doc = app.openapi_document()
    for method, path, operation in _operations(doc):
        answers = operation["responses"]
        if path.startswith("/v1/"):
            assert {"500", "503"} <= set(answers), (method, path)
        for status, answer in answers.items():
            if status.startswith(("4", "5")):
                assert _is_envelope(answer), (method, path, status)
    writes = [
        ("post", "/v1/vifs"),
        ("delete", "/v1/vifs/{vif_id}"),
        ("put", "/v1/vifs/{vif_id}/status"),
    ]
    for method, path in writes:
        assert {"502", "504"} <= set(doc["paths"][path][method]["responses"])


def test_times_are_rfc_3339_strings() -> None:
    schemas = app.openapi_document()["components"]["schemas"]
    for schema, field in (("Vif", "created_at"), ("Vif", "updated_at"), ("LeakGuard", "since")):
        prop = schemas[schema]["properties"][field]
        assert {"type": "string", "format": "date-time"} in prop["anyOf"], (schema, field)


def _plug_schema(field: str) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi_document()["components"]["schemas"]["PlugBody"]
    assert set(schema["required"]) == {"vif", "instance"}
    assert schema["additionalProperties"] is False
    prop: dict[str, Any] = schema["properties"][field]
    return prop


def test_the_plug_body_schema_refuses_what_admission_refuses() -> None:
    """A client that validates against the document sends nothing the server
    refuses for its shape: each primitive the admission check refuses for a
    missing key, another namespace, a bad version, a non-VIF name or data that
    is not an object fails the schema too; a real primitive passes."""
    import jsonschema

    from vifplug.objects import instance_info, vif

    good_vif = vif.VIFOpenVSwitch(id="3f1c5d6e-2a4b-4c8d-9e0f-1a2b3c4d5e6f").obj_to_primitive()
    good_instance = instance_info.InstanceInfo(
        uuid="6b0e7c2a-1d3f-4e5a-8b9c-0d1e2f3a4b5c", name="vm"
    ).obj_to_primitive()
    vif_schema, instance_schema = _plug_schema("vif"), _plug_schema("instance")
    jsonschema.validate(good_vif, vif_schema)
    jsonschema.validate(good_instance, instance_schema)
    bad = [
        {k: v for k, v in good_vif.items() if k != "versioned_object.data"},
        {k: v for k, v in good_vif.items() if k != "versioned_object.name"},
        {**good_vif, "versioned_object.namespace": "nova"},
        {**good_vif, "versioned_object.version": "1"},
        {**good_vif, "versioned_object.name": "InstanceInfo"},
        {**good_vif, "versioned_object.data": []},
        {**good_vif, "versioned_object.changes": [1]},
    ]
    for primitive in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(primitive, vif_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good_vif, instance_schema)
