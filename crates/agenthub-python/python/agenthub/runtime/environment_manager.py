"""``EnvironmentManager``: isolated virtual environments for agents."""

from __future__ import annotations

import os

from ..config import EnvironmentConfig
from ..errors import EnvironmentError
from . import _common

__all__ = ["EnvironmentManager"]


class EnvironmentManager:
    """Manages isolated virtual environments for agents."""

    def __init__(self, config: EnvironmentConfig | None = None, *, home: str | os.PathLike[str] | None = None) -> None:
        """Initialize the environment manager."""
        self._session = _common.session(home, None, config)

    def create_environment(self, agent_path: str) -> str:
        """Create a virtual environment for an agent (nothing installed in it yet), or
        return the one it has. Never replaces an environment agenthub did not make.

        Returns:
            str: Path to the virtual environment (``<agent_path>/.venv``).

        Raises:
            RuntimeError: If environment creation fails (``EnvironmentError``).
        """
        path = _common.agent_path(agent_path)
        if not os.path.isdir(path):
            raise EnvironmentError(
                f"cannot create an environment for {path}: it is not a directory",
                "Give the path of an agent directory (the one with agent.yaml)",
            )
        return os.fspath(self._session.native.create_environment(path))

    def install_dependencies(self, venv_path: str, requirements: list) -> None:
        """Install dependencies (PEP 508 requirements, or ``-r FILE``) in a virtual environment.

        Raises:
            RuntimeError: If dependency installation fails (``EnvironmentError``).
        """
        venv = _common.agent_path(venv_path)
        if isinstance(requirements, str) or not all(isinstance(r, str) for r in requirements):
            raise ValueError("requirements must be a list of requirement strings")
        if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            raise EnvironmentError(
                f"{venv} is not a virtual environment (it has no pyvenv.cfg)",
                "Create it first: EnvironmentManager().create_environment(agent_path)",
            )
        self._session.native.install_dependencies(venv, list(requirements))

    def get_python_executable(self, venv_path: str) -> str:
        """The Python executable of a virtual environment (``<venv>/bin/python``)."""
        return os.fspath(self._session.native.python_executable(_common.agent_path(venv_path)))

    def activate_environment(self, venv_path: str) -> dict:
        """Environment variables for an activated virtual environment: this process's,
        with ``VIRTUAL_ENV`` set, ``<venv>/bin`` first on ``PATH`` and ``PYTHONHOME``
        removed, as a shell's ``activate`` does (pass it as ``env=`` to subprocess)."""
        venv = os.path.abspath(_common.agent_path(venv_path))
        env = dict(os.environ)
        env["VIRTUAL_ENV"] = venv
        old = env.get("PATH", "")
        env["PATH"] = os.path.join(venv, "bin") + (os.pathsep + old if old else "")
        env.pop("PYTHONHOME", None)
        return env
