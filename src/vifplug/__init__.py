"""vifplug: a host-side VIF plugging daemon for compute nodes.

The package is layered so that data flows one way: ``api`` -> ``service`` ->
(``state``, ``plugins``) -> (``ovsdb``, ``netdev``).  Only the last two touch
the system; the rest is plain Python that tests can drive without root.
"""

__version__ = "0.1.0"
