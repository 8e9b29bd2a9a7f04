"""Generate the manual pages and completion scripts from the parsers.

``vifplug(1)`` comes from the CLI's argparse parser, ``vifplugd(8)`` from the
one oslo.config builds for the daemon (``--config-file``, ``--config-dir``,
``--version``), both through argparse-manpage, plus the sections a daemon's
page needs (files, signals, see also).  The completion scripts come from
shtab, as ``vifplug completion SHELL`` prints them.  The outputs are committed
(under ``man/`` and ``completion/``) so that the sdist and the wheel need
neither tool; tests/unit/test_manpages.py fails when they are stale.

    python devtools/gen_manpages.py          # rewrite them
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from argparse_manpage.manpage import Manpage

import vifplug
from vifplug import cli
from vifplug import conf as vconf

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"

DAEMON_FILES = r"""
.TP
.I /etc/vifplug/vifplug.conf
The configuration, read when no \fB\-\-config\-file\fR is given; see
\fIetc/vifplug/vifplug.conf.sample\fR for every option.
.TP
.I /etc/vifplug/vifplug.conf.d/*.conf
Drop\-ins read after it, in name order, when no \fB\-\-config\-dir\fR is given.
.TP
.I /run/vifplug/vifplug.sock
The API's unix socket ([api] socket_path).
.TP
.I /var/lib/vifplug/vifplug.sqlite
The state database ([DEFAULT] state_dir).
""".strip()

DAEMON_SIGNALS = r"""
.TP
.B SIGTERM
Finish the requests in flight (up to [api] shutdown_timeout), then exit 0.
.TP
.B SIGHUP
Re\-read the network definitions and push HostInfo again.
""".strip()


def release_date() -> str:
    """The date of this version in CHANGELOG.md (or "unreleased"), not today's:
    the output must not change from one day to the next."""
    version = re.escape(vifplug.__version__)
    found = re.search(rf"^## \[{version}\] - (\S+)$", CHANGELOG.read_text(), re.M)
    assert found, f"CHANGELOG.md has no section for {vifplug.__version__}"
    return found.group(1)


def _page(parser: Any, *, section: int, description: str, extra: dict[str, str]) -> str:
    page = Manpage(
        parser,
        _data={
            "date": release_date(),
            "version": vifplug.__version__,
            "project_name": "vifplug",
            "manual_section": section,
            "manual_title": "vifplug",
            "description": description,
        },
    )
    for heading, content in extra.items():
        page.add_section(heading, "=", content)
    return str(page)


def outputs() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    daemon = vconf.make_conf([], config_files=(), config_dirs=(), version=vifplug.__version__)
    parser = daemon._oparser
    parser.prog = "vifplugd"
    files = {
        "man/vifplug.1": _page(
            cli.build_parser(),
            section=1,
            description="command-line client of vifplugd",
            extra={"see also": r"\fBvifplugd\fR(8), \fBovs\-vsctl\fR(8)"},
        ),
        "man/vifplugd.8": _page(
            parser,
            section=8,
            description="host-side VIF plugging daemon",
            extra={
                "files": DAEMON_FILES,
                "signals": DAEMON_SIGNALS,
                "see also": r"\fBvifplug\fR(1), \fBovs\-vswitchd\fR(8), "
                r"\fBovs\-vswitchd.conf.db\fR(5), \fBsystemd.unit\fR(5)",
            },
        ),
        "completion/vifplug": cli.completion_script("bash"),
        "completion/_vifplug": cli.completion_script("zsh"),
    }
    return files


def main() -> int:
    for rel, text in outputs().items():
        (ROOT / rel).parent.mkdir(exist_ok=True)
        (ROOT / rel).write_text(text)
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
