"""Fixtures for the Python package's tests, run with pytest against the installed wheel.

Every test gets its own agenthub home; `ns/name` is installed from nowhere unless a test
sets up a registry, so no test reaches the network by auto-install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "agents" / "hello"
NO_REGISTRY = "file:///nonexistent/agenthub-test-registry/{ns}/{name}"

os.environ["AGENTHUB_REGISTRY"] = NO_REGISTRY
os.environ.setdefault("AGENTHUB_LOG_LEVEL", "warn")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    """A copy of the example agent (its environment is built in the copy)."""
    dest = tmp_path / "hello"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
    return dest


FAULTS_YAML = """\
name: "faults"
version: "0.1.0"
description: "Fails in every way a run can"
author: "agenthub tests"
interface:
  methods:
    echo:
      description: "Returns what it was given"
      parameters:
        value: {type: "integer", required: true}
        label: {type: "string", required: false, default: "none"}
    boom: {description: "Raises"}
    garbage: {description: "Prints no JSON"}
    nap:
      description: "Sleeps, after writing its pid to a file"
      parameters:
        seconds: {type: "number", required: true}
        pidfile: {type: "string", required: false, default: ""}
    hog:
      description: "Allocates memory"
      parameters:
        mib: {type: "integer", required: true}
    die: {description: "Kills itself with SIGKILL"}
    crash: {description: "Raises"}
    read:
      description: "Reads a file"
      parameters:
        path: {type: "string", required: true}
"""

FAULTS_PY = '''\
import json, os, signal, sys, time

def main():
    request = json.loads(sys.argv[1])
    method, p = request["method"], request.get("parameters", {})
    if method == "echo":
        out = {"value": p["value"], "label": p.get("label", "none")}
    elif method == "boom":
        print("Traceback: boom, as asked", file=sys.stderr)
        print(json.dumps({"error": "boom, as asked"}))
        return
    elif method == "crash":
        raise RuntimeError("crashed, as asked")
    elif method == "garbage":
        print("this is not JSON")
        return
    elif method == "nap":
        if p.get("pidfile"):
            import fcntl
            held = open(p["pidfile"], "w")
            fcntl.flock(held, fcntl.LOCK_EX)  # held while this process lives
            held.write(str(os.getpid()))
            held.flush()
        time.sleep(p["seconds"])
        out = "rested"
    elif method == "hog":
        block = bytearray(p["mib"] * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(2)
        out = len(block)
    elif method == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    elif method == "read":
        with open(p["path"]) as f:
            out = f.read()
    print(json.dumps({"result": out}))

if __name__ == "__main__":
    main()
'''


@pytest.fixture
def faults(tmp_path: Path) -> Path:
    dest = tmp_path / "faults"
    dest.mkdir()
    (dest / "agent.yaml").write_text(FAULTS_YAML)
    (dest / "agent.py").write_text(FAULTS_PY)
    return dest


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter (this one's), returning what it printed."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def held(path) -> bool:
    """Whether a process still holds the lock ``nap`` takes on its pidfile: the agent
    process (or one it forked) is still running. Pids are no help: agents run in a PID
    namespace of their own."""
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False
