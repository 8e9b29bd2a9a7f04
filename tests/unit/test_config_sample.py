"""The configuration files shipped in etc/vifplug stay true to ``vifplug.conf``.

The sample is generated (``oslo-config-generator``, namespace ``vifplug``) and
committed so that operators can read it without installing anything; this
test regenerates it and fails when an option was added or changed without
regenerating.  The example is written by hand, so the test checks that the
daemon would read it as meant: every option name exists (oslo.config ignores
unknown ones silently), the values parse, and the networks load.
"""

from __future__ import annotations

import configparser
import difflib
import importlib.metadata
import re
from pathlib import Path

import pytest
from oslo_config import cfg, generator

from vifplug import conf as vconf
from vifplug.plugging import networks

ETC = Path(__file__).resolve().parents[2] / "etc" / "vifplug"
SAMPLE = ETC / "vifplug.conf.sample"
GENERATOR_CONF = ETC / "oslo-config-generator.conf"
EXAMPLE = ETC / "vifplug.conf.example"

REGENERATE = (
    "regenerate it from the repository's top directory with:\n"
    "    oslo-config-generator --config-file etc/vifplug/oslo-config-generator.conf\n"
    "(after 'pip install -e .', which declares the 'vifplug' namespace)"
)


def _generate(output: Path) -> str:
    """What ``oslo-config-generator --config-file GENERATOR_CONF`` writes."""
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(
        ["--config-file", str(GENERATOR_CONF), "--output-file", str(output)],
        project="vifplug",
        default_config_files=[],
        default_config_dirs=[],
    )
    generator.generate(conf)
    return output.read_text()


def test_namespace_entry_point_is_installed() -> None:
    found = importlib.metadata.entry_points(group="oslo.config.opts", name="vifplug")
    assert found, (
        "the oslo.config.opts entry point 'vifplug' is missing; "
        "run 'pip install -e .' so that the generator finds the options"
    )
    assert [ep.value for ep in found] == ["vifplug.conf:list_opts"]


def test_committed_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    fresh = _generate(tmp_path / "vifplug.conf.sample")
    committed = SAMPLE.read_text()
    if fresh != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                "etc/vifplug/vifplug.conf.sample (committed)",
                "generated now",
            )
        )
        pytest.fail(f"etc/vifplug/vifplug.conf.sample is stale; {REGENERATE}\n\n{diff}")


def test_sample_documents_every_option() -> None:
    text = SAMPLE.read_text()
    for group, opts in vconf.list_opts():
        for opt in opts:
            assert re.search(rf"^#{re.escape(opt.dest)} =", text, re.MULTILINE), (
                f"[{group}] {opt.dest} is missing from the sample"
            )


def _known_options(section: str) -> set[str] | None:
    """Option names valid in ``section``, or None for a section vifplug does not read."""
    if section.startswith("network:"):
        return {o.dest for o in vconf.NETWORK_OPTS}
    if section.startswith("portgroup:"):
        return {o.dest for o in vconf.PORTGROUP_OPTS}
    key = None if section == "DEFAULT" else section
    opts = vconf.GROUPS.get(key)
    return None if opts is None else {o.dest for o in opts}


def test_example_uses_only_options_that_exist() -> None:
    # No default section: configparser would otherwise copy [DEFAULT] into every group.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.read_string(EXAMPLE.read_text())
    for section in parser.sections():
        known = _known_options(section)
        assert known is not None, f"[{section}] is not a group vifplug reads"
        unknown = set(parser[section]) - known
        assert not unknown, f"[{section}] has options vifplug does not know: {sorted(unknown)}"


def test_example_parses_and_its_networks_load() -> None:
    conf = vconf.make_conf(config_files=[str(EXAMPLE)], config_dirs=())
    settings = vconf.Settings.from_conf(conf)
    assert settings.api.socket_path == "/run/vifplug/vifplug.sock"
    assert "br-int" in settings.ovs.allowed_bridges
    defs = networks.load(conf)
    assert {d.type for d in defs.values()} == {"ovs", "direct"}
    direct = next(d for d in defs.values() if d.type == "direct")
    assert len(direct.devices) > 1, "the example should show a pool of devices"
    assert direct.portgroups, "the example should show portgroups"
    assert direct.default_portgroup in direct.portgroups
    assert any(pg.virtualport for pg in direct.portgroups.values())
    assert any(pg.bandwidth for pg in direct.portgroups.values())


def test_every_portgroup_section_of_the_example_is_listed_by_its_network() -> None:
    # A [portgroup:N:P] that network N does not list is silently ignored.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.read_string(EXAMPLE.read_text())
    for section in parser.sections():
        if section.startswith("portgroup:"):
            _, network, name = section.split(":")
            listed = [p.strip() for p in parser[f"network:{network}"]["portgroups"].split(",")]
            assert name in listed, f"[{section}] is not in network {network}'s portgroups"
