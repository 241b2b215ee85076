"""Android over adb, timed by TFLite's ``benchmark_model`` on the phone.

Each round of the protocol pushes the .tflite (ONNX models are converted first with
:func:`edgemeter.converters.tflite.onnx_to_tflite`), runs ``benchmark_model`` once (a fresh
process on the device: its warm-up, then ``repeats`` timed runs) and removes the file. The tool
prints aggregates, not single runs, so each round contributes ONE sample: its mean; the round's
own min/max/std are kept in ``env["benchmark_model"]``. Setup on the phone, once::

    adb push benchmark_model /data/local/tmp && adb shell chmod +x /data/local/tmp/benchmark_model
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgemeter.backends.base import Backend, Option, Runner
from edgemeter.backends.benchmark_model import parse_benchmark_output
from edgemeter.backends.protocol import RoundFailed, file_sha256
from edgemeter.errors import ConfigError, EdgemeterError

# Delegate option -> benchmark_model flags.
DELEGATES = {"xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
             "cpu": ["--use_xnnpack=false"]}
_PROPS = ("ro.product.manufacturer", "ro.product.model", "ro.soc.model",
          "ro.build.version.release", "ro.product.cpu.abi")


class ADBTFLite(Backend):
    """TFLite benchmark_model on an Android device over adb (ONNX converted to .tflite)."""

    name = "adb-tflite"
    rules = "tflite-xnnpack"
    options = {
        "serial": Option(None, help="device serial or ip:port (default: the only device)"),
        "adb": Option("adb", type=str, help="adb executable"),
        "benchmark_model": Option("/data/local/tmp/benchmark_model", type=str,
                                  help="benchmark_model binary on the device"),
        "remote_dir": Option("/data/local/tmp/edgemeter", type=str),
        "delegate": Option("xnnpack", tuple(DELEGATES)),
    }

    def __init__(self, threads: int = 1, **options: Any):
        super().__init__(threads, **options)
        self._device: dict[str, str] | None = None

    def adb(self, *args: str, timeout_s: float = 120) -> str:
        """Run ``adb [-s SERIAL] ARGS``; its output, or RoundFailed with adb's last line."""
        command = [self.config["adb"]]
        if self.config["serial"]:
            command += ["-s", str(self.config["serial"])]
        try:
            done = subprocess.run([*command, *args], capture_output=True, text=True,
                                  timeout=timeout_s, start_new_session=True)
        except FileNotFoundError:
            raise RoundFailed(f"no adb executable '{self.config['adb']}': install the Android "
                              "platform tools or set the adb option") from None
        except subprocess.TimeoutExpired:
            raise RoundFailed(f"adb {args[0]} timed out after {timeout_s:g} s") from None
        if done.returncode:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise RoundFailed(f"adb {args[0]} failed: {lines[-1] if lines else done.returncode}")
        return done.stdout

    def benchmark_command(self, remote_model: str, warmup: int, runs: int,
                          profile: bool) -> list[str]:
        """The ``benchmark_model`` argv run on the device. Minimum durations are zeroed so
        the run counts are the protocol's, not the tool's defaults of 0.5 s and 1 s."""
        return [self.config["benchmark_model"], f"--graph={remote_model}",
                f"--num_threads={self.threads}", *DELEGATES[self.config["delegate"]],
                f"--warmup_runs={warmup}", "--warmup_min_secs=0", f"--num_runs={runs}",
                "--min_secs=0", f"--enable_op_profiling={'true' if profile else 'false'}"]

    def run_round(self, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        model = Path(payload["model"])
        profile = payload["profile_runs"] > 0
        runs = payload["profile_runs"] if profile else payload["repeats"]
        remote = f"{self.config['remote_dir']}/{file_sha256(model)[:16]}.tflite"
        env = self.device_environment()
        with tempfile.TemporaryDirectory(prefix="edgemeter-adb-") as tmp:
            local = self.tflite(model, Path(tmp))
            self.adb("shell", "mkdir", "-p", self.config["remote_dir"])
            self.adb("push", str(local), remote, timeout_s=timeout_s)
        try:
            text = self.adb("shell", *self.benchmark_command(remote, payload["warmup"], runs,
                                                             profile), timeout_s=timeout_s)
        finally:
            self.adb("shell", "rm", "-f", remote)
        try:
            out = parse_benchmark_output(text)
        except EdgemeterError as exc:
            raise RoundFailed(str(exc)) from None
        memory_kb = int(out.peak_memory_mb * 1024) if out.peak_memory_mb is not None else 0
        return {"samples_ms": [out.inference_ms] if runs and not profile else [],
                "env": {**env, "benchmark_model": {"warmup": out.warmup, "runs": out.runs,
                                                   "timings": out.timings}},
                "node_times_ms": out.op_times_ms, "node_origins": None,
                "max_rss_kb": memory_kb}

    @staticmethod
    def tflite(model: Path, folder: Path) -> Path:
        if model.suffix.lower() == ".tflite":
            return model
        from edgemeter.converters.tflite import onnx_to_tflite

        return onnx_to_tflite(model, folder / f"{model.stem}.tflite")

    def environment(self) -> dict[str, Any]:
        try:
            return self.device_environment()
        except RoundFailed as exc:
            raise ConfigError(str(exc)) from None

    def device_environment(self) -> dict[str, Any]:
        """The phone's model, SoC, Android version and cores (asked once); RoundFailed when
        adb cannot reach it."""
        if self._device is None:
            script = "; ".join(f"getprop {prop}" for prop in _PROPS) + "; nproc"
            lines = self.adb("shell", script, timeout_s=30).splitlines()
            values = [line.strip() for line in lines] + [""] * (len(_PROPS) + 1)
            self._device = dict(zip((*_PROPS, "cores"), values))
        d = self._device
        return {"cpu": d["ro.soc.model"] or d["ro.product.cpu.abi"],
                "device": f"{d['ro.product.manufacturer']} {d['ro.product.model']}".strip(),
                "os": f"Android {d['ro.build.version.release']}",
                "cores": int(d["cores"]) if d["cores"].isdigit() else None,
                "abi": d["ro.product.cpu.abi"], "serial": self.config["serial"],
                "backend": self.name, "threads": self.threads,
                **self.runtime_environment(), "settings": self.settings()}

    def runtime_environment(self) -> dict[str, Any]:
        return {"runtime": "tflite benchmark_model",
                "runtime_version": Path(self.config["benchmark_model"]).name,
                "precision": "f32", "delegate": self.config["delegate"]}

    def load(self, model_path: Path) -> Runner:
        raise ConfigError("backend adb-tflite runs models on the phone: measure them with "
                          "edgemeter.backends.measure or `edgemeter measure`")
