"""Predictor packages: round trip, refusal of corrupt or unsafe packages, registry, CLI,
hardware fingerprint."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgemeter.cli import main
from edgemeter.errors import ConfigError, ModelError
from edgemeter.predictor import fingerprint, registry
from edgemeter.predictor.package import (
    MANIFEST, PredictorPackage, data_file, load_package, regressor_file, save_package,
)
from edgemeter.predictor.regressors import HALF_LEAF_TOLERANCE
from edgemeter.predictor.training import train_kernel_regressor

RULES = (Path(__file__).parents[1] / "src/edgemeter/data/fusion/onnxruntime-cpu.yaml").read_text()
FEATURES = {"conv-relu": ["HW", "CIN", "COUT", "FLOPS"], "add": ["HW", "C", "BYTES"]}


def rows_for(kernel: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hw = int(rng.choice([7, 14, 28]))
        c1, c2 = int(rng.integers(8, 128)), int(rng.integers(8, 128))
        if kernel == "conv-relu":
            feats = {"HW": hw, "CIN": c1, "COUT": c2, "FLOPS": 18 * hw * hw * c1 * c2}
            ms = 1e-8 * feats["FLOPS"] + 0.02
        else:
            feats = {"HW": hw, "C": c1, "BYTES": 12 * hw * hw * c1}
            ms = 2e-7 * feats["BYTES"] + 0.005
        rows.append(feats | {"latency_ms": ms * (1 + 0.02 * rng.standard_normal()), "id": f"k{i}"})
    return rows


def make_package(name: str = "ort-test", version: str = "1.0") -> PredictorPackage:
    regressors, accuracy, data = {}, {}, {}
    for seed, (kernel, algo) in enumerate((("conv-relu", "rf"), ("add", "gb"))):
        data[kernel] = rows_for(kernel, 60, seed)
        regressors[kernel], accuracy[kernel] = train_kernel_regressor(
            data[kernel], FEATURES[kernel], algo=algo, n_estimators=15)
    return PredictorPackage(
        name=name, version=version, backend="onnxruntime-cpu-1t", regressors=regressors,
        fusion_rules=RULES, accuracy=accuracy, training_data=data,
        runtime_versions={"onnxruntime": "1.32.0"},
        fingerprint=fingerprint.current(["onnxruntime"]),
        missing_kernels={"softmax": "time budget spent before training"},
        extra={"fallback": {"gflops": 12.5}})


@pytest.fixture(scope="module")
def package() -> PredictorPackage:
    return make_package()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty user registry and an empty shipped folder."""
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path / "home"))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(registry, "shipped_dir", lambda: shipped)
    return tmp_path


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_round_trip(package, tmp_path, suffix):
    path = save_package(package, tmp_path / f"pkg{suffix}")
    assert path.is_dir() == (suffix == "")
    loaded = load_package(path)
    assert (loaded.name, loaded.version) == ("ort-test", "1.0")
    assert loaded.backend == "onnxruntime-cpu-1t"
    assert loaded.kernels == ["add", "conv-relu"]
    assert loaded.fusion_rules == RULES  # copied verbatim
    assert loaded.rules().name == "onnxruntime-cpu"
    assert loaded.accuracy == package.accuracy and loaded.extra == package.extra
    assert loaded.missing_kernels == {"softmax": "time budget spent before training"}
    assert loaded.fingerprint == package.fingerprint and loaded.created == package.created
    assert loaded.machine_differences() == []  # same machine, same onnxruntime
    for kernel in package.kernels:
        assert loaded.feature_names(kernel) == FEATURES[kernel]
        rows = package.training_data[kernel]
        # CSV keeps text, integers and floats to seven significant digits.
        assert [{k: v for k, v in r.items() if not isinstance(v, float)} for r in rows] == \
            [{k: v for k, v in r.items() if not isinstance(v, float)}
             for r in loaded.training_data[kernel]]
        for key in ("latency_ms",):
            np.testing.assert_allclose([r[key] for r in loaded.training_data[kernel]],
                                       [r[key] for r in rows], rtol=5e-7)
        np.testing.assert_allclose(loaded.regressors[kernel].predict_rows(rows),
                                   package.regressors[kernel].predict_rows(rows),
                                   rtol=HALF_LEAF_TOLERANCE)  # leaves stored as float16
    manifest = json.loads((path / MANIFEST).read_text()) if path.is_dir() else \
        json.loads(zipfile.ZipFile(path).read(MANIFEST))
    assert manifest["format"] == "edgemeter-predictor/1"
    assert manifest["kernels"]["conv-relu"]["samples"] == 60
    assert set(manifest["files"]) == {"fusion_rules.yaml", *(regressor_file(k) for k in FEATURES),
                                      *(data_file(k) for k in FEATURES)}


