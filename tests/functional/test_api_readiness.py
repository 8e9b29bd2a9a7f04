"""``/readyz`` tells the truth about the state database.

The state directory is a small tmpfs of the test's own mount namespace
(``tests/nsisolate.py``): filling it makes every state write fail with
ENOSPC, as a full disk would, and emptying it again lets them succeed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import primitives as prim
from daemon_fixture import DaemonFactory

DEADLINE = 30.0


@contextlib.contextmanager
def _small_tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        # Lazily: the daemon may still hold its database open.
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = directory / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def test_readyz_is_503_while_state_writes_fail(
    daemon_factory: DaemonFactory, workdir: Path
) -> None:
    with _small_tmpfs(workdir / "state") as state:
        d = daemon_factory({"DEFAULT": {"state_dir": str(state)}})
        with d.client() as c:
            assert c.get("/readyz").status_code == 200
            filler = _fill(state)
            r = c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=d.bridge)))
            assert r.status_code == 500, r.text
            assert r.json()["error"]["code"] == "state_write_failed", r.text
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["details"]["state"]["write_error"], error
            assert "state database cannot be written" in error["message"], error
            # Space again: the next write succeeds and the daemon is ready again.
            filler.unlink()
            r = c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=d.bridge)))
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + DEADLINE
            while (r := c.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.1)
            assert r.json()["details"]["state"]["write_error"] is None
        assert d.stop() == 0, d.stderr()
