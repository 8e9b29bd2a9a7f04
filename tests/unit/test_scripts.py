"""scripts/ensure-venv (used by scripts/run and scripts/test) installs only
what is not current: the second run of scripts/run starts at once.

The virtual environment here is a stand-in whose pip records its calls, so
the test sees exactly when pip would run, without installing anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure-venv"


def _fake_venv(top: Path) -> tuple[Path, Path]:
    venv = top / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    calls = top / "pip-calls"
    pip = venv / "bin" / "pip"
    pip.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n'
        f"touch {venv}/bin/vifplugd; chmod +x {venv}/bin/vifplugd\n"
    )
    pip.chmod(0o755)
    return venv, calls


def _ensure(venv: Path, *extras: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIFPLUG_VENV=str(venv))
    return subprocess.run(
        [str(SCRIPT), *extras], env=env, capture_output=True, text=True, timeout=60, check=True
    )


def test_pip_runs_once_and_again_only_when_something_changed(tmp_path: Path) -> None:
    venv, calls = _fake_venv(tmp_path)
    first = _ensure(venv)
    assert calls.read_text().splitlines() == ["install -q -e ."]
    assert "installing vifplug" in first.stderr
    second = _ensure(venv)
    assert (second.stderr, calls.read_text().count("\n")) == ("", 1)
    _ensure(venv, "test")  # other extras: install them
    assert calls.read_text().splitlines()[-1] == "install -q -e .[test]"
    _ensure(venv)  # the test extras include what scripts/run needs
    _ensure(venv, "test")
    assert calls.read_text().count("\n") == 2
    stamp = venv / ".vifplug-installed"
    stamp.write_text(stamp.read_text().replace(stamp.read_text()[:8], "00000000", 1))
    _ensure(venv, "test")  # pyproject.toml changed since
    assert calls.read_text().count("\n") == 3
    (venv / "bin" / "vifplugd").unlink()
    _ensure(venv, "test")  # the install was removed
    assert calls.read_text().count("\n") == 4
