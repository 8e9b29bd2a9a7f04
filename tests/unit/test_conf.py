"""Configuration values that are resolved when the settings are built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vifplug
from vifplug import conf


def test_tap_owner_and_group_accept_names_and_numbers() -> None:
    assert conf.resolve_user("root") == 0
    assert conf.resolve_user("1234") == 1234
    assert conf.resolve_user(None) is None
    assert conf.resolve_group("root") == 0
    assert conf.resolve_group("77") == 77


def test_unknown_tap_owner_is_a_clear_configuration_error() -> None:
    with pytest.raises(ValueError, match="no user 'no-such-user-vifplug'"):
        conf.resolve_user("no-such-user-vifplug")
    with pytest.raises(ValueError, match="no group"):
        conf.resolve_group("no-such-group-vifplug")


def test_settings_from_conf_resolves_tap_owner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "v.conf"
    f.write_text("[netdev]\ntap_owner = root\ntap_group = 5\n")
    made = conf.make_conf(["--config-file", str(f)], config_dirs=())
    settings = conf.Settings.from_conf(made)
    assert settings.netdev.tap_owner == 0
    assert settings.netdev.tap_group == 5


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /etc/vifplug: the defaults point into tmp_path."""
    monkeypatch.setattr(conf, "DEFAULT_CONFIG_FILES", (str(tmp_path / "vifplug.conf"),))
    monkeypatch.setattr(conf, "DEFAULT_CONFIG_DIRS", (str(tmp_path / "vifplug.conf.d"),))
    return tmp_path


def test_the_default_file_and_its_drop_ins_are_read_and_drop_ins_win(etc: Path) -> None:
    (etc / "vifplug.conf").write_text("[DEFAULT]\nowner = from-file\n[ovs]\nmax_batch = 7\n")
    (etc / "vifplug.conf.d").mkdir()
    (etc / "vifplug.conf.d" / "10-a.conf").write_text("[DEFAULT]\nowner = from-a\n")
    (etc / "vifplug.conf.d" / "20-b.conf").write_text("[DEFAULT]\nowner = from-b\n")
    (etc / "vifplug.conf.d" / "30-c.conf.disabled").write_text("[DEFAULT]\nowner = no\n")
    made = conf.make_conf()
    assert made.owner == "from-b"
    assert made.ovs.max_batch == 7
    assert made.config_file == [str(etc / "vifplug.conf")]


def test_missing_defaults_mean_the_built_in_defaults(etc: Path) -> None:
    made = conf.make_conf()
    assert made.config_file == []
    assert made.config_dir == []
    assert conf.Settings.from_conf(made) == conf.Settings()


def test_a_config_file_on_the_command_line_replaces_the_default_file_only(
    etc: Path, tmp_path: Path
) -> None:
    (etc / "vifplug.conf").write_text("[DEFAULT]\nowner = default-file\n")
    (etc / "vifplug.conf.d").mkdir()
    (etc / "vifplug.conf.d" / "a.conf").write_text("[ovs]\nmax_batch = 9\n")
    mine = tmp_path / "mine.conf"
    mine.write_text("[DEFAULT]\nstate_dir = /srv/vifplug\n")
    made = conf.make_conf(["--config-file", str(mine)])
    assert (made.owner, made.state_dir, made.ovs.max_batch) == ("vifplugd", "/srv/vifplug", 9)
    empty = tmp_path / "empty.d"
    empty.mkdir()
    made = conf.make_conf(["--config-file", str(mine), "--config-dir", str(empty)])
    assert made.ovs.max_batch == 2000


def test_explicit_empty_lists_read_nothing_of_the_host(etc: Path) -> None:
    (etc / "vifplug.conf").write_text("[DEFAULT]\nowner = default-file\n")
    assert conf.make_conf(config_files=(), config_dirs=()).owner == "vifplugd"


def test_every_choice_has_a_description() -> None:
    for group, opts in conf.list_opts():
        for opt in opts:
            choices = getattr(opt.type, "choices", None)
            if not choices:
                continue
            described = {value: text for value, text in choices.items()}
            missing = [value for value, text in described.items() if not text]
            assert not missing, f"[{group}] {opt.dest}: choices without a description: {missing}"


def test_every_option_has_help() -> None:
    for group, opts in conf.list_opts():
        for opt in opts:
            assert opt.help and opt.help.endswith("."), f"[{group}] {opt.dest} needs help text"


def test_vifplugd_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vifplug.daemon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == vifplug.__version__
