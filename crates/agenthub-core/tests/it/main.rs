//! Integration tests of agenthub-core: hostile and malformed input.

mod hostile;
