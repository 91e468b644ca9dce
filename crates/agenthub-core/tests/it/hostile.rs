//! Hostile input never panics and never allocates without bound: every failure is a typed
//! error. Property tests over arbitrary text, JSON and bytes, plus the classic attacks.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use agenthub_core::{
    AgentManifest, AgentRuntimeError, MAX_ALIAS_EXPANSION, ManifestError, ProtocolViolation,
    parse_cli_params, read_agent_output, resolve_agent, validate_parameters,
};
use proptest::prelude::*;
use serde_json::Value as Json;

const MANIFEST: &str = "name: t\nversion: '1'\ndescription: d\nauthor: a\ninterface:\n  methods:\n    m:\n      description: d\n      parameters:\n        s: {type: string, required: true}\n        n: {type: integer, default: 1}\n        f: {type: number}\n        b: {type: boolean}\n        a: {type: array}\n        o: {type: object}\n";

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Json::from),
        ".{0,20}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..8)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn manifest_parser_never_panics_on_text(text in ".{0,400}") {
        let _ = AgentManifest::from_yaml_str(&text, "agent.yaml");
    }

    #[test]
    fn manifest_parser_never_panics_on_yaml_shaped_text(
        lines in prop::collection::vec("( {0,4})(name|version|interface|methods|parameters|type|required|default|[a-z]{1,6}): ?(\\[|\\{|'|\"|-|[a-z0-9]{0,5}|!!str|&a|\\*a)?", 0..20)
    ) {
        let _ = AgentManifest::from_yaml_str(&lines.join("\n"), "agent.yaml");
    }

    #[test]
    fn parameter_validation_never_panics(params in prop::collection::btree_map("[a-z]{1,2}", json_value(), 0..8)) {
        let manifest = AgentManifest::from_yaml_str(MANIFEST, "agent.yaml").unwrap();
        let method = manifest.method("m").unwrap();
        match validate_parameters("m", method, params.into_iter().collect()) {
            Ok(filled) => prop_assert!(filled.contains_key("s") && filled.contains_key("n")),
            Err(err) => prop_assert_eq!(err.error_type(), "InvalidParametersError"),
        }
    }

    #[test]
    fn cli_params_never_panic(args in prop::collection::vec(".{0,30}", 0..5)) {
        let manifest = AgentManifest::from_yaml_str(MANIFEST, "agent.yaml").unwrap();
        let _ = parse_cli_params("m", manifest.method("m"), &args);
        let _ = parse_cli_params("m", None, &args);
    }

    #[test]
    fn output_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_agent_output(&bytes);
    }

    #[test]
    fn output_reader_round_trips_any_result(value in json_value(), noise in "[a-z ]{0,40}") {
        let text = format!("{noise}\n{}\n", serde_json::json!({"result": value.clone()}));
        let out = read_agent_output(text.as_bytes()).unwrap();
        prop_assert_eq!(out.reply, agenthub_core::AgentReply::Result(value));
    }

    #[test]
    fn agent_ids_never_escape_the_root(id in "[a-zA-Z0-9./_~-]{0,24}") {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("agents");
        std::fs::create_dir_all(root.join("ns/ok")).unwrap();
        if let Ok(found) = resolve_agent(&id, &root)
            && found.id.is_some()
        {
            prop_assert!(found.dir.starts_with(root.canonicalize().unwrap()), "{id} -> {:?}", found.dir);
        }
    }
}

fn assert_quick_typed_error(text: &str) {
    let started = Instant::now();
    let result = AgentManifest::from_yaml_str(text, "agent.yaml");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    match result {
        Err(
            ManifestError::Syntax { .. }
            | ManifestError::Invalid { .. }
            | ManifestError::AliasExpansion { .. },
        ) => {}
        other => panic!("expected a typed error, got {other:?}"),
    }
}

#[test]
fn billion_laughs_is_refused() {
    let mut doc =
        String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let mut prev = 'a';
    for name in "bcdefghijklm".chars() {
        let _ = writeln!(
            doc,
            "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]"
        );
        prev = name;
    }
    assert_quick_typed_error(&doc);
}

#[test]
fn alias_amplification_is_refused_quickly() {
    // Issue 6 item 12: 62 KB, one anchor of 1,000 items referenced 20,000 times.
    let items = vec!["x"; 1000].join(",");
    let refs = vec!["*a"; 20_000].join(",");
    let text =
        format!("name: n\nversion: '1'\ndescription: d\nauthor: a\nitems: &a [{items}]\nbomb: [{refs}]\n");
    assert!(text.len() < 70_000, "{}", text.len());
    let started = Instant::now();
    let err = AgentManifest::from_yaml_str(&text, "agent.yaml").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, ManifestError::AliasExpansion { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Invalid agent.yaml: agent.yaml expands to more than {MAX_ALIAS_EXPANSION} nodes through YAML aliases"
        )
    );
    let runtime_err = AgentRuntimeError::from(err);
    assert_eq!(runtime_err.error_type(), "InvalidManifestError");
    assert!(runtime_err.suggestion().unwrap().contains("anchors"));
}

