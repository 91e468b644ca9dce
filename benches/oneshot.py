#!/usr/bin/env python3
"""One-shot overhead of `agenthub exec` against running the agent's Python by hand.

    cargo build --release
    python3 benches/oneshot.py [--runs 200] [--bin target/release/agenthub]

Both commands run the same agent (examples/agents/hello, method greet) in the same built
environment, interleaved in random order so that drift in machine load hits all alike. Prints a Markdown
table of wall times (ms) and peak resident memory, and the overhead ratio. Timing is done
here, around `os.posix_spawn` + `os.wait4`, so it includes process start-up of both.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, cwd, env):
    """Runs argv with stdout/stderr to /dev/null; returns (seconds, peak RSS bytes, status)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
    finally:
        os.chdir(old)
        os.close(devnull)
    return elapsed, usage.ru_maxrss * 1024, status


def interleaved(cases, runs, cwd):
    """{name: [seconds]} of running each case's argv `runs` times, the cases shuffled in
    every round so that drift in machine load hits all alike; exits if one fails."""
    times = {name: [] for name in cases}
    order = list(cases)
    for _ in range(runs):
        random.shuffle(order)  # no case always runs first or last
        for name in order:
            argv, env = cases[name]
            elapsed, _, status = run(argv, cwd, env)
            if status != 0:
                sys.exit(f"{name} failed with status {status}")
            times[name].append(elapsed)
    return times


def peak_rss_mib(argv, cwd, env, runs=5):
    """Median peak RSS in MiB of argv alone, measured by GNU time (a small forking parent,
    so the figure is not inflated by this harness: Linux carries a spawner's high-water
    mark across exec). None when GNU time is not installed."""
    if not os.access("/usr/bin/time", os.X_OK):
        return None
    peaks = []
    for _ in range(runs):
        out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=cwd, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peaks.append(int(out.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(peaks)


def summary(samples):
    ms = sorted(s * 1000 for s in samples)
    return {
        "mean": statistics.fmean(ms),
        "median": statistics.median(ms),
        "p10": ms[len(ms) // 10],
        "p90": ms[(len(ms) * 9) // 10],
        "min": ms[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agenthub"))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}: run `cargo build --release` first")

    tmp = tempfile.mkdtemp(prefix="agenthub-bench-")
    try:
        agent = os.path.join(tmp, "home", "agents", "bench", "hello")
        shutil.copytree(os.path.join(ROOT, "examples/agents/hello"), agent,
                        ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
        env = dict(os.environ, AGENTHUB_HOME=os.path.join(tmp, "home"), NO_COLOR="1")
        build = subprocess.run([binary, "exec", "bench/hello", "greet", "World", "--json"],
                               env=env, capture_output=True, text=True)
        if build.returncode != 0:
            sys.exit(f"warm-up failed: {build.stdout} {build.stderr}")
        venv = os.path.join(agent, ".venv")
        request = json.dumps({"method": "greet", "parameters": {"name": "World", "excited": False}})
        direct_env = dict(os.environ, VIRTUAL_ENV=venv, PATH=os.path.join(venv, "bin") + ":" + os.environ["PATH"])
        direct_env.pop("PYTHONHOME", None)
        cases = {
            "python agent.py (by hand)": ([os.path.join(venv, "bin", "python"), "agent.py", request], direct_env),
            "agenthub exec --json": ([binary, "exec", "bench/hello", "greet", "World", "--json"], env),
            "agenthub info --json (no agent run)": ([binary, "info", "bench/hello", "--json"], env),
        }
        for argv, e in cases.values():  # warm the page cache and the bytecode cache
            for _ in range(5):
                run(argv, agent, e)
        rss = {name: peak_rss_mib(argv, agent, e) for name, (argv, e) in cases.items()}
        times = interleaved(cases, args.runs, agent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"One-shot `greet` on examples/agents/hello, {args.runs} interleaved runs each "
          f"({os.cpu_count()} cores, {sys.platform})\n")
    print("| command | mean ms | median ms | p10 ms | p90 ms | min ms | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    stats = {}
    for name in cases:
        s = stats[name] = summary(times[name])
        peak = "n/a" if rss[name] is None else f"{rss[name]:.1f}"
        print(f"| {name} | {s['mean']:.2f} | {s['median']:.2f} | {s['p10']:.2f} | {s['p90']:.2f} | {s['min']:.2f} | {peak} |")
    direct = stats["python agent.py (by hand)"]
    hub = stats["agenthub exec --json"]
    print()
    print(f"overhead ratio (median): {hub['median'] / direct['median']:.3f}   (target <= 1.10)")
    print(f"overhead ratio (mean):   {hub['mean'] / direct['mean']:.3f}")
    print(f"added time (median):     {hub['median'] - direct['median']:.2f} ms")
    print("peak RSS (GNU time, median of 5) of `agenthub exec` is the larger of agenthub and its Python")
    print("child; `agenthub info` shows agenthub's own footprint for the same manifest work.")


if __name__ == "__main__":
    main()
