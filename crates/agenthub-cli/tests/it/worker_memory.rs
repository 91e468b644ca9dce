//! What long replies leave behind: an idle `batch` whose warm workers answered with long
//! outputs holds no more memory than one that did not.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agenthub_testkit::TestContext;
use serde_json::{Value as Json, json};

const BIG: &str = r#"
import json, sys

def main():
    request = json.loads(sys.argv[1])
    if request["method"] == "big":
        # Control bytes: the worst case for the worker's escaped reply (6 bytes each).
        sys.stdout.write("\x01" * (15 * 1024 * 1024) + "\n")
    print(json.dumps({"result": request["parameters"].get("n", 0)}))

if __name__ == "__main__":
    main()
"#;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_idle_batch_does_not_keep_what_long_replies_needed() {
    let ctx = TestContext::new();
    let methods = json!({
        "big": {"description": "prints 15 MiB", "parameters": {"n": {"type": "integer"}}},
        "small": {"description": "prints a little", "parameters": {"n": {"type": "integer"}}},
    });
    let manifest = json!({
        "name": "big", "version": "0.1.0", "description": "long replies", "author": "tests",
        "interface": {"methods": methods},
    });
    super::batch::install(&ctx, "big", &[("agent.yaml", manifest.to_string()), ("agent.py", BIG.to_owned())]);
    let mut child =
        super::batch::command(&ctx, &["batch", "conf/big", "--concurrency", "4", "--timeout", "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answer = |n: u64| {
        let mut line = Vec::new();
        stdout.read_until(b'\n', &mut line).unwrap();
        let answer: Json = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("answer {n}: {e}"));
        assert_eq!(answer["result"], n, "{}", String::from_utf8_lossy(&line[..line.len().min(300)]));
    };
    // A warm-up: the workers are up and the baseline is what they cost.
    for n in 0..4 {
        writeln!(stdin, "{}", json!({"method": "small", "parameters": {"n": n}})).unwrap();
    }
    stdin.flush().unwrap();
    (0..4).for_each(&mut answer);
    let baseline = rss_kib(pid);
    for n in 0..8 {
        writeln!(stdin, "{}", json!({"method": "big", "parameters": {"n": n}})).unwrap();
    }
    stdin.flush().unwrap();
    (0..8).for_each(&mut answer);
    // Idle again: what the replies needed is given back (within a bound, for the allocator).
    let started = Instant::now();
    let idle = loop {
        let now = rss_kib(pid);
        if now < baseline + 64 * 1024 || started.elapsed() > Duration::from_secs(5) {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        idle < baseline + 64 * 1024,
        "an idle batch holds {} MiB more after eight 15 MiB replies than before them",
        (idle - baseline) / 1024
    );
}
