#!/usr/bin/env python3
"""The Python package against the CLI and the original, same run, same agent.

    python3 benches/python_api.py [--python target/python-test-venv/bin/python]
        [--bin target/release/agenthub] [--original-python VENV/bin/python]
        [--calls 5000] [--rounds 3] [--original-calls 30]

Rows (examples/agents/hello, `greet`, copied to a fresh home):
- a warm call through `agenthub.load_agent(...).greet(...)`, timed per call in Python,
  versus `agenthub bench --mode warm` (the Rust caller), interleaved over rounds: the
  median of the rounds' medians each (goal: the Python call at most 0.05 ms more);
- the original's `load_agent` call (agenthub-sdk in its own venv, --original-python; see
  benches/original_sdk.py) versus ours (goal: at least 500x faster per call);
- `import agenthub` in a fresh interpreter (median of 10);
- calls/s from 1, 2 and 4 Python threads (4 warm workers).

The wheel's venv is what scripts/test-python leaves in target/python-test-venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "agents" / "hello"

PY_CALLS = r"""
import json, statistics, sys, time, agenthub
agent_dir, home, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
agent = agenthub.load_agent(agent_dir, home=home)
for _ in range(500):
    agent.greet("x")
times = []
greet = agent.greet
for _ in range(calls):
    t = time.perf_counter()
    greet("x")
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"median_ms": statistics.median(times) * 1e3, "p99_ms": times[int(len(times) * 0.99) - 1] * 1e3}))
"""

PY_THREADS = r"""
import json, sys, threading, time, agenthub
agent_dir, home, calls, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
agent = agenthub.load_agent(agent_dir, home=home, settings={"runtime.workers_per_agent": 4})
def warm():
    for _ in range(200):
        agent.greet("x")
ws = [threading.Thread(target=warm) for _ in range(4)]
[w.start() for w in ws]; [w.join() for w in ws]
def run():
    for _ in range(calls):
        agent.greet("x")
ts = [threading.Thread(target=run) for _ in range(threads)]
t = time.perf_counter()
[x.start() for x in ts]; [x.join() for x in ts]
took = time.perf_counter() - t
print(json.dumps({"calls_per_sec": calls * threads / took}))
"""

PY_IMPORT = "import time; t = time.perf_counter(); import agenthub; print((time.perf_counter() - t) * 1e3)"


def run_json(cmd: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=str(REPO / "target" / "python-test-venv" / "bin" / "python"))
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "agenthub"))
    ap.add_argument("--original-python", help="python of a venv with agenthub-sdk and 'mcp<2' installed")
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--original-calls", type=int, default=30)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="agenthub-pybench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        agent = Path(tmp) / "agents" / "hello"
        shutil.copytree(EXAMPLE, agent, ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
        env = {**os.environ, "AGENTHUB_HOME": str(home), "AGENTHUB_LOG_LEVEL": "warn"}
        py_rounds, cli_rounds = [], []
        for _ in range(args.rounds):
            cli_rounds.append(
                run_json(
                    [args.bin, "bench", str(agent), "greet", "name=x", "--mode", "warm", "-n", str(args.calls), "--json"],
                    env,
                )
            )
            py_rounds.append(run_json([args.python, "-c", PY_CALLS, str(agent), str(home), str(args.calls)], env))
        py = statistics.median(r["median_ms"] for r in py_rounds)
        py99 = statistics.median(r["p99_ms"] for r in py_rounds)
        cli = statistics.median(r["median_ms"] for r in cli_rounds)
        cli99 = statistics.median(r["p99_ms"] for r in cli_rounds)
        imports = sorted(
            float(subprocess.run([args.python, "-c", PY_IMPORT], capture_output=True, text=True, env=env, check=True).stdout)
            for _ in range(10)
        )
        threads = {
            n: run_json([args.python, "-c", PY_THREADS, str(agent), str(home), str(args.calls // 2), str(n)], env)[
                "calls_per_sec"
            ]
            for n in (1, 2, 4)
        }
        original = None
        if args.original_python:
            orig_home = Path(tmp) / "orig-home"
            original = run_json(
                [
                    args.original_python,
                    str(REPO / "benches" / "original_sdk.py"),
                    "--agent-dir",
                    str(agent),
                    "--home",
                    str(orig_home),
                    "--calls",
                    str(args.original_calls),
                    "--kwargs",
                    '{"name": "x"}',
                    "--quiet-logs",
                ],
                {k: v for k, v in env.items() if not k.startswith("AGENTHUB_")},
            )

    print(f"examples/agents/hello greet, {args.calls} calls x {args.rounds} rounds (median of round medians)\n")
    print("| case | median ms | p99 ms | calls/s |")
    print("|---|---:|---:|---:|")
    print(f"| agenthub bench --mode warm (Rust caller) | {cli:.3f} | {cli99:.3f} | {1e3 / cli:.0f} |")
    print(f"| load_agent(...).greet(...) (Python caller) | {py:.3f} | {py99:.3f} | {1e3 / py:.0f} |")
    print(f"| added by the Python API | {py - cli:+.3f} | | |")
    if original:
        print(f"| the original's load_agent(...).greet(...) | {original['median_ms']:.3f} | {original['p99_ms']:.3f} | {1e3 / original['median_ms']:.0f} |")
        print(f"| original / ours | {original['median_ms'] / py:.0f}x | | |")
    for n, rate in threads.items():
        print(f"| {n} Python thread{'s' if n > 1 else ''}, 4 workers | | | {rate:.0f} |")
    print(f"| import agenthub (fresh interpreter, median of 10) | {statistics.median(imports):.1f} | | |")
    if original:
        print(f"| import agenthub, the original | {original['import_ms']:.1f} | | |")


if __name__ == "__main__":
    main()
