"""``ProcessManager``: runs agent methods in isolated subprocesses."""

from __future__ import annotations

import os
from typing import Any

from ..config import RuntimeConfig
from . import _common

__all__ = ["ProcessManager"]


class ProcessManager:
    """Manages agent subprocess execution with isolation."""

    def __init__(self, config: RuntimeConfig | None = None, *, home: str | os.PathLike[str] | None = None) -> None:
        """Initialize the process manager (``config``: settings over config.yaml's;
        ``home``: else ``$AGENTHUB_HOME``, else ``~/.agenthub``)."""
        self._session = _common.session(home, config, None)

    def execute_agent(self, agent_path: str, method: str, parameters: dict) -> dict:
        """Execute an agent method in an isolated subprocess.

        Returns the response: ``{"result": ..., "execution_time": ...}``, or for what went
        wrong in the run ``{"error": ..., "error_type": ..., "suggestion": ...,
        "execution_time": ...}``.

        Raises:
            ValueError: If agent_path or method is invalid (``AgentNotFoundError``,
                ``InvalidManifestError``, ``MethodNotFoundError`` and
                ``InvalidParametersError`` are ``ValueError``s).
            RuntimeError: If the subprocess cannot be set up (``EnvironmentError``).
        """
        path = _common.agent_path(agent_path)
        text = self._session.native.execute(path, _common.method_name(method), _common.parameters_json(parameters))
        return _common.finish(text)

    def cleanup_processes(self) -> int:
        """Clean up any orphaned subprocesses: kills every agent process this runtime runs;
        returns how many."""
        return self._session.native.cleanup_processes()

    def is_process_running(self, process_id: int) -> bool:
        """Check if a process is still running (a zombie, ended but not reaped, is not)."""
        if not isinstance(process_id, int) or isinstance(process_id, bool) or process_id <= 0:
            return False
        return self._session.native.is_process_running(process_id)

    def _execute(self, path: str, method: str, params: str) -> dict[str, Any]:
        return _common.finish(self._session.native.execute(path, method, params))
