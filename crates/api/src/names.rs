//! Names shared by the controller and the activator: a Function's identity,
//! the Kubernetes name rules both check requests against, and the
//! activator's metric names the autoscaler reads (DESIGN.md, "Metrics").
//! One spelling, so the two sides cannot drift apart.

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::{FUNCTION_LABEL, Function};

/// A Function's identity: its namespace and name. The activator routes and
/// parks by it, the controller wakes and autoscales by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    pub namespace: String,
    pub name: String,
}

impl FunctionKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a Function object.
    pub fn of(f: &Function) -> Self {
        Self::new(f.namespace().unwrap_or_default(), f.name_any())
    }

    /// The Function a pod belongs to, by its `siesta.dev/function` label.
    pub fn of_pod(p: &Pod) -> Option<Self> {
        let function = p.labels().get(FUNCTION_LABEL)?;
        Some(Self::new(
            p.namespace().unwrap_or_default(),
            function.clone(),
        ))
    }
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// RFC 1123 label, as Kubernetes namespaces are: lowercase letters, digits
/// and '-', 1 to 63 bytes, not starting or ending with '-'.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain, as most Kubernetes object names are (dot-separated
/// labels, at most 253 bytes).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The activator's metric families (all labelled `namespace`, `function`).
pub mod metrics {
    /// Counter, also labelled `code`: requests by the status sent.
    pub const REQUESTS: &str = "siesta_activator_requests_total";
    /// Histogram: arrival to last response byte, queueing included.
    pub const REQUEST_DURATION: &str = "siesta_activator_request_duration_seconds";
    /// Gauge: requests held, parked or proxied.
    pub const IN_FLIGHT: &str = "siesta_activator_in_flight_requests";
    /// Counter: the integral of in-flight requests over time.
    pub const CONCURRENCY_SECONDS: &str = "siesta_activator_concurrency_seconds_total";
    /// Gauge: requests parked for a ready pod or a free slot.
    pub const QUEUED: &str = "siesta_activator_queued_requests";
    /// Histogram: first parked request to first ready, probed pod.
    pub const COLD_START_DURATION: &str = "siesta_activator_cold_start_duration_seconds";
    /// Counter, also labelled `reason`: requests the activator answered itself.
    pub const REJECTED: &str = "siesta_activator_rejected_requests_total";
    /// Counter, also labelled `reason`: requests sent to a pod again after a
    /// send that the pod did not process (or a connect that failed).
    pub const UPSTREAM_REPLAYS: &str = "siesta_activator_upstream_replays_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_belongs_to_the_function_its_label_names_in_its_namespace() {
        let mut p = Pod::default();
        p.metadata.namespace = Some("ns".into());
        assert_eq!(FunctionKey::of_pod(&p), None, "no label, no function");
        p.metadata.labels = Some([(FUNCTION_LABEL.to_string(), "f".to_string())].into());
        assert_eq!(FunctionKey::of_pod(&p), Some(FunctionKey::new("ns", "f")));
    }

    #[test]
    fn labels_and_subdomains_follow_rfc_1123() {
        for good in ["a", "a-b", "0", "x".repeat(63).as_str()] {
            assert!(is_dns_label(good), "{good:?}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "x".repeat(64).as_str()] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        assert!(is_dns_subdomain("a.b-c.d"));
        for bad in ["", "a..b", ".a", "a.", "a.-b", &"a.".repeat(127)] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
    }
}
