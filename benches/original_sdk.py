#!/usr/bin/env python3
"""Benchmark the original agenthub-sdk (`agenthub`) load_agent + method call
(benches/python_api.py runs it beside ours).

Run with the venv that has agenthub-sdk installed
(`python3 -m venv V && V/bin/pip install agenthub-sdk 'mcp<2'`), e.g.:
  V/bin/python benches/original_sdk.py --agent-dir DIR --home TMP_HOME --calls 20

How it works:
  * The original only finds agents at $HOME/.agenthub/agents/<ns>/<name>
    (LocalStorage uses Path.home()), so we point HOME at a temp dir (--home)
    and copy --agent-dir there as <ns>/<name> (ns = parent dir name,
    name = dir name; the manifest `name:` must equal the dir name, since
    the runtime looks the agent up again by manifest name).
  * The runtime insists on <agent>/.venv; it auto-creates it with `uv` only if
    the agent has requirements.txt / pyproject.toml / installation.commands,
    so an empty requirements.txt is added to the copy if none exists.
  * One warm-up call (which creates the .venv) is excluded from timing.
Prints JSON: {"median_ms", "p99_ms", "import_ms", ...}.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# This script's directory holds benches/mcp.py, which must not shadow the `mcp` package the
# original imports.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def percentile(values, pct):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(pct / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def measure_import_ms(home, repeats):
    code = (
        "import time; t=time.perf_counter(); import agenthub; "
        "print((time.perf_counter()-t)*1000)"
    )
    env = dict(os.environ, HOME=home)
    vals = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True,
            check=True,
        ).stdout.strip().splitlines()[-1]
        vals.append(float(out))
    return statistics.median(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent-dir", required=True)
    ap.add_argument("--home", required=True,
                    help="temporary HOME (agents go to HOME/.agenthub/agents)")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--method", default="greet")
    ap.add_argument("--kwargs", default='{"name": "x"}', help="JSON kwargs")
    ap.add_argument("--import-repeats", type=int, default=5)
    ap.add_argument("--quiet-logs", action="store_true",
                    help="logging.disable() after import (the original logs "
                         "INFO lines via rich to stderr on every call)")
    ap.add_argument("--fresh", action="store_true",
                    help="re-copy the agent (drops its .venv) before running")
    args = ap.parse_args()

    agent_dir = Path(args.agent_dir).resolve()
    ns, name = agent_dir.parent.name, agent_dir.name
    home = str(Path(args.home).resolve())
    os.environ["HOME"] = home  # must be set before agenthub is imported

    dest = Path(home) / ".agenthub" / "agents" / ns / name
    if args.fresh and (dest.exists() or dest.is_symlink()):
        if dest.is_symlink():
            dest.unlink()
        else:
            shutil.rmtree(dest)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(agent_dir, dest, ignore=shutil.ignore_patterns(".venv"))
    if not any((dest / f).exists() for f in ("requirements.txt", "pyproject.toml")):
        (dest / "requirements.txt").write_text("")

    import_ms = measure_import_ms(home, args.import_repeats)

    import agenthub  # noqa: E402

    if args.quiet_logs:
        import logging
        logging.disable(logging.CRITICAL)

    t0 = time.perf_counter()
    agent = agenthub.load_agent(f"{ns}/{name}")
    load_ms = (time.perf_counter() - t0) * 1000

    kwargs = json.loads(args.kwargs)
    method = getattr(agent, args.method)
    t0 = time.perf_counter()
    first = method(**kwargs)  # warm-up: may create .venv via uv
    first_ms = (time.perf_counter() - t0) * 1000
    if not isinstance(first, dict) or "error" in first:
        print(json.dumps({"error": "warm-up call failed", "result": repr(first)}))
        sys.exit(1)

    times = []
    last = None
    for _ in range(args.calls):
        t0 = time.perf_counter()
        last = method(**kwargs)
        times.append((time.perf_counter() - t0) * 1000)

    print(json.dumps({
        "median_ms": round(statistics.median(times), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "import_ms": round(import_ms, 3),
        "load_agent_ms": round(load_ms, 3),
        "first_call_ms": round(first_ms, 3),
        "calls": args.calls,
        "agenthub_sdk_version": __import__("importlib.metadata").metadata.version("agenthub-sdk"),
        "last_result": repr(last),
    }))


if __name__ == "__main__":
    main()
