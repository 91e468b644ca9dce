#!/usr/bin/env python3
"""An example agentplug agent: one class, and a main() that speaks the one-shot protocol.

agenthub runs it as `<venv>/bin/python agent.py '{"method": ..., "parameters": {...}}'`
and reads one JSON object from stdout. Logs go to stderr.
"""
import json
import sys


class HelloAgent:
    def greet(self, name, excited=False):
        return f"Hello, {name}" + ("!" if excited else ".")

    def word_count(self, text):
        return {"words": len(text.split()), "characters": len(text)}

    def add(self, a, b):
        return a + b


def main():
    try:
        request = json.loads(sys.argv[1])
        method = getattr(HelloAgent(), request["method"])
        result = method(**request.get("parameters", {}))
    except Exception as exc:  # report failures as agentplug agents do
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
