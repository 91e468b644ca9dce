//! From a call's policy (core's [`SandboxPolicy`]) to what the process layer enforces
//! ([`Sandbox`]): the paths an agent needs to run, its per-agent home, its environment,
//! and the egress proxy and loopback bridges its network namespace is served by.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use agenthub_core::{AgentRuntimeError, EnvPolicy, ExecutionResponse, SandboxMode, SandboxPolicy};
use agenthub_process::sandbox::{ListenerGuard, ListenerHook, Sandbox, SandboxNetwork};
use agenthub_sandbox_proxy::{EgressPolicy, Forward, Proxy};

/// The loopback port the egress proxy listens on inside every sandbox that has a network.
pub(crate) const PROXY_PORT: u16 = 3128;

/// What one call (or one warm worker) runs in.
#[derive(Debug, Clone)]
pub(crate) struct CallSandbox {
    /// The process layer's sandbox; `None` when the mode is `off`.
    pub(crate) sandbox: Option<Arc<Sandbox>>,
    /// Variables the sandbox sets (`HOME`, the proxy's).
    pub(crate) env: Vec<(OsString, OsString)>,
    /// In strict mode, the only caller variables that pass.
    pub(crate) env_only: Option<Vec<String>>,
    /// The proxies serving this sandbox's spawns, for what they refused.
    pub(crate) proxies: Arc<Mutex<Vec<Arc<Proxy>>>>,
    /// See [`Self::fingerprint`]; made once.
    fingerprint: String,
}

impl CallSandbox {
    /// No sandbox (mode `off`).
    pub(crate) fn off() -> Self {
        Self {
            sandbox: None,
            env: Vec::new(),
            env_only: None,
            proxies: Arc::default(),
            fingerprint: "off".to_owned(),
        }
    }

    /// What the proxies refused so far, oldest first.
    pub(crate) fn refused(&self) -> Vec<agenthub_sandbox_proxy::Refusal> {
        let proxies = self.proxies.lock().unwrap_or_else(PoisonError::into_inner);
        proxies.iter().flat_map(|p| p.refused()).collect()
    }

