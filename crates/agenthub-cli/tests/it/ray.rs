//! The Ray target against a real one-node Ray cluster, no mocks.
//!
//! The test re-runs itself inside network, PID and mount namespaces of its own
//! (`unshare --net --pid --fork --mount-proc`): loopback is the only interface, so the
//! cluster can bind and dial nothing else, and every process started in there (the
//! cluster, the drivers, the actors) dies with it, also when the test fails. The namespace
//! reaches no package index: the agents' requirements come from a wheelhouse prepared
//! outside (`PIP_NO_INDEX=1`, `PIP_FIND_LINKS`), as on an air-gapped cluster.
//! `scripts/ensure-ray` prepares the Ray virtual environment and the wheelhouse.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agenthub_testkit::TestContext;
use serde_json::{Value as Json, json};

use super::batch::{
    Run, batch_matches_exec_on, hello_cases, install, install_hello, request_lines, responses, run,
};

/// Set inside the namespace.
const INNER: &str = "AH_TEST_RAY_INNER";

/// The whole test, cluster start included.
const WHOLE: Duration = Duration::from_secs(1500);

/// One CLI command on the cluster (a new driver connects, actors start, maybe install).
const CALL: Duration = Duration::from_secs(300);

fn ray_python() -> PathBuf {
    PathBuf::from(std::env::var_os("AH_TEST_RAY_PYTHON").expect(
        "AH_TEST_RAY_PYTHON is not set: run the tests with scripts/test, which prepares a Python with \
         Ray and a wheelhouse (scripts/ensure-ray)",
    ))
}

