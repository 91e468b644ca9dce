"""``agenthub.load_agent``: the original's API on the Rust runtime."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agenthub
from agenthub import errors

from conftest import EXAMPLE, held


def test_methods_are_attributes_with_positional_keyword_and_default_parameters(home: Path, hello: Path) -> None:
    agent = agenthub.load_agent(str(hello), home=home)
    assert agent.greet("Ada")["result"] == "Hello, Ada."
    assert agent.greet("Ada", True)["result"] == "Hello, Ada!"
    assert agent.greet(name="Ada", excited=True)["result"] == "Hello, Ada!"
    assert agent.add(2, b=40)["result"] == 42
    response = agent.word_count("one two three")
    assert response["result"]["words"] == 3 and response["execution_time"] > 0
    assert agent.execute("greet", {"name": "Bo"})["result"] == "Hello, Bo."
    with pytest.raises(TypeError):
        agent.greet("a", True, "extra")
    with pytest.raises(TypeError):
        agent.greet("a", name="b")
    # The declaration is checked by the runtime: a wrong type is the caller's mistake.
    with pytest.raises(errors.InvalidParametersError) as invalid:
        agent.greet(name=5)
    assert "name" in str(invalid.value)
    assert isinstance(invalid.value, ValueError)


def test_a_method_that_does_not_exist_lists_the_available_ones(home: Path, hello: Path) -> None:
    agent = agenthub.load_agent(str(hello), home=home)
    with pytest.raises(AttributeError) as missing:
        agent.fly()
    assert str(missing.value).startswith("Method 'fly' not found in agent 'hello'! Available methods: greet, word_count, add")
    assert isinstance(missing.value, errors.MethodNotFoundError)
    assert not hasattr(agent, "fly") and hasattr(agent, "greet")
    with pytest.raises(errors.MethodNotFoundError):
        agent.execute("fly", {})
    assert agent.has_method("greet") and not agent.has_method("fly")


def test_dir_help_and_signatures_show_the_methods(home: Path, hello: Path) -> None:
    agent = agenthub.load_agent(str(hello), home=home)
    assert {"greet", "word_count", "add"} <= set(dir(agent))
    signature = inspect.signature(agent.greet)
    assert list(signature.parameters) == ["name", "excited"]
    assert signature.parameters["name"].annotation is str
    assert signature.parameters["excited"].default is False
    assert "Say hello to someone" in agent.greet.__doc__ and "Who to greet" in agent.greet.__doc__
    text = subprocess.run(
        [sys.executable, "-c", f"import agenthub; help(agenthub.load_agent({str(hello)!r}, home={str(home)!r}, prestart=False))"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PAGER": "cat"},
    ).stdout
    assert "greet(self, /, name: str, excited: bool = False)" in text, text
    assert "word_count(self, /, text: str)" in text
    assert (agent.name, agent.version, agent.methods) == ("hello", "1.0.0", ["greet", "word_count", "add"])
    assert repr(agent) == "Agent(name='hello', namespace='', version='1.0.0', methods=['greet', 'word_count', 'add'])"
    stub = agent.stub()
    assert "def greet(self, name: str, excited: bool = False) -> dict[str, Any]:" in stub
    compile(stub, "hello.pyi", "exec")


def test_errors_of_the_run_are_returned_or_raised_when_asked(home: Path, faults: Path) -> None:
    agent = agenthub.load_agent(str(faults), home=home)
    response = agent.boom()
    assert response["error_type"] == "AgentError" and "boom, as asked" in response["stderr"]
    strict = agenthub.load_agent(str(faults), home=home, raise_errors=True)
    with pytest.raises(errors.AgentError) as raised:
        strict.boom()
    assert "boom, as asked" in raised.value.response["stderr"]
    assert strict.echo(5) == {"value": 5, "label": "none"}


def test_warm_by_default_one_worker_serves_every_call(home: Path, faults: Path) -> None:
    agent = agenthub.load_agent(str(faults), home=home)
    first = agent.echo(1)
    assert first["result"]["value"] == 1
    workers = agent._session.native.idle_worker_pids()
    assert len(workers) == 1
    started = time.perf_counter()
    for i in range(200):
        assert agent.echo(i)["result"]["value"] == i
    per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.01, f"{per_call * 1000:.2f} ms per warm call"  # one-shot takes ~20 ms
    assert agent._session.native.idle_worker_pids() == workers


def test_the_sandbox_and_its_grants_are_keyword_arguments(home: Path, faults: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's key")
    closed = agenthub.load_agent(str(faults), home=home, prestart=False)
    denied = closed.read(str(secret))
    assert denied.get("error_type") == "ExecutionError", denied
    assert "secret.txt" in denied["stderr"]
    assert "Permission denied" in denied["stderr"] or "No such file" in denied["stderr"]
    granted = agenthub.load_agent(str(faults), home=home, allow_read=[tmp_path], prestart=False)
    assert granted.read(str(secret))["result"] == "the user's key"
    off = agenthub.load_agent(str(faults), home=home, sandbox="off", mode="oneshot")
    assert off.read(str(secret))["result"] == "the user's key"
    with pytest.raises(ValueError):
        agenthub.load_agent(str(faults), home=home, sandbox="sideways")
    with pytest.raises(ValueError):
        agenthub.load_agent(str(faults), home=home, mode="lukewarm")


def test_auto_install_from_a_local_git_registry(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tmp_path / "registry"
    repo = registry / "acme" / "hello"
    repo.mkdir(parents=True)
    for name in ("agent.yaml", "agent.py"):
        (repo / name).write_bytes((EXAMPLE / name).read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "hello"], check=True)
    monkeypatch.setenv("AGENTHUB_REGISTRY", f"file://{registry}/{{ns}}/{{name}}")
    agent = agenthub.load_agent("acme/hello", home=home)
    assert agent.agent_id == "acme/hello" and agent.namespace == "acme"
    assert agent.path == str(home / "agents" / "acme" / "hello")
    assert agent.greet("registry")["result"] == "Hello, registry."
    with pytest.raises(errors.AgentNotFoundError):
        agenthub.load_agent("acme/missing", home=home)
    with pytest.raises(errors.AgentNotFoundError):
        agenthub.load_agent("acme/other", home=home, auto_install=False)


def test_the_async_variant_and_cancelling_it(home: Path, faults: Path, tmp_path: Path) -> None:
    agent = agenthub.load_agent(str(faults), home=home, allow_write=[tmp_path])
    pidfile = tmp_path / "nap.pid"

    async def main() -> None:
        results = await asyncio.gather(*(agent.aio.echo(i) for i in range(20)))
        assert [r["result"]["value"] for r in results] == list(range(20))
        task = asyncio.ensure_future(agent.aio.nap(30, pidfile=str(pidfile)))
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    for _ in range(100):
        if not held(pidfile):
            break
        time.sleep(0.05)
    assert not held(pidfile), "the cancelled call's process is still running"
    assert agent.echo(3)["result"]["value"] == 3


KEYWORDS_YAML = """\
name: "translator"
version: "0.1.0"
description: "Parameters named as Python keywords"
author: "agenthub tests"
interface:
  methods:
    translate:
      description: "Echoes its parameters"
      parameters:
        text: {type: "string", required: true}
        from: {type: "string", required: false, default: "en"}
        self: {type: "string", required: false, default: "me"}
    class: {description: "A method named as a keyword"}
