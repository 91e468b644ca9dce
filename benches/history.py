#!/usr/bin/env python3
"""Run history's cost and `agenthub stats` at scale, side by side in one run (issue 19).

    cargo build --release -p agenthub-cli
    python3 benches/history.py [--bin target/release/agenthub] [--calls 5000] [--rounds 5] [--rows 1000000]

Prints a Markdown table:
- `agenthub bench --mode warm` on examples/agents/hello with history on and off, rounds
  interleaved (the goal: at most 0.02 ms added at the median), and with tracing on (an OTLP
  receiver on loopback, when `opentelemetry-proto` is importable, else left out);
- `agenthub exec` one-shot with history on and off (the record is appended to the journal
  after the answer, before the process exits);
- `agenthub stats` and `agenthub runs` over a history of `--rows` records (the goal: stats
  under 1 s), the rows inserted with Python's sqlite3 into the schema agenthub made.
"""
import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def env_with(home, **extra):
    env = dict(os.environ, AGENTHUB_HOME=home, AGENTHUB_LOG_LEVEL="ERROR")
    for key in [k for k in env if k.startswith("OTEL_")]:
        del env[key]
    env.update(extra)
    return env


def bench(binary, env, calls):
    out = subprocess.run(
        [binary, "bench", HELLO, "greet", '{"name": "World"}', "-n", str(calls), "--mode", "warm", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def exec_times(binary, env, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([binary, "exec", HELLO, "greet", "World", "--json"], env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def fill(db, rows):
    """Adds `rows` records shaped like real ones: 5 agents x 4 methods x 3 modes, 3% errors."""
    conn = sqlite3.connect(db)
    now = int(time.time() * 1000)
    rng = random.Random(19)
    agents = [f"acme/agent{i}" for i in range(5)]
    methods = ["greet", "analyze", "summarize", "plan"]
    modes = ["oneshot", "warm", "isolated"]
    errors = [None] * 97 + ["AgentError", "TimeoutError", "ExecutionError"]

    def row(i):
        mode = rng.choice(modes)
        error = rng.choice(errors)
        total = rng.lognormvariate(0, 1.5) * (20 if mode == "oneshot" else 1)
        return (
            f"{rng.getrandbits(64):016x}", now - (rows - i) * 10, rng.choice(agents), "/agents/x", "1.0.0", None,
            rng.choice(methods), mode, error, error and "it failed", total, 0.002, 0.05,
            None if mode == "oneshot" or i % 100 else 250.0, total * 0.9, 0.0, int(i % 5000 == 0),
            20 << 20, None, None, None, "cli", None, 0, None, None,
        )

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO runs (id, started_at, agent, agent_dir, version, commit_sha, method, mode, error_type, "
        "error_message, total_ms, slot_ms, environment_ms, startup_ms, call_ms, tools_ms, environment_built, "
        "memory_bytes, exit_code, signal, stderr_tail, caller, parent_id, tool_calls, params, result) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row(i) for i in range(rows)),
    )
    conn.commit()
    conn.close()


def timed(binary, env, args, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([binary, *args], env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def otlp_receiver():
    """An OTLP/HTTP receiver on loopback that counts spans, or None without opentelemetry-proto."""
    try:
        sys.path.insert(0, os.path.join(ROOT, "crates", "agenthub-cli", "tests", "it"))
        import otlp_receiver  # noqa: E402
    except ImportError:
        return None
    return otlp_receiver.start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--exec-runs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)

    with tempfile.TemporaryDirectory() as home:
        receiver = otlp_receiver()
        cases = {
            "history off": env_with(home, AGENTHUB_HISTORY="false"),
            "history on": env_with(home),
        }
        if receiver:
            cases["history on, tracing on"] = env_with(
                home, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="bench")
        bench(binary, cases["history on"], 200)  # environment checked, caches warm
        warm = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, env in cases.items():
                warm[name].append(bench(binary, env, args.calls))
        shot = {name: [] for name in ("history off", "history on")}
        for _ in range(args.exec_runs):
            for name in shot:
                shot[name] += exec_times(binary, cases[name], 1)

        print(f"| case | median ms | p99 ms | calls/s |\n|---|---:|---:|---:|")
        medians = {}
        for name, results in warm.items():
            median = statistics.median(r["median_ms"] for r in results)
            p99 = statistics.median(r["p99_ms"] for r in results)
            rate = statistics.median(r["calls_per_sec"] for r in results)
            medians[name] = median
            print(f"| warm call, {name} | {median:.4f} | {p99:.3f} | {rate:.0f} |")
        print(f"| added by history (goal ≤ 0.02) | {medians['history on'] - medians['history off']:+.4f} | | |")
        if receiver:
            print(f"| added by tracing | {medians['history on, tracing on'] - medians['history on']:+.4f} | | |")
        for name, times in shot.items():
            times.sort()
            print(f"| `agenthub exec` one-shot, {name} | {statistics.median(times):.2f} | "
                  f"{times[int(len(times) * 0.99) - 1]:.2f} | |")

    with tempfile.TemporaryDirectory() as home:
        env = env_with(home)
        subprocess.run([binary, "exec", HELLO, "greet", "World"], env=env, check=True, capture_output=True)
        # The exec left its record in the journal; a reader folds it in, making the schema.
        subprocess.run([binary, "runs"], env=env, check=True, capture_output=True)
        t = time.perf_counter()
        fill(os.path.join(home, "history.db"), args.rows)
        filled = time.perf_counter() - t
        stats = timed(binary, env, ["stats", "--json"], 5)
        one_agent = timed(binary, env, ["stats", "acme/agent1", "--json"], 5)
        runs = timed(binary, env, ["runs", "-n", "20"], 5)
        failed = timed(binary, env, ["runs", "--failed", "-n", "20"], 5)
        size = os.path.getsize(os.path.join(home, "history.db")) / 2**20
        print(f"| `agenthub stats` over {args.rows:,} records (goal < 1000) | {statistics.median(stats):.0f} | | |")
        print(f"| `agenthub stats AGENT` (a fifth of them) | {statistics.median(one_agent):.0f} | | |")
        print(f"| `agenthub runs -n 20` | {statistics.median(runs):.1f} | | |")
        print(f"| `agenthub runs --failed -n 20` | {statistics.median(failed):.1f} | | |")
        print(f"\n(database {size:.0f} MiB; filled in {filled:.1f} s)")


if __name__ == "__main__":
    main()