def test_zip_is_lzma_and_deflated_packages_still_load(package, tmp_path):
    path = save_package(package, tmp_path / "pkg.zip")
    with zipfile.ZipFile(path) as zf:
        assert {info.compress_type for info in zf.infolist()} == {zipfile.ZIP_LZMA}
        # The forests go in raw: LZMA packs them tighter than the .npz's own deflate.
        with np.load(io.BytesIO(zf.read(regressor_file("add")))) as arrays:
            assert {i.compress_type for i in arrays.zip.infolist()} == {zipfile.ZIP_STORED}
        files = {info.filename: zf.read(info) for info in zf.infolist()}
    # A package saved before 2026-12-04 23:54: deflated members, deflated .npz inside. The
    # checksums cover the old bytes, so the manifest is rewritten with them.
    old = tmp_path / "old.zip"
    for name in [n for n in files if n.endswith(".npz")]:
        with np.load(io.BytesIO(files[name])) as arrays:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **{k: arrays[k] for k in arrays.files})
        files[name] = buffer.getvalue()
    manifest = json.loads(files[MANIFEST])
    manifest["files"] = {n: hashlib.sha256(files[n]).hexdigest() for n in manifest["files"]}
    files[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    rows = rows_for("conv-relu", 20, 3)
    np.testing.assert_array_equal(load_package(old).regressors["conv-relu"].predict_rows(rows),
                                  load_package(path).regressors["conv-relu"].predict_rows(rows))


def test_predict_kernels_in_one_pass_equals_each_regressor(package, tmp_path):
    loaded = load_package(save_package(package, tmp_path / "pkg.zip"))
    conv, add = rows_for("conv-relu", 70, 7), rows_for("add", 5, 8)
    # Interleaved types, one without a regressor, and more conv rows than the dedup threshold.
    types = ["conv-relu"] * 70 + ["softmax"] + ["add"] * 5
    latencies = loaded.predict_kernels(types, conv + [{"ROWS": 1, "COLS": 10}] + add)
    np.testing.assert_allclose(latencies[:70], loaded.regressors["conv-relu"].predict_rows(conv),
                               rtol=1e-6)
    np.testing.assert_allclose(latencies[71:], loaded.regressors["add"].predict_rows(add),
                               rtol=1e-6)
    assert np.isnan(latencies[70])  # no regressor: left for the caller's fallback, not zero
    assert loaded.predict_kernels([], []).size == 0
    with pytest.raises(ConfigError, match="no feature 'BYTES'"):
        loaded.predict_kernels(["add"], [{"HW": 7, "C": 8}])


def test_lazy_load_reads_each_regressor_when_first_used(package, tmp_path):
    """A lazy package reads only the regressors its kernels need: a damaged one it never uses
    costs nothing, and fails with the eager load's one line once a kernel needs it. Types
    merge into the numpy engine as they come, predicting as the regressors do alone."""
    path = save_package(package, tmp_path / "pkg")
    (path / regressor_file("add")).write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ModelError, match="regressors/add.npz does not match its checksum"):
        load_package(path)
    lazy = load_package(path, lazy=True)
    assert lazy.kernels == ["add", "conv-relu"] and "add" in lazy.regressors
    conv = rows_for("conv-relu", 70, 7)
    np.testing.assert_allclose(lazy.predict_kernels(["conv-relu"] * 70, conv),
                               package.regressors["conv-relu"].predict_rows(conv),
                               rtol=HALF_LEAF_TOLERANCE)
    with pytest.raises(ModelError, match="regressors/add.npz does not match its checksum") \
            as info:
        lazy.predict_kernels(["add"], rows_for("add", 1, 8))
    assert str(path) in str(info.value) and "\n" not in str(info.value)

    intact = load_package(save_package(package, tmp_path / "intact.zip"), lazy=True)
    add = rows_for("add", 5, 8)
    first = intact.predict_kernels(["add"] * 5, add)  # merged alone, then with conv-relu
    both = intact.predict_kernels(["conv-relu"] * 70 + ["add"] * 5, conv + add)
    np.testing.assert_array_equal(both[70:], first)
    np.testing.assert_allclose(both[:70], intact.regressors["conv-relu"].predict_rows(conv),
                               rtol=1e-6)