"""

KEYWORDS_PY = """\
import json, sys
request = json.loads(sys.argv[1])
print(json.dumps({"result": request["parameters"]}))
"""


def test_parameters_and_methods_named_as_python_keywords(home: Path, tmp_path: Path) -> None:
    agent_dir = tmp_path / "translator"
    agent_dir.mkdir()
    (agent_dir / "agent.yaml").write_text(KEYWORDS_YAML)
    (agent_dir / "agent.py").write_text(KEYWORDS_PY)
    agent = agenthub.load_agent(str(agent_dir), home=home)
    assert list(inspect.signature(agent.translate).parameters) == ["text"]
    assert agent.translate("hi", **{"from": "fr", "self": "you"})["result"] == {"text": "hi", "from": "fr", "self": "you"}
    assert agent.translate("hi", "de")["result"] == {"text": "hi", "from": "de", "self": "me"}
    assert agent.execute("class", {})["result"] == {}
    assert getattr(agent, "class")()["result"] == {}
    compile(agent.stub(), "translator.pyi", "exec")


def test_an_agent_pickles_and_is_loaded_again_in_a_spawned_process(home: Path, hello: Path) -> None:
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    agent = agenthub.load_agent(str(hello), home=home, timeout=20)
    again = pickle.loads(pickle.dumps(agent))
    assert again.greet("pickle")["result"] == "Hello, pickle."
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(agent.greet, ["a", "b", "c"]))
    assert [r["result"] for r in results] == ["Hello, a.", "Hello, b.", "Hello, c."]
    # Loaded by a relative path, unpickled in another working directory.
    cwd = os.getcwd()
    try:
        os.chdir(hello.parent)
        relative = agenthub.load_agent("./hello", home=home)
        data = pickle.dumps(relative)
        os.chdir("/")
        assert pickle.loads(data).greet("moved")["result"] == "Hello, moved."
    finally:
        os.chdir(cwd)
