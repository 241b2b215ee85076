"""Measured vs predicted latency as a log-log scatter with the ±10% band (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def scatter(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One point per model (``truth_ms``, ``predicted_ms``), coloured by ``family``; the truth
    is the measured median, at the predictor's machine speed when evaluation anchored it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    import numpy as np

    measured = np.array([r["truth_ms"] for r in rows])
    low, high = measured.min() / 1.5, measured.max() * 1.5
    line = np.geomspace(low, high, 50)
    fig, ax = plt.subplots(figsize=(6.5, 6), dpi=120)
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10%")
    ax.plot(line, line, color="0.4", lw=0.8)
    families = sorted({r["family"] for r in rows})
    colours = plt.get_cmap("tab20")
    markers = "os^Dv<>ph*"
    for i, family in enumerate(families):
        sub = [r for r in rows if r["family"] == family]
        ax.scatter([r["truth_ms"] for r in sub], [r["predicted_ms"] for r in sub], s=14,
                   color=colours(i % 20), marker=markers[i % len(markers)], label=family)
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high),
           xlabel="measured latency (ms)", ylabel="predicted latency (ms)", title=title)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
