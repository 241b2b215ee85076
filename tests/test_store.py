"""The SQLite results store: durable appends, resume, several writers."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from edgemeter.backends import Measurement, Protocol, measure_models
from edgemeter.store import Store
from test_backends import tiny_onnx

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def fake(model: Path, backend: str = "onnxruntime-cpu", error: str | None = None,
         threads: int = 1) -> Measurement:
    from edgemeter.backends.protocol import file_sha256

    return Measurement(model=str(model), backend=backend, config={"threads": threads},
                       model_sha256=file_sha256(model), samples_ms=[1.0, 1.2],
                       median_ms=None if error else 1.1, error=error)


def test_add_find_and_iterate(tmp_path):
    model = tiny_onnx(tmp_path / "a.onnx")
    with Store(tmp_path / "ws") as store:
        store.add(fake(model, error="runtime crashed (SIGSEGV)"))
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}) is None  # failures retried
        store.add(fake(model))
        found = store.find(model, "onnxruntime-cpu", {"threads": 1})
        assert found.median_ms == 1.1 and found.samples_ms == [1.0, 1.2]
        assert store.find(model, "onnxruntime-cpu", {"threads": 2}) is None
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}, profiled=True) is None
        assert store.find(tmp_path / "missing.onnx", "onnxruntime-cpu", {"threads": 1}) is None
        assert [m.ok for m in store] == [False, True] and len(store) == 2
    # The key is the model's content, not its path: a copy is found too.
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(model.read_bytes())
    with Store(tmp_path / "ws") as store:
        assert store.find(copy, "onnxruntime-cpu", {"threads": 1}) is not None


def test_measure_models_resumes_from_the_store(tmp_path):
    models = [tiny_onnx(tmp_path / f"m{i}.onnx", width=4 + i) for i in range(2)]
    protocol = Protocol(warmup=1, repeats=3, rounds=1, max_rounds=1)
    seen = []
    with Store(tmp_path / "ws") as store:
        measure_models(models[:1], "onnxruntime-cpu", {}, protocol, store=store)
        results = measure_models(models, "onnxruntime-cpu", {}, protocol, store=store,
                                 on_result=lambda m, reused: seen.append(reused))
        assert seen == [True, False] and all(m.ok for m in results) and len(store) == 2


def test_rounds_of_an_unfinished_measurement_are_kept_until_it_is_stored(tmp_path):
    model = tiny_onnx(tmp_path / "a.onnx")
    m = fake(model)
    with Store(tmp_path / "ws") as store:
        store.add_round(m, {"samples_ms": [1.0], "elapsed_s": 0.1})
        store.add_round(m, {"samples_ms": [2.0], "elapsed_s": 0.1})
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}) is None
        assert [r["samples_ms"] for r in store.rounds(m)] == [[1.0], [2.0]]
        assert store.rounds(fake(model, threads=2)) == []  # other settings: other rounds
    with Store(tmp_path / "ws") as store:  # durable
        assert len(store.rounds(m)) == 2
        store.add(m)
        assert store.rounds(m) == [] and len(store) == 1


def test_span_is_when_a_backend_was_measured_successfully(tmp_path):
    model = tiny_onnx(tmp_path / "a.onnx")
    with Store(tmp_path / "ws") as store:
        assert store.span("onnxruntime-cpu") is None
        before = time.time()
        store.add(fake(model, error="rejected"))
        assert store.span("onnxruntime-cpu") is None
        store.add(fake(model))
        store.add(fake(model, threads=2))
        store.add(fake(model, backend="openvino-cpu-f32"))
        first, last = store.span("onnxruntime-cpu")
        assert before <= first <= last <= time.time()
        assert store.span("onnxruntime-cpu", threads=1) == (first, first)
        assert store.span("onnxruntime-cpu", threads=2) == (last, last)
        assert store.span("onnxruntime-cpu", threads=4) is None
        assert store.span("openvino-cpu-f32")[0] >= last


def test_failures_are_found_only_when_asked_for(tmp_path):
    model = tiny_onnx(tmp_path / "a.onnx")
    with Store(tmp_path / "ws") as store:
        store.add(fake(model, error="rejected"))
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}) is None
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}, failed=True).error \
            == "rejected"
        store.add(fake(model))
        assert store.find(model, "onnxruntime-cpu", {"threads": 1}, failed=True).ok


def test_a_measurement_with_fewer_rounds_than_asked_is_taken_again(tmp_path):
    model = tiny_onnx(tmp_path / "a.onnx")
    one, two = (Protocol(warmup=1, repeats=3, rounds=n, max_rounds=n) for n in (1, 2))
    seen = []
    with Store(tmp_path / "ws") as store:
        for protocol in (one, two, two, one):
            measure_models([model], "onnxruntime-cpu", {}, protocol, store=store,
                           on_result=lambda m, reused: seen.append(
                               (reused, len(m.round_medians_ms))))
    # More rounds asked: measured again; as many or fewer: the stored one.
    assert seen == [(False, 1), (False, 2), (True, 2), (True, 2)]


WRITER = """
import sys
from pathlib import Path
from edgemeter.backends import Measurement
from edgemeter.store import Store

store = Store(sys.argv[1], timeout_s=30)
for i in range(int(sys.argv[3])):
    store.add(Measurement(model=f"{sys.argv[2]}-{i}", backend="b", config={}, median_ms=i,
                          samples_ms=[float(i)] * 50))
"""


def test_two_processes_write_one_workspace(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "ws"), name, "60"],
                                env=ENV) for name in ("a", "b")]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    db = sqlite3.connect(tmp_path / "ws" / "measurements.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    models = {m for (m,) in db.execute("SELECT model FROM measurements")}
    assert models == {f"{name}-{i}" for name in "ab" for i in range(60)}


def test_an_interrupted_run_loses_nothing_and_resumes(tmp_path):
    models = [str(tiny_onnx(tmp_path / f"m{i}.onnx", width=4 + i)) for i in range(3)]
    workspace = tmp_path / "ws"
    # A fresh process per round: each model takes over half a second, so Ctrl-C sent on the
    # first model's progress line lands while the second is being measured.
    args = [sys.executable, "-m", "edgemeter", "measure", *models, "-b", "onnxruntime-cpu",
            "-w", str(workspace), "--rounds", "2", "--max-rounds", "2", "--repeats", "200"]
    # Ctrl-C as in a terminal: a shell starts background jobs with SIGINT ignored, and a child
    # inheriting that never sees the interrupt (a CI run launched with '&' failed so, 2026-12-01).
    run = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in run.stderr:
        seen.append(line)
        if line.startswith("[1/3]"):
            break
    run.send_signal(signal.SIGINT)
    _, rest = run.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    with Store(workspace) as store:
        done = len(store)
        assert 1 <= done < 3 and all(m.ok for m in store)

    rerun = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("from workspace") == done
    with Store(workspace) as store:
        assert sorted(m.model for m in store) == models
