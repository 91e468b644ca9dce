//! The sandbox's code between `fork` and `exec`: three processes.
//!
//! - The **waiter** is the child `std::process` made (the pid the supervisor knows, the
//!   process-group leader). It joins the call's cgroups, makes the namespaces, maps its
//!   uid, brings loopback up and makes the listeners, then forks the init and waits for it,
//!   forwarding signals, and finally exits as the agent did (same code, or killed by the
//!   same signal). It exits when the runtime dies (`PR_SET_PDEATHSIG` with a catchable
//!   signal whose handler checks that the parent process, not just the spawning thread,
//!   is gone).
//! - The **init** is PID 1 of the new PID namespace. It mounts (`/tmp`, `/run`, `/proc`,
//!   `/dev/shm`), adds the Landlock rules for those mounts, forks the agent, forwards
//!   signals to it, reaps everything, and reports the agent's raw wait status to the waiter
//!   over a pipe. When it exits, the kernel kills what is left in the namespace.
//! - The **agent** drops every capability, sets `no_new_privs`, enters the Landlock domain
//!   and the seccomp filters, and returns to `std`, which `exec`s the program.
//!
//! Only system calls on prepared data run here: no allocation, no locks.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use super::Prepared;

/// The pid signals are forwarded to: the init (in the waiter), the agent (in the init).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// The runtime's pid (in the waiter).
static PARENT: AtomicI32 = AtomicI32::new(0);

/// The signal the waiter gets when its parent thread exits.
const PARENT_DEATH: libc::c_int = libc::SIGPWR;

/// Signals the waiter and the init pass on.
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

const MAX_LISTENERS: usize = 16;

/// How many separate paths under `/tmp` can be bound back over the private tmpfs.
pub(super) const MAX_BINDS: usize = 32;

/// What the child needs, copied out of [`Prepared`] (plain data and raw descriptors that
/// the parent keeps open until the spawn returns).
struct Plan {
    namespaces: bool,
    private_tmp: bool,
    isolate_net: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    ruleset: Option<RawFd>,
    read_access: u64,
    write_access: u64,
    /// Directories to make, the path, and whether it is a directory.
    binds: Vec<BindPlan>,
    cover_run: bool,
    run_binds: Vec<BindPlan>,
    home: Option<(std::ffi::CString, Vec<BindPlan>)>,
    tmp_write: std::ffi::CString,
    tmp_is_root: bool,
    seccomp: Vec<seccompiler::BpfProgram>,
    listener_socket: Option<RawFd>,
    ports: Vec<u16>,
    cgroup_procs: Vec<std::ffi::CString>,
    parent: libc::pid_t,
    last_cap: i32,
}

/// Directories to make, the path, and whether it is a directory.
type BindPlan = (Vec<std::ffi::CString>, std::ffi::CString, bool);

/// Installs the sandbox on `cmd` as a `pre_exec` hook.
pub(super) fn install(cmd: &mut std::process::Command, prepared: &Prepared) {
    use std::os::unix::process::CommandExt;
    let plan = Arc::new(Plan {
        namespaces: prepared.namespaces,
        private_tmp: prepared.private_tmp,
        isolate_net: prepared.isolate_net,
        uid_map: prepared.uid_map.clone(),
        gid_map: prepared.gid_map.clone(),
        ruleset: prepared.ruleset.as_ref().map(AsRawFd::as_raw_fd),
        read_access: prepared.read_access,
        write_access: prepared.write_access,
        binds: prepared.binds.iter().map(|b| (b.mkdirs.clone(), b.target.clone(), b.is_dir)).collect(),
        cover_run: prepared.cover_run,
        run_binds: prepared
            .run_binds
            .iter()
            .map(|b| (b.mkdirs.clone(), b.target.clone(), b.is_dir))
            .collect(),
        home: prepared.home.as_ref().map(|(root, binds)| {
            (root.clone(), binds.iter().map(|b| (b.mkdirs.clone(), b.target.clone(), b.is_dir)).collect())
        }),
        tmp_write: std::ffi::CString::new(prepared.tmpdir().as_os_str().as_encoded_bytes())
            .unwrap_or_default(),
        tmp_is_root: prepared.binds.is_empty(),
        seccomp: prepared.seccomp.clone(),
        listener_socket: prepared.listener_socket.as_ref().map(|(_, child)| child.as_raw_fd()),
        ports: prepared.ports.clone(),
        cgroup_procs: prepared.cgroup_procs.clone(),
        parent: prepared.parent,
        last_cap: prepared.last_cap,
    });
    // SAFETY: the hook only makes system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || run(&plan));
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 { Err(last_error()) } else { Ok(()) }
}

