"""Python functions as tools: called back in this process when the sandboxed agent calls them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import agenthub

from conftest import REPO

CALLER = REPO / "crates" / "agenthub-cli" / "tests" / "fixtures" / "tools" / "caller"


@pytest.fixture
def caller(tmp_path: Path) -> Path:
    dest = tmp_path / "caller"
    shutil.copytree(CALLER, dest, ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
    return dest


def test_a_python_function_is_a_tool_the_agent_calls_back(home: Path, caller: Path) -> None:
    seen: list[tuple[int, int, str]] = []

    @agenthub.tool(name="multiply", description="Multiplies two integers")
    def multiply(a: int, b: int = 2) -> int:
        seen.append((a, b, threading.current_thread().name))
        return a * b

    @agenthub.tool
    def fails(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)

    assert "multiply" in agenthub.get_available_tools()
    assert agenthub.get_tool_metadata("multiply")["parameters"]["required"] == ["a"]
    agent = agenthub.load_agent(str(caller), home=home, external_tools=["multiply", fails])
    context = agent.context()["result"]["tool_context"]
    assert context["available_tools"] == ["multiply", "fails"]
    assert context["tool_descriptions"]["multiply"] == "Multiplies two integers"
    response = agent.call("multiply", {"a": 6, "b": 7})
    assert response["result"]["text"] == "42", response
    assert seen and seen[0][:2] == (6, 7) and seen[0][2] != threading.main_thread().name
    assert response["tool_calls"][0]["name"] == "multiply" and response["tool_calls"][0]["outcome"] == "ok"
    failed = agent.call("fails", {"reason": "no luck"})["result"]
    assert failed["is_error"] and "ValueError: no luck" in failed["text"], failed
    refused = agent.call("not_given", {})["result"]
    assert "not_given" in str(refused)
    with pytest.raises(ValueError) as unknown:
        agenthub.load_agent(str(caller), home=home, external_tools=["no_such_tool"])
    assert "multiply" in str(unknown.value)


def test_function_tools_work_in_a_forked_child_after_the_parent_used_them(home: Path, caller: Path) -> None:
    code = f"""
        import os, agenthub

        @agenthub.tool
        def double(n: int) -> int:
            return 2 * n

        agent = agenthub.load_agent({str(caller)!r}, home={str(home)!r}, external_tools=["double"])
        assert agent.call("double", {{"n": 2}})["result"]["text"] == "4"
        pid = os.fork()
        if pid == 0:
            response = agent.call("double", {{"n": 21}})
            os._exit(0 if response.get("result", {{}}).get("text") == "42" else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), agent.call("double", {{"n": 5}})["result"]["text"])
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180)
    assert done.stdout.strip() == "0 10", (done.stdout, done.stderr)


def test_function_tools_an_agent_abandons_still_count_against_its_parallel_limit(home: Path, caller: Path) -> None:
    """Tool calls that time out leave their functions running: no more than 8 of one call's
    run at once however many the agent starts."""
    running = 0
    peak = 0
    lock = threading.Lock()

    @agenthub.tool
    def slow(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            threading.Event().wait(3.0)  # thirty of the agent's 0.1 s timeouts
            return n
        finally:
            with lock:
                running -= 1

    agent = agenthub.load_agent(
        str(caller), home=home, external_tools=[slow], settings={"runtime.tool_timeout": 0.1}, timeout=120
    )
    response = agent.call("slow", {"n": 1}, times=20)
    outcomes = [r.get("text", "") + r.get("exception", "") for r in response["result"]]
    assert len(outcomes) == 20 and any("TimeoutError" in o for o in outcomes), outcomes
    assert 1 <= peak <= 8, peak


def test_the_interpreter_exits_cleanly_while_a_tool_function_still_runs(home: Path, caller: Path) -> None:
    code = f"""
        import time, agenthub

        @agenthub.tool
        def slow(n: int) -> int:
            time.sleep(2)
            return n

        agent = agenthub.load_agent({str(caller)!r}, home={str(home)!r}, external_tools=[slow],
                                    settings={{"runtime.tool_timeout": 0.1}})
        print(agent.call("slow", {{"n": 1}})["result"]["is_error"])
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), (done.returncode, done.stdout, done.stderr)
    assert "FATAL" not in done.stderr, done.stderr
