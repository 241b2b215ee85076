"""What a latency predictor depends on in the machine it was built on, and how two differ.

A predictor is only as good as the match between the machine it was measured on and the machine
it predicts for: another CPU model, a missing vector extension (AVX-512, AMX) or another runtime
version changes which kernels are fast. The fingerprint is plain JSON kept in the manifest.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Instruction-set extensions that change which kernels a runtime picks (x86 and Arm names as
# the Linux kernel spells them in /proc/cpuinfo).
RELEVANT_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16",
)


# /proc/cpuinfo fields that tell CPU generations apart where a VM shows only a vendor's model
# name ("AMD EPYC" on Zen 4 and on Zen 5 here, which run the same model at different speeds).
CPU_ID_FIELDS = ("cpu family", "model", "cpu implementer", "cpu part")


@lru_cache(maxsize=1)  # asked once per installed predictor by find_predictor and list
def _cpuinfo() -> tuple[str, frozenset[str], str]:
    """CPU model name, flags and generation (``cpu family 25, model 17``) from /proc/cpuinfo
    (Linux, the first value of each); elsewhere the platform's name."""
    model, flags, ids = "", set(), {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in CPU_ID_FIELDS:
            ids.setdefault(key, value.strip())
    cpu_id = ", ".join(f"{k} {ids[k]}" for k in CPU_ID_FIELDS if k in ids)
    return model or platform.processor() or platform.machine(), frozenset(flags), cpu_id


def runtime_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the named distributions (None: not installed), without importing."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def current(runtimes: Iterable[str] = ()) -> dict[str, Any]:
    """This machine's fingerprint; ``runtimes`` names the distributions whose version matters
    (e.g. ``["onnxruntime"]``)."""
    model, flags, cpu_id = _cpuinfo()
    return {
        "cpu_model": model,
        "cpu_id": cpu_id or None,
        "cpu_flags": sorted(flags.intersection(RELEVANT_FLAGS)),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "runtimes": runtime_versions(runtimes),
    }


def compare(predictor: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """Human-readable differences between the predictor's fingerprint and this machine's.

    Empty when nothing that matters differs. Fields missing from either side are not compared,
    so an older or partial fingerprint never produces false alarms.
    """
    def both(key: str) -> bool:
        return predictor.get(key) is not None and machine.get(key) is not None

    def side_by_side(label: str, a: Any, b: Any) -> str:
        return f"{label}: {a} (predictor) vs {b} (this machine)"

    diffs = []
    for key, label in (("cpu_model", "CPU model"), ("cpu_id", "CPU generation"),
                       ("machine", "architecture"),
                       ("cpu_count", "CPU count"), ("system", "operating system")):
        if both(key) and predictor[key] != machine[key]:
            diffs.append(side_by_side(label, predictor[key], machine[key]))
    if both("cpu_flags"):
        theirs, ours = set(predictor["cpu_flags"]), set(machine["cpu_flags"])
        if theirs - ours:
            diffs.append(f"CPU features only on the predictor's machine: "
                         f"{', '.join(sorted(theirs - ours))}")
        if ours - theirs:
            diffs.append(f"CPU features only on this machine: {', '.join(sorted(ours - theirs))}")
    theirs_rt, ours_rt = predictor.get("runtimes") or {}, machine.get("runtimes") or {}
    for name in sorted(set(theirs_rt) & set(ours_rt)):
        if theirs_rt[name] != ours_rt[name]:
            diffs.append(side_by_side(name, theirs_rt[name] or "not installed",
                                      ours_rt[name] or "not installed"))
    return diffs


def differences(built_on: dict[str, Any], runtime_versions: dict[str, Any]) -> list[str]:
    """How this machine differs from ``built_on`` (a package's fingerprint), comparing the
    versions of the runtimes it names (else of ``runtime_versions``, the manifest's)."""
    return compare(built_on, current(built_on.get("runtimes") or runtime_versions))
