//! The controller's one error type. Each variant says what failed and on
//! what; `metric_label` turns it into a bounded label for
//! `siesta_controller_reconcile_errors_total`.

use std::time::Duration;

use crate::resources::ChildKind;

/// Everything that can make a reconcile (or a wake-up) fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call was refused or could not be made.
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{action} timed out after {after:?}; is the apiserver overloaded or unreachable?")]
    Timeout { action: String, after: Duration },
    /// The object lacks a field the apiserver always sets (name, namespace, uid).
    #[error(
        "the Function has no {0}; the apiserver always sets it, so this object did not come from it"
    )]
    MissingObjectKey(&'static str),
    /// The Deployment or Service of a Function's name is not controlled by
    /// that Function (someone else's, an orphan, or the child of an earlier
    /// Function of that name), so Siesta refuses to scale or wake it.
    #[error(
        "{kind} {namespace}/{name} is not controlled by Function {namespace}/{name}: {why}; Siesta never scales, patches or wakes a workload or Service it does not own. Delete or rename that {kind}, or give the Function another name"
    )]
    NotOwned {
        kind: ChildKind,
        namespace: String,
        name: String,
        why: String,
    },
    /// An object could not be turned into JSON (a bug, not a user error).
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.is_conflict() => "conflict",
                kube::Error::Api(status) if status.is_not_found() => "not_found",
                kube::Error::Api(status) if status.is_forbidden() => "forbidden",
                kube::Error::Api(status) if status.is_invalid() => "invalid",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Error::Timeout { .. } => "timeout",
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::NotOwned { .. } => "not_owned",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// True when the apiserver said 409 Conflict (a resourceVersion precondition failed).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.is_conflict())
    }

    /// True when the Deployment to scale, or the Service of a Function to
    /// wake, is not the Function's (see [`Error::NotOwned`]).
    pub fn is_not_owned(&self) -> bool {
        matches!(self, Error::NotOwned { .. })
    }

    /// True when the apiserver said 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.is_not_found())
    }
}

/// Every API call the controller makes goes through here: bounded in time,
/// and its failure names the call.
pub(crate) async fn api_call<T>(
    action: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T> {
    const API_TIMEOUT: Duration = Duration::from_secs(15);
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Error::Kube {
            action: action(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            action: action(),
            after: API_TIMEOUT,
        }),
    }
}
