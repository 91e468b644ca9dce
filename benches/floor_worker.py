#!/usr/bin/env python3
"""The floor of a warm call: a bare Python worker on a pipe, nothing agenthub does.

    <venv>/bin/python floor_worker.py <agent_dir>

Imports the agent's `agent.py` once, makes one instance of the class that has the
methods, says `ready`, then for each line on stdin: `json.loads` it
(`{"method": ..., "parameters": {...}}`), calls the method, and writes
`json.dumps({"result": ...})` and a newline to stdout. benches/modes.py drives it from
Python; what agenthub adds to a warm call is measured against this loop.
"""
import importlib
import inspect
import json
import os
import sys


def main():
    agent_dir = os.path.abspath(sys.argv[1])
    os.chdir(agent_dir)
    sys.path.insert(0, agent_dir)
    module = importlib.import_module("agent")
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    instances = {}
    read, write, flush = sys.stdin.buffer.readline, sys.stdout.buffer.write, sys.stdout.buffer.flush
    loads, dumps = json.loads, json.dumps
    write(b"ready\n")
    flush()
    while True:
        line = read()
        if not line:
            return
        request = loads(line)
        name = request["method"]
        bound = instances.get(name)
        if bound is None:  # first call of a method: find the class that has it
            owner = next(c for c in classes if callable(getattr(c, name, None)))
            bound = instances[name] = getattr(owner(), name)
        write(dumps({"result": bound(**request.get("parameters", {}))}).encode() + b"\n")
        flush()


if __name__ == "__main__":
    main()
