//! What agents declare and users grant (issue 16, SPEC §8): `validate` checks the
//! `permissions:` block, `info` and `install` say what an agent asks for, an agent.yaml
//! changed after install gets no more than was approved, and the sandbox flags refuse bad
//! values as usage errors.

use std::path::{Path, PathBuf};
use std::process::Output;

use agenthub_testkit::TestContext;
use serde_json::{Value as Json, json};

use super::{command, json_of};

const HEAD: &str = "name: asks\nversion: 1.0.0\ndescription: asks for things\nauthor: t\n\
interface:\n  methods:\n    run: {description: runs}\n";

const AGENT: &str = "import json\nprint(json.dumps({'result': 1}))\n";

const ASKS: &str = "permissions:\n  network: [\"api.openai.com\", \"*.anthropic.com\", \"localhost:11434\"]\n  \
filesystem:\n    read: [\"~/datasets\"]\n    write: [\"./output\"]\n  env: [\"OPENAI_API_KEY\"]\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An agent directory `<parent>/<name>` whose manifest ends with `permissions`.
fn agent_dir(parent: &Path, name: &str, permissions: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.yaml"), format!("{HEAD}{permissions}")).unwrap();
    std::fs::write(dir.join("agent.py"), AGENT).unwrap();
    dir
}

/// `agenthub ARGS` with `HOME` at `home`.
fn run(ctx: &TestContext, home: &Path, args: &[&str]) -> Output {
    command(ctx, args).env("HOME", home).output().unwrap()
}

fn ok(out: &Output) -> &Output {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    out
}