/// Writes `data` to the file at `path` (no allocation).
fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: path is a valid C string; data is valid for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(last_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = last_error();
        libc::close(fd);
        if n < 0 { Err(err) } else { Ok(()) }
    }
}

fn run(plan: &Plan) -> io::Result<()> {
    for procs in &plan.cgroup_procs {
        // Best effort: without it the call is still contained by its namespace.
        let _ = write_file(procs, b"0");
    }
    if !plan.namespaces {
        return restrict(plan);
    }
    PARENT.store(plan.parent, Ordering::SeqCst);
    // SAFETY: installing a handler and prctl are plain system calls.
    unsafe {
        set_handler(PARENT_DEATH, on_parent_death);
        check(libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DEATH, 0, 0, 0).into())?;
        if libc::getppid() != plan.parent {
            libc::_exit(137);
        }
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
        if plan.isolate_net {
            flags |= libc::CLONE_NEWNET;
        }
        check(libc::unshare(flags).into())?;
    }
    // Older kernels have no setgroups file; the maps are what matters.
    let _ = write_file(c"/proc/self/setgroups", b"deny");
    write_file(c"/proc/self/uid_map", &plan.uid_map)?;
    write_file(c"/proc/self/gid_map", &plan.gid_map)?;
    if plan.isolate_net {
        loopback_up()?;
        if let Some(socket) = plan.listener_socket {
            send_listeners(socket, &plan.ports)?;
        }
    }
    let mut status_pipe = [0 as RawFd; 2];
    // SAFETY: status_pipe is valid for two ints; fork in a single-threaded child.
    unsafe {
        check(libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC).into())?;
        let init = libc::fork();
        if init < 0 {
            return Err(last_error());
        }
        if init > 0 {
            waiter(init, status_pipe[0], status_pipe[1]);
        }
        // The init, PID 1.
        libc::close(status_pipe[0]);
        set_default(PARENT_DEATH);
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
    }
    mount_private(plan)?;
    // SAFETY: fork in a single-threaded process.
    unsafe {
        let agent = libc::fork();
        if agent < 0 {
            return Err(last_error());
        }
        if agent > 0 {
            init(agent, status_pipe[1]);
        }
        libc::close(status_pipe[1]);
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
    }
    restrict(plan)
}

/// The agent's own restrictions, last before `exec`.
fn restrict(plan: &Plan) -> io::Result<()> {
    // SAFETY: prctl and the Landlock call take plain integers.
    unsafe {
        if plan.namespaces {
            for cap in 0..=plan.last_cap {
                // EINVAL for a cap this kernel lacks; EPERM outside a user namespace.
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        if let Some(ruleset) = plan.ruleset {
            check(libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0))?;
            libc::close(ruleset);
        }
    }
    for program in &plan.seccomp {
        seccompiler::apply_filter(program).map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
    }
    Ok(())
}

/// The init's mounts and the Landlock rules for them.
fn mount_private(plan: &Plan) -> io::Result<()> {
    // SAFETY: mount, mkdir and open take valid C strings; the bind sources are O_PATH
    // descriptors the parent opened.
    unsafe {
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
            .into(),
        )?;
        if let Some((home, binds)) = &plan.home {
            cover(home, c"mode=755", binds)?;
        }
        if plan.private_tmp {
            cover(c"/tmp", c"mode=1777", &plan.binds)?;
            if !plan.tmp_is_root {
                libc::mkdir(plan.tmp_write.as_ptr(), 0o700);
            }
        }
        if plan.cover_run {
            cover(c"/run", c"mode=755", &plan.run_binds)?;
        }
        let proc_mounted = libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) == 0;
        let shm_mounted = libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=1777".as_ptr().cast(),
        ) == 0;
        if let Some(ruleset) = plan.ruleset {
            // A host TMPDIR has its rule among the static ones.
            if plan.private_tmp {
                add_rule(ruleset, &plan.tmp_write, plan.write_access)?;
            }
            if shm_mounted {
                add_rule(ruleset, c"/dev/shm", plan.write_access)?;
            }
            if proc_mounted {
                add_rule(ruleset, c"/proc", plan.read_access)?;
            }
        }
    }
    Ok(())
}

