"""Where predictors live: shipped with edgemeter, or registered by the user.

Shipped predictors sit in ``edgemeter/data/predictors/<name>/<version>.zip`` (or a
``<version>/`` folder, or a ``<version>.json`` ensemble of other versions beside it:
:mod:`edgemeter.predictor.ensemble`) with an ``index.json`` that names the default
(``{"default": "<name>"}``). Registered ones are copied to
``$EDGEMETER_HOME/predictors/<name>/<version>/`` (``EDGEMETER_HOME`` defaults to
``~/.edgemeter``), so they keep working after the original file moves. Listing reads manifests
only; loading a package fully is :func:`edgemeter.predictor.package.load_package`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgemeter.errors import ConfigError, EdgemeterError
from edgemeter.predictor import fingerprint
from edgemeter.predictor.package import check_name, load_package, read_manifest, save_package

INDEX = "index.json"
ENSEMBLE = ".json"  # <name>/<version>.json: an ensemble (edgemeter.predictor.ensemble)


@dataclass(frozen=True)
class PredictorInfo:
    """One installed predictor, from its manifest (``problem`` set when it cannot be read)."""

    name: str
    version: str
    path: Path
    origin: str                 # "shipped" or "user"
    backend: str = ""
    kernels: tuple[str, ...] = ()
    created: str = ""
    default: bool = False
    problem: str | None = None
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    runtime_versions: Mapping[str, Any] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # an ensemble's member versions
    distilled_from: str = ""  # the predictor a distilled package was fitted to

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def machine_differences(self) -> list[str]:
        """How this machine differs from the one the predictor was built on."""
        return fingerprint.differences(dict(self.fingerprint), dict(self.runtime_versions))


def shipped_dir() -> Path:
    return Path(str(resources.files("edgemeter") / "data" / "predictors"))


def user_dir() -> Path:
    home = os.environ.get("EDGEMETER_HOME")
    return (Path(home) if home else Path.home() / ".edgemeter") / "predictors"


def default_name() -> str | None:
    """The shipped default predictor's name, from the shipped index (None if there is none)."""
    index = shipped_dir() / INDEX
    if not index.is_file():
        return None
    try:
        name = json.loads(index.read_text()).get("default")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{index}: unreadable predictor index ({exc})") from None
    return name if isinstance(name, str) else None


def version_key(version: str) -> tuple:
    """Order versions like people do: 1.10 after 1.9, numbers after words ("1.0rc" < "1.0")."""
    return tuple((1, int(part), "") if part.isdigit() else (0, 0, part)
                 for part in re.split(r"[.+-]", version))


def list_predictors() -> list[PredictorInfo]:
    """Every shipped and registered predictor, by name then newest version first."""
    default = default_name()
    found = []
    for origin, root in (("shipped", shipped_dir()), ("user", user_dir())):
        if not root.is_dir():
            continue
        for package in sorted(p for p in root.glob("*/*")
                              if p.is_dir() or p.suffix in (".zip", ENSEMBLE)):
            found.append(_info(package, origin, default))
    # Stable sorts, last key first: by name, newest version first, shipped before user.
    found.sort(key=lambda i: i.origin)
    found.sort(key=lambda i: version_key(i.version), reverse=True)
    return sorted(found, key=lambda i: i.name)


def _info(package: Path, origin: str, default: str | None) -> PredictorInfo:
    """``package`` is ``<name>/<version>``, ``<name>/<version>.zip`` or an ensemble's
    ``<name>/<version>.json`` (described by its first member's manifest)."""
    name = package.parent.name
    version = package.name.removesuffix(".zip").removesuffix(ENSEMBLE)
    members: tuple[str, ...] = ()
    try:
        if package.suffix == ENSEMBLE:
            manifest, members = _ensemble_manifest(package)
        else:
            manifest = read_manifest(package)
    except EdgemeterError as exc:
        return PredictorInfo(name, version, package, origin, problem=str(exc))
    if (manifest["name"], manifest["version"]) != (name, version):
        problem = (f"{package}: manifest says {manifest['name']} {manifest['version']}, "
                   "the path says otherwise")
        return PredictorInfo(name, version, package, origin, problem=problem)
    distilled = manifest["extra"].get("distilled")
    source = distilled.get("from") if isinstance(distilled, dict) else None
    return PredictorInfo(name, version, package, origin, manifest["backend"],
                         tuple(sorted(manifest["kernels"])), manifest["created"],
                         default=(origin == "shipped" and name == default),
                         fingerprint=manifest["fingerprint"],
                         runtime_versions=manifest["runtime_versions"], members=members,
                         distilled_from=source if isinstance(source, str) else "")


