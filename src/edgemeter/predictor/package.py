"""The predictor package: everything needed to predict for one device+runtime, as plain data.

A package is a folder, or the same files in a .zip::

    manifest.json            name, version, backend, runtimes, hardware fingerprint, kernels with
                             their features and accuracy, file checksums, format version
    fusion_rules.yaml        the rules kernel detection uses, copied verbatim from the build
    regressors/<kernel>.npz  tree arrays (see edgemeter.predictor.regressors), no pickle
    data/<kernel>.csv        the training data, so anyone can retrain or audit

Packages are shared like data files, so loading one executes no code from it: JSON, YAML through
``safe_load``, .npz through ``allow_pickle=False``, and every file is checked against the
manifest's SHA-256 before use. A package that is not right fails with one line naming the file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgemeter import __version__
from edgemeter.errors import ConfigError, ModelError
from edgemeter.predictor import fingerprint as fp
from edgemeter.predictor.batch import KernelBatchPredictor
from edgemeter.predictor.regressors import TreeRegressor, load_regressor

FORMAT = "edgemeter-predictor/1"
MANIFEST = "manifest.json"
RULES = "fusion_rules.yaml"
# Names become file and folder names: no separators, no leading dot, nothing odd.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
# A member larger than this is not a predictor file, whatever the zip claims.
_MAX_FILE_BYTES = 256 << 20

T = TypeVar("T")


def regressor_file(kernel: str) -> str:
    return f"regressors/{kernel}.npz"


def data_file(kernel: str) -> str:
    return f"data/{kernel}.csv"


def check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"bad {what} {value!r}: use letters, digits and . _ + - "
                          "(not starting with . _ + -)")
    return value


@dataclass
class PredictorPackage:
    """A latency predictor for one backend: a regressor per kernel type plus its provenance.

    ``regressors`` maps kernel type → regressor and ``training_data`` kernel type → rows
    (dicts); a loaded package reads each CSV only when asked, and each regressor too when
    loaded with ``lazy=True``. ``missing_kernels`` names kernel types the build could not
    train, with why. ``extra`` is free-form JSON for later stages (kept verbatim through save
    and load).
    """

    name: str
    version: str
    backend: str
    regressors: Mapping[str, TreeRegressor]
    fusion_rules: str
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    training_data: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    runtime_versions: dict[str, str | None] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    missing_kernels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    edgemeter_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    _batches: dict[str, KernelBatchPredictor] = field(default_factory=dict, init=False,
                                                      repr=False, compare=False)

    @property
    def kernels(self) -> list[str]:
        return sorted(self.regressors)

    def feature_names(self, kernel: str) -> list[str]:
        return list(self.regressors[kernel].feature_names_)

    def rules(self) -> Any:
        """The fusion rules parsed for kernel detection (a ``FusionRules``)."""
        from edgemeter.kernels.rules import read_rules

        return read_rules(self.fusion_rules, source=f"{self.label}: {RULES}")

    def machine_differences(self, machine: dict[str, Any] | None = None) -> list[str]:
        """How this machine (or ``machine``) differs from the one the predictor was built on."""
        if machine is None:
            return fp.differences(self.fingerprint, self.runtime_versions)
        return fp.compare(self.fingerprint, machine)

    def batch(self, engine: str = "numpy") -> KernelBatchPredictor:
        """All regressors for one-pass prediction with ``engine`` (built on first use, then
        shared by every predictor of this package)."""
        batch = self._batches.get(engine)
        if batch is None:
            batch = self._batches[engine] = KernelBatchPredictor(self.regressors, engine)
        return batch

    def predict_kernels(self, types: Sequence[str],
                        features: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Latency (ms) of each kernel from its type and feature dict, all types in one
        vectorised pass; NaN for a type without a regressor (see ``missing_kernels``)."""
        return self.batch().predict_rows(types, features)

    @property
    def label(self) -> str:
        return f"predictor {self.name} {self.version}"

    def to_manifest(self, files: dict[str, str]) -> dict[str, Any]:
        kernels = {}
        for kernel in self.kernels:
            regressor = self.regressors[kernel]
            kernels[kernel] = {
                "algo": regressor.algo,
                "features": list(regressor.feature_names_),
                "accuracy": self.accuracy.get(kernel, {}),
                "samples": len(self.training_data.get(kernel, ())),
            }
        return {
            "format": FORMAT, "name": self.name, "version": self.version,
            "backend": self.backend, "created": self.created,
            "edgemeter_version": self.edgemeter_version,
            "runtime_versions": self.runtime_versions, "fingerprint": self.fingerprint,
            "kernels": kernels, "missing_kernels": self.missing_kernels, "extra": self.extra,
            "files": files,
        }


