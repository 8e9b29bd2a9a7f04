"""Fixtures of the functional tests: the vifplugd subprocess (``daemon_fixture``)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from daemon_fixture import daemon_factory, vifplugd, workdir

__all__ = ["daemon_factory", "vifplugd", "workdir"]
