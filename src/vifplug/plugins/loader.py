"""Finding the installed plugins through the ``vifplug.plugins`` entry points."""

from __future__ import annotations

import logging
from importlib import metadata

from vifplug.plugins import base

LOG = logging.getLogger(__name__)
GROUP = "vifplug.plugins"


def load(ctx: base.PluginContext, *, only: list[str] | None = None) -> dict[str, base.PluginBase]:
    """Instantiate every installed plugin (or those named in ``only``)."""
    plugins: dict[str, base.PluginBase] = {}
    for ep in metadata.entry_points(group=GROUP):
        if only is not None and ep.name not in only:
            continue
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, base.PluginBase)):
            LOG.error("entry point %s does not name a vifplug plugin; ignored", ep.name)
            continue
        plugins[ep.name] = cls(ctx)
    return plugins
