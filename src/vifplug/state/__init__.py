"""Persistent state of vifplugd: the VIFs it was asked for, what it did, what is in flight.

``store`` is the SQLite database with its in-memory index and group commit;
``codec`` is the row and JSON layout; ``migrations`` holds the ordered schema
steps.  Nothing here touches the system: the service decides what to record
and when; at start-up the reconciler reads every record (``Store.all()``) and
completes or undoes the operations whose lifecycle is not ``plugged``.
"""
