"""Does a model's measured truth hold over hours? Compare measurements of the same models taken
at different moments.

    .venv/bin/python bench/bench_truth_hours.py DS_0736 DS_0750 DS_1434 [--backend onnxruntime-cpu]
    .venv/bin/python bench/bench_truth_hours.py BUILD_A/onnxruntime-cpu-1t BUILD_B/onnxruntime-cpu-1t

Each argument is a folder with a results store: a dataset measured with ``edgemeter dataset
measure`` (sibling folders sharing the model files, as ``bench_accuracy.py --truth-twice`` makes
them, or a symlinked ``models/`` and a copied ``index.jsonl``), or a build workspace, whose zoo
models every build of one seed measures again. A model is the same in two folders when its file
name and bytes are. For every pair, over the models both measured with the same settings: the
level (median ratio of the later to the earlier, raw and put at one machine speed by the speed
anchor), how far single models stray from that level (the standard deviation of the anchored
log ratio, in %), the share within ±10 % as measured (anchored) and once the level is taken
out, and the anchored level of each zoo family: a family moving apart from the others is a
change of the machine that the anchor does not see.

Then, within each measurement, the passes of interleaved rounds (round r of every model, about
a minute per pass): how far the pass level (median over the models of their round against
their own median) moves, how far the speed anchor timed beside them moves, their correlation,
and the slope of the models' move on the anchor's (1: the anchor corrects it fully).

Last, with three or more measurements of the same models (rounds and anchors stored), each
model's own sensitivity: the slope of its round times on the anchor's, from the round-to-round
moves within measurements, by family; and how well the measurements agree (within ±10 %, level
out, every pair) once each is put at one anchor speed with slope 1 for every model, with each
model's slope taken from the OTHER measurements (none of a measurement's own data sets the slope
it is corrected with), or with a slope that is a line in the model's FLOPs, fitted likewise to
the other measurements (a slope any model has, seen or not).

Then the ceiling, with three or more measurements: no predictor gives a model a time that
moves with the hour, only one time per model, so each measurement is scored against the best such
times, each model's median over the measurements (in hindsight: all of them; honestly: the
others), at the measurement's level (the median over its models): the share within ±10 % is the
most any predictor can reach on those hours, level out, and the families that move against the
rest (their median residual, per measurement) are what it loses. With ``--predictor``, each
package is scored the same way, at each measurement's level, with its own error per model (the
median over the measurements; taking it out gives the ceiling in hindsight): the gap to the
ceiling is what a better predictor could win, the ceiling's own gap to 100 % what the host
takes.

A predictor is built at one moment and judged against truths measured at others: what single
models do between two measurements hours apart, beyond the level, no predictor can follow.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgemeter.backends.protocol import Measurement


TENTH = np.log(1.1)  # ±10 %, on log ratios


def truths(folder: Path, backend: str, threads: int) -> dict[tuple[str, str], Measurement]:
    from edgemeter.store import Store

    with Store(folder) as store:  # the last measurement of a model counts
        return {(Path(m.model).name, m.model_sha256): m for m in store
                if m.ok and m.backend == backend and m.config.get("threads") == threads
                and m.median_ms and m.anchor_ms}


def family(key: tuple[str, str]) -> str:
    """The zoo family of a model file (``<family>-s<seed>-<i>.onnx``, ``<family>-canonical``)."""
    from edgemeter.zoo import FAMILIES

    name = key[0].split("-")[0]
    return name if name in FAMILIES else "other"


def compare(a: dict, b: dict) -> dict:
    common = sorted(a.keys() & b.keys())
    raw = np.log([b[k].median_ms / a[k].median_ms for k in common])
    anchored = raw - np.log([b[k].anchor_ms / a[k].anchor_ms for k in common])
    level = float(np.median(anchored))
    by_family: dict[str, list[float]] = {}
    for k, r in zip(common, anchored):
        by_family.setdefault(family(k), []).append(r)
    by_family.pop("other", None)
    return {"n": len(common), "raw_level": float(np.exp(np.median(raw))),
            "level": float(np.exp(level)), "stray_pct": 100 * float(np.std(anchored)),
            "within_10": 100 * float(np.mean(np.abs(anchored) < TENTH)),
            "within_10_level_out": 100 * float(np.mean(np.abs(anchored - level) < TENTH)),
            "families": {f: float(np.exp(np.median(v))) for f, v in sorted(by_family.items())}}


def passes(folder: Path, backend: str, threads: int) -> dict[str, float] | None:
    """Pass levels of the models' interleaved rounds against the anchor's, from the store."""
    from edgemeter.store import Store

    with Store(folder) as store:
        ms = [m for m in store if m.ok and m.backend == backend
              and m.config.get("threads") == threads and m.anchor_round_medians_ms]
    rounds = min((len(m.round_medians_ms) for m in ms), default=0)
    if rounds < 3:
        return None
    model = np.log([m.round_medians_ms[:rounds] for m in ms])
    anchor = np.log([m.anchor_round_medians_ms[:rounds] for m in ms])
    level = np.median(model - np.median(model, axis=1, keepdims=True), axis=0)
    beside = np.median(anchor - np.median(anchor, axis=1, keepdims=True), axis=0)
    return {"rounds": rounds, "level_pct": 100 * float(np.std(level)),
            "anchor_pct": 100 * float(np.std(beside)),
            "corr": float(np.corrcoef(level, beside)[0, 1]),
            "slope": float(np.polyfit(beside, level, 1)[0])}


def sensitivity(sets: list[dict]) -> dict | None:
    """Per-model slopes on the anchor and the agreement they give (see the module docstring)."""
    def rounds(m: Measurement) -> bool:
        n = len(m.round_medians_ms or ())
        return n >= 3 and len(m.anchor_round_medians_ms or ()) == n

    keys = sorted(set.intersection(*({k for k, m in s.items() if rounds(m)} for s in sets)))
    if len(sets) < 3 or not keys:
        return None
    logs = [{k: (np.log(s[k].round_medians_ms), np.log(s[k].anchor_round_medians_ms))
             for k in keys} for s in sets]

    def slope(k: tuple[str, str], use: list[int]) -> float:
        x = np.concatenate([logs[i][k][1] - logs[i][k][1].mean() for i in use])
        y = np.concatenate([logs[i][k][0] - logs[i][k][0].mean() for i in use])
        return float(x @ y / (x @ x))

    # The anchor time every measurement is put at: their median, so that no slope extrapolates
    # far (a slope a little off moves a model by slope error × distance to this).
    ref = float(np.median([logs[i][k][1].mean() for i in range(len(sets)) for k in keys]))

    def agreement(slopes: list[dict]) -> tuple[float, float]:
        """Mean and least share of models within ±10 % over the pairs, level out, each
        measurement put at the reference anchor: mean log time + slope × (ref − mean log
        anchor)."""
        at_one = [np.array([logs[i][k][0].mean() + slopes[i][k] * (ref - logs[i][k][1].mean())
                            for k in keys]) for i in range(len(sets))]
        shares = []
        for x, y in itertools.combinations(at_one, 2):
            d = y - x
            shares.append(100 * float(np.mean(np.abs(d - np.median(d)) < TENTH)))
        return float(np.mean(shares)), float(np.min(shares))

    def flops_line(use: list[int]) -> tuple[float, float]:
        """Slope = a + b · ln FLOPs, fitted to the rounds of every model in ``use``."""
        rows, moves = [], []
        for i in use:
            for k in keys:
                x = logs[i][k][1] - logs[i][k][1].mean()
                rows += [(xi, log_flops[k] * xi) for xi in x]
                moves += list(logs[i][k][0] - logs[i][k][0].mean())
        (a, b), *_ = np.linalg.lstsq(np.array(rows), np.array(moves), rcond=None)
        return float(a), float(b)

    from edgemeter.importers import load_graph

    log_flops = {k: float(np.log(load_graph(sets[0][k].model).total_cost().flops)) for k in keys}
    every = list(range(len(sets)))
    by_family: dict[str, list[float]] = {}
    for k in keys:
        by_family.setdefault(family(k), []).append(slope(k, every))
    by_family.pop("other", None)
    lines = [flops_line([j for j in every if j != i]) for i in every]
    return {"n": len(keys),
            "families": {f: float(np.mean(v)) for f, v in by_family.items()},
            "slope_1": agreement([dict.fromkeys(keys, 1.0)] * len(sets)),
            "others": agreement([{k: slope(k, [j for j in every if j != i]) for k in keys}
                                 for i in every]),
            "flops_line": flops_line(every),
            "by_flops": agreement([{k: a + b * log_flops[k] for k in keys} for a, b in lines])}


def polish(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each model's time and each measurement's level in a log matrix (models × measurements),
    taken out alternately as medians until they settle (a median polish)."""
    model = np.median(x, axis=1, keepdims=True)
    for _ in range(20):
        level = np.median(x - model, axis=0, keepdims=True)
        model = np.median(x - level, axis=1, keepdims=True)
    return model, level


