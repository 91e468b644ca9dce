//! Parameter validation and default filling, and the CLI's parameter forms (SPEC §7).

use serde_json::{Map, Value as Json};

use crate::error::AgentRuntimeError;
use crate::manifest::{MethodSpec, ParamType};

/// Parameters of a call, as a JSON object.
pub type Params = Map<String, Json>;

/// Checks `params` against the method's declaration and fills in defaults.
///
/// Every problem is reported at once, each naming its parameter: missing required ones,
/// unknown ones, and values of the wrong type. Optional parameters may be `null`.
pub fn validate_parameters(
    method_name: &str,
    method: &MethodSpec,
    mut params: Params,
) -> Result<Params, AgentRuntimeError> {
    let mut problems = Vec::new();
    for key in params.keys() {
        if !method.parameters.contains_key(key) {
            problems.push(format!("unknown parameter '{key}'"));
        }
    }
    let mut filled = Params::new();
    for (name, spec) in &method.parameters {
        match params.remove(name) {
            Some(Json::Null) if !spec.required => {
                filled.insert(name.clone(), Json::Null);
            }
            Some(value) if spec.param_type.accepts(&value) => {
                filled.insert(name.clone(), value);
            }
            Some(value) => problems.push(format!(
                "parameter '{name}' must be of type {}, got {}",
                spec.param_type,
                json_type_name(&value)
            )),
            None if spec.required => problems.push(format!("missing required parameter '{name}'")),
            None => {
                if let Some(default) = &spec.default {
                    filled.insert(name.clone(), default.clone());
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(filled)
    } else {
        Err(AgentRuntimeError::InvalidParameters {
            method: method_name.to_owned(),
            problems,
            signature: method.signature(method_name),
        })
    }
}

fn json_type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "number",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Why command-line parameters could not be read (a usage error, exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliParamsError {
    /// The argument looked like JSON but did not parse as an object.
    #[error("PARAMS is not a JSON object: {0}")]
    NotAnObject(String),
    /// A plain string was given, but the method has no single required string parameter.
    #[error(
        "`{arg}` is neither a JSON object nor key=value, and {method} has no single required string parameter to take it"
    )]
    Ambiguous {
        /// The argument.
        arg: String,
        /// The method's signature.
        method: String,
    },
    /// A key=value value does not fit the declared type.
    #[error("{key}={value}: {reason}")]
    BadValue {
        /// The parameter.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The same key twice.
    #[error("parameter '{0}' given twice")]
    Duplicate(String),
}

/// Reads the CLI's PARAMS forms: one JSON object, `key=value` pairs typed by the
/// manifest, or one plain string for the method's single required string parameter.
pub fn parse_cli_params(
    method_name: &str,
    method: Option<&MethodSpec>,
    args: &[String],
) -> Result<Params, CliParamsError> {
    match args {
        [] => return Ok(Params::new()),
        [one] if one.trim_start().starts_with('{') => {
            return match serde_json::from_str::<Json>(one) {
                Ok(Json::Object(map)) => Ok(map),
                Ok(_) => Err(CliParamsError::NotAnObject("it is not an object".to_owned())),
                Err(e) => Err(CliParamsError::NotAnObject(e.to_string())),
            };
        }
        _ => {}
    }
    let mut params = Params::new();
    for arg in args {
        let Some((key, raw)) = arg.split_once('=').filter(|(k, _)| is_key(k)) else {
            if args.len() == 1
                && let Some(name) = method.and_then(single_required_string)
            {
                params.insert(name, Json::String(arg.clone()));
                return Ok(params);
            }
            return Err(CliParamsError::Ambiguous {
                arg: arg.clone(),
                method: method.map_or_else(|| method_name.to_owned(), |m| m.signature(method_name)),
            });
        };
        let declared = method.and_then(|m| m.parameters.get(key)).map(|p| p.param_type);
        let value = typed_value(declared, raw).map_err(|reason| CliParamsError::BadValue {
            key: key.to_owned(),
            value: raw.to_owned(),
            reason,
        })?;
        if params.insert(key.to_owned(), value).is_some() {
            return Err(CliParamsError::Duplicate(key.to_owned()));
        }
    }
    Ok(params)
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn single_required_string(method: &MethodSpec) -> Option<String> {
    let mut required = method.parameters.iter().filter(|(_, p)| p.required);
    match (required.next(), required.next()) {
        (Some((name, p)), None) if p.param_type == ParamType::String => Some(name.clone()),
        _ => None,
    }
}

fn typed_value(declared: Option<ParamType>, raw: &str) -> Result<Json, String> {
    let parse_json = || serde_json::from_str::<Json>(raw);
    match declared {
        Some(ParamType::String) => Ok(Json::String(raw.to_owned())),
        Some(ParamType::Integer) => parse_integer(raw).ok_or_else(|| "expected an integer".to_owned()),
        Some(ParamType::Number) => match parse_json() {
            Ok(n @ Json::Number(_)) => Ok(n),
            _ => Err("expected a number".to_owned()),
        },
        Some(ParamType::Boolean) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(Json::Bool(true)),
            "false" | "no" | "0" | "off" => Ok(Json::Bool(false)),
            _ => Err("expected true or false".to_owned()),
        },
        Some(t @ (ParamType::Array | ParamType::Object)) => match parse_json() {
            Ok(v) if t.accepts(&v) => Ok(v),
            _ => Err(format!("expected a JSON {t}")),
        },
        // Not declared: JSON when it parses, else the text. Validation then names it.
        None => Ok(parse_json().unwrap_or_else(|_| Json::String(raw.to_owned()))),
    }
}

/// An integer of any size, exactly (`+7`, `007` and `-0` allowed, as Rust's parser does).
fn parse_integer(raw: &str) -> Option<Json> {
    let text = raw.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = unsigned.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let literal = if negative && digits != "0" { format!("-{digits}") } else { digits.to_owned() };
    serde_json::from_str::<serde_json::Number>(&literal).ok().map(Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AgentManifest;
    use serde_json::json;

    fn hello() -> AgentManifest {
        AgentManifest::from_yaml_str(
            r"
name: h
version: '1'
description: d
author: a
interface:
  methods:
    greet:
      description: d
      parameters:
        name: {type: string, required: true}
    echo:
      description: d
      parameters:
        text: {type: string, required: true}
        count: {type: integer, default: 3}
        ratio: {type: number, default: 0.5}
        flag: {type: boolean, default: false}
        items: {type: array}
",
            "agent.yaml",
        )
        .unwrap()
    }

    fn obj(v: &Json) -> Params {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_are_filled_and_optional_left_out() {
        let m = hello();
        let out = validate_parameters("echo", m.method("echo").unwrap(), obj(&json!({"text": "x"}))).unwrap();
        assert_eq!(Json::Object(out), json!({"text": "x", "count": 3, "ratio": 0.5, "flag": false}));
    }

    #[test]
    fn every_problem_is_named() {
        let m = hello();
        let err = validate_parameters(
            "echo",
            m.method("echo").unwrap(),
            obj(&json!({"count": "abc", "zzz": 1, "ratio": 2})),
        )
        .unwrap_err();
        let AgentRuntimeError::InvalidParameters { problems, signature, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            problems,
            &[
                "unknown parameter 'zzz'",
                "missing required parameter 'text'",
                "parameter 'count' must be of type integer, got string",
            ]
        );
        assert_eq!(
            signature,
            "echo(text: string, count?: integer, ratio?: number, flag?: boolean, items?: array)"
        );
    }

    #[test]
    fn integers_are_numbers_but_not_the_reverse() {
        assert!(ParamType::Number.accepts(&json!(2)));
        assert!(!ParamType::Integer.accepts(&json!(2.5)));
    }

    #[test]
    fn integers_of_any_size_are_integers_and_stay_exact() {
        let huge: Json = serde_json::from_str("12345678901234567890123").unwrap();
        let negative: Json = serde_json::from_str("-98765432109876543210987654321").unwrap();
        assert!(ParamType::Integer.accepts(&huge));
        assert!(ParamType::Integer.accepts(&negative));
        assert!(ParamType::Integer.accepts(&json!(1)) && ParamType::Integer.accepts(&json!(u64::MAX)));
        for not_integer in ["2.0", "1e3", "-1.5E-3", "\"1\"", "true", "[1]"] {
            let v: Json = serde_json::from_str(not_integer).unwrap();
            assert!(!ParamType::Integer.accepts(&v), "{not_integer}");
        }
        let m = hello();
        let args = ["text=x".to_owned(), "count=12345678901234567890123".to_owned()];
        let parsed = parse_cli_params("echo", m.method("echo"), &args).unwrap();
        let filled = validate_parameters("echo", m.method("echo").unwrap(), parsed).unwrap();
        assert_eq!(filled["count"].to_string(), "12345678901234567890123");
        let json_arg = [r#"{"text": "x", "count": -98765432109876543210987654321}"#.to_owned()];
        let parsed = parse_cli_params("echo", m.method("echo"), &json_arg).unwrap();
        let filled = validate_parameters("echo", m.method("echo").unwrap(), parsed).unwrap();
        assert_eq!(filled["count"].to_string(), "-98765432109876543210987654321");
        for (raw, want) in [("+7", "7"), ("007", "7"), ("-0", "0"), (" 42 ", "42")] {
            assert_eq!(parse_integer(raw).map(|v| v.to_string()).as_deref(), Some(want), "{raw}");
        }
        for bad in ["", "-", "1.0", "1e3", "0x10", "12a", "--1"] {
            assert_eq!(parse_integer(bad), None, "{bad}");
        }
    }

    #[test]
    fn cli_forms() {
        let m = hello();
        let greet = m.method("greet");
        let echo = m.method("echo");
        let args = |a: &[&str]| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(parse_cli_params("greet", greet, &args(&[r#"{"name":"W"}"#])).unwrap()["name"], "W");
        assert_eq!(parse_cli_params("greet", greet, &args(&["World"])).unwrap()["name"], "World");
        assert_eq!(parse_cli_params("greet", greet, &args(&["name=a=b"])).unwrap()["name"], "a=b");
        let typed =
            parse_cli_params("echo", echo, &args(&["text=1", "count=7", "flag=yes", "items=[1]"])).unwrap();
        assert_eq!(Json::Object(typed), json!({"text": "1", "count": 7, "flag": true, "items": [1]}));
        assert!(matches!(
            parse_cli_params("echo", echo, &args(&["count=abc"])),
            Err(CliParamsError::BadValue { .. })
        ));
        assert_eq!(parse_cli_params("echo", echo, &args(&["plain"])).unwrap()["text"], "plain");
        assert!(matches!(
            parse_cli_params("other", None, &args(&["plain"])),
            Err(CliParamsError::Ambiguous { .. })
        ));
        assert!(matches!(
            parse_cli_params("echo", echo, &args(&["a", "b"])),
            Err(CliParamsError::Ambiguous { .. })
        ));
        assert!(parse_cli_params("greet", greet, &args(&["[1]"])).is_ok());
        assert!(matches!(
            parse_cli_params("greet", greet, &args(&["{bad"])),
            Err(CliParamsError::NotAnObject(_))
        ));
        assert!(matches!(
            parse_cli_params("greet", greet, &args(&["name=a", "name=b"])),
            Err(CliParamsError::Duplicate(_))
        ));
    }
}
