"""The committed manual pages and completion scripts are what the parsers make.

They are generated (devtools/gen_manpages.py) and committed so that building
the package needs neither argparse-manpage nor shtab; this test regenerates
them and fails when an option changed without regenerating.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

import pytest

import gen_manpages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rel", sorted(gen_manpages.outputs()))
def test_committed_file_is_what_the_generator_makes(rel: str) -> None:
    fresh = gen_manpages.outputs()[rel]
    committed = (ROOT / rel).read_text()
    if fresh != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True), fresh.splitlines(keepends=True), rel, "now"
            )
        )
        pytest.fail(f"{rel} is stale; run: python devtools/gen_manpages.py\n\n{diff}")


def test_man_pages_render_and_name_every_command_and_option() -> None:
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    pages = {}
    for page in ("man/vifplug.1", "man/vifplugd.8"):
        done = subprocess.run(
            ["man", "--warnings", "-l", str(ROOT / page)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr, done.stderr
        pages[page] = done.stdout
    client = pages["man/vifplug.1"]
    for text in ("unplug", "--if-exists", "--instance", "--format", "--socket", "completion"):
        assert text in client, text
    daemon = pages["man/vifplugd.8"]
    for text in ("--config-file", "--config-dir", "--version", "/etc/vifplug/vifplug.conf.d"):
        assert text in daemon, text


def test_the_systemd_units_documentation_is_installed() -> None:
    unit = (ROOT / "etc" / "systemd" / "vifplugd.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("Documentation="))
    pyproject = (ROOT / "pyproject.toml").read_text()
    for ref in line.removeprefix("Documentation=").split():
        if ref.startswith("man:vifplug"):
            name, section = ref.removeprefix("man:").rstrip(")").split("(")
            assert f'"man/{name}.{section}"' in pyproject, ref
        elif ref.startswith("file:/usr/share/doc/vifplug/"):
            rel = ref.removeprefix("file:/usr/share/doc/vifplug/")
            assert f"/{rel}" in pyproject or f'"{rel}"' in pyproject, ref