/// An empty tmpfs (`mode`) over `root` (`/tmp`, `/run`), with the paths the call needs
/// under the host's `root` bound back into it.
fn cover(root: &CStr, mode: &CStr, binds: &[BindPlan]) -> io::Result<()> {
    // SAFETY: as in `mount_private`.
    unsafe {
        // The paths to bind back, opened in this mount namespace before the tmpfs covers
        // them (a mount of another namespace cannot be bound here).
        let mut sources = [-1 as RawFd; MAX_BINDS];
        for (slot, (_, target, _)) in sources.iter_mut().zip(binds) {
            *slot = libc::open(target.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if *slot < 0 {
                return Err(last_error());
            }
        }
        check(
            libc::mount(
                c"tmpfs".as_ptr(),
                root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                mode.as_ptr().cast(),
            )
            .into(),
        )?;
        for (&source, (mkdirs, target, is_dir)) in sources.iter().zip(binds) {
            for dir in mkdirs {
                libc::mkdir(dir.as_ptr(), 0o755);
            }
            if !is_dir {
                let fd = libc::open(target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o600);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            // `/proc/self/fd/N`, formatted without allocating (procfs takes no leading zeros).
            let mut source_path = [0u8; 32];
            source_path[..14].copy_from_slice(b"/proc/self/fd/");
            let mut digits = [0u8; 10];
            let mut n = source.cast_unsigned();
            let mut len = 0;
            loop {
                digits[len] = b'0' + (n % 10) as u8;
                len += 1;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            for i in 0..len {
                source_path[14 + i] = digits[len - 1 - i];
            }
            let bound = libc::mount(
                source_path.as_ptr().cast(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            );
            let err = last_error();
            libc::close(source);
            if bound != 0 {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// `struct landlock_path_beneath_attr`.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;

fn add_rule(ruleset: RawFd, path: &CStr, access: u64) -> io::Result<()> {
    // SAFETY: path is a valid C string; attr lives across the call.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(last_error());
        }
        let attr = PathBeneathAttr { allowed_access: access, parent_fd: fd };
        let ret = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &raw const attr,
            0,
        );
        let err = last_error();
        libc::close(fd);
        if ret < 0 { Err(err) } else { Ok(()) }
    }
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: ifreq is plain old data; the ioctls read and write it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(last_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut ret = libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut ifr);
        if ret == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            ret = libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw mut ifr);
        }
        let err = last_error();
        libc::close(fd);
        if ret < 0 { Err(err) } else { Ok(()) }
    }
}

/// Makes a listener on `127.0.0.1:port` for each port and sends them all over `socket`.
fn send_listeners(socket: RawFd, ports: &[u16]) -> io::Result<()> {
    let mut fds = [-1 as RawFd; MAX_LISTENERS];
    let count = ports.len().min(MAX_LISTENERS);
    let result = (|| {
        for (slot, &port) in fds.iter_mut().zip(ports.iter().take(count)) {
            // SAFETY: sockaddr_in is plain old data; the calls take valid pointers.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if fd < 0 {
                    return Err(last_error());
                }
                *slot = fd;
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&raw const one).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
                let mut addr: libc::sockaddr_in = std::mem::zeroed();
                addr.sin_family = libc::AF_INET as libc::sa_family_t;
                addr.sin_port = port.to_be();
                addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
                check(
                    libc::bind(
                        fd,
                        (&raw const addr).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                    .into(),
                )?;
                check(libc::listen(fd, 128).into())?;
            }
        }
        send_fds(socket, &fds[..count])
    })();
    for fd in fds.iter().take(count) {
        if *fd >= 0 {
            // SAFETY: the fd is ours; the parent has its own copy once sent.
            unsafe { libc::close(*fd) };
        }
    }
    result
}

/// Room for [`MAX_LISTENERS`] descriptors in a control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

