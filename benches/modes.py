#!/usr/bin/env python3
"""Every way to run a call, side by side in one run: bare Python, one-shot (sandbox off
and default), isolated, warm, and the floor of a warm call; for the trivial agent
(examples/agents/hello) and, with --coding-agent, for the original's coding-agent.

    cargo build --release -p agenthub-cli
    python3 benches/modes.py [--bin target/release/agenthub] [--coding-agent DIR] [--rounds 3]

DIR is a checkout of github.com/agentplug/coding-agent (it is copied, and its environment
built by agenthub from PyPI; without a model server its methods answer with their error
text, which is what is timed). Prints one Markdown table (median, p99 and calls/s of each
row) and the ratios the goals are about:

- one-shot: `agenthub exec` (default sandbox) / `python agent.py` by hand, at most 1.10;
- isolated: a call in a fork of the zygote / an `agenthub exec` call, at most 1/10 for the
  trivial agent and 1/200 for coding-agent; beside it the floor of an isolated call,
  benches/fork_floor.py (a bare fork-per-call loop from an interpreter that imported what
  a call imports, as the zygote learns it);
- warm: `agenthub bench --mode warm` / the floor, at most 1.10. The floor is
  benches/floor_worker.py (a bare Python loop: read a line, `json.loads`, call,
  `json.dumps`, write) driven over a pipe from this script. Where the scheduler puts the
  two ends decides most of a round trip (on one CPU about 10 µs, across CPUs 70 µs and
  more on these VMs, and it changes from run to run), so both are measured again pinned
  to one CPU, where only the work per call is left;
- two workers: calls/s of `bench --mode warm --concurrency 2` / `--concurrency 1`, at least 1.6.

Processes are timed here around posix_spawn + wait4 (benches/oneshot.py), interleaved in a
shuffled order; bench rows and the floor alternate round by round, and each row shows the
median over rounds of its median, p99 and calls/s.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oneshot import interleaved, run  # noqa: E402  (posix_spawn + wait4 around processes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR = os.path.join(ROOT, "benches", "floor_worker.py")
FORK_FLOOR = os.path.join(ROOT, "benches", "fork_floor.py")


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(len(sorted_ms) * q + 0.999999) - 1))]


def stats_of(seconds, total=None):
    ms = sorted(s * 1000 for s in seconds)
    total = total if total is not None else sum(seconds)
    return statistics.median(ms), percentile(ms, 0.99), len(ms) / total


def bench(binary, env, agent, method, params, mode, calls, concurrency=1):
    out = subprocess.run(
        [binary, "bench", agent, method, params, "-n", str(calls), "--mode", mode, "--json",
         "--concurrency", str(concurrency)],
        env=env, capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"bench --mode {mode} failed: {out.stdout} {out.stderr}")
    v = json.loads(out.stdout)
    return v["median_ms"], v["p99_ms"], v["calls_per_sec"]


def floor(python, agent_dir, request, calls):
    """The floor: benches/floor_worker.py on a pipe, `calls` requests one after another."""
    worker = subprocess.Popen([python, FLOOR, agent_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        assert worker.stdout.readline() == b"ready\n"
        line = json.dumps(request).encode() + b"\n"
        write, flush, read = worker.stdin.write, worker.stdin.flush, worker.stdout.readline
        for _ in range(50):  # warm-up
            write(line)
            flush()
            read()
        times = []
        perf = time.perf_counter
        started = perf()
        for _ in range(calls):
            t = perf()
            write(line)
            flush()
            answer = read()
            times.append(perf() - t)
        total = perf() - started
        assert "result" in json.loads(answer), answer
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
    return stats_of(times, total)


def fork_floor(python, agent_dir, request, calls):
    """The floor of an isolated call: benches/fork_floor.py, `calls` forks one after another."""
    out = subprocess.run([python, FORK_FLOOR, agent_dir, json.dumps(request), str(calls)], cwd=agent_dir,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"fork_floor.py failed: {out.stdout} {out.stderr[-2000:]}")
    v = json.loads(out.stdout.strip().splitlines()[-1])
    return v["median_ms"], v["p99_ms"], v["calls_per_sec"]


def processes(cases, runs, cwd):
    """Each case's (median, p99, calls/s) over `runs` interleaved runs."""
    for argv, env in cases.values():  # page cache and bytecode cache
        for _ in range(3):
            run(argv, cwd, env)
    return {name: stats_of(t) for name, t in interleaved(cases, runs, cwd).items()}


def median_of(rounds):
    return tuple(statistics.median(r[i] for r in rounds) for i in range(3))


