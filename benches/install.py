#!/usr/bin/env python3
"""`agenthub install` of a local git repository against doing its work by hand.

    cargo build --release
    python3 benches/install.py [--runs 20] [--bin target/release/agenthub]

The repository holds examples/agents/hello (no dependencies), committed and tagged v1.
"By hand" is `git clone file://… DIR` followed by `uv venv DIR/.venv` (the same uv and
Python agenthub uses); "agenthub" is `agenthub install file://…@v1` into an empty home,
which also checks out the ref, validates the agent, writes its provenance, builds and
marks the environment and swaps the install in. Runs are interleaved in random order.
Prints a Markdown table of wall times (ms) and the ratio (target <= 1.5).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argvs, env):
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agenthub"))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}: run `cargo build --release` first")
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("uv is not on PATH")
    python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()

    tmp = tempfile.mkdtemp(prefix="agenthub-bench-install-")
    try:
        repo = os.path.join(tmp, "repos", "bench", "hello")
        shutil.copytree(os.path.join(ROOT, "examples/agents/hello"), repo,
                        ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", repo]
        for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"], ["tag", "v1"]):
            subprocess.run(git + step, check=True)
        url = f"file://{repo}"
        env = dict(os.environ, NO_COLOR="1")
        times = {"git clone + uv venv (by hand)": [], "agenthub install": []}
        for i in range(args.runs + 2):  # two untimed warm-up rounds
            order = list(times)
            random.shuffle(order)
            for name in order:
                work = os.path.join(tmp, f"run{i}-{len(times[name])}-{name[:3]}")
                if name.startswith("git"):
                    dest = os.path.join(work, "hello")
                    elapsed = timed([["git", "clone", "-q", url, dest],
                                     [uv, "venv", "-q", "--python", python, os.path.join(dest, ".venv")]], env)
                else:
                    home_env = dict(env, AGENTHUB_HOME=work)
                    elapsed = timed([[binary, "-q", "install", f"{url}@v1"]], home_env)
                    if not os.path.isfile(os.path.join(work, "agents/bench/hello/.venv/agenthub-env.json")):
                        sys.exit("agenthub install did not build the environment")
                if i >= 2:
                    times[name].append(elapsed)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"Install of a local git repository with no dependencies, {args.runs} interleaved runs each "
          f"({os.cpu_count()} cores)\n")
    print("| command | median ms | p10 ms | p90 ms | min ms |")
    print("|---|---:|---:|---:|---:|")
    med = {}
    for name, samples in times.items():
        ms = sorted(s * 1000 for s in samples)
        med[name] = statistics.median(ms)
        print(f"| {name} | {med[name]:.1f} | {ms[len(ms) // 10]:.1f} | {ms[(len(ms) * 9) // 10]:.1f} | {ms[0]:.1f} |")
    ratio = med["agenthub install"] / med["git clone + uv venv (by hand)"]
    print(f"\nratio (median): {ratio:.2f}   (target <= 1.5)")


if __name__ == "__main__":
    main()
