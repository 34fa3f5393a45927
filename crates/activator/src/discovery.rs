//! Functions and their ready pods from watches (all namespaces), fed into the
//! index; and, when no controller URL is configured, the controller's pods.
//!
//! Pods are watched directly (not Endpoints/EndpointSlices) so a pod is known
//! the moment it turns ready, on every Kubernetes version. A pod is an
//! endpoint when its `Ready` condition is True, it has a pod IP, and it is
//! not being deleted; its address is `podIP:spec.port`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use siesta_api::{FUNCTION_LABEL, Function};

use crate::Control;
use crate::index::FunctionConfig;
use crate::route::FunctionKey;

/// Label selector of the controller's pods.
pub const CONTROLLER_SELECTOR: &str =
    "app.kubernetes.io/name=siesta,app.kubernetes.io/component=controller";

enum Ev {
    Function(Result<Event<Function>, watcher::Error>),
    Pod(Result<Event<Pod>, watcher::Error>),
    Controller(Result<Event<Pod>, watcher::Error>),
}

/// Runs the watches forever (they retry with backoff), feeding `control`.
/// `controller_port` is set when controllers are to be found by their pods.
pub async fn run(client: Client, control: Control, controller_port: Option<u16>) {
    let fns = watcher::watcher(
        Api::<Function>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(siesta_api::watch_backoff::WatchBackoff::default())
    .map(Ev::Function)
    .boxed();
    let pods = watcher::watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(FUNCTION_LABEL),
    )
    .backoff(siesta_api::watch_backoff::WatchBackoff::default())
    .map(Ev::Pod)
    .boxed();
    let ctl: BoxStream<'static, Ev> = match controller_port {
        Some(_) => watcher::watcher(
            Api::<Pod>::all(client),
            watcher::Config::default().labels(CONTROLLER_SELECTOR),
        )
        .backoff(siesta_api::watch_backoff::WatchBackoff::default())
        .map(Ev::Controller)
        .boxed(),
        None => futures::stream::pending().boxed(),
    };
    let mut events = futures::stream::select_all([fns, pods, ctl]);
    let mut state = State::default();
    let mut controllers = Controllers::default();
    while let Some(ev) = events.next().await {
        match ev {
            Ev::Function(Ok(e)) => state.on_function(e, &control),
            Ev::Pod(Ok(e)) => state.on_pod(e, &control),
            Ev::Controller(Ok(e)) => {
                if controllers.on_event(e)
                    && let Some(port) = controller_port
                {
                    let urls = controllers.urls(port);
                    tracing::info!(controllers = ?urls, "controller pods changed");
                    control.set_controllers(urls);
                }
            }
            Ev::Function(Err(e)) => {
                tracing::warn!(error = %e, "watching Functions failed (is the CRD installed? `siesta crd | kubectl apply -f -`); retrying")
            }
            Ev::Pod(Err(e)) | Ev::Controller(Err(e)) => {
                tracing::warn!(error = %e, "watching Pods failed; retrying")
            }
        }
        if state.functions_synced && state.pods_synced {
            control.mark_synced();
        }
    }
}

/// The ready controller pods, from their watch.
#[derive(Default)]
struct Controllers {
    ready: BTreeMap<(String, String), IpAddr>,
    /// Being filled during a (re-)list; replaces `ready` when it is done.
    init: Option<BTreeMap<(String, String), IpAddr>>,
}

impl Controllers {
    /// Applies one watch event; true when the set of ready pods may have changed.
    fn on_event(&mut self, e: Event<Pod>) -> bool {
        match e {
            Event::Init => {
                self.init = Some(BTreeMap::new());
                false
            }
            Event::InitApply(p) => {
                if let (Some(init), Some(ip)) = (self.init.as_mut(), ready_ip(&p)) {
                    init.insert(pod_key(&p), ip);
                }
                false
            }
            Event::InitDone => {
                self.ready = self.init.take().unwrap_or_default();
                true
            }
            Event::Apply(p) => {
                match ready_ip(&p) {
                    Some(ip) => self.ready.insert(pod_key(&p), ip),
                    None => self.ready.remove(&pod_key(&p)),
                };
                true
            }
            Event::Delete(p) => {
                self.ready.remove(&pod_key(&p));
                true
            }
        }
    }

    /// The controllers' admin URLs.
    fn urls(&self, port: u16) -> Vec<String> {
        self.ready
            .values()
            .map(|ip| format!("http://{}", SocketAddr::new(*ip, port)))
            .collect()
    }
}

fn pod_key(p: &Pod) -> (String, String) {
    (p.namespace().unwrap_or_default(), p.name_any())
}

