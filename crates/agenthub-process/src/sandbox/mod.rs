//! The sandbox every agent call runs in (issue 16; `docs/design/sandbox.md`).
//!
//! Layers, each optional on a given kernel and each reported by [`probe`]:
//!
//! 1. **Namespaces**: a user namespace (the caller's uid mapped to itself), and in it new
//!    PID, mount, IPC and (unless the network is the host's) network namespaces. The agent
//!    runs as PID 2 under a tiny init (PID 1) that forwards signals and reaps; when the init
//!    dies, the kernel kills everything else in the namespace. The init is bound to an
//!    outer waiter (the process the supervisor sees) with `PR_SET_PDEATHSIG`, and the waiter
//!    to the runtime, so a runtime killed with SIGKILL takes the whole tree with it. The
//!    mount namespace gets a fresh `/proc` (only the sandbox's processes), a private tmpfs
//!    at `/tmp` (the call's `TMPDIR`; paths the call needs that lived under `/tmp` are bound
//!    back into it), an empty tmpfs over `/run` (the host's service sockets: a unix socket
//!    is reached by its path, which Landlock does not guard; what the call needs there is
//!    bound back) and a private tmpfs at `/dev/shm`.
//! 2. **Landlock** (pinned at ABI 6, best effort down to 1): read and execute only the
//!    paths in [`Sandbox::read`] plus the system's libraries, certificates, time zone and
//!    locale data; write only [`Sandbox::write`], the private tmpfs and `/dev/null`. With
//!    ABI 6, signals and abstract unix sockets are scoped to the sandbox.
//! 3. **seccomp**: `ptrace`, `process_vm_*`, `bpf`, `mount`, `umount2`, `pivot_root`,
//!    `chroot`, `unshare`, `setns`, namespace flags to `clone`, `keyctl` and friends,
//!    `io_uring_*`, `kexec_*`, `perf_event_open`, `open_by_handle_at`, module loading,
//!    `userfaultfd`, and the `TIOCSTI`/`TIOCLINUX` ioctls fail with `EPERM`; `clone3` fails
//!    with `ENOSYS` (so libc falls back to `clone`, whose flags can be checked); x32
//!    system calls fail with `ENOSYS`.
//! 4. No capabilities after `exec` (the bounding set is emptied) and `no_new_privs`.
//!
//! Everything after `fork` is plain system calls on data prepared before it: nothing
//! allocates or takes a lock between `fork` and `exec`.

mod child;
mod probe;

use std::ffi::CString;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "std")]
pub use probe::trial;
pub use probe::{Layers, probe};

use crate::ProcessError;

/// How a child is sandboxed. See the module documentation for what each layer does.
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    /// Paths (files or directories) the child may read and execute beneath, beyond the
    /// system's own (see [`system_read_paths`]). Missing ones are skipped.
    pub read: Vec<PathBuf>,
    /// Paths it may also write beneath (and read). Missing ones are skipped.
    pub write: Vec<PathBuf>,
    /// Its network.
    pub network: SandboxNetwork,
    /// Refuse to start when a layer is missing on this kernel (strict mode), instead of
    /// running with the layers there are.
    pub require_all: bool,
    /// Keep the host's `/tmp` in view (read-only unless a write rule covers it) instead of
    /// a private tmpfs over it, for programs handed paths there (an installer's
    /// `--find-links /tmp/wheels`); `TMPDIR` is then a fresh directory on the host, removed
    /// when the spawn's handle drops. Environment builds, which read everywhere anyway, use
    /// it; agents never do.
    pub host_tmp: bool,
    /// Called once per spawn, before the child's program runs, with the listening sockets
    /// made inside an isolated network namespace (see [`SandboxNetwork::Isolated`]).
    pub on_listeners: Option<ListenerHook>,
}

/// What network a sandboxed child has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// The host's network (environment builds, which need the package index).
    Host,
    /// A network namespace of its own with only loopback. Each port here gets a listening
    /// socket on `127.0.0.1` inside it, handed to [`Sandbox::on_listeners`]: an egress proxy
    /// or a bridge serves them from outside.
    #[default]
    Isolated,
    /// As `Isolated`, with listeners on these loopback ports.
    IsolatedWith(Vec<u16>),
}

impl SandboxNetwork {
    /// The loopback ports that get listeners inside the namespace.
    pub fn ports(&self) -> &[u16] {
        match self {
            Self::IsolatedWith(ports) => ports,
            Self::Host | Self::Isolated => &[],
        }
    }