#[test]
fn a_few_aliases_still_load() {
    let text = "name: n\nversion: '1'\ndescription: d\nauthor: a\ndefaults: &p {type: string, required: true}\ninterface:\n  methods:\n    m:\n      description: d\n      parameters:\n        a: *p\n        b: *p\n";
    let m = AgentManifest::from_yaml_str(text, "agent.yaml").unwrap();
    assert_eq!(m.method("m").unwrap().signature("m"), "m(a: string, b: string)");
}

#[test]
fn deep_nesting_is_refused() {
    assert_quick_typed_error(&format!("name: {}{}", "[".repeat(100_000), "]".repeat(100_000)));
    assert_quick_typed_error(&"- ".repeat(50_000));
    assert_quick_typed_error(&format!("interface: {}", "{a: ".repeat(10_000)));
}

#[test]
fn oversized_manifests_are_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = format!("name: x\ndescription: \"{}\"\n", "x".repeat(2 << 20));
    std::fs::write(tmp.path().join("agent.yaml"), huge).unwrap();
    let err = AgentManifest::load(tmp.path()).unwrap_err();
    assert!(matches!(err, ManifestError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than"));
}

#[test]
fn multi_megabyte_lines_are_read_or_refused_without_panic() {
    let big = "x".repeat(8 << 20);
    let out = read_agent_output(format!("{{\"result\": \"{big}\"}}").as_bytes()).unwrap();
    assert_eq!(out.reply, agenthub_core::AgentReply::Result(Json::String(big.clone())));
    let err = read_agent_output(format!("{big}\n{big}").as_bytes()).unwrap_err();
    let ProtocolViolation::NotJson { last_line } = err else { panic!("{err:?}") };
    assert!(last_line.len() <= 800, "the excerpt must stay short");
    let noisy = read_agent_output(format!("{big}\n{{\"result\": 1}}").as_bytes()).unwrap();
    assert_eq!(noisy.noise.map(|n| n.len()), Some(big.len()));
}

#[test]
fn deeply_nested_json_output_is_a_protocol_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = read_agent_output(deep.as_bytes()).unwrap_err();
    assert_eq!(err, ProtocolViolation::TooDeep);
}

#[test]
fn traversal_attempts_are_agent_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("agents");
    std::fs::create_dir_all(root.join("ns/ok")).unwrap();
    std::fs::create_dir_all(tmp.path().join("secret")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("ns/link")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
    for bad in [
        "ns/..",
        "../secret",
        "ns/link",
        "up/secret",
        "ns//ok",
        "ns/ok/..",
        "ns\\..\\..",
        "ns/%2e%2e",
        "",
        "/",
    ] {
        match resolve_agent(bad, &root) {
            Err(AgentRuntimeError::AgentNotFound { .. }) => {}
            Ok(found) if bad.starts_with('/') || bad.starts_with("..") => {
                // Explicit paths are the caller's choice and are not confined to the root.
                assert!(found.id.is_none());
            }
            other => panic!("{bad:?} resolved: {other:?}"),
        }
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs` (a hang).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(secs)).expect("hung")
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

type Make<'a> = &'a dyn Fn(&std::path::Path);

#[test]
fn hostile_manifest_files_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.yaml");
    std::fs::write(&outside, MANIFEST).unwrap();
    let cases: [(&str, Make, &str); 4] = [
        ("fifo", &|dir| mkfifo(&dir.join("agent.yaml")), "a FIFO, not a regular file"),
        (
            "zero",
            &|dir| std::os::unix::fs::symlink("/dev/zero", dir.join("agent.yaml")).unwrap(),
            "a device, not a regular file",
        ),
        (
            "escape",
            &|dir| std::os::unix::fs::symlink(&outside, dir.join("agent.yml")).unwrap(),
            "outside the agent directory",
        ),
        ("dir", &|dir| std::fs::create_dir(dir.join("agent.yaml")).unwrap(), "a directory"),
    ];
    for (name, make, want) in cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        make(&dir);
        let err = within(5, move || AgentManifest::load(&dir)).unwrap_err();
        assert!(matches!(err, ManifestError::Unreadable { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(want), "{name}: {err}");
        let err = AgentRuntimeError::from(err);
        assert_eq!(err.error_type(), "InvalidManifestError");
        let suggestion = err.suggestion().unwrap();
        assert!(!suggestion.contains("permission") && !suggestion.contains("disk"), "{name}: {suggestion}");
    }
}

#[test]
fn a_manifest_symlink_inside_the_agent_directory_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("real.yaml"), MANIFEST).unwrap();
    std::os::unix::fs::symlink("real.yaml", tmp.path().join("agent.yaml")).unwrap();
    let (m, path) = AgentManifest::load(tmp.path()).unwrap();
    assert_eq!(m.name, "t");
    assert!(path.ends_with("agent.yaml"));
}
