"""``agenthub.load_agent``: an agent whose methods are attributes, on the Rust runtime."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import keyword
import weakref
import os
import threading
from typing import Any, Callable, Iterable, Sequence

from . import _native, _session, _tools
from .errors import MethodNotFoundError, from_response

__all__ = ["load_agent", "Agent"]

#: Errors of the call itself (the caller's mistakes, or an environment that could not be
#: set up): raised. Everything else a call can end with (the agent raised, timed out, went
#: over a limit, printed no JSON) is returned as the response dict, as the original does.
RAISED = frozenset(
    {"AgentNotFoundError", "InvalidManifestError", "MethodNotFoundError", "InvalidParametersError", "EnvironmentError"}
)

_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}

_MODES = ("warm", "isolated", "oneshot")
_SANDBOXES = ("default", "strict", "off")


def load_agent(
    base_agent: str | os.PathLike[str],
    tools: Sequence[Any] | None = None,
    external_tools: Sequence[Any] | None = None,
    disabled_builtin_tools: Sequence[str] | None = None,
    knowledge: str | None = None,
    monitoring: bool = False,
    *,
    home: str | os.PathLike[str] | None = None,
    mode: str = "warm",
    sandbox: str | None = None,
    allow_read: Iterable[str | os.PathLike[str]] = (),
    allow_write: Iterable[str | os.PathLike[str]] = (),
    allow_net: Iterable[str] = (),
    allow_env: Iterable[str] = (),
    timeout: float | None = None,
    max_memory: int | None = None,
    auto_install: bool = True,
    tools_from: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    raise_errors: bool = False,
    prestart: bool = True,
    settings: dict[str, Any] | None = None,
) -> "Agent":
    """Loads an agent: ``ns/name`` (installed, or installed from the registry on first use)
    or a path to an agent directory. Its methods are the returned object's attributes.

    A method call maps positional arguments to the manifest's parameters in declaration
    order and keywords by name, and returns the original's shape: ``{"result": ...,
    "execution_time": ...}``, or ``{"error": ..., "error_type": ..., "suggestion": ...}``
    for what went wrong in the run. Mistakes of the call itself (an unknown agent or
    method, parameters that do not match the declaration, an environment that could not be
    built) raise the classes of :mod:`agenthub.errors`. With ``raise_errors=True`` a method
    returns the result itself and raises every error.

    Keyword arguments beyond the original's:

    - ``mode``: ``"warm"`` (default: a worker per agent imports it once; calls take well
      under a millisecond), ``"isolated"`` (each call in a fresh fork of a worker that
      imported the agent), ``"oneshot"`` (a fresh interpreter per call);
    - ``sandbox``: ``"default"``, ``"strict"`` or ``"off"`` (config.yaml's
      ``runtime.sandbox_mode`` when not given); ``allow_read``, ``allow_write``,
      ``allow_net`` (``host``, ``*.host``, ``host:port``), ``allow_env``: grants beyond
      what the agent declares, as the CLI's ``--allow-*`` flags;
    - ``timeout`` (seconds per call), ``max_memory`` (MiB), ``home`` (else
      ``$AGENTHUB_HOME``, else ``~/.agenthub``), ``auto_install``, ``settings`` (any
      config.yaml key, e.g. ``{"runtime.workers_per_agent": 4}``);
    - ``external_tools``: names of ``@agenthub.tool`` functions (or the functions), and
      other agents' methods (``"ns/name"``, ``"ns/name.method"``); ``tools_from``: MCP
      servers files (``{"mcpServers": ...}``).
    """
    if tools is not None and external_tools is not None:
        raise ValueError("give tools in external_tools (tools is the original's deprecated name for it), not both")
    external_tools = external_tools if external_tools is not None else tools
    for name, given in (("disabled_builtin_tools", disabled_builtin_tools), ("knowledge", knowledge)):
        if given:
            raise NotImplementedError(f"{name} is not supported by agenthub (the original's solve engine is not part of it)")
    del monitoring  # the runtime's own logs and responses carry timings
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if sandbox is not None and sandbox not in _SANDBOXES:
        raise ValueError(f"sandbox must be one of {', '.join(_SANDBOXES)}, not {sandbox!r}")
    all_settings: dict[str, Any] = dict(settings or {})
    all_settings.setdefault("runtime.mode", mode)
    if sandbox is not None:
        all_settings["runtime.sandbox_mode"] = sandbox
    if max_memory is not None:
        all_settings["runtime.max_memory_usage"] = int(max_memory)
    session = _session.session(home, all_settings, auto_install)
    agent_ref = _agent_ref(base_agent)
    native_agent = session.native.load(agent_ref)
    grants = {
        "read": [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in allow_read],
        "write": [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in allow_write],
        "net": [str(h) for h in allow_net],
        "env": [str(v) for v in allow_env],
    }
    toolbox = _Toolbox.make(external_tools or (), tools_from)
    agent = _agent_class(json.loads(native_agent.manifest_json))(
        session, agent_ref, native_agent, grants, toolbox, timeout, raise_errors
    )
    # What pickling sends: how to load it again (another process makes its own runtime).
    agent._load_args = {
        # By path: the absolute one (the process that unpickles may have another cwd).
        "base_agent": agent_ref if native_agent.installed_id == agent_ref else os.fspath(native_agent.path),
        "external_tools": list(external_tools) if external_tools else None,
        "home": os.fspath(home) if home is not None else None,
        "mode": mode,
        "sandbox": sandbox,
        "allow_read": grants["read"],
        "allow_write": grants["write"],
        "allow_net": grants["net"],
        "allow_env": grants["env"],
        "timeout": timeout,
        "max_memory": max_memory,
        "auto_install": auto_install,
        "tools_from": list(toolbox.files) if toolbox is not None and toolbox.files else None,
        "raise_errors": raise_errors,
        "prestart": prestart,
        "settings": dict(settings) if settings else None,
    }
    if prestart and mode != "oneshot" and toolbox is None:
        session.native.prestart(native_agent)
    return agent


def _agent_ref(base_agent: str | os.PathLike[str]) -> str:
    text = os.fspath(base_agent)
    if not isinstance(text, str) or not text:
        raise ValueError("base_agent must be an agent id (ns/name) or a path to an agent directory")
    if text.startswith("~"):
        return os.path.expanduser(text)
    return text


#: Every toolbox, for their locks to be made anew in a forked child.
_TOOLBOXES: "weakref.WeakSet[_Toolbox]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for toolbox in list(_TOOLBOXES):
        toolbox._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Toolbox:
    """The tools assigned to an agent; made again in a forked child."""

    def __init__(self, agents: list[str], files: list[str], functions: list[_tools.ToolSpec]):
        self.agents = agents
        self.files = files
        self.functions = functions
        self._made: tuple[int, int, Any] | None = None
        self._lock = threading.Lock()
        _TOOLBOXES.add(self)

    @classmethod
    def make(cls, entries: Sequence[Any], tools_from: Any) -> "_Toolbox | None":
        agents: list[str] = []
        functions: list[_tools.ToolSpec] = []
        for entry in entries:
            spec = _tools._spec_of(entry)
            if spec is not None:
                functions.append(spec)
            elif isinstance(entry, str) and ("/" in entry or entry.startswith(".")):
                agents.append(entry)
            else:
                available = ", ".join(_tools.get_available_tools()) or "none registered"
                raise ValueError(
                    f"external tool {entry!r} is neither a registered @agenthub.tool function nor an agent "
                    f"(ns/name, ns/name.method, or a path); registered tools: {available}"
                )
        if tools_from is None:
            files: list[str] = []
        elif isinstance(tools_from, (str, os.PathLike)):
            files = [os.path.abspath(os.path.expanduser(os.fspath(tools_from)))]
        else:
            files = [os.path.abspath(os.path.expanduser(os.fspath(f))) for f in tools_from]
        if not (agents or files or functions):
            return None
        return cls(agents, files, functions)

    def native(self, runtime: _native.Runtime) -> _native.Tools:
        """The tools for ``runtime`` (made once per runtime)."""
        made = self._made
        if made is not None and made[0] == id(runtime) and made[1] == os.getpid():
            return made[2]
        with self._lock:
            made = self._made
            if made is None or made[0] != id(runtime) or made[1] != os.getpid():
                functions = [(f.name, f.description, json.dumps(f.input_schema), f.function) for f in self.functions]
                tools = runtime.tools(self.agents, self.files, functions)
                self._made = made = (id(runtime), os.getpid(), tools)
            return made[2]


class Agent:
    """A loaded agent. Its methods are attributes (``agent.generate_code("...")``);
    ``agent.aio.<method>(...)`` is the awaitable variant."""

    _method_names: tuple[str, ...] = ()
    _load_args: dict[str, Any] = {}

    def __init__(
        self,
        session: _session.Session,
        ref: str,
        native_agent: _native.Agent,
        grants: dict[str, list[str]],
        toolbox: _Toolbox | None,
        timeout: float | None,
        raise_errors: bool,
    ) -> None:
        self._session = session
        self._ref = ref
        self._native = native_agent
        self._native_pid = session.pid
        self._grants = json.dumps(grants) if any(grants.values()) else None
        self._toolbox = toolbox
        self._timeout = timeout
        self._raise_errors = raise_errors
        manifest = json.loads(native_agent.manifest_json)
        self.manifest: dict[str, Any] = manifest
        self.interface: dict[str, Any] = {"methods": manifest.get("methods", {})}
        self.path: str = os.fspath(native_agent.path)
        installed = native_agent.installed_id
        self.agent_id: str = installed or manifest.get("name", "")
        self.namespace: str = installed.split("/", 1)[0] if installed else ""
        self.agent_name: str = os.path.basename(self.path)
        self.name: str = manifest.get("name", "")
        self.version: str = manifest.get("version", "")
        self.description: str = manifest.get("description", "")
        self.dependencies: list[str] = list(manifest.get("dependencies", []))
        self.methods: list[str] = list(manifest.get("methods", {}))

    # The original's helpers.
    def has_method(self, method: str) -> bool:
        """Whether the agent's interface has ``method``."""
        return method in self.interface["methods"]

    def get_method_info(self, method: str) -> dict[str, Any]:
        """The manifest's declaration of ``method`` (description, parameters, returns)."""
        if not self.has_method(method):
            raise self._missing(method)
        return dict(self.interface["methods"][method])

    def to_dict(self) -> dict[str, Any]:
        """What the agent is: id, name, version, description, path, methods."""
        return {
            "agent_id": self.agent_id,
            "name": self.name,
            "namespace": self.namespace,
            "version": self.version,
            "description": self.description,
            "path": self.path,
            "methods": list(self.methods),
            "dependencies": list(self.dependencies),
        }

    def execute(self, method: str, parameters: dict[str, Any] | None = None) -> Any:
        """Runs ``method`` with ``parameters`` (a dict): the response, as a method call returns it."""
        if not self.has_method(method):
            raise self._missing(method)
        return self._finish(self._call_json(method, json.dumps(parameters or {}), None))

    @property
    def aio(self) -> "AsyncAgent":
        """The same agent, with methods that return awaitables (for asyncio)."""
        return AsyncAgent(self)

    def stub(self) -> str:
        """A ``.pyi`` stub of this agent's class, for editors: save it beside your code."""
        lines = ["from typing import Any", "", f"class {type(self).__name__}:"]
        for method in self.methods:
            if method not in type(self).__dict__:  # not an attribute: reached through execute()
                continue
            signature = _signature(self.interface["methods"][method])
            doc = (self.interface["methods"][method].get("description") or "").strip().replace('"""', "'''")
            params = "".join(f", {p}" for p in signature.parameters.values())
            if any(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values()):
                first = next(i for i, p in enumerate(signature.parameters.values()) if p.kind is inspect.Parameter.KEYWORD_ONLY)
                shown = [str(p) for p in signature.parameters.values()]
                params = "".join(f", {p}" for p in shown[:first] + ["*"] + shown[first:])
            lines.append(f"    def {method}(self{params}) -> dict[str, Any]:")
            lines.append(f'        """{doc}"""' if doc else "        ...")
        if not self.methods:
            lines.append("    ...")
        return "\n".join(lines) + "\n"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = type(self).__dict__.get("_all_methods", {})
        if name in methods:
            return functools.partial(_call_method, self, name)
        raise self._missing(name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {m for m in self.methods if m.isidentifier()})

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (for a ProcessPoolExecutor, multiprocessing): loaded again where it lands,
        # once per process for the same arguments.
        if not self._load_args:
            raise TypeError("only an agent made by agenthub.load_agent can be pickled")
        return (_unpickle, (self._load_args,))

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, namespace={self.namespace!r}, version={self.version!r}, methods={self.methods!r})"

    def _missing(self, method: str) -> MethodNotFoundError:
        available = ", ".join(self.methods) or "none"
        message = f"Method '{method}' not found in agent '{self.name}'! Available methods: {available}"
        return MethodNotFoundError(message, None, {"error": message, "error_type": "MethodNotFoundError"})

    # Calls.
    def _bind(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        names = list(self.interface["methods"][method].get("parameters", {}))
        if len(args) > len(names):
            raise TypeError(f"{method}() takes {len(names)} positional arguments but {len(args)} were given")
        params = dict(zip(names, args))
        for key in kwargs:
            if key in params:
                raise TypeError(f"{method}() got multiple values for argument '{key}'")
        params.update(kwargs)
        return json.dumps(params)

    def _runtime(self) -> tuple[_native.Runtime, _native.Agent]:
        runtime = self._session.native
        if self._native_pid != self._session.pid:
            # A forked child: its own runtime loads the agent again.
            self._native = runtime.load(self._ref)
            self._native_pid = self._session.pid
        return runtime, self._native

    def _call_json(self, method: str, params: str, cancel: _native.Cancel | None) -> dict[str, Any]:
        runtime, native = self._runtime()
        tools = self._toolbox.native(runtime) if self._toolbox is not None else None
        text = runtime.call(native, method, params, self._timeout, self._grants, tools, cancel)
        return json.loads(text)

    def _finish(self, response: dict[str, Any]) -> Any:
        if "error" in response:
            if self._raise_errors or response.get("error_type") in RAISED:
                raise from_response(response)
            return response
        if self._raise_errors:
            return response.get("result")
        return response


_UNPICKLED: dict[tuple[int, str], Agent] = {}


def _unpickle(load_args: dict[str, Any]) -> Agent:
    # A process pool sends the agent with every task: load it once per process.
    try:
        key = (os.getpid(), json.dumps(load_args, sort_keys=True, default=repr))
    except (TypeError, ValueError):
        return load_agent(**load_args)
    found = _UNPICKLED.get(key)
    if found is None:
        found = _UNPICKLED.setdefault(key, load_agent(**load_args))
    return found


def _call_method(agent: Agent, method: str, /, *args: Any, **kwargs: Any) -> Any:
    return agent._finish(agent._call_json(method, agent._bind(method, args, kwargs), None))


class AsyncAgent:
    """An agent whose methods return awaitables: ``await agent.aio.greet("x")``. Cancelling
    the awaiting task cancels the call (its process is killed)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if not self._agent.has_method(name):
            raise self._agent._missing(name)
        agent = self._agent

        async def call(*args: Any, **kwargs: Any) -> Any:
            params = agent._bind(name, args, kwargs)
            return await _acall(agent, name, params)

        call.__name__ = name
        call.__doc__ = agent.interface["methods"][name].get("description")
        return call

    async def execute(self, method: str, parameters: dict[str, Any] | None = None) -> Any:
        """Runs ``method`` with ``parameters``, awaitably."""
        if not self._agent.has_method(method):
            raise self._agent._missing(method)
        return await _acall(self._agent, method, json.dumps(parameters or {}))

    def __dir__(self) -> list[str]:
        return sorted({m for m in self._agent.methods if m.isidentifier()} | {"execute"})


async def _acall(agent: Agent, method: str, params: str) -> Any:
    loop = asyncio.get_running_loop()
    cancel = _native.Cancel()
    future = loop.run_in_executor(_session.executor(), agent._call_json, method, params, cancel)
    try:
        response = await future
    except asyncio.CancelledError:
        cancel.cancel()
        raise
    return agent._finish(response)


def _signature(spec: dict[str, Any]) -> inspect.Signature:
    """The method's parameters as a Python signature, for ``help()`` and editors. A required
    parameter after an optional one cannot be positional in Python: from the first optional
    one on, the required ones are shown keyword-only (calls still map positional arguments
    in declaration order, as the original does)."""
    shown = []
    seen_default = False
    for name, param in spec.get("parameters", {}).items():
        # Names Python cannot take as parameters (`from`, `class`, `self`) are left out of
        # the signature; they are still passed as keywords: f(**{"from": "en"}).
        if not name.isidentifier() or keyword.iskeyword(name) or name == "self":
            continue
        annotation = _PY_TYPES.get(param.get("type", ""), Any)
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        if param.get("required", False) and "default" not in param:
            default: Any = inspect.Parameter.empty
            if seen_default:
                kind = inspect.Parameter.KEYWORD_ONLY
        else:
            default = param.get("default")
            seen_default = True
        shown.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    # Once one is keyword-only, the ones after it must be too.
    for i, p in enumerate(shown):
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            shown[i:] = [q.replace(kind=inspect.Parameter.KEYWORD_ONLY) for q in shown[i:]]
            break
    return inspect.Signature(shown, return_annotation=dict)


def _method_doc(method: str, spec: dict[str, Any]) -> str:
    lines = [(spec.get("description") or f"The agent's {method} method.").strip(), ""]
    params = spec.get("parameters", {})
    if params:
        lines.append("Parameters:")
        for name, param in params.items():
            bits = [param.get("type", "any")]
            bits.append("required" if param.get("required") else "optional")
            if "default" in param:
                bits.append(f"default {json.dumps(param['default'])}")
            about = f": {param['description']}" if param.get("description") else ""
            lines.append(f"    {name} ({', '.join(bits)}){about}")
    returns = spec.get("returns")
    if returns:
        lines += ["", f"Returns {{'result': <{returns.get('type', 'any')}>, 'execution_time': ...}}"]
    return "\n".join(lines)


_CLASSES: dict[str, type[Agent]] = {}
_CLASSES_LOCK = threading.Lock()


def _agent_class(manifest: dict[str, Any]) -> type[Agent]:
    """A subclass of :class:`Agent` with the manifest's methods as real functions, so that
    ``dir()``, ``help()`` and editors' completion show them with their parameters."""
    methods = manifest.get("methods", {})
    key = json.dumps([manifest.get("name"), manifest.get("version"), methods], sort_keys=True)
    with _CLASSES_LOCK:
        found = _CLASSES.get(key)
        if found is not None:
            return found
    namespace: dict[str, Any] = {"_all_methods": methods, "__doc__": manifest.get("description") or Agent.__doc__}
    for method, spec in methods.items():
        if not method.isidentifier() or keyword.iskeyword(method) or method.startswith("_") or hasattr(Agent, method):
            continue  # reachable through agent.execute(method, {...}) and getattr
        namespace[method] = _make_method(method, spec)
    class_name = "".join(part.capitalize() for part in str(manifest.get("name", "agent")).replace("-", "_").split("_") if part.isidentifier() or part.isalnum()) or "Loaded"
    if not class_name.isidentifier():
        class_name = "Loaded"
    cls = type(f"{class_name}Agent", (Agent,), namespace)
    with _CLASSES_LOCK:
        _CLASSES.setdefault(key, cls)
    return cls


def _make_method(method: str, spec: dict[str, Any]) -> Callable[..., Any]:
    def call(self: Agent, /, *args: Any, **kwargs: Any) -> Any:
        return _call_method(self, method, *args, **kwargs)

    call.__name__ = method
    call.__qualname__ = method
    call.__doc__ = _method_doc(method, spec)
    signature = _signature(spec)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    call.__signature__ = signature.replace(parameters=[self_param, *signature.parameters.values()])  # type: ignore[attr-defined]
    return call
