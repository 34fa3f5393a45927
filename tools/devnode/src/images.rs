//! The image-to-command map: which local program stands in for an image.
//!
//! ```yaml
//! images:
//!   siesta.dev/examples/hello:latest:
//!     command: ["${SIESTA_BIN_DIR}/hello"]
//!     args: []
//! ```
//! Like a container runtime: the image's `command` is the entrypoint and its
//! `args` the default cmd; a pod's `command` replaces the entrypoint and a
//! pod's `args` replace the default args.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageMap {
    #[serde(default)]
    pub images: BTreeMap<String, ImageEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageEntry {
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading image map {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing image map {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("image {0:?} is not in the image map; add it to the map file given with --image-map")]
    Unknown(String),
    #[error(
        "image {0:?} resolves to an empty command; give it a command in the image map or in the pod"
    )]
    EmptyCommand(String),
}

impl ImageMap {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ImageError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The argv to run for a container, with `${VAR}` expanded from `vars`.
    pub fn argv(
        &self,
        image: &str,
        pod_command: &[String],
        pod_args: &[String],
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ImageError> {
        let entry = self
            .images
            .get(image)
            .or_else(|| self.images.get(strip_default_tag(image)))
            .ok_or_else(|| ImageError::Unknown(image.to_string()))?;
        let entrypoint = if pod_command.is_empty() {
            &entry.command
        } else {
            pod_command
        };
        let args = if pod_args.is_empty() && pod_command.is_empty() {
            &entry.args
        } else {
            pod_args
        };
        let argv: Vec<String> = entrypoint
            .iter()
            .chain(args)
            .map(|s| expand(s, vars))
            .collect();
        if argv.is_empty() {
            return Err(ImageError::EmptyCommand(image.to_string()));
        }
        Ok(argv)
    }
}

/// `repo` and `repo:latest` name the same image.
fn strip_default_tag(image: &str) -> &str {
    image.strip_suffix(":latest").unwrap_or(image)
}

/// Expands `${NAME}` from `vars`; unknown names expand to nothing.
pub fn expand(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(&vars(name).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ImageMap {
        serde_yaml::from_str(
            "images:\n  hello:latest:\n    command: ['${BIN}/hello']\n    args: ['--a']\n",
        )
        .unwrap()
    }

    fn vars(name: &str) -> Option<String> {
        (name == "BIN").then(|| "/opt".to_string())
    }

    #[test]
    fn image_entry_and_default_args() {
        let argv = map().argv("hello:latest", &[], &[], &vars).unwrap();
        assert_eq!(argv, ["/opt/hello", "--a"]);
    }

    #[test]
    fn untagged_image_matches_latest_entry_and_pod_args_replace_defaults() {
        let argv = map().argv("hello", &[], &["x".into()], &vars);
        // "hello" is not "hello:latest" stripped; only the reverse is allowed.
        assert!(argv.is_err());
        let argv = map()
            .argv("hello:latest", &[], &["x".into()], &vars)
            .unwrap();
        assert_eq!(argv, ["/opt/hello", "x"]);
    }

    #[test]
    fn pod_command_replaces_entrypoint_and_default_args() {
        let argv = map()
            .argv("hello:latest", &["/bin/sh".into()], &[], &vars)
            .unwrap();
        assert_eq!(argv, ["/bin/sh"]);
    }

    #[test]
    fn unknown_image_is_a_clear_error() {
        let err = map().argv("nope:1", &[], &[], &vars).unwrap_err();
        assert!(err.to_string().contains("not in the image map"));
    }

    #[test]
    fn expand_handles_unknown_and_unterminated() {
        assert_eq!(expand("${X}/a${BIN}", &vars), "/a/opt");
        assert_eq!(expand("a${BIN", &vars), "a${BIN");
    }
}
