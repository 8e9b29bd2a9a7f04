"""docs/openapi.json is the API's document; regenerate it when the API changes:

python -m vifplug.api > docs/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path

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