    fn isolated(&self) -> bool {
        !matches!(self, Self::Host)
    }
}

/// What a [`ListenerHook`] returns: whatever serves the listeners (a proxy's handle), held
/// as long as the child runs and dropped when it has been reaped.
pub type ListenerGuard = Box<dyn std::any::Any + Send>;

/// What a [`ListenerHook`] calls with the listeners (port, listener).
pub type ListenerFn = dyn Fn(Vec<(u16, TcpListener)>) -> ListenerGuard + Send + Sync;

/// The callback that receives a sandbox's loopback listeners (port, listener).
#[derive(Clone)]
pub struct ListenerHook(pub Arc<ListenerFn>);

impl std::fmt::Debug for ListenerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerHook")
    }
}

/// The system paths every sandboxed child may read: libraries, executables, certificates,
/// time zone and locale data, name service files. Not `/etc` as a whole, not `/home`,
/// `/root`, `/var` or `/tmp`.
pub fn system_read_paths() -> &'static [&'static str] {
    &[
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/opt/python",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/pki",
        "/etc/crypto-policies",
        "/etc/localtime",
        "/etc/timezone",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/etc/passwd",
        "/etc/group",
        "/etc/mime.types",
        "/etc/os-release",
        "/etc/alternatives",
        "/etc/python3",
        "/etc/python3.11",
        "/etc/python3.12",
        "/etc/python3.13",
        "/sys/devices/system/cpu",
        "/dev/urandom",
        "/dev/random",
        "/dev/zero",
    ]
}

/// Set when the kernel refused the namespaces once: later spawns in this process go
/// straight to the layers that remain.
static NAMESPACES_REFUSED: AtomicBool = AtomicBool::new(false);

/// Everything the child needs, made before `fork`.
pub(crate) struct Prepared {
    namespaces: bool,
    /// A private tmpfs at `/tmp` (namespaces, and not [`Sandbox::host_tmp`]).
    private_tmp: bool,
    isolate_net: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// The Landlock ruleset (rules for static paths added), when Landlock is there.
    ruleset: Option<OwnedFd>,
    /// Access masks for the rules added in the child (after its mounts).
    read_access: u64,
    write_access: u64,
    /// `O_PATH` descriptors of paths under `/tmp` to bind back over the private tmpfs,
    /// with the directories to make first and the mount point.
    binds: Vec<Bind>,
    /// Cover `/run` with an empty tmpfs too (with a private `/tmp`, when `/run` is a
    /// directory): it holds the host's service sockets (Docker's, D-Bus's, systemd's, the
    /// user's runtime directory with ssh-agent, gpg-agent, podman), which Landlock does not
    /// guard: connecting to a socket by its path is no file access it controls.
    cover_run: bool,
    /// What is bound back over the `/run` tmpfs, as [`Prepared::binds`] for `/tmp` (say
    /// `/etc/resolv.conf`'s target under `/run/systemd/resolve`).
    run_binds: Vec<Bind>,
    /// The user's home directory, covered with an empty tmpfs like `/run` (with a private
    /// `/tmp`): what the call needs under it (the agenthub home's parts, an interpreter
    /// under `~/.pyenv`, grants) is bound back, and nothing else of it is there, sockets
    /// included (`~/.ssh/agent.sock`, `~/.docker/run/docker.sock`).
    home: Option<(CString, Vec<Bind>)>,
    seccomp: Vec<seccompiler::BpfProgram>,
    /// The parent's end and the child's end of the socket the listeners come back on.
    listener_socket: Option<(OwnedFd, OwnedFd)>,
    ports: Vec<u16>,
    /// `cgroup.procs` files the child joins before it forks (so the whole tree is in them).
    cgroup_procs: Vec<CString>,
    /// This process's pid: the waiter exits when its parent is no longer this process.
    parent: libc::pid_t,
    last_cap: i32,
    /// The call's temporary directory on the host, when there is no mount namespace to
    /// give it a private tmpfs; removed when the spawn's handle drops.
    host_tmp: Option<tempfile::TempDir>,
}

pub(crate) struct Bind {
    /// Directories to create inside the tmpfs, parents first.
    mkdirs: Vec<CString>,
    target: CString,
    is_dir: bool,
}

