"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) in one directory.

A development tool, not part of the vifplug package: the test fixtures and
the benchmarks import it (pytest has this folder on its ``pythonpath``), and
``scripts/run`` starts one through the command line below when the machine
has no system Open vSwitch, so that a newcomer can plug a VIF a minute after
cloning.  Everything lives under ``directory`` (database, sockets, pid files,
logs); the daemons are stopped by the pids they wrote, never by name.

The sandbox uses whatever network namespace the calling process is in.  Two
ovs-vswitchd with the userspace datapath cannot share a namespace (each
creates a tap called ``ovs-netdev``), so callers running several sandboxes
must give each its own namespace.

Command line::

    python devtools/ovs_sandbox.py start DIR         # start (or reuse) it; prints the remote
    python devtools/ovs_sandbox.py stop DIR          # stop it by its pid files
    python devtools/ovs_sandbox.py run DIR -- CMD... # start it, run CMD, stop it when CMD exits

``run`` gives CMD the remote in ``OVS_SANDBOX_REMOTE``, passes SIGTERM,
SIGINT and SIGHUP on to it, and exits with its status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SCHEMA_CANDIDATES = (
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
)


class SandboxError(RuntimeError):
    """The sandbox could not be started; the message says which step failed."""


def _schema_path() -> str:
    for candidate in SCHEMA_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    raise SandboxError("vswitch.ovsschema not found: is openvswitch-switch installed?")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped: the detached
    daemons are not our children) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class OvsSandbox:
    """ovsdb-server and ovs-vswitchd running from ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *, netns: str | None = None) -> None:
        """``netns``: a named namespace (ip netns) to run the daemons in; default: ours."""
        self.dir = Path(directory).resolve()
        self.netns = netns
        self.db_path = self.dir / "conf.db"
        self.db_sock = self.dir / "db.sock"
        self.remote = f"unix:{self.db_sock}"

    # -- paths ---------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"):
            env[var] = str(self.dir)
        return env

    def _run(self, *argv: str, in_netns: bool = False) -> None:
        if in_netns and self.netns:
            argv = ("ip", "netns", "exec", self.netns, *argv)
        proc = subprocess.run(argv, env=self._env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SandboxError(
                f"{argv[0]} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )

    # -- lifecycle -----------------------------------------------------------
    @property
    def ovsdb_pid(self) -> int | None:
        return _read_pid(self._pidfile("ovsdb-server"))

    @property
    def vswitchd_pid(self) -> int | None:
        return _read_pid(self._pidfile("ovs-vswitchd"))

    def start(self) -> OvsSandbox:
        """Create the database if needed and start both daemons; idempotent."""
        for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} not found: install openvswitch-switch")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            self._run("ovsdb-tool", "create", str(self.db_path), _schema_path())
        self.start_ovsdb()
        self._run("ovs-vsctl", f"--db={self.remote}", "--no-wait", "init")
        self.start_vswitchd()
        return self

    def start_ovsdb(self) -> None:
        pid = self.ovsdb_pid
        if pid is not None and _alive(pid):
            return
        self._run(
            "ovsdb-server",
            str(self.db_path),
            f"--remote=punix:{self.db_sock}",
            f"--pidfile={self._pidfile('ovsdb-server')}",
            f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.dir / 'ovsdb-server.log'}",
            "--detach",
            "--no-chdir",
            in_netns=True,
        )
        self._wait_for_socket()

    def start_vswitchd(self) -> None:
        pid = self.vswitchd_pid
        if pid is not None and _alive(pid):
            return
        self._run(
            "ovs-vswitchd",
            self.remote,
            f"--pidfile={self._pidfile('ovs-vswitchd')}",
            f"--unixctl={self.dir / 'ovs-vswitchd.ctl'}",
            f"--log-file={self.dir / 'ovs-vswitchd.log'}",
            "--detach",
            "--no-chdir",
            in_netns=True,
        )

    def _wait_for_socket(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.db_sock.exists():
            if time.monotonic() > deadline:
                raise SandboxError(f"ovsdb-server did not create {self.db_sock}")
            time.sleep(0.01)

    def stop_ovsdb(self) -> None:
        pid = self.ovsdb_pid
        if pid is not None:
            _stop_pid(pid)

    def stop_vswitchd(self) -> None:
        pid = self.vswitchd_pid
        if pid is not None:
            _stop_pid(pid)

    def restart_ovsdb(self) -> None:
        self.stop_ovsdb()
        with contextlib.suppress(FileNotFoundError):
            self.db_sock.unlink()
        self.start_ovsdb()

    def restart_vswitchd(self) -> None:
        self.stop_vswitchd()
        self.start_vswitchd()

    def stop(self) -> None:
        """Stop both daemons by the pids they wrote."""
        self.stop_vswitchd()
        self.stop_ovsdb()

    def vsctl(self, *args: str) -> str:
        """Run ovs-vsctl against this sandbox (tests and diagnostics only)."""
        proc = subprocess.run(
            ("ovs-vsctl", f"--db={self.remote}", "--timeout=10", *args),
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SandboxError(f"ovs-vsctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def appctl(self, target: str, *args: str) -> str:
        """Run ovs-appctl against one of the sandbox daemons."""
        ctl = self.dir / f"{target}.ctl"
        proc = subprocess.run(
            ("ovs-appctl", "-t", str(ctl), *args),
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SandboxError(f"ovs-appctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


# -- command line -------------------------------------------------------------------
def _run_command(sb: OvsSandbox, argv: Sequence[str]) -> int:
    """Start the sandbox, run ``argv`` until it exits, then stop the sandbox.

    A signal that comes before the command runs stops the sandbox without
    running it; one that comes later is passed on to the command."""
    procs: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for proc in procs:
            proc.send_signal(signum)

    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in forwarded:
        signal.signal(sig, forward)
    try:
        sb.start()
        if received:
            return 128 + received[0]
        procs.append(
            subprocess.Popen(list(argv), env=dict(os.environ, OVS_SANDBOX_REMOTE=sb.remote))
        )
        return procs[0].wait()
    finally:
        for sig in forwarded:
            signal.signal(sig, signal.SIG_DFL)
        sb.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ovs_sandbox.py", description="A private Open vSwitch in one directory."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action, what in (
        ("start", "start ovsdb-server and ovs-vswitchd in DIR (reusing running ones)"),
        ("stop", "stop the daemons of DIR by their pid files"),
        ("run", "start them, run CMD, and stop them when CMD exits"),
    ):
        p = sub.add_parser(action, help=what)
        p.add_argument("directory", metavar="DIR")
        if action == "run":
            p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...")
    args = parser.parse_args(argv)
    sb = OvsSandbox(args.directory)
    try:
        if args.action == "start":
            sb.start()
            print(sb.remote)
            return 0
        if args.action == "stop":
            sb.stop()
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run: no command given (run DIR -- CMD...)")
        return _run_command(sb, command)
    except SandboxError as exc:
        print(f"ovs_sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
