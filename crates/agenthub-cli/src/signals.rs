//! SIGINT, SIGTERM and SIGHUP while agents or installers run (Ctrl-C, `timeout(1)`, a closed
//! terminal, a supervisor): kill every process of the call, let the main thread print the
//! response, and exit with 128 + the signal.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The first signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// How long the main thread gets to print its response after a signal.
const GRACE: Duration = Duration::from_secs(3);

/// Handles the signals on a thread of their own from now on. A second signal exits at once.
pub(crate) fn handle() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    let spawned = std::thread::Builder::new().name("agenthub-signals".to_owned()).spawn(move || {
        for signal in signals.forever() {
            if RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                std::process::exit(exit_status(signal));
            }
            agenthub_process::shutdown();
            std::thread::spawn(move || {
                std::thread::sleep(GRACE);
                std::process::exit(exit_status(signal));
            });
        }
    });
    drop(spawned);
}

/// The signal received, if any.
pub(crate) fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// `128 + signal`, as shells report a command a signal ended.
pub(crate) fn exit_status(signal: i32) -> i32 {
    128 + signal
}
