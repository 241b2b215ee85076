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
