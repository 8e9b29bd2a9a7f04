"""Fixtures that run the real os-vif package in a subprocess.

oslo.versionedobjects keeps one registry per process, keyed by object name:
if os-vif were imported here, its classes would replace vifplug's (or the
reverse) and the comparison would prove nothing.  So os-vif only ever runs in
``osvif_helper.py``, started with this interpreter; these fixtures speak JSON
with it and cache what every test needs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
HELPER = HERE / "osvif_helper.py"

sys.path.insert(0, str(HERE))

OsVif = Callable[..., dict[str, Any]]


def _run(request: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(HELPER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"os-vif helper failed ({proc.returncode}) for {request.get('op')}:\n{proc.stderr}"
        )
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


@pytest.fixture(scope="session")
def osvif() -> OsVif:
    """``osvif(op=..., **request)``: one request to a fresh os-vif process."""
    if importlib.util.find_spec("os_vif") is None:
        pytest.skip("the os-vif package is not installed in this interpreter")
    if "os_vif" in sys.modules:
        pytest.fail(
            "os_vif was imported into the test process; its objects would replace vifplug's"
        )

    def call(op: str, **request: Any) -> dict[str, Any]:
        return _run({"op": op, **request})

    return call


@pytest.fixture(scope="session")
def osvif_inventory(osvif: OsVif) -> dict[str, Any]:
    return osvif("inventory")


@pytest.fixture(scope="session")
def osvif_made(osvif: OsVif) -> list[dict[str, Any]]:
    """os-vif's primitives of every sample at every version."""
    items: list[dict[str, Any]] = osvif("make")["items"]
    return items
