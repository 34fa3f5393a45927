//! Helpers for the end-to-end tests in `tests/`: finding and running the
//! command-line tools a user would run (`helm`, `kubectl`), and paths in the
//! repository. The tests themselves live in `tests/*.rs`.

use std::path::{Path, PathBuf};
pub mod load;

use std::process::{Command, Output, Stdio};

use serde::Deserialize;

/// The repository root (this crate is `tests/e2e`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart directory, `charts/siesta`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/siesta")
}

/// Finds a tool on PATH, then in `$SIESTA_CACHE/tools/bin` (default
/// `~/.cache/siesta/tools/bin`, where `make cluster-up` installs kubectl
/// and helm). Panics with what to do when it is in neither.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cache = std::env::var_os("SIESTA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/siesta")));
    let candidates = on_path
        .into_iter()
        .chain(cache.map(|c| c.join("tools/bin")))
        .map(|dir| dir.join(name));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found on PATH or in ~/.cache/siesta/tools/bin: run `make cluster-up` (it installs kubectl and helm)"
    )
}

/// What a finished command said.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub line: String,
}

impl Ran {
    /// Stdout, or a panic that shows the command and what it printed.
    pub fn ok(self) -> String {
        assert!(
            self.success,
            "`{}` failed:\n{}\n{}",
            self.line, self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs `tool args...` (from the repository root), optionally feeding `stdin`.
pub fn run(tool_name: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    let program = tool(tool_name);
    let line = format!("{tool_name} {}", args.join(" "));
    let mut command = Command::new(&program);
    command
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(input) = stdin {
        use std::io::Write;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("writing to `{line}`: {e}"));
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for `{line}`: {e}"));
    Ran {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        line,
    }
}

/// `helm template` of the chart with extra arguments; the rendered objects
/// as YAML values (empty documents dropped), or helm's error text.
pub fn helm_template(release: &str, args: &[&str]) -> Result<Vec<serde_yaml::Value>, String> {
    let chart = chart_dir().display().to_string();
    let mut all = vec!["template", release, chart.as_str()];
    all.extend_from_slice(args);
    let ran = run("helm", &all, None);
    if !ran.success {
        return Err(ran.stderr);
    }
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&ran.stdout) {
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| format!("helm template printed invalid YAML: {e}"))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// The first rendered object of `kind` whose name ends with `suffix`.
pub fn find<'a>(
    objects: &'a [serde_yaml::Value],
    kind: &str,
    suffix: &str,
) -> Option<&'a serde_yaml::Value> {
    objects.iter().find(|o| {
        o["kind"].as_str() == Some(kind)
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
    })
}

/// Kinds of the rendered objects, sorted, with duplicates.
pub fn kinds(objects: &[serde_yaml::Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_string))
        .collect();
    kinds.sort();
    kinds
}
