"""vifplugd as a real subprocess, for tests that talk to it over HTTP.

Importable helpers (other tests reuse them):

* ``base_config(workdir, ovs_remote)``: a configuration dict for a daemon of
  its own (state dir, socket, bridge, owner and kernel link groups unique);
* ``start_daemon(workdir, config)``: write the file, start
  ``python -m vifplug.daemon --config-file ...`` with stderr to a file, and
  (by default) wait until ``/readyz`` answers 200;
* ``Daemon.stop()``: SIGTERM by pid, wait, return the exit status;
  ``Daemon.stderr()``: everything it logged;
* ``Daemon.client()``: an httpx client over its unix socket;
* ``cleanup_host(...)``: remove the bridges and kernel links a daemon made.

The pytest fixtures ``daemon_factory`` and ``vifplugd`` (one running daemon
on a fresh integration bridge of the session OVS) are at the bottom.

The daemon inherits the test process's private network namespace (see
``tests/nsisolate.py``), so ``ip -o link`` in the test sees its devices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

Config = dict[str, dict[str, Any]]

READY_TIMEOUT = 60.0
#: The names ``vifplug.netdev.delete.aside_name`` gives (read independently).
ASIDE = re.compile(r"vpdel[0-9a-f]+")
STOP_TIMEOUT = 60.0


def unique(prefix: str) -> str:
    """A device or bridge name no other test uses; at most 15 bytes."""
    return (prefix + uuid.uuid4().hex)[:15]


def base_config(workdir: Path, ovs_remote: str, *, bridge: str | None = None) -> Config:
    """A configuration for a daemon of its own against ``ovs_remote``."""
    group = random.randint(0x10000, 0x7FFF0000)
    return {
        "DEFAULT": {"state_dir": str(workdir / "state"), "owner": unique("vpt-"), "debug": False},
        "ovs": {
            "connection": ovs_remote,
            "datapath_type": "netdev",
            "integration_bridge": bridge or unique("vpbi"),
            "timeout": 10,
        },
        "netdev": {"link_group": group, "delete_group": group + 1},
        "api": {
            "socket_path": str(workdir / "api.sock"),
            "default_timeout": 20,
            "shutdown_timeout": 30,
        },
    }


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def write_config(path: Path, config: Mapping[str, Mapping[str, Any]]) -> None:
    lines = []
    for section, options in config.items():
        lines.append(f"[{section}]")
        lines.extend(
            f"{key} = {_value(value)}" for key, value in options.items() if value is not None
        )
        lines.append("")
    path.write_text("\n".join(lines))


def merge(config: Config, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
    out = {section: dict(options) for section, options in config.items()}
    for section, options in overrides.items():
        out.setdefault(section, {}).update(options)
    return out


@dataclasses.dataclass
class Daemon:
    """One vifplugd subprocess."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    config: Config
    config_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def socket_path(self) -> str:
        return str(self.config["api"]["socket_path"])

    @property
    def bridge(self) -> str:
        return str(self.config["ovs"]["integration_bridge"])

    @property
    def link_group(self) -> int:
        return int(self.config["netdev"]["link_group"])

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, *, timeout: float = 60.0) -> httpx.Client:
        """HTTP over the daemon's unix socket."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket_path),
            base_url="http://vifplug",
            timeout=timeout,
        )

    def tcp_address(self, timeout: float = 10.0) -> str:
        """``https://host:port`` of the TCP listener, from the daemon's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (https?://\S+)", self.stderr())
            if found:
                return found.group(1)
            time.sleep(0.05)
        raise AssertionError(f"no TCP listener in the log:\n{self.stderr()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until ``/readyz`` answers 200; fails with the daemon's log if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"vifplugd exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            if os.path.exists(self.socket_path):
                with contextlib.suppress(httpx.HTTPError), self.client(timeout=5) as c:
                    if c.get("/readyz").status_code == 200:
                        return
            time.sleep(0.05)
        raise AssertionError(f"vifplugd not ready after {timeout}s:\n{self.stderr()}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"vifplugd did not exit within {timeout}s:\n{self.stderr()}"
            ) from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM by pid; the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


def start_daemon(
    workdir: Path,
    config: Config,
    *,
    wait: bool = True,
    env: Mapping[str, str] | None = None,
    argv: list[str] | None = None,
    wrap: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> Daemon:
    """Start ``python -m vifplug.daemon --config-file`` on ``config``.

    ``wrap``: a command that execs the daemon, e.g. ``ip netns exec NS`` to
    run it in a hypervisor's namespace (it execs, so the pid is the daemon's);
    ``pass_fds``: descriptors the daemon inherits (socket activation, see
    ``helpers.Activation``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"vifplug-{uuid.uuid4().hex[:6]}.conf"
    write_config(config_path, config)
    stderr_path = workdir / f"vifplugd-{uuid.uuid4().hex[:6]}.log"
    # An empty --config-dir, so that the host's /etc/vifplug/vifplug.conf.d is not read.
    no_dropins = workdir / "vifplug.conf.d"
    no_dropins.mkdir(exist_ok=True)
    full_env = dict(os.environ)
    full_env.pop("NOTIFY_SOCKET", None)
    full_env.update(env or {})
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [*wrap]
            + (
                argv
                or [
                    *(sys.executable, "-m", "vifplug.daemon"),
                    *("--config-file", str(config_path), "--config-dir", str(no_dropins)),
                ]
            ),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=full_env,
            pass_fds=tuple(pass_fds),
        )
    daemon = Daemon(
        proc=proc, workdir=workdir, config=config, config_path=config_path, stderr_path=stderr_path
    )
    if wait:
        try:
            daemon.wait_ready()
        except BaseException:
            with contextlib.suppress(Exception):
                daemon.proc.kill()
                daemon.proc.wait(10)
            raise
    return daemon


# --- looking at the host -------------------------------------------------------------


def links() -> set[str]:
    """Names of every link in this namespace (``ip -o link``), but for taps
    already unplugged and waiting, renamed aside, for the reaper's next
    group delete (``[netdev] delete_aside``): they come and go between two
    readings whatever the request in between."""
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if not ASIDE.fullmatch(name):
            names.add(name)
    return names


def link_details(name: str) -> str:
    return subprocess.run(
        ["ip", "-d", "-o", "link", "show", "dev", name], capture_output=True, text=True, check=False
    ).stdout


def links_in_group(group: int) -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "group", str(group)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines()]


def cleanup_host(ovs: Any, daemon: Daemon, bridges: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Remove the daemon's bridges and the devices in its link groups."""
    for br in {daemon.bridge, *bridges}:
        with contextlib.suppress(Exception):
            ovs.vsctl("--if-exists", "del-br", br)
    for group in (daemon.link_group, daemon.link_group + 1):
        for name in links_in_group(group):
            subprocess.run(["ip", "link", "del", "dev", name], check=False, capture_output=True)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="vpd-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_factory(ovs: Any, workdir: Path) -> Iterator[DaemonFactory]:
    """``daemon_factory(overrides=None, wait=True, env=None)`` starts a daemon;
    each is stopped (SIGTERM) and its bridges and devices removed afterwards."""
    started: list[Daemon] = []
    n = 0

    def factory(
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        wait: bool = True,
        env: Mapping[str, str] | None = None,
        config: Config | None = None,
    ) -> Daemon:
        nonlocal n
        n += 1
        sub = workdir / f"d{n}"
        sub.mkdir()
        cfg = config or merge(base_config(sub, ovs.remote), overrides or {})
        d = start_daemon(sub, cfg, wait=wait, env=env)
        started.append(d)
        return d

    try:
        yield factory
    finally:
        for d in started:
            if d.proc.poll() is None:
                d.stop()
            cleanup_host(ovs, d)


@pytest.fixture
def vifplugd(daemon_factory: DaemonFactory) -> Daemon:
    """A running daemon on a fresh integration bridge of the session OVS."""
    return daemon_factory()
