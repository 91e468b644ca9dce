//! Which sandbox layers this kernel offers this user.

use std::sync::OnceLock;

/// The layers available here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// User, PID, mount and network namespaces can be made by this user (as far as the
    /// kernel's settings say; a refusal at spawn is remembered and degrades the same way).
    pub namespaces: bool,
    /// The Landlock ABI version, `None` when Landlock is off or missing.
    pub landlock_abi: Option<i32>,
    /// seccomp filters can be installed.
    pub seccomp: bool,
    /// Why namespaces are off, with the fix, when they are.
    pub namespaces_reason: Option<&'static str>,
}

impl Layers {
    /// The first layer strict mode needs that is missing, said with its fix.
    pub fn missing(&self) -> Option<String> {
        if !self.namespaces {
            return Some(format!(
                "user namespaces are not available: {}",
                self.namespaces_reason.unwrap_or("the kernel refused them")
            ));
        }
        if self.landlock_abi.is_none() {
            return Some(
                "Landlock is not enabled in this kernel (Linux 5.13+ with `lsm=landlock,...` on its command line)"
                    .to_owned(),
            );
        }
        if !self.seccomp {
            return Some("seccomp filters are not available in this kernel".to_owned());
        }
        None
    }
}

/// The layers, read once per process from the kernel (a few `/proc/sys` files and one
/// Landlock system call; no process is started).
pub fn probe() -> Layers {
    static LAYERS: OnceLock<Layers> = OnceLock::new();
    *LAYERS.get_or_init(|| {
        let namespaces_reason = namespaces_reason();
        Layers {
            namespaces: namespaces_reason.is_none(),
            landlock_abi: landlock_abi(),
            seccomp: seccomp_available(),
            namespaces_reason,
        }
    })
}

#[cfg(feature = "std")]
/// Runs `/bin/true` in a full sandbox (every layer required): `Ok` when the layers work
/// together on this machine for this user, else why not. Takes a few milliseconds.
pub fn trial() -> Result<(), String> {
    let program = ["/usr/bin/true", "/bin/true"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(program) = program else { return Err("no /usr/bin/true to try the sandbox with".to_owned()) };
    let run = crate::ToolRun {
        deadline: std::time::Instant::now().checked_add(std::time::Duration::from_secs(10)),
        sandbox: Some(super::Sandbox { require_all: true, ..super::Sandbox::default() }),
        ..crate::ToolRun::new(program, "/")
    };
    match run.run() {
        Ok(crate::ToolOutcome::Succeeded(_)) => Ok(()),
        Ok(other) => Err(format!("a sandboxed {program} did not succeed: {other:?}")),
        Err(e) => Err(match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }),
    }
}

fn read_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn namespaces_reason() -> Option<&'static str> {
    if read_number("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Some("`user.max_user_namespaces` is 0 (raise it with sysctl)");
    }
    // SAFETY: geteuid is a plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if read_number("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
            return Some("`kernel.unprivileged_userns_clone` is 0 (set it to 1 with sysctl)");
        }
        if read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
            return Some(
                "AppArmor restricts unprivileged user namespaces (`sysctl kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor profile for agenthub)",
            );
        }
    }
    None
}

fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: the version query takes no pointer.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (abi >= 1).then(|| i32::try_from(abi).unwrap_or(i32::MAX))
}

fn seccomp_available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}
