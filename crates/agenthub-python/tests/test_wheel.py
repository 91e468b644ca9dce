"""The installed package needs no Rust toolchain, and its stubs describe it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import agenthub


def test_the_package_imports_and_runs_an_agent_without_a_rust_toolchain(home: Path, hello: Path, tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    # Only the venv's bin and the system's: no cargo, rustc or rustup reachable.
    path = os.pathsep.join([str(bindir), "/usr/bin", "/bin"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP", "RUST"))}
    env.update(PATH=path, HOME=str(tmp_path))
    code = (
        "import shutil, agenthub\n"
        "assert shutil.which('cargo') is None and shutil.which('rustc') is None, 'a Rust toolchain is reachable'\n"
        f"print(agenthub.load_agent({str(hello)!r}, home={str(home)!r}).greet('wheel')['result'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello, wheel."


def test_stubs_and_marker_are_installed() -> None:
    package = Path(agenthub.__file__).parent
    assert (package / "py.typed").exists()
    stub = package / "_native.pyi"
    assert stub.exists()
    text = stub.read_text()
    for name in ("class Runtime", "def call(", "class Agent", "class Cancel", "class Tools"):
        assert name in text
