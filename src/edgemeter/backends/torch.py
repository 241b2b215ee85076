"""PyTorch eager on the CPU.

Eager PyTorch runs Python code, so there is nothing to load from an ONNX file (onnx2torch needs
torchvision, which cannot be installed here). This backend measures ``torch.export`` programs
(``.pt2``): the module's ATen graph, run op by op in eager mode. :func:`save_module` writes one
from an ``nn.Module`` and example inputs.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgemeter.backends.base import Backend, Runner
from edgemeter.errors import ModelError


def save_module(module: Any, example_inputs: tuple, path: str | Path) -> Path:
    """Export ``module`` (in eval mode) with ``torch.export`` and save it as a ``.pt2`` file."""
    import torch

    path = Path(path)
    program = torch.export.export(module.eval(), tuple(example_inputs))
    torch.export.save(program, str(path))
    return path


class TorchCPU(Backend):
    """PyTorch eager, CPU, f32 (torch.export .pt2 programs; see save_module)."""

    name = "torch-cpu"
    extra = "torch"
    requires = "torch"

    def runtime_environment(self) -> dict[str, Any]:
        torch = self.runtime()
        return {"runtime": "torch", "runtime_version": torch.__version__, "precision": "f32",
                "device": "cpu", "mkldnn": torch.backends.mkldnn.is_available()}

    def load(self, model_path: Path) -> Runner:
        torch = self.runtime()
        if model_path.suffix.lower() != ".pt2":
            raise ModelError(f"torch-cpu measures torch.export programs (.pt2), not "
                             f"{model_path.name}: write one with "
                             "edgemeter.backends.torch.save_module(module, inputs, 'model.pt2')")
        torch.set_num_threads(self.threads)
        torch.set_num_interop_threads(1)
        try:
            program = torch.export.load(str(model_path))
        except Exception as exc:  # torch raises RuntimeError, zipfile errors, pickle errors
            raise ModelError(f"torch cannot load {model_path.name}: {exc}") from None
        return TorchRunner(program)


class TorchRunner(Runner):
    def __init__(self, program: Any):
        import torch

        self.torch = torch
        self.module = program.module()
        generator = torch.Generator().manual_seed(0)
        user_inputs = set(program.graph_signature.user_inputs)
        placeholders = [node for node in program.graph.nodes
                        if node.op == "placeholder" and node.name in user_inputs]
        self.input_names = [node.name for node in placeholders]
        self.inputs = [_random_like(node.meta["val"], generator) for node in placeholders]

    def run(self) -> None:
        with self.torch.inference_mode():
            self.module(*self.inputs)

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Inputs by the exported program's placeholder names; outputs as ``output_<i>``."""
        with self.torch.inference_mode():
            outputs = self.module(*(self.torch.as_tensor(inputs[n]) for n in self.input_names))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return {f"output_{i}": out.numpy() for i, out in enumerate(outputs)}

    def node_times(self, runs: int) -> dict[str, float]:
        """Mean time per ATen call, keyed by the exported graph's node names (an fx Interpreter
        times each node; its own overhead of a few µs per node is included)."""
        timer = _node_timer(self.module)
        with self.torch.inference_mode():
            timer.run(*self.inputs)  # warm-up
            timer.totals.clear()
            for _ in range(runs):
                timer.run(*self.inputs)
        return {name: total / runs for name, total in timer.totals.items()}

    def close(self) -> None:
        self.module = None


def _random_like(fake: Any, generator: Any) -> Any:
    import torch

    if fake.dtype.is_floating_point:
        return torch.randn(fake.shape, dtype=fake.dtype, generator=generator)
    return torch.randint(0, 2, fake.shape, dtype=fake.dtype, generator=generator)


def _node_timer(module: Any) -> Any:
    """An fx Interpreter over ``module`` that adds each called node's time (ms) to ``totals``;
    defined here so that importing this module does not import torch."""
    from torch.fx import Interpreter

    class NodeTimer(Interpreter):
        def run_node(self, node: Any) -> Any:
            start = time.perf_counter()
            out = super().run_node(node)
            if node.op == "call_function":
                self.totals[node.name] += (time.perf_counter() - start) * 1000
            return out

    timer = NodeTimer(module)
    timer.totals = defaultdict(float)
    return timer
