"""Shared fixtures. ``zoo_onnx`` exports zoo models once per test session, so every test file can
ask for e.g. ``zoo_onnx("mobilenetv3")`` without paying for the export twice. ``tiny_predictor``
trains a small REAL predictor package per backend from profiles of tiny zoo models, once per
session (``profile_models`` and ``build_package`` are its steps, for tests that vary them).
``load_script`` imports a script of bench/ or scripts/ as a module, to test its functions."""
from __future__ import annotations

import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

TRAIN_FAMILIES = ("mobilenetv2", "resnet", "mobilenetv3", "shufflenetv2", "squeezenet")
TINY_NAMES = {"onnxruntime-cpu": "tiny-ort", "openvino-cpu-f32": "tiny-ov"}


def _cpu_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 here (AVX512-BF16 or AMX): this machine kind
    has come both with and without."""
    try:
        import openvino
    except ImportError:
        return False
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


CPU_RUNS_BF16 = _cpu_runs_bf16()
needs_bf16 = pytest.mark.skipif(not CPU_RUNS_BF16, reason="this CPU has no bf16 (AVX512-BF16 "
                                "or AMX): the openvino-cpu-bf16 backend refuses to run")


def load_script(path: str):
    """The repository's script at ``path`` (``bench/…``, ``scripts/…``), imported as a module."""
    full = Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location(full.stem, full)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``zoo_onnx(family, dynamic_batch=False, **variant) -> Path`` of an ONNX file of the
    family's tiny variant (64 px, quarter width, at most two blocks per stage) with ``variant`` keys on
    top, e.g. ``zoo_onnx("resnet", block="bottleneck", resolution=96)``. Needs torch."""
    pytest.importorskip("torch")
    from edgemeter import zoo

    root = tmp_path_factory.mktemp("zoo")
    cache: dict[str, Path] = {}

    def export(family: str, dynamic_batch: bool = False, **variant) -> Path:
        key = json.dumps([family, dynamic_batch, variant], sort_keys=True)
        if key not in cache:
            module, shape = zoo.build(family, zoo.get_family(family).tiny | variant)
            name = f"{family}-{len(cache)}{'-dyn' if dynamic_batch else ''}.onnx"
            cache[key] = zoo.export_onnx(module, shape, root / name, dynamic_batch)
        return cache[key]

    return export


def profile_models(paths: list[Path], runs: int = 20, backend: str = "onnxruntime-cpu"
                   ) -> list[dict]:
    """Measure each model on ``backend`` (1 thread, in this process: fast enough for a test)
    and attribute its profiled node times to the kernels the backend's rules find."""
    from edgemeter.backends import get_backend
    from edgemeter.backends.kernel_times import kernel_times
    from edgemeter.importers import load_graph
    from edgemeter.kernels import detect, load_rules

    runtime = get_backend(backend, threads=1)
    rules = load_rules(runtime.rules)
    profiled = []
    for path in paths:
        runner = runtime.load(path)
        for _ in range(5):
            runner.run()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            runner.run()
            times.append(1e3 * (time.perf_counter() - start))
        node_times = runner.node_times(runs)
        graph = load_graph(path)
        kernels = detect(graph, rules)
        found = kernel_times(graph, kernels, node_times, runner.node_origins())
        runner.close()
        # The profiler inflates tiny kernels: keep its shares, take the total from timed runs.
        median = statistics.median(times)
        shares = np.array([k["latency_ms"] for k in found.kernels]) / found.total_ms
        profiled.append({"path": path, "backend": backend, "settings": runtime.settings(),
                         "rules": runtime.rules, "distribution": runtime.requires,
                         "median_ms": median, "kernels": kernels,
                         "kernel_ms": list(shares * median)})
    return profiled


def build_package(profiled: list[dict], skip_groups: tuple[str, ...] = (), name: str = "tiny-ort",
                  version: str = "0.1"):
    """A small real predictor for the backend ``profiled`` was measured on: a 10-tree forest per
    regressor group on in-context kernel times, the model term fitted on the same models,
    fallback rates on all kernel rows, the backend settings recorded as a build does."""
    from edgemeter.builder.train import NOT_FEATURES, fit_fallback, fit_model_term
    from edgemeter.kernels.groups import regressor_group
    from edgemeter.predictor import fingerprint
    from edgemeter.predictor.model import Predictor
    from edgemeter.predictor.package import PredictorPackage
    from edgemeter.predictor.regressors import make_regressor

    rows: dict[str, list[dict]] = {}
    for model in profiled:
        for kernel, ms in zip(model["kernels"], model["kernel_ms"]):
            if ms > 0:
                rows.setdefault(regressor_group(kernel.type), []).append(
                    {**kernel.features, "type": kernel.type, "latency_ms": ms})
    regressors, data = {}, {}
    for group, group_rows in sorted(rows.items()):
        if group in skip_groups or len(group_rows) < 3:
            continue
        names = sorted({k for r in group_rows for k in r} - NOT_FEATURES)
        X = np.array([[r.get(n, 0.0) for n in names] for r in group_rows], dtype=float)
        y = np.array([r["latency_ms"] for r in group_rows])
        regressors[group] = make_regressor("rf", n_estimators=10, transform="log").fit(X, y, names)
        data[group] = group_rows
    first = profiled[0]
    runtime = first["distribution"]
    rules = Path(__file__).parents[1] / f"src/edgemeter/data/fusion/{first['rules']}.yaml"
    package = PredictorPackage(
        name=name, version=version, backend=first["backend"], regressors=regressors,
        fusion_rules=rules.read_text(), training_data=data,
        runtime_versions=fingerprint.runtime_versions([runtime]),
        fingerprint=fingerprint.current([runtime]),
        extra={"fallback": fit_fallback([r for g in rows.values() for r in g]),
               "backend_settings": first["settings"]})
    # The model term on the training models' own predictions, as a build does.
    plain = Predictor(package)
    sums = [plain.kernel_latencies(m["kernels"])[0].sum() for m in profiled]
    package.extra["model_term"] = fit_model_term(sums, [len(m["kernels"]) for m in profiled],
                                                 [m["median_ms"] for m in profiled])
    return package


@pytest.fixture(scope="session")
def tiny_predictor(zoo_onnx, tmp_path_factory) -> Callable[[str], dict]:
    """``tiny_predictor(backend) -> {"paths", "profiled", "package", "folder"}``: the training
    models, their profiles and the package (named by ``TINY_NAMES``, version 0.1) saved as a
    folder; built once per backend and session."""
    from edgemeter.predictor.package import save_package

    cache: dict[str, dict] = {}

    def get(backend: str) -> dict:
        if backend not in cache:
            paths = [zoo_onnx(f) for f in TRAIN_FAMILIES]
            profiled = profile_models(paths, backend=backend)
            package = build_package(profiled, name=TINY_NAMES[backend])
            folder = save_package(package, tmp_path_factory.mktemp("pkg") / package.name)
            cache[backend] = {"paths": paths, "profiled": profiled, "package": package,
                              "folder": folder}
        return cache[backend]

    return get


@pytest.fixture
def round_order(monkeypatch) -> list[str]:
    """The model (file stem) of every timing round run, in order; the real rounds still run."""
    from edgemeter.backends import protocol

    order: list[str] = []
    real = protocol.Rounds.next_round

    def recording(self):
        order.append(Path(self.result.model).stem)
        return real(self)

    monkeypatch.setattr(protocol.Rounds, "next_round", recording)
    return order
