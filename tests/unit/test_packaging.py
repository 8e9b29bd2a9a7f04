"""The sdist and the wheel, built as a distribution packager builds them.

Offline and without build isolation (``python -m build --no-isolation``, then
``pip wheel --no-build-isolation --no-index`` from the unpacked sdist), with
the setuptools and wheel already installed: a build that reached for an index
fails here instead of retrying the network.  The tree is copied first, so the
build leaves nothing (build/, *.egg-info) in the checkout.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import vifplug

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".sandbox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["no_proxy"] = env["NO_PROXY"] = "*"
    env["http_proxy"] = env["https_proxy"] = "http://127.0.0.1:9"  # any index use fails fast
    return env


def _run(*argv: str, cwd: Path) -> None:
    done = subprocess.run(
        argv, cwd=cwd, env=_offline_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel); the wheel is built from the unpacked sdist."""
    top = tmp_path_factory.mktemp("pkg")
    tree = top / "tree"
    shutil.copytree(ROOT, tree, ignore=IGNORED)
    _run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(top), ".", cwd=tree)
    (sdist,) = top.glob("vifplug-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(top / "unpacked", filter="data")
    (unpacked,) = (top / "unpacked").iterdir()
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-build-isolation",
        "--check-build-dependencies",
        "--no-index",
        "--no-deps",
        "-w",
        str(top),
        ".",
        cwd=unpacked,
    )
    (wheel,) = top.glob("vifplug-*.whl")
    return sdist, wheel


def test_sdist_carries_etc_docs_examples_tests_and_the_license(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for required in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "MANIFEST.in",
        "etc/vifplug/vifplug.conf.sample",
        "etc/vifplug/vifplug.conf.example",
        "etc/vifplug/oslo-config-generator.conf",
        "etc/systemd/vifplugd.service",
        "docs/operations.md",
        "docs/openapi.json",
        "examples/vif-ovs.json",
        "tests/conftest.py",
        "tests/unit/test_packaging.py",
        "tests/functional/daemon_fixture.py",
        "devtools/ovs_sandbox.py",
        "man/vifplugd.8",
        "completion/vifplug",
        "src/vifplug/state/migrations",
        "scripts/run",
    ):
        assert required in names, f"the sdist lacks {required}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_metadata_license_and_data_files(built: tuple[Path, Path]) -> None:
    _, wheel = built
    assert wheel.name == f"vifplug-{vifplug.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        info = f"vifplug-{vifplug.__version__}.dist-info"
        meta = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        license_text = next(
            whl.read(n).decode() for n in names if n.startswith(info) and "LICENSE" in n
        )
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert meta["Version"] == vifplug.__version__
    classifiers = meta.get_all("Classifier") or []
    assert "License :: OSI Approved :: Apache Software License" in classifiers
    assert "Environment :: OpenStack" in classifiers
    data = f"vifplug-{vifplug.__version__}.data/data"
    for installed in (
        "share/man/man1/vifplug.1",
        "share/man/man8/vifplugd.8",
        "share/bash-completion/completions/vifplug",
        "share/zsh/vendor-completions/_vifplug",
        "share/doc/vifplug/operations.md",
    ):
        assert f"{data}/{installed}" in names, installed
    assert "vifplug/state/migrations/0001_initial.sql" in names or any(
        n.startswith("vifplug/state/migrations/") and n.endswith(".sql") for n in names
    )
