#!/usr/bin/env python3
"""Two agenthub binaries side by side, in one run, interleaved (so load hits both alike).

    cargo build --release -p agenthub-cli
    python3 benches/ab.py --baseline OTHER/agenthub [--baseline NAME=PATH ...] [--bin target/release/agenthub]

Prints a Markdown table with, for each binary:
- one-shot: the wall time of `agenthub exec examples/agents/hello greet World --json`
  (a new process per call: start-up, configuration, manifest, environment check, Python);
- `python agent.py` by hand on the same agent (the floor both are measured against);
- warm: `agenthub bench --mode warm` median and p99 per call (through the library);
- `agenthub batch --concurrency 1`: calls/s over JSON lines on a pipe.
The baseline is usually the binary of the commit an issue started from.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def wall(cmd, env):
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit("failed: {}\n{}".format(" ".join(cmd), out.stderr.decode(errors="replace")))
    return took * 1000


def warm(binary, env, calls):
    out = subprocess.run([binary, "bench", HELLO, "greet", "name=World", "-n", str(calls), "--mode", "warm",
                          "--json"], env=env, stdout=subprocess.PIPE, check=True)
    report = json.loads(out.stdout)
    return report["median_ms"], report["p99_ms"]


def batch(binary, env, calls):
    lines = "".join(json.dumps({"method": "greet", "parameters": {"name": "n%d" % i}, "id": i}) + "\n"
                    for i in range(calls)).encode()
    started = time.perf_counter()
    out = subprocess.run([binary, "batch", HELLO, "--concurrency", "1"], env=env, input=lines,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    took = time.perf_counter() - started
    assert out.stdout.count(b"\n") == calls, out.stderr
    return calls / took


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    ap.add_argument("--baseline", required=True, action="append",
                    help="another agenthub binary (NAME=PATH to label it; may be repeated)")
    ap.add_argument("--runs", type=int, default=150, help="one-shot calls per binary")
    ap.add_argument("--warm-calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5, help="warm and batch rounds per binary")
    args = ap.parse_args()
    env = dict(os.environ, NO_COLOR="1", AGENTHUB_LOG_LEVEL="WARN")
    binaries = {"this": os.path.abspath(args.bin)}
    for i, spec in enumerate(args.baseline):
        name, _, path = spec.rpartition("=") if "=" in spec else ("baseline" if i == 0 else "baseline%d" % i, "", spec)
        binaries[name] = os.path.abspath(path)
    for name, binary in binaries.items():  # environment built, caches warm
        wall([binary, "exec", HELLO, "greet", "World", "--json"], env)
    python = os.path.join(HELLO, ".venv", "bin", "python")
    request = json.dumps({"method": "greet", "parameters": {"name": "World"}})
    oneshot = {name: [] for name in binaries}
    oneshot["python by hand"] = []
    for _ in range(args.runs):
        for name, binary in binaries.items():
            oneshot[name].append(wall([binary, "exec", HELLO, "greet", "World", "--json"], env))
        oneshot["python by hand"].append(wall([python, os.path.join(HELLO, "agent.py"), request], env))
    warm_runs = {name: [] for name in binaries}
    batch_runs = {name: [] for name in binaries}
    for _ in range(args.rounds):
        for name, binary in binaries.items():
            warm_runs[name].append(warm(binary, env, args.warm_calls))
            batch_runs[name].append(batch(binary, env, args.warm_calls))
    print("| binary | one-shot median ms | p90 | vs python | warm median ms | warm p99 ms | batch calls/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    floor = statistics.median(oneshot["python by hand"])
    print("| python agent.py by hand | {:.2f} | {:.2f} | 1.000 | | | |".format(
        floor, pct(oneshot["python by hand"], 0.9)))
    for name in binaries:
        med = statistics.median(oneshot[name])
        print("| {} | {:.2f} | {:.2f} | {:.3f} | {:.3f} | {:.3f} | {:.0f} |".format(
            name, med, pct(oneshot[name], 0.9), med / floor,
            statistics.median(m for m, _ in warm_runs[name]),
            statistics.median(p for _, p in warm_runs[name]),
            statistics.median(batch_runs[name])))


if __name__ == "__main__":
    main()
