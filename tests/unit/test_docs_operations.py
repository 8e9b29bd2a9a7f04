"""docs/operations.md documents every option, in the table of its group.

An option added to ``vifplug.conf`` without a row in the guide fails here, as
one added without regenerating the sample fails in test_config_sample.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from vifplug import conf as vconf

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
SAMPLE = ROOT / "etc" / "vifplug" / "vifplug.conf.sample"

#: The line that opens each group's table in the guide.
OPENERS = {
    "network:NAME": "### Networks: `[network:NAME]`",
    "portgroup:NETWORK:NAME": "### Portgroups: `[portgroup:NETWORK:NAME]`",
}


def _table_after(text: str, opener: str) -> set[str]:
    """The option names in the first cell of the rows of the table after ``opener``."""
    start = text.index(opener)
    names: set[str] = set()
    in_table = False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z_]+)`", first))
        elif in_table:
            break
    return names


def test_every_option_has_a_row_in_its_groups_table() -> None:
    text = GUIDE.read_text()
    for group, opts in vconf.list_opts():
        opener = OPENERS.get(group, f"`[{group}]`")
        assert opener in text, f"docs/operations.md has no table for [{group}]"
        documented = _table_after(text, opener)
        missing = sorted(o.dest for o in opts if o.dest not in documented)
        assert not missing, f"docs/operations.md: [{group}] lacks rows for {missing}"


def test_system_id_fallbacks_are_in_the_same_order_in_the_guide_and_the_sample() -> None:
    steps = ("OVSDB", "state database", "system_id_file", "UUID")

    def order(text: str) -> list[int]:
        return [text.index(step) for step in steps]

    row = next(line for line in GUIDE.read_text().splitlines() if line.startswith("| `system_id` "))
    sample = SAMPLE.read_text()
    help_text = sample[sample.index("# This host's system-id") : sample.index("#system_id =")]
    help_text = " ".join(help_text.replace("#", " ").split())
    for where, text in (("docs/operations.md", row), ("the sample", help_text)):
        positions = order(text)
        assert positions == sorted(positions), f"{where}: system_id fallbacks out of order: {text}"
