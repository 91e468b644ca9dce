"""Times tool round trips (agent -> agenthub -> agent tool -> back) with the smallest MCP
client there is: one keep-alive HTTP connection and one Streamable HTTP session per
worker, so what is timed is agenthub's side, not a client library's."""

import http.client
import json
import os
import sys
import time

_STATE = {"conn": None, "session": None}


def _post(body):
    conn = _STATE["conn"]
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if _STATE["session"]:
        headers["Mcp-Session-Id"] = _STATE["session"]
    if os.environ.get("AGENTHUB_MCP_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["AGENTHUB_MCP_TOKEN"]
    conn.request("POST", "/mcp", json.dumps(body), headers)
    response = response_of(conn)
    return response


def response_of(conn):
    response = conn.getresponse()
    data = response.read().decode()
    message = None
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        for line in data.splitlines():
            if line.startswith("data:") and line[5:].strip():
                message = json.loads(line[5:])
    elif data.strip():
        message = json.loads(data)
    return response, message


def _session():
    if _STATE["conn"] is None:
        _STATE["conn"] = http.client.HTTPConnection("127.0.0.1", int(os.environ["AGENTHUB_MCP_PORT"]), timeout=30)
    if _STATE["session"] is None:
        response, _ = _post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "toolcaller", "version": "1"}}})
        _STATE["session"] = response.getheader("Mcp-Session-Id")
        _post({"jsonrpc": "2.0", "method": "notifications/initialized"})


def main():
    request = json.loads(sys.argv[1])
    if request["method"] == "nothing":
        print(json.dumps({"result": "ok"}))
        return
    _session()
    times = []
    for i in range(request["parameters"].get("n", 100)):
        started = time.perf_counter()
        _, message = _post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                            "params": {"name": "add", "arguments": {"a": i, "b": 1}}})
        times.append(time.perf_counter() - started)
        if message is None or message.get("result", {}).get("isError") or "error" in message:
            print(json.dumps({"error": "tool call failed: {}".format(message)}))
            sys.exit(1)
    print(json.dumps({"result": times}))


if __name__ == "__main__":
    main()
