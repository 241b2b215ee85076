"""Plot a study: every measured assignment and the Pareto front as a staircase."""
from __future__ import annotations

from pathlib import Path


def plot_front(result: dict, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of ``result`` (the output JSON of a study, as a dict)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {s["id"]: (s["exec_time"], s["max_rss"] / 1024) for s in result["solutions"]}
    front = sorted(points[i] for i in result["front"])
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.scatter(*zip(*points.values()), s=12, color="0.6", label=f"measured ({len(points)})")
    if front:
        ax.step(*zip(*front), where="post", color="C3", lw=1)
        ax.scatter(*zip(*front), s=30, color="C3", zorder=3, label=f"front ({len(front)})")
        for ident in result["front"]:
            ax.annotate(str(ident), points[ident], fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel("peak memory (MiB, max RSS)")
    ax.set_title(title or f"{result['mode']} mode: {', '.join(result['backends'])}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
