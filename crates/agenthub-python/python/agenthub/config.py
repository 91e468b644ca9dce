"""The Phase-1 configuration classes. Each attribute is a setting of config.yaml; only the
attributes you set are applied (over ``<home>/config.yaml`` and ``AGENTHUB_*`` variables),
so a default shown here never overrides what the user configured."""

from __future__ import annotations

from typing import Any

__all__ = ["RuntimeConfig", "EnvironmentConfig"]


class _Settings:
    _KEYS: dict[str, str] = {}
    _DEFAULTS: dict[str, Any] = {}

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_explicit", {})
        for name, default in self._DEFAULTS.items():
            object.__setattr__(self, name, default)
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._KEYS:
            known = ", ".join(self._KEYS)
            raise AttributeError(f"{type(self).__name__} has no setting {name!r} (it has: {known})")
        object.__setattr__(self, name, value)
        self._explicit[name] = value

    def settings(self) -> dict[str, Any]:
        """The config.yaml keys and values of the attributes that were set."""
        out = {}
        for name, value in self._explicit.items():
            if name == "log_level" and isinstance(value, str):
                value = value.lower()
            out[self._KEYS[name]] = value
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._KEYS)
        return f"{type(self).__name__}({fields})"


class RuntimeConfig(_Settings):
    """Configuration for the runtime module (defaults as the interface document gives them)."""

    _KEYS = {
        "max_execution_time": "runtime.max_execution_time",
        "max_memory_usage": "runtime.max_memory_usage",
        "subprocess_timeout": "runtime.subprocess_timeout",
        "cleanup_interval": "runtime.cleanup_interval",
        "log_level": "runtime.log_level",
        "use_uv": "runtime.use_uv",
    }
    _DEFAULTS = {
        "max_execution_time": 30,  # seconds
        "max_memory_usage": 1024,  # MB
        "subprocess_timeout": 5,  # seconds
        "cleanup_interval": 60,  # seconds
        "log_level": "INFO",
        "use_uv": True,  # Fallback to pip if False
    }


class EnvironmentConfig(_Settings):
    """Configuration for environment management.

    Two defaults differ from the interface document, because agenthub and the original
    share agent directories: environments are at ``<agent>/.venv`` (the document says
    ``venv``; the original and the agenthub CLI use ``.venv``), and ``python_version`` is
    ``None`` (the agent's own ``python_version``, else the first interpreter found; the
    document's ``"3.12"`` would make every agent need a Python 3.12).
    """

    _KEYS = {
        "python_version": "environment.python_version",
        "venv_location": "environment.venv_location",
        "dependency_cache": "environment.dependency_cache",
        "auto_cleanup": "environment.auto_cleanup",
        "max_venv_size": "environment.max_venv_size",
    }
    _DEFAULTS = {
        "python_version": None,
        "venv_location": ".venv",
        "dependency_cache": True,
        "auto_cleanup": True,
        "max_venv_size": 500,  # MB
    }
