#!/usr/bin/env python3
"""What `agenthub mcp serve` adds to a warm call, on the same machine in one run.

    cargo build --release -p agenthub-cli
    python3 benches/mcp.py [--bin target/release/agenthub] [--calls 5000] [--rounds 3]

Prints a Markdown table, on examples/agents/hello `greet` (a trivial method), warm:
- `agenthub bench --mode warm`: calls through the library in the bench process itself
  (validation, environment check, version check, one request to the worker);
- `agenthub batch`: the same calls as JSON lines over a pipe from this Python driver
  (what a client of the JSON-lines interface pays);
- `agenthub mcp serve`: `tools/call` requests over a pipe from this Python driver (raw JSON-RPC
  lines, after the initialize handshake), one in flight at a time; in the same session,
  `ping` (the protocol alone) and `tools/call` with invalid arguments (the protocol, the hop
  to a blocking thread and back, and validation, but no worker), which split the MCP cost.

A fourth row runs the same driver against `cat`: the pipe and the driver's JSON alone.
The rounds alternate them, so drift on a shared machine hits them alike; the table
gives the median of the round medians and the largest p99. "MCP adds" is the MCP median
minus the `bench --mode warm` median: it includes this driver's JSON and the pipe, so it is
an upper bound of what the server itself adds; less the `cat` floor, it is the server's own
share.
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
HELLO = os.path.join(ROOT, "examples", "agents", "hello")


def bench(binary, env, calls):
    out = subprocess.run(
        [binary, "bench", HELLO, "greet", '{"name": "World"}', "-n", str(calls), "--mode", "warm", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )
    r = json.loads(out.stdout)
    return r["median_ms"], r["p99_ms"]


def summary(times):
    times.sort()
    return statistics.median(times) * 1000, times[max(0, int(len(times) * 0.99) - 1)] * 1000


def batch(binary, env, calls):
    proc = subprocess.Popen([binary, "batch", HELLO], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    line = (json.dumps({"method": "greet", "parameters": {"name": "World"}}) + "\n").encode()
    times = []
    for i in range(calls + 1):
        t = time.perf_counter()
        proc.stdin.write(line)
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        if i > 0:  # the first call starts the worker
            times.append(time.perf_counter() - t)
        assert answer.get("result") == "Hello, World.", answer
    proc.stdin.close()
    proc.wait(timeout=30)
    return summary(times)


def floor(calls):
    """The same driver against `cat`: what the pipe and the driver's JSON cost by themselves."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    times = []
    for i in range(1, calls + 1):
        line = (json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                            "params": {"name": "greet", "arguments": {"name": "World"}}}) + "\n").encode()
        t = time.perf_counter()
        proc.stdin.write(line)
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        times.append(time.perf_counter() - t)
        assert answer["id"] == i
    proc.stdin.close()
    proc.wait(timeout=30)
    return summary(times)


def mcp(binary, env, calls):
    proc = subprocess.Popen([binary, "mcp", "serve", HELLO, "--workers", "1"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(message):
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
          "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
    assert json.loads(proc.stdout.readline())["id"] == 0
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    next_id = [0]

    def timed(method, params, check):
        times = []
        for _ in range(calls):
            next_id[0] += 1
            line = (json.dumps({"jsonrpc": "2.0", "id": next_id[0], "method": method, "params": params})
                    + "\n").encode()
            t = time.perf_counter()
            proc.stdin.write(line)
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            times.append(time.perf_counter() - t)
            assert answer["id"] == next_id[0] and check(answer), answer
        return summary(times)

    def greeted(answer):
        return answer["result"]["content"][0]["text"] == "Hello, World."

    greet = {"name": "greet", "arguments": {"name": "World"}}
    # The first call starts the worker: not timed.
    next_id[0] += 1
    send({"jsonrpc": "2.0", "id": next_id[0], "method": "tools/call", "params": greet})
    assert greeted(json.loads(proc.stdout.readline()))
    call = timed("tools/call", greet, greeted)
    ping = timed("ping", {}, lambda a: a["result"] == {})
    invalid = timed("tools/call", {"name": "greet", "arguments": {}}, lambda a: a["result"]["isError"])
    proc.stdin.close()
    proc.wait(timeout=30)
    return call, ping, invalid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "agenthub"))
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    home = tempfile.mkdtemp(prefix="agenthub-mcp-bench-")
    env = dict(os.environ, AGENTHUB_HOME=home, AGENTHUB_LOG_LEVEL="WARN")
    rows = {"floor": [], "bench": [], "batch": [], "mcp": [], "ping": [], "invalid": []}
    try:
        # Builds the environment, so that the rounds measure calls only.
        subprocess.run([binary, "exec", HELLO, "greet", "x", "--json"], env=env, check=True, capture_output=True)
        for _ in range(args.rounds):
            rows["floor"].append(floor(args.calls))
            rows["bench"].append(bench(binary, env, args.calls))
            rows["batch"].append(batch(binary, env, args.calls))
            call, ping, invalid = mcp(binary, env, args.calls)
            rows["mcp"].append(call)
            rows["ping"].append(ping)
            rows["invalid"].append(invalid)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(m for m, _ in v) for k, v in rows.items()}
    p99 = {k: max(p for _, p in v) for k, v in rows.items()}
    labels = {
        "floor": "the same driver against `cat` (pipe and driver JSON only)",
        "bench": "`agenthub bench --mode warm` (in process)",
        "batch": "`agenthub batch`, JSON lines over a pipe",
        "mcp": "`agenthub mcp serve`, `tools/call` over a pipe",
        "ping": "`agenthub mcp serve`, `ping` (the protocol alone)",
        "invalid": "`agenthub mcp serve`, `tools/call` with invalid arguments (protocol + the hop to a "
                   "blocking thread + validation, no worker)",
    }
    print(f"examples/agents/hello `greet`, warm, {args.calls} calls x {args.rounds} rounds\n")
    print("| path | median ms | p99 ms | vs bench median |")
    print("|---|---:|---:|---:|")
    for key in ("floor", "bench", "batch", "mcp", "ping", "invalid"):
        delta = f"{med[key] - med['bench']:+.3f}" if key in ("batch", "mcp") else ""
        print(f"| {labels[key]} | {med[key]:.3f} | {p99[key]:.3f} | {delta} |")
    print()
    added = med["mcp"] - med["bench"]
    server = added - med["floor"]
    verdict = "within" if added <= 0.1 else "over"
    print(f"MCP adds {added:.3f} ms to the warm median, driver and pipe included ({verdict} the 0.1 ms target); "
          f"less the pipe-and-driver floor, the server itself adds {server:.3f} ms. "
          f"Over `batch` on the same pipe: {med['mcp'] - med['batch']:+.3f} ms.")


if __name__ == "__main__":
    sys.exit(main())
