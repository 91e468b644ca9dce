#!/usr/bin/env python3
"""Isolated mode (a fork of a warm worker per call) against the other ways to run a call,
on examples/agents/hello, on the same machine in one run.

    cargo build --release -p agenthub-cli
    python3 benches/isolated.py [--bin target/release/agenthub] [--calls 2000] [--processes 200]

Prints one Markdown table: median, p99 and calls/s of
- `python agent.py '<request>'` by hand, with the agent's own venv python (no agenthub);
- `agenthub exec` (a whole CLI process per call, one-shot);
- `agenthub bench --mode oneshot` (one-shot calls through the library);
- `agenthub bench --mode isolated` (a fork of the agent's zygote per call);
- `agenthub bench --mode warm` (the same worker for every call);
and the ratio of an isolated call's median to an `agenthub exec` call's (the issue's goal:
at most 1/10).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "examples", "agents", "hello")
REQUEST = '{"method": "greet", "parameters": {"name": "World"}}'


def bench(binary, env, mode, calls):
    out = subprocess.run(
        [binary, "bench", HELLO, "greet", '{"name": "World"}', "-n", str(calls), "--mode", mode, "--json"],
        env=env, check=True, capture_output=True, text=True,
    )
    v = json.loads(out.stdout)
    return v["median_ms"], v["p99_ms"], v["calls_per_sec"]


def processes(argv, n, env, cwd=None):
    """Median and p99 (ms) and calls/s of running `argv` to completion `n` times."""
    times = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    times.sort()
    p99 = times[min(len(times) - 1, max(0, int(len(times) * 0.99 + 0.999999) - 1))]
    return statistics.median(times) * 1000, p99 * 1000, n / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    parser.add_argument("--calls", type=int, default=2000, help="calls per bench mode")
    parser.add_argument("--processes", type=int, default=200, help="processes for python/exec rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AGENTHUB_HOME=home, AGENTHUB_LOG_LEVEL="WARN")
        # Builds the environment (and checks the agent works) before anything is timed.
        subprocess.run([args.bin, "exec", HELLO, "greet", "World", "--json"], env=env, check=True,
                       capture_output=True)
        python = os.path.join(HELLO, ".venv", "bin", "python")
        rows = [
            ("`python agent.py` (venv python, by hand)",
             processes([python, "agent.py", REQUEST], args.processes, env, cwd=HELLO)),
            ("`agenthub exec` (one-shot, a CLI process per call)",
             processes([args.bin, "exec", HELLO, "greet", "World", "--json"], args.processes, env)),
            ("`agenthub bench --mode oneshot`", bench(args.bin, env, "oneshot", max(1, args.calls // 10))),
            ("`agenthub bench --mode isolated` (fork per call)", bench(args.bin, env, "isolated", args.calls)),
            ("`agenthub bench --mode warm`", bench(args.bin, env, "warm", args.calls)),
        ]
    print("| how | median (ms) | p99 (ms) | calls/s |")
    print("|---|---:|---:|---:|")
    for name, (median, p99, rate) in rows:
        print("| {} | {:.3f} | {:.3f} | {:.0f} |".format(name, median, p99, rate))
    isolated, oneshot = rows[3][1][0], rows[1][1][0]
    print()
    print("isolated / `agenthub exec` median: {:.3f} (goal: at most 0.1)".format(isolated / oneshot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
