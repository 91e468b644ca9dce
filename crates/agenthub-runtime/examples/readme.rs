//! The library example of the README, as a program that builds (a test checks that the
//! README shows this same code):
//!
//!     cargo run -p agenthub-runtime --example readme
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its answer")]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README: begin
    use std::time::Duration;

    use agenthub_runtime::{AgentRuntime, Call, Config};

    let runtime = AgentRuntime::builder(Config::load()?).build()?;
    let call = Call::new("./examples/agents/hello", "greet").param("name", "World");
    let response = runtime.call_blocking(call.timeout(Duration::from_secs(10)));
    match response.result() {
        Some(result) => println!("{result}"),
        None => eprintln!("{}", serde_json::to_string(&response)?),
    }
    // README: end
    Ok(())
}
