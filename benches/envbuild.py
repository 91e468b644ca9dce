#!/usr/bin/env python3
"""Building the environment of an agent with no dependencies: `agenthub env rebuild`
against `uv venv` by hand, on the same machine in one run.

    cargo build --release
    python3 benches/envbuild.py [--runs 30] [--bin target/release/agenthub] [--baseline OTHER_BINARY]

Both use the same `uv` (the first on PATH) and build into the agent directory
(examples/agents/hello copied, `python_version: "3.9+"`): `uv venv --python '>=3.9' DIR`
into a fresh directory by hand (the removal of the previous one untimed); `agenthub env
create AGENT` after an untimed `env remove` (the same work: resolve the agent, parse its
manifest, key its requirements, take the build lock, `uv venv`, write the marker, swap the
symlink); and `agenthub env rebuild AGENT`, which also removes the build superseded two
rebuilds ago.
Runs are interleaved in random order so drift in machine load hits all alike. Prints a
Markdown table of wall times (ms) and the ratio of medians. With --baseline, another
agenthub binary (e.g. main's) is timed side by side.
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
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def timed(argv, env, cwd):
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{argv} failed: {out.stderr.decode()}")
    return elapsed * 1000


def row(name, samples, base=None):
    s = sorted(samples)
    ratio = f"{statistics.median(s) / base:.2f}x" if base else "1.00x"
    return (f"| {name} | {statistics.median(s):.1f} | {s[len(s) // 10]:.1f} | "
            f"{s[(len(s) * 9) // 10]:.1f} | {s[0]:.1f} | {ratio} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agenthub"))
    ap.add_argument("--baseline", help="another agenthub binary to time side by side")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}: run `cargo build --release` first")
    uv = shutil.which("uv")
    if not uv:
        sys.exit("uv is not on PATH")
    tmp = tempfile.mkdtemp(prefix="agenthub-bench-env-")
    try:
        agent = os.path.join(tmp, "home", "agents", "bench", "hello")
        shutil.copytree(HELLO, agent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
        env["AGENTHUB_HOME"] = os.path.join(tmp, "home")
        env["AGENTHUB_LOG_LEVEL"] = "WARN"
        by_hand = os.path.join(tmp, "by-hand-venv")
        cases = {
            "uv venv (by hand)": lambda: (shutil.rmtree(by_hand, ignore_errors=True),
                                          timed([uv, "venv", "--quiet", "--python", ">=3.9", by_hand], env, tmp))[1],
            "agenthub env create (fresh)": lambda: (timed([binary, "env", "remove", "bench/hello"], env, tmp),
                                                    timed([binary, "env", "create", "bench/hello"], env, tmp))[1],
            "agenthub env rebuild": lambda: timed([binary, "env", "rebuild", "bench/hello"], env, tmp),
        }
        if args.baseline:
            base = os.path.abspath(args.baseline)
            cases["agenthub env rebuild, baseline binary"] = lambda: timed([base, "env", "rebuild", "bench/hello"], env, tmp)
        for fn in cases.values():  # warm the page cache and uv's own caches
            fn()
        samples = {name: [] for name in cases}
        for _ in range(args.runs):
            order = list(cases)
            random.shuffle(order)
            for name in order:
                samples[name].append(cases[name]())
            # Keep the builds directory from growing: agenthub collects superseded builds itself.
        uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"Environment of an agent with no dependencies, {args.runs} runs each (ms); uv: {uv} ({uv_version})\n")
        print("| case | median | p10 | p90 | min | vs uv venv |")
        print("|---|---|---|---|---|---|")
        base = statistics.median(samples["uv venv (by hand)"])
        for name, s in samples.items():
            print(row(name, s, base))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
