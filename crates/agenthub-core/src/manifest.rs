//! The agent manifest (`agent.yaml`, SPEC §2): parsing, validation and field-named errors.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indexmap::IndexMap;
use pep440_rs::{Version, VersionSpecifiers};
use serde::Serialize;
use serde_json::Value as Json;

use crate::agent_file::read_agent_file;
use crate::yaml::{Node as Yaml, YamlError};

/// File names a manifest may have, in the order they are looked for.
pub const MANIFEST_FILE_NAMES: [&str; 2] = ["agent.yaml", "agent.yml"];

/// Manifests larger than this are refused before parsing.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Flow collections (`[`, `{`) nested deeper than this are refused before parsing: the
/// YAML parser takes quadratic time on deep flow nesting (100,000 levels: 29 s).
pub const MAX_FLOW_NESTING: usize = 64;

/// A manifest may not expand to more nodes than this through YAML aliases: a 62 KB file
/// with one anchor of 1,000 items referenced 20,000 times would otherwise become 20
/// million nodes (seconds and gigabytes). Counted while parsing, refused as soon as passed.
pub const MAX_ALIAS_EXPANSION: usize = 100_000;

/// A parsed and validated `agent.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentManifest {
    /// The agent's name.
    pub name: String,
    /// The agent's version.
    pub version: String,
    /// What the agent does.
    pub description: String,
    /// Who wrote it.
    pub author: String,
    /// Its license, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The Python versions it runs on, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_version: Option<PythonConstraint>,
    /// PEP 508 requirements from the manifest (the last source of SPEC §3).
    pub dependencies: Vec<String>,
    /// Installation commands (agentplug); never run unless enabled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub installation_commands: Vec<String>,
    /// The methods of the agent's interface, in declaration order.
    pub methods: IndexMap<String, MethodSpec>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// What the agent declares it needs beyond running itself (`permissions:`, SPEC §8);
    /// nothing declared when absent. Not serialised here: `agenthub info` reports it with
    /// its description.
    #[serde(skip)]
    pub permissions: crate::Permissions,
    /// Top-level keys this version does not know, kept as written.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Json>,
}

/// One method of the interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodSpec {
    /// What the method does.
    pub description: String,
    /// Its parameters, in declaration order.
    pub parameters: IndexMap<String, ParameterSpec>,
    /// What it returns, when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returns: Option<ReturnSpec>,
}

/// One parameter of a method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParameterSpec {
    /// The JSON type the value must have.
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// What the parameter means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether a call must supply it.
    pub required: bool,
    /// The value used when the call leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
}

/// What a method returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnSpec {
    /// The declared type, as written.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub return_type: Option<String>,
    /// What the value means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The parameter types of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A JSON string.
    String,
    /// A JSON number without a fractional part.
    Integer,
    /// Any JSON number (alias `float`).
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON array (alias `list`).
    Array,
    /// A JSON object (alias `dict`).
    Object,
}

impl ParamType {
    /// The canonical name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    /// Whether `value` has this type.
    pub fn accepts(self, value: &Json) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => matches!(value, Json::Number(n) if is_integer_literal(&n.to_string())),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Array => value.is_array(),
            Self::Object => value.is_object(),
        }
    }
}

/// Whether `text` is a JSON integer literal (`-?[0-9]+`) of any size: with
/// `arbitrary_precision` a number keeps its digits, so `12345678901234567890123` is an
/// integer and `2.0` or `1e3` are not.
pub(crate) fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for ParamType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "string" | "str" => Self::String,
            "integer" | "int" => Self::Integer,
            "number" | "float" => Self::Number,
            "boolean" | "bool" => Self::Boolean,
            "array" | "list" => Self::Array,
            "object" | "dict" => Self::Object,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Python version constraint: `3.11`, `3.11+` or a PEP 440 specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonConstraint {
    raw: String,
    specifiers: VersionSpecifiers,
}

