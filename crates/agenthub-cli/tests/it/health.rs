//! `env create|sync|rebuild|path|remove|gc`, `doctor`, `completions`, and what `list` and
//! `info` show of provenance and environments (the listing cache never shows stale data
//! and survives a corrupt one), with the real uv and Python.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use agenthub_testkit::{Behaviour, TestAgent, TestContext, TestMethod};
use serde_json::{Value as Json, json};

use super::{agenthub, json_of};

/// A command may build an environment (or install uv) first.
const LIMIT: Duration = Duration::from_secs(240);

fn run(ctx: &TestContext, args: &[&str]) -> Output {
    agenthub(ctx).args(args).timeout(LIMIT).output().unwrap()
}

/// Runs and asserts success.
fn ok(ctx: &TestContext, args: &[&str]) -> Output {
    let out = run(ctx, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Output with the home written as `[HOME]` and build names as `[BUILD]`.
fn redact(ctx: &TestContext, bytes: &[u8]) -> String {
    let home = ctx.home().canonicalize().unwrap().display().to_string();
    let out = text(bytes).replace(&home, "[HOME]").replace(&ctx.home().display().to_string(), "[HOME]");
    regex_free_build_names(&out)
}

/// Replaces `<32 hex>-<pid>-<9 digits>` build names by `[BUILD]` (no regex crate here).
fn regex_free_build_names(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(['/', '\n', '"', ' ']) {
        let (body, sep) = match word.char_indices().last() {
            Some((i, c)) if ['/', '\n', '"', ' '].contains(&c) => (&word[..i], &word[i..]),
            _ => (word, ""),
        };
        let parts: Vec<&str> = body.split('-').collect();
        let is_build = parts.len() == 3
            && parts[0].len() == 32
            && parts[0].bytes().all(|b| b.is_ascii_hexdigit())
            && parts[2].len() == 9;
        out.push_str(if is_build { "[BUILD]" } else { body });
        out.push_str(sep);
    }
    out
}

fn ctx_with(name: &str) -> (TestContext, PathBuf) {
    let ctx = TestContext::new();
    let dir = ctx.install(&TestAgent::new(name).method(TestMethod::new("hi").behaves(Behaviour::EchoParams)));
    (ctx, dir)
}

fn builds(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(".venv.d"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    names
}

#[test]
fn env_create_sync_path_and_remove() {
    let (ctx, dir) = ctx_with("envy");

    let out = run(&ctx, &["env", "path", "test/envy"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stderr), @r"
    error: the environment is missing
      help: build it with `agenthub env create test/envy` (or run the agent once)
    ");

    let out = run(&ctx, &["env", "create", "test/envy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("created "), "{}", text(&out.stdout));
    let first = builds(&dir);
    assert_eq!(first.len(), 1);

    // Up to date: create and sync leave it alone.
    let out = run(&ctx, &["env", "create", "test/envy"]);
    assert_eq!(redact(&ctx, &out.stdout), "[HOME]/agents/test/envy/.venv is ready\n");
    let out = run(&ctx, &["env", "sync", "test/envy"]);
    assert_eq!(redact(&ctx, &out.stdout), "[HOME]/agents/test/envy/.venv is ready\n");
    assert_eq!(builds(&dir), first);

    let out = run(&ctx, &["env", "path", "test/envy"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(redact(&ctx, &out.stdout), "[HOME]/agents/test/envy/.venv\n");
    let venv = PathBuf::from(text(&out.stdout).trim());
    assert!(venv.join("bin/python").exists());
    let v = json_of(&run(&ctx, &["env", "path", "test/envy", "--json"]));
    assert_eq!(v["state"], "ready");
    assert_eq!(redact(&ctx, v["path"].as_str().unwrap().as_bytes()), "[HOME]/agents/test/envy/.venv");
    let v = json_of(&run(&ctx, &["env", "sync", "test/envy", "--json"]));
    assert_eq!((v["state"].as_str(), v["built"].as_bool()), (Some("ready"), Some(false)), "{v}");
    let v = json_of(&run(&ctx, &["env", "rebuild", "test/envy", "--json"]));
    assert_eq!((v["state"].as_str(), v["built"].as_bool()), (Some("ready"), Some(true)), "{v}");
    let first = builds(&dir);

    // A changed requirement makes it stale: sync rebuilds, create does not.
    let manifest = dir.join("agent.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, yaml.replacen('{', "{\"python_version\": \"3.8+\",", 1)).unwrap();
    let out = run(&ctx, &["env", "create", "test/envy"]);
    assert_eq!(
        redact(&ctx, &out.stdout),
        "[HOME]/agents/test/envy/.venv is stale (stale: `agenthub env sync test/envy` rebuilds it)\n"
    );
    let out = run(&ctx, &["env", "sync", "test/envy"]);
    assert!(text(&out.stdout).starts_with("synced "), "{}", text(&out.stderr));
    assert_ne!(builds(&dir), first);

    let out = run(&ctx, &["env", "remove", "test/envy", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_of(&out);
    let removed: Vec<String> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| redact(&ctx, p.as_str().unwrap().as_bytes()))
        .collect();
    assert!(removed.contains(&"[HOME]/agents/test/envy/.venv".to_owned()), "{removed:?}");
    assert!(removed.contains(&"[HOME]/agents/test/envy/.venv.d".to_owned()), "{removed:?}");
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert!(!dir.join(".venv").exists() && !dir.join(".venv.d").exists());
    assert!(dir.join("agent.yaml").exists() && dir.join("agent.py").exists(), "only the environment goes");

    let out = run(&ctx, &["env", "remove", "test/envy"]);
    assert_eq!(text(&out.stdout), "nothing to remove: the agent has no environment\n");
}

#[test]
fn env_path_after_a_failed_build_says_it_failed_and_how_to_see_why() {
    let ctx = TestContext::new();
    let agent = TestAgent::new("failing").method(TestMethod::new("hi").behaves(Behaviour::EchoParams));
    let dir = ctx.install(&agent.clone().dependency("nothing-here @ file:///nonexistent/agenthub-test"));
    let out = run(&ctx, &["exec", "test/failing", "hi", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["error_type"], "EnvironmentError", "{v}");
    let suggestion = v["suggestion"].as_str().unwrap();
    assert!(
        suggestion.ends_with("`agenthub env rebuild test/failing` rebuilds from scratch"),
        "{suggestion}"
    );

    let out = run(&ctx, &["env", "path", "test/failing"]);
    assert_eq!(out.status.code(), Some(1));
    let said = redact(&ctx, &out.stderr);
    let (first, help) = said.split_once('\n').unwrap();
    assert!(first.starts_with("error: the environment is missing: its last build failed: `"), "{said}");
    assert!(
        first.contains("nothing-here @ file:///nonexistent/agenthub-test` failed (exit status"),
        "{said}"
    );
    assert_eq!(
        help,
        "  help: `agenthub -v env create test/failing` builds it again and shows what the installer prints\n"
    );

    // A build that succeeds forgets the failure.
    assert!(dir.join(".venv.d").join(agenthub_env::LAST_FAILURE).exists());
    agent.write_to(&dir).unwrap();
    ok(&ctx, &["env", "create", "test/failing"]);
    assert!(!dir.join(".venv.d").join(agenthub_env::LAST_FAILURE).exists());
}

#[test]
fn env_remove_never_touches_what_agenthub_did_not_make() {
    let (ctx, dir) = ctx_with("own");
    std::fs::create_dir_all(dir.join(".venv/bin")).unwrap();
    std::fs::write(dir.join(".venv/precious"), "mine").unwrap();
    let out = run(&ctx, &["env", "remove", "test/own"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("agenthub did not make"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join(".venv/precious")).unwrap(), "mine");

    // A builds directory that is a symlink elsewhere is refused, and nothing behind it goes.
    std::fs::remove_dir_all(dir.join(".venv")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.join(".venv.d")).unwrap();
    let out = run(&ctx, &["env", "remove", "test/own", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["error_type"], "EnvironmentError");
    assert!(elsewhere.path().join("keep").exists());

    // `env path` calls a foreign environment what it is.
    std::fs::remove_file(dir.join(".venv.d")).unwrap();
    std::fs::create_dir(dir.join(".venv")).unwrap();
    let out = run(&ctx, &["env", "path", "test/own"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: the environment is foreign"), "{}", text(&out.stderr));
}

#[test]
fn env_gc_frees_unused_builds_and_keeps_the_current_one() {
    let (ctx, dir) = ctx_with("gc");
    for _ in 0..3 {
        let out = run(&ctx, &["env", "rebuild", "test/gc"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    // A rebuild keeps the build it replaced (calls may still run in it), and a killed build
    // leaves one behind: make one.
    std::fs::create_dir(dir.join(".venv.d/0123456789abcdef0123456789abcdef-1-000000001")).unwrap();
    std::fs::write(dir.join(".venv.d/0123456789abcdef0123456789abcdef-1-000000001/half"), "x").unwrap();
    // Something that is not a build stays, whatever it is: also a symlink named like one.
    std::fs::create_dir(dir.join(".venv.d/not-a-build")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), "x").unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        dir.join(".venv.d/fedcba9876543210fedcba9876543210-2-000000002"),
    )
    .unwrap();
    let current = std::fs::read_link(dir.join(".venv")).unwrap();
    assert_eq!(builds(&dir).len(), 5);

    let out = run(&ctx, &["env", "gc", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["removed"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["skipped"], json!([]));
    assert_eq!(v["errors"], json!([]));
    assert_eq!(std::fs::read_link(dir.join(".venv")).unwrap(), current);
    assert!(dir.join(".venv/bin/python").exists(), "the environment in use stays");
    assert!(dir.join(".venv.d/not-a-build").exists());
    assert!(outside.path().join("precious").exists(), "gc followed a symlink");

    let out = run(&ctx, &["env", "gc"]);
    assert_eq!(text(&out.stdout), "freed 0 bytes (0 B)\n");
    let out = run(&ctx, &["exec", "test/gc", "hi", "--json"]);
    assert_eq!(json_of(&out)["result"], json!({}));
}

#[test]
fn env_gc_skips_an_agent_whose_build_is_in_progress() {
    let (ctx, dir) = ctx_with("busy");
    ok(&ctx, &["env", "rebuild", "test/busy"]);
    ok(&ctx, &["env", "rebuild", "test/busy"]);
    let lock = std::fs::File::options().write(true).open(dir.join(".venv.lock")).unwrap();
    lock.lock().unwrap();
    let v = json_of(&run(&ctx, &["env", "gc", "--json"]));
    assert_eq!(v["removed"], json!([]));
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1, "{v}");
    drop(lock);
    let v = json_of(&run(&ctx, &["env", "gc", "--json"]));
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn doctor_reports_broken_environments_with_fixes_and_exits_1() {
    let ctx = TestContext::new();
    let fine =
        ctx.install(&TestAgent::new("fine").method(TestMethod::new("hi").behaves(Behaviour::EchoParams)));
    ok(&ctx, &["env", "create", "test/fine"]);
    let out = run(&ctx, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let v = json_of(&out);
    assert_eq!(v["ok"], true);
    for key in ["home", "interpreters", "tools", "environments", "problems"] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["home"]["agents"], 1);
    assert_eq!(v["home"]["writable"], true);
    assert!(v["interpreters"][0]["version"].as_str().unwrap().starts_with("3."), "{v}");
    assert_eq!(v["tools"]["uv"]["origin"], "path");
    assert!(v["tools"]["uv"]["version"].as_str().unwrap().starts_with("uv "));
    assert!(v["tools"]["git"]["version"].as_str().unwrap().starts_with("git version"));
    assert_eq!(v["environments"], json!([{"agent": "test/fine", "state": "ready"}]));

    // A foreign environment, a marker removed, a dead run record, a staging leftover.
    let foreign = ctx.install(&TestAgent::new("foreign").method(TestMethod::new("hi")));
    std::fs::create_dir(foreign.join(".venv")).unwrap();
    std::fs::remove_file(fine.join(".venv/agenthub-env.json")).unwrap();
    std::fs::create_dir_all(ctx.home().join("run")).unwrap();
    std::fs::write(ctx.home().join("run/999999999-0-1"), "999999999 1 abc\n").unwrap();
    std::fs::create_dir(ctx.home().join("agents/test/.new.staging-1-2")).unwrap();

    let out = run(&ctx, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    let kinds: Vec<(&str, &str)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["severity"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .filter(|(_, k)| !k.starts_with("python") && *k != "uv_missing" && *k != "git_missing")
        .collect();
    assert_eq!(
        kinds,
        [
            ("error", "env_broken"),
            ("error", "env_foreign"),
            ("warning", "stale_run_records"),
            ("warning", "install_staging"),
        ]
    );
    for p in v["problems"].as_array().unwrap() {
        assert!(!p["fix"].as_str().unwrap().is_empty(), "{p}");
    }

    let out = run(&ctx, &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let human = redact(&ctx, &out.stdout);
    // Problem lines come in pairs (message, fix); those about this machine's tools vary.
    let lines: Vec<&str> = human.lines().skip_while(|l| !l.starts_with("error")).collect();
    let problems = lines
        .chunks(2)
        .filter(|pair| {
            pair.len() == 2 && !["python", "uv is not", "git is not"].iter().any(|m| pair[0].contains(m))
        })
        .map(|pair| pair.join("\n"))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(problems, @r"
    error: test/fine: environment broken: it has no readable agenthub-env.json marker
      fix: Run `agenthub env rebuild test/fine` (the next call also rebuilds it)
    error: test/foreign: environment foreign: [HOME]/agents/test/foreign/.venv is a directory agenthub did not make (it has no agenthub-env.json)
      fix: Move [HOME]/agents/test/foreign/.venv away (agenthub never deletes what it did not make), or set environment.venv_location to another name
    warning: 1 run records of agenthub processes that died
      fix: Run any `agenthub exec` (it clears them, killing what is left of those calls)
    warning: [HOME]/agents/test/.new.staging-1-2 is left from an install that did not finish
      fix: When no `agenthub install` is running, remove it: rm -rf '[HOME]/agents/test/.new.staging-1-2'
    ");
    assert!(human.contains("environments  0 ready, 0 stale, 1 broken, 0 missing, 1 foreign"), "{human}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    let ctx = TestContext::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&ctx, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("agenthub") && script.contains("doctor") && script.contains("rebuild"),
            "{shell}"
        );
    }
    let out = run(&ctx, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    // Needs no configuration: a broken one does not stop it.
    let out = agenthub(&ctx)
        .env("AGENTHUB_MAX_MEMORY_USAGE", "lots")
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

fn write_record(dir: &Path, reference: &str, commit: &str) {
    let record = json!({
        "agent_name": "test/prov", "github_url": "file:///srv/test/prov", "commit_sha": commit,
        "requested_ref": reference, "installed_at": "2026-01-01T00:00:00Z",
        "source": format!("test/prov@{reference}"), "source_kind": "git", "agenthub_version": "0.1.0"
    });
    std::fs::write(dir.join(".agenthub-install.json"), record.to_string()).unwrap();
}

#[test]
fn list_and_info_show_provenance_and_environment_state() {
    let ctx = TestContext::new();
    let dir = ctx.install(
        &TestAgent::new("prov")
            .method(TestMethod::new("greet").param("name", agenthub_core::ParamType::String, true))
            .method(TestMethod::new("tally").param("items", agenthub_core::ParamType::Array, true)),
    );
    ctx.install(&TestAgent::new("plain").method(TestMethod::new("hi")));
    write_record(&dir, "v1", "0123456789abcdef0123456789abcdef01234567");
    ok(&ctx, &["env", "create", "test/prov"]);

    let out = run(&ctx, &["list"]);
    insta::assert_snapshot!(text(&out.stdout), @r"
    AGENT       VERSION  ENV      SOURCE                  METHODS
    test/plain  0.1.0    missing  -                       hi
    test/prov   0.1.0    ready    test/prov@v1 (0123456)  greet, tally
    ");
    let v = json_of(&run(&ctx, &["list", "--json"]));
    let prov = &v[1];
    let keys: Vec<&str> = prov.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "path",
            "version",
            "description",
            "methods",
            "source",
            "source_kind",
            "ref",
            "commit",
            "environment"
        ]
    );
    assert_eq!(prov["ref"], "v1");
    assert_eq!(prov["source_kind"], "git");
    assert_eq!(prov["environment"], "ready");
    assert_eq!(v[0]["environment"], "missing");
    assert!(v[0].get("source").is_none());

    let out = run(&ctx, &["info", "test/prov"]);
    let human = redact(&ctx, &out.stdout);
    let tail: String = human
        .lines()
        .filter(|l| {
            l.starts_with("source")
                || l.starts_with("installed")
                || l.starts_with("  agenthub")
                || l.starts_with("examples")
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(tail, @r#"
    source:      file:///srv/test/prov @v1, commit 0123456789abcdef0123456789abcdef01234567
    installed:   2026-01-01T00:00:00Z as `test/prov@v1`
    examples:
      agenthub exec test/prov greet name=text
      agenthub exec test/prov tally '{"items":[]}'
    "#);
    let v = json_of(&run(&ctx, &["info", "test/prov", "--json"]));
    assert_eq!(v["install"]["commit_sha"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(v["environment_state"], "ready");
    assert_eq!(
        v["examples"][0],
        json!({"method": "greet", "command": "agenthub exec test/prov greet name=text"})
    );
    assert_eq!(v["environment"]["backend"], "uv", "the marker stays where it was");
}

#[test]
fn the_listing_cache_never_shows_stale_data() {
    let ctx = TestContext::new();
    let dir = ctx.install(&TestAgent::new("cached").method(TestMethod::new("hi")));
    let version = |ctx: &TestContext| json_of(&run(ctx, &["list", "--json"]))[0]["version"].clone();
    assert_eq!(version(&ctx), "0.1.0");
    // Let the cache take the entry (files changed in the last 2 s are never cached).
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(version(&ctx), "0.1.0");
    assert!(ctx.home().join("cache/list-v1.json").exists());
    let cache = std::fs::read_to_string(ctx.home().join("cache/list-v1.json")).unwrap();
    assert!(cache.contains("test/cached"), "{cache}");

    // Same size, rewritten in place at once: seen at once.
    let manifest = dir.join("agent.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, yaml.replace("\"version\": \"0.1.0\"", "\"version\": \"0.2.0\"")).unwrap();
    assert_eq!(version(&ctx), "0.2.0");
    // A provenance record appears, changes, goes.
    write_record(&dir, "v1", "aaaaaaa");
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["ref"], "v1");
    write_record(&dir, "v2", "bbbbbbb");
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["ref"], "v2");
    std::fs::remove_file(dir.join(".agenthub-install.json")).unwrap();
    assert!(json_of(&run(&ctx, &["list", "--json"]))[0].get("ref").is_none());
    // The environment's state follows the environment.
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["environment"], "missing");
    ok(&ctx, &["env", "create", "test/cached"]);
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["environment"], "ready");
    std::fs::write(dir.join("requirements.txt"), "# nothing\n").unwrap();
    std::fs::write(dir.join("requirements.txt"), "six\n").unwrap();
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["environment"], "stale");
    // An agent removed is gone from the listing.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(json_of(&run(&ctx, &["list", "--json"])), json!([]));
}

#[test]
fn a_corrupt_or_hostile_listing_cache_is_ignored() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("one").method(TestMethod::new("hi")));
    let cache = ctx.home().join("cache/list-v1.json");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let expected = json_of(&run(&ctx, &["list", "--json"]));
    let fake_entry = json!({"config": "x", "entries": {"test/one": {
        "manifest": [null, null], "version": "6.6.6", "description": "lies", "methods": ["evil"],
        "error": null, "record_stamp": null, "record": null, "key_files": null, "env_key": null}}});
    for garbage in [
        b"\x00\xff garbage".to_vec(),
        b"{\"config\": 1}".to_vec(),
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
        fake_entry.to_string().into_bytes(),
    ] {
        std::fs::write(&cache, &garbage).unwrap();
        let out = run(&ctx, &["list", "--json"]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(json_of(&out), expected, "{}", text(&garbage));
    }
    // A symlink or a FIFO in its place is neither followed nor waited on.
    std::fs::remove_file(&cache).unwrap();
    let target = ctx.home().join("target.json");
    std::fs::write(&target, "keep").unwrap();
    std::os::unix::fs::symlink(&target, &cache).unwrap();
    assert_eq!(json_of(&run(&ctx, &["list", "--json"])), expected);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    std::fs::remove_file(&cache).unwrap();
    let fifo = std::ffi::CString::new(cache.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let out = run(&ctx, &["list", "--json"]);
    assert_eq!(json_of(&out), expected);
}

#[test]
fn a_symlinked_cache_directory_is_neither_read_nor_written_through() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("one").method(TestMethod::new("hi")));
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("list-v1.json");
    std::fs::write(&victim, "the user's own file").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), ctx.home().join("cache")).unwrap();
    let out = run(&ctx, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)[0]["id"], "test/one", "{}", text(&out.stdout));
    // Run twice: a second `list` would read a cache written through the link.
    assert_eq!(json_of(&run(&ctx, &["list", "--json"]))[0]["id"], "test/one");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the user's own file");
    let names: Vec<_> =
        std::fs::read_dir(elsewhere.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["list-v1.json"], "something was written through the symlink");
}

fn staging_leftovers(tools: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tools)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".uv.staging-"))
        .map(|e| e.path())
        .collect()
}

/// A `PATH` with the real `python3` and the system directories, and no uv.
fn path_without_uv(dir: &Path) -> String {
    let real = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = PathBuf::from(text(&real.stdout).trim());
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&python, bin.join("python3")).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    assert!(which::which_in("uv", Some(&path), dir).is_err(), "uv is in /usr/bin or /bin: cannot strip it");
    path
}

/// An agent that ships `pyproject.toml` and a `uv.lock` made by the real uv.
fn locked_agent(ctx: &TestContext) -> PathBuf {
    let dir =
        ctx.install(&TestAgent::new("locked").method(TestMethod::new("hi").behaves(Behaviour::EchoParams)));
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"locked\"\nversion = \"0.1.0\"\nrequires-python = \">=3.8\"\ndependencies = []\n",
    )
    .unwrap();
    let uv = which::which("uv").expect("the tests need uv on PATH (scripts/ensure-python-tools)");
    let out = std::process::Command::new(uv)
        .args(["lock", "--quiet", "--offline"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("uv.lock").exists());
    dir
}

#[test]
fn uv_is_provisioned_once_into_the_home_when_an_agent_ships_uv_lock() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let path = path_without_uv(work.path());
    locked_agent(&ctx);
    let tools = ctx.home().join("tools");

    // Turned off: the old error, with its suggestion, and nothing installed.
    let out = agenthub(&ctx)
        .env("PATH", &path)
        .env("AGENTHUB_PROVISION_UV", "false")
        .args(["exec", "test/locked", "hi", "--json"])
        .timeout(LIMIT)
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["error_type"], "EnvironmentError", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("failed to find `uv (needed to install from uv.lock)`"),
        "{v}"
    );
    assert!(!tools.join("uv").exists());

    // The first call installs uv in the middle of its build (pip builds the environment,
    // uv exports the lock) and says so.
    let out = agenthub(&ctx)
        .env("PATH", &path)
        .env("AGENTHUB_LOG_LEVEL", "INFO")
        .args(["exec", "test/locked", "hi", "--json"])
        .timeout(LIMIT)
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["result"], json!({}), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("installing it once"), "{}", text(&out.stderr));
    assert!(tools.join("uv/agenthub-tool.json").is_file());
    assert!(tools.join("uv/bin/uv").is_file());
    assert!(staging_leftovers(&tools).is_empty());

    // Later runs use it without installing again, and doctor says which uv is used.
    let out = agenthub(&ctx)
        .env("PATH", &path)
        .env("AGENTHUB_LOG_LEVEL", "DEBUG")
        .args(["env", "rebuild", "test/locked"])
        .timeout(LIMIT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("installing it once"));
    assert!(text(&out.stderr).contains("backend=\"uv\""), "the provisioned uv builds: {}", text(&out.stderr));
    let out = agenthub(&ctx).env("PATH", &path).args(["doctor", "--json"]).timeout(LIMIT).output().unwrap();
    let v = json_of(&out);
    assert_eq!(v["tools"]["uv"]["origin"], "provisioned", "{v}");
    assert_eq!(v["tools"]["uv"]["path"], json!(tools.join("uv/bin/uv")));
}

#[test]
fn env_create_takes_the_backend_flag_and_doctor_passes_on_a_healthy_home() {
    let (ctx, dir) = ctx_with("piped");
    let out = run(&ctx, &["env", "create", "test/piped", "--env-backend", "pip"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".venv/agenthub-env.json")).unwrap()).unwrap();
    assert_eq!(marker["backend"], "pip");
    let out = run(&ctx, &["env", "sync", "test/piped", "--env-backend", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&ctx, &["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("environments  1 ready, 0 stale, 0 broken, 0 missing, 0 foreign"));
    // Unused builds are reported, with `env gc` as the fix.
    ok(&ctx, &["env", "rebuild", "test/piped"]);
    ok(&ctx, &["env", "rebuild", "test/piped"]);
    let v = json_of(&run(&ctx, &["doctor", "--json"]));
    let unused =
        v["problems"].as_array().unwrap().iter().find(|p| p["kind"] == "unused_environments").cloned();
    assert_eq!(unused.expect("reported")["fix"], "Run `agenthub env gc`");
}

#[test]
fn two_processes_that_need_uv_at_once_install_it_once() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let path = path_without_uv(work.path());
    locked_agent(&ctx);
    let tools = ctx.home().join("tools");
    // `--env-backend uv` needs uv before anything is built: both race for it.
    let spawn = || {
        super::command(&ctx, &["exec", "test/locked", "hi", "--json", "--env-backend", "uv"])
            .env("PATH", &path)
            .env("AGENTHUB_LOG_LEVEL", "INFO")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    for out in &outs {
        assert_eq!(json_of(out)["result"], json!({}), "{} {}", text(&out.stdout), text(&out.stderr));
    }
    let said = outs.iter().filter(|o| text(&o.stderr).contains("installing it once")).count();
    assert_eq!(said, 1, "exactly one process installs uv");
    assert!(tools.join("uv/agenthub-tool.json").is_file());
    assert!(staging_leftovers(&tools).is_empty());
}

#[test]
fn info_counts_requirements_in_words() {
    let ctx = TestContext::new();
    ctx.install(&TestAgent::new("plain").method(TestMethod::new("hi")));
    ctx.install(&TestAgent::new("six").method(TestMethod::new("hi")).requirements_txt("six==1.16.0\n"));
    for agent in ["test/plain", "test/six"] {
        assert_eq!(run(&ctx, &["env", "create", agent]).status.code(), Some(0), "{agent}");
    }
    let plain = text(&run(&ctx, &["info", "test/plain"]).stdout);
    assert!(plain.contains("no requirements)"), "{plain}");
    let six = text(&run(&ctx, &["info", "test/six"]).stdout);
    assert!(six.contains(", 1 requirement from requirements.txt)"), "{six}");
}

#[test]
fn doctor_names_pyenv_shims_that_run_no_python_once_and_warns_of_nothing() {
    use std::os::unix::fs::PermissionsExt as _;
    let ctx = TestContext::new();
    let tmp = tempfile::tempdir().unwrap();
    let (shims, bin) = (tmp.path().join("shims"), tmp.path().join("bin"));
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(agenthub_testkit::real_python(), bin.join("python3")).unwrap();
    // What pyenv writes for every version it ever installed; this one's is gone.
    let shim = "#!/usr/bin/env bash\nset -e\nprogram=\"${0##*/}\"\nexport PYENV_ROOT=\"/nonexistent/pyenv\"\n\
                exec \"/nonexistent/pyenv/libexec/pyenv\" exec \"$program\" \"$@\"\n";
    let broken = "#!/bin/sh\nexit 1\n";
    for (name, text) in [("python3.13", shim), ("python3.12", shim), ("python3.9", broken)] {
        let dir = if text == shim { &shims } else { &bin };
        std::fs::write(dir.join(name), text).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = std::env::join_paths([&shims, &bin]).unwrap();
    let doctor = |json: bool| {
        let mut cmd = agenthub(&ctx);
        cmd.env("PATH", &path).arg("doctor");
        if json {
            cmd.arg("--json");
        }
        cmd.timeout(LIMIT).output().unwrap()
    };
    let v = json_of(&doctor(true));
    let shim_entries: Vec<&str> = v["interpreters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["pyenv_shim"] == true)
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(shim_entries.len(), 2, "{v}");
    let python_problems: Vec<&Json> =
        v["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "python_broken").collect();
    assert_eq!(python_problems.len(), 1, "only the script that is no shim is a problem: {v}");
    assert!(python_problems[0]["message"].as_str().unwrap().contains("python3.9"), "{v}");

    let out = doctor(false);
    let said = text(&out.stdout).replace(&tmp.path().display().to_string(), "[TMP]");
    let python: Vec<&str> = said
        .lines()
        .skip_while(|l| !l.starts_with("python"))
        .take_while(|l| l.starts_with("python") || l.starts_with("    "))
        .collect();
    insta::assert_snapshot!(python[1..].join("\n"), @r"
    [TMP]/bin/python3.9 (does not run)
    python3.13, python3.12 in [TMP]/shims: pyenv shims of versions not installed or not selected (skipped)
    ");
}
