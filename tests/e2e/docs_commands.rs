//! Every `roster` command the docs show works as printed, and every flag the
//! docs name exists: the README and `docs/` are read, their commands run
//! against a real `roster serve` (placeholders such as `<directory id>` filled
//! in), and a documented output (`# → {…}`) must have the shape of the real one.

use roster_testkit::app;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A command found in the docs.
#[derive(Debug)]
struct DocCommand {
    at: String,
    args: Vec<String>,
    /// The output the docs print after it (`# → …`), if any.
    output: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_roster_command_works_as_printed() {
    let commands = documented_commands();
    assert!(
        commands.len() >= 10,
        "found too few commands in the docs: {commands:#?}"
    );
    let data = app::temp_dir("docs-commands");
    let served = app::serve(&data);
    let mut failures = Vec::new();
    for command in &commands {
        if let Err(why) = run(command, &served).await {
            failures.push(format!(
                "{}: roster {}\n    {why}",
                command.at,
                command.args.join(" ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "documented commands that fail:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_documented_flag_exists() {
    let known = roster_flags();
    let mut unknown = Vec::new();
    for (at, flag) in documented_flags() {
        let exists = match flag.strip_suffix('*') {
            Some(prefix) => known.iter().any(|k| k.starts_with(prefix)),
            None => known.contains(&flag),
        };
        if !exists {
            unknown.push(format!("{at}: {flag}"));
        }
    }
    assert!(
        unknown.is_empty(),
        "flags named in the docs that roster does not have: {unknown:?}"
    );
}

/// Runs one documented command; `Err` says why it does not work as printed.
async fn run(command: &DocCommand, served: &app::Served) -> Result<(), String> {
    let endpoint = served.grpc.as_str();
    let Some(sub) = command.args.first() else {
        return Err("empty command".into());
    };
    match sub.as_str() {
        // Long-running servers: `--help` after the flags makes clap check
        // every flag name without starting anything.
        "serve" | "gateway" | "directory" | "migrate" | "mirror" => {
            let out = app::roster()
                .args(&command.args)
                .arg("--help")
                .output()
                .unwrap();
            ok_or_stderr(&out).map(|_| ())
        }
        "admin" | "watch" | "verify" => {
            let fixture = Fixture::new(served).await;
            let mut args = fixture.fill(&command.args)?;
            if sub == "watch" && !args.iter().any(|a| a == "--count") {
                args.extend(["--count".into(), "1".into()]);
            }
            // The test's server replaces a documented endpoint; otherwise
            // the connection flag goes last, as an operator appends it.
            match args.iter().position(|a| a == "--endpoint") {
                Some(i) if i + 1 < args.len() => args[i + 1] = endpoint.into(),
                _ => args.extend(["--endpoint".into(), endpoint.into()]),
            }
            let out = app::roster().args(&args).output().unwrap();
            // `verify` of the fixture's empty copy finds the fixture's user
            // missing: exit status 2, with its report.
            let stdout = match (sub.as_str(), out.status.code()) {
                ("verify", Some(2)) => String::from_utf8_lossy(&out.stdout).into_owned(),
                _ => ok_or_stderr(&out)?,
            };
            match &command.output {
                Some(documented) => same_shape(documented, &stdout),
                None => Ok(()),
            }
        }
        other => Err(format!("unknown subcommand {other:?}")),
    }
}

fn ok_or_stderr(out: &std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A fresh directory (with a user, so a watch has something to print) and a
/// token per command, so a command that deletes or revokes cannot break the
/// next one.
struct Fixture {
    directory_id: String,
    token_id: String,
    credential_id: String,
    endpoint_id: String,
}

impl Fixture {
    async fn new(served: &app::Served) -> Fixture {
        let endpoint = format!("http://{}", served.grpc);
        let directory = app::admin(&endpoint, &["create-directory", "--name", "docs"]);
        let directory_id = directory["id"].as_str().expect("directory id").to_owned();
        let token = app::admin(&endpoint, &["create-token", &directory_id]);
        let token_id = token["id"].as_str().expect("token id").to_owned();
        let secret = token["secret"].as_str().expect("token secret");
        let created = reqwest::Client::new()
            .post(format!(
                "{}/scim/v2/{directory_id}/Users",
                served.http_root()
            ))
            .bearer_auth(secret)
            .header("content-type", "application/scim+json")
            .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"docs@example.com"}"#)
            .send()
            .await
            .expect("POST /Users");
        assert_eq!(created.status(), 201, "fixture user");
        let credential = app::admin(&endpoint, &["create-credential", "--name", "docs"]);
        let credential_id = credential["id"].as_str().expect("credential id").to_owned();
        // Disabled, and `.invalid` never resolves (RFC 2606): a documented
        // `test-webhook` gets a failed attempt, and nothing leaves the machine.
        let url = "https://hooks.example.invalid/docs";
        let webhook = app::admin(&endpoint, &["create-webhook", url, "--disabled"]);
        let endpoint_id = webhook["id"].as_str().expect("endpoint id").to_owned();
        Fixture {
            directory_id,
            token_id,
            credential_id,
            endpoint_id,
        }
    }

    /// The arguments with every placeholder replaced by a real value.
    fn fill(&self, args: &[String]) -> Result<Vec<String>, String> {
        let about_credentials = args.iter().any(|a| a.ends_with("-credential"));
        let mut previous = "";
        args.iter()
            .map(|arg| {
                let after = std::mem::replace(&mut previous, arg.as_str());
                let filled = match arg.as_str() {
                    a if after == "--data-dir" && (a.ends_with('…') || a.starts_with('<')) => {
                        app::temp_dir("docs-data").display().to_string()
                    }
                    a if after == "--name" && a.starts_with('<') => "Example".into(),
                    // Files a command writes or reads: never the checkout.
                    _ if after == "--cursor-file" => app::temp_dir("docs-cursor")
                        .join("cursor")
                        .display()
                        .to_string(),
                    _ if after == "--mirror" => {
                        let copy = app::temp_dir("docs-mirror").join("copy.jsonl");
                        std::fs::write(&copy, "").map_err(|e| e.to_string())?;
                        copy.display().to_string()
                    }
                    "<credential id>" | "<credential-id>" => self.credential_id.clone(),
                    "<endpoint id>" => self.endpoint_id.clone(),
                    "<id>" if about_credentials => self.credential_id.clone(),
                    "<directory id>" | "<directory-id>" | "<directory>" | "<dir>" | "<id>" => {
                        self.directory_id.clone()
                    }
                    "<token id>" | "<token-id>" | "<old-token-id>" => self.token_id.clone(),
                    "<source>" => {
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"
                            .into()
                    }
                    "<target>" => "custom:cost_center".into(),
                    a if a.ends_with('…') => self.directory_id.clone(),
                    a if a.starts_with('<') && a.ends_with('>') => {
                        return Err(format!("no value known for placeholder {a}"));
                    }
                    a => a.to_owned(),
                };
                Ok(filled)
            })
            .collect()
    }
}

/// Whether the real output has every key the documented one shows, with the
/// same JSON kind (values differ: ids, times).
fn same_shape(documented: &str, actual: &str) -> Result<(), String> {
    let template = loose_json(documented)
        .ok_or_else(|| format!("documented output is not JSON-like: {documented}"))?;
    let real: Value = serde_json::from_str(actual.trim())
        .map_err(|e| format!("output is not JSON ({e}): {actual}"))?;
    shape_diff("", &template, &real)
}

fn shape_diff(at: &str, template: &Value, real: &Value) -> Result<(), String> {
    match (template, real) {
        (Value::Object(t), Value::Object(r)) => {
            for (key, value) in t {
                let path = format!("{at}.{key}");
                let real = r.get(key).ok_or_else(|| {
                    format!("the docs show `{path}`, the output has no such key: {real}")
                })?;
                shape_diff(&path, value, real)?;
            }
            Ok(())
        }
        (t, r) if kind(t) == kind(r) => Ok(()),
        (t, r) => Err(format!(
            "the docs show `{at}` as {}, the output has {r}",
            kind(t)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Documented JSON with `…` for elided parts: `{"id":"6f1c…","a":1,…}`.
fn loose_json(text: &str) -> Option<Value> {
    let mut s = text.replace('…', "");
    for (from, to) in [
        (",,", ","),
        ("{,", "{"),
        (",}", "}"),
        (",]", "]"),
        (", }", "}"),
    ] {
        while s.contains(from) {
            s = s.replace(from, to);
        }
    }
    serde_json::from_str(&s).ok()
}

/// The README and every file under `docs/`.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `roster …` commands in code blocks and code spans (`cargo run --release --`
/// counts as `roster`).
fn documented_commands() -> Vec<DocCommand> {
    let mut found = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = logical_lines(&text);
        for (i, (number, line, in_block)) in lines.iter().enumerate() {
            let at = format!("{}:{number}", relative(&file));
            let candidates: Vec<String> = if *in_block {
                vec![line.trim().trim_start_matches("$ ").to_owned()]
            } else {
                code_spans(line)
            };
            for candidate in candidates {
                let Some(args) = roster_args(&candidate) else {
                    continue;
                };
                // Prose names a command (`roster watch`, `roster admin
                // revoke-token`) without showing an invocation to check.
                let names_only = args
                    .iter()
                    .all(|a| a.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
                if !in_block && names_only {
                    continue;
                }
                let output = in_block
                    .then(|| lines.get(i + 1))
                    .flatten()
                    .and_then(|(_, next, _)| next.trim().strip_prefix("# →"))
                    .map(|o| o.trim().to_owned());
                found.push(DocCommand {
                    at: at.clone(),
                    args,
                    output,
                });
            }
        }
    }
    found
}

/// Lines with `\` continuations joined, each with its first line number and
/// whether it sits in a fenced code block.
fn logical_lines(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        if raw.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let (number, mut line) = pending.take().unwrap_or((i + 1, String::new()));
        line.push_str(raw.trim_end().trim_end_matches('\\'));
        if in_block && raw.trim_end().ends_with('\\') {
            line.push(' ');
            pending = Some((number, line));
        } else {
            out.push((number, line, in_block));
        }
    }
    out
}

fn code_spans(line: &str) -> Vec<String> {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// The arguments after `roster` (or `cargo run --release --`), without a
/// trailing `# comment`; `None` when the text is not a roster command.
fn roster_args(text: &str) -> Option<Vec<String>> {
    let rest = text
        .strip_prefix("roster ")
        .or_else(|| text.strip_prefix("cargo run --release -- "))?;
    let words = shell_words(rest);
    let end = words
        .iter()
        .position(|w| w.starts_with('#'))
        .unwrap_or(words.len());
    let words = words[..end].to_vec();
    // Prose such as "`roster serve` / `roster gateway`" names a command
    // without arguments to check; only lowercase subcommand names count.
    let first = words.first()?;
    first
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-')
        .then_some(words)
}

/// Splits like a shell: whitespace separates, quotes group; placeholders such
/// as `<directory id>` stay one word.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut angle = false;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, '<') => {
                angle = true;
                word.push(c);
                started = true;
            }
            (None, '>') => {
                angle = false;
                word.push(c);
            }
            (None, c) if c.is_whitespace() && !angle => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Flags named in code spans on their own (`--public-url`), outside the
/// benchmark's page (its flags belong to `roster-bench`).
fn documented_flags() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in doc_files() {
        if file.ends_with("performance.md") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line, in_block) in logical_lines(&text) {
            if in_block || line.contains("roster-bench") {
                continue;
            }
            for span in code_spans(&line) {
                let Some(first) = span
                    .split_whitespace()
                    .next()
                    .filter(|w| w.starts_with("--"))
                else {
                    continue;
                };
                // `--a/--b` names alternatives.
                for flag in first.split('/') {
                    found.push((format!("{}:{number}", relative(&file)), flag.to_owned()));
                }
            }
        }
    }
    found
}

/// Every `--flag` of every roster subcommand, read from `--help`.
fn roster_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut commands: Vec<Vec<&str>> =
        ["serve", "gateway", "directory", "migrate", "admin", "watch"]
            .iter()
            .map(|c| vec![*c])
            .collect();
    commands.extend(
        [
            "list-directories",
            "create-directory",
            "get-directory",
            "delete-directory",
            "map-attribute",
            "create-token",
            "list-tokens",
            "revoke-token",
            "new-epoch",
            "create-credential",
            "list-credentials",
            "revoke-credential",
            "activity",
            "portal-link",
            "revoke-portal-links",
            "create-webhook",
            "list-webhooks",
            "get-webhook",
            "update-webhook",
            "delete-webhook",
            "rotate-webhook-secret",
            "replay-webhook",
            "skip-webhook-event",
            "webhook-attempts",
            "test-webhook",
            "set-source",
            "get-source",
            "sync-now",
        ]
        .iter()
        .map(|c| vec!["admin", *c]),
    );
    for command in commands {
        let out = app::roster().args(&command).arg("--help").output().unwrap();
        assert!(out.status.success(), "roster {command:?} --help failed");
        for word in String::from_utf8_lossy(&out.stdout)
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            if word.starts_with("--") && word.len() > 2 {
                flags.insert(word.to_owned());
            }
        }
    }
    flags
}

#[test]
fn loose_json_reads_elided_examples() {
    let v = loose_json(r#"{"secret":"rst_…","token":{"id":"…","prefix":"rst_ab12",…}}"#).unwrap();
    assert_eq!(v["token"]["prefix"], "rst_ab12");
    assert!(same_shape(r#"{"id":"6f1c…",…}"#, r#"{"id":"x","name":"n"}"#).is_ok());
    assert!(same_shape(r#"{"token":{"id":"…"}}"#, r#"{"id":"x"}"#).is_err());
}

#[test]
fn shell_words_keep_placeholders_and_quotes() {
    assert_eq!(
        shell_words(r#"admin create-directory --name "Acme (Okta)" <directory id> x"#),
        [
            "admin",
            "create-directory",
            "--name",
            "Acme (Okta)",
            "<directory id>",
            "x"
        ]
    );
}
