"""The results store: measurements appended durably to SQLite in a workspace folder.

Each measurement is committed the moment it completes, and so is each round of one in progress
(until the measurement it belongs to is stored), so Ctrl-C or a crash loses at most the round
that was running; a rerun finds what is done by its key (model content + backend + settings)
and skips it, and takes up an unfinished measurement from its rounds. WAL mode and a busy
timeout let several processes write the same workspace.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from edgemeter.backends.protocol import Measurement, file_sha256

DB_NAME = "measurements.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    ok INTEGER NOT NULL,
    median_ms REAL,
    created REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_key ON measurements (key);
CREATE TABLE IF NOT EXISTS rounds (
    key TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rounds_key ON rounds (key);
"""


def measurement_key(model_sha256: str, backend: str, settings: dict[str, Any],
                    profiled: bool) -> str:
    """What makes two measurements the same experiment; the protocol is left out on purpose
    (more rounds refine a result, they do not make a different one)."""
    text = json.dumps([model_sha256, backend, settings, profiled], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _key(m: Measurement) -> str:
    return measurement_key(m.model_sha256, m.backend, m.config, m.profiled)


class Store:
    """Measurements of one workspace folder (created if missing)."""

    def __init__(self, workspace: str | Path, timeout_s: float = 60):
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / DB_NAME
        # Autocommit: every INSERT is its own transaction, durable when execute() returns.
        self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._wal(timeout_s)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def _wal(self, timeout_s: float) -> None:
        """Switch to WAL. Two processes opening a new workspace at once: the switch needs the
        file to itself and SQLite reports "database is locked" without waiting on the busy
        timeout (seen in CI), so it is retried until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def add(self, m: Measurement) -> None:
        """Store a finished measurement; the rounds kept for it while it ran are dropped in the
        same transaction."""
        key = _key(m)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO measurements (key, model, backend, ok, median_ms, created, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, m.model, m.backend, int(m.ok), m.median_ms, time.time(),
                 json.dumps(m.to_dict())))
            self.db.execute("DELETE FROM rounds WHERE key = ?", (key,))

    def add_round(self, m: Measurement, out: dict[str, Any]) -> None:
        """Keep one completed round (a worker's output) of the unfinished measurement ``m``."""
        self.db.execute("INSERT INTO rounds (key, data) VALUES (?, ?)",
                        (_key(m), json.dumps(out)))

    def rounds(self, m: Measurement) -> list[dict[str, Any]]:
        """The rounds kept for a measurement like ``m`` that an interruption left unfinished."""
        return [json.loads(data) for (data,) in self.db.execute(
            "SELECT data FROM rounds WHERE key = ? ORDER BY rowid", (_key(m),))]

    def find(self, model: str | Path, backend: str, settings: dict[str, Any],
             profiled: bool = False, failed: bool = False) -> Measurement | None:
        """The latest successful measurement of this model file's content with these settings.
        Failures are kept for the record; only with ``failed`` is one returned (when nothing
        succeeded), otherwise a rerun tries them again."""
        try:
            key = measurement_key(file_sha256(Path(model)), backend, settings, profiled)
        except OSError:  # a missing model: measuring it records why
            return None
        row = self.db.execute("SELECT data FROM measurements WHERE key = ? AND ok >= ? "
                              "ORDER BY ok DESC, id DESC LIMIT 1",
                              (key, 0 if failed else 1)).fetchone()
        return Measurement.from_dict(json.loads(row[0])) if row else None

    def span(self, backend: str, threads: int | None = None) -> tuple[float, float] | None:
        """When the first and the last successful measurement on ``backend`` (with ``threads``,
        if given) were stored (Unix time); None if there is none."""
        sql = ("SELECT MIN(created), MAX(created) FROM measurements WHERE backend = ? AND ok = 1"
               + ("" if threads is None else " AND json_extract(data, '$.config.threads') = ?"))
        args = (backend,) if threads is None else (backend, threads)
        first, last = self.db.execute(sql, args).fetchone()
        return None if first is None else (first, last)

    def __iter__(self) -> Iterator[Measurement]:
        for (data,) in self.db.execute("SELECT data FROM measurements ORDER BY id"):
            yield Measurement.from_dict(json.loads(data))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
