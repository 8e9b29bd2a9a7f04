"""A private OVN (NB + SB ovsdb-servers, ovn-northd, ovn-controller) for tests.

Everything OVN-side lives in one short temp directory under /tmp (unix socket
paths are limited to 107 bytes): the two databases, their sockets, every
daemon's pid file, unixctl socket and log.  ovn-controller is pointed at an
existing :class:`ovs_sandbox.OvsSandbox` (``devtools/ovs_sandbox.py``) and at
an integration bridge of the test's choosing (userspace datapath); it creates
that bridge if it is missing.  All daemons are stopped by the pids they wrote, never by name.

ovn-controller reaches ovs-vswitchd's OpenFlow management socket as
``$OVS_RUNDIR/<bridge>.mgmt``, so it runs with ``OVS_RUNDIR`` set to the OVS
sandbox's directory (where ovs-vswitchd put that socket) and ``OVN_RUNDIR``
set to the OVN directory.

The chassis name is the ``system-id`` in ``Open_vSwitch external_ids``.
vifplug's engine writes the system-id too, so the fixture adopts the one the
OVS sandbox already has (or writes a fresh one) *before* ovn-controller
starts; tests give the same value to the engine (``settings.host.system_id``)
so that both agree and nothing renames the chassis under ovn-controller.

For several hypervisors, ``OvnSandbox(None, ...)`` runs the central part only
(NB, SB, northd) and :class:`Controller` runs one ovn-controller per
hypervisor's OVS, each with its own directory, chassis name and tunnel
endpoint (``tests/interop/test_ovn_migration.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import ovs_sandbox

T = TypeVar("T")

NB_SCHEMA_CANDIDATES = ("/usr/share/ovn/ovn-nb.ovsschema", "/usr/local/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA_CANDIDATES = ("/usr/share/ovn/ovn-sb.ovsschema", "/usr/local/share/ovn/ovn-sb.ovsschema")
BINARIES = (
    "ovsdb-server",
    "ovsdb-tool",
    "ovn-northd",
    "ovn-controller",
    "ovn-nbctl",
    "ovn-sbctl",
    "ovn-appctl",
)

# The Open_vSwitch map columns ovn-controller and this fixture write into
# (external_ids: ovn-*, system-id; other_config: vlan-limit; datapaths: the
# Datapath row ovn-controller makes).  They are put back as they were found,
# so the shared session OVS is left as other tests expect it.
HOST_MAP_COLUMNS = ("external_ids", "other_config", "datapaths")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie).

    Detached daemons are re-parented to init, which here reaps its zombies
    only every second or two; ``kill(pid, 0)`` succeeds on a zombie, so
    ``/proc/<pid>/stat`` is what tells an exited daemon from a live one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat[stat.rindex(")") + 2 :][:1] in ("Z", "X"):
        ovs_sandbox._alive(pid)  # reaps it if it happens to be our child
        return False
    return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait until it is gone, SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


class OvnError(RuntimeError):
    """A step of the OVN sandbox failed; the message says which."""


def unique(prefix: str) -> str:
    """A name no other test uses; <= 15 bytes (fits a device or bridge name).

    The same as ``tests/conftest.py``'s, which a test directory with its own
    conftest.py cannot import by that module name."""
    return (prefix + uuid.uuid4().hex)[:15]


def _schema(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return None


def missing() -> str | None:
    """Why an OVN sandbox cannot run here, or None when it can."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"OVN binaries not installed: {', '.join(absent)} (apt install ovn-central ovn-host)"
    if _schema(NB_SCHEMA_CANDIDATES) is None or _schema(SB_SCHEMA_CANDIDATES) is None:
        return "OVN schemas (ovn-nb.ovsschema, ovn-sb.ovsschema) not found"
    return None


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


