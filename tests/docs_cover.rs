//! Docs that cannot drift: every flag of every subcommand of the two shipped
//! binaries (`siesta`, `kubectl-siesta`) and every value of the chart must
//! be written down in README.md or charts/siesta/README.md, and the pinned
//! toolchain must be the Dockerfiles' Rust release.
//!
//! The flags are read from the binaries' own `--help`, so a flag added in
//! clap without a line in the docs fails here, whatever module defines it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-siesta");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Both READMEs, where a flag or a value may be documented.
fn docs() -> String {
    read("README.md") + &read("charts/siesta/README.md")
}

/// `binary args... --help`, as text.
fn help(binary: &str, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .arg("--help")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {binary} {args:?} --help: {e}"));
    assert!(
        out.status.success(),
        "{binary} {args:?} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// Long flags in a clap help text: option lines start with `-x, --name` or
/// `--name`. clap's own `--help` and `--version` are left out.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.split_once(", ") {
                Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
                _ => line,
            };
            let name = line.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_string())
        })
        .filter(|name| !name.is_empty() && name != "help" && name != "version")
        .collect()
}

/// Subcommands listed under `Commands:` in a clap help text, without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every (command path, long flag) of a binary, subcommands walked to the
/// leaves.
fn all_flags(binary: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(binary, &args);
        let name = Path::new(binary).file_name().unwrap().to_string_lossy();
        let shown = std::iter::once(name.as_ref())
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        for flag in long_flags(&text) {
            found.push((shown.clone(), flag));
        }
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    found
}

