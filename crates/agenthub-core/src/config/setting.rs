//! How a setting is declared: the [`settings!`] macro, the [`Setting`] descriptor it builds
//! for each one, how values are read from `AGENTHUB_*` variables ([`FromVar`]) and the
//! ranges settings may declare ([`Range`]). The declarations themselves are in
//! `settings.rs`.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::Config;

/// One setting as declared in `settings.rs`; [`super::SETTINGS`] holds them all, in
/// declaration order (also the order `Config::validate` checks them in).
pub(crate) struct Setting {
    /// The key in config.yaml: `runtime.max_execution_time`.
    pub(crate) key: &'static str,
    /// Its `AGENTHUB_*` variable, if it has one.
    pub(crate) var: Option<&'static str>,
    /// One line for people (the first line of its doc comment).
    pub(crate) doc: &'static str,
    /// What it accepts, for people.
    pub(crate) accepts: &'static str,
    /// Its default, as shown in the README.
    pub(crate) default: fn() -> String,
    /// Sets it from its variable's value.
    pub(crate) apply: fn(&mut Config, &str) -> Result<(), Rejected>,
    /// Checks its range; the message says what is accepted and what was given.
    pub(crate) check: fn(&Config) -> Result<(), String>,
}

/// Why a variable's value was refused.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// Not a value of the setting's kind (`ConfigError::Variable`, naming the variable).
    Value(String),
    /// Of the right kind but out of the setting's range (`ConfigError::Invalid`, naming the
    /// key, as a value from config.yaml would be).
    Range(String),
}

impl From<String> for Rejected {
    fn from(message: String) -> Self {
        Self::Value(message)
    }
}

/// A setting's type as read from an `AGENTHUB_*` variable.
pub(crate) trait FromVar: Sized {
    /// What values are accepted, for people (when the setting declares no [`Range`]).
    const ACCEPTS: &'static str;

    /// The value of a variable (already known to be UTF-8).
    fn from_var(value: &str) -> Result<Self, Rejected>;
}

/// The range a setting declares beyond its type: what `Config::validate` checks.
pub(crate) struct Range<T> {
    /// What is accepted, for people.
    pub(crate) accepts: &'static str,
    /// The check; the message says what is accepted and the value given.
    pub(crate) check: fn(&T) -> Result<(), String>,
}

/// The check of a setting that declares no range.
#[expect(clippy::unnecessary_wraps, reason = "it has the signature of every check")]
pub(crate) fn any<T>(_: &T) -> Result<(), String> {
    Ok(())
}

/// Declares settings, each once: its section, key, type, default, `AGENTHUB_*` variable,
/// parser, range and doc. From this come the section structs (fields, docs, serde's shape
/// and `Default`), [`super::SETTINGS`] (which drives variables, validation, suggestions and
/// the README table) and [`super::CONFIG_VARS`].
///
/// ```text
/// /// One line for people (README), then any detail for rustdoc only.
/// field: Type = default, var "AGENTHUB_FIELD" [parse path::to_fn], [check RANGE_CONST];
/// ```
///
/// Sections (`section runtime: RuntimeConfig { … }`) become structs; settings in the
/// final `top: { … }` live directly in [`Config`] (their fields are written there by hand).
macro_rules! settings {
    (
        $(
            $(#[$section_meta:meta])*
            section $section:ident: $Section:ident {
                $(
                    #[doc = $doc:literal]
                    $(#[doc = $more:literal])*
                    $field:ident: $ty:ty = $default:expr
                    $(, var $var:literal $(parse $parse:path)?)?
                    $(, check $check:path)?;
                )*
            }
        )*
        top: {
            $(
                #[doc = $top_doc:literal]
                $top_field:ident: $top_ty:ty = $top_default:expr
                $(, var $top_var:literal $(parse $top_parse:path)?)?
                $(, check $top_check:path)?;
            )*
        }
    ) => {
        $(
            $(#[$section_meta])*
            #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Section {
                $(
                    #[doc = $doc]
                    $(#[doc = $more])*
                    pub $field: $ty,
                )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self { $($field: $default,)* }
                }
            }
        )*

        /// Every setting, in declaration order.
        pub(crate) static SETTINGS: &[$crate::config::setting::Setting] = &[
            $($(
                $crate::config::setting::Setting {
                    key: concat!(stringify!($section), ".", stringify!($field)),
                    var: settings!(@var $($var)?),
                    doc: $doc.trim_ascii(),
                    accepts: settings!(@accepts $ty $(, $check)?),
                    default: || $crate::config::setting::show(&$Section::default().$field),
                    apply: |c, v| {
                        c.$section.$field = settings!(@parse $ty $($(, $parse)?)?)(v)?;
                        Ok(())
                    },
                    check: |c| settings!(@check $($check)?)(&c.$section.$field),
                },
            )*)*
            $(
                $crate::config::setting::Setting {
                    key: stringify!($top_field),
                    var: settings!(@var $($top_var)?),
                    doc: $top_doc.trim_ascii(),
                    accepts: settings!(@accepts $top_ty $(, $top_check)?),
                    default: || $crate::config::setting::show(&$top_default),
                    apply: |c, v| {
                        c.$top_field = settings!(@parse $top_ty $($(, $top_parse)?)?)(v)?;
                        Ok(())
                    },
                    check: |c| settings!(@check $($top_check)?)(&c.$top_field),
                },
            )*
        ];

        /// The `AGENTHUB_*` variables that set configuration (one per setting that has one).
        pub const CONFIG_VARS: &[&str] = &[$($($($var,)?)*)* $($($top_var,)?)*];
    };

    (@var) => { None };
    (@var $var:literal) => { Some($var) };
    (@accepts $ty:ty) => { <$ty as $crate::config::setting::FromVar>::ACCEPTS };
    (@accepts $ty:ty, $check:path) => { $check.accepts };
    (@parse $ty:ty) => { <$ty as $crate::config::setting::FromVar>::from_var };
    (@parse $ty:ty, $parse:path) => { $parse };
    (@check) => { $crate::config::setting::any };
    (@check $check:path) => { $check.check };
}

pub(crate) use settings;

/// A default as the README shows it: `unset` for none, numbers without a needless `.0`.
pub(crate) fn show(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Null) => "unset".to_owned(),
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Ok(other) => other.to_string(),
        Err(e) => format!("({e})"),
    }
}

