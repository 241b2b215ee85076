"""JSON Lines files appended one record at a time, so a crash loses at most the line in flight.

A line cut short by a crash can only be the last one: :func:`read` skips it and
:func:`open_append` cuts it off before appending, so the file stays valid line by line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from edgemeter.errors import ConfigError


def read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines):
                raise ConfigError(f"{path}:{n}: not valid JSON") from None
    return records


def open_append(path: Path) -> IO[str]:
    """Open for appending after removing a cut-off last line (one without its newline)."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[:data.rfind(b"\n") + 1])
    return open(path, "a")


def write(file: IO[str], record: dict[str, Any]) -> None:
    file.write(json.dumps(record) + "\n")
    file.flush()
