"""The error taxonomy of the Phase-1 interface, one class per ``error_type`` of a response.

Every class derives from :class:`AgentRuntimeError` and also from the built-in exception
the interface document names for it, so ``except ValueError`` and ``except RuntimeError``
catch what the document says they catch:

======================  ===============================  ==========================
error_type              class                            also a
======================  ===============================  ==========================
AgentNotFoundError      :class:`AgentNotFoundError`      ``FileNotFoundError``, ``ValueError``
InvalidManifestError    :class:`InvalidManifestError`    ``ValueError``
MethodNotFoundError     :class:`MethodNotFoundError`     ``ValueError``, ``AttributeError``
InvalidParametersError  :class:`InvalidParametersError`  ``ValueError``
EnvironmentError        :class:`EnvironmentError`        ``RuntimeError``
ExecutionError          :class:`ExecutionError`          ``RuntimeError``
TimeoutError            :class:`TimeoutError`            ``ExecutionError``, built-in ``TimeoutError``
ResourceLimitError      :class:`ResourceLimitError`      ``ExecutionError``
AgentError              :class:`AgentError`              ``ExecutionError``
ProtocolError           :class:`ProtocolError`           ``ExecutionError``
======================  ===============================  ==========================

Each carries ``message``, ``suggestion`` (what to do about it, or ``None``), ``error_type``
and ``response`` (the whole response dict, ``stderr`` tail included when the agent wrote
one).
"""

from __future__ import annotations

import builtins
import json
from typing import Any

__all__ = [
    "AgentRuntimeError",
    "AgentNotFoundError",
    "InvalidManifestError",
    "MethodNotFoundError",
    "InvalidParametersError",
    "EnvironmentError",
    "ExecutionError",
    "TimeoutError",
    "ResourceLimitError",
    "AgentError",
    "ProtocolError",
]


class AgentRuntimeError(Exception):
    """Base exception for agent runtime errors."""

    def __new__(cls, message: str = "", suggestion: str | None = None, response: dict[str, Any] | None = None):
        # OSError subclasses would read three arguments as (errno, strerror, filename), and
        # an OSError's instance must come from OSError's own constructor.
        if issubclass(cls, OSError):
            return OSError.__new__(cls, message)
        return super().__new__(cls, message)

    def __init__(self, message: str = "", suggestion: str | None = None, response: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion
        self.response: dict[str, Any] = response if response is not None else {
            "error": message,
            "error_type": type(self).__name__,
            **({"suggestion": suggestion} if suggestion else {}),
        }

    @property
    def error_type(self) -> str:
        """The response's ``error_type`` (the class name for errors made here)."""
        return self.response.get("error_type", type(self).__name__)

    def __str__(self) -> str:
        if self.suggestion:
            return f"{self.message}\n  help: {self.suggestion}"
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.suggestion, self.response))


class AgentNotFoundError(AgentRuntimeError, FileNotFoundError, ValueError):
    """Raised when agent directory doesn't exist (an invalid ``agent_path``: also a
    ``ValueError``, as ``ProcessManager.execute_agent`` documents)."""


class InvalidManifestError(AgentRuntimeError, ValueError):
    """Raised when agent manifest is invalid."""


class MethodNotFoundError(AgentRuntimeError, ValueError, AttributeError):
    """Raised when method doesn't exist in agent interface."""


class InvalidParametersError(AgentRuntimeError, ValueError):
    """Raised when a call's parameters do not match the method's declaration."""


class EnvironmentError(AgentRuntimeError, RuntimeError):  # noqa: A001 - the interface's name
    """Raised when environment setup fails."""


class ExecutionError(AgentRuntimeError, RuntimeError):
    """Raised when agent execution fails."""


class TimeoutError(ExecutionError, builtins.TimeoutError):  # noqa: A001 - the response's error_type
    """The agent did not answer within its time limit."""


class ResourceLimitError(ExecutionError):
    """The agent went over its memory or output limit."""


class AgentError(ExecutionError):
    """The agent's method raised (its traceback is in ``response['stderr']``)."""


class ProtocolError(ExecutionError):
    """The agent did not answer with one JSON object."""


_BY_TYPE: dict[str, type[AgentRuntimeError]] = {
    cls.__name__: cls
    for cls in (
        AgentNotFoundError,
        InvalidManifestError,
        MethodNotFoundError,
        InvalidParametersError,
        EnvironmentError,
        ExecutionError,
        TimeoutError,
        ResourceLimitError,
        AgentError,
        ProtocolError,
    )
}


def error_class(error_type: str) -> type[AgentRuntimeError]:
    """The class of an ``error_type`` (:class:`AgentRuntimeError` for one not known here)."""
    return _BY_TYPE.get(error_type, AgentRuntimeError)


def from_response(response: dict[str, Any]) -> AgentRuntimeError:
    """The exception for a failed response dict."""
    cls = error_class(str(response.get("error_type", "")))
    return cls(str(response.get("error", "")), response.get("suggestion"), response)


def _from_response(text: str) -> AgentRuntimeError:
    """The exception for a failed response given as JSON text (the extension module's)."""
    return from_response(json.loads(text))
