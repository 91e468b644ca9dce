#!/usr/bin/env python3
"""Warm workers against one-shot calls, on the same machine in one run.

    cargo build --release
    python3 benches/warm.py [--bin target/release/agenthub] [--calls 5000]

Prints a Markdown table:
- `agenthub bench --mode warm` and `--mode oneshot` on examples/agents/hello (calls through
  the library: validation, environment check, version check, one request);
- the worker protocol alone: a Python driver sending requests straight to a worker started
  with the embedded bootstrap (no runtime in between);
- an agent that takes 300 ms to import: first warm call (starts the worker) against later ones;
- `agenthub batch --concurrency 4` holding 4 idle workers: the runtime's own RSS, and the
  workers' RSS reported separately.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def bench(binary, env, mode, calls):
    out = subprocess.run(
        [binary, "bench", HELLO, "greet", '{"name": "World"}', "-n", str(calls), "--mode", mode, "--json"],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def protocol_round_trip(python, calls):
    """Median and calls/s of request/response lines straight to a worker."""
    source = open(os.path.join(ROOT, "crates", "agenthub-runtime", "src", "warm", "bootstrap.py")).read()
    worker = subprocess.Popen(
        [python, "-u", "-c", source, HELLO, "auto", "greet,word_count,add"],
        cwd=HELLO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    ready = json.loads(worker.stdout.readline())
    assert ready["type"] == "ready" and ready["dispatch"] == "main", ready
    request = {"method": "greet", "parameters": {"name": "World"}}
    times = []
    started = time.perf_counter()
    for i in range(calls):
        line = json.dumps({"id": i, "method": "greet",
                           "request": json.dumps(request)}).encode() + b"\n"
        t = time.perf_counter()
        worker.stdin.write(line)
        worker.stdin.flush()
        answer = json.loads(worker.stdout.readline())
        times.append(time.perf_counter() - t)
        assert answer["id"] == i and answer["exit_code"] == 0, answer
    total = time.perf_counter() - started
    worker.stdin.close()
    worker.wait(timeout=10)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000, calls / total


def slow_import(binary, env, home):
    """Wall time to each answer of `agenthub batch` on an agent that sleeps 300 ms at import
    (the first includes starting agenthub and the worker), and of one-shot `exec` calls."""
    agent = os.path.join(home, "slow")
    shutil.copytree(HELLO, agent, ignore=shutil.ignore_patterns(".venv*"))
    code = open(os.path.join(agent, "agent.py")).read()
    with open(os.path.join(agent, "agent.py"), "w") as f:
        f.write("import time\ntime.sleep(0.3)\n" + code)
    # Build the environment first, so that what follows measures imports, not the build.
    subprocess.run([binary, "exec", agent, "greet", "x", "--json"], env=env, check=True, capture_output=True)
    oneshot = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([binary, "exec", agent, "greet", "x", "--json"], env=env, check=True, capture_output=True)
        oneshot.append((time.perf_counter() - t) * 1000)
    batch = subprocess.Popen([binary, "batch", agent], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    warm = []
    t = time.perf_counter()
    for i in range(6):
        batch.stdin.write(json.dumps({"method": "greet", "parameters": {"name": str(i)}}) + "\n")
        batch.stdin.flush()
        assert "result" in json.loads(batch.stdout.readline())
        now = time.perf_counter()
        warm.append((now - t) * 1000)
        t = now
    batch.stdin.close()
    batch.wait(timeout=30)
    return warm, oneshot


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_workers_rss(binary, env):
    """RSS of `agenthub batch --concurrency 4` and of its 4 workers, all idle."""
    batch = subprocess.Popen([binary, "batch", HELLO, "--concurrency", "4"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # Four slow calls at once make the pool start four workers.
    for i in range(4):
        batch.stdin.write(json.dumps({"method": "greet", "parameters": {"name": "x" * 10}}) + "\n")
    batch.stdin.flush()
    for _ in range(4):
        batch.stdout.readline()
    time.sleep(0.3)
    children = subprocess.run(["pgrep", "-P", str(batch.pid)], capture_output=True, text=True).stdout.split()
    own = rss_kib(batch.pid)
    workers = [rss_kib(int(p)) for p in children]
    batch.stdin.close()
    batch.wait(timeout=30)
    return own, workers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    home = tempfile.mkdtemp(prefix="agenthub-warm-bench-")
    env = dict(os.environ, AGENTHUB_HOME=home, AGENTHUB_LOG_LEVEL="WARN")
    try:
        warm = bench(binary, env, "warm", args.calls)
        oneshot = bench(binary, env, "oneshot", max(20, args.calls // 50))
        python = os.path.join(HELLO, ".venv", "bin", "python")
        proto = protocol_round_trip(python, args.calls)
        slow = slow_import(binary, env, home)
        own, workers = idle_workers_rss(binary, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("| what | median ms | p99 ms | calls/s |")
    print("|---|---:|---:|---:|")
    print(f"| warm call through the runtime (bench --mode warm, {warm['calls']} calls) | "
          f"{warm['median_ms']:.3f} | {warm['p99_ms']:.3f} | {warm['calls_per_sec']:.0f} |")
    print(f"| worker protocol alone (Python driver, {args.calls} calls) | {proto[0]:.3f} | {proto[1]:.3f} | {proto[2]:.0f} |")
    print(f"| one-shot call through the runtime (bench --mode oneshot, {oneshot['calls']} calls) | "
          f"{oneshot['median_ms']:.3f} | {oneshot['p99_ms']:.3f} | {oneshot['calls_per_sec']:.0f} |")
    print()
    print("300 ms import, `agenthub batch` answers in order (ms; the first includes starting agenthub and the "
          "worker): " + ", ".join(f"{t:.1f}" for t in slow[0]))
    print("300 ms import, `agenthub exec` one-shot (ms): " + ", ".join(f"{t:.1f}" for t in slow[1]))
    print()
    print(f"agenthub batch with {len(workers)} idle workers: runtime RSS {own / 1024:.1f} MiB; "
          f"workers " + ", ".join(f"{w / 1024:.1f}" for w in workers) + " MiB")


if __name__ == "__main__":
    sys.exit(main())
