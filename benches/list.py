#!/usr/bin/env python3
"""`agenthub list` over many installed agents: cold (no listing cache), warm (cache valid),
and after one agent changed, against `ls -R` of the same tree as the floor.

    cargo build --release
    python3 benches/list.py [--agents 10000] [--runs 15] [--bin target/release/agenthub]
                            [--baseline OTHER_BINARY]

Makes a home with N copies of examples/agents/hello (each with its own manifest, a
provenance file, no environment), then times, interleaved so drift hits all alike:
- `list --json` with the listing cache removed before each run (cold),
- `list --json` with the cache left in place (warm: what a user sees every time but the first),
- `list --json` after touching one manifest (one entry re-parsed),
- `info ns/name --json` of one agent (never slower for the cache),
and, with --baseline, the same `list --json` of another build (e.g. main's) side by side.
Prints a Markdown table of wall times (ms).
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


def make_home(home, agents):
    manifest = open(os.path.join(HELLO, "agent.yaml")).read()
    script = open(os.path.join(HELLO, "agent.py")).read()
    per_ns = 100
    for i in range(agents):
        d = os.path.join(home, "agents", f"ns{i // per_ns:03d}", f"agent{i:05d}")
        os.makedirs(d)
        with open(os.path.join(d, "agent.yaml"), "w") as f:
            f.write(manifest.replace('name: "hello"', f'name: "agent{i:05d}"'))
        with open(os.path.join(d, "agent.py"), "w") as f:
            f.write(script)
        with open(os.path.join(d, ".agenthub-install.json"), "w") as f:
            f.write('{"agent_name": "ns/a", "github_url": "file:///srv/ns/a", "commit_sha": "0123abc",'
                    ' "requested_ref": "v1", "installed_at": "2026-01-01T00:00:00Z",'
                    ' "source": "ns/a@v1", "source_kind": "git", "agenthub_version": "0.1.0"}')


def timed(argv, env):
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{argv} failed: {out.stderr.decode()}")
    return elapsed * 1000


def row(name, samples):
    s = sorted(samples)
    return f"| {name} | {statistics.median(s):.1f} | {s[len(s) // 10]:.1f} | {s[(len(s) * 9) // 10]:.1f} | {s[0]:.1f} |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/agenthub"))
    ap.add_argument("--baseline", help="another agenthub binary to time side by side")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no binary at {binary}: run `cargo build --release` first")
    tmp = tempfile.mkdtemp(prefix="agenthub-bench-list-")
    try:
        home = os.path.join(tmp, "home")
        make_home(home, args.agents)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
        env["AGENTHUB_HOME"] = home
        cache_dir = os.path.join(home, "cache")
        one = os.path.join(home, "agents", "ns000", "agent00000", "agent.yaml")
        lst = [binary, "list", "--json"]
        timed(lst, env)  # page cache warm, listing cache written
        cases = {"list (cache valid)": [], "list (no cache)": [], "list (1 manifest changed)": [],
                 "info one agent": [], "ls -R (floor)": []}
        if args.baseline:
            cases["list, baseline binary"] = []
        for _ in range(args.runs):
            order = list(cases)
            random.shuffle(order)
            for case in order:
                if case == "list (no cache)":
                    shutil.rmtree(cache_dir, ignore_errors=True)
                    cases[case].append(timed(lst, env))
                elif case == "list (1 manifest changed)":
                    timed(lst, env)
                    os.utime(one)
                    cases[case].append(timed(lst, env))
                elif case == "info one agent":
                    cases[case].append(timed([binary, "info", "ns000/agent00000", "--json"], env))
                elif case == "ls -R (floor)":
                    cases[case].append(timed(["ls", "-R", os.path.join(home, "agents")], env))
                elif case == "list, baseline binary":
                    cases[case].append(timed([os.path.abspath(args.baseline), "list", "--json"], env))
                else:
                    timed(lst, env)
                    cases[case].append(timed(lst, env))
        print(f"`agenthub list` with {args.agents} installed agents, {args.runs} runs each (ms)\n")
        print("| case | median | p10 | p90 | min |")
        print("|---|---|---|---|---|")
        for name, samples in cases.items():
            print(row(name, samples))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