def measure(binary, home, name, source, method, params, cli, runs, calls, rounds, concurrency):
    agent = os.path.join(home, "agents", "bench", name)
    shutil.copytree(source, agent, ignore=shutil.ignore_patterns(".venv*", "__pycache__", ".git"))
    env = dict(os.environ, AGENTHUB_HOME=home, AGENTHUB_LOG_LEVEL="WARN", NO_COLOR="1")
    ident = "bench/" + name
    build = subprocess.run([binary, "exec", ident, method, *cli, "--json"], env=env, capture_output=True, text=True)
    if build.returncode != 0:
        sys.exit(f"{name}: the first call failed: {build.stdout} {build.stderr}")
    venv = os.path.join(agent, ".venv")
    python = os.path.join(venv, "bin", "python")
    request = {"method": method, "parameters": json.loads(params)}
    direct_env = dict(os.environ, VIRTUAL_ENV=venv, PATH=os.path.join(venv, "bin") + ":" + os.environ["PATH"])
    exec_argv = [binary, "exec", ident, method, *cli, "--json"]
    rows = processes({
        "python agent.py (by hand)": ([python, "agent.py", json.dumps(request)], direct_env),
        "agenthub exec, sandbox off": ([*exec_argv, "--sandbox", "off"], env),
        "agenthub exec (default sandbox)": (exec_argv, env),
    }, runs, agent)
    iso, iso_floor, warm, flo, one, two = [], [], [], [], [], []
    for _ in range(rounds):
        iso.append(bench(binary, env, ident, method, params, "isolated", max(20, calls // 5)))
        iso_floor.append(fork_floor(python, agent, request, max(20, calls // 5)))
        warm.append(bench(binary, env, ident, method, params, "warm", calls))
        flo.append(floor(python, agent, request, calls))
        if concurrency:
            one.append(bench(binary, env, ident, method, params, "warm", calls, 1))
            two.append(bench(binary, env, ident, method, params, "warm", calls, 2))
    rows["agenthub bench --mode isolated (a fork per call)"] = median_of(iso)
    rows["floor: bare fork per call, imports learned"] = median_of(iso_floor)
    rows["agenthub bench --mode warm"] = median_of(warm)
    rows["floor: bare Python worker on a pipe"] = median_of(flo)
    # The same two on one CPU (this process and everything it starts): no cross-CPU
    # wake-up, so what is left is the work each side does per call.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        pinned_warm, pinned_floor = [], []
        for _ in range(rounds):
            pinned_warm.append(bench(binary, env, ident, method, params, "warm", calls))
            pinned_floor.append(floor(python, agent, request, calls))
    finally:
        os.sched_setaffinity(0, cpus)
    rows["agenthub bench --mode warm, one CPU"] = median_of(pinned_warm)
    rows["floor, one CPU"] = median_of(pinned_floor)
    if concurrency:
        rows["warm, 1 caller, 1 worker"] = median_of(one)
        rows["warm, 2 callers, 2 workers"] = median_of(two)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    ap.add_argument("--coding-agent", metavar="DIR", help="a checkout of agentplug/coding-agent")
    ap.add_argument("--runs", type=int, default=100, help="processes per one-shot row (trivial agent)")
    ap.add_argument("--calls", type=int, default=5000, help="calls per warm row and round (trivial agent)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}: run `cargo build --release -p agenthub-cli` first")
    home = tempfile.mkdtemp(prefix="agenthub-modes-")
    results = []
    try:
        results.append(("hello", measure(binary, home, "hello", os.path.join(ROOT, "examples", "agents", "hello"),
                                         "greet", '{"name": "World"}', ["World"], args.runs, args.calls,
                                         args.rounds, True)))
        if args.coding_agent:
            results.append(("coding-agent", measure(
                binary, home, "coding-agent", os.path.abspath(args.coding_agent), "generate_code",
                '{"prompt": "add two numbers"}', ["add two numbers"], max(5, args.runs // 10),
                max(100, args.calls // 10), args.rounds, False)))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"{os.cpu_count()} cores; one-shot rows: processes timed around posix_spawn + wait4; "
          f"bench and floor rows: median over {args.rounds} rounds\n")
    print("| agent | how | median ms | p99 ms | calls/s |")
    print("|---|---|---:|---:|---:|")
    for agent, rows in results:
        for name, (median, p99, rate) in rows.items():
            print(f"| {agent} | {name} | {median:.3f} | {p99:.3f} | {rate:.0f} |")
    print()
    for agent, rows in results:
        bare = rows["python agent.py (by hand)"][0]
        oneshot = rows["agenthub exec (default sandbox)"][0]
        iso = rows["agenthub bench --mode isolated (a fork per call)"][0]
        warm = rows["agenthub bench --mode warm"][0]
        flo = rows["floor: bare Python worker on a pipe"][0]
        goal = "1/10" if agent == "hello" else "1/200"
        print(f"{agent}: exec (default sandbox) / python agent.py = {oneshot / bare:.3f} (goal <= 1.10); "
              f"exec sandbox off / python = {rows['agenthub exec, sandbox off'][0] / bare:.3f}")
        fork = rows["floor: bare fork per call, imports learned"][0]
        print(f"{agent}: isolated / exec = 1/{oneshot / iso:.0f} (goal <= {goal}); bare fork floor / exec = "
              f"1/{oneshot / fork:.0f}; isolated / bare fork floor = {iso / fork:.2f}")
        print(f"{agent}: warm / floor = {warm / flo:.3f} (goal <= 1.10); on one CPU: "
              f"{rows['agenthub bench --mode warm, one CPU'][0] / rows['floor, one CPU'][0]:.3f}")
        if "warm, 2 callers, 2 workers" in rows:
            scale = rows["warm, 2 callers, 2 workers"][2] / rows["warm, 1 caller, 1 worker"][2]
            print(f"{agent}: calls/s with 2 workers / 1 worker = {scale:.2f} (goal >= 1.6)")


if __name__ == "__main__":
    main()
