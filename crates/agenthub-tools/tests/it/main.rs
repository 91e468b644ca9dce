//! Integration tests of agenthub-tools.
