"""``edgemeter ir`` and ``edgemeter kernels``: a model's graph IR and its kernels."""
from __future__ import annotations

import json
from pathlib import Path

import click

_INPUT_SHAPE = click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME=DxDx...",
    help="Shape of an input with symbolic dimensions, e.g. input=1x3x224x224 (repeatable).")

# Features shown in the table, in this order, when a kernel has them.
_TABLE_FEATURES = ("HW", "CIN", "COUT", "CMID", "KERNEL_SIZE", "STRIDES", "GROUPS", "M", "K", "N",
                   "ROWS", "COLS")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the JSON here instead of standard output.")
@click.option("--to", "fmt", type=click.Choice(["edgemeter", "nnmeter"]), default="edgemeter",
              show_default=True, help="IR flavour: edgemeter's own, or nn-Meter's (NHWC).")
@_INPUT_SHAPE
def ir(model: str, output: str | None, fmt: str, input_shapes: tuple[str, ...]) -> None:
    """Import MODEL (.onnx, .tflite, .json IR) and write its graph IR as JSON."""
    from edgemeter.importers import load_graph, parse_input_shapes

    graph = load_graph(model, parse_input_shapes(input_shapes))
    if fmt == "nnmeter":
        from edgemeter.importers.nnmeter_ir import export_nnmeter_ir
        text = json.dumps(export_nnmeter_ir(graph), indent=1)
    else:
        text = graph.to_json()
    _write(text, output)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--rules", default="onnxruntime-cpu", show_default=True, metavar="RUNTIME|FILE",
              help="Fusion rules: onnxruntime-cpu, openvino-cpu, tflite-xnnpack, or a YAML file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write here instead of standard output.")
@_INPUT_SHAPE
def kernels(model: str, rules: str, fmt: str, output: str | None,
            input_shapes: tuple[str, ...]) -> None:
    """Split MODEL into the kernels a runtime executes, with their features."""
    from edgemeter.importers import load_graph, parse_input_shapes
    from edgemeter.kernels import detect, load_rules

    fusion = load_rules(rules)  # a bad name fails before the model is read
    graph = load_graph(model, parse_input_shapes(input_shapes))
    found = detect(graph, fusion)
    if fmt == "json":
        text = json.dumps({"model": model, "nodes": len(graph.nodes),
                           "kernels": [k.to_dict() for k in found]}, indent=1)
    else:
        text = _table(found, len(graph.nodes), fusion.name)
    _write(text, output)


def _table(found: list, nodes: int, rules: str) -> str:
    rows = [("#", "kernel", "ops", "features", "MFLOPs")]
    for i, k in enumerate(found):
        shown = " ".join(f"{name}={k.features[name]}" for name in _TABLE_FEATURES
                         if name in k.features)
        rows.append((str(i), k.type, str(len(k.nodes)), shown, f"{k.features['FLOPS'] / 1e6:.3f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if c in (0, 2, 4) else cell.ljust(w)
                       for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    total = sum(k.features["FLOPS"] for k in found) / 1e6
    lines.append(f"{len(found)} kernels from {nodes} nodes ({rules} rules), {total:.3f} MFLOPs")
    return "\n".join(lines)


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text)
        return
    from edgemeter.errors import ConfigError
    try:
        Path(output).write_text(text + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