impl PythonConstraint {
    /// Parses `3.11` (that minor version), `3.11+` (it or later) or a PEP 440 specifier.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".to_owned());
        }
        let is_plain = |s: &str| s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let pep440 = if let Some(base) = trimmed.strip_suffix('+').filter(|b| is_plain(b)) {
            format!(">={base}")
        } else if is_plain(trimmed) {
            if trimmed.matches('.').count() >= 2 { format!("=={trimmed}") } else { format!("=={trimmed}.*") }
        } else {
            trimmed.to_owned()
        };
        let specifiers = VersionSpecifiers::from_str(&pep440)
            .map_err(|e| format!("`{trimmed}` is not `3.11`, `3.11+` or a PEP 440 specifier ({e})"))?;
        Ok(Self { raw: trimmed.to_owned(), specifiers })
    }

    /// The constraint as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The constraint as a PEP 440 specifier string (`>=3.11`).
    pub fn to_pep440(&self) -> String {
        self.specifiers.to_string()
    }

    /// Whether a Python `major.minor.patch` satisfies the constraint.
    pub fn allows(&self, major: u64, minor: u64, patch: u64) -> bool {
        let version = Version::new([major, minor, patch]);
        self.specifiers.contains(&version)
    }
}

impl Serialize for PythonConstraint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

/// A problem with one field of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path of the field, e.g. `interface.methods.greet.description`.
    pub field: String,
    /// What is wrong, as a fragment: `is required`, `must not be empty`.
    pub message: String,
}

/// Why a manifest could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    /// Neither `agent.yaml` nor `agent.yml` exists.
    #[error("No agent.yaml in {}", dir.display())]
    Missing {
        /// The agent directory.
        dir: PathBuf,
    },
    /// The file exists but is refused or could not be read: not a regular file (a FIFO, a
    /// device), a symlink leaving the agent directory, larger than [`MAX_MANIFEST_BYTES`],
    /// or an I/O error.
    #[error("Cannot read the manifest: {message}")]
    Unreadable {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, naming the file.
        message: String,
        /// What to do about it.
        suggestion: String,
    },
    /// The file is not YAML.
    #[error("Invalid {file}: not valid YAML: {message}")]
    Syntax {
        /// The manifest's file name.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// YAML aliases expand the manifest past [`MAX_ALIAS_EXPANSION`] nodes (or past 16 MiB
    /// of text): refused as soon as the bound is passed.
    #[error("Invalid {file}: {file} expands to more than {limit} through YAML aliases")]
    AliasExpansion {
        /// The manifest's file name.
        file: String,
        /// The bound that was passed: `100000 nodes`.
        limit: String,
    },
    /// The YAML is a mapping, but fields are missing or wrong.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The manifest's file name.
        file: String,
        /// Every problem found, sorted by field.
        problems: Vec<FieldProblem>,
    },
}

impl ManifestError {
    /// What to fix.
    pub fn suggestion(&self) -> String {
        match self {
            Self::Missing { .. } => {
                "Create agent.yaml with name, version, description, author and interface.methods".to_owned()
            }
            Self::Unreadable { suggestion, .. } => suggestion.clone(),
            Self::Syntax { file, .. } => format!("Fix the YAML syntax of {file} at the position shown"),
            Self::AliasExpansion { file, .. } => {
                format!("Write the repeated parts of {file} out, or reference anchors fewer times")
            }
            Self::Invalid { file, problems } => {
                let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
                format!("Fix {} in {file}", fields.join(", "))
            }
        }
    }
}

fn render_problems(file: &str, problems: &[FieldProblem]) -> String {
    let n = problems.len();
    let mut out = format!("Invalid {file}: {n} error{}:", if n == 1 { "" } else { "s" });
    for p in problems {
        let _ = write!(out, "\n  - {}: {}", p.field, p.message);
    }
    out
}

