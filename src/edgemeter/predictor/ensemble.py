"""Ensembles: several builds of one predictor, their predictions averaged.

A build's kernel times carry the state of the machine it measured on, which the speed anchor,
one number, does not fully describe. On the Xeon VM kind (2026-12-04), three builds on one VM
(13:55, 14:53 and 21:38) all put MobileNetV1, GoogLeNet and ResNet variants 3-7 % high on that
VM's truths (each family's mean), while a build of another VM of the kind put ResNeXt and
RegNet low instead. Builds whose errors differ average to a smaller one: on ten truths 1.17
alone missed ±10 % on 18 of 612 predictions, the mean of 1.17 and 1.16 (the other VM's) on 2,
the mean of 1.17 and the 21:38 build on 19 (bench/RESULTS.md, "Session of 20:20").

On disk an ensemble is ``<name>/<version>.json`` beside the packages it averages::

    {"format": "edgemeter-ensemble/1", "name": "onnxruntime-cpu-1t", "version": "1.18",
     "members": ["1.17", "1.16"]}

Members are versions of the same predictor in the same folder, built for the same backend with
the same fusion rules and speed anchor. The first sets the machine speed the ensemble's
milliseconds are at (its anchor time), and what it reports as its package (build machine,
backend settings); the others are put at that speed (:meth:`Predictor.calibrated`) before their
predictions are averaged, kernel by kernel.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemeter.errors import ConfigError, ModelError
from edgemeter.graph import Graph
from edgemeter.kernels.detect import Kernel
from edgemeter.predictor.model import KernelRows, Predictor, positive
from edgemeter.predictor.package import check_name

FORMAT = "edgemeter-ensemble/1"


def read_ensemble(path: str | Path) -> dict[str, Any]:
    """An ensemble file's content, checked: the format, a name and version, two or more member
    versions (any problem raises ModelError naming the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ensemble file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not an edgemeter ensemble (format {FORMAT!r} expected)")
    members = data.get("members")
    if not (isinstance(members, list) and len(members) >= 2
            and all(isinstance(m, str) and m for m in members)
            and len(set(members)) == len(members)):
        raise ModelError(f"{path}: 'members' must list two or more distinct versions")
    try:
        for key in ("name", "version"):
            check_name(f"ensemble {key}", data.get(key))
    except ConfigError as exc:
        raise ModelError(f"{path}: {exc}") from None
    if data["version"] in members:
        raise ModelError(f"{path}: the ensemble cannot be its own member")
    return data


def member_paths(path: str | Path, data: dict[str, Any] | None = None) -> list[Path]:
    """The member packages of the ensemble file ``path`` (``<version>.zip`` or a
    ``<version>/`` folder beside it), in order; a missing one raises ModelError. ``data``: the
    file as :func:`read_ensemble` gave it, if already read."""
    path = Path(path)
    data = data or read_ensemble(path)
    found = []
    for version in data["members"]:
        candidates = [path.parent / f"{version}.zip", path.parent / version]
        member = next((c for c in candidates if c.exists()), None)
        if member is None:
            raise ModelError(f"{path}: member {data['name']} {version} is not installed "
                             f"beside it")
        found.append(member)
    return found


def load_ensemble(path: str | Path, engine: str = "numpy") -> Ensemble:
    data = read_ensemble(path)
    members = [Predictor.from_package(p, engine) for p in member_paths(path, data)]
    return Ensemble(members, data["name"], data["version"])


def write_ensemble(folder: str | Path, name: str, version: str, members: Sequence[str]) -> Path:
    """Write ``folder/<version>.json`` averaging the member versions installed in ``folder``,
    after checking that they load and can be averaged."""
    path = Path(folder) / f"{version}.json"
    data = {"format": FORMAT, "name": name, "version": version, "members": list(members)}
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(data, indent=2) + "\n")
    try:
        load_ensemble(staged)
    except BaseException:
        staged.unlink()
        raise
    staged.replace(path)
    return path