/// `--name` occurs in `text` as a whole flag (not as the start of a longer
/// one such as `--name-suffix`).
fn mentions_flag(text: &str, flag: &str) -> bool {
    let needle = format!("--{flag}");
    text.match_indices(&needle).any(|(at, _)| {
        let after = text[at + needle.len()..].chars().next();
        !matches!(after, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_flag_of_every_subcommand_is_in_a_readme() {
    let docs = docs();
    let mut checked = 0;
    let mut missing = Vec::new();
    for binary in [SIESTA, PLUGIN] {
        // A global flag shows in every subcommand's help: report it once.
        let mut seen = BTreeSet::new();
        for (command, flag) in all_flags(binary) {
            if !seen.insert(flag.clone()) {
                continue;
            }
            checked += 1;
            if !mentions_flag(&docs, &flag) {
                missing.push(format!("{command} --{flag}"));
            }
        }
    }
    // The walk itself must have found the flags, or this test proves nothing.
    assert!(checked > 30, "only {checked} flags found in --help");
    assert!(
        missing.is_empty(),
        "flags missing from README.md and charts/siesta/README.md:\n  {}",
        missing.join("\n  ")
    );
}

/// Paths of `values.yaml`, dotted, that the chart README must have a table
/// row for: a value documented as a whole (`controller.resources`) covers
/// what is under it; otherwise every key under a map is checked.
fn undocumented_values(
    value: &serde_yaml::Value,
    path: &str,
    doc: &str,
    checked: &mut usize,
    missing: &mut Vec<String>,
) {
    *checked += 1;
    if !path.is_empty() && doc.contains(&format!("| `{path}` |")) {
        return;
    }
    match value {
        serde_yaml::Value::Mapping(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().expect("values.yaml keys are strings");
                let child_path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                undocumented_values(child, &child_path, doc, checked, missing);
            }
        }
        _ => missing.push(path.to_string()),
    }
}

#[test]
fn every_chart_value_has_a_row_in_the_chart_readme() {
    let values: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/siesta/values.yaml")).expect("values.yaml parses");
    let doc = read("charts/siesta/README.md");
    let (mut checked, mut missing) = (0, Vec::new());
    undocumented_values(&values, "", &doc, &mut checked, &mut missing);
    assert!(checked > 50, "only {checked} value paths walked");
    assert!(
        missing.is_empty(),
        "chart values with no `| \\`path\\` |` row in charts/siesta/README.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_pinned_toolchain_is_the_dockerfiles_rust_release() {
    let pin = read("rust-toolchain.toml");
    let channel = pin
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .expect("rust-toolchain.toml has a channel")
        .trim_matches('"')
        .to_string();
    // `1.95.0` -> `1.95`: the builder image is tagged by release, e.g. rust:1.95-bookworm.
    let release = channel
        .rsplit_once('.')
        .map_or(channel.as_str(), |(r, _)| r);
    for dockerfile in ["Dockerfile", "examples/hello/Dockerfile"] {
        let text = read(dockerfile);
        let image = text
            .lines()
            .find_map(|l| l.strip_prefix("ARG BUILDER_IMAGE="))
            .unwrap_or_else(|| panic!("{dockerfile} has ARG BUILDER_IMAGE"));
        assert!(
            image.starts_with(&format!("rust:{release}-")),
            "{dockerfile} builds with {image}, rust-toolchain.toml pins {channel}"
        );
    }
}

#[test]
fn flag_mentions_are_whole_flags() {
    assert!(mentions_flag("use `--listen` here", "listen"));
    assert!(mentions_flag("--listen", "listen"));
    assert!(!mentions_flag("use --listen-port", "listen"));
    assert!(!mentions_flag("use --listener", "listen"));
}

#[test]
fn help_parsing_finds_long_flags_and_subcommands() {
    let text = "Usage: x [OPTIONS] <COMMAND>\n\nCommands:\n  list     Every Function\n  \
                logs  The logs\n  help     Print this\n\nOptions:\n  -n, --namespace <NAMESPACE>\n          \
                The namespace\n      --log-json  Log as JSON (see --not-a-flag-line)\n  -h, --help  Print help\n";
    assert_eq!(subcommands(text), ["list", "logs"]);
    assert_eq!(
        long_flags(text).into_iter().collect::<Vec<_>>(),
        ["log-json", "namespace"]
    );
}

/// The event reasons the controller emits: the string constants of
/// `pub mod event_reason` in crates/controller/src/events.rs.
fn event_reasons(events_rs: &str) -> Vec<String> {
    events_rs
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("pub mod event_reason"))
        .take_while(|l| l.trim() != "}")
        .filter_map(|l| {
            let (_, value) = l.split_once(": &str = \"")?;
            Some(value.trim_end_matches("\";").to_string())
        })
        .collect()
}

#[test]
fn every_event_reason_is_in_the_readme() {
    let reasons = event_reasons(&read("crates/controller/src/events.rs"));
    assert!(reasons.len() >= 10, "only {reasons:?} found in events.rs");
    let readme = read("README.md");
    let missing: Vec<_> = reasons
        .iter()
        .filter(|r| !readme.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "event reasons missing from README.md: {missing:?}"
    );
}

/// Files a doc names: the targets of relative Markdown links, and any word
/// ending in `.md` (docs name each other in plain text too).
fn named_files(doc: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in doc.match_indices("](") {
        let rest = &doc[at + 2..];
        let target = &rest[..rest.find(')').unwrap_or(rest.len())];
        let target = target.split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            names.push(target.to_string());
        }
    }
    let tokens = doc.split(|c: char| c.is_whitespace() || "()[]<>`\"'".contains(c));
    for token in tokens.filter(|t| !t.contains("://")) {
        for word in token.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c))) {
            let word = word.trim_end_matches('.');
            if word.ends_with(".md") {
                names.push(word.to_string());
            }
        }
    }
    names
}

#[test]
fn files_the_docs_name_exist() {
    let mut docs = vec![
        "README.md".to_string(),
        "charts/siesta/README.md".to_string(),
    ];
    for entry in std::fs::read_dir(repo("docs")).expect("docs/ is readable") {
        let name = entry.expect("docs/ entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    let mut missing = Vec::new();
    for doc in &docs {
        let dir = repo(doc).parent().expect("a doc is in a dir").to_path_buf();
        for name in named_files(&read(doc)) {
            if !dir.join(&name).exists() && !repo(&name).exists() {
                missing.push(format!("{doc}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs name files that do not exist:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn named_files_finds_links_and_plain_md_names() {
    let doc = "See [the bench](docs/benchmarks.md#top), [site](https://x.dev/a.md) and NOTES.md.";
    assert_eq!(
        named_files(doc),
        ["docs/benchmarks.md", "docs/benchmarks.md", "NOTES.md"]
    );
}
