"""The Open vSwitch database layer: one IDL connection, owned by one thread.

Callers from any thread submit small write functions (``ops``); the
connection coalesces everything pending into one OVSDB transaction, because
ovs-vswitchd reconfigures the bridge once per transaction (200 ports one by one
took ~4.7 s here, in one transaction ~0.7 s).  Reads come from immutable
snapshots kept up to date from IDL notifications, so no caller ever touches
IDL rows outside the IDL thread.

``connection`` is the thread and the batching, ``replica`` the indexes,
snapshots, waiters and watchers fed by it, ``txn`` what a write function sees,
``ops`` the writes, ``schema`` the monitored columns, ``views`` the snapshots.
"""
