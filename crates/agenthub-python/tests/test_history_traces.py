"""Run history and traces from the Python package (issue 19): its calls are recorded with
the caller `python`, and with the standard OTEL_* variables set they are traced as the
CLI's are, the queued spans sent when the interpreter exits."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import agenthub

from conftest import REPO

RECEIVER_DIR = REPO / "crates" / "agenthub-cli" / "tests" / "it"


def recorded(home: Path, limit: float = 10.0) -> list[tuple]:
    """The history's records once there are any (bounded wait): the database's rows (a
    running program's writer batches them) and the journal's lines (where a program that
    exits leaves its last records, for `agenthub runs` to fold in)."""
    db = home / "history.db"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rows = []
        for name in ("history.pending", "history.pending.folding"):
            journal = home / name
            if journal.exists():
                for line in journal.read_text().splitlines():
                    if line.strip():
                        r = json.loads(line)
                        rows.append((r["caller"], r["method"], r["mode"], r["error_type"], r["id"]))
        if db.exists():
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    rows += conn.execute("SELECT caller, method, mode, error_type, id FROM runs").fetchall()
                finally:
                    conn.close()
            except sqlite3.OperationalError:
                pass
        if rows:
            return rows
        time.sleep(0.05)
    return []


def test_calls_are_recorded_with_the_caller_python(home: Path, hello: Path) -> None:
    agent = agenthub.load_agent(str(hello), home=home)
    assert agent.greet(name="History")["result"] == "Hello, History."
    rows = recorded(home)
    assert [row[:4] for row in rows] == [("python", "greet", "warm", None)]


def test_calls_are_traced_when_the_otel_variables_say_so(home: Path, hello: Path) -> None:
    sys.path.insert(0, str(RECEIVER_DIR))
    import otlp_receiver

    receiver = otlp_receiver.start()
    try:
        script = (
            "import agenthub\n"
            f"agent = agenthub.load_agent({str(hello)!r}, home={str(home)!r})\n"
            "print(agent.greet(name='Traced')['result'])\n"
        )
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="python-app")
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "Hello, Traced."
        assert "not delivered" not in out.stderr, out.stderr
        # Sent at exit: already there, or on its way (bounded wait).
        deadline = time.monotonic() + 30
        while True:
            calls = [s for s in receiver.received() if s["name"] == "invoke_agent hello"]
            if calls or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(calls) == 1, receiver.received()
        call = calls[0]
        assert call["attributes"]["agenthub.mode"] == "warm"
        assert call["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        assert call["resource"]["service.name"] == "python-app"
        rows = recorded(home)
        assert call["attributes"]["agenthub.run.id"] == rows[0][4]
    finally:
        receiver.server.shutdown()