class OvnSandbox:
    """NB and SB databases, ovn-northd and ovn-controller, in one directory."""

    def __init__(
        self,
        ovs: ovs_sandbox.OvsSandbox | None,
        *,
        bridge: str,
        directory: str | os.PathLike[str] | None = None,
        system_id: str | None = None,
    ) -> None:
        """``ovs`` None: the central part only (NB, SB, northd), for tests that
        run their own :class:`Controller` per hypervisor."""
        self._ovs = ovs
        self.bridge = bridge
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="vpovn-", dir="/tmp")).resolve()
        self.nb_db = self.dir / "nb.db"
        self.sb_db = self.dir / "sb.db"
        self.nb_sock = self.dir / "nb.sock"
        self.sb_sock = self.dir / "sb.sock"
        self.nb_remote = f"unix:{self.nb_sock}"
        self.sb_remote = f"unix:{self.sb_sock}"
        self.system_id = system_id
        self._started: list[str] = []
        self._host_before: dict[str, dict[str, Any]] | None = None

    @property
    def ovs(self) -> ovs_sandbox.OvsSandbox:
        if self._ovs is None:
            raise OvnError("this OVN sandbox is central only: it has no ovn-controller")
        return self._ovs

    # -- helpers -------------------------------------------------------------------
    def pidfile(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def ctl(self, name: str) -> Path:
        return self.dir / f"{name}.ctl"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        return ovs_sandbox._read_pid(self.pidfile(name))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR", "OVN_SYSCONFDIR"):
            env[var] = str(self.dir)
        # ovs-vswitchd's <bridge>.mgmt socket is in the OVS sandbox's directory.
        env["OVS_RUNDIR"] = str(self._ovs.dir if self._ovs is not None else self.dir)
        env["OVS_LOGDIR"] = str(self.dir)
        return env

    def _run(self, *argv: str, timeout: float = 60.0) -> str:
        try:
            proc = subprocess.run(
                argv, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise OvnError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise OvnError(
                f"{' '.join(argv)} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc.stdout

    def _daemon(self, name: str, *argv: str, unixctl: bool = True) -> None:
        """Start a daemon that detaches (its pid file exists when this returns)."""
        ctl = [f"--unixctl={self.ctl(name)}"] if unixctl else []
        self._run(
            *argv,
            f"--pidfile={self.pidfile(name)}",
            *ctl,
            f"--log-file={self.log(name)}",
            "--detach",
            "--no-chdir",
        )
        self._started.append(name)
        pid = self.pid(name)
        if pid is None or not running(pid):
            raise OvnError(f"{name} did not stay up; see {self.log(name)}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- clients -------------------------------------------------------------------
    def nbctl(self, *args: str) -> str:
        return self._run("ovn-nbctl", f"--db={self.nb_remote}", "--timeout=30", *args)

    def sbctl(self, *args: str) -> str:
        return self._run("ovn-sbctl", f"--db={self.sb_remote}", "--timeout=30", *args)

    def appctl(self, name: str, *args: str, timeout: float = 30.0) -> str:
        # ovn-controller makes its control socket as $OVN_RUNDIR/<name>.<pid>.ctl
        # (see _start); ovn-appctl finds it from <name>.pid in $OVN_RUNDIR.
        target = name if name == "ovn-controller" else str(self.ctl(name))
        return self._run("ovn-appctl", "-t", target, *args, timeout=timeout)

    def sb_find(
        self, table: str, *conditions: str, columns: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows of an SB table as dicts of OVSDB-JSON values (ovn-sbctl find)."""
        args = ["--format=json", "find", table, *conditions]
        if columns:
            args.insert(1, f"--columns={columns}")
        data = json.loads(self.sbctl(*args))
        return [dict(zip(data["headings"], row, strict=True)) for row in data["data"]]

    # -- the questions tests ask ------------------------------------------------
    def chassis_uuid(self) -> str | None:
        """Our chassis's row id in the SB (None until ovn-controller registered)."""
        rows = self.sb_find("Chassis", f"name={self.system_id}", columns="_uuid")
        return rows[0]["_uuid"][1] if rows else None

    def binding_chassis(self, logical_port: str) -> str | None:
        """The chassis name a Port_Binding is bound to; None when unbound."""
        rows = self.sb_find("Port_Binding", f"logical_port={logical_port}", columns="chassis")
        if not rows:
            return None
        value = rows[0]["chassis"]
        # An empty optional reference is ["set", []]; a set one is ["uuid", id].
        if value[0] != "uuid":
            return None
        name = self.sbctl("--bare", "--columns=name", "list", "Chassis", value[1]).strip()
        return name or None

    def lsp_up(self, logical_port: str) -> bool:
        return self.nbctl("lsp-get-up", logical_port).strip() == "up"

    def classified_in_ports(self) -> set[int]:
        """The OpenFlow ports ovn-controller classifies into a logical port:
        those with an ``in_port=`` match in table 0 of the integration bridge,
        i.e. the interfaces whose traffic actually enters OVN."""
        proc = subprocess.run(
            ("ovs-ofctl", "-O", "OpenFlow15", "dump-flows", self.bridge, "table=0"),
            env=self.ovs._env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise OvnError(f"ovs-ofctl dump-flows {self.bridge}: {proc.stderr.strip()}")
        return {int(m) for m in re.findall(r"\bin_port=(\d+)", proc.stdout)}

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> OvnSandbox:
        why = missing()
        if why:
            raise OvnError(why)
        self.dir.mkdir(parents=True, exist_ok=True)
        nb_schema = _schema(NB_SCHEMA_CANDIDATES)
        sb_schema = _schema(SB_SCHEMA_CANDIDATES)
        assert nb_schema and sb_schema
        try:
            self._start(nb_schema, sb_schema, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, nb_schema: str, sb_schema: str, timeout: float) -> None:
        for db, schema, sock, name in (
            (self.nb_db, nb_schema, self.nb_sock, "ovsdb-nb"),
            (self.sb_db, sb_schema, self.sb_sock, "ovsdb-sb"),
        ):
            if not db.exists():
                self._run("ovsdb-tool", "create", str(db), schema)
            self._daemon(name, "ovsdb-server", str(db), f"--remote=punix:{sock}")
            wait_for(f"{sock}", sock.exists, timeout)
        self.nbctl("--no-wait", "init")
        self.sbctl("init")
        self._daemon(
            "ovn-northd",
            "ovn-northd",
            f"--ovnnb-db={self.nb_remote}",
            f"--ovnsb-db={self.sb_remote}",
        )
        if self._ovs is None:
            return
        self._configure_host()
        # ovn-controller 23.03 lists --unixctl in --help but its option parser
        # refuses it; its control socket goes to $OVN_RUNDIR, i.e. self.dir.
        self._daemon("ovn-controller", "ovn-controller", self.ovs.remote, unixctl=False)
        # Ready: our chassis is in the SB and the integration bridge exists with
        # the userspace datapath (ovn-controller created it if it was missing).
        wait_for("ovn-controller to register its chassis", self.chassis_uuid, timeout)
        wait_for(
            f"integration bridge {self.bridge}",
            lambda: self.bridge in self.ovs.vsctl("list-br").split(),
            timeout,
        )
        dp = self.ovs.vsctl("get", "Bridge", self.bridge, "datapath_type").strip().strip('"')
        if dp != "netdev":
            raise OvnError(f"integration bridge {self.bridge} has datapath_type {dp!r}, not netdev")
        # And the northd -> SB -> controller loop turns: --wait=hv returns once
        # every chassis has caught up with the NB.
        self.nbctl("--wait=hv", "sync")

    def _configure_host(self) -> None:
        """Open_vSwitch external_ids ovn-controller needs, after fixing system-id."""
        current = (
            self.ovs.vsctl("--if-exists", "get", "Open_vSwitch", ".", "external_ids:system-id")
            .strip()
            .strip('"')
        )
        if self.system_id is None:
            self.system_id = current or str(uuid.uuid4())
        if self._host_before is None:
            self._host_before = self._host_maps()
        settings = {
            "system-id": self.system_id,
            "ovn-remote": self.sb_remote,
            "ovn-encap-type": "geneve",
            "ovn-encap-ip": "127.0.0.1",
            "ovn-bridge": self.bridge,
            "ovn-bridge-datapath-type": "netdev",
            # Generous probes: a loaded CI machine must not drop connections.
            "ovn-remote-probe-interval": "60000",
        }
        self.ovs.vsctl(
            "set", "Open_vSwitch", ".", *(f'external_ids:{k}="{v}"' for k, v in settings.items())
        )

    def _host_maps(self) -> dict[str, dict[str, Any]]:
        out = self.ovs.vsctl(
            "--format=json", f"--columns={','.join(HOST_MAP_COLUMNS)}", "list", "Open_vSwitch", "."
        )
        row = json.loads(out)["data"][0]
        # OVSDB JSON: ["map", [[key, value], ...]]; values may be ["uuid", id].
        return {
            column: {k: json.dumps(v) for k, v in cell[1]}
            for column, cell in zip(HOST_MAP_COLUMNS, row, strict=True)
        }

    def _restore_host(self) -> None:
        """Undo what this fixture and ovn-controller changed in Open_vSwitch."""
        if self._host_before is None:
            return
        now = self._host_maps()
        for column in HOST_MAP_COLUMNS:
            before, after = self._host_before[column], now[column]
            added = [k for k in after if k not in before]
            if added:
                self.ovs.vsctl("remove", "Open_vSwitch", ".", column, *added)
            changed = {
                k: json.loads(v)
                for k, v in before.items()
                if after.get(k) != v and isinstance(json.loads(v), str)
            }
            if changed:
                self.ovs.vsctl(
                    "set",
                    "Open_vSwitch",
                    ".",
                    *(f"{column}:{k}={json.dumps(v)}" for k, v in changed.items()),
                )
        self._host_before = None

    def stop(self) -> None:
        """Stop every daemon by its pid (controller first), restore the OVS host
        keys, remove the integration bridge and the directory."""
        if "ovn-controller" in self._started:
            pid = self.pid("ovn-controller")
            if pid is not None and running(pid):
                # 'exit' makes ovn-controller remove its chassis and its flows;
                # the pid-based stop below catches a controller that hangs.
                with contextlib.suppress(OvnError):
                    self.appctl("ovn-controller", "exit", timeout=10.0)
        for name in ("ovn-controller", "ovn-northd", "ovsdb-sb", "ovsdb-nb"):
            pid = self.pid(name)
            if pid is not None:
                stop_pid(pid)
        self._started.clear()
        if self._ovs is not None:
            with contextlib.suppress(ovs_sandbox.SandboxError):
                self._ovs.vsctl("--if-exists", "del-br", self.bridge)
            with contextlib.suppress(ovs_sandbox.SandboxError):
                self._restore_host()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def diagnostics(self) -> str:
        """The tails of every log, for failure messages."""
        parts = [
            f"--- {name}.log ---\n{self.tail(name)}"
            for name in ("ovn-controller", "ovn-northd", "ovsdb-sb", "ovsdb-nb")
        ]
        return "\n".join(parts)


class Controller:
    """One hypervisor's ovn-controller, against a central :class:`OvnSandbox`.

    Its OVS runs in the hypervisor's own network namespace (two userspace
    ovs-vswitchd cannot share one), and so does this ovn-controller.  It has
    its own directory (pid file, control socket, log), its own chassis name
    (``system_id``) and its own geneve tunnel endpoint (``encap_ip``, an
    address the test put on a bridge of that OVS).  That OVS is the test's
    own: nothing written into it is restored; :meth:`stop` only stops the
    daemon by its pid and removes the directory.
    """

    def __init__(
        self,
        central: OvnSandbox,
        ovs: ovs_sandbox.OvsSandbox,
        *,
        bridge: str,
        system_id: str,
        encap_ip: str,
    ) -> None:
        self.central = central
        self.ovs = ovs
        self.bridge = bridge
        self.system_id = system_id
        self.encap_ip = encap_ip
        self.dir = Path(tempfile.mkdtemp(prefix="vpovn-", dir="/tmp")).resolve()
        self.pidfile = self.dir / "ovn-controller.pid"
        self.logfile = self.dir / "ovn-controller.log"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR", "OVN_SYSCONFDIR"):
            env[var] = str(self.dir)
        env["OVS_RUNDIR"] = str(self.ovs.dir)
        env["OVS_LOGDIR"] = str(self.dir)
        return env

    def _run(self, *argv: str, timeout: float = 60.0) -> str:
        try:
            proc = subprocess.run(
                argv, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise OvnError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise OvnError(
                f"{' '.join(argv)} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc.stdout

    @property
    def pid(self) -> int | None:
        return ovs_sandbox._read_pid(self.pidfile)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def appctl(self, *args: str, timeout: float = 30.0) -> str:
        return self._run("ovn-appctl", "-t", "ovn-controller", *args, timeout=timeout)

    def start(self, timeout: float = 60.0) -> Controller:
        settings = {
            "system-id": self.system_id,
            "ovn-remote": self.central.sb_remote,
            "ovn-encap-type": "geneve",
            "ovn-encap-ip": self.encap_ip,
            "ovn-bridge": self.bridge,
            "ovn-bridge-datapath-type": "netdev",
            "ovn-remote-probe-interval": "60000",
        }
        self.ovs.vsctl(
            "set", "Open_vSwitch", ".", *(f'external_ids:{k}="{v}"' for k, v in settings.items())
        )
        netns = ("ip", "netns", "exec", self.ovs.netns) if self.ovs.netns else ()
        self._run(
            *netns,
            "ovn-controller",
            self.ovs.remote,
            f"--pidfile={self.pidfile}",
            f"--log-file={self.logfile}",
            "--detach",
            "--no-chdir",
        )
        pid = self.pid
        if pid is None or not running(pid):
            raise OvnError(f"ovn-controller did not stay up:\n{self.tail()}")
        wait_for(
            f"chassis {self.system_id} in the SB",
            lambda: self.central.sb_find("Chassis", f"name={self.system_id}", columns="_uuid"),
            timeout,
        )
        wait_for(
            f"integration bridge {self.bridge}",
            lambda: self.bridge in self.ovs.vsctl("list-br").split(),
            timeout,
        )
        return self

    def stop(self) -> None:
        """'exit' (ovn-controller removes its chassis), then by pid."""
        pid = self.pid
        if pid is not None and running(pid):
            with contextlib.suppress(OvnError):
                self.appctl("exit", timeout=10.0)
            stop_pid(pid)
        shutil.rmtree(self.dir, ignore_errors=True)

    def classified_in_ports(self) -> set[int]:
        """OpenFlow ports ovn-controller classifies into a logical port here."""
        out = self._run("ovs-ofctl", "-O", "OpenFlow15", "dump-flows", self.bridge, "table=0")
        return {int(m) for m in re.findall(r"\bin_port=(\d+)", out)}


@contextlib.contextmanager
def running_ovn(
    ovs: ovs_sandbox.OvsSandbox, *, bridge: str, system_id: str | None = None
) -> Iterator[OvnSandbox]:
    """Start a private OVN against ``ovs`` with integration bridge ``bridge``."""
    ovn = OvnSandbox(ovs, bridge=bridge, system_id=system_id).start()
    try:
        yield ovn
    finally:
        ovn.stop()