impl AgentManifest {
    /// Finds and parses the manifest of the agent in `dir`.
    ///
    /// Returns the manifest and the file it came from. The file is read as untrusted input
    /// (see [`read_agent_file`]): without blocking, a regular file inside `dir`, at most
    /// [`MAX_MANIFEST_BYTES`].
    pub fn load(dir: &Path) -> Result<(Self, PathBuf), ManifestError> {
        for name in MANIFEST_FILE_NAMES {
            let text = match read_agent_file(dir, Path::new(name), MAX_MANIFEST_BYTES) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    return Err(ManifestError::Unreadable {
                        path: e.path().to_path_buf(),
                        message: e.to_string(),
                        suggestion: e.suggestion(),
                    });
                }
            };
            let manifest = Self::from_yaml_str(&text, name)?;
            return Ok((manifest, dir.join(name)));
        }
        Err(ManifestError::Missing { dir: dir.to_path_buf() })
    }

    /// Parses and validates manifest text; `file` names it in errors.
    pub fn from_yaml_str(text: &str, file: &str) -> Result<Self, ManifestError> {
        let refuse = |message: String| ManifestError::Syntax { file: file.to_owned(), message };
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(refuse(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        if flow_nesting_depth(text) > MAX_FLOW_NESTING {
            return Err(refuse(format!("brackets nested deeper than {MAX_FLOW_NESTING} levels")));
        }
        let doc = crate::yaml::parse_document(text).map_err(|e| match e {
            YamlError::Syntax(message) => refuse(message),
            YamlError::TooDeep => {
                refuse(format!("collections nested deeper than {} levels", crate::yaml::MAX_NESTING))
            }
            YamlError::AliasNodes => ManifestError::AliasExpansion {
                file: file.to_owned(),
                limit: format!("{MAX_ALIAS_EXPANSION} nodes"),
            },
            YamlError::AliasBytes => ManifestError::AliasExpansion {
                file: file.to_owned(),
                limit: format!("{} bytes", crate::yaml::MAX_ALIAS_EXPANSION_BYTES),
            },
        })?;
        let mut v = Validator { problems: Vec::new() };
        let manifest = v.manifest(&doc);
        match manifest {
            Some(m) if v.problems.is_empty() => Ok(m),
            _ => {
                v.problems.sort_by(|a, b| a.field.cmp(&b.field));
                Err(ManifestError::Invalid { file: file.to_owned(), problems: v.problems })
            }
        }
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.methods.get(name)
    }

    /// The method names in declaration order.
    pub fn method_names(&self) -> Vec<String> {
        self.methods.keys().cloned().collect()
    }
}

/// The deepest nesting of `[`/`{` outside quoted scalars and comments, in one linear pass.
fn flow_nesting_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    max
}

impl MethodSpec {
    /// The method's signature for messages: `greet(name: string, count?: integer)`.
    pub fn signature(&self, name: &str) -> String {
        let params: Vec<String> = self
            .parameters
            .iter()
            .map(|(p, spec)| format!("{p}{}: {}", if spec.required { "" } else { "?" }, spec.param_type))
            .collect();
        format!("{name}({})", params.join(", "))
    }
}

const KNOWN_KEYS: [&str; 11] = [
    "name",
    "version",
    "description",
    "author",
    "license",
    "python_version",
    "dependencies",
    "installation",
    "interface",
    "tags",
    "permissions",
];

/// Walks a YAML document and collects every problem with its field path.
struct Validator {
    problems: Vec<FieldProblem>,
}

