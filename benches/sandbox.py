#!/usr/bin/env python3
"""What the sandbox costs, side by side in one run, interleaved (so load hits all alike).

    cargo build --release -p agenthub-cli
    python3 benches/sandbox.py [--bin target/release/agenthub] [--runs 40] [--calls 2000]

On `examples/agents/hello` (`greet World`), prints a Markdown table of wall times:
- `python agent.py '<request>'` by hand with the agent's environment (the floor);
- `agenthub exec --sandbox off`, `exec` (default mode), `exec --sandbox strict` with a
  network list (`--allow-net api.example.com` and a bridged `localhost:PORT`), each a new
  process per call;
- warm calls (`agenthub bench --mode warm`, median and p99 per call) with the sandbox off
  and on: a worker is sandboxed once at start, so a call should cost the same.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile

from ab import pct, wall  # benches/ab.py: one wall clock and one percentile for every bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def warm(binary, env, calls, mode):
    out = subprocess.run([binary, "bench", HELLO, "greet", "name=World", "-n", str(calls), "--mode", "warm",
                          "--json"], env=dict(env, AGENTHUB_SANDBOX=mode), stdout=subprocess.PIPE, check=True)
    report = json.loads(out.stdout)
    return report["median_ms"], report["p99_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="agenthub-bench-sandbox-")
    env = dict(os.environ, AGENTHUB_HOME=home, NO_COLOR="1")
    env.pop("AGENTHUB_SANDBOX", None)
    binary = os.path.abspath(args.bin)
    # Build the environment once, outside the measurement.
    subprocess.run([binary, "exec", HELLO, "greet", "World"], env=env, check=True, stdout=subprocess.DEVNULL)
    python = os.path.join(HELLO, ".venv", "bin", "python")
    request = json.dumps({"method": "greet", "parameters": {"name": "World"}})
    commands = {
        "python agent.py (by hand)": [python, os.path.join(HELLO, "agent.py"), request],
        "exec --sandbox off": [binary, "exec", HELLO, "greet", "World", "--sandbox", "off"],
        "exec (default)": [binary, "exec", HELLO, "greet", "World"],
        "exec --sandbox strict, network list": [binary, "exec", HELLO, "greet", "World", "--sandbox", "strict",
                                                "--allow-net", "api.example.com",
                                                "--allow-net", "localhost:11434"],
    }
    times = {name: [] for name in commands}
    for name, cmd in commands.items():  # warm-up
        wall(cmd, env)
    order = list(commands.items())
    for _ in range(args.runs):
        # A new order each round: whatever the machine does periodically hits all alike.
        random.shuffle(order)
        for name, cmd in order:
            times[name].append(wall(cmd, env))
    floor = statistics.median(times["python agent.py (by hand)"])
    off = statistics.median(times["exec --sandbox off"])
    print("| one-shot, `hello greet` ({} runs each, interleaved, shuffled) | min ms | median ms | p90 ms | median vs python | median vs --sandbox off |".format(args.runs))
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print("| {} | {:.2f} | {:.2f} | {:.2f} | {:.3f}x | {:+.2f} ms |".format(
            name, min(values), med, pct(values, 0.9), med / floor, med - off))
    print()
    print("| warm call, `bench --mode warm` ({} calls) | median ms | p99 ms |".format(args.calls))
    print("|---|---|---|")
    for mode in ("off", "default"):
        med, p99 = warm(binary, env, args.calls, mode)
        print("| sandbox {} | {:.3f} | {:.3f} |".format(mode, med, p99))


if __name__ == "__main__":
    main()
