#!/usr/bin/env python3
"""Where a one-shot call's time goes: the phases of `agenthub exec` from the kernel's
process events (`perf trace` of sched:sched_process_exec/fork/exit), against `python
agent.py` by hand, with the sandbox off and on (default).

    cargo build --release -p agenthub-cli
    python3 benches/oneshot_phases.py [--bin target/release/agenthub] [--runs 30]

Needs `perf` (Debian's linux-perf) and root. Prints one Markdown table of medians (ms):
- before the spawn: from agenthub's exec to its first fork of the call (start-up,
  configuration, manifest, environment check, sandbox preparation, cgroups);
- set-up: from that fork to the exec of Python (namespaces, mounts, Landlock, seccomp;
  with the sandbox off only the fork and exec);
- Python: from its exec to its exit (the agent's own run);
- after: from Python's exit to agenthub's (reaping, teardown, the response).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENT = re.compile(r"^\s*([\d.]+)\s+(\S+)/(\d+)\s+sched:(sched_process_\w+)\((.*)\)\s*$")


def phases(binary, env, argv):
    with tempfile.NamedTemporaryFile(suffix=".trace") as out:
        subprocess.run(["perf", "trace", "-o", out.name, "--no-syscalls", "-e",
                        "sched:sched_process_exec,sched:sched_process_fork,sched:sched_process_exit",
                        "--", binary, *argv], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        events = [m.groups() for m in map(EVENT.match, open(out.name).read().splitlines()) if m]
    start = next(float(t) for t, comm, pid, kind, _ in events if kind == "sched_process_exec")
    first_fork = next(float(t) for t, comm, pid, kind, args in events
                      if kind == "sched_process_fork" and "agenthub-signal" not in args
                      and not args.startswith("parent_comm: \"agenthub-") and float(t) > start
                      and "child_comm: \"agenthub\"" in args and is_process_fork(args, events))
    py_exec = next(float(t) for t, comm, pid, kind, args in events
                   if kind == "sched_process_exec" and "python" in args)
    py_exit = next(float(t) for t, comm, pid, kind, args in events
                   if kind == "sched_process_exit" and comm == "python")
    end = max(float(t) for t, *_ in events)
    return first_fork - start, py_exec - first_fork, py_exit - py_exec, end - py_exit


def is_process_fork(args, events):
    # A fork whose child later execs or exits as a process of its own (not a thread):
    # threads of agenthub are named (agenthub-signal, agenthub-proxy-…) by the time they exit.
    child = re.search(r"child_pid: (\d+)", args).group(1)
    names = [comm for t, comm, pid, kind, a in events if pid == child and kind == "sched_process_exit"]
    return not names or names[0] in ("agenthub", "python")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    home = tempfile.mkdtemp(prefix="agenthub-phases-")
    try:
        agent = os.path.join(home, "agents", "bench", "hello")
        shutil.copytree(os.path.join(ROOT, "examples", "agents", "hello"), agent,
                        ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
        env = dict(os.environ, AGENTHUB_HOME=home, NO_COLOR="1")
        exec_argv = ["exec", "bench/hello", "greet", "World", "--json"]
        subprocess.run([binary, *exec_argv], env=env, check=True, capture_output=True)
        rows = {}
        for name, extra in (("sandbox off", ["--sandbox", "off"]), ("default sandbox", [])):
            samples = [phases(binary, env, exec_argv + extra) for _ in range(args.runs)]
            rows[name] = [statistics.median(s[i] for s in samples) for i in range(4)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"`agenthub exec bench/hello greet World`, {args.runs} runs each, medians in ms "
          "(from perf trace's process events)\n")
    print("| sandbox | before the spawn | set-up | Python | after | total |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (a, b, c, d) in rows.items():
        print(f"| {name} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {a + b + c + d:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
