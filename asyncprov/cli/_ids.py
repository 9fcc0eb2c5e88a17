"""The ``custom_id``s of a batch job, on disk: memory stays flat however many lines.

A job of millions of lines cannot keep every id in a dict (some 180 bytes each). The
index is a private temporary SQLite database (SQLite writes it to a temporary file once
its 2 MiB page cache fills, and deletes it when closed): each id seen, with the IN line
it was first on (0: already in OUT).
"""

from __future__ import annotations

import sqlite3

__all__ = ["IdIndex"]

_COMMIT_EVERY = 10_000
"""Writes kept in one transaction (one per write would cost a sync each)."""


def _key(custom_id: str) -> bytes:
    """Any ``str`` as bytes, lone surrogates included (JSON can hold them)."""
    return custom_id.encode("utf-8", "surrogatepass")


class IdIndex:
    """``custom_id`` -> the IN line it was first on (0: its result is already in OUT)."""

    def __init__(self) -> None:
        # "": a private temporary database, on disk; used by one thread at a time.
        self._db = sqlite3.connect("", check_same_thread=False)
        self._db.execute("PRAGMA cache_size = -2048")  # KiB: the memory it may hold
        self._db.execute("PRAGMA journal_mode = OFF")  # a temporary index: no rollback
        self._db.execute("CREATE TABLE ids (id BLOB PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._pending = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, custom_id: str) -> int | None:
        row = self._db.execute("SELECT line FROM ids WHERE id = ?", (_key(custom_id),))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def add(self, custom_id: str, line: int) -> bool:
        """Record ``custom_id`` first seen on ``line``; ``False`` if it is already in."""
        added = self._db.execute(
            "INSERT OR IGNORE INTO ids VALUES (?, ?)", (_key(custom_id), line)
        ).rowcount
        self._size += added
        self._pending += 1
        if self._pending >= _COMMIT_EVERY:
            self._db.commit()
            self._pending = 0
        return bool(added)

    def remove(self, custom_ids: set[str]) -> None:
        """Forget ``custom_ids`` (their requests run again)."""
        for custom_id in custom_ids:
            deleted = self._db.execute("DELETE FROM ids WHERE id = ?", (_key(custom_id),))
            self._size -= deleted.rowcount
        self._db.commit()

    def close(self) -> None:
        self._db.close()