    /// A short fingerprint of what the sandbox allows, so warm workers started for one
    /// policy never serve a call with another.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The paths an agent needs to run: its directory, its environment, and the interpreter
/// the environment was made from (`home` in `pyvenv.cfg`, and where `bin/python` leads).
fn runtime_paths(agent_dir: &Path, venv: &Path, python: &Path) -> Vec<PathBuf> {
    let mut paths = vec![agent_dir.to_path_buf(), venv.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(python)
        && let Some(prefix) = real.parent().and_then(Path::parent)
    {
        paths.push(prefix.to_path_buf());
    }
    let cfg = venv.join("pyvenv.cfg");
    if let Ok(text) = agenthub_fs::read_bounded(&cfg, 64 * 1024) {
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim() == "home"
            {
                let home = PathBuf::from(value.trim());
                if let Some(prefix) = home.parent() {
                    paths.push(prefix.to_path_buf());
                    if let Ok(real) = std::fs::canonicalize(prefix) {
                        paths.push(real);
                    }
                }
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The agent's own home under the agenthub home: kept between calls (SDK caches), made on
/// first use. One per agent id (or per directory, for agents run by path).
pub(crate) fn agent_home(agenthub_home: &Path, agent_key: &str) -> Result<PathBuf, AgentRuntimeError> {
    let dir = agenthub_home.join("sandbox").join("home").join(home_name(agent_key));
    std::fs::create_dir_all(&dir).map_err(|e| AgentRuntimeError::Execution {
        message: format!("Cannot make the agent's sandbox home {}: {e}", dir.display()),
        return_code: None,
        signal: None,
        stderr: None,
    })?;
    // Never a symlink planted to point elsewhere.
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| AgentRuntimeError::Execution {
        message: format!("Cannot read the agent's sandbox home {}: {e}", dir.display()),
        return_code: None,
        signal: None,
        stderr: None,
    })?;
    if !meta.is_dir() {
        return Err(AgentRuntimeError::Execution {
            message: format!("The agent's sandbox home {} is not a directory", dir.display()),
            return_code: None,
            signal: None,
            stderr: None,
        });
    }
    Ok(dir)
}

/// The directory name of the home of the agent `agent_key` (an id, or `path-<dir>`): the
/// key made readable (`acme_summarizer`), and a digest of the key itself, so that keys that
/// read alike (`a_b/c` and `a/b_c`, or two long paths with the same end) never share a home
/// (one agent would plant files, SDK configs or caches, for the other).
fn home_name(agent_key: &str) -> String {
    use sha2::Digest;
    let readable: String = agent_key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    let readable = if readable.len() > 64 { &readable[readable.len() - 64..] } else { &readable };
    let digest = sha2::Sha256::digest(agent_key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{readable}-{:016x}", u64::from_be_bytes(first))
}

/// Everything a call under `policy` runs in.
pub(crate) fn for_call(
    policy: &SandboxPolicy,
    agenthub_home: &Path,
    agent_key: &str,
    agent_dir: &Path,
    venv: &Path,
    python: &Path,
    tools: bool,
) -> Result<CallSandbox, AgentRuntimeError> {
    if policy.mode == SandboxMode::Off {
        return Ok(CallSandbox::off());
    }
    let home = agent_home(agenthub_home, agent_key)?;
    let mut read = runtime_paths(agent_dir, venv, python);
    read.extend(policy.read.iter().cloned());
    if policy.mode == SandboxMode::Default {
        // The original's convention: API keys for agents in `~/.agenthub/.env`, found by
        // `load_dotenv()` walking up from an installed agent. Default mode passes the
        // caller's environment anyway; the file is readable, nothing else of the home is.
        let dotenv = agenthub_home.join(".env");
        if std::fs::symlink_metadata(&dotenv).is_ok_and(|m| m.is_file()) {
            read.push(dotenv);
        }
    }
    let mut write = vec![home.clone()];
    write.extend(policy.write.iter().cloned());
    let mut env: Vec<(OsString, OsString)> = vec![("HOME".into(), home.into_os_string())];
    let net = &policy.network;
    let proxied = net.public || !net.hosts.is_empty();
    let mut ports = Vec::new();
    if proxied {
        ports.push(PROXY_PORT);
        let url: OsString = format!("http://127.0.0.1:{PROXY_PORT}").into();
        // Not ALL_PROXY: clients read it as a SOCKS proxy and some (httpx) pay for it at
        // every client made.
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push((name.into(), url.clone()));
        }
        let no_proxy: OsString = "localhost,127.0.0.1,::1".into();
        env.push(("NO_PROXY".into(), no_proxy.clone()));
        env.push(("no_proxy".into(), no_proxy));
    }
    // The call's tools are on the original's port; a declared `localhost:8000` does not
    // bridge to the host when the call has tools.
    if tools {
        ports.push(crate::tools::TOOL_PORT);
    }
    ports.extend(
        net.loopback_ports
            .iter()
            .copied()
            .filter(|&p| p != PROXY_PORT && !(tools && p == crate::tools::TOOL_PORT)),
    );
    let proxies: Arc<Mutex<Vec<Arc<Proxy>>>> = Arc::default();
    let network =
        if ports.is_empty() { SandboxNetwork::Isolated } else { SandboxNetwork::IsolatedWith(ports) };
    let egress = EgressPolicy { public: net.public, hosts: net.hosts.clone() };
    let slot = Arc::clone(&proxies);
    let hook = ListenerHook(Arc::new(move |listeners| serve(listeners, proxied, &egress, &slot)));
    let env_only = match &policy.env {
        EnvPolicy::Inherit => None,
        EnvPolicy::Only(names) => Some(names.clone()),
    };
    let sandbox = Sandbox {
        read,
        write,
        network,
        require_all: policy.mode == SandboxMode::Strict,
        host_tmp: false,
        on_listeners: Some(hook),
    };
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{:?}|{:?}|{:?}|{}|{:?}|{env_only:?}",
            sandbox.read, sandbox.write, sandbox.network, sandbox.require_all, env
        );
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(12).fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
    };
    Ok(CallSandbox { sandbox: Some(Arc::new(sandbox)), env, env_only, proxies, fingerprint })
}

/// Serves one spawn's listeners: the proxy on [`PROXY_PORT`], a bridge to the host's
/// loopback on every other port.
fn serve(
    listeners: Vec<(u16, std::net::TcpListener)>,
    proxied: bool,
    egress: &EgressPolicy,
    slot: &Arc<Mutex<Vec<Arc<Proxy>>>>,
) -> ListenerGuard {
    let mut guards: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for (port, listener) in listeners {
        if proxied && port == PROXY_PORT {
            match Proxy::serve(listener, egress.clone()) {
                Ok(proxy) => {
                    let proxy = Arc::new(proxy);
                    let mut all = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    // Keep the last few spawns' proxies only (a warm pool restarts workers).
                    if all.len() >= 8 {
                        all.remove(0);
                    }
                    all.push(Arc::clone(&proxy));
                    guards.push(Box::new(proxy));
                }
                Err(e) => tracing::warn!(error = %e, "cannot serve the sandbox's egress proxy"),
            }
        } else {
            match Forward::serve(listener, SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
                Ok(forward) => guards.push(Box::new(forward)),
                Err(e) => tracing::warn!(error = %e, port, "cannot bridge a loopback port into the sandbox"),
            }
        }
    }
    Box::new(guards)
}

/// When a sandboxed call failed in a way the sandbox explains (the proxy refused a host, a
/// path outside what it may reach was denied, a client ignored the proxy), its error gets a
/// suggestion that names the sandbox and the grant that would allow it.
pub(crate) fn explain_denial(response: &mut ExecutionResponse, boxed: &CallSandbox) {
    if boxed.sandbox.is_none() {
        return;
    }
    let Err(error) = &response.outcome else { return };
    let text = format!("{error}\n{}", error.stderr().unwrap_or_default());
    let Some(hint) = denial_hint(&text, &boxed.refused()) else { return };
    let Err(error) = std::mem::replace(&mut response.outcome, Ok(serde_json::Value::Null)) else { return };
    response.outcome = Err(AgentRuntimeError::Sandboxed { error: Box::new(error), hint });
}

/// The hint for a failure whose message and stderr are `text`.
fn denial_hint(text: &str, refused: &[agenthub_sandbox_proxy::Refusal]) -> Option<String> {
    if let Some(last) = refused.last() {
        let grants: Vec<String> = {
            let mut g: Vec<String> = refused.iter().map(agenthub_sandbox_proxy::Refusal::grant).collect();
            g.dedup();
            g
        };
        return Some(format!(
            "The sandbox refused {}:{} ({}). Allow it for this call with `{}`, for this agent under \
             `grants:` in config.yaml, or declare it under `permissions: network:` in agent.yaml",
            last.host,
            last.port,
            last.reason,
            grants.iter().map(|g| format!("--allow-net {g}")).collect::<Vec<_>>().join(" ")
        ));
    }
    for marker in ["Permission denied: '", "Operation not permitted: '", "Read-only file system: '"] {
        if let Some(at) = text.find(marker) {
            let rest = &text[at + marker.len()..];
            let path = rest.split('\'').next().unwrap_or_default();
            if !path.is_empty() && path.len() < 4096 {
                return Some(format!(
                    "The sandbox lets an agent read only its own directory, its environment and system files, \
                     and write only its home and TMPDIR: `{path}` is outside. Allow it with `--allow-read {path}` \
                     (or `--allow-write {path}`), under `grants:` in config.yaml, or run with `--sandbox off`"
                ));
            }
        }
    }
    for marker in
        ["Network is unreachable", "Temporary failure in name resolution", "Name or service not known"]
    {
        if text.contains(marker) {
            return Some(
                "The sandbox has no direct network: agents reach hosts through agenthub's proxy (HTTPS_PROXY is \
                 set), and a client that ignores the proxy variables fails. Use a client that honours them, or \
                 run with `--sandbox off`"
                    .to_owned(),
            );
        }
    }
    None
}

/// One line saying how calls run under `config` on this machine: the mode and the layers
/// active (`info`, and `-v` once per process).
pub fn sandbox_summary(config: &agenthub_core::Config) -> String {
    if config.runtime.target == agenthub_core::ExecutionTarget::Ray {
        return "not sandboxed by agenthub: the target is Ray (the cluster runs the agent)".to_owned();
    }
    let mode = config.runtime.sandbox_mode;
    if mode == SandboxMode::Off {
        return "off: agents run with all of your rights".to_owned();
    }
    let layers = agenthub_process::sandbox::probe();
    let mut active = Vec::new();
    if layers.namespaces {
        active.push("namespaces (PID, mount, network, IPC, user)".to_owned());
        active.push("egress proxy".to_owned());
    }
    if let Some(abi) = layers.landlock_abi {
        active.push(format!("Landlock ABI {abi}"));
    }
    if layers.seccomp {
        active.push("seccomp".to_owned());
    }
    let missing = layers.missing().map(|m| format!("; missing: {m}")).unwrap_or_default();
    let verdict =
        if mode == SandboxMode::Strict && layers.missing().is_some() { ", refuses calls here" } else { "" };
    format!("{mode}{verdict}: {}{missing}", active.join(", "))
}

/// Says [`sandbox_summary`] once per process as a debug record (the CLI says it under `-v`).
pub(crate) fn log_summary_once(config: &agenthub_core::Config) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| tracing::debug!("sandbox: {}", sandbox_summary(config)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_of_keys_that_read_alike_differ() {
        assert_ne!(home_name("a_b/c"), home_name("a/b_c"));
        assert!(home_name("acme/summarizer").starts_with("acme_summarizer-"));
        let long = |end: &str| format!("path-/{}/{end}", "x".repeat(100));
        assert_ne!(home_name(&long("a/agent")), home_name(&long("a_agent")));
        assert!(home_name(&long("a/agent")).len() <= 64 + 17);
        assert_eq!(home_name("acme/summarizer"), home_name("acme/summarizer"));
    }

    #[test]
    fn a_denied_path_names_the_grant() {
        let hint =
            denial_hint("PermissionError: [Errno 13] Permission denied: '/home/u/.ssh/id'", &[]).unwrap();
        assert!(hint.contains("--allow-read /home/u/.ssh/id"), "{hint}");
        assert!(hint.contains("sandbox"));
        assert!(denial_hint("ValueError: bad input", &[]).is_none());
        let net = denial_hint("OSError: [Errno 101] Network is unreachable", &[]).unwrap();
        assert!(net.contains("HTTPS_PROXY"), "{net}");
    }
}
