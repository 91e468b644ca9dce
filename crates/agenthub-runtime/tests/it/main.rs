//! Integration tests of `AgentRuntime`: composition logic against mock backends, and the
//! real path with every environment backend and process backend.

mod cancel;
mod facade;
mod install;
mod mocked;
mod real;
mod warm;
