//! State shared by the reconciler, the admin server and the leader elector.

use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use siesta_api::names::FunctionKey;
use tokio::sync::{broadcast, watch};

use crate::decisions::DecisionLog;
use crate::events::Events;
use crate::metrics::Metrics;

pub struct Context {
    pub client: Client,
    /// Domain of function URLs.
    pub domain: String,
    /// Only Functions in this namespace are served; `None`: all namespaces.
    pub watch_namespace: Option<String>,
    pub metrics: Metrics,
    pub events: Events,
    /// Every accepted activation, for the autoscaler: a wake-up is demand
    /// it must count before its next metrics scrape.
    pub activations: broadcast::Sender<Activation>,
    /// Whether this replica holds the leader lease.
    pub leader: watch::Receiver<bool>,
    /// The autoscaler's recent decisions (filled on the leader only).
    pub decisions: DecisionLog,
    /// The leader Lease (namespace, name), to name the leader to a caller
    /// that asked a standby for what only the leader knows.
    pub lease: std::sync::OnceLock<(String, String)>,
    crd_installed: AtomicBool,
    cache_synced: AtomicBool,
}

/// An accepted activation: the Function, and the replicas its Deployment
/// has after the wake. The autoscaler decides on it at once, before its
/// watch of the Deployment shows the scale write that woke it; with the
/// count from the write it does not decide as if the Function were still
/// at zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    pub key: FunctionKey,
    pub replicas: i32,
}

impl Context {
    pub fn new(
        client: Client,
        domain: String,
        watch_namespace: Option<String>,
        metrics: Metrics,
        events: Events,
        leader: watch::Receiver<bool>,
    ) -> Self {
        let (activations, _) = broadcast::channel(1024);
        Self {
            client,
            domain,
            watch_namespace,
            metrics,
            events,
            activations,
            leader,
            decisions: DecisionLog::default(),
            lease: std::sync::OnceLock::new(),
            crd_installed: AtomicBool::new(false),
            cache_synced: AtomicBool::new(false),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn set_crd_installed(&self) {
        self.crd_installed.store(true, Ordering::Release);
    }

    pub fn set_cache_synced(&self, synced: bool) {
        self.cache_synced.store(synced, Ordering::Release);
    }

    /// Why the replica is not ready, or `None` when it is. A standby is
    /// ready once the CRD exists: it serves activations. The leader is ready
    /// once its Function cache has synced.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        if !self.crd_installed.load(Ordering::Acquire) {
            return Some("the Function CRD is not installed (kubectl apply -f crds/function.yaml)");
        }
        if self.is_leader() && !self.cache_synced.load(Ordering::Acquire) {
            return Some("leading, but the Function cache has not synced yet");
        }
        None
    }

    /// True when this replica serves Functions of `namespace`.
    pub fn serves(&self, namespace: &str) -> bool {
        self.watch_namespace
            .as_deref()
            .is_none_or(|ns| ns == namespace)
    }
}