impl Prepared {
    /// The call's `TMPDIR`: the private tmpfs at `/tmp` (or a directory in it when paths
    /// under `/tmp` are bound back, so that writing `/tmp` cannot reach them), or a host
    /// directory without a mount namespace.
    pub(crate) fn tmpdir(&self) -> PathBuf {
        match &self.host_tmp {
            Some(dir) => dir.path().to_path_buf(),
            None if self.binds.is_empty() => PathBuf::from("/tmp"),
            None => PathBuf::from("/tmp/.agenthub-tmp"),
        }
    }

    /// Whether the child gets the namespaces (and so a waiter and an init above the program).
    pub(crate) fn has_namespaces(&self) -> bool {
        self.namespaces
    }

    /// Takes the host temporary directory, to be kept until the call ends.
    pub(crate) fn take_host_tmp(&mut self) -> Option<tempfile::TempDir> {
        self.host_tmp.take()
    }

    /// Whether a spawn error may be the kernel refusing the namespaces (then the spawn is
    /// tried once more without them, unless every layer is required).
    pub(crate) fn refusal(&self, sandbox: &Sandbox, err: &std::io::Error) -> bool {
        self.namespaces
            && !sandbox.require_all
            && matches!(
                err.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::EINVAL | libc::ENOSPC | libc::EUSERS | libc::ENOSYS)
            )
    }

    /// Receives the listeners the child made inside its network namespace and hands them
    /// to the hook. Called after the spawn returned (the child sent them before its
    /// program started).
    pub(crate) fn deliver_listeners(
        &mut self,
        sandbox: &Sandbox,
    ) -> Result<Option<ListenerGuard>, ProcessError> {
        let Some((parent_end, child_end)) = self.listener_socket.take() else { return Ok(None) };
        drop(child_end);
        let fds = child::recv_fds(parent_end.as_raw_fd(), self.ports.len()).map_err(ProcessError::Io)?;
        if fds.len() != self.ports.len() {
            return Err(ProcessError::Sandbox("the sandbox did not hand back its loopback listeners".into()));
        }
        let listeners = self
            .ports
            .iter()
            .zip(fds)
            // SAFETY: each fd was just received over SCM_RIGHTS and is owned by nobody else.
            .map(|(&port, fd)| (port, TcpListener::from(unsafe { OwnedFd::from_raw_fd(fd) })))
            .collect();
        Ok(sandbox.on_listeners.as_ref().map(|hook| (hook.0)(listeners)))
    }
}

/// Prepares `sandbox` for one spawn. `cgroup_procs` are the call's cgroups, made ahead.
pub(crate) fn prepare(sandbox: &Sandbox, cgroup_procs: &[PathBuf]) -> Result<Prepared, ProcessError> {
    let layers = probe();
    let namespaces = layers.namespaces && !NAMESPACES_REFUSED.load(Ordering::Relaxed);
    if sandbox.require_all {
        if let Some(missing) = layers.missing() {
            return Err(ProcessError::Sandbox(missing));
        }
        if !namespaces {
            return Err(ProcessError::Sandbox(
                "this kernel refused the sandbox's namespaces on an earlier call".into(),
            ));
        }
    }
    // SAFETY: plain getters.
    let (uid, gid, parent) = unsafe { (libc::geteuid(), libc::getegid(), libc::getpid()) };
    let abi = layers.landlock_abi;
    let (read_access, write_access) = landlock_access(abi);
    let mut read: Vec<PathBuf> = system_read_paths().iter().map(PathBuf::from).collect();
    read.extend(sandbox.read.iter().cloned());
    let mut write = sandbox.write.clone();
    let private_tmp = namespaces && !sandbox.host_tmp;
    let host_tmp = if private_tmp {
        None
    } else {
        let dir = tempfile::Builder::new().prefix("agenthub-tmp-").tempdir().map_err(ProcessError::Io)?;
        write.push(dir.path().to_path_buf());
        Some(dir)
    };
    let ruleset = match abi {
        Some(abi) => Some(ruleset(abi, &read, &write).map_err(ProcessError::Sandbox)?),
        None => None,
    };
    // Every path the call reads or writes, resolved once for the three covers below.
    let resolved: Vec<PathBuf> = if private_tmp {
        read.iter().chain(&write).filter_map(|p| std::fs::canonicalize(p).ok()).collect()
    } else {
        Vec::new()
    };
    let binds = if private_tmp { binds_under(Path::new("/tmp"), &resolved) } else { Vec::new() };
    let cover_run = private_tmp && std::fs::symlink_metadata("/run").is_ok_and(|m| m.is_dir());
    let run_binds = if cover_run { binds_under(Path::new("/run"), &resolved) } else { Vec::new() };
    let home = if private_tmp { home_to_cover() } else { None };
    let home = home.map(|h| {
        let binds = binds_under(&h, &resolved);
        (cstring(&h), binds)
    });
    let home_binds = home.as_ref().map_or(0, |(_, b)| b.len());
    if binds.len().max(run_binds.len()).max(home_binds) > child::MAX_BINDS {
        return Err(ProcessError::Sandbox(format!(
            "at most {} separate paths under /tmp can be given to a sandbox",
            child::MAX_BINDS
        )));
    }
    if sandbox.network.ports().len() > 16 {
        return Err(ProcessError::Sandbox("at most 16 loopback ports can be bridged into a sandbox".into()));
    }
    let isolate_net = namespaces && sandbox.network.isolated();
    let ports = if isolate_net { sandbox.network.ports().to_vec() } else { Vec::new() };
    let listener_socket =
        if ports.is_empty() { None } else { Some(socket_pair().map_err(ProcessError::Io)?) };
    Ok(Prepared {
        namespaces,
        private_tmp,
        isolate_net,
        uid_map: format!("{uid} {uid} 1\n").into_bytes(),
        gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        ruleset,
        read_access,
        write_access,
        binds,
        cover_run,
        run_binds,
        home,
        seccomp: seccomp_programs().map_err(ProcessError::Sandbox)?,
        listener_socket,
        ports,
        cgroup_procs: cgroup_procs
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect(),
        parent,
        last_cap: last_cap(),
        host_tmp,
    })
}

