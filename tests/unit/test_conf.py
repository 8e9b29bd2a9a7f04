"""Configuration values that are resolved when the settings are built."""

from __future__ import annotations

import pytest

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
    settings = conf.Settings.from_conf(conf.make_conf(["--config-file", str(f)]))
    assert settings.netdev.tap_owner == 0
    assert settings.netdev.tap_group == 5
