"""``AgentRuntime``: coordinates agent execution behind one interface."""

from __future__ import annotations

import json
import os
from typing import Any

from ..config import EnvironmentConfig, RuntimeConfig
from ..errors import MethodNotFoundError
from . import _common
from .environment_manager import EnvironmentManager
from .process_manager import ProcessManager

__all__ = ["AgentRuntime"]


class AgentRuntime:
    """Coordinates agent execution and provides unified interface."""

    def __init__(
        self,
        runtime_config: RuntimeConfig | None = None,
        environment_config: EnvironmentConfig | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
    ) -> None:
        """Initialize the agent runtime."""
        self.process_manager = ProcessManager(runtime_config, home=home)
        self.environment_manager = EnvironmentManager(environment_config, home=home)
        self._session = _common.session(home, runtime_config, environment_config)

    def load_agent_manifest(self, agent_path: str) -> dict:
        """Load and parse an agent manifest.

        Raises:
            ValueError: If manifest is invalid or missing (``InvalidManifestError``).
            FileNotFoundError: If agent directory doesn't exist (``AgentNotFoundError``).
        """
        return json.loads(self._session.native.manifest(_common.agent_path(agent_path)))

    def execute_agent(self, agent_path: str, method: str, parameters: dict) -> dict:
        """Execute an agent method with full runtime coordination.

        Returns the response dict (``result``, or ``error``/``error_type``/``suggestion``
        for what went wrong in the run).

        Raises:
            ValueError: If method doesn't exist in agent interface (``MethodNotFoundError``).
            RuntimeError: If execution cannot be set up (``EnvironmentError``).
        """
        path = _common.agent_path(agent_path)
        name = _common.method_name(method)
        manifest = self.load_agent_manifest(path)
        methods = manifest.get("methods", {})
        if name not in methods:
            available = ", ".join(methods) or "none"
            raise MethodNotFoundError(
                f"Method '{name}' not found in agent '{manifest.get('name', path)}'",
                f"Available methods: {available}",
            )
        return self.process_manager._execute(path, name, _common.parameters_json(parameters))

    def validate_method(self, agent_path: str, method: str) -> bool:
        """Whether ``method`` exists in the agent's interface (a manifest that cannot be
        loaded raises, as ``load_agent_manifest`` does)."""
        if not isinstance(method, str):
            return False
        return method in self.load_agent_manifest(agent_path).get("methods", {})

    def get_agent_info(self, agent_path: str) -> dict[str, Any]:
        """Information about an agent: ``name``, ``version``, ``description``, ``methods``
        (the interface), its location and the state of its environment."""
        info = json.loads(self._session.native.info(_common.agent_path(agent_path)))
        manifest = info.get("manifest") or {}
        for key in ("name", "version", "description", "author"):
            info.setdefault(key, manifest.get(key))
        info.setdefault("methods", manifest.get("methods", {}))
        return info
