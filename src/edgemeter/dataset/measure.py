"""``measure``: every model of a dataset on one backend, resumable.

The results store in the dataset folder is what makes a rerun skip measured models (it keys
them by file content and backend settings). Each measurement is also appended to
``measurements-<backend>.jsonl``, the plain record that evaluation and people read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgemeter.backends.protocol import REFERENCE, Measurement, reference_protocol
from edgemeter.dataset import jsonl
from edgemeter.dataset.generate import read_index


def measurements_file(folder: str | Path, backend: str) -> Path:
    return Path(folder) / f"measurements-{backend}.jsonl"


def _record(entry: dict[str, Any], m: Measurement) -> dict[str, Any]:
    return {"file": entry["file"], "family": entry["family"], "backend": m.backend,
            "config": m.config, "median_ms": m.median_ms, "min_ms": m.min_ms,
            "spread": m.spread,
            "rounds": len(m.round_medians_ms), "stable": m.stable, "error": m.error,
            "anchor_ms": m.anchor_ms, "round_medians_ms": m.round_medians_ms,
            "anchor_round_medians_ms": m.anchor_round_medians_ms,
            "others_cores": m.others_cores,
            "model_sha256": m.model_sha256, "env": m.env}


def read_measurements(folder: str | Path, backend: str) -> list[dict[str, Any]]:
    """Lines of ``measurements-<backend>.jsonl``, one per model and settings (the latest)."""
    records = jsonl.read(measurements_file(folder, backend))
    latest = {(r["file"], repr(sorted(r["config"].items()))): r for r in records}
    return list(latest.values())


def measure(folder: str | Path, backend: str, threads: int = 1,
            rounds: int = REFERENCE["rounds"], repeats: int = REFERENCE["repeats"],
            warmup: int = REFERENCE["warmup"], options: dict[str, Any] | None = None,
            interleave: bool = True, progress: bool = False,
            max_rounds: int | None = None) -> list[Measurement]:
    """Measure the dataset's models on ``backend`` with the reference protocol
    (:func:`~edgemeter.backends.protocol.reference_protocol`: ``rounds`` fresh processes of
    ``repeats`` timed runs each, the speed anchor timed beside each; with ``max_rounds``, more
    rounds up to it while the median's standard error is above ``REFERENCE_SEM``); models
    measured before with the same settings are taken from the store. ``interleave``: in
    passes, round r of every model before round r + 1 of any (see Protocol.interleave); every
    completed round is stored, so an interrupted run resumes each unfinished model from its
    rounds."""
    from tqdm import tqdm

    from edgemeter.backends import get_backend, measure_models
    from edgemeter.store import Store

    folder = Path(folder)
    entries = read_index(folder)
    config = {"threads": threads, **(options or {})}
    settings = get_backend(backend, **config).settings()  # bad settings fail before any work
    protocol = reference_protocol(warmup=warmup, repeats=repeats, rounds=rounds,
                                  max_rounds=max_rounds or rounds,
                                  interleave=interleave)
    out = measurements_file(folder, backend)
    # A line that differs from what the store's measurement gives now (written before min_ms
    # existed, or before the anchor was paired per round) is written again, re-measuring nothing.
    recorded = {r["file"]: r for r in read_measurements(folder, backend)
                if r["config"] == settings}
    # Results come back in order; a reused one carries the path it was stored under, which
    # differs if the dataset folder moved, so entries are matched by position.
    pending = iter(entries)
    # Progress counts rounds: interleaved, no model completes before the last pass.
    with Store(folder) as store, jsonl.open_append(out) as lines, \
            tqdm(total=len(entries) * rounds, desc=f"measure {backend}", unit="round",
                 disable=not progress) as bar:
        def on_result(m: Measurement, reused: bool) -> None:
            entry = next(pending)
            record = _record(entry, m)
            if not (reused and recorded.get(entry["file"]) == record):
                jsonl.write(lines, record)
            bar.set_postfix_str(f"{entry['file'].split('/')[-1]} "
                                + (f"{m.median_ms:.2f} ms" if m.ok else "FAILED"))
            # Rounds a model did not run (reused, or failed early) count as done.
            bar.update(max(0, rounds - (0 if reused else len(m.round_medians_ms))))

        def on_round() -> None:
            bar.update()
            if bar.n > bar.total:  # a round past ``rounds``: the bar grows with it
                bar.total = bar.n
                bar.refresh()

        return measure_models([folder / e["file"] for e in entries], backend, config, protocol,
                              store=store, on_result=on_result, on_round=on_round)