def _ensemble_manifest(path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """An ensemble's manifest (its first member's, under the ensemble's name and version, with
    ``members``) and its member versions."""
    from edgemeter.predictor.ensemble import member_paths, read_ensemble

    data = read_ensemble(path)
    manifest = read_manifest(member_paths(path, data)[0])
    members = tuple(data["members"])
    return {**manifest, "name": data["name"], "version": data["version"],
            "members": list(members)}, members


def _available(predictors: list[PredictorInfo]) -> str:
    usable = [p.label for p in predictors if p.problem is None]
    return ", ".join(usable) if usable else "none installed"


def find_predictor(name: str | None = None, version: str | None = None) -> PredictorInfo:
    """The predictor to use: by name (the shipped default when None); unless ``version`` is
    given, the newest version built on a machine like this one (no fingerprint difference),
    else the newest of those whose machine differs from this one in the fewest ways. Unknown
    names and versions raise ConfigError listing what exists.

    A predictor's timings hold for the CPU it was measured on, so each machine kind it is built
    on ships as a version of its own and each machine gets its own without asking; where none
    is its own, the nearest (another generation of the same vendor's CPU rather than another
    vendor's) predicts best."""
    predictors = list_predictors()
    if name is None:
        name = default_name()
        if name is None:
            raise ConfigError("no default predictor is shipped; name one "
                              f"(available: {_available(predictors)})")
    matches = [p for p in predictors if p.name == name]
    if not matches:
        raise ConfigError(f"unknown predictor '{name}' (available: {_available(predictors)})")
    if version is not None:
        matches = [p for p in matches if p.version == version]
        if not matches:
            versions = ", ".join(p.version for p in predictors if p.name == name)
            raise ConfigError(f"predictor '{name}' has no version '{version}' "
                              f"(available: {versions})")
    # Newest first, and min keeps the first of equals.
    best = min((p for p in matches if p.problem is None),
               key=lambda p: len(p.machine_differences()), default=matches[0])
    if best.problem:
        raise ConfigError(f"predictor {best.label} is broken: {best.problem}")
    return best


def register(path: str | Path, overwrite: bool = False) -> PredictorInfo:
    """Check a package (folder or .zip) and copy it into the user's predictors."""
    package = load_package(path)
    existing = {(p.name, p.version): p for p in list_predictors()}
    clash = existing.get((package.name, package.version))
    if clash is not None and clash.origin == "shipped":
        raise ConfigError(f"predictor {clash.label} is shipped with edgemeter; give yours "
                          "another name or version")
    if clash is not None and not overwrite:
        raise ConfigError(f"predictor {clash.label} is already registered "
                          "(pass --force to replace it)")
    target = user_dir() / package.name / package.version
    # Re-written from the loaded (checked) objects rather than copied byte for byte, so what
    # lands in the registry is exactly what edgemeter understood.
    save_package(package, target, overwrite=True)
    return _info(target, "user", None)


def unregister(name: str, version: str | None = None) -> list[PredictorInfo]:
    """Remove a registered predictor (all its versions when ``version`` is None)."""
    check_name("predictor name", name)
    predictors = [p for p in list_predictors() if p.name == name
                  and (version is None or p.version == version)]
    if not predictors:
        what = f"'{name}'" + (f" version '{version}'" if version else "")
        raise ConfigError(f"no predictor {what} is installed "
                          f"(available: {_available(list_predictors())})")
    removed = [p for p in predictors if p.origin == "user"]
    if not removed:
        raise ConfigError(f"predictor {predictors[0].label} is shipped with edgemeter and "
                          "cannot be unregistered")
    for info in removed:
        if info.path.is_dir():
            shutil.rmtree(info.path)
        else:  # a zipped package
            info.path.unlink()
    parent = user_dir() / name
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
    return removed


def describe(info: PredictorInfo) -> dict[str, Any]:
    """The full manifest of an installed predictor plus where it lives (for ``info``)."""
    manifest = (_ensemble_manifest(info.path)[0] if info.members
                else read_manifest(info.path))
    return {"path": str(info.path), "origin": info.origin, "default": info.default, **manifest}