#[test]
fn validate_names_every_bad_entry_and_what_only_a_user_can_grant() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().canonicalize().unwrap().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = ctx.home().join("config.yaml").display().to_string();
    let bad = format!(
        "permissions:\n  network: [\"https://api.openai.com\", \"localhost\"]\n  filesystem:\n    read: [\"~/.ssh\", \"{}\"]\n    write: [\"{config}\", \"../x\"]\n  envv: [A]\n",
        home.join(".aws/credentials").display()
    );
    let dir = agent_dir(work.path(), "bad", &bad);
    let out = run(&ctx, &home, &["validate", dir.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json_of(&out);
    let problems: Vec<String> = v[0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}: {}", p["field"].as_str().unwrap_or("-"), p["message"].as_str().unwrap()))
        .collect();
    let expected = [
        "permissions.envv: unknown key; did you mean `env`?",
        "permissions.filesystem.read[0]: `~/.ssh` holds credentials, start-up files or agenthub's own configuration: an agent may not ask for it, only a user can grant it (--allow-read, or `grants` in config.yaml)",
        "permissions.filesystem.write[1]: `../x` contains `..`: write the path without it",
        "permissions.network[0]: `https://api.openai.com` is a URL; write the host only (and `:port` if one port)",
        "permissions.network[1]: `localhost` is this machine: name the port it may reach, as in `localhost:11434` (one entry per port)",
    ];
    assert_eq!(problems, expected, "{v}");

    // What only this machine tells: an absolute path into the home or the agenthub home.
    let machine = format!(
        "permissions:\n  filesystem:\n    read: [\"{}\"]\n    write: [\"{config}\"]\n",
        home.join(".aws/credentials").display()
    );
    let dir = agent_dir(work.path(), "machine", &machine);
    let out = run(&ctx, &home, &["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout) + &text(&out.stderr);
    assert!(
        shown.contains("permissions.filesystem.read[0]") && shown.contains("holds credentials"),
        "{shown}"
    );
    assert!(shown.contains("permissions.filesystem.write[0]") && shown.contains("agenthub home"), "{shown}");

    let good = agent_dir(work.path(), "good", ASKS);
    ok(&run(&ctx, &home, &["validate", good.to_str().unwrap()]));
}

#[test]
fn info_says_what_an_agent_asks_for_in_words_and_json() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let dir = agent_dir(work.path(), "asks", ASKS);
    let path = dir.to_str().unwrap();
    let human = text(&ok(&run(&ctx, work.path(), &["info", path])).stdout);
    let at = human.find("permissions:").unwrap_or_else(|| panic!("{human}"));
    let block: Vec<&str> = human[at..].lines().take(4).collect();
    assert_eq!(
        block,
        [
            "permissions: network: api.openai.com, *.anthropic.com; local port 11434",
            "             reads ~/datasets",
            "             writes ./output",
            "             sees OPENAI_API_KEY in strict mode",
        ]
    );
    let v = json_of(ok(&run(&ctx, work.path(), &["info", path, "--json"])));
    assert_eq!(
        v["permissions"],
        json!({
            "declared": {
                "network": ["api.openai.com", "*.anthropic.com", "localhost:11434"],
                "filesystem": {"read": ["~/datasets"], "write": ["./output"]},
                "env": ["OPENAI_API_KEY"]
            },
            "summary": [
                "network: api.openai.com, *.anthropic.com; local port 11434",
                "reads ~/datasets",
                "writes ./output",
                "sees OPENAI_API_KEY in strict mode"
            ]
        })
    );
    let plain = agent_dir(work.path(), "plain", "");
    let v = json_of(ok(&run(&ctx, work.path(), &["info", plain.to_str().unwrap(), "--json"])));
    assert_eq!(v["permissions"]["summary"], json!(["asks for nothing beyond its own directory"]));
    assert_eq!(v["permissions"]["declared"]["network"], Json::Null);
}

#[test]
fn install_says_what_it_asks_for_and_a_changed_manifest_gets_no_more() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let src = agent_dir(work.path(), "asks", ASKS);
    let out = ok(&run(&ctx, work.path(), &["install", src.to_str().unwrap(), "--no-env"])).clone();
    let shown = text(&out.stderr);
    assert!(
        shown.contains(
            "  It asks for access beyond its own directory:\n    network: api.openai.com, *.anthropic.com; local port 11434\n    reads ~/datasets\n    writes ./output\n    sees OPENAI_API_KEY in strict mode\n"
        ),
        "{shown}"
    );
    let plain = agent_dir(work.path(), "plain", "permissions:\n  network: false\n  env: [A]\n");
    let out =
        ok(&run(&ctx, work.path(), &["install", plain.to_str().unwrap(), "--no-env", "--json"])).clone();
    assert_eq!(json_of(&out)["permissions"]["network"], false);
    let quiet =
        ok(&run(&ctx, work.path(), &["install", plain.to_str().unwrap(), "--as", "t/plain", "--no-env"]))
            .stderr
            .clone();
    assert!(!text(&quiet).contains("It asks for"), "no network hosts or paths: {}", text(&quiet));

    // The home keeps what was approved; an agent.yaml edited in place asks in vain.
    let record: Json =
        serde_json::from_slice(&std::fs::read(ctx.home().join("installs/local/asks.json")).unwrap()).unwrap();
    assert_eq!(record["permissions"]["filesystem"]["read"], json!(["~/datasets"]));
    let installed = ctx.config().agents_root().join("local/asks");
    std::fs::write(
        installed.join("agent.yaml"),
        format!("{HEAD}permissions:\n  network: [\"api.openai.com\", \"evil.example\"]\n  filesystem:\n    read: [\"~/datasets\", \"~/Documents\"]\n"),
    )
    .unwrap();
    let v = json_of(ok(&run(&ctx, work.path(), &["info", "local/asks", "--json"])));
    assert_eq!(
        v["permissions"]["beyond_install"],
        json!(["network: evil.example", "reads ~/Documents"]),
        "{v}"
    );
    let human = text(&ok(&run(&ctx, work.path(), &["info", "local/asks"])).stdout);
    assert!(
        human.contains("agent.yaml now asks for more than when it was installed (network: evil.example; reads ~/Documents): not allowed until you review it with `agenthub update local/asks`"),
        "{human}"
    );
    // Named by its path under the agents root, it is still the installed agent.
    let by_path = json_of(ok(&run(&ctx, work.path(), &["info", installed.to_str().unwrap(), "--json"])));
    assert_eq!(by_path["permissions"]["beyond_install"], v["permissions"]["beyond_install"]);

    // A declaration only a user can grant is refused at install, with the field.
    let home = work.path().join("home");
    let bad = agent_dir(
        work.path(),
        "bad",
        &format!("permissions:\n  filesystem:\n    write: [\"{}\"]\n", home.join(".ssh").display()),
    );
    let out = run(&ctx, &home, &["install", bad.to_str().unwrap(), "--no-env"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("permissions.filesystem.write[0]"), "{}", text(&out.stderr));
}

#[test]
fn bad_sandbox_values_are_usage_errors_with_a_suggestion() {
    let ctx = TestContext::new();
    let work = tempfile::tempdir().unwrap();
    let dir = agent_dir(work.path(), "asks", ASKS);
    let path = dir.to_str().unwrap();
    for (args, says) in [
        (vec!["exec", path, "run", "--sandbox", "strct"], "a similar value exists: 'strict'"),
        (vec!["exec", path, "run", "--allow-net", "https://x.org"], "is a URL; write the host only"),
        (vec!["exec", path, "run", "--allow-net", "localhost"], "name the port it may reach"),
        (vec!["exec", path, "run", "--allow-env", "A-B"], "is not a variable name"),
        (vec!["batch", path, "--sandbox", "none"], "[possible values: default, strict, off]"),
        (vec!["batch", path, "--allow-net", "[::1]"], "name the port it may reach"),
        (vec!["mcp", "serve", path, "--allow-net", "a..b"], "is not a host name"),
    ] {
        let out = run(&ctx, work.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    let out = command(&ctx, &["exec", path, "run"]).env("AGENTHUB_SANDBOX", "strikt").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `strict`?"), "{}", text(&out.stderr));
    std::fs::write(ctx.home().join("config.yaml"), "grants:\n  acme/x:\n    net: [localhost]\n").unwrap();
    let out = run(&ctx, work.path(), &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("grants.acme/x: `localhost` is this machine"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sandbox_flags_sit_under_their_own_heading() {
    let ctx = TestContext::new();
    for args in [&["exec", "--help"][..], &["batch", "--help"], &["mcp", "serve", "--help"]] {
        let help = text(&command(&ctx, args).output().unwrap().stdout);
        let at = help.find("Sandbox:").unwrap_or_else(|| panic!("{args:?}: {help}"));
        for flag in [
            "--sandbox <MODE>",
            "--allow-net <HOST>",
            "--allow-read <PATH>",
            "--allow-write <PATH>",
            "--allow-env <VAR>",
        ] {
            assert!(help[at..].contains(flag), "{args:?}: {flag}");
        }
    }
}
