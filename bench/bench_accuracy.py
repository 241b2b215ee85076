"""Accuracy on held-out models: generate a dataset with a seed no build uses, measure it on each
predictor's backend, evaluate, print the shares within ±5% and ±10% of the measured median.

    .venv/bin/python bench/bench_accuracy.py [--predictor NAME|PATH ...] [--per-family 5]
        [--seed 5000 | --canonical] [--families a,b] [--rounds 9] [--max-rounds 27]
        [--out bench/results/accuracy] [--truth-twice] [--reference 1]

Each measurement interleaves the models' rounds (``dataset measure``'s default); with
``--max-rounds``, the models whose median is still uncertain after ``--rounds`` get more rounds
(``dataset measure --max-rounds``), and each line is followed by the figures with every
measurement cut to its first ``--rounds`` rounds (the same passes: what a fixed-round truth
would have been). Besides the shares and RMSPE, each line gives the figures blind to a factor
shared by every model (the machine running everything slower today): the median predicted /
measured ratio, the share within ±10% once divided by it, and Kendall's rank correlation.

Without ``--predictor``, every shipped predictor is evaluated. The dataset folder is reused
between runs (generation and measurement resume), so a second run only re-predicts. Builds
train on zoo variants of seeds 1000 and 1001 (build.yaml's ``zoo_seed``) drawn by another
scheme; the default seed 5000 keeps this set apart from them. ``--canonical`` judges on each
family once at its published configuration instead (``dataset generate --canonical``).

``--truth-twice`` measures the set a second time right after (a sibling folder sharing the
model files, named after the backend and thread count, so every predictor of one backend shares
it) and prints how often the two measurements agree within ±5% and ±10%, and the predictor's
figures against the second one: no predictor can agree with the truth more often than the truth
agrees with itself.

``--reference N`` adds N more variants per family as reference models (``dataset generate
--reference``), measured in the same passes and not scored, and adds the figures at the level
they set: every prediction times the references' median truth over predicted latency, and the
share within ±10 % the same way with the measured latencies, anchor aside, as ``edgemeter
predict --calibrate-models`` would. The speed anchor misses what the host's neighbours do to
models that leave the core's caches; the references feel it as the scored models do. A further
line gives the figures at the level of the references cut to their first three rounds, as many
as ``predict --calibrate-models`` measures by default (the scored models keep theirs).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", action="append", help="name or package path (repeatable)")
    parser.add_argument("--per-family", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--canonical", action="store_true",
                        help="each family at its published configuration, not random variants")
    parser.add_argument("--families", default=None, help="comma-separated (default: all)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--max-rounds", type=int, default=None,
                        help="more rounds, up to this, while a median is uncertain")
    parser.add_argument("--out", type=Path, default=Path("bench/results/accuracy"))
    parser.add_argument("--truth-twice", action="store_true",
                        help="measure the set again and report how well the truth repeats")
    parser.add_argument("--reference", type=int, default=0, metavar="N",
                        help="N more variants per family as reference models (not scored)")
    args = parser.parse_args()

    from edgemeter.dataset import evaluate, generate, measure
    from edgemeter.dataset.evaluate import bands_line
    from edgemeter.predictor.calibration import LEVEL_ROUNDS
    from edgemeter.predictor.model import load_predictor
    from edgemeter.predictor.registry import list_predictors

    names = args.predictor or [p.name for p in list_predictors()
                               if p.origin == "shipped" and p.problem is None]
    if not names:
        raise SystemExit("no shipped predictor: pass --predictor NAME|PATH")
    folder = args.out / ("dataset-canonical" if args.canonical else f"dataset-s{args.seed}")
    families = args.families.split(",") if args.families else None
    entries = generate(folder, per_family=args.per_family, seed=args.seed, families=families,
                       progress=True, canonical=args.canonical, reference=args.reference)
    print(f"held-out dataset: {len(entries)} models in {folder} "
          f"({'canonical' if args.canonical else f'seed {args.seed}'})")
    lines = []
    for name in names:
        predictor = load_predictor(name)
        settings = predictor.package.extra.get("backend_settings") or {"threads": 1}
        threads = settings.get("threads", 1)
        options = {k: v for k, v in settings.items() if k != "threads"}
        measure(folder, predictor.backend, threads=threads, rounds=args.rounds,
                max_rounds=args.max_rounds, options=options, progress=True)
        result = evaluate(predictor, folder, backend=predictor.backend, threads=threads,
                          out=args.out / f"report-{predictor.name}-{predictor.version}")
        o, raw, rel = result.overall, result.overall_as_measured, result.relative
        lines.append(f"{predictor.label:28} {predictor.backend} {threads}t: n={o['n']}, "
                     f"±5% {o['within_5']:.1f}%, ±10% {o['within_10']:.1f}%, "
                     f"RMSPE {o['rmspe']:.1f}%"
                     + (f" at build speed (anchor); as measured ±10% {raw['within_10']:.1f}%, "
                        f"RMSPE {raw['rmspe']:.1f}%" if result.anchored else "")
                     + f"; relative: scale {rel['scale']:.3f}, ±10% {rel['within_10']:.1f}%, "
                     f"tau {rel['kendall_tau']:.3f}" + leveled(result)
                     + f"  ({result.files['report']})")
        print(lines[-1])
        for family, f in result.families.items():
            print(f"    {family:14} n={f['n']:3}  ±5% {f['within_5']:5.1f}%  "
                  f"±10% {f['within_10']:5.1f}%  RMSPE {f['rmspe']:5.1f}%")
        print(f"    {bands_line(result.bands)}")
        judge = {"backend": predictor.backend, "threads": threads}
        again = (measure_again(folder, predictor, threads, options, args.rounds,
                               args.max_rounds) if args.truth_twice else None)
        if again:
            lines.append(f"{'':28} measured again: "
                         + agreement(result, evaluate(predictor, again, **judge)))
            print(lines[-1])
        if args.reference:
            short = {"reference_rounds": LEVEL_ROUNDS, **judge}
            lines.append(f"{'':28} references cut to {LEVEL_ROUNDS} rounds"
                         + leveled(evaluate(predictor, folder, **short))
                         + ("; measured again" + leveled(evaluate(predictor, again, **short))
                            if again else ""))
            print(lines[-1])
        if args.max_rounds:  # the same passes, as the fixed-round truths they began as
            cut = evaluate(predictor, folder, rounds=args.rounds, **judge)
            o = cut.overall
            lines.append(f"{'':28} cut to their first {args.rounds} rounds: ±5% "
                         f"{o['within_5']:.1f}%, ±10% {o['within_10']:.1f}%, RMSPE "
                         f"{o['rmspe']:.1f}%" + leveled(cut)
                         + ("; measured again: " + agreement(
                             cut, evaluate(predictor, again, rounds=args.rounds, **judge))
                            if again else ""))
            print(lines[-1])
    print("\n".join(["", "summary:", *lines]))


def measure_again(folder: Path, predictor, threads: int, options: dict, rounds: int,
                  max_rounds: int | None) -> Path:
    """Measure the set once more in a sibling folder, returned."""
    from edgemeter.dataset import measure, sibling

    # Named after what is measured, not the predictor: every package of a backend and thread
    # count shares one second truth (the store inside keys the remaining settings).
    again = sibling(folder, f"{folder.name}-again-{predictor.backend}-{threads}t")
    measure(again, predictor.backend, threads=threads, rounds=rounds, max_rounds=max_rounds,
            options=options, progress=True)
    return again


def agreement(first, second) -> str:
    """Two evaluations of one predictor on two truths of the same models: how the truths
    agree, and the predictor against the second."""
    from edgemeter.predictor.metrics import accuracy

    truth = {r["file"]: r["truth_ms"] for r in first.rows}
    both = [r for r in second.rows if r["file"] in truth]
    itself = accuracy([r["truth_ms"] for r in both], [truth[r["file"]] for r in both])
    o = second.overall
    return (f"the two truths agree ±5% {itself['within_5']:.1f}%, "
            f"±10% {itself['within_10']:.1f}%; the predictor against the second: "
            f"±5% {o['within_5']:.1f}%, ±10% {o['within_10']:.1f}%, RMSPE {o['rmspe']:.1f}%"
            f" (relative: ±10% {second.relative['within_10']:.1f}%)" + leveled(second))


def leveled(result) -> str:
    """The figures at the reference models' level, as a clause ('' without references)."""
    from edgemeter.dataset.evaluate import leveled_line

    if not result.leveled:
        return ""
    raw = result.leveled_as_measured
    return (f"; {leveled_line(result.leveled)}; at their level as measured "
            f"({raw['median']:.3f}): ±10% {raw['within_10']:.1f}%")


if __name__ == "__main__":
    main()
