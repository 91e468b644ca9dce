"""The Phase-1 runtime interface: ``ProcessManager``, ``EnvironmentManager`` and
``AgentRuntime``, backed by the agenthub runtime (Rust)."""

from .agent_runtime import AgentRuntime
from .environment_manager import EnvironmentManager
from .process_manager import ProcessManager

__all__ = ["AgentRuntime", "EnvironmentManager", "ProcessManager"]
