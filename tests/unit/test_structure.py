"""The shape of the source tree, kept by tests so that it stays readable.

Functions fit on a screen, and the plug path names its collaborators' types
instead of ``Any`` (JSON stays ``records.JsonObject``, a named alias), so that
``mypy --strict`` checks what flows between the layers.  The import rules
themselves are import-linter contracts (``pyproject.toml``), run by
``scripts/test``.
"""

from __future__ import annotations

import ast
import pathlib
import re

import vifplug

SRC = pathlib.Path(vifplug.__file__).parent
MAX_FUNCTION_LINES = 80
MAX_ANY_LINES = 10
ANY = re.compile(r"\bAny\b")
#: The modules between the HTTP request and the plugins.
PLUG_PATH = (
    "plugging/service.py",
    "plugging/lifecycle.py",
    "plugging/reconcile.py",
    "plugging/admission.py",
    "plugging/placement.py",
    "plugging/engine.py",
    "plugins",
    "api",
)


def _functions(path: pathlib.Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(SRC)}:{name} ({lines} lines)"
        for path in sorted(SRC.rglob("*.py"))
        for name, lines in _functions(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_plug_path_names_its_types() -> None:
    files: list[pathlib.Path] = []
    for entry in PLUG_PATH:
        target = SRC / entry
        assert target.exists(), f"{entry} moved; update PLUG_PATH"
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    mentions = [
        f"{path.relative_to(SRC)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ANY.search(line)
    ]
    assert len(mentions) <= MAX_ANY_LINES, mentions
