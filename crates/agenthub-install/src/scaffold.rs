//! A new agent from a template (`agenthub init`): a manifest, an `agent.py` with a class
//! and the one-shot `main()`, and a README. Never overwrites anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use agenthub_core::AgentId;

const MANIFEST: &str = include_str!("templates/agent.yaml.tmpl");
const AGENT_PY: &str = include_str!("templates/agent.py.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");

/// The methods the template's agent has, in manifest order.
pub const TEMPLATE_METHODS: [&str; 2] = ["greet", "add"];

/// Why a new agent could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name breaks the rule of agent id parts.
    #[error("`{name}` is not a valid agent name")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The target exists and is not an empty directory.
    #[error("{} already exists and is not an empty directory", dir.display())]
    NotEmpty {
        /// The target directory.
        dir: PathBuf,
    },
    /// The operating system refused.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ScaffoldError {
    /// What the user can do about it.
    pub fn suggestion(&self) -> String {
        match self {
            Self::InvalidName { .. } => {
                "Use letters, digits, `.`, `_` and `-`, starting with a letter or digit (e.g. my-agent)"
                    .to_owned()
            }
            Self::NotEmpty { dir } => format!(
                "Choose another directory with --path, or remove {} yourself if you no longer need it",
                dir.display()
            ),
            Self::Io { source, path } => agenthub_core::io_error_suggestion(source, path),
        }
    }
}

/// What [`init_agent`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The agent directory.
    pub dir: PathBuf,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// The class in `agent.py`.
    pub class_name: String,
}

/// Writes a working agent named `name` into `dir`: `agent.yaml` (version 0.1.0, the
/// methods of [`TEMPLATE_METHODS`]), `agent.py` and `README.md`.
///
/// `dir` is created (with its parents) if missing; an existing `dir` must be an empty
/// directory. Files are created exclusively, so nothing is ever overwritten, also not
/// when another process writes into `dir` at the same time. `author` goes into the
/// manifest as given (quoted).
pub fn init_agent(name: &str, dir: &Path, author: &str) -> Result<Scaffold, ScaffoldError> {
    if !AgentId::is_valid_part(name) {
        return Err(ScaffoldError::InvalidName { name: name.to_owned() });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
                return Err(ScaffoldError::NotEmpty { dir: dir.to_path_buf() });
            }
        }
        // A file, a FIFO, or a symlink (even to an empty directory): not ours to fill.
        Ok(_) => return Err(ScaffoldError::NotEmpty { dir: dir.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
    }

    let class_name = class_name(name);
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let description = "Greets people and adds numbers: a starting point made by agenthub init";
    let dir_arg = match dir.file_name() {
        Some(base) => format!("./{}", base.to_string_lossy()),
        None => ".".to_owned(),
    };
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{class}", &class_name)
            .replace("{dir}", &dir_arg)
            .replace("{description}", description)
    };
    let manifest = MANIFEST
        .replace("{name}", &quote(name))
        .replace("{description}", &quote(description))
        .replace("{author}", &quote(author));

    let mut files = Vec::new();
    for (file, text) in [("agent.yaml", manifest), ("agent.py", fill(AGENT_PY)), ("README.md", fill(README))]
    {
        let path = dir.join(file);
        let mut out = std::fs::File::options().write(true).create_new(true).open(&path).map_err(io(&path))?;
        out.write_all(text.as_bytes()).and_then(|()| out.sync_all()).map_err(io(&path))?;
        files.push(path);
    }
    Ok(Scaffold { dir: dir.to_path_buf(), files, class_name })
}

/// `my-agent` → `MyAgent`, `hello` → `HelloAgent`, `3d` → `Agent3d`: a Python class name
/// from the parts of an agent name.
fn class_name(name: &str) -> String {
    let mut class: String = name
        .split(['-', '_', '.'])
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    if class.starts_with(|c: char| c.is_ascii_digit()) {
        class.insert_str(0, "Agent");
    } else if !class.to_ascii_lowercase().ends_with("agent") {
        class.push_str("Agent");
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_python_identifiers() {
        assert_eq!(class_name("my-agent"), "MyAgent");
        assert_eq!(class_name("hello"), "HelloAgent");
        assert_eq!(class_name("3d"), "Agent3d");
        assert_eq!(class_name("a.b_c"), "ABCAgent");
    }

    #[test]
    fn the_template_manifest_parses_and_declares_the_template_methods() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new");
        let made = init_agent("new-agent", &dir, "Ann \"Q\" O'Neil: \n").unwrap();
        let names: Vec<_> = made.files.iter().map(|f| f.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["agent.yaml", "agent.py", "README.md"]);
        let (manifest, _) = agenthub_core::AgentManifest::load(&dir).unwrap();
        assert_eq!(manifest.name, "new-agent");
        assert_eq!(manifest.version, "0.1.0");
        assert_eq!(manifest.author, "Ann \"Q\" O'Neil: \n");
        assert_eq!(manifest.method_names(), TEMPLATE_METHODS);
        let py = std::fs::read_to_string(dir.join("agent.py")).unwrap();
        assert!(py.contains("class NewAgent:"));
        assert!(agenthub_catalog::replays_main(&py));
    }

    #[test]
    fn nothing_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep"), "mine").unwrap();
        assert!(matches!(init_agent("a", tmp.path(), "me"), Err(ScaffoldError::NotEmpty { .. })));
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        assert!(matches!(
            init_agent("a", &tmp.path().join("file"), "me"),
            Err(ScaffoldError::NotEmpty { .. })
        ));
        std::os::unix::fs::symlink(tmp.path().join("empty"), tmp.path().join("link")).unwrap();
        std::fs::create_dir(tmp.path().join("empty")).unwrap();
        assert!(matches!(
            init_agent("a", &tmp.path().join("link"), "me"),
            Err(ScaffoldError::NotEmpty { .. })
        ));
        assert_eq!(std::fs::read_to_string(tmp.path().join("keep")).unwrap(), "mine");
        for bad in ["", "-x", "a/b", "..", "a b", ".hidden", "é"] {
            assert!(matches!(
                init_agent(bad, &tmp.path().join("n"), "me"),
                Err(ScaffoldError::InvalidName { .. })
            ));
        }
        assert!(!tmp.path().join("n").exists());
        init_agent("a", &tmp.path().join("empty"), "me").unwrap();
    }
}