def level_out(x: np.ndarray) -> np.ndarray:
    """Log residuals once each model's time and each measurement's level are taken out."""
    model, level = polish(x)
    return x - model - level


def held_out(x: np.ndarray) -> np.ndarray:
    """Residuals of each measurement against the models' times from the other measurements,
    at its own level."""
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        model, _ = polish(np.delete(x, j, axis=1))
        r = x[:, j] - model[:, 0]
        out[:, j] = r - np.median(r)
    return out


def ceiling(sets: list[dict], predictors: list[str]) -> dict | None:
    """The best one time per model, and each predictor, at each measurement's level (see the
    module docstring)."""
    keys = sorted(set.intersection(*(set(s) for s in sets)))
    if len(sets) < 3 or not keys:
        return None
    x = np.log([[s[k].median_ms for s in sets] for k in keys])
    hindsight = level_out(x)
    families = np.array([family(k) for k in keys])
    moves = {f: float(np.std(np.median(hindsight[families == f], axis=0)))
             for f in sorted(set(families) - {"other"})}
    out = {"n": len(keys), "hindsight": _within(hindsight), "others": _within(held_out(x)),
           "moves": moves, "predictors": {}}
    if predictors:
        from edgemeter.predictor.model import load_predictor

        paths = [sets[0][k].model for k in keys]
        for name in predictors:
            predictor = load_predictor(name)
            log_pred = np.log([p.latency_ms for p in predictor.predict_batch(paths)])
            error = log_pred[:, None] - x
            at_level = error - np.median(error, axis=0, keepdims=True)
            own = np.median(at_level, axis=1)
            out["predictors"][predictor.label] = {
                "at_level": _within(at_level),
                "bias_pct": 100 * float(np.std(own)),
                "families": {f: 100 * float(np.median(own[families == f])) for f in moves}}
    return out


