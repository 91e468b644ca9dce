//! Integration tests of agenthub-tools.

mod upstream;