fn send_fds(socket: RawFd, fds: &[RawFd]) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = ControlBuffer([0; 128]);
    let payload = size_of_val(fds) as libc::c_uint;
    // SAFETY: the control buffer is large and aligned enough for one cmsghdr with up to
    // MAX_LISTENERS descriptors; msghdr is plain old data.
    unsafe {
        let space = libc::CMSG_SPACE(payload) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
        // Byte-wise: CMSG_DATA is not aligned for an int as far as the type system knows.
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), size_of_val(fds));
        check(libc::sendmsg(socket, &raw const msg, 0) as libc::c_long)
    }
}

/// Receives up to `max` descriptors sent by [`send_fds`] (in the parent, after the spawn).
pub(super) fn recv_fds(socket: RawFd, max: usize) -> io::Result<Vec<RawFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = ControlBuffer([0; 128]);
    // SAFETY: as in send_fds; the kernel fills at most msg_controllen bytes.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        let n = libc::recvmsg(socket, &raw mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(last_error());
        }
        let mut fds = Vec::new();
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if !cmsg.is_null() && (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let count = (data_len / size_of::<RawFd>()).min(MAX_LISTENERS);
            let data = libc::CMSG_DATA(cmsg);
            for i in 0..count {
                let mut bytes = [0u8; size_of::<RawFd>()];
                std::ptr::copy_nonoverlapping(data.add(i * bytes.len()), bytes.as_mut_ptr(), bytes.len());
                let fd = RawFd::from_ne_bytes(bytes);
                if fds.len() < max {
                    fds.push(fd);
                } else {
                    libc::close(fd);
                }
            }
        }
        Ok(fds)
    }
}

/// The waiter: waits for the init and exits as the agent did. Never returns.
fn waiter(init: libc::pid_t, status_read: RawFd, status_write: RawFd) -> ! {
    // SAFETY: system calls on our own descriptors and children.
    unsafe {
        libc::close(status_write);
        FORWARD_TO.store(init, Ordering::SeqCst);
        for sig in FORWARDED {
            set_handler(sig, forward);
        }
        quiet_stdio();
        close_all_but(status_read);
        let mut status: libc::c_int = 0;
        loop {
            let ret = libc::waitpid(init, &raw mut status, 0);
            if ret == init {
                break;
            }
            if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(126);
            }
        }
        let mut agent = [0u8; 4];
        if libc::read(status_read, agent.as_mut_ptr().cast(), 4) == 4 {
            status = libc::c_int::from_ne_bytes(agent);
        }
        exit_as(status)
    }
}

/// The init (PID 1): forwards signals to the agent, reaps, reports. Never returns.
fn init(agent: libc::pid_t, status_write: RawFd) -> ! {
    // SAFETY: system calls on our own descriptors and children.
    unsafe {
        FORWARD_TO.store(agent, Ordering::SeqCst);
        for sig in FORWARDED {
            set_handler(sig, forward);
        }
        quiet_stdio();
        close_all_but(status_write);
        loop {
            let mut status: libc::c_int = 0;
            let ret = libc::waitpid(-1, &raw mut status, 0);
            if ret == agent {
                let bytes = status.to_ne_bytes();
                libc::write(status_write, bytes.as_ptr().cast(), 4);
                libc::_exit(0);
            }
            if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(126);
            }
        }
    }
}

/// Exits with the agent's code, or dies of the signal that killed it.
unsafe fn exit_as(status: libc::c_int) -> ! {
    // SAFETY: plain system calls.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
            set_default(sig);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// Points stdin, stdout and stderr at `/dev/null`, so the output pipes end with the agent.
unsafe fn quiet_stdio() {
    // SAFETY: plain system calls.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// Closes every descriptor from 3 up except `keep`.
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: close_range on our own descriptor table.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

extern "C" fn on_parent_death(_: libc::c_int) {
    // A thread of the runtime ended (the process was reparented to a sibling thread), or
    // the runtime itself died: only the second ends the sandbox.
    // SAFETY: getppid, kill and _exit are async-signal-safe.
    unsafe {
        if libc::getppid() != PARENT.load(Ordering::SeqCst) {
            let init = FORWARD_TO.load(Ordering::SeqCst);
            if init > 0 {
                libc::kill(init, libc::SIGKILL);
            }
            libc::_exit(137);
        }
    }
}

unsafe fn set_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: sigaction is plain old data.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        libc::sigaction(sig, &raw const action, std::ptr::null_mut());
    }
}

unsafe fn set_default(sig: libc::c_int) {
    // SAFETY: restoring the default disposition.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}