# -- saving -------------------------------------------------------------------------------------

def save_package(package: PredictorPackage, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``package`` as a folder, or as a zip when ``path`` ends in ``.zip``.

    The package is written beside its destination and moved into place at the end, so an
    interrupted save never leaves a half-written package behind.
    """
    path = Path(path)
    check_name("predictor name", package.name)
    check_name("predictor version", package.version)
    for kernel in [*package.regressors, *package.missing_kernels]:
        check_name("kernel type", kernel)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists (pass overwrite=True to replace it)")
    files = _package_files(package)
    files[MANIFEST] = json.dumps(package.to_manifest({k: _sha256(v) for k, v in files.items()}),
                                 indent=2, sort_keys=False).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if path.suffix == ".zip":
            staged = tmp / path.name
            # LZMA: a quarter smaller than deflate on the training CSVs, and it reads a
            # package's forests in milliseconds.
            with zipfile.ZipFile(staged, "w", zipfile.ZIP_LZMA) as zf:
                for name, data in files.items():
                    zf.writestr(name, data)
        else:
            staged = tmp / "package"
            for name, data in files.items():
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(data)
        if path.exists():
            _remove(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _package_files(package: PredictorPackage) -> dict[str, bytes]:
    files = {RULES: package.fusion_rules.encode()}
    for kernel in package.kernels:
        buffer = io.BytesIO()
        package.regressors[kernel].save(buffer)
        files[regressor_file(kernel)] = buffer.getvalue()
        rows = package.training_data.get(kernel)
        if rows:
            files[data_file(kernel)] = _csv_bytes(rows)
    return files


def _csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    # Seven significant digits: timings carry two or three, and 17 digits made the CSVs the
    # biggest part of a package.
    writer.writerows({k: float(f"{v:.7g}") if isinstance(v, float) else v for k, v in row.items()}
                     for row in rows)
    return text.getvalue().encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


# -- loading ------------------------------------------------------------------------------------

class _Files:
    """Read-only access to a package's files, in a folder or a zip, checked against the
    manifest's checksums."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None
        self.sums: dict[str, str] = {}

    def fail(self, message: str) -> ModelError:
        # Parsers' messages (YAML's above all) span lines; the CLI promises one.
        return ModelError(" ".join(f"predictor package {self.path}: {message}".split()))

    def read(self, name: str) -> bytes:
        try:
            if self.zip is not None:
                info = self.zip.getinfo(name)
                if info.file_size > _MAX_FILE_BYTES:
                    raise self.fail(f"{name} is implausibly large ({info.file_size} bytes)")
                data = self.zip.read(info)
            else:
                data = (self.path / name).read_bytes()
        except (KeyError, FileNotFoundError, IsADirectoryError):
            raise self.fail(f"{name} is missing") from None
        # RuntimeError and NotImplementedError: zipfile lacks the compression method (a Python
        # built without lzma, which the shipped zips use, says "requires the (missing) lzma").
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError,
                NotImplementedError) as exc:
            raise self.fail(f"cannot read {name}: {exc}") from None
        if name != MANIFEST:
            if name not in self.sums:
                raise self.fail(f"{name} is not listed in {MANIFEST}")
            if _sha256(data) != self.sums[name]:
                raise self.fail(f"{name} does not match its checksum in {MANIFEST} "
                                "(corrupt or modified)")
        return data


class _OnFirstUse(Mapping[str, T]):
    """Kernel type → what ``read`` makes of that type's file, read on first access (files are
    checked against the manifest as they are read)."""

    def __init__(self, kernels: list[str], read: Callable[[str], T]):
        self._kernels, self._read = kernels, read
        self._cache: dict[str, T] = {}

    def __getitem__(self, kernel: str) -> T:
        if kernel not in self._cache:
            if kernel not in self._kernels:
                raise KeyError(kernel)
            self._cache[kernel] = self._read(kernel)
        return self._cache[kernel]

    def __contains__(self, kernel: object) -> bool:  # Mapping's would read the file
        return kernel in self._kernels

    def __iter__(self) -> Iterator[str]:
        return iter(self._kernels)

    def __len__(self) -> int:
        return len(self._kernels)


