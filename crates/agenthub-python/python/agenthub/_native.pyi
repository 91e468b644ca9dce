"""The extension module (Rust): what the package's Python is built on."""

from os import PathLike
from typing import Any, Callable

__version__: str

def config_keys() -> list[str]:
    """The configuration keys ``settings`` accepts (config.yaml's)."""

def interrupt_fd() -> int:
    """The write end of the Ctrl-C pipe last made, or -1."""

def interpreter_exiting(wait: float) -> bool:
    """Function tools are refused from now on; waits up to ``wait`` s for running ones."""

def tools_after_fork() -> None:
    """In a forked child: forgets the parent's running tool calls."""

def flush_traces(timeout: float) -> str | None:
    """Sends queued spans to the collector (at most ``timeout`` s); a warning if spans were lost."""

class Runtime:
    """One agenthub runtime: ``Runtime(home=None, settings=[], auto_install=None)``."""

    def __init__(
        self,
        home: str | PathLike[str] | None = None,
        settings: list[tuple[str, str]] = ...,
        auto_install: bool | None = None,
    ) -> None: ...
    @property
    def home(self) -> str: ...
    @property
    def mode(self) -> str: ...
    def load(self, agent: str) -> Agent: ...
    def call(
        self,
        agent: Agent,
        method: str,
        params: str,
        timeout: float | None = None,
        grants: str | None = None,
        tools: Tools | None = None,
        cancel: Cancel | None = None,
    ) -> str:
        """Runs a method; the SPEC §5 response as JSON text. Releases the GIL."""
    def execute(self, agent: str, method: str, params: str, timeout: float | None = None) -> str: ...
    def manifest(self, agent: str) -> str: ...
    def info(self, agent: str) -> str: ...
    def ensure_environment(self, agent: str) -> str: ...
    def create_environment(self, agent_path: str | PathLike[str]) -> str: ...
    def install_dependencies(self, venv: str | PathLike[str], requirements: list[str]) -> None: ...
    def python_executable(self, venv: str | PathLike[str]) -> str: ...
    def venv_path(self, agent_path: str | PathLike[str]) -> str: ...
    def prestart(self, agent: Agent) -> None: ...
    def tools(
        self,
        agents: list[str] = ...,
        servers_files: list[str | PathLike[str]] = ...,
        functions: list[tuple[str, str, str, Callable[..., Any]]] = ...,
    ) -> Tools: ...
    def cleanup_processes(self) -> int: ...
    def is_process_running(self, pid: int) -> bool: ...
    def idle_worker_pids(self) -> list[int]: ...
    def shutdown(self) -> int: ...

class Agent:
    """An agent the runtime loaded."""

    @property
    def manifest_json(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def installed_id(self) -> str | None: ...

class Cancel:
    """Cancels one call from another thread or task."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

class Tools:
    """The tools a call is given."""

    @property
    def names(self) -> list[str]: ...
    @property
    def context_json(self) -> str: ...
