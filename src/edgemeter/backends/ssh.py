"""A backend on another host over SSH: the model is pushed there and every round of the protocol
runs there in a fresh ``python -m edgemeter.backends.worker``, with the same JSON payload and
result as a local round. The host needs only edgemeter and the runtime installed; this side uses
the system ``ssh`` client (keys, agents and ``~/.ssh/config`` work as usual)::

    backend: ssh
    threads: 4
    options: {host: pi5.local, user: bench, backend: onnxruntime-cpu,
              python: /opt/edgemeter/bin/python}
"""
from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

from edgemeter.backends.base import Backend, Option, Runner
from edgemeter.backends.protocol import THREAD_ENV, RoundFailed, file_sha256
from edgemeter.errors import ConfigError

# Settings that say how to reach the host, not what is measured: left out of the store key.
_ACCESS = ("key_file", "known_hosts", "connect_timeout_s")


class SSHBackend(Backend):
    """Any edgemeter backend on a remote host, over SSH (push model, run rounds, pull results)."""

    name = "ssh"
    options = {
        "host": Option(None, help="host name or address (required)"),
        "port": Option(22, type=int),
        "user": Option(None, help="login name (default: ssh's)"),
        "key_file": Option(None, help="private key file (default: ssh's)"),
        "known_hosts": Option(None, help="known_hosts file that must hold the host's key"),
        "python": Option("python3", type=str, help="Python with edgemeter on the host"),
        "workdir": Option("/tmp/edgemeter", type=str, help="folder for models on the host"),
        "backend": Option("onnxruntime-cpu", type=str, help="backend to run on the host"),
        "backend_options": Option({}, type=dict, help="options of that backend"),
        "connect_timeout_s": Option(10, type=int),
    }

    def __init__(self, threads: int = 1, **options: Any):
        super().__init__(threads, **options)
        if not self.config["host"]:
            raise ConfigError("backend ssh: option 'host' is required")
        from edgemeter.backends import backend_class, backend_target

        # The remote side runs the same built-in or plug-in backend by its import path.
        self.remote_target = backend_target(self.config["backend"])
        self.remote_config = {"threads": threads, **self.config["backend_options"]}
        remote_cls = backend_class(self.config["backend"])
        remote_cls(**self.remote_config)  # bad remote options fail here, not on the host
        self.rules = remote_cls.rules
        self._pushed: dict[str, str] = {}  # local sha256 -> remote path
        self._environment: dict[str, Any] | None = None

    @property
    def destination(self) -> str:
        user = self.config["user"]
        return f"{user}@{self.config['host']}" if user else self.config["host"]

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in super().settings().items() if k not in _ACCESS}

    def ssh(self, command: str, stdin: bytes = b"", timeout_s: float | None = None,
            ) -> subprocess.CompletedProcess:
        """Run ``command`` through the host's shell. An unreachable host (ssh's own exit code
        255) raises RoundFailed with ssh's one-line reason."""
        args = ["ssh", "-p", str(self.config["port"]), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={self.config['connect_timeout_s']}"]
        if self.config["key_file"]:
            args += ["-i", str(self.config["key_file"]), "-o", "IdentitiesOnly=yes"]
        if self.config["known_hosts"]:
            args += ["-o", f"UserKnownHostsFile={self.config['known_hosts']}",
                     "-o", "StrictHostKeyChecking=yes"]
        args += [self.destination, command]
        # Own session: a timeout takes down ssh and nothing of ours survives it.
        try:
            done = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout_s,
                                  start_new_session=True)
        except FileNotFoundError:
            raise RoundFailed("no ssh client: install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise RoundFailed(f"timed out after {timeout_s:g} s on {self.destination}") from None
        if done.returncode == 255:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else "ssh failed"
            raise RoundFailed(f"cannot reach {self.destination}:{self.config['port']}: {reason}")
        return done

    def push(self, model: Path) -> str:
        """Copy ``model`` to the host once (named by content, so a rerun finds it there)."""
        sha = file_sha256(model)
        if sha not in self._pushed:
            workdir = self.config["workdir"]
            remote = f"{workdir}/{sha[:16]}{model.suffix}"
            # Write then rename: a concurrent run never sees half a model.
            command = (f"mkdir -p {shlex.quote(workdir)} && cat > {shlex.quote(remote)}.part "
                       f"&& mv {shlex.quote(remote)}.part {shlex.quote(remote)}")
            done = self.ssh(command, model.read_bytes(), timeout_s=600)
            if done.returncode:
                raise RoundFailed(f"cannot copy the model to {self.destination}: "
                                  f"{_last_line(done.stderr)}")
            self._pushed[sha] = remote
        return self._pushed[sha]

    def run_round(self, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        remote_model = self.push(Path(payload["model"]))
        result = f"{self.config['workdir']}/round-{uuid.uuid4().hex}.json"
        payload = {**payload, "target": self.remote_target, "config": self.remote_config,
                   "model": remote_model, "result": result, "sys_path": []}
        env = " ".join(f"{name}={self.threads}" for name in THREAD_ENV)
        # The host's own timeout kills a hung worker even if this side's connection drops.
        worker = (f"env {env} timeout -s KILL {int(timeout_s) + 1} "
                  f"{shlex.quote(self.config['python'])} -m edgemeter.backends.worker")
        command = (f"{worker} >/dev/null; rc=$?; cat {shlex.quote(result)} 2>/dev/null; "
                   f"rm -f {shlex.quote(result)}; exit $rc")
        done = self.ssh(command, json.dumps(payload).encode(),
                        timeout_s=timeout_s + self.config["connect_timeout_s"] + 5)
        if done.stdout.strip():
            out = json.loads(done.stdout)
            if "error" in out:
                raise RoundFailed(out["error"])
            out["env"] = {**out["env"], "via": f"ssh {self.destination}:{self.config['port']}"}
            return out
        code, detail = done.returncode, _last_line(done.stderr)
        if code == 137:
            raise RoundFailed(f"timed out after {timeout_s:g} s on {self.destination}")
        if code > 128:
            raise RoundFailed(f"runtime crashed on {self.destination} (signal {code - 128}): "
                              f"{detail}")
        raise RoundFailed(f"worker on {self.destination} exited with code {code} without a "
                          f"result: {detail}")

    def environment(self) -> dict[str, Any]:
        """The host's machine and runtime, as its backend describes them."""
        if self._environment is None:
            script = ("import json, sys; from edgemeter.backends import get_backend; "
                      "print(json.dumps(get_backend(sys.argv[1], **json.loads(sys.argv[2]))"
                      ".environment()))")
            command = " ".join(shlex.quote(part) for part in (
                self.config["python"], "-c", script, self.config["backend"],
                json.dumps(self.remote_config)))
            try:
                done = self.ssh(command, timeout_s=60 + self.config["connect_timeout_s"])
            except RoundFailed as exc:
                raise ConfigError(str(exc)) from None
            if done.returncode:
                raise ConfigError(f"{self.config['backend']} on {self.destination}: "
                                  f"{_last_line(done.stderr)}")
            self._environment = {**json.loads(done.stdout), "backend": self.name,
                                 "via": f"ssh {self.destination}:{self.config['port']}",
                                 "settings": self.settings()}
        return self._environment

    def runtime_environment(self) -> dict[str, Any]:
        env = self.environment()
        return {key: env[key] for key in ("runtime", "runtime_version", "precision")}

    def test_connection(self) -> str:
        return f"{super().test_connection()} via ssh {self.destination}"

    def load(self, model_path: Path) -> Runner:
        raise ConfigError("backend ssh runs models on the remote host: measure them with "
                          "edgemeter.backends.measure or `edgemeter measure`")


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
