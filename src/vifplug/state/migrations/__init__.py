"""Ordered, forward-only schema migrations of the state database.

Each step is a file ``NNNN_name.sql`` in this package; ``NNNN`` is the schema
version the step produces, so step 1 creates a fresh database and step ``n``
turns version ``n - 1`` into ``n``.  A new database goes through exactly the
same steps as an old one, so there is one path to the current schema, and
the fixture of every released schema (``tests/fixtures/state``) proves that
path still works.

Each step runs in one transaction together with the ``schema_version`` bump in
``meta``: a crash or an error in the middle leaves the previous version intact
and the next start simply tries again.  There are no downgrades: a database
newer than this code is refused (``StateSchemaTooNew``) rather than read
without the columns a newer daemon relies on.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from importlib import resources

from vifplug import exceptions

_STEP_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A step must not manage its own transaction: the runner wraps it in one.
# (A trigger body's BEGIN ... END is allowed.)
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;"
    r"|COMMIT\b|ROLLBACK\b|END\s+TRANSACTION\b|SAVEPOINT\b|RELEASE\b)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclasses.dataclass(frozen=True)
class Migration:
    """One step: the SQL that turns schema ``version - 1`` into ``version``."""

    version: int
    name: str
    sql: str


def _load() -> tuple[Migration, ...]:
    steps: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _STEP_NAME.match(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        if _TRANSACTION_CONTROL.search(sql):
            raise RuntimeError(f"migration {entry.name} must not contain transaction control")
        steps.append(Migration(version=int(match.group(1)), name=match.group(2), sql=sql))
    steps.sort(key=lambda m: m.version)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise RuntimeError(f"state migrations are not numbered 1..n: {[m.version for m in steps]}")
    return tuple(steps)


MIGRATIONS: tuple[Migration, ...] = _load()
SCHEMA_VERSION: int = MIGRATIONS[-1].version


def read_version(conn: sqlite3.Connection, *, path: str) -> int:
    """The schema version of the open database: 0 for an empty file.

    Only reads, so that a database this code must refuse is left untouched.
    Raises ``StateSchemaTooNew`` for a version above ``SCHEMA_VERSION`` and
    ``StateUnavailable`` for a file that is not a vifplug state database.
    """
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return 0
        if "meta" not in tables:
            raise exceptions.StateUnavailable(
                path=path,
                reason=f"it holds tables {sorted(tables)} but no meta table, "
                "so it is not a vifplug state database",
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise exceptions.StateUnavailable(path=path, reason=str(exc)) from exc
    if row is None or not str(row[0]).isdigit():
        raise exceptions.StateUnavailable(
            path=path, reason=f"its schema_version is {None if row is None else row[0]!r}"
        )
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise exceptions.StateSchemaTooNew(
            path=path, what="schema version", found=version, supported=SCHEMA_VERSION
        )
    return version


def upgrade(conn: sqlite3.Connection, *, path: str, from_version: int) -> int:
    """Apply every step after ``from_version``, each in its own transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``).  Returns the
    version reached, ``SCHEMA_VERSION``.  A failing step is rolled back and
    raised as ``StateUnavailable``; the steps before it stay applied.
    """
    for step in MIGRATIONS[from_version:]:
        # executescript() would commit a transaction opened with execute(), so
        # the BEGIN and COMMIT are part of the script itself.
        script = (
            f"BEGIN IMMEDIATE;\n{step.sql}\n;\n"
            "INSERT INTO meta (key, value) VALUES ('schema_version', "
            f"'{step.version:d}') ON CONFLICT (key) DO UPDATE SET value = excluded.value;\n"
            "COMMIT;\n"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise exceptions.StateUnavailable(
                path=path, reason=f"migration to schema {step.version} ({step.name}) failed: {exc}"
            ) from exc
    return SCHEMA_VERSION