def _within(residuals: np.ndarray) -> tuple[float, float, float]:
    """Share within ±10 % over every model and measurement, and the least and most of one
    measurement."""
    inside = np.abs(residuals) < TENTH
    per = 100 * np.mean(inside, axis=0)
    return 100 * float(np.mean(inside)), float(per.min()), float(per.max())


def clock(t: float) -> str:
    return time.strftime("%H:%M", time.localtime(t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="measured dataset folders")
    parser.add_argument("--backend", default="onnxruntime-cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--predictor", action="append", default=[],
                        help="a predictor NAME or package PATH to score against the ceiling "
                             "(repeatable)")
    args = parser.parse_args()
    if len(args.datasets) < 2:
        raise SystemExit("give at least two measured dataset folders")

    from edgemeter.store import Store

    spans = {}
    for d in args.datasets:
        if not (d / "measurements.sqlite").is_file():
            raise SystemExit(f"{d}: no results store here (a measured dataset or a build "
                             "workspace has measurements.sqlite)")
        with Store(d) as store:
            spans[d] = store.span(args.backend, args.threads)
        if spans[d] is None:
            raise SystemExit(f"{d}: no measurements on {args.backend} with {args.threads} "
                             "thread(s) (run edgemeter dataset measure)")
    order = sorted(args.datasets, key=lambda d: spans[d][0])
    sets = {d: truths(d, args.backend, args.threads) for d in order}
    for d in order:
        first, last = spans[d]
        print(f"{time.strftime('%m-%d', time.localtime(first))} {clock(first)}–{clock(last)}  "
              f"{len(sets[d]):3} models  {d}")
    print("pair (stored)         models  level raw / anchored  stray   ±10 % as is / level out")
    for x, y in itertools.combinations(order, 2):
        c = compare(sets[x], sets[y])
        if not c["n"]:
            print(f"{x} and {y}: no model measured in both with the same settings")
            continue
        hours = (spans[y][0] - spans[x][0]) / 3600
        print(f"{clock(spans[x][0])} → {clock(spans[y][0])} ({hours:4.1f} h)  {c['n']:4}   "
              f"{c['raw_level']:.3f} / {c['level']:.3f}        {c['stray_pct']:4.1f} %  "
              f"{c['within_10']:5.1f} / {c['within_10_level_out']:5.1f} %")
        if c["families"]:
            print("    families, anchored: " + ", ".join(
                f"{f} {level:.3f}" for f, level in sorted(c["families"].items(),
                                                          key=lambda item: item[1])))
    print("passes within each measurement: level moves (sd), anchor moves, correlation, "
          "slope of the level on the anchor")
    for d in order:
        p = passes(d, args.backend, args.threads)
        if p:
            print(f"  {clock(spans[d][0])}  {p['rounds']} passes  level {p['level_pct']:.1f} %  "
                  f"anchor {p['anchor_pct']:.1f} %  corr {p['corr']:.2f}  slope "
                  f"{p['slope']:.2f}  {d}")
    sens = sensitivity([sets[d] for d in order])
    if sens:
        print(f"each model's slope on the anchor, from the rounds within measurements "
              f"({sens['n']} models in all {len(order)}), family means: " + ", ".join(
                  f"{f} {b:.2f}" for f, b in sorted(sens["families"].items(),
                                                    key=lambda item: item[1])))
        print("  every pair within ±10 % (level out), each measurement at one anchor speed: "
              "slope 1 for all {:.1f} % in mean (least {:.1f} %); each model's slope from the "
              "other measurements {:.1f} % (least {:.1f} %)".format(*sens["slope_1"],
                                                                   *sens["others"]))
        a, b = sens["flops_line"]
        print("  the slope as a line in the model's FLOPs, fitted to every measurement: "
              f"{a:.2f} {b:+.3f} · ln FLOPs ({a + b * np.log(1e8):.2f} at 0.1 GFLOPs, "
              f"{a + b * np.log(1e9):.2f} at 1, {a + b * np.log(1e10):.2f} at 10); that line "
              "fitted to the other measurements: {:.1f} % (least {:.1f} %)".format(
                  *sens["by_flops"]))
    top = ceiling([sets[d] for d in order], args.predictor)
    if top:
        print(f"ceiling: one time per model, each measurement at its level ({top['n']} models "
              f"in all {len(order)}), within ±10 %: from every measurement (hindsight) "
              "{:.1f} % (per measurement {:.1f}–{:.1f} %); from the others {:.1f} % "
              "({:.1f}–{:.1f} %)".format(*top["hindsight"], *top["others"]))
        print("  families' moves against the rest (sd of their median residual over the "
              "measurements): " + ", ".join(
                  f"{f} {100 * sd:.1f} %" for f, sd in sorted(top["moves"].items(),
                                                              key=lambda item: -item[1])))
        for label, p in top["predictors"].items():
            families = ", ".join(f"{f} {e:+.1f}" for f, e in sorted(p["families"].items(),
                                                                    key=lambda item: item[1]))
            print(f"  {label}: within ±10 % at each measurement's level "
                  "{:.1f} % ({:.1f}–{:.1f} %); ".format(*p["at_level"])
                  + "its own error per model (median over the measurements) sd "
                  f"{p['bias_pct']:.1f} %, family medians {families} %")


if __name__ == "__main__":
    main()
