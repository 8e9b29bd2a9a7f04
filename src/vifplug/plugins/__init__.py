"""Plugins: each one way of connecting a VIF, loaded from the ``vifplug.plugins``
entry point group (os-vif's model: describe, plug, unplug)."""
