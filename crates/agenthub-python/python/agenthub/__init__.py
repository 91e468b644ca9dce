"""agenthub: run agentplug agents from Python on the agenthub runtime (written in Rust).

The original's API::

    import agenthub as ah
    agent = ah.load_agent("agentplug/coding-agent")
    agent.generate_code("a hello world function")   # {"result": ..., "execution_time": ...}

and the Phase-1 interface (``agenthub.runtime.process_manager.ProcessManager``,
``agenthub.runtime.environment_manager.EnvironmentManager``,
``agenthub.runtime.agent_runtime.AgentRuntime``, :mod:`agenthub.errors`,
:class:`RuntimeConfig`, :class:`EnvironmentConfig`). Agents run sandboxed, in warm
workers by default; every call releases the GIL.
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from . import _native
from ._agent import Agent, AsyncAgent, load_agent
from ._tools import ToolSpec, get_available_tools, get_tool_metadata, tool
from .config import EnvironmentConfig, RuntimeConfig
from . import errors as _errors
from .errors import *  # noqa: F403 - the taxonomy, listed in errors.__all__

__version__: str = _native.__version__

__all__ = [
    "load_agent",
    "Agent",
    "AsyncAgent",
    "tool",
    "ToolSpec",
    "get_available_tools",
    "get_tool_metadata",
    "RuntimeConfig",
    "EnvironmentConfig",
    *_errors.__all__,
]

# The original (`agenthub-sdk`) installs the same import package: files of both in one
# directory make neither work. Its `sdk/` beside ours means it was installed too.
if _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "sdk")):
    _warnings.warn(
        "agenthub-sdk is installed in this environment too, and both provide the `agenthub` package: "
        "the files of one overwrote the other's. Uninstall both, then install the one you want "
        "(pip uninstall -y agenthub-sdk agenthub-rt && pip install agenthub-rt).",
        RuntimeWarning,
        stacklevel=2,
    )
