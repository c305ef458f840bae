"""SQLite persistence of the live service: sessions, the segments posted to them and their
predictions. Every write is one transaction, so a restart loses nothing that was answered."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created REAL NOT NULL, closed REAL,
    context TEXT, person TEXT
);
CREATE TABLE IF NOT EXISTS segments (
    session_id TEXT NOT NULL REFERENCES sessions(id), seq INTEGER NOT NULL, received REAL NOT NULL,
    start_s REAL, end_s REAL, turns TEXT NOT NULL, events TEXT NOT NULL, features TEXT NOT NULL,
    introspection TEXT, label TEXT NOT NULL, proba TEXT NOT NULL, top_source TEXT,
    PRIMARY KEY (session_id, seq)
);
"""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(segments)")}
        if "top_source" not in columns:  # a database written before sources were explained live
            self._conn.execute("ALTER TABLE segments ADD COLUMN top_source TEXT")

    @staticmethod
    def check(path: str | Path) -> None:
        """A clear error, before the service starts, for a path that cannot hold its database."""
        from ..errors import EmoregError

        path = Path(path)
        if path.is_dir():
            raise EmoregError(f"--db {path} is a folder; give the path of a database file (it is created if missing)")
        try:
            store = Store(path)
        except sqlite3.OperationalError as exc:
            raise EmoregError(f"--db {path}: cannot open it ({exc}); give a path in a folder you can write") from None
        except sqlite3.DatabaseError as exc:
            raise EmoregError(f"--db {path} is not an SQLite database the service can use ({exc}); give a new "
                              "path, or the file an earlier `emoreg serve` wrote") from None
        except OSError as exc:
            raise EmoregError(f"--db {path}: cannot create or open it ({exc.strerror or exc}); give a path in a "
                              "folder you can write") from None
        store._conn.close()

    def _tx(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(sql, args)
                self._conn.execute("COMMIT")
                return cursor
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def create_session(self, context: str | None, person: dict[str, Any] | None) -> str:
        session_id = uuid.uuid4().hex  # unguessable: a session is read only by whoever holds its id
        self._tx("INSERT INTO sessions (id, created, context, person) VALUES (?, ?, ?, ?)",
                 (session_id, time.time(), context, json.dumps(person) if person is not None else None))
        return session_id

    def session(self, session_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT id, created, closed, context, person FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            return None
        sid, created, closed, context, person = rows[0]
        count = self._query("SELECT COUNT(*) FROM segments WHERE session_id = ?", (sid,))[0][0]
        return {"session_id": sid, "created": created, "closed": closed, "context": context,
                "person": json.loads(person) if person else None, "segments": count}

    def sessions(self) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._query("SELECT id FROM sessions ORDER BY created DESC")]
        return [self.session(i) for i in ids]

    def close(self, session_id: str) -> None:
        self._tx("UPDATE sessions SET closed = ? WHERE id = ? AND closed IS NULL", (time.time(), session_id))

    def turns(self, session_id: str) -> list[dict[str, Any]]:
        """Every turn posted to the session so far, in order."""
        rows = self._query("SELECT turns FROM segments WHERE session_id = ? ORDER BY seq", (session_id,))
        return [turn for (turns,) in rows for turn in json.loads(turns)]

    def add_segment(self, session_id: str, seq: int, post: dict[str, Any], label: str, proba: dict[str, float],
                    top_source: str | None = None) -> None:
        self._tx("INSERT INTO segments (session_id, seq, received, start_s, end_s, turns, events, features, "
                 "introspection, label, proba, top_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                     session_id, seq, time.time(), post.get("start_s"), post.get("end_s"), json.dumps(post["turns"]),
                     json.dumps(post["events"]), json.dumps(post["features"]), post.get("introspection"), label,
                     json.dumps(proba), top_source))

    def last_proba(self, session_id: str) -> dict[str, float] | None:
        """The probabilities answered to the session's latest segment (None before the first)."""
        rows = self._query("SELECT proba FROM segments WHERE session_id = ? ORDER BY seq DESC LIMIT 1", (session_id,))
        return json.loads(rows[0][0]) if rows else None

    def timeline(self, session_id: str) -> list[dict[str, Any]]:
        """Every segment of the session in order: its times, the turns posted with it, the label
        answered, every label's probability and the source that moved it most (with --explain)."""
        rows = self._query("SELECT seq, received, start_s, end_s, turns, label, proba, top_source FROM segments "
                           "WHERE session_id = ? ORDER BY seq", (session_id,))
        return [{"seq": seq, "received": received, "start_s": start, "end_s": end, "turns": json.loads(turns),
                 "label": label, "proba": json.loads(proba), "top_source": top}
                for seq, received, start, end, turns, label, proba, top in rows]