/// The home directory to cover: this process's `HOME`, when it is an absolute directory
/// that is not `/`, not under `/tmp` or `/run` (covered already), and holds none of the
/// system paths every call reads.
fn home_to_cover() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    if !home.is_absolute() {
        return None;
    }
    let home = std::fs::canonicalize(home).ok()?;
    let covered = |root: &str| home.starts_with(root);
    if home == Path::new("/")
        || covered("/tmp")
        || covered("/run")
        || covered("/proc")
        || covered("/dev")
        || covered("/sys")
        || !std::fs::metadata(&home).is_ok_and(|m| m.is_dir())
        || system_read_paths().iter().any(|p| Path::new(p).starts_with(&home))
    {
        return None;
    }
    Some(home)
}

/// Whether a spawn now would get the sandbox's namespaces (the kernel has them and has not
/// refused them to this process).
pub fn namespaces_usable() -> bool {
    probe().namespaces && !NAMESPACES_REFUSED.load(Ordering::Relaxed)
}

/// Remembers that the kernel refused the namespaces (so the next spawn does not try).
pub(crate) fn namespaces_refused() {
    NAMESPACES_REFUSED.store(true, Ordering::Relaxed);
}

/// Installs the child side on `cmd`.
pub(crate) fn install(cmd: &mut std::process::Command, prepared: &Prepared) {
    child::install(cmd, prepared);
}

/// The Landlock access masks for read-only and read-write rules at `abi`.
fn landlock_access(abi: Option<i32>) -> (u64, u64) {
    use landlock::{Access, AccessFs};
    let Some(abi) = abi else { return (0, 0) };
    let abi = pinned(abi);
    (AccessFs::from_read(abi).bits(), AccessFs::from_all(abi).bits())
}

/// The ABI the rules are written for: the kernel's, at most 6.
fn pinned(abi: i32) -> landlock::ABI {
    use landlock::ABI;
    match abi {
        ..=1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}

/// Creates the ruleset with the static rules.
fn ruleset(abi: i32, read: &[PathBuf], write: &[PathBuf]) -> Result<OwnedFd, String> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope,
    };
    let abi_pinned = pinned(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi_pinned))
        .map_err(|e| format!("Landlock: {e}"))?;
    if abi >= 6 {
        ruleset =
            ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal).map_err(|e| format!("Landlock: {e}"))?;
    }
    let mut created = ruleset.create().map_err(|e| format!("Landlock: {e}"))?;
    let read_access = AccessFs::from_read(abi_pinned);
    let file_read = read_access & (AccessFs::ReadFile | AccessFs::Execute);
    for (paths, access) in [(read, read_access), (write, AccessFs::from_all(abi_pinned))] {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else { continue };
            let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
            // Directory-only rights on a file are an error: give files what files take.
            let access = if is_dir { access } else { access & (file_read | AccessFs::from_file(abi_pinned)) };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| format!("Landlock rule for {}: {e}", path.display()))?;
        }
    }
    // /dev/null is written by nearly everything.
    if let Ok(fd) = PathFd::new("/dev/null") {
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::ReadFile | AccessFs::WriteFile))
            .map_err(|e| format!("Landlock rule for /dev/null: {e}"))?;
    }
    Option::<OwnedFd>::from(created).ok_or_else(|| "Landlock: no ruleset was created".to_owned())
}

