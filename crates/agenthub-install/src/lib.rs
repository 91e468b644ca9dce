//! The agent lifecycle: installing, updating and removing agents under
//! `<home>/agents/<ns>/<name>` (`install`: sources, git, staging, ownership, the atomic
//! swap) and writing new ones (`scaffold`). The only code that replaces or removes agent
//! directories.

mod install;
mod scaffold;

pub use install::{
    InstallError, InstallOptions, Installed, Installer, MAX_COPY_BYTES, MAX_COPY_DEPTH, MAX_COPY_ENTRIES,
    NoProgress, Progress, Removed,
};

/// The staging rule is the read side's (doctor lists what installs left).
pub use agenthub_catalog::{STAGING_MARKER, leftover_staging};
pub use scaffold::{Scaffold, ScaffoldError, TEMPLATE_METHODS, init_agent};
