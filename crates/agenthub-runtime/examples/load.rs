//! Load benchmark: N concurrent calls of the example agent through one shared runtime.
//!
//!     cargo run --release -p agenthub-runtime --example load -- [CALLS] [CONCURRENCY] [std|tokio]
//!
//! Prints a Markdown table: calls/s, latency percentiles, and the runtime's own peak RSS
//! (`getrusage(RUSAGE_SELF)`, which excludes the agent processes).
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthub_runtime::{AgentRuntime, Config, ProcessBackendKind};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args.first().map_or(Ok(200), |a| a.parse())?;
    let concurrency: usize = args.get(1).map_or(Ok(16), |a| a.parse())?;
    let backend = match args.get(2).map_or("tokio", String::as_str) {
        "std" => ProcessBackendKind::Std,
        _ => ProcessBackendKind::Tokio,
    };
    let home = tempfile::tempdir()?;
    let agent = home.path().join("agents/bench/hello");
    std::fs::create_dir_all(&agent)?;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents/hello");
    for file in ["agent.yaml", "agent.py"] {
        std::fs::copy(example.join(file), agent.join(file))?;
    }
    let mut config = Config::from_sources(home.path().to_path_buf(), None, [])?;
    config.runtime.max_concurrency = concurrency;
    let runtime = Arc::new(AgentRuntime::with_backends(config, None, backend)?);
    let params = |i: usize| {
        let mut p = serde_json::Map::new();
        p.insert("name".into(), format!("caller {i}").into());
        p
    };
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Build the environment before timing: the load is on running, not on building.
    let warm = tokio_rt.block_on(runtime.execute_agent("bench/hello", "greet", params(0)));
    assert!(warm.is_success(), "{}", serde_json::to_string(&warm)?);

    let started = Instant::now();
    let mut latencies: Vec<Duration> = match backend {
        ProcessBackendKind::Tokio => tokio_rt.block_on(async {
            let tasks: Vec<_> = (0..calls)
                .map(|i| {
                    let runtime = Arc::clone(&runtime);
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let r = runtime.execute_agent("bench/hello", "greet", params(i)).await;
                        assert_eq!(r.result(), Some(&format!("Hello, caller {i}.").into()));
                        t.elapsed()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(calls);
            for task in tasks {
                out.push(task.await.expect("task"));
            }
            out
        }),
        ProcessBackendKind::Std => std::thread::scope(|s| {
            let per_thread = calls.div_ceil(concurrency);
            let handles: Vec<_> = (0..concurrency)
                .map(|t| {
                    let runtime = &runtime;
                    s.spawn(move || {
                        (t * per_thread..((t + 1) * per_thread).min(calls))
                            .map(|i| {
                                let started = Instant::now();
                                let r = runtime.execute_agent_blocking("bench/hello", "greet", params(i));
                                assert_eq!(r.result(), Some(&format!("Hello, caller {i}.").into()));
                                started.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        }),
    };
    let wall = started.elapsed();
    latencies.sort();
    let pct =
        |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!("| backend | calls | concurrency | wall s | calls/s | p50 ms | p99 ms | runtime peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {backend:?} | {calls} | {concurrency} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
        wall.as_secs_f64(),
        calls as f64 / wall.as_secs_f64(),
        pct(50),
        pct(99),
        peak_rss_mib()
    );
    Ok(())
}