def test_save_refuses_existing_path_and_bad_names(package, tmp_path):
    save_package(package, tmp_path / "pkg")
    with pytest.raises(ConfigError, match="already exists"):
        save_package(package, tmp_path / "pkg")
    save_package(package, tmp_path / "pkg", overwrite=True)
    bad = make_package(name="../escape")
    with pytest.raises(ConfigError, match="bad predictor name '../escape'"):
        save_package(bad, tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # nothing half-written left


def _edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def _rehash(path: Path, name: str) -> None:
    """Make the manifest agree with a tampered file, so the file's content is what is tested."""
    digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
    _edit_manifest(path, lambda m: m["files"].__setitem__(name, digest))


def _evil_npz(path: Path) -> None:
    with np.load(path) as arrays:
        content = {k: arrays[k] for k in arrays.files}
    content["value"] = np.array([eval, "payload"], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=True, **content)
    path.write_bytes(buffer.getvalue())


CORRUPTIONS = {
    "no manifest": (lambda p: (p / MANIFEST).unlink(), "manifest.json is missing"),
    "manifest not JSON": (lambda p: (p / MANIFEST).write_text("{oops"), "not valid JSON"),
    "other format": (lambda p: _edit_manifest(
        p, lambda m: m.update(format="edgemeter-predictor/9")), "format 'edgemeter-predictor/9'"),
    "no backend": (lambda p: _edit_manifest(p, lambda m: m.pop("backend")), "'backend' is missing"),
    "path in kernel name": (lambda p: _edit_manifest(
        p, lambda m: m["kernels"].update({"../../x": m["kernels"]["add"]})), "bad kernel type"),
    "regressor deleted": (lambda p: (p / regressor_file("add")).unlink(),
                          "regressors/add.npz is missing"),
    "regressor modified": (lambda p: (p / regressor_file("add")).write_bytes(b"PK\x03\x04junk"),
                           "regressors/add.npz does not match its checksum"),
    "pickle inside npz": (lambda p: (_evil_npz(p / regressor_file("add")),
                                     _rehash(p, regressor_file("add"))),
                          "regressors/add.npz: not a valid regressor file"),
    "plain pickle as npz": (lambda p: ((p / regressor_file("add")).write_bytes(
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."), _rehash(p, regressor_file("add"))),
        "not a valid regressor file"),
    "features disagree": (lambda p: _edit_manifest(
        p, lambda m: m["kernels"]["add"].update(features=["HW"])), "the manifest says"),
    "csv modified": (lambda p: (p / data_file("add")).write_text("HW\n1\n"),
                     "data/add.csv does not match"),
    "rules not YAML": (lambda p: ((p / "fusion_rules.yaml").write_text("a: [b"),
                                  _rehash(p, "fusion_rules.yaml")), "not valid YAML"),
    "rules invalid": (lambda p: ((p / "fusion_rules.yaml").write_text("format: nope\n"),
                                 _rehash(p, "fusion_rules.yaml")), "key 'format' must be"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_package_fails_with_one_clear_line(package, tmp_path, case):
    path = save_package(package, tmp_path / "pkg")
    damage, message = CORRUPTIONS[case]
    damage(path)
    with pytest.raises(ModelError, match=message) as info:
        load_package(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_zip_and_missing_path(package, tmp_path):
    path = save_package(package, tmp_path / "pkg.zip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated download
    with pytest.raises(ModelError, match="not a folder or a .zip"):
        load_package(path)
    with pytest.raises(ConfigError, match="no predictor package at"):
        load_package(tmp_path / "nowhere")


def test_a_python_without_lzma_gets_one_line(package, tmp_path, monkeypatch):
    path = save_package(package, tmp_path / "pkg.zip")
    monkeypatch.setattr(zipfile, "lzma", None)  # as in a Python built without liblzma
    with pytest.raises(ModelError, match=r"pkg.zip: cannot read manifest.json: .*missing\) lzma"):
        load_package(path)


def test_registry_register_find_unregister(package, home, tmp_path):
    assert registry.list_predictors() == []
    with pytest.raises(ConfigError, match="no default predictor is shipped.*none installed"):
        registry.find_predictor()

    for version in ("1.9", "1.10"):
        pkg = make_package(version=version)
        registry.register(save_package(pkg, tmp_path / f"src-{version}.zip"))
    found = registry.list_predictors()
    assert [(p.name, p.version, p.origin) for p in found] == [
        ("ort-test", "1.10", "user"), ("ort-test", "1.9", "user")]
    assert found[0].kernels == ("add", "conv-relu") and found[0].backend == "onnxruntime-cpu-1t"
    assert found[0].path == home / "home" / "predictors" / "ort-test" / "1.10"

    assert registry.find_predictor("ort-test").version == "1.10"  # newest, not "1.9" > "1.10"
    assert registry.find_predictor("ort-test", "1.9").version == "1.9"
    loaded = load_package(registry.find_predictor("ort-test").path)
    assert [r["id"] for r in loaded.training_data["add"]] == \
        [r["id"] for r in package.training_data["add"]]
    with pytest.raises(ConfigError, match="unknown predictor 'nope' .*ort-test 1.10, ort-test 1.9"):
        registry.find_predictor("nope")
    with pytest.raises(ConfigError, match="no version '2.0' .*available: 1.10, 1.9"):
        registry.find_predictor("ort-test", "2.0")

    with pytest.raises(ConfigError, match="already registered"):
        registry.register(tmp_path / "src-1.9.zip")
    registry.register(tmp_path / "src-1.9.zip", overwrite=True)

    assert [p.version for p in registry.unregister("ort-test", "1.9")] == ["1.9"]
    assert [p.version for p in registry.list_predictors()] == ["1.10"]
    with pytest.raises(ConfigError, match="no predictor 'ort-test' version '1.9'"):
        registry.unregister("ort-test", "1.9")
    registry.unregister("ort-test")
    assert registry.list_predictors() == []
    assert not (home / "home" / "predictors" / "ort-test").exists()


def test_registry_shipped_default_and_broken_entries(package, home):
    shipped = registry.shipped_dir()
    save_package(package, shipped / "ort-test" / "1.0")
    save_package(make_package("ort-2t", "0.1"), shipped / "ort-2t" / "0.1.zip")  # zipped
    (shipped / "index.json").write_text(json.dumps({"default": "ort-test"}))
    default = registry.find_predictor()
    assert (default.name, default.origin, default.default) == ("ort-test", "shipped", True)
    zipped = registry.find_predictor("ort-2t")
    assert (zipped.version, zipped.backend, zipped.problem) == ("0.1", "onnxruntime-cpu-1t", None)
    assert load_package(zipped.path).name == "ort-2t"

    with pytest.raises(ConfigError, match="is shipped with edgemeter"):
        registry.register(shipped / "ort-test" / "1.0")
    with pytest.raises(ConfigError, match="cannot be unregistered"):
        registry.unregister("ort-test")

    broken = registry.user_dir() / "half" / "1.0"
    broken.mkdir(parents=True)
    (broken / MANIFEST).write_text("{")
    entry = next(p for p in registry.list_predictors() if p.name == "half")
    assert "not valid JSON" in entry.problem
    with pytest.raises(ConfigError, match="predictor half 1.0 is broken"):
        registry.find_predictor("half")
    with pytest.raises(ConfigError, match=r"available: ort-2t 0.1, ort-test 1.0\)$"):
        registry.find_predictor("none")
    registry.unregister("half")  # the way to clean up a broken registration


def test_without_a_version_the_one_built_on_a_machine_like_this(home, capsys):
    """Each machine kind a predictor is built on ships as a version of its own: the newest
    version built elsewhere loses to an older one built on a machine like this one."""
    shipped = registry.shipped_dir()
    here = make_package("ort-test", "1.0")
    elsewhere = make_package("ort-test", "1.1")
    elsewhere.fingerprint = {**here.fingerprint, "cpu_id": "cpu family 99, model 1"}
    for pkg in (here, elsewhere):
        save_package(pkg, shipped / "ort-test" / f"{pkg.version}.zip")
    assert registry.find_predictor("ort-test").version == "1.0"
    assert registry.find_predictor("ort-test", "1.1").version == "1.1"  # asked for by name
    assert "CPU generation: cpu family 99, model 1 (predictor)" in \
        registry.find_predictor("ort-test", "1.1").machine_differences()[0]
    (shipped / "index.json").write_text(json.dumps({"default": "ort-test"}))
    code, out, _ = run_cli(capsys, "predictors", "list", "--json")
    assert code == 0 and [(p["version"], p["default"], p["this_machine"])
                          for p in json.loads(out)] == [("1.1", False, False), ("1.0", True, True)]
    code, out, _ = run_cli(capsys, "predictors", "list")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["ort-test", "1.1", "onnxruntime-cpu-1t"], ["*", "ort-test", "1.0"]]

    # Built on no machine like this one: the nearest, the newest of equals (and it warns).
    here.fingerprint = {**here.fingerprint, "cpu_count": 128}
    save_package(here, shipped / "ort-test" / "1.0.zip", overwrite=True)
    assert registry.find_predictor("ort-test").version == "1.1"
    farther = make_package("ort-test", "1.2")
    farther.fingerprint = {**elsewhere.fingerprint, "cpu_model": "Another CPU"}
    save_package(farther, shipped / "ort-test" / "1.2.zip")
    assert registry.find_predictor("ort-test").version == "1.1"
    assert len(registry.find_predictor("ort-test", "1.2").machine_differences()) == 2


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_predictors(package, home, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "predictors", "list")
    assert code == 0 and "No predictors installed" in out
    anchored = replace(package, extra={**package.extra, "anchor": {
        "version": 1, "anchor_ms": 0.4, "sensitivity": {"per_log_flops": -0.2, "centre": 20.0}}})
    source = save_package(anchored, tmp_path / "mine.zip")

    code, out, _ = run_cli(capsys, "predictors", "register", str(source))
    assert code == 0 and "Registered ort-test 1.0 (onnxruntime-cpu-1t, 2 kernels)" in out
    code, out, _ = run_cli(capsys, "predictors", "list")
    assert code == 0 and "ort-test" in out and "onnxruntime-cpu-1t" in out and "user" in out

    code, out, _ = run_cli(capsys, "predictors", "info", "ort-test")
    assert code == 0
    assert "conv-relu" in out and "RMSPE" in out and "missing:   softmax" in out
    assert "warning" not in out  # built on this very machine
    assert "anchor:    0.400 ms" in out and "slope 1 - 0.200 · (ln FLOPs - 20.00)" in out
    code, out, _ = run_cli(capsys, "predictors", "info", "ort-test", "--json")
    assert json.loads(out)["kernels"]["add"]["features"] == FEATURES["add"]

    code, _, err = run_cli(capsys, "predictors", "info", "ort-test", "--version", "9")
    assert code == 2 and err.strip() == ("edgemeter: error: predictor 'ort-test' has no version "
                                         "'9' (available: 1.0)")
    broken = tmp_path / "broken"
    shutil.copytree(home / "home" / "predictors" / "ort-test" / "1.0", broken)
    (broken / regressor_file("add")).write_bytes(b"")
    code, _, err = run_cli(capsys, "predictors", "register", str(broken))
    assert code == 2 and "does not match its checksum" in err and err.count("\n") == 1

    code, out, _ = run_cli(capsys, "predictors", "unregister", "ort-test")
    assert code == 0 and "Unregistered ort-test 1.0" in out


def test_fingerprint_compare():
    here = fingerprint.current(["onnxruntime", "surely-not-installed-pkg"])
    assert isinstance(here["cpu_count"], int) and here["cpu_model"]
    assert here["cpu_id"] is None or here["cpu_id"].startswith(("cpu family", "cpu implementer"))
    assert here["runtimes"]["surely-not-installed-pkg"] is None
    assert set(here["cpu_flags"]) <= set(fingerprint.RELEVANT_FLAGS)
    assert fingerprint.compare(here, here) == []

    built = {"cpu_model": "Intel Xeon Platinum 8480+", "cpu_count": 2,
             "cpu_flags": ["avx2", "avx512f", "amx_tile"], "runtimes": {"onnxruntime": "1.31.0"}}
    machine = {"cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_flags": ["avx2", "avx512f"],
               "runtimes": {"onnxruntime": "1.32.0", "openvino": "2026.4"}}
    assert fingerprint.compare(built, machine) == [
        "CPU model: Intel Xeon Platinum 8480+ (predictor) vs AMD EPYC (this machine)",
        "CPU features only on the predictor's machine: amx_tile",
        "onnxruntime: 1.31.0 (predictor) vs 1.32.0 (this machine)",
    ]
    # Fields one side lacks are not compared: an old fingerprint raises no false alarm.
    assert fingerprint.compare({"cpu_model": "AMD EPYC"}, machine) == []
    # The same model name on two CPU generations (a VM's "AMD EPYC": Zen 4 and Zen 5).
    assert fingerprint.compare({"cpu_model": "AMD EPYC", "cpu_id": "cpu family 26, model 2"},
                               {**machine, "cpu_id": "cpu family 25, model 17"}) == [
        "CPU generation: cpu family 26, model 2 (predictor) vs cpu family 25, model 17 "
        "(this machine)"]


def test_the_shipped_predictors_are_whole_small_and_each_picked_somewhere(tmp_path,
                                                                          monkeypatch):
    """The package data itself (issue 5: four predictors, well under 20 MB): every shipped
    entry loads its manifest without a problem (an ensemble whose members left it would not),
    and on the machine each was built on it is the one picked, so nothing ships that no CPU
    would use."""
    monkeypatch.setenv("EDGEMETER_HOME", str(tmp_path))  # a developer's registered ones aside
    shipped = [p for p in registry.list_predictors() if p.origin == "shipped"]
    assert {p.name for p in shipped} >= {"onnxruntime-cpu-1t", "onnxruntime-cpu-2t",
                                         "openvino-cpu-f32-1t", "litert-xnnpack-1t"}
    assert registry.default_name() == "onnxruntime-cpu-1t"
    assert [p.label for p in shipped if p.problem] == []
    assert sum(f.stat().st_size for f in registry.shipped_dir().rglob("*") if f.is_file()) < 20e6
    for info in shipped:
        built_on = {**info.fingerprint, "runtimes": {**info.runtime_versions,
                                                     **(info.fingerprint.get("runtimes") or {})}}
        monkeypatch.setattr(fingerprint, "current", lambda runtimes=(), fp=built_on: fp)
        assert registry.find_predictor(info.name).label == info.label
