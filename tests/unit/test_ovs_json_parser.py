"""The ``ovs`` bindings parse OVSDB's JSON in C where the venv was built for it.

A venv built by ``scripts/ensure-venv`` (it leaves its stamp file
``.vifplug-installed``) links Debian's ``ovs._json`` into PyPI's bindings
(``scripts/link-ovs-c-parser``); without it every OVSDB update is parsed in
pure Python, ~25x slower, and nothing else would notice.  Another
interpreter (an operator's own venv) may lack it: the pure-Python parser
still works there, so it is expected only where scripts/ built the venv, or
where ``VIFPLUG_EXPECT_C_PARSER=1`` says so (``=0`` says it is not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ovs.json
import pytest

from vifplug.ovsdb import connection

ROOT = Path(__file__).resolve().parents[2]


def c_parser_expected() -> bool:
    flag = os.environ.get("VIFPLUG_EXPECT_C_PARSER")
    if flag is not None:
        return flag == "1"
    return (Path(sys.prefix) / ".vifplug-installed").exists()


def test_the_venv_built_by_scripts_has_the_c_parser() -> None:
    if not c_parser_expected():
        pytest.skip(f"{sys.prefix} was not built by scripts/ensure-venv")
    assert ovs.json.PARSER == ovs.json.PARSER_C, (
        f"{sys.prefix} parses OVSDB's JSON in pure Python: run scripts/ensure-venv "
        "(or VENV/bin/python scripts/link-ovs-c-parser) after installing python3-openvswitch"
    )
    assert connection.json_parser().startswith("C (")


def update(rows: int) -> str:
    """An OVSDB ``update3`` of ``rows`` Interface inserts, as ovsdb-server sends it."""
    return json.dumps(
        {
            "id": None,
            "method": "update3",
            "params": [
                ["monid", "Open_vSwitch"],
                "00000000-0000-0000-0000-000000000000",
                {
                    "Interface": {
                        f"{i:08x}-1111-2222-3333-444455556666": {
                            "insert": {
                                "name": f"vpt{i}\u00e9",
                                "ofport": i,
                                "mtu": 1500,
                                "link_speed": 1e10,
                                "admin_state": "up",
                                "error": ["set", []],
                                "external_ids": [
                                    "map",
                                    [["iface-id", f'port"{i}\\'], ["vm-uuid", "\u2603"]],
                                ],
                            }
                        }
                        for i in range(rows)
                    }
                },
            ],
        }
    )


@pytest.mark.skipif(ovs.json.PARSER != ovs.json.PARSER_C, reason="no C parser here")
def test_the_c_parser_reads_an_update_as_the_python_parser_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debian's extension under PyPI's Python modules: same objects, fed in pieces
    cut anywhere (the jsonrpc layer feeds what one recv() returned)."""
    msg = update(200)
    results = []
    for parser in (ovs.json.PARSER_C, ovs.json.PARSER_PY):
        monkeypatch.setattr(ovs.json, "PARSER", parser)
        p = ovs.json.Parser()
        rest = msg
        while rest:
            # The C parser counts UTF-8 bytes consumed; the Python one characters.
            used = p.feed(rest[:4093])
            if parser == ovs.json.PARSER_C:
                used = len(rest.encode()[:used].decode())
            rest = rest[used:]
        results.append(p.finish())
    assert results[0] == results[1] == json.loads(msg)


@pytest.mark.skipif(ovs.json.PARSER != ovs.json.PARSER_C, reason="no C parser here")
def test_the_link_script_leaves_a_working_venv_as_it_is() -> None:
    """ensure-venv may run it again on a venv that has the parser: it checks
    the parser still works, changes nothing and says nothing.  (Not run where
    the parser is missing: there it would change this interpreter's venv.)"""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "link-ovs-c-parser")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
