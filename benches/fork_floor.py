#!/usr/bin/env python3
"""The floor of an isolated call: a bare fork-per-call loop, nothing agenthub does.

    <venv>/bin/python fork_floor.py <agent_dir> <request_json> <calls>

Imports the agent's `agent.py`, learns what a call imports as agenthub's zygote does (one
call in a throwaway fork, whose new `sys.modules` entries are then imported here; the
call's own state never reaches this process), freezes the heap (`gc.freeze`), then times
`calls` calls, each a fork that runs `main()` with the request in `sys.argv[1]` (the
agentplug convention), sends its stdout back on a pipe and exits, waited for before the
next. Prints {"median_ms", "p99_ms", "calls_per_sec"} on one line. benches/modes.py runs
it beside `agenthub bench --mode isolated`: what agenthub adds to an isolated call is
measured against this loop, and what the agent does per call in a fresh process is in
both.
"""
import contextlib
import gc
import importlib
import io
import json
import os
import sys
import time


def run_main(agent):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            agent.main()
        except SystemExit:
            pass
    return out.getvalue()


def in_fork(work):
    """Runs work() in a fork; returns what it returned (bytes) once the fork exited."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            data = work()
            with os.fdopen(w, "wb") as sink:
                sink.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as source:
        data = source.read()
    os.waitpid(pid, 0)
    return data


def main():
    agent_dir, request, calls = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    os.chdir(agent_dir)
    sys.path.insert(0, agent_dir)
    sys.argv = ["agent.py", request]
    agent = importlib.import_module("agent")

    def imports():
        before = set(sys.modules)
        run_main(agent)
        return json.dumps(sorted(set(sys.modules) - before)).encode()

    for name in json.loads(in_fork(imports)):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (as the zygote: a module that fails is not learned)
            pass
    gc.freeze()

    def call():
        return run_main(agent).encode()

    for _ in range(5):  # warm-up
        in_fork(call)
    times = []
    perf = time.perf_counter
    started = perf()
    for _ in range(calls):
        t = perf()
        answer = in_fork(call)
        times.append(perf() - t)
    total = perf() - started
    assert b"result" in answer, answer
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, max(0, int(len(ms) * 0.99 + 0.999999) - 1))]
    print(json.dumps({"median_ms": ms[len(ms) // 2], "p99_ms": p99, "calls_per_sec": calls / total}))


if __name__ == "__main__":
    main()
