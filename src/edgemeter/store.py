"""The results store: measurements appended durably to SQLite in a workspace folder.

Each measurement is committed the moment it completes, so Ctrl-C or a crash loses at most the one
in progress, and a rerun finds what is done by its key (model content + backend + settings) and
skips it. WAL mode and a busy timeout let several processes write the same workspace.
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
"""


def measurement_key(model_sha256: str, backend: str, settings: dict[str, Any],
                    profiled: bool) -> str:
    """What makes two measurements the same experiment; the protocol is left out on purpose
    (more rounds refine a result, they do not make a different one)."""
    text = json.dumps([model_sha256, backend, settings, profiled], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
        key = measurement_key(m.model_sha256, m.backend, m.config, m.profiled)
        self.db.execute(
            "INSERT INTO measurements (key, model, backend, ok, median_ms, created, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, m.model, m.backend, int(m.ok), m.median_ms, time.time(),
             json.dumps(m.to_dict())))

    def find(self, model: str | Path, backend: str, settings: dict[str, Any],
             profiled: bool = False) -> Measurement | None:
        """The latest successful measurement of this model file's content with these settings.
        Failures are kept for the record but never reused: a rerun tries them again."""
        try:
            key = measurement_key(file_sha256(Path(model)), backend, settings, profiled)
        except OSError:  # a missing model: measuring it records why
            return None
        row = self.db.execute("SELECT data FROM measurements WHERE key = ? AND ok = 1 "
                              "ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        return Measurement.from_dict(json.loads(row[0])) if row else None

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