/// A Markdown table of `settings`: one row per setting, in declaration order.
pub(crate) fn markdown_table(settings: &[Setting]) -> String {
    let mut out =
        String::from("| Key | Variable | Default | Accepts | What it does |\n|---|---|---|---|---|\n");
    for s in settings {
        let var = s.var.map_or_else(|| "—".to_owned(), |v| format!("`{v}`"));
        let default = match (s.default)() {
            unset if unset == "unset" => unset,
            value => format!("`{value}`"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {var} | {default} | {} | {} |",
            s.key,
            s.accepts.replace('|', "\\|"),
            s.doc.replace('|', "\\|")
        );
    }
    out
}

// ---- Parsers of variable values ---------------------------------------------------------

/// `true`/`false` and the usual spellings (`1`, `yes`, `on`, …), any case.
pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn parse_whole<T: std::str::FromStr>(value: &str, max: impl std::fmt::Display) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("expected a whole number from 0 to {max}"))
}

/// A whole number whose range ends at 1024 (workers, actors).
pub(crate) fn whole_to_1024(value: &str) -> Result<usize, Rejected> {
    Ok(parse_whole(value, 1024)?)
}

/// Text with surrounding white space removed.
#[expect(clippy::unnecessary_wraps, reason = "it has the signature of every parser")]
pub(crate) fn trimmed(value: &str) -> Result<String, Rejected> {
    Ok(value.trim().to_owned())
}

impl FromVar for bool {
    const ACCEPTS: &'static str = "`true` or `false`";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(parse_bool(value)?)
    }
}

impl FromVar for Option<bool> {
    const ACCEPTS: &'static str = "`true`, `false` or unset";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(Some(parse_bool(value)?))
    }
}

impl FromVar for u64 {
    const ACCEPTS: &'static str = "a whole number";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(parse_whole(value, u64::MAX)?)
    }
}

impl FromVar for usize {
    const ACCEPTS: &'static str = "a whole number";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(parse_whole(value, usize::MAX)?)
    }
}

impl FromVar for String {
    const ACCEPTS: &'static str = "text";

    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.to_owned())
    }
}

impl FromVar for Option<String> {
    const ACCEPTS: &'static str = "text, or unset";

    /// Empty is unset.
    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
    }
}

impl FromVar for Option<PathBuf> {
    const ACCEPTS: &'static str = "a path, or unset";

    /// Empty is unset.
    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()))
    }
}

impl FromVar for Vec<String> {
    const ACCEPTS: &'static str = "names (`A,B` in the variable)";

    /// Comma-separated; empty items are dropped.
    fn from_var(value: &str) -> Result<Self, Rejected> {
        Ok(value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect())
    }
}
