"""The speed anchor: a small fixed model timed beside the measured one, in the same process.

This machine's speed drifts: the same model measured 2.87 ms and, twenty minutes later on an
idle machine, 1.62 ms (2026-11-23). A latency alone cannot tell a slower model from a slower
moment. With ``Protocol(anchor=True)`` every round also times this anchor, in blocks just
before and after the model's runs, and the measurement records the anchor's time next to the
model's. Their ratio is the model's latency in *anchor units*, which the builder trains on and
the evaluation can compare in, so that measurements taken at different moments agree.

The anchor is built with :class:`~edgemeter.builder.onnx_graphs.GraphBuilder` from a fixed seed:
every worker, local or remote, builds the same bytes. It mixes what edge models spend their time
on (dense and depthwise convolutions, activations, pooling, a classifier) and runs
in well under a millisecond on one core here, so it adds little to a round.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Bump when the network changes: anchor units of different anchors do not compare.
ANCHOR_VERSION = 1
# A yardstick is timed the same way whatever it is laid beside: these untimed runs, then this
# many timed runs just before the model's runs and as many after them, in every protocol. Taken
# from each protocol's own warm-up and repeats (5 and 20 in a build, 10 and 30 for a truth), the
# anchor read 1.1 % slower in a build's rounds than in a truth's, back to back (36 zoo models,
# six pairs each, bench/bench_protocols.py, 2026-12-02): five runs do not warm it (in an ad hoc
# cold-start probe its 5th run was 4 % above its settled time, its 10th 1 %), and every build
# carried that into its predictions of truths.
ANCHOR_WARMUP, ANCHOR_BLOCK = 10, 15


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


def at_speed(latency_ms: float, anchor_ms: float | None, speed_ms: float | None,
             slope: float = 1.0) -> float:
    """``latency_ms``, measured while the anchor took ``anchor_ms``, as it would have measured
    when the anchor took ``speed_ms``: with ``slope`` 1, a model timed while the machine ran
    20% slow (its anchor 20% above) is scaled down 20%; a model's own ``slope``
    (:class:`Sensitivity`) says how much of the anchor's move it shares. Unchanged when either
    anchor time is missing."""
    return latency_ms * (speed_ms / anchor_ms) ** slope if anchor_ms and speed_ms else latency_ms


def paired_rounds(statistic: str, round_medians_ms: Sequence[float] | None,
                  anchor_round_medians_ms: Sequence[float] | None
                  ) -> tuple[Sequence[float], Sequence[float]] | None:
    """The ``rounds`` :func:`measured_at_speed` takes, when the latency is the median of
    anchored rounds; None for the fastest run (one run of one round) or without the anchor's
    rounds (a measurement or record from before they were kept)."""
    if statistic != "median" or not round_medians_ms or not anchor_round_medians_ms:
        return None
    return round_medians_ms, anchor_round_medians_ms


def measured_at_speed(latency_ms: float, anchor_ms: float | None, speed_ms: float | None,
                      slope: float = 1.0, rounds: tuple[Sequence[float], Sequence[float]]
                      | None = None) -> float:
    """A median over rounds, as it would have measured when the anchor took ``speed_ms``.

    With ``rounds`` (the model's round medians and the anchor's beside them, paired), each
    round is put at speed by its own anchor time and the median taken of those: a round's model
    and anchor share one process and one moment. Otherwise ``latency_ms`` at the paired anchor
    ``anchor_ms`` (:func:`at_speed`), which is the same thing for slope 1 only. For a small model
    (slope 1.5-2) the paired anchor takes the model's median from one round and the median ratio
    from another, and the slope stretches the gap between them: a MobileNetV2 whose nine
    rounds ran 1.61-2.21 ms beside anchors of 0.589-0.686 ms was put at 0.89 of its measured
    1.833 ms, round by round at 0.92 of it. Round by round, two truths of the same 90 models
    agreed within ±5 % for 96.7 % of them, the paired way for 94.4 % (Zen 4, 2026-12-02, the
    1.12 predictor's slopes, bench/bench_accuracy.py --truth-twice)."""
    if rounds is not None and speed_ms:
        times, anchors = rounds
        if times and len(times) == len(anchors) and all(anchors):
            return statistics.median(at_speed(t, a, speed_ms, slope)
                                     for t, a in zip(times, anchors))
    return at_speed(latency_ms, anchor_ms, speed_ms, slope)


@dataclass(frozen=True)
class Sensitivity:
    """How much of the anchor's move a model shares, by its size: ``ln t`` moves by ``slope``
    times ``ln anchor``, where ``slope = 1 + per_log_flops · (ln FLOPs - centre)`` (within
    :data:`SLOPE_RANGE`) and ``centre`` is the mean ln FLOPs of the models it was fitted to.

    Measured on a Zen 4 VM (2026-12-01, eight nine-round truths of the same 36 models over nine
    hours, bench/bench_truth_hours.py): from round to round, big convolution nets moved by 0.4 of
    the anchor's move and small depthwise ones by 1.3-1.4. A line in ln FLOPs fitted to the other
    truths' rounds brought the pairs' agreement within ±10 % from 97.1 % (slope 1) to 99.7 %.
    The builder fits the line's steepness to the rounds of its zoo models and keeps its level at
    1 for the zoo's mean size: between hours, models moved at least as much as the anchor in
    mean, and a line that took its level from the rounds too (0.7 in mean) put truths of other
    hours further from the predictions, not nearer. The default, steepness 0, is slope 1 for
    every model: packages built before the fit scale as they always did."""

    per_log_flops: float = 0.0
    centre: float = 0.0

    SLOPE_RANGE = (0.25, 2.0)  # a line fitted on 10^7-10^10 FLOPs, kept sane beyond them

    def slope(self, flops: float) -> float:
        if not self.per_log_flops or flops <= 0:
            return 1.0
        lo, hi = self.SLOPE_RANGE
        return min(max(1.0 + self.per_log_flops * (math.log(flops) - self.centre), lo), hi)

    def __str__(self) -> str:
        if not self.per_log_flops:
            return "slope 1 for every model"
        sign = "-" if self.per_log_flops < 0 else "+"
        return f"slope 1 {sign} {abs(self.per_log_flops):.3f} · (ln FLOPs - {self.centre:.2f})"


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
