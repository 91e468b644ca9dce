//! The real path: real uv, pip or virtualenv, real Python, std and tokio processes.

use agenthub_core::{ParamType, Seconds};
use agenthub_runtime::{EnvBackendKind, ProcessBackendKind};
use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod, validate_runtime_interface};
use serde_json::{Map, Value as Json, json};

fn agent() -> TestAgent {
    TestAgent::new("real")
        .method(TestMethod::new("echo").param("text", ParamType::String, true).behaves(Behaviour::EchoParams))
        .method(TestMethod::new("raise").behaves(Behaviour::Raise("nope: broken".into())))
        .method(
            TestMethod::new("noise")
                .behaves(Behaviour::Noise { noise: "warming up".into(), value: json!(1) }),
        )
        .method(TestMethod::new("six").behaves(Behaviour::Return(json!("unused"))))
        .requirements_txt("six==1.16.0\n")
}

fn params(v: &Json) -> Map<String, Json> {
    v.as_object().unwrap().clone()
}

fn exercise(env: EnvBackendKind, process: ProcessBackendKind) {
    let ctx = TestContext::new();
    ctx.install(&agent());
    let rt = ctx.runtime_with_kinds(env, process);
    let call = |method: &str, p: Json| -> Json {
        let fut = rt.execute_agent("test/real", method, params(&p));
        let r = match process {
            ProcessBackendKind::Std => pollster::block_on(fut),
            ProcessBackendKind::Tokio => {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
            }
        };
        r.to_json()
    };
    let ok = call("echo", json!({"text": "naïve 🚀"}));
    assert_eq!(ok["result"], json!({"text": "naïve 🚀"}), "{ok}");
    // Known unless the call ended before the runtime's thread sampled it (a loaded machine)
    // and this test process's own high-water mark, far above the agent's, hides the agent's
    // in `wait4` (agenthub-process `Supervisor::peak_rss`; the CLI's spawner is small, and its
    // tests require the figure). When known, it is the agent's own.
    if let Some(peak) = ok["memory_usage_bytes"].as_u64() {
        assert!(peak > 1 << 20, "{ok}");
    }
    let err = call("raise", json!({}));
    assert_eq!(err["error_type"], "AgentError");
    assert_eq!(err["error"], "nope: broken");
    assert_eq!(err["return_code"], 1);
    let noisy = call("noise", json!({}));
    assert_eq!(noisy["stdout_noise"], "warming up");
    let marker = ctx.config().agents_root().join("test/real/.venv/agenthub-env.json");
    let marker: Json = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
    assert_eq!(marker["backend"], env.as_str());
    assert_eq!(marker["requirements"], json!(["six==1.16.0"]));
}

#[test]
fn uv_with_std_processes() {
    exercise(EnvBackendKind::Uv, ProcessBackendKind::Std);
}

#[test]
fn uv_with_tokio_processes() {
    exercise(EnvBackendKind::Uv, ProcessBackendKind::Tokio);
}

#[test]
fn pip_with_std_processes() {
    exercise(EnvBackendKind::Pip, ProcessBackendKind::Std);
}

#[test]
fn pip_with_tokio_processes() {
    exercise(EnvBackendKind::Pip, ProcessBackendKind::Tokio);
}

#[test]
fn virtualenv_with_std_processes() {
    exercise(EnvBackendKind::Virtualenv, ProcessBackendKind::Std);
}

#[test]
fn virtualenv_with_tokio_processes() {
    exercise(EnvBackendKind::Virtualenv, ProcessBackendKind::Tokio);
}

#[test]
fn the_runtime_passes_the_phase1_interface_check() {
    let ctx = TestContext::new();
    assert_eq!(validate_runtime_interface(&ctx.runtime()), Ok(()));
}

#[test]
fn info_and_list_describe_installed_agents() {
    let ctx = TestContext::new();
    ctx.install(&agent());
    ctx.install(&TestAgent::new("broken").in_namespace("zz"));
    let rt = ctx.runtime();
    let list = rt.list_agents();
    assert_eq!(list.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["test/real", "zz/broken"]);
    assert_eq!(list[0].methods, ["echo", "raise", "noise", "six"]);
    assert!(list[1].error.as_deref().unwrap().contains("interface.methods"));
    let info = rt.get_agent_info("test/real").unwrap();
    assert_eq!(info.id.as_deref(), Some("test/real"));
    assert!(info.environment.is_none());
    assert!(rt.validate_method("test/real", "echo").unwrap());
    assert!(!rt.validate_method("test/real", "zzz").unwrap());
}

