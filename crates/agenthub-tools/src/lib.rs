//! Tools for agents: the methods of other agents and the tools of the user's MCP servers,
//! assigned to a call and served to it over MCP inside its sandbox.

pub mod upstream;
