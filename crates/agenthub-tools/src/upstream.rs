//! The user's MCP servers (`--tools-from FILE`): agenthub is their client.
