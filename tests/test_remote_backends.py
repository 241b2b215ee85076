"""Remote backends: SSH against a real sshd on 127.0.0.1, adb through a recording fake adb."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemeter.backends import Protocol, get_backend, measure
from edgemeter.errors import ConfigError
from test_backends import tiny_onnx

FAST = Protocol(warmup=2, repeats=5, rounds=2, max_rounds=2, timeout_s=60, profile_runs=2)
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free 127.0.0.1 port with a throw-away host key, accepting one client
    key for the current user; yields the ssh backend options that reach it."""
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.skip("sshd or ssh not installed (apt-get install openssh-server openssh-client)")
    tmp = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)],
                       check=True)
    shutil.copy(tmp / "client_key.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPidFile {tmp / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n")
    host_key = (tmp / "host_key.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.skip(f"sshd cannot start here: {proc.stderr.read().decode().strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.skip("sshd did not listen within 10 s")
            time.sleep(0.05)
    yield {"host": "127.0.0.1", "port": port, "key_file": str(tmp / "client_key"),
           "known_hosts": str(tmp / "known_hosts"), "python": sys.executable,
           "workdir": str(tmp / "remote")}
    proc.terminate()
    proc.wait(5)


def test_ssh_measures_on_the_host_with_the_local_protocol(sshd, tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    m = measure(model, "ssh", {"threads": 1, **sshd}, FAST, profile=True)
    assert m.ok, m.error
    assert len(m.round_medians_ms) == 2 and len(m.samples_ms) == 10 and m.median_ms > 0
    assert m.env["runtime"] == "onnxruntime" and m.env["via"].startswith("ssh 127.0.0.1")
    assert m.env["threads"] == 1 and m.max_rss_kb > 0
    assert m.node_times_ms and m.node_origins  # profiled on the host, pulled back
    # Pushed once, by content; round result files are removed on the host.
    assert [p.name for p in Path(sshd["workdir"]).iterdir()] == [
        f"{m.model_sha256[:16]}.onnx"]
    # Where to log in is not part of what was measured (the store key).
    assert "key_file" not in m.config and m.config["host"] == "127.0.0.1"


def test_ssh_connect_says_hello_with_the_hosts_environment(sshd):
    backend = get_backend("ssh", **sshd, backend="openvino-cpu-f32")
    hello = backend.test_connection()
    assert hello.startswith("hello from ssh: openvino") and "via ssh 127.0.0.1" in hello
    assert backend.environment()["precision"] == "f32" and backend.rules == "openvino-cpu"


def test_ssh_remote_failures_are_failed_measurements(sshd, tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    # A Python on the host without edgemeter: the worker cannot start.
    m = measure(model, "ssh", {**sshd, "python": "/bin/false"}, FAST)
    assert not m.ok and "exited with code 1" in m.error
    # A model the host's runtime rejects: its reason comes back.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    m = measure(bad, "ssh", sshd, FAST)
    assert not m.ok and "bad.onnx" not in m.error and "ONNX" in m.error


def test_ssh_unreachable_host_is_one_clear_line(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    options = {"host": "127.0.0.1", "port": free_port(), "connect_timeout_s": 3}
    m = measure(model, "ssh", options, FAST)
    assert not m.ok and m.error.startswith(f"cannot reach 127.0.0.1:{options['port']}: ")
    assert "\n" not in m.error and "Connection refused" in m.error
    with pytest.raises(ConfigError, match="cannot reach 127.0.0.1"):
        get_backend("ssh", **options).test_connection()


def test_ssh_bad_settings_fail_before_connecting():
    with pytest.raises(ConfigError, match="'host' is required"):
        get_backend("ssh")
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        get_backend("ssh", host="h", backend="nope")
    with pytest.raises(ConfigError, match="graph_optimization_level"):
        get_backend("ssh", host="h", backend_options={"graph_optimization_level": "max"})


# --- adb + benchmark_model ----------------------------------------------------------------------

DATA = Path(__file__).parent / "data"

FAKE_ADB = """#!{python}
# A stand-in for adb: records its argv, answers like a phone with benchmark_model installed.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_ADB_OFFLINE"):
    sys.exit(print("adb: device '%s' not found" % args[1], file=sys.stderr) or 1)
if args[:2] == ["-s", "R58M123"]:
    args = args[2:]
if args[0] == "push":
    assert open(args[1], "rb").read()[4:8] == b"TFL3", "not a .tflite"
    print(args[1] + ": 1 file pushed.")
elif args[0] == "shell" and args[1].startswith("getprop"):
    print("samsung\\nSM-G991B\\nSM8350\\n13\\narm64-v8a\\n8")
elif args[0] == "shell" and args[1].endswith("benchmark_model"):
    key = "FAKE_ADB_PROFILE" if "--enable_op_profiling=true" in args else "FAKE_ADB_OUTPUT"
    print(open(os.environ[key]).read())
"""


def test_parses_benchmark_model_output_of_v2_7():
    from edgemeter.backends.benchmark_model import parse_benchmark_output

    out = parse_benchmark_output((DATA / "benchmark_model_v2.7_resnet50.txt").read_text())
    assert out.warmup == {"count": 30, "first": 104.448, "curr": 87.126, "min": 86.737,
                          "max": 104.448, "avg": 88.6225, "std": 3.079}
    assert out.runs["count"] == 50 and out.runs["avg"] == pytest.approx(88.1992)
    assert out.runs["std"] == 1.353 and out.runs["min"] == 86.939
    assert out.timings == pytest.approx({"init": 98.471, "first_inference": 104.448,
                                         "warmup_avg": 88.6225, "inference_avg": 88.1992})
    assert out.inference_ms == pytest.approx(88.1992)
    assert out.peak_memory_mb == 208.699 and out.op_times_ms is None


def test_parses_the_op_profiling_table_of_the_regular_runs():
    from edgemeter.backends.benchmark_model import parse_benchmark_output

    out = parse_benchmark_output((DATA / "benchmark_model_op_profiling.txt").read_text())
    assert out.runs["avg"] == pytest.approx(33.2094) and out.peak_memory_mb == 12.8672
    # Not the initialization table (AllocateTensors), not the "Top by" copy: run order, by the
    # tensor each node writes ("[output]:3" is tensor "output", node 3).
    assert out.op_times_ms == {"srnetwork/Conv/Relu": 16.23, "srnetwork/Conv_1/Relu": 8.083,
                               "srnetwork/Conv_2/BiasAdd": 8.419, "output": 0.419}


def test_parses_old_output_without_summary_line_and_rejects_a_failed_run():
    from edgemeter.backends.benchmark_model import parse_benchmark_output
    from edgemeter.errors import ModelError

    out = parse_benchmark_output((DATA / "benchmark_model_2019_no_summary.txt").read_text())
    assert out.inference_ms == pytest.approx(1.59271) and out.warmup["count"] == 302
    failed = "STARTING!\nGraph: [/sdcard/m.tflite]\nFailed to mmap model /sdcard/m.tflite\n"
    with pytest.raises(ModelError, match="Failed to mmap model"):
        parse_benchmark_output(failed)


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_v2.7_resnet50.txt"))
    monkeypatch.setenv("FAKE_ADB_PROFILE", str(DATA / "benchmark_model_op_profiling.txt"))
    return log


def test_adb_pushes_runs_and_removes_with_the_exact_command_lines(fake_adb, tmp_path):
    pytest.importorskip("ai_edge_litert")
    import json

    model = tiny_onnx(tmp_path / "tiny.onnx")
    options = {"threads": 4, "serial": "R58M123", "delegate": "xnnpack"}
    m = measure(model, "adb-tflite", options, FAST, profile=True)
    assert m.ok, m.error
    # One sample per round (the tool's mean over its runs), the tool's own stats kept.
    assert m.samples_ms == pytest.approx([88.1992, 88.1992]) and m.median_ms == m.samples_ms[0]
    assert m.env["device"] == "samsung SM-G991B" and m.env["cores"] == 8
    assert m.env["benchmark_model"]["runs"]["std"] == 1.353
    assert m.node_times_ms["srnetwork/Conv/Relu"] == 16.23 and m.max_rss_kb > 0

    calls = [json.loads(line) for line in fake_adb.read_text().splitlines()]
    assert all(call[:2] == ["-s", "R58M123"] for call in calls)
    remote = f"/data/local/tmp/edgemeter/{m.model_sha256[:16]}.tflite"
    benchmark = ["/data/local/tmp/benchmark_model", f"--graph={remote}", "--num_threads=4",
                 "--use_xnnpack=true", "--warmup_runs=2", "--warmup_min_secs=0"]
    round_calls = [["shell", "mkdir", "-p", "/data/local/tmp/edgemeter"],
                   ["push", "<local .tflite>", remote],
                   ["shell", *benchmark, "--num_runs=5", "--min_secs=0",
                    "--enable_op_profiling=false"],
                   ["shell", "rm", "-f", remote]]
    profile_calls = [*round_calls[:2], ["shell", *benchmark, "--num_runs=2", "--min_secs=0",
                                        "--enable_op_profiling=true"], round_calls[3]]
    seen = [call[2:] for call in calls if not call[3].startswith("getprop")]
    for call in seen:
        if call[0] == "push":
            assert call[1].endswith("tiny.tflite")
            call[1] = "<local .tflite>"
    assert seen == round_calls * 2 + profile_calls


def test_adb_delegates_and_a_missing_device(fake_adb, tmp_path, monkeypatch):
    backend = get_backend("adb-tflite", delegate="gpu")
    assert "--use_gpu=true" in backend.benchmark_command("/m.tflite", 1, 1, False)
    assert "--use_xnnpack=false" in get_backend("adb-tflite", delegate="cpu").benchmark_command(
        "/m.tflite", 1, 1, False)
    with pytest.raises(ConfigError, match="delegate='npu' is not allowed"):
        get_backend("adb-tflite", delegate="npu")
    monkeypatch.setenv("FAKE_ADB_OFFLINE", "1")
    m = measure(tiny_onnx(tmp_path / "tiny.onnx"), "adb-tflite", {"serial": "X1"}, FAST)
    assert not m.ok and m.error == "adb shell failed: adb: device 'X1' not found"
    with pytest.raises(ConfigError, match="device 'X1' not found"):
        get_backend("adb-tflite", serial="X1").test_connection()
