"""The speed anchor: a small fixed model timed beside the measured one, in the same process.

This machine's speed drifts: the same model measured 2.87 ms and, twenty minutes later on an
idle machine, 1.62 ms (2026-11-23). A latency alone cannot tell a slower model from a slower
moment. With ``Protocol(anchor=True)`` every timed run of the model is followed by a run of this
anchor, and the measurement records the anchor's median next to the model's. Their ratio is the
model's latency in *anchor units*, which the builder trains on and the evaluation can compare in,
so that measurements taken at different moments agree.

The anchor is built with :class:`~edgemeter.builder.onnx_graphs.GraphBuilder` from a fixed seed:
every worker, local or remote, builds the same bytes. It mixes what edge models spend their time
on (dense and depthwise convolutions, activations, pooling, a classifier) and runs
in well under a millisecond on one core here, so it adds little to a round.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# Bump when the network changes: anchor units of different anchors do not compare.
ANCHOR_VERSION = 1


@lru_cache(maxsize=1)
def anchor_bytes() -> bytes:
    from edgemeter.builder.onnx_graphs import GraphBuilder

    g = GraphBuilder(seed=20261129, name=f"edgemeter-anchor-{ANCHOR_VERSION}")
    x = g.apply("relu", g.conv(g.input([1, 3, 128, 128]), 16, kernel=3, stride=2))
    for cout, stride in ((24, 2), (32, 1), (48, 2)):
        y = g.conv(g.apply("relu6", g.dwconv(x, kernel=3, stride=stride)), cout, kernel=1)
        x = g.apply("relu6", g.conv(y, cout * 2, kernel=1))
    x = g.apply("hswish", g.conv(x, 96, kernel=3))
    x = g.reshape(g.global_pool(x))
    g.output(g.fc(g.op("Flatten", [x], [1, 96], axis=1), 100))
    return g.model().SerializeToString()


def write_anchor(folder: Path) -> Path:
    path = Path(folder) / f"edgemeter-anchor-{ANCHOR_VERSION}.onnx"
    path.write_bytes(anchor_bytes())
    return path


def at_speed(latency_ms: float, anchor_ms: float | None, speed_ms: float | None) -> float:
    """``latency_ms``, measured while the anchor took ``anchor_ms``, as it would have measured
    when the anchor took ``speed_ms``: a model timed while the machine ran 20% slow (its anchor
    20% above) is scaled down 20%. Unchanged when either anchor time is missing."""
    return latency_ms * speed_ms / anchor_ms if anchor_ms and speed_ms else latency_ms


def measure_anchor(backend: str, config: dict | None = None, protocol=None) -> float:
    """The anchor's median time on ``backend`` now (ms), by the measurement protocol."""
    import tempfile

    from edgemeter.backends.protocol import measure
    from edgemeter.errors import EdgemeterError

    with tempfile.TemporaryDirectory(prefix="edgemeter-anchor-") as tmp:
        m = measure(write_anchor(Path(tmp)), backend, config, protocol)
    if not m.ok:
        raise EdgemeterError(f"cannot time the speed anchor on {backend}: {m.error}")
    return float(m.median_ms)