class Ensemble(Predictor):
    """The mean of its members' predictions, each at the first member's machine speed (or all
    at the speed :meth:`calibrated` names). Reads like a :class:`Predictor`: ``package``,
    ``anchor_ms``, ``sensitivity`` and ``rules`` are the first member's."""

    def __init__(self, members: Sequence[Predictor], name: str, version: str,
                 anchor_ms: float | None = None):
        if len(members) < 2:
            raise ConfigError("an ensemble needs two or more members")
        first = members[0]
        super().__init__(first.package, first.engine)
        for member in members[1:]:
            why = _mismatch(first, member)
            if why:
                raise ModelError(f"{name} {version}: members {first.label} and {member.label} "
                                 f"{why}")
        if name != first.name:
            raise ModelError(f"{name} {version}: its members are {first.name}, not {name}")
        if any(m.anchor_ms is None for m in members):
            raise ModelError(f"{name} {version}: every member needs the speed anchor, to be put "
                             "at one machine speed")
        self.members = list(members)
        self._version = version
        self.speed_ratio = (first.anchor_ms if anchor_ms is None
                            else positive(anchor_ms, "an anchor time")) / first.anchor_ms
        at = first.anchor_ms * self.speed_ratio
        self._at_speed = [m.calibrated(at) for m in members]

    @property
    def version(self) -> str:  # ``label`` follows
        return self._version

    def __repr__(self) -> str:
        return (f"Ensemble({self.label!r}, members="
                f"{[m.version for m in self.members]!r}, backend={self.backend!r})")

    @property
    def members_at_speed(self) -> list[Predictor]:
        """The members, each put at the ensemble's machine speed: what it averages."""
        return list(self._at_speed)

    def calibrated(self, anchor_ms: float | None = None) -> Ensemble:
        """Every member at the machine speed where the anchor takes ``anchor_ms`` (None: timed
        now, as :meth:`Predictor.calibrated`)."""
        return Ensemble(self.members, self.name, self.version,
                        self.anchor_now() if anchor_ms is None else anchor_ms)

    def kernel_latencies(self, kernels: Sequence[Kernel]) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError(f"{self.label} is an ensemble: its members' raw kernel latencies are "
                          "on their own scales; ask a member (.members)")

    def kernel_parts(self, kernels: Sequence[Kernel], rows: KernelRows | None = None
                     ) -> np.ndarray:
        rows = rows or KernelRows(kernels, self.group)
        return np.mean([m.kernel_parts(kernels, rows) for m in self._at_speed], axis=0)

    def _latencies(self, kernel_lists: Sequence[Sequence[Kernel]],
                   rows: KernelRows | None = None) -> np.ndarray:
        rows = rows or KernelRows([k for kernels in kernel_lists for k in kernels], self.group)
        return np.mean([m._latencies(kernel_lists, rows) for m in self._at_speed], axis=0)

    def _parts(self, detected: Sequence[tuple[Graph, list[Kernel]]],
               rows: KernelRows | None = None) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """The members' parts averaged, model by model (the kernels' rows read once for all of
        them); a kernel counts as covered where every member covered it."""
        rows = rows or KernelRows([k for _, kernels in detected for k in kernels], self.group)
        runs = [m._parts(detected, rows) for m in self._at_speed]
        n = len(runs)
        return [(sum(ms for ms, _, _ in parts) / n, sum(o for _, o, _ in parts) / n,
                 np.logical_and.reduce([c for _, _, c in parts]))
                for parts in zip(*runs)]


def _mismatch(a: Predictor, b: Predictor) -> str | None:
    """Why two packages cannot be averaged (None if they can)."""
    if a.backend != b.backend:
        return f"run on different backends ({a.backend}, {b.backend})"
    if a.package.extra.get("backend_settings") != b.package.extra.get("backend_settings"):
        return "were built with different backend settings"
    if a.package.fusion_rules != b.package.fusion_rules:
        return "split models into kernels by different fusion rules"
    if a.package.fingerprint.get("cpu_id") != b.package.fingerprint.get("cpu_id"):
        return "were built on different CPUs"
    return None
