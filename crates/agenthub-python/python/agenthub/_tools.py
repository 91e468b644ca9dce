"""Python functions as tools for agents: ``@agenthub.tool``.

A decorated function is registered under its name. ``load_agent(..., external_tools=[...])``
assigns tools by that name (or by the function itself); when the sandboxed agent calls one
over MCP, agenthub calls the function back in this process, with the agent's arguments as
keywords, on a thread of its own (the GIL is taken for the call). What it returns is sent
back as JSON (``str()`` for what JSON cannot hold); what it raises is what the agent is
told. Async functions are run to completion on an event loop of their own.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, overload

__all__ = ["tool", "ToolSpec", "get_available_tools", "get_tool_metadata"]

F = TypeVar("F", bound=Callable[..., Any])

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its name, what the agent is told, its arguments' JSON Schema."""

    name: str
    description: str
    namespace: str
    input_schema: dict[str, Any]
    function: Callable[..., Any]


_REGISTRY: dict[str, ToolSpec] = {}
_LOCK = threading.Lock()


def _json_type(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        annotation = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}.get(
            annotation.split("[")[0].strip(), None
        )
    origin = getattr(annotation, "__origin__", None)
    return _JSON_TYPES.get(origin or annotation)


def _schema(function: Callable[..., Any]) -> dict[str, Any]:
    """JSON Schema of ``function``'s keyword-callable parameters, from its annotations and defaults."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {function.__name__}: positional-only parameter {parameter.name} cannot be passed by name")
        prop: dict[str, Any] = {}
        kind = _json_type(parameter.annotation)
        if kind:
            prop["type"] = kind
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
        else:
            try:
                json.dumps(parameter.default)
                prop["default"] = parameter.default
            except (TypeError, ValueError):
                pass
        properties[parameter.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


@overload
def tool(function: F, /) -> F: ...
@overload
def tool(
    function: None = None, /, *, name: str | None = None, description: str = "", namespace: str = "custom"
) -> Callable[[F], F]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str = "",
    namespace: str = "custom",
) -> Any:
    """Registers a function as a tool agents can be given (``external_tools=[name]``).

    ``@agenthub.tool`` or ``@agenthub.tool(name="web_search", description="...")``, as the
    original's decorator. The name defaults to the function's, the description to its
    docstring; the arguments' schema comes from its signature. Returns the function unchanged.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"@agenthub.tool decorates a function, not {type(fn).__name__}")
        tool_name = name or fn.__name__
        spec = ToolSpec(
            name=tool_name,
            description=description or inspect.getdoc(fn) or f"{tool_name} (a Python function)",
            namespace=namespace,
            input_schema=_schema(fn),
            function=fn,
        )
        with _LOCK:
            _REGISTRY[tool_name] = spec
        try:
            fn.__agenthub_tool__ = spec  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        return fn

    if function is not None:
        return register(function)
    return register


def get_available_tools() -> list[str]:
    """The names of the registered tools."""
    with _LOCK:
        return sorted(_REGISTRY)


def get_tool_metadata(name: str) -> dict[str, Any] | None:
    """What a registered tool is (name, description, namespace, parameters), or ``None``."""
    with _LOCK:
        spec = _REGISTRY.get(name)
    if spec is None:
        return None
    return {
        "name": spec.name,
        "description": spec.description,
        "namespace": spec.namespace,
        "parameters": spec.input_schema,
    }


def _spec_of(entry: Any) -> ToolSpec | None:
    """The registered tool an ``external_tools`` entry names (a name or the function), if any."""
    if isinstance(entry, ToolSpec):
        return entry
    spec = getattr(entry, "__agenthub_tool__", None)
    if isinstance(spec, ToolSpec):
        return spec
    if callable(entry):
        tool(entry)
        return entry.__agenthub_tool__
    if isinstance(entry, str):
        with _LOCK:
            return _REGISTRY.get(entry)
    return None


#: How long the interpreter's exit waits for tool functions still running.
EXIT_WAIT_SECONDS = 30.0

#: How long the interpreter's exit waits for queued spans to reach the collector.
TRACE_FLUSH_SECONDS = 2.0


def _invoke(function: Callable[..., Any], arguments: str) -> str:
    """Calls a tool with the agent's arguments (JSON text); its result as JSON text."""
    kwargs = json.loads(arguments)
    result = function(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return json.dumps(result, default=str)


def _after_fork_in_child() -> None:
    from . import _native

    _native.tools_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    # A tool function still running when Python finalizes would be ended in a way that
    # aborts the process: refuse new ones, and let the running ones end first (a call
    # that timed out for its agent may still run).
    from . import _native

    if not _native.interpreter_exiting(EXIT_WAIT_SECONDS):
        import sys

        print(
            f"agenthub: a tool function is still running after {EXIT_WAIT_SECONDS:.0f} s of waiting at exit; "
            "Python may abort when it finalizes",
            file=sys.stderr,
        )
    # Traces (OTEL_EXPORTER_OTLP_ENDPOINT set): what is queued goes to the collector now.
    lost = _native.flush_traces(TRACE_FLUSH_SECONDS)
    if lost:
        import sys

        print(f"agenthub: warning: {lost}", file=sys.stderr)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
