"""Persistent state of vifplugd: the VIFs it was asked for, what it did, what is in flight.

``store`` is the SQLite database with its in-memory index and group commit;
``codec`` is the row and JSON layout; ``migrations`` holds the ordered schema
steps.  Nothing here touches the system: the service decides what to record
and when, and the reconciler uses ``Store.in_flight()`` at start-up.
"""