def _read_regressor(files: _Files, kernel: str, features: list[str]) -> TreeRegressor:
    name = regressor_file(kernel)
    regressor = load_regressor(io.BytesIO(files.read(name)),
                               label=f"predictor package {files.path}: {name}")
    if regressor.feature_names_ != features:
        raise files.fail(f"{name} uses features {regressor.feature_names_}, the manifest says "
                         f"{features}")
    return regressor


def _read_csv(files: _Files, kernel: str) -> list[dict[str, Any]]:
    text = files.read(data_file(kernel)).decode()
    return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def _number(text: str) -> int | float | str | None:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The validated manifest alone (cheap: for listings)."""
    return _manifest(_open(Path(path)))


def _open(path: Path) -> _Files:
    if not path.exists():
        raise ConfigError(f"no predictor package at {path}")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ModelError(f"predictor package {path}: not a folder or a .zip")
    try:
        return _Files(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"predictor package {path}: cannot open ({exc})") from None


# Manifest keys and the JSON types they must have.
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "name": str, "version": str, "backend": str, "created": str,
    "edgemeter_version": str, "runtime_versions": dict, "fingerprint": dict, "kernels": dict,
    "missing_kernels": dict, "extra": dict, "files": dict,
}


def _manifest(files: _Files) -> dict[str, Any]:
    try:
        manifest = json.loads(files.read(MANIFEST))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise files.fail(f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise files.fail(f"{MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise files.fail(f"format {manifest.get('format')!r} is not {FORMAT!r} (made by another "
                         "edgemeter version?)")
    for key, kind in _MANIFEST_TYPES.items():
        if not isinstance(manifest.get(key), kind):
            raise files.fail(f"{MANIFEST}: '{key}' is missing or not a {kind.__name__}")
    try:
        for what in ("name", "version"):
            check_name(f"predictor {what}", manifest[what])
        for kernel in [*manifest["kernels"], *manifest["missing_kernels"]]:
            check_name("kernel type", kernel)
    except ConfigError as exc:
        raise files.fail(f"{MANIFEST}: {exc}") from None
    for kernel, entry in manifest["kernels"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("features"), list)
                and isinstance(entry.get("accuracy"), dict)):
            raise files.fail(f"{MANIFEST}: kernel '{kernel}' needs 'features' and 'accuracy'")
    if not all(isinstance(v, str) for v in manifest["files"].values()):
        raise files.fail(f"{MANIFEST}: 'files' must map file names to SHA-256 strings")
    files.sums = manifest["files"]
    return manifest


def load_package(path: str | Path, lazy: bool = False) -> PredictorPackage:
    """Load and check a package folder or .zip. Nothing in it is executed.

    ``lazy`` checks the manifest and rules now and each regressor and CSV when first used (a
    model needs a few of a package's kernel types, and reading them all made ``edgemeter
    predict`` take about 1.2 times as long); a damaged file then fails where it is used, as
    clearly."""
    files = _open(Path(path))
    manifest = _manifest(files)
    from edgemeter.kernels.rules import read_rules

    try:
        rules = files.read(RULES).decode()
        read_rules(rules, source=RULES)
    except UnicodeDecodeError as exc:
        raise files.fail(f"{RULES} is not valid YAML ({exc})") from None
    except ConfigError as exc:
        raise files.fail(str(exc)) from None
    kernels = manifest["kernels"]
    regressors = _OnFirstUse(list(kernels), lambda k: _read_regressor(files, k,
                                                                      kernels[k]["features"]))
    training_data = _OnFirstUse([k for k in kernels if data_file(k) in files.sums],
                                lambda k: _read_csv(files, k))
    if not lazy:  # every file checked now, so a corrupt one surfaces at load, not mid-run
        for kernel in regressors:
            regressors[kernel]  # noqa: B018 - read, checked and parsed here
        for kernel in training_data:
            files.read(data_file(kernel))
    return PredictorPackage(
        name=manifest["name"], version=manifest["version"], backend=manifest["backend"],
        regressors=regressors, fusion_rules=rules,
        accuracy={k: e["accuracy"] for k, e in kernels.items()},
        training_data=training_data,
        runtime_versions=manifest["runtime_versions"], fingerprint=manifest["fingerprint"],
        missing_kernels=manifest["missing_kernels"], created=manifest["created"],
        edgemeter_version=manifest["edgemeter_version"], extra=manifest["extra"],
        source=Path(path))
