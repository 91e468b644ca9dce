"""A real MCP client (the `mcp` package from PyPI, 1.x or 2.x) against `agenthub mcp serve`.

    python mcp_client.py BINARY HOME AGENT MODE

MODE: `session` (ClientSession over stdio_client with the initialize handshake, in 1.x and
2.x), `auto` (2.x's Client: probes server/discover first) or `legacy` (2.x's Client forced
to the initialize handshake). Lists the tools, calls `greet` and `echo`, and prints one JSON
object with what it saw.
"""
import asyncio
import importlib.metadata
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def dump(model):
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def exercise(call, list_tools):
    tools = dump(await list_tools())["tools"]
    greet = dump(await call("greet", {"name": "MCP"}))
    echo = dump(await call("echo", {"text": "hi", "count": 2}))
    bad = dump(await call("add", {"a": "not a number", "b": 1}))
    return {"tools": tools, "greet": greet, "echo": echo, "bad": bad}


async def main():
    binary, home, agent, mode = sys.argv[1:5]
    env = {"AGENTHUB_HOME": home, "AGENTHUB_LOG_LEVEL": "WARN", "PATH": os.environ.get("PATH", "")}
    params = StdioServerParameters(command=binary, args=["mcp", "serve", agent], env=env)
    out = {"mcp_version": importlib.metadata.version("mcp"), "mode": mode}
    if mode == "session":
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                init = await session.initialize()
                out["protocol_version"] = dump(init)["protocolVersion"]
                out.update(await exercise(session.call_tool, session.list_tools))
    else:
        from mcp import Client

        async with Client(params, mode=mode) as client:
            out.update(await exercise(client.call_tool, client.list_tools))
            session = client.session
            discovered = session.discover_result
            initialized = session.initialize_result
            out["lifecycle"] = "discover" if discovered is not None else "initialize"
            if initialized is not None:
                out["protocol_version"] = dump(initialized)["protocolVersion"]
            if discovered is not None:
                out["supported_versions"] = dump(discovered)["supportedVersions"]
    print(json.dumps(out))


asyncio.run(main())
