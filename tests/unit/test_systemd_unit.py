"""The shipped systemd unit: systemd itself accepts it, and it keeps its promises.

``systemd-analyze verify`` is the judge of syntax (it warns, without failing,
about unknown keys and bad values, so any message about our unit fails the
test).  It also insists that ExecStart's binary exists, which /usr/bin/vifplugd
does not on a development machine: the test verifies a copy whose ExecStart
names a stand-in executable, with the same arguments.

The property checks pin what the operator and the daemon rely on (notify
readiness, CAP_NET_ADMIN and no more, the socket and state directories, the
address families netlink and OVSDB need), so that a hardening change that
would break the daemon is a visible decision.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "etc" / "systemd" / "vifplugd.service"
SOCKET = UNIT.with_name("vifplugd.socket")
EXEC_START = "/usr/bin/vifplugd --config-file /etc/vifplug/vifplug.conf"


def _settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit (keys may repeat, so values are lists)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def settings() -> dict[str, list[str]]:
    return _settings(UNIT.read_text())


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd')")
    stand_in = tmp_path / "vifplugd"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text()
    assert EXEC_START in text
    unit = tmp_path / "vifplugd.service"
    cli = tmp_path / "vifplug"  # ExecReload's binary, likewise
    cli.write_text("#!/bin/sh\nexit 0\n")
    cli.chmod(0o755)
    text = text.replace("/usr/bin/vifplug ", f"{cli} ")
    unit.write_text(text.replace("/usr/bin/vifplugd", str(stand_in)))
    socket_unit = tmp_path / "vifplugd.socket"
    socket_unit.write_text(SOCKET.read_text())
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(socket_unit), str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    # Messages about other units (a broken unit elsewhere on the host) are not ours.
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "vifplugd" in line]
    assert done.returncode == 0 and ours == [], done.stdout + done.stderr


def test_unit_is_type_notify_and_starts_the_daemon_with_its_config(
    settings: dict[str, list[str]],
) -> None:
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [EXEC_START]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert settings["Restart"] == ["on-failure"]
    assert "TimeoutStopSec" in settings


def test_unit_grants_cap_net_admin_and_nothing_more(settings: dict[str, list[str]]) -> None:
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert settings["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert settings["NoNewPrivileges"] == ["yes"]


def test_unit_keeps_netlink_ovsdb_and_tun_reachable(settings: dict[str, list[str]]) -> None:
    families = settings["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"} <= set(families)
    assert settings["ProtectSystem"] == ["strict"]
    assert [p.lstrip("-") for p in settings["ReadWritePaths"]] == ["/run/openvswitch"]
    assert settings["DeviceAllow"] == ["/dev/net/tun rw"]
    # These would cut the daemon off from the host's network or from /dev/net/tun.
    for key in ("PrivateNetwork", "PrivateDevices", "PrivateUsers"):
        assert settings.get(key, ["no"]) == ["no"], key


def test_unit_provides_the_socket_and_state_directories(settings: dict[str, list[str]]) -> None:
    assert settings["RuntimeDirectory"] == ["vifplug"]
    assert settings["RuntimeDirectoryMode"] == ["0750"]
    # The socket unit's socket lives there: a restart must not remove it.
    assert settings["RuntimeDirectoryPreserve"] == ["yes"]
    assert settings["StateDirectory"] == ["vifplug"]


def test_socket_unit_passes_the_api_socket_by_name(settings: dict[str, list[str]]) -> None:
    sock = _settings(SOCKET.read_text())
    assert sock["ListenStream"] == ["/run/vifplug/vifplug.sock"]
    assert sock["FileDescriptorName"] == ["unix"]
    assert sock["SocketMode"] == ["0660"]
    assert sock["Service"] == ["vifplugd.service"]
    assert sock["WantedBy"] == ["sockets.target"]
    assert "vifplugd.socket" in " ".join(settings["Wants"]).split()
    assert "vifplugd.socket" in " ".join(settings["After"]).split()


def test_unit_has_a_watchdog_and_a_reload(settings: dict[str, list[str]]) -> None:
    assert settings["WatchdogSec"] == ["30s"]
    # Synchronous: the CLI returns when the daemon has applied the reload.
    assert settings["ExecReload"] == ["/usr/bin/vifplug --socket /run/vifplug/vifplug.sock reload"]
    assert settings["NotifyAccess"] == ["main"]


def test_unit_starts_after_open_vswitch(settings: dict[str, list[str]]) -> None:
    for key in ("After", "Wants"):
        units = " ".join(settings[key]).split()
        assert {"openvswitch-switch.service", "ovsdb-server.service"} <= set(units), key
