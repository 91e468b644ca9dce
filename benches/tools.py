#!/usr/bin/env python3
"""What tools for agents cost, side by side in one run (issue 17).

    cargo build --release -p agenthub-cli
    python3 benches/tools.py [--bin target/release/agenthub] [--rounds 5] [--calls 2000] [--runs 30]

Prints Markdown tables (default sandbox, warm workers unless said):
- a tool round trip (agent -> agenthub -> agent tool -> back), timed inside
  `benches/agents/toolcaller` with the smallest client there is (one keep-alive HTTP
  connection, one Streamable HTTP session per worker), the tool being `add` of
  `examples/agents/hello`; next to it, in the same run, a direct warm call of that same
  method (`agenthub bench --mode warm`): the difference is what a tool call adds;
- a warm call with tools assigned but unused versus none (`bench --tool`), rounds
  interleaved, and the same for one-shot `exec` (a new process per call).
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
CALLER = os.path.join(ROOT, "benches", "agents", "toolcaller")
TOOL = HELLO + ":add"


def bench(binary, env, agent, method, params, calls, extra=()):
    out = subprocess.run([binary, "bench", agent, method, *params, "-n", str(calls), "--mode", "warm", "--json",
                          *extra], env=env, stdout=subprocess.PIPE, check=True)
    report = json.loads(out.stdout)
    return report["median_ms"], report["p99_ms"]


def round_trips(binary, env, calls):
    """Seconds of each tool call, from `calls` calls in one warm worker (the first call,
    which opens the session, is left out)."""
    per_line = 100
    lines = "".join(json.dumps({"method": "roundtrips", "parameters": {"n": per_line}}) + "\n"
                    for _ in range(calls // per_line + 1))
    out = subprocess.run([binary, "batch", CALLER, "--tool", TOOL], env=env, input=lines.encode(),
                         stdout=subprocess.PIPE, check=True)
    answers = [json.loads(line) for line in out.stdout.decode().splitlines()]
    for answer in answers:
        if "result" not in answer:
            raise SystemExit("a round-trip call failed: {}".format(answer))
    return [t * 1000 for answer in answers[1:] for t in answer["result"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="agenthub-bench-tools-")
    env = dict(os.environ, AGENTHUB_HOME=home, NO_COLOR="1")
    env.pop("AGENTHUB_SANDBOX", None)
    binary = os.path.abspath(args.bin)
    for agent, method, params in ((HELLO, "greet", ["World"]), (CALLER, "nothing", [])):
        subprocess.run([binary, "exec", agent, method, *params], env=env, check=True, stdout=subprocess.DEVNULL)

    direct, trips = [], []
    for _ in range(args.rounds):
        direct.append(bench(binary, env, HELLO, "add", ["a=1", "b=2"], args.calls))
        trips.extend(round_trips(binary, env, args.calls))
    d_med = statistics.median(m for m, _ in direct)
    d_p99 = statistics.median(p for _, p in direct)
    t_med, t_p99 = statistics.median(trips), pct(trips, 0.99)
    print("| warm, `hello add` ({} rounds x {} calls) | median ms | p99 ms |".format(args.rounds, args.calls))
    print("|---|---|---|")
    print("| direct call (`agenthub bench --mode warm`) | {:.3f} | {:.3f} |".format(d_med, d_p99))
    print("| as a tool, timed in the calling agent | {:.3f} | {:.3f} |".format(t_med, t_p99))
    print("| added by the tool path | {:+.3f} | {:+.3f} |".format(t_med - d_med, t_p99 - d_p99))
    print()

    none, unused = [], []
    for _ in range(args.rounds):
        pair = [(none, ()), (unused, ("--tool", TOOL))]
        random.shuffle(pair)
        for into, extra in pair:
            into.append(bench(binary, env, CALLER, "nothing", [], args.calls, extra))
    print("| warm call of `toolcaller nothing` ({} rounds x {} calls, interleaved) | median ms | p99 ms |".format(
        args.rounds, args.calls))
    print("|---|---|---|")
    n_med, u_med = statistics.median(m for m, _ in none), statistics.median(m for m, _ in unused)
    print("| no tools | {:.3f} | {:.3f} |".format(n_med, statistics.median(p for _, p in none)))
    print("| tools assigned, unused | {:.3f} | {:.3f} |".format(u_med, statistics.median(p for _, p in unused)))
    print("| added | {:+.3f} | |".format(u_med - n_med))
    print()

    commands = {
        "exec, no tools": [binary, "exec", CALLER, "nothing"],
        "exec, tools assigned, unused": [binary, "exec", CALLER, "nothing", "--tool", TOOL],
    }
    times = {name: [] for name in commands}
    for cmd in commands.values():
        wall(cmd, env)
    order = list(commands.items())
    for _ in range(args.runs):
        random.shuffle(order)
        for name, cmd in order:
            times[name].append(wall(cmd, env))
    print("| one-shot ({} runs each, interleaved) | min ms | median ms | p90 ms |".format(args.runs))
    print("|---|---|---|---|")
    for name, values in times.items():
        print("| {} | {:.2f} | {:.2f} | {:.2f} |".format(name, min(values), statistics.median(values),
                                                        pct(values, 0.9)))
    base = statistics.median(times["exec, no tools"])
    print("| added | | {:+.2f} | |".format(statistics.median(times["exec, tools assigned, unused"]) - base))


if __name__ == "__main__":
    main()