fn wheelhouse() -> PathBuf {
    PathBuf::from(std::env::var_os("AH_TEST_RAY_WHEELHOUSE").expect("AH_TEST_RAY_WHEELHOUSE is not set"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_ray_target_on_a_real_cluster() {
    if std::env::var_os(INNER).is_some() {
        inside_the_namespace();
        return;
    }
    let (python, wheels) = (ray_python(), wheelhouse());
    assert!(python.exists(), "{} does not exist", python.display());
    agenthub_makes_the_drivers_python_when_none_is_named(&python);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--mount-proc", "--"])
        .arg(exe)
        .args(["ray::the_ray_target_on_a_real_cluster", "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env("AH_TEST_RAY_PYTHON", python)
        .env("AH_TEST_RAY_WHEELHOUSE", wheels)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs; the tests need root for namespaces");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > WHOLE {
            // Killing the namespace's first process kills everything in it.
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && text(&out.stdout).contains("test result: ok. 1 passed"),
        "inside the namespace:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Without `ray.python`, agenthub builds the driver's Python itself, once, with its own
/// environment machinery (outside the namespace: this needs the package index).
fn agenthub_makes_the_drivers_python_when_none_is_named(reference: &std::path::Path) {
    let version =
        Command::new(reference).args(["-c", "import ray; print(ray.__version__)"]).output().unwrap();
    let version = text(&version.stdout).trim().to_owned();
    let ctx = TestContext::new();
    let mut status = super::command(&ctx, &["ray", "status", "--ray-address", "127.0.0.1:1", "--json"]);
    status
        .env_remove("AGENTHUB_RAY_PYTHON")
        .env("AGENTHUB_RAY_VERSION", &version)
        .env("AGENTHUB_RAY_CONNECT_TIMEOUT", "10");
    let out = run(&mut status, Vec::new(), CALL);
    let v = json_of(&out);
    assert!(v["error"].as_str().unwrap_or_default().contains("Cannot reach the Ray cluster"), "{v}");
    let made = ctx.home().join(format!("tools/ray-{version}/.venv/bin/python"));
    let has = Command::new(&made).args(["-c", "import ray; print(ray.__version__)"]).output().unwrap();
    assert_eq!(text(&has.stdout).trim(), version, "{}", text(&has.stderr));
}

/// A one-node cluster with token authentication, stopped on drop.
struct Cluster {
    ray: PathBuf,
    dir: tempfile::TempDir,
    token: String,
}

impl Cluster {
    fn start() -> Self {
        let up = Command::new("ip").args(["link", "set", "lo", "up"]).output().expect("ip (iproute2) runs");
        assert!(up.status.success(), "ip link set lo up: {}", text(&up.stderr));
        let ray = ray_python().parent().unwrap().join("ray");
        let dir = tempfile::Builder::new().prefix("agenthub-ray-").tempdir().unwrap();
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes).unwrap();
        let token = u128::from_le_bytes(bytes).to_string();
        let cluster = Self { ray, dir, token };
        let out = cluster
            .command(&["start", "--head", "--port=6379", "--num-cpus=8", "--include-dashboard=false"])
            .args(["--disable-usage-stats", "--temp-dir"])
            .arg(cluster.dir.path().join("t"))
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", wheelhouse())
            .output()
            .unwrap();
        assert!(out.status.success(), "ray start: {}\n{}", text(&out.stdout), text(&out.stderr));
        cluster
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ray);
        cmd.args(args)
            .env("HOME", self.dir.path())
            .env("RAY_AUTH_MODE", "token")
            .env("RAY_AUTH_TOKEN", &self.token)
            .stdin(Stdio::null());
        cmd
    }

    /// What every agenthub command needs to reach the cluster.
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AGENTHUB_RAY_PYTHON", ray_python().display().to_string()),
            ("RAY_ADDRESS", "127.0.0.1:6379".to_owned()),
            ("RAY_AUTH_TOKEN", self.token.clone()),
            ("HOME", self.dir.path().display().to_string()),
        ]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command(&["stop", "--force"]).output();
    }
}

fn agenthub(ctx: &TestContext, cluster: &Cluster, args: &[&str]) -> Output {
    let mut cmd = super::command(ctx, args);
    cmd.envs(cluster.vars());
    run(&mut cmd, Vec::new(), CALL)
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", text(&out.stdout), text(&out.stderr)))
}

fn write_agent(ctx: &TestContext, name: &str, code: &str, requirements: Option<&str>) -> String {
    let manifest = format!(
        "name: {name}\nversion: 1.0.0\ndescription: t\nauthor: t\ninterface:\n  methods:\n    run:\n      \
         description: run it\n      parameters:\n        x: {{type: integer, required: false}}\n"
    );
    let mut files = vec![("agent.py", code.to_owned()), ("agent.yaml", manifest)];
    if let Some(requirements) = requirements {
        files.push(("requirements.txt", requirements.to_owned()));
    }
    install(ctx, name, &files);
    format!("conf/{name}")
}

const MAIN: &str = "import json, os, sys, time\n\
def main():\n    req = json.loads(sys.argv[1])\n    x = req['parameters'].get('x', 0)\n    BODY\n\
if __name__ == '__main__':\n    main()\n";

fn agent_code(body: &str) -> String {
    MAIN.replace("BODY", body)
}

fn inside_the_namespace() {
    let cluster = Cluster::start();
    let ctx = TestContext::new();
    let vars = cluster.vars();

    // Status: reachable, versions on both sides.
    let status = json_of(&agenthub(&ctx, &cluster, &["ray", "status", "--json"]));
    assert_eq!(status["nodes"], 1, "{status}");
    assert!(status["ray_version"].as_str().is_some_and(|v| !v.is_empty()), "{status}");
    assert_eq!(status["cluster_ray_version"], status["ray_version"], "{status}");
    assert_eq!(status["pools"], json!([]), "{status}");

    // The conformance call cases give the responses they give locally.
    install_hello(&ctx);
    let cases = hello_cases();
    let vars_ref: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    batch_matches_exec_on(
        &ctx,
        &Run { agent: "conf/hello", warm: true, cases: &cases, repeat: 1, flags: &[], vars: &vars_ref },
        &["--on", "ray"],
    );

    // A dependency-bearing agent gets its requirements on the cluster (from the wheelhouse).
    let deps = write_agent(
        &ctx,
        "deps",
        &agent_code("import six\n    print(json.dumps({'result': six.__version__}))"),
        Some("six==1.16.0\n"),
    );
    let out = agenthub(&ctx, &cluster, &["exec", "--on", "ray", &deps, "run", "--json"]);
    assert_eq!(json_of(&out)["result"], "1.16.0", "{}\n{}", text(&out.stdout), text(&out.stderr));

    // Each failure has its type.
    let sleeper = write_agent(
        &ctx,
        "sleeper",
        &agent_code("time.sleep(60)\n    print(json.dumps({'result': 1}))"),
        None,
    );
    let out = json_of(&agenthub(
        &ctx,
        &cluster,
        &["exec", "--on", "ray", &sleeper, "run", "--timeout", "3", "--json"],
    ));
    assert_eq!(out["error_type"], "TimeoutError", "{out}");
    let crasher = write_agent(&ctx, "crasher", &agent_code("os._exit(7)"), None);
    let out = json_of(&agenthub(&ctx, &cluster, &["exec", "--on", "ray", &crasher, "run", "--json"]));
    assert_eq!(out["error_type"], "ExecutionError", "{out}");
    assert!(out["error"].as_str().unwrap().contains("actor"), "{out}");
    let broken = write_agent(
        &ctx,
        "broken",
        &agent_code("print(json.dumps({'result': 1}))"),
        Some("agenthub-no-such-package-anywhere==1.0\n"),
    );
    let out = json_of(&agenthub(&ctx, &cluster, &["exec", "--on", "ray", &broken, "run", "--json"]));
    assert_eq!(out["error_type"], "EnvironmentError", "{out}");
    let mut unreachable =
        super::command(&ctx, &["exec", "--ray-address", "127.0.0.1:1", "conf/hello", "greet", "x", "--json"]);
    unreachable.envs(cluster.vars()).env("AGENTHUB_RAY_CONNECT_TIMEOUT", "15");
    let out = json_of(&run(&mut unreachable, Vec::new(), CALL));
    assert_eq!(out["error_type"], "ExecutionError", "{out}");
    assert!(out["error"].as_str().unwrap().contains("Cannot reach the Ray cluster"), "{out}");
    let mut no_ray = super::command(&ctx, &["exec", "--on", "ray", "conf/hello", "greet", "x", "--json"]);
    no_ray.envs(cluster.vars()).env("AGENTHUB_RAY_PYTHON", agenthub_testkit::real_python());
    let out = json_of(&run(&mut no_ray, Vec::new(), CALL));
    assert!(out["error"].as_str().unwrap().contains("cannot import ray"), "{out}");

    // 200 calls, 16 at a time, all answered and matched to their requests.
    let echo = write_agent(&ctx, "echo", &agent_code("print(json.dumps({'result': x * 2}))"), None);
    let requests: Vec<Json> =
        (0..200).map(|i| json!({"method": "run", "parameters": {"x": i}, "id": i})).collect();
    let mut batch = super::command(&ctx, &["batch", &echo, "--on", "ray", "--concurrency", "16"]);
    batch.envs(cluster.vars());
    let out = run(&mut batch, request_lines(&requests), CALL);
    let got = responses(&out);
    assert_eq!(got.len(), 200, "{}", text(&out.stderr));
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v["id"], json!(i), "{v}");
        assert_eq!(v["result"], json!(i * 2), "{v}");
    }
    assert_eq!(out.status.code(), Some(0));
    drop(cluster);
    assert_no_drivers();
}

/// No agenthub driver is left once the commands are done.
fn assert_no_drivers() {
    let started = Instant::now();
    while !agenthub_testkit::survivors("agenthub Ray driver").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "a Ray driver outlived its command");
        std::thread::sleep(Duration::from_millis(100));
    }
}