impl Validator {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(FieldProblem { field: field.into(), message: message.into() });
    }

    fn manifest(&mut self, doc: &Yaml) -> Option<AgentManifest> {
        let Some(map) = doc.as_map() else {
            self.problem("(top level)", "must be a mapping of fields");
            return None;
        };
        let get = |k: &str| doc.get(k).filter(|v| !v.is_null());
        let name = self.required_string(get("name"), "name");
        let version = self.required_string(get("version"), "version");
        let description = self.required_string(get("description"), "description").unwrap_or_default();
        let author = self.required_string(get("author"), "author").unwrap_or_default();
        let license = get("license").and_then(|v| self.scalar_string(v, "license"));
        let python_version = get("python_version").and_then(|v| {
            let raw = self.scalar_string(v, "python_version")?;
            PythonConstraint::parse(&raw).map_err(|m| self.problem("python_version", m)).ok()
        });
        let dependencies = self.string_list(get("dependencies"), "dependencies");
        let installation_commands = match get("installation") {
            None => Vec::new(),
            Some(inst @ Yaml::Map(_)) => {
                self.string_list(inst.get("commands").filter(|v| !v.is_null()), "installation.commands")
            }
            Some(_) => {
                self.problem("installation", "must be a mapping with `commands`");
                Vec::new()
            }
        };
        let tags = self.string_list(get("tags"), "tags");
        let methods = self.interface(get("interface"));
        let permissions = get("permissions")
            .map(|p| crate::Permissions::from_yaml(p, &mut self.problems))
            .unwrap_or_default();
        let mut extra = IndexMap::new();
        for (key, value) in map {
            match key {
                Yaml::Str(k) if KNOWN_KEYS.contains(&k.as_str()) => {}
                Yaml::Str(k) => {
                    extra.insert(k.clone(), yaml_to_json(value));
                }
                _ => self.problem("(top level)", "keys must be strings"),
            }
        }
        Some(AgentManifest {
            name: name?,
            version: version?,
            description,
            author,
            license,
            python_version,
            dependencies,
            installation_commands,
            methods,
            tags,
            permissions,
            extra,
        })
    }

    fn interface(&mut self, value: Option<&Yaml>) -> IndexMap<String, MethodSpec> {
        let mut methods = IndexMap::new();
        let Some(value) = value else {
            self.problem("interface", "is required");
            return methods;
        };
        if value.as_map().is_none() {
            self.problem("interface", "must be a mapping with `methods`");
            return methods;
        }
        let Some(raw_methods) = value.get("methods").filter(|v| !v.is_null()) else {
            self.problem("interface.methods", "at least one method is required");
            return methods;
        };
        let Some(raw_methods) = raw_methods.as_map() else {
            self.problem("interface.methods", "must be a mapping of method names to methods");
            return methods;
        };
        if raw_methods.is_empty() {
            self.problem("interface.methods", "at least one method is required");
        }
        for (key, raw) in raw_methods {
            let Some(name) = self.key_name(key, "interface.methods") else { continue };
            let field = format!("interface.methods.{name}");
            if let Some(spec) = self.method(raw, &field) {
                methods.insert(name, spec);
            }
        }
        methods
    }

    fn method(&mut self, raw: &Yaml, field: &str) -> Option<MethodSpec> {
        if raw.as_map().is_none() {
            self.problem(field, "must be a mapping with `description`");
            return None;
        }
        let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let description =
            self.required_string(get("description"), &format!("{field}.description")).unwrap_or_default();
        let mut parameters = IndexMap::new();
        match get("parameters") {
            None => {}
            Some(Yaml::Map(params)) => {
                for (key, raw_param) in params.iter() {
                    let Some(pname) = self.key_name(key, &format!("{field}.parameters")) else { continue };
                    let pfield = format!("{field}.parameters.{pname}");
                    if let Some(p) = self.parameter(raw_param, &pfield) {
                        parameters.insert(pname, p);
                    }
                }
            }
            Some(_) => self.problem(format!("{field}.parameters"), "must be a mapping of parameter names"),
        }
        let returns = match get("returns") {
            None => None,
            Some(r @ Yaml::Map(_)) => Some(ReturnSpec {
                return_type: r
                    .get("type")
                    .and_then(|v| self.scalar_string(v, &format!("{field}.returns.type"))),
                description: r
                    .get("description")
                    .and_then(|v| self.scalar_string(v, &format!("{field}.returns.description"))),
            }),
            Some(other) => Some(ReturnSpec {
                return_type: self.scalar_string(other, &format!("{field}.returns")),
                description: None,
            }),
        };
        Some(MethodSpec { description, parameters, returns })
    }

    fn parameter(&mut self, raw: &Yaml, field: &str) -> Option<ParameterSpec> {
        if raw.as_map().is_none() {
            self.problem(field, "must be a mapping with `type`");
            return None;
        }
        let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let type_field = format!("{field}.type");
        let param_type = match get("type").and_then(|v| self.scalar_string(v, &type_field)) {
            None if get("type").is_none() => {
                self.problem(&type_field, "is required (string, integer, number, boolean, array or object)");
                None
            }
            None => None,
            Some(t) => t
                .parse::<ParamType>()
                .map_err(|()| {
                    self.problem(
                        &type_field,
                        format!("unknown type `{t}` (use string, integer, number, boolean, array or object)"),
                    );
                })
                .ok(),
        };
        let required = match get("required") {
            None => false,
            Some(Yaml::Bool(b)) => *b,
            Some(_) => {
                self.problem(format!("{field}.required"), "must be true or false");
                false
            }
        };
        let description =
            get("description").and_then(|v| self.scalar_string(v, &format!("{field}.description")));
        let default = raw.get("default").map(yaml_to_json);
        let param_type = param_type?;
        if let Some(d) = &default
            && !d.is_null()
            && !param_type.accepts(d)
        {
            self.problem(format!("{field}.default"), format!("must be of type {param_type}"));
        }
        Some(ParameterSpec { param_type, description, required, default })
    }

    fn key_name(&mut self, key: &Yaml, field: &str) -> Option<String> {
        match key {
            Yaml::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                self.problem(field, "names must be non-empty strings");
                None
            }
        }
    }

    fn required_string(&mut self, value: Option<&Yaml>, field: &str) -> Option<String> {
        let Some(value) = value else {
            self.problem(field, "is required");
            return None;
        };
        let s = self.scalar_string(value, field)?;
        if s.trim().is_empty() {
            self.problem(field, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// Strings, and numbers or booleans written without quotes (`version: 1.0`).
    fn scalar_string(&mut self, value: &Yaml, field: &str) -> Option<String> {
        match value {
            Yaml::Str(s) | Yaml::Float(s) => Some(s.clone()),
            Yaml::Int(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => {
                self.problem(field, "must be a string");
                None
            }
        }
    }

    fn string_list(&mut self, value: Option<&Yaml>, field: &str) -> Vec<String> {
        match value {
            None => Vec::new(),
            Some(Yaml::Seq(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Yaml::Str(s) if !s.trim().is_empty() => Some(s.clone()),
                    _ => {
                        self.problem(format!("{field}[{i}]"), "must be a non-empty string");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(field, "must be a list of strings");
                Vec::new()
            }
        }
    }
}

/// Converts YAML to JSON. Integers keep every digit; `.nan` and the infinities, which JSON
/// cannot carry, become `null`; keys that are not strings become their JSON text.
fn yaml_to_json(value: &Yaml) -> Json {
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Int(n) => Json::Number(n.clone()),
        Yaml::Float(raw) => {
            Yaml::finite_float(raw).and_then(serde_json::Number::from_f64).map_or(Json::Null, Json::Number)
        }
        Yaml::Str(s) => Json::String(s.clone()),
        Yaml::Seq(items) => Json::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::Str(s) | Yaml::Float(s) => s.clone(),
                        other => yaml_to_json(other).to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = r#"
name: "hello"
version: "1.0.0"
description: "Greets"
author: "me"
python_version: "3.9+"
interface:
  methods:
    greet:
      description: "Say hello"
      parameters:
        name: {type: string, required: true}
        times: {type: int, required: false, default: 1}
    echo: {description: "Echo"}
x-extra: {a: 1}
"#;

    #[test]
    fn parses_a_full_manifest_keeping_order_and_extras() {
        let m = AgentManifest::from_yaml_str(HELLO, "agent.yaml").unwrap();
        assert_eq!(m.name, "hello");
        assert_eq!(m.method_names(), ["greet", "echo"]);
        let greet = m.method("greet").unwrap();
        assert_eq!(greet.parameters.keys().collect::<Vec<_>>(), ["name", "times"]);
        assert_eq!(greet.parameters["times"].param_type, ParamType::Integer);
        assert_eq!(greet.parameters["times"].default, Some(Json::from(1)));
        assert_eq!(greet.signature("greet"), "greet(name: string, times?: integer)");
        assert_eq!(m.extra["x-extra"], serde_json::json!({"a": 1}));
        assert!(m.python_version.as_ref().unwrap().allows(3, 11, 7));
        assert!(!m.python_version.as_ref().unwrap().allows(3, 8, 0));
    }

    #[test]
    fn errors_name_every_field_sorted() {
        let text = "name: x\ndescription: d\nauthor: a\nversion: ''\ninterface:\n  methods: {}\n";
        let err = AgentManifest::from_yaml_str(text, "agent.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid agent.yaml: 2 errors:\n  - interface.methods: at least one method is required\n  - version: must not be empty"
        );
    }

    #[test]
    fn unknown_parameter_type_is_named() {
        let text = "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m:\n      description: d\n      parameters:\n        p: {type: tensor}\n";
        let err = AgentManifest::from_yaml_str(text, "agent.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("interface.methods.m.parameters.p.type: unknown type `tensor`"), "{msg}");
    }

    #[test]
    fn aliases_map_to_canonical_types() {
        for (alias, want) in [
            ("float", ParamType::Number),
            ("list", ParamType::Array),
            ("dict", ParamType::Object),
            ("bool", ParamType::Boolean),
        ] {
            assert_eq!(alias.parse::<ParamType>(), Ok(want));
        }
    }

    #[test]
    fn syntax_errors_are_typed() {
        let err = AgentManifest::from_yaml_str("name: \"x\nversion: [", "agent.yaml").unwrap_err();
        assert!(matches!(err, ManifestError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn non_mapping_document_is_invalid() {
        let err = AgentManifest::from_yaml_str("- a\n- b\n", "agent.yaml").unwrap_err();
        assert!(err.to_string().contains("(top level): must be a mapping"));
    }

    #[test]
    fn default_of_the_wrong_type_is_named() {
        let text = "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m:\n      description: d\n      parameters:\n        n: {type: integer, default: abc}\n";
        let err = AgentManifest::from_yaml_str(text, "agent.yaml").unwrap_err();
        assert!(err.to_string().contains("parameters.n.default: must be of type integer"));
    }

    #[test]
    fn integer_defaults_of_any_size_are_integers_and_stay_exact() {
        let text = "name: x\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m:\n      description: d\n      parameters:\n        a: {type: integer, default: 1}\n        b: {type: integer, default: 12345678901234567890123}\n        c: {type: number, default: -98765432109876543210987654321}\n";
        let m = AgentManifest::from_yaml_str(text, "agent.yaml").unwrap();
        let params = &m.method("m").unwrap().parameters;
        assert_eq!(params["a"].default, Some(Json::from(1)));
        assert_eq!(params["b"].default.as_ref().unwrap().to_string(), "12345678901234567890123");
        assert_eq!(params["c"].default.as_ref().unwrap().to_string(), "-98765432109876543210987654321");
        let float = text.replace("default: 1}", "default: 1.5}");
        let err = AgentManifest::from_yaml_str(&float, "agent.yaml").unwrap_err();
        assert!(err.to_string().contains("parameters.a.default: must be of type integer"), "{err}");
    }

    #[test]
    fn version_text_is_kept_as_written() {
        let text = "name: x\nversion: 1.10\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m: {description: d}\n";
        assert_eq!(AgentManifest::from_yaml_str(text, "agent.yaml").unwrap().version, "1.10");
    }

    #[test]
    fn flow_nesting_is_measured_outside_quotes_and_comments() {
        assert_eq!(flow_nesting_depth("a: [1, {b: [2]}]"), 3);
        assert_eq!(flow_nesting_depth("a: \"[[[[\" # [[[[\nb: '{{'"), 0);
        assert_eq!(flow_nesting_depth("a: \"x\\\"[\"\nb: [c]"), 1);
        let deep = format!("name: {}{}", "[".repeat(65), "]".repeat(65));
        let err = AgentManifest::from_yaml_str(&deep, "agent.yaml").unwrap_err();
        assert!(err.to_string().contains("nested deeper than 64"), "{err}");
    }

    #[test]
    fn python_constraints() {
        let exact = PythonConstraint::parse("3.11").unwrap();
        assert!(exact.allows(3, 11, 2) && !exact.allows(3, 12, 0));
        assert_eq!(exact.to_pep440(), "==3.11.*");
        let spec = PythonConstraint::parse(">=3.10,<3.13").unwrap();
        assert!(spec.allows(3, 12, 1) && !spec.allows(3, 13, 0));
        assert!(PythonConstraint::parse("three").is_err());
    }

    #[test]
    fn loads_agent_yml_spelling_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = AgentManifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::Missing { .. }));
        std::fs::write(dir.path().join("agent.yml"), HELLO).unwrap();
        let (m, path) = AgentManifest::load(dir.path()).unwrap();
        assert_eq!(m.name, "hello");
        assert!(path.ends_with("agent.yml"));
    }
}
