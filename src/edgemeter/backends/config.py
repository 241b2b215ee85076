"""Measurement configuration: which backend, its settings and the protocol, from a YAML file
(by default ``backend.yaml`` in the workspace) overridden by command-line flags::

    backend: openvino-cpu-f32
    threads: 1
    options: {}                 # backend-specific, see `edgemeter backends list`
    protocol: {rounds: 3, repeats: 30, target_cv: 0.02}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemeter.backends.protocol import Protocol
from edgemeter.errors import ConfigError

WORKSPACE_CONFIG = "backend.yaml"
_KEYS = ("backend", "threads", "options", "protocol")


@dataclass
class MeasureConfig:
    backend: str | None = None
    threads: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> MeasureConfig:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with keys {', '.join(_KEYS)}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(_KEYS)})")
        for key in ("options", "protocol"):
            if not isinstance(data.get(key, {}), dict):
                raise ConfigError(f"{path}: '{key}' must be a mapping")
        return cls(**data)

    @classmethod
    def resolve(cls, config_file: str | Path | None = None, workspace: str | Path | None = None,
                **flags: Any) -> MeasureConfig:
        """The config file (or the workspace's ``backend.yaml``), then every flag that is not
        None on top; ``options`` and ``protocol`` flags update the file's mappings."""
        if config_file is None and workspace is not None:
            candidate = Path(workspace) / WORKSPACE_CONFIG
            config_file = candidate if candidate.exists() else None
        config = cls.from_yaml(config_file) if config_file else cls()
        for key, value in flags.items():
            if value is None:
                continue
            if key in ("options", "protocol"):
                getattr(config, key).update(value)
            else:
                setattr(config, key, value)
        if not config.backend:
            raise ConfigError("no backend: pass --backend NAME or set 'backend' in "
                              f"{WORKSPACE_CONFIG} (see `edgemeter backends list`)")
        return config

    def backend_config(self) -> dict[str, Any]:
        return {"threads": self.threads, **self.options}

    def make_protocol(self) -> Protocol:
        return Protocol.from_dict(self.protocol)
