"""Make the plugins this tree declares visible to a checkout installed earlier.

Plugins are found through the ``vifplug.plugins`` entry points of the
installed distribution's metadata, which ``pip install -e`` wrote from the
``pyproject.toml`` of its day.  A test run with this tree on ``PYTHONPATH``
against such an install would miss a plugin added since (``hostdev``).  So
when the installed metadata lacks one that ``pyproject.toml`` declares, a
small ``*.dist-info`` declaring only the missing ones is written to a
temporary directory that is put on ``sys.path`` and on ``PYTHONPATH`` (for
the daemons the tests start).  Once the install is refreshed, nothing is
missing and nothing is written.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

GROUP = "vifplug.plugins"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def declared() -> dict[str, str]:
    with open(PYPROJECT, "rb") as f:
        project = tomllib.load(f)["project"]
    return dict(project.get("entry-points", {}).get(GROUP, {}))


def ensure_declared_plugins() -> Path | None:
    """Write and activate the missing entry points; the directory, or None."""
    installed = {ep.name for ep in metadata.entry_points(group=GROUP)}
    missing = {n: v for n, v in declared().items() if n not in installed}
    if not missing:
        return None
    root = Path(tempfile.mkdtemp(prefix="vp-entry-points-"))
    info = root / "vifplug_tree_plugins-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vifplug-tree-plugins\nVersion: 0\n"
    )
    lines = [f"[{GROUP}]", *(f"{n} = {v}" for n, v in sorted(missing.items()))]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    sys.path.append(str(root))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, str(root)])
    return root
