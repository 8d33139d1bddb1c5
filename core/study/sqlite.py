"""SQLite settings for the local stores: write-ahead logging, synced at checkpoints.

In its default rollback-journal mode SQLite syncs the disk several times per commit, and
a study commits a few times per trial in Optuna and in MLflow. In WAL mode with
``synchronous=NORMAL`` a commit appends to the ``-wal`` file beside the database and the
disk is synced at checkpoints: measured here, an MLflow batch of 371 metrics went from
71 ms to 38 ms and a run's creation from 11 ms to 6 ms. Readers and one writer no longer
block each other, which the workers of one machine sharing a file also gain from. A crash
of the process loses nothing; a power cut may lose the last commits, never the file.
WAL needs a local disk (not a network file system), as SQLite's locking always did. A run
switches the files back to the rollback journal when it ends, if no other worker has them
open (``leave_wal``).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)
BUSY_SECONDS = 60.0


def use_wal(url: str) -> None:
    """Put the database of a ``sqlite:///PATH`` URL in WAL mode (a setting the file keeps)
    and make this process's SQLAlchemy connections to WAL databases sync at checkpoints.

    Other URLs are left alone. A database that cannot be switched keeps its mode: the
    setting is a speed-up, never a reason for a run to fail.
    """
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if str(path) in ("", ":memory:") or not path.parent.is_dir():
        return
    _listen()
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=BUSY_SECONDS)) as db:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error as error:
        logger.info("%s stays in its journal mode: %s", path, error)
        return
    if mode != "wal":
        logger.info("%s stays in journal mode %s", path, mode)


def leave_wal(url: str) -> bool:
    """Back to the rollback journal, if no other connection has the file open: the file at
    rest is then one file again, which a copy of ``*.db`` catches whole and a reader
    without write access to its directory can open. Returns whether it switched; a file
    still in use stays in WAL mode (its last user switches it)."""
    if not url.startswith("sqlite:///"):
        return False
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=0.2)) as db:
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    except sqlite3.Error as error:
        logger.debug("%s stays in WAL mode: %s", path, error)
        return False
    return mode == "delete"


_listening = False


def _listen() -> None:
    global _listening
    if not _listening:
        sqlalchemy.event.listen(Engine, "connect", _on_connect)
        _listening = True


def _on_connect(dbapi_connection, _record) -> None:
    """``synchronous=NORMAL`` on connections to WAL databases; others keep their default
    (in rollback-journal mode, NORMAL could corrupt the file on a power cut)."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
    if mode == "wal":
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
