"""``vifplug.systemd``: the socket handoff, the watchdog setting, journal detection
and the priority prefixes.

The handoff is tested in a child process started the way systemd starts a
service (sockets at descriptors 3 and up, ``LISTEN_*`` in the environment),
since descriptors 3 and up of the test process are its own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Activation
from vifplug import systemd

CHILD = """
import fcntl, json, os, socket
from vifplug import systemd
passed = systemd.listen_fds()
print(json.dumps({
    "passed": [
        {"name": p.name, "fd": p.sock.fileno(), "family": int(p.sock.family),
         "cloexec": bool(fcntl.fcntl(p.sock.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
         "address": p.sock.getsockname() if p.sock.family == socket.AF_UNIX
                    else p.sock.getsockname()[1]}
        for p in passed
    ],
    "env": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}))
"""


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[tuple[socket.socket, socket.socket, str]]:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(tmp_path / "api.sock")
    unix.bind(path)
    unix.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    try:
        yield unix, tcp, path
    finally:
        unix.close()
        tcp.close()


def _child(
    socks: list[socket.socket], names: list[str] | None, *, pid: str = "$$"
) -> dict[str, list[dict[str, object]] | list[str]]:
    activation = Activation(socks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    try:
        done = subprocess.run(
            [*activation.prefix(names, pid=pid), sys.executable, "-c", CHILD],
            pass_fds=activation.pass_fds,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        activation.close()
    result: dict[str, list[dict[str, object]] | list[str]] = json.loads(done.stdout)
    return result


def test_passed_sockets_by_name_from_descriptor_3_and_the_variables_unset(
    sockets: tuple[socket.socket, socket.socket, str],
) -> None:
    unix, tcp, path = sockets
    out = _child([unix, tcp], ["unix", "tcp"])
    assert out["passed"] == [
        {"name": "unix", "fd": 3, "family": socket.AF_UNIX, "cloexec": True, "address": path},
        {
            "name": "tcp",
            "fd": 4,
            "family": socket.AF_INET,
            "cloexec": True,
            "address": tcp.getsockname()[1],
        },
    ]
    # Unset, so that nothing the daemon starts takes the sockets for its own.
    assert out["env"] == []


def test_sockets_without_names_are_named_unknown(
    sockets: tuple[socket.socket, socket.socket, str],
) -> None:
    unix, _, _ = sockets
    out = _child([unix], None)
    passed = out["passed"]
    assert [(p["name"], p["fd"]) for p in passed] == [("unknown", 3)]  # type: ignore[index]


def test_sockets_for_another_pid_are_ignored_and_the_variables_still_unset(
    sockets: tuple[socket.socket, socket.socket, str],
) -> None:
    """LISTEN_PID names the process systemd started; a child that inherited
    the variables (or a process started by a wrapper that did not exec)
    must not take the descriptors."""
    unix, tcp, _ = sockets
    out = _child([unix, tcp], ["unix", "tcp"], pid="1")
    assert out == {"passed": [], "env": []}


def test_no_variables_no_sockets() -> None:
    assert systemd.listen_fds({}) == []
    env = {"LISTEN_FDS": "1"}  # no LISTEN_PID: not for us
    assert systemd.listen_fds(env) == []
    assert env == {}


def test_malformed_variables_are_an_error() -> None:
    with pytest.raises(ValueError, match="not numbers"):
        systemd.listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"})


def test_watchdog_interval_for_this_process_only() -> None:
    assert systemd.watchdog_seconds({}) is None
    assert systemd.watchdog_seconds({"WATCHDOG_USEC": "30000000"}) == 30.0
    me = str(os.getpid())
    assert systemd.watchdog_seconds({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": me}) == 2.5
    assert systemd.watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_seconds({"WATCHDOG_USEC": "0"}) is None


def test_stderr_is_the_journal_only_when_its_device_and_inode_match() -> None:
    st = os.fstat(2)
    assert systemd.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not systemd.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not systemd.stderr_is_journal({"JOURNAL_STREAM": "garbage"})
    assert not systemd.stderr_is_journal({})


def test_journal_lines_carry_their_priority_on_every_line() -> None:
    fmt = systemd.JournalFormatter()

    def line(level: int, msg: str, exc: bool = False) -> str:
        record = logging.LogRecord("vifplug.x", level, __file__, 1, msg, None, None)
        if exc:
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                record.exc_info = sys.exc_info()
        return fmt.format(record)

    assert line(logging.ERROR, "bad") == "<3>vifplug.x: bad"
    assert line(logging.WARNING, "hm") == "<4>vifplug.x: hm"
    assert line(logging.INFO, "ok") == "<6>vifplug.x: ok"
    assert line(logging.DEBUG, "dbg") == "<7>vifplug.x: dbg"
    assert line(logging.CRITICAL, "dead") == "<2>vifplug.x: dead"
    assert line(logging.INFO + 5, "between") == "<4>vifplug.x: between"
    traceback = line(logging.ERROR, "failed", exc=True).split("\n")
    assert len(traceback) > 2 and all(t.startswith("<3>") for t in traceback)
    assert traceback[-1] == "<3>RuntimeError: boom"


def test_the_watchdog_is_fed_only_while_the_threads_that_matter_run() -> None:
    """``Daemon._vital``: a stalled IDL loop or a dead state writer stops the
    pings, so that systemd restarts the daemon (WatchdogSec=)."""
    import time
    import types

    from vifplug import conf, daemon

    d = daemon.Daemon(conf.make_conf([]), conf.Settings())
    assert d._vital() is None  # starting: TimeoutStartSec bounds it
    ovsdb = types.SimpleNamespace(loop_beat=time.monotonic())
    store = types.SimpleNamespace(writer_alive=True)
    d.engine = types.SimpleNamespace(ovsdb=ovsdb, store=store)  # type: ignore[assignment]
    assert d._vital() is None
    ovsdb.loop_beat = time.monotonic() - daemon.IDL_STALL_SECONDS - 1
    assert "OVSDB IDL thread" in (d._vital() or "")
    ovsdb.loop_beat = time.monotonic()
    store.writer_alive = False
    assert d._vital() == "the state writer thread stopped"
