//! Integration tests of the environment backends with the real uv, pip and virtualenv.

mod hostile;
mod manager;
