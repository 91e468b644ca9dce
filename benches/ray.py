#!/usr/bin/env python3
"""The Ray target against local warm workers, measured side by side in one run.

    cargo build --release
    python3 benches/ray.py --ray-python /path/to/venv-with-ray/bin/python [--address 127.0.0.1:6379]

Needs a running cluster (`ray start --head`). Two measurements:
1. 200 calls of a trivial agent through `agenthub batch --concurrency 16`, on the cluster
   (`--on ray`, 2 actors per agent by default) and locally (16 warm workers): calls/s over
   the whole batch (the start of workers or of the driver and its actors included; a
   16-call batch shows what that start costs), p50/p99 of the calls' `execution_time`
   after the first 16.
2. An agent that sleeps 1 s with a pool of 4 actors (`AGENTHUB_RAY_ACTORS_PER_AGENT=4`),
   `--concurrency 16`: the wall of 4 calls (start + one round) against 16 calls; the
   difference shows the parallelism (3 s for 3 more rounds).
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

MANIFEST = """name: {name}
version: 1.0.0
description: bench
author: bench
interface:
  methods:
    run:
      description: run
      parameters:
        x: {{type: integer, required: false}}
"""

CODE = """import json, sys, time
def main():
    req = json.loads(sys.argv[1])
    {body}
    print(json.dumps({{"result": req["parameters"].get("x", 0)}}))
if __name__ == "__main__":
    main()
"""


def agent(root, name, body):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(MANIFEST.format(name=name))
    with open(os.path.join(d, "agent.py"), "w") as f:
        f.write(CODE.format(body=body))
    return d


def batch(binary, env, agent_dir, n, concurrency, flags):
    lines = "".join(json.dumps({"method": "run", "parameters": {"x": i}, "id": i}) + "\n" for i in range(n))
    start = time.perf_counter()
    out = subprocess.run([binary, "batch", agent_dir, "--concurrency", str(concurrency), *flags],
                         input=lines, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    got = [json.loads(l) for l in out.stdout.splitlines()]
    bad = [g for g in got if "result" not in g]
    if len(got) != n or bad:
        sys.exit(f"batch failed: {len(got)} answers, first failure {bad[:1]}; {out.stderr[-2000:]}")
    return wall, [g["execution_time"] * 1000 for g in got]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agenthub"))
    ap.add_argument("--ray-python", required=True)
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"))
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="agenthub-bench-ray-")
    try:
        trivial = agent(tmp, "trivial", "pass")
        sleepy = agent(tmp, "sleepy", "time.sleep(1)")
        env = dict(os.environ, AGENTHUB_HOME=os.path.join(tmp, "home"), NO_COLOR="1",
                   AGENTHUB_RAY_PYTHON=args.ray_python, RAY_ADDRESS=args.address,
                   AGENTHUB_LOG_LEVEL="ERROR")
        rows = []
        for label, flags in (("local warm workers", []), ("ray actors", ["--on", "ray"])):
            # Each batch is a new process: its workers or driver and actors start with it.
            # A 16-call batch measures that start; the difference to the full batch is the
            # steady state.
            start_wall, _ = batch(binary, env, trivial, 16, 16, flags)
            wall, ms = batch(binary, env, trivial, args.calls + 16, 16, flags)
            ms = sorted(ms[16:])
            rows.append((label, (args.calls + 16) / wall, statistics.median(ms), ms[int(len(ms) * 0.99) - 1],
                         start_wall))
        env4 = dict(env, AGENTHUB_RAY_ACTORS_PER_AGENT="4")
        one_round, _ = batch(binary, env4, sleepy, 4, 16, ["--on", "ray"])
        sleep_wall, _ = batch(binary, env4, sleepy, 16, 16, ["--on", "ray"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.calls} trivial calls through `agenthub batch --concurrency 16` ({os.cpu_count()} cores)\n")
    print("| target | calls/s (whole batch, start included) | p50 ms | p99 ms | start (16-call batch) s |")
    print("|---|---:|---:|---:|---:|")
    for label, rate, p50, p99, wall in rows:
        print(f"| {label} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {wall:.2f} |")
    print(f"\nAn agent that sleeps 1 s, 4 actors, concurrency 16: 4 calls {one_round:.2f} s wall (start + one "
          f"round), 16 calls {sleep_wall:.2f} s: {sleep_wall - one_round:.2f} s for 12 more calls "
          f"(3 rounds of 4 in parallel = 3 s; serially 12 s)")


if __name__ == "__main__":
    main()