#[test]
fn each_requirement_source_change_rebuilds_and_nothing_else_does() {
    let ctx = TestContext::new();
    let dir =
        ctx.install(&TestAgent::new("src").method(TestMethod::new("m").behaves(Behaviour::Return(json!(1)))));
    let rt = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Std);
    let key = || {
        let r = rt.execute_agent_blocking("test/src", "m", Map::new());
        assert_eq!(r.result(), Some(&json!(1)), "{}", r.to_json());
        agenthub_env::read_marker(&dir.join(".venv")).unwrap().key
    };
    let mut last = key();
    let mut step = |what: &str, change: &dyn Fn(), rebuilds: bool| {
        change();
        let now = key();
        assert_eq!(now != last, rebuilds, "{what}");
        last = now;
    };
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    step("unrelated file", &|| write("notes.txt", "x"), false);
    step("agent code", &|| write("agent.py", &std::fs::read_to_string(dir.join("agent.py")).unwrap()), false);
    let original = std::fs::read_to_string(dir.join("agent.yaml")).unwrap();
    step(
        "manifest dependencies",
        &|| {
            let mut manifest: serde_json::Value = serde_json::from_str(&original).unwrap();
            manifest["dependencies"] = json!(["six==1.15.0"]);
            write("agent.yaml", &manifest.to_string());
        },
        true,
    );
    step("manifest dependencies removed", &|| write("agent.yaml", &original), true);
    step("comment in requirements.txt", &|| write("requirements.txt", "# none yet\n"), false);
    step("requirements.txt", &|| write("requirements.txt", "six==1.16.0\n"), true);
    step("same requirements reordered", &|| write("requirements.txt", "\n# pinned\nsix==1.16.0\n"), false);
    step(
        "pyproject dependencies",
        &|| {
            write(
                "pyproject.toml",
                "[project]\nname='src'\nversion='0'\nrequires-python='>=3.8'\ndependencies=['six==1.15.0']\n",
            );
        },
        true,
    );
    let lock = || {
        let out = std::process::Command::new("uv")
            .args(["lock", "--quiet", "--directory"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    step("uv.lock appears", &lock, true);
    step(
        "uv.lock changes",
        &|| {
            write(
                "pyproject.toml",
                "[project]\nname='src'\nversion='0'\nrequires-python='>=3.8'\ndependencies=['six==1.16.0']\n",
            );
            lock();
        },
        true,
    );
    let manifest = std::fs::read_to_string(dir.join("agent.yaml")).unwrap();
    step(
        "manifest deps are shadowed by the lock",
        &|| {
            let mut manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
            manifest["dependencies"] = json!(["six"]);
            write("agent.yaml", &manifest.to_string());
        },
        false,
    );
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn two_hundred_concurrent_tokio_calls_are_correct_unmixed_and_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const BOUND: usize = 16;
    let ctx = TestContext::new().with_config(|c| c.runtime.max_concurrency = BOUND);
    ctx.install(
        &TestAgent::new("load").method(
            TestMethod::new("echo").param("i", ParamType::Integer, true).behaves(Behaviour::EchoParams),
        ),
    );
    let rt = Arc::new(ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Tokio));
    let tokio_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    tokio_rt.block_on(async {
        // Build the environment first: the load is on running, not on building.
        assert!(rt.execute_agent("test/load", "echo", params(&json!({"i": -1}))).await.is_success());
        let rss_before = vm_rss_kib();
        let done = Arc::new(AtomicBool::new(false));
        let peak_running = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (rt, done, peak) = (Arc::clone(&rt), Arc::clone(&done), Arc::clone(&peak_running));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(rt.processes().running_processes().len(), Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
        };
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let rt = Arc::clone(&rt);
                tokio::spawn(async move {
                    (i, rt.execute_agent("test/load", "echo", params(&json!({"i": i}))).await)
                })
            })
            .collect();
        for task in tasks {
            let (i, response) = task.await.unwrap();
            assert_eq!(response.result(), Some(&json!({"i": i})), "{}", response.to_json());
        }
        done.store(true, Ordering::Relaxed);
        watcher.await.unwrap();
        let peak = peak_running.load(Ordering::Relaxed);
        assert!(peak <= BOUND, "{peak} agents ran at once, bound {BOUND}");
        assert!(peak > 1, "the calls did not run concurrently");
        let growth_mib = vm_rss_kib().saturating_sub(rss_before) / 1024;
        assert!(growth_mib < 64, "runtime RSS grew by {growth_mib} MiB over 200 calls");
    });
}

#[test]
fn numpy_imports_and_computes_under_the_default_memory_cap() {
    let ctx = TestContext::new();
    let dir = ctx.install(
        &TestAgent::new("np")
            .method(TestMethod::new("m").behaves(Behaviour::Return(json!(null))))
            .requirements_txt("numpy\n"),
    );
    std::fs::write(
        dir.join("agent.py"),
        "import json, numpy as np\nm = np.ones((512, 512)) @ np.ones((512, 512))\nprint(json.dumps({'result': float(m[0, 0])}))\n",
    )
    .unwrap();
    assert_eq!(ctx.config().runtime.max_memory_usage, 1024);
    let r = ctx.runtime().execute_agent_blocking("test/np", "m", Map::new());
    assert_eq!(r.result(), Some(&json!(512.0)), "{}", r.to_json());
}

#[test]
fn the_blocking_api_works_with_the_tokio_backend_outside_a_tokio_runtime() {
    let ctx = TestContext::new();
    ctx.install(&agent());
    let rt = ctx.runtime_with_kinds(EnvBackendKind::Uv, ProcessBackendKind::Tokio);
    // No tokio runtime here: this used to panic ("there is no reactor running").
    let r = rt.execute_agent_blocking("test/real", "echo", params(&json!({"text": "blocking"})));
    assert_eq!(r.result(), Some(&json!({"text": "blocking"})), "{}", r.to_json());
}

#[test]
fn a_long_lived_runtime_clears_what_dead_runtimes_left_every_cleanup_interval() {
    let stale_record = |ctx: &TestContext| {
        // A record of a call made by a runtime that is gone (pid 1 is never ours, and a
        // pid beyond pid_max never runs): the sweep removes it without killing anything.
        let run = ctx.home().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let record = run.join("4194305-0-1");
        std::fs::write(&record, "4194305\n").unwrap();
        record
    };
    for (interval, swept) in [(0.0, false), (0.001, true), (3600.0, false)] {
        let ctx = TestContext::new().with_config(|c| c.runtime.cleanup_interval = Seconds::new(interval));
        ctx.install(&agent());
        let rt = ctx.runtime();
        let record = stale_record(&ctx);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let r = rt.execute_agent_blocking("test/real", "echo", params(&json!({"text": "x"})));
        assert!(r.is_success(), "{}", r.to_json());
        assert_eq!(!record.exists(), swept, "cleanup_interval {interval}");
    }
}