/// The pod's IP if it may take traffic: Ready, addressed, not terminating.
pub fn ready_ip(p: &Pod) -> Option<IpAddr> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// The watches' view, kept to turn pod events into per-function endpoint sets.
#[derive(Default)]
pub struct State {
    /// Known functions and their ports.
    ports: HashMap<FunctionKey, u16>,
    /// Ready pod IPs per function, by pod name.
    pods: HashMap<FunctionKey, BTreeMap<String, IpAddr>>,
    fn_init: Option<HashSet<FunctionKey>>,
    pod_init: Option<HashMap<FunctionKey, BTreeMap<String, IpAddr>>>,
    pub functions_synced: bool,
    pub pods_synced: bool,
}

impl State {
    pub fn on_function(&mut self, e: Event<Function>, control: &Control) {
        match e {
            Event::Init => self.fn_init = Some(HashSet::new()),
            Event::InitApply(f) => {
                let key = self.apply_function(&f, control);
                if let Some(init) = self.fn_init.as_mut() {
                    init.insert(key);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.fn_init.take() {
                    let gone: Vec<FunctionKey> = self
                        .ports
                        .keys()
                        .filter(|k| !seen.contains(k))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.ports.remove(&k);
                        control.delete_function(&k);
                    }
                }
                self.functions_synced = true;
            }
            Event::Apply(f) => {
                self.apply_function(&f, control);
            }
            Event::Delete(f) => {
                let key = FunctionKey::of(&f);
                self.ports.remove(&key);
                control.delete_function(&key);
            }
        }
    }

    fn apply_function(&mut self, f: &Function, control: &Control) -> FunctionKey {
        let key = FunctionKey::of(f);
        let config = FunctionConfig::from_spec(&f.spec);
        control.apply_function(key.clone(), config);
        let old = self.ports.insert(key.clone(), config.port);
        if old != Some(config.port) {
            self.push(&key, control);
        }
        key
    }

    pub fn on_pod(&mut self, e: Event<Pod>, control: &Control) {
        match e {
            Event::Init => self.pod_init = Some(HashMap::new()),
            Event::InitApply(p) => {
                if let (Some(init), Some((key, name)), Some(ip)) =
                    (self.pod_init.as_mut(), owner(&p), ready_ip(&p))
                {
                    init.entry(key).or_default().insert(name, ip);
                }
            }
            Event::InitDone => {
                if let Some(init) = self.pod_init.take() {
                    let old = std::mem::replace(&mut self.pods, init);
                    let touched: HashSet<FunctionKey> =
                        old.into_keys().chain(self.pods.keys().cloned()).collect();
                    for k in touched {
                        self.push(&k, control);
                    }
                }
                self.pods_synced = true;
            }
            Event::Apply(p) => {
                let Some((key, name)) = owner(&p) else { return };
                let changed = match ready_ip(&p) {
                    Some(ip) => {
                        self.pods.entry(key.clone()).or_default().insert(name, ip) != Some(ip)
                    }
                    None => self.remove_pod(&key, &name),
                };
                if changed {
                    self.push(&key, control);
                }
            }
            Event::Delete(p) => {
                let Some((key, name)) = owner(&p) else { return };
                if self.remove_pod(&key, &name) {
                    self.push(&key, control);
                }
            }
        }
    }

    fn remove_pod(&mut self, key: &FunctionKey, name: &str) -> bool {
        let Some(m) = self.pods.get_mut(key) else {
            return false;
        };
        let removed = m.remove(name).is_some();
        if m.is_empty() {
            self.pods.remove(key);
        }
        removed
    }

    /// The function's endpoint addresses now.
    pub fn endpoints(&self, key: &FunctionKey) -> Option<Vec<SocketAddr>> {
        let port = *self.ports.get(key)?;
        Some(
            self.pods
                .get(key)
                .map(|m| m.values().map(|ip| SocketAddr::new(*ip, port)).collect())
                .unwrap_or_default(),
        )
    }

    fn push(&self, key: &FunctionKey, control: &Control) {
        // Until the function is known there is nowhere to put its pods; they
        // are pushed when it arrives.
        if let Some(addrs) = self.endpoints(key) {
            control.set_endpoints(key, &addrs);
        }
    }
}

/// The function a pod belongs to (its label) and the pod's name.
fn owner(p: &Pod) -> Option<(FunctionKey, String)> {
    Some((FunctionKey::of_pod(p)?, p.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(ready: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut p = Pod {
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        if deleting {
            p.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        p
    }

    #[test]
    fn a_pod_is_an_endpoint_only_when_ready_addressed_and_not_terminating() {
        assert_eq!(
            ready_ip(&pod("True", Some("127.0.1.5"), false)),
            Some("127.0.1.5".parse().unwrap())
        );
        assert_eq!(ready_ip(&pod("False", Some("127.0.1.5"), false)), None);
        assert_eq!(ready_ip(&pod("True", None, false)), None);
        assert_eq!(ready_ip(&pod("True", Some("not-an-ip"), false)), None);
        assert_eq!(ready_ip(&pod("True", Some("127.0.1.5"), true)), None);
        assert_eq!(ready_ip(&Pod::default()), None);
    }
}