/// The paths under `tmp` (`/tmp`, `/run`) that must be bound back over the tmpfs that
/// covers it (outermost only; symlinks resolved, so a system file that leads there counts).
fn binds_under(tmp: &Path, resolved: &[PathBuf]) -> Vec<Bind> {
    let mut wanted: Vec<PathBuf> =
        resolved.iter().filter(|p| p.starts_with(tmp) && p.as_path() != tmp).cloned().collect();
    wanted.sort();
    wanted.dedup();
    let mut outermost: Vec<PathBuf> = Vec::new();
    for path in wanted {
        if !outermost.iter().any(|o| path.starts_with(o)) {
            outermost.push(path);
        }
    }
    let mut binds = Vec::new();
    for path in outermost {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let mut mkdirs = Vec::new();
        let mut current = tmp.to_path_buf();
        let rel = path.strip_prefix(tmp).unwrap_or(&path);
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            current.push(comp);
            if i + 1 < comps.len() || meta.is_dir() {
                mkdirs.push(cstring(&current));
            }
        }
        binds.push(Bind { mkdirs, target: cstring(&path), is_dir: meta.is_dir() });
    }
    binds
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is valid for two ints.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
        != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just made and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn last_cap() -> i32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// The seccomp programs: system calls that fail with `EPERM`, `clone3` with `ENOSYS`, and
/// (by hand: seccompiler has no range test) x32 system calls with `ENOSYS`.
fn seccomp_programs() -> Result<Vec<seccompiler::BpfProgram>, String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    use std::collections::BTreeMap;
    let arch = if cfg!(target_arch = "aarch64") {
        seccompiler::TargetArch::aarch64
    } else {
        seccompiler::TargetArch::x86_64
    };
    let err = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        deny.insert(nr, Vec::new());
    }
    let ns_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in ns_flags {
        let flag = u64::from(flag.cast_unsigned());
        let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
            .map_err(err)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    deny.insert(libc::SYS_clone, clone_rules);
    let mut ioctl_rules = Vec::new();
    for request in [libc::TIOCSTI, libc::TIOCLINUX] {
        let cond =
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request).map_err(err)?;
        ioctl_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    deny.insert(libc::SYS_ioctl, ioctl_rules);
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.cast_unsigned()),
        arch,
    )
    .map_err(err)?;
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, Vec::new());
    let enosys = SeccompFilter::new(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS.cast_unsigned()),
        arch,
    )
    .map_err(err)?;
    let mut programs =
        vec![BpfProgram::try_from(eperm).map_err(err)?, BpfProgram::try_from(enosys).map_err(err)?];
    if cfg!(target_arch = "x86_64") {
        programs.push(x32_guard());
    }
    Ok(programs)
}

/// `nr >= 0x40000000` (the x32 ABI's bit) fails with `ENOSYS`; everything else passes.
fn x32_guard() -> seccompiler::BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    vec![
        // seccomp_data.nr is at offset 0.
        sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        sock_filter { code: BPF_JGE_K, jt: 0, jf: 1, k: 0x4000_0000 },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::ENOSYS.cast_unsigned() },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    ]
}

fn denied_syscalls() -> Vec<i64> {
    let mut list = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_bpf,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_perf_event_open,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_userfaultfd,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_quotactl,
    ];
    list.sort_unstable();
    list.dedup();
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_programs_compile() {
        let programs = seccomp_programs().unwrap();
        assert!(programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn paths_under_tmp_are_bound_back_outermost_only() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        let resolved: Vec<PathBuf> = [inner.clone(), PathBuf::from("/usr"), dir.path().to_path_buf()]
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap())
            .collect();
        let binds = binds_under(Path::new("/tmp"), &resolved);
        assert_eq!(binds.len(), 1);
        assert_eq!(
            binds[0].target.to_str().unwrap(),
            std::fs::canonicalize(dir.path()).unwrap().to_str().unwrap()
        );
        assert!(binds[0].is_dir);
    }
}
