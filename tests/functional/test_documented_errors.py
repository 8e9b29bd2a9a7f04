"""Documented refusals that had no test, against the real daemon.

docs/state.md and the contract promise that a daemon refuses to start on a
state it cannot safely own: one another vifplugd holds, or one a newer
vifplugd wrote.  Each refusal leaves the state as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon_fixture import DaemonFactory, base_config, start_daemon

import ovs_sandbox


def test_a_second_daemon_on_the_same_state_is_refused_at_start(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, workdir: Path
) -> None:
    first = daemon_factory()
    # Same state directory, its own socket and marks otherwise.
    config = base_config(workdir / "second", ovs.remote)
    config["DEFAULT"]["state_dir"] = first.config["DEFAULT"]["state_dir"]
    second = start_daemon(workdir / "second", config, wait=False)
    try:
        assert second.wait(60) != 0
        assert "second vifplugd" in second.stderr(), second.stderr()
        # The first one is untouched and still serves.
        with first.client() as c:
            assert c.get("/readyz").status_code == 200
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            second.proc.wait()


def test_state_written_by_a_newer_vifplugd_is_refused_at_start(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, workdir: Path
) -> None:
    first = daemon_factory()
    state_dir = Path(first.config["DEFAULT"]["state_dir"])
    assert first.stop() == 0
    (db,) = state_dir.glob("*.sqlite")
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
    finally:
        conn.close()
    before = db.read_bytes()
    config = base_config(workdir / "newer", ovs.remote)
    config["DEFAULT"]["state_dir"] = str(state_dir)
    d = start_daemon(workdir / "newer", config, wait=False)
    try:
        assert d.wait(60) != 0
        log = d.stderr()
        assert "cannot start" in log and "newer" in log and "upgrade vifplugd" in log, log
        assert db.read_bytes() == before, "the refusal changed the state"
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
