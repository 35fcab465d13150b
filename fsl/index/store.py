"""The SQLite file of a gallery: the source of truth of ``fsl.index.Gallery``.

One file holds the model the gallery was built with (its fingerprint, name,
embedding size, metric and threshold), the people, and each item: its
embedding (float32 bytes), its person, where the photo came from, an
optional thumbnail (JPEG bytes) and metadata (JSON). Every write is one
SQLite transaction; the file is opened in WAL mode so that readers see a
consistent gallery while another connection writes.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fsl._checks import PathLike

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT,
    thumbnail BLOB,
    metadata TEXT NOT NULL DEFAULT '{}',
    added TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_person ON items(person);
"""


class Store:
    """A gallery's SQLite file.

    Args:
        path: the file (created with its tables if absent).
    """

    def __init__(self, path: PathLike):
        self.path = path
        # check_same_thread=False: a web server's worker threads share it; every
        # method holds the connection for one transaction.
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # === The model ===

    def meta(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM meta")}

    def set_meta(self, values: Mapping[str, Any]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in values.items()])

    def delete_meta(self, keys: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in keys])

    def generation(self) -> int:
        """How many writes changed the items: bumped in the same transaction as
        each add and removal, so a copy of the items made at one generation
        (a saved search index) is current exactly when the number matches."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def _bump_generation(self) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', ?)",
                        (json.dumps(self.generation() + 1),))

    # === Items ===

    def add(self, embeddings: np.ndarray, names: Iterable[str], sources: Iterable[str | None],
            thumbnails: Iterable[bytes | None], metadata: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert items in one transaction; returns their ids."""
        added = datetime.datetime.now().isoformat(timespec="seconds")
        ids = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for embedding, name, source, thumbnail, meta in zip(
                    embeddings, names, sources, thumbnails, metadata, strict=True):
                self.db.execute("INSERT OR IGNORE INTO people (name) VALUES (?)", (name,))
                (person,) = self.db.execute("SELECT id FROM people WHERE name = ?",
                                            (name,)).fetchone()
                cursor = self.db.execute(
                    "INSERT INTO items (person, embedding, source, thumbnail, metadata, added) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (person, np.asarray(embedding, "<f4").tobytes(), source, thumbnail,
                     json.dumps(dict(meta)), added))
                ids.append(int(cursor.lastrowid))
            self._bump_generation()
        return ids

    def remove_items(self, item_ids: Iterable[int]) -> list[int]:
        """Delete items (and people left with none); returns the ids deleted."""
        item_ids = [int(i) for i in item_ids]
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            found = [row[0] for row in self.db.execute(
                f"SELECT id FROM items WHERE id IN ({','.join('?' * len(item_ids))})",
                item_ids)] if item_ids else []
            self.db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in found])
            self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT person FROM items)")
            if found:
                self._bump_generation()
        return found

    def item_ids_of(self, name: str) -> list[int]:
        return [row[0] for row in self.db.execute(
            "SELECT items.id FROM items JOIN people ON people.id = items.person "
            "WHERE people.name = ? ORDER BY items.id", (name,))]

    def people(self) -> dict[str, int]:
        """Each person's name and number of items, by name."""
        return dict(self.db.execute(
            "SELECT people.name, COUNT(items.id) FROM people JOIN items ON items.person = "
            "people.id GROUP BY people.id ORDER BY people.name"))

    def items(self, name: str | None = None) -> list[dict[str, Any]]:
        """Items (without embeddings and thumbnails), of one person or all."""
        query = ("SELECT items.id, people.name, items.source, items.metadata, items.added, "
                 "items.thumbnail IS NOT NULL FROM items JOIN people ON people.id = items.person")
        rows = self.db.execute(query + (" WHERE people.name = ?" if name else "")
                               + " ORDER BY items.id", (name,) if name else ())
        return [{"id": i, "person": person, "source": source, "metadata": json.loads(meta),
                 "added": added, "thumbnail": bool(thumb)}
                for i, person, source, meta, added, thumb in rows]

    def sources(self, item_ids: Iterable[int]) -> dict[int, str | None]:
        """Where each item's photo came from, by id."""
        item_ids = sorted({int(i) for i in item_ids})
        if not item_ids:
            return {}
        return dict(self.db.execute(
            f"SELECT id, source FROM items WHERE id IN ({','.join('?' * len(item_ids))})",
            item_ids))

    def thumbnail(self, item_id: int) -> bytes | None:
        row = self.db.execute("SELECT thumbnail FROM items WHERE id = ?", (int(item_id),)).fetchone()
        return None if row is None else row[0]

    def people_of_items(self) -> tuple[np.ndarray, list[str]]:
        """Every item's id and person, without the embeddings."""
        rows = self.db.execute("SELECT items.id, people.name FROM items JOIN people ON "
                               "people.id = items.person ORDER BY items.id").fetchall()
        return np.array([r[0] for r in rows], np.int64), [r[1] for r in rows]

    def embeddings(self, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every item: (ids [N], embeddings [N, dim] float32, person names [N])."""
        rows = self.db.execute("SELECT items.id, items.embedding, people.name FROM items "
                               "JOIN people ON people.id = items.person ORDER BY items.id"
                               ).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = (np.stack([np.frombuffer(r[1], "<f4") for r in rows]) if rows
                   else np.zeros((0, dim), np.float32))
        return ids, vectors.astype(np.float32), [r[2] for r in rows]


__all__ = ["SCHEMA_VERSION", "Store"]
