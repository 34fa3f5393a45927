//! The watches the leader's parts share: one of Functions, one of Siesta's
//! Deployments and one of its Services, each a reflector whose store the
//! reconciler, the autoscaler and the usage record read, and whose events
//! drive the reconciler.
//!
//! Before, the reconciler, the autoscaler and the usage record each watched
//! Functions, and the reconciler and the autoscaler each watched
//! Deployments: three copies of every Function and two of every Deployment
//! in memory (and as many watch streams) for one view of them.
//!
//! What is kept of each object is what the controller reads ([`slim`]):
//! `managedFields` (a JSON tree per field manager, the bulk of a parsed
//! object) and a Deployment's pod template are dropped before the store.

use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use siesta_api::Function;
use siesta_api::watch_backoff::WatchBackoff;

use crate::context::Context;

/// Only children Siesta labelled are watched: less memory in big clusters.
pub const CHILDREN: &str = "app.kubernetes.io/managed-by=siesta";

pub type Events<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The stores, and the event streams that fill them. The streams must be
/// polled (the reconciler's Controller does) for the stores to fill.
pub struct Watches {
    pub functions: Store<Function>,
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    /// Functions changed (applied objects).
    pub function_events: Events<Function>,
    /// Children changed or deleted (touched objects): a deleted child is
    /// made again.
    pub deployment_events: Events<Deployment>,
    pub service_events: Events<Service>,
}

impl Watches {
    /// Of the namespace the controller serves, or of all.
    pub fn new(ctx: &Context) -> Self {
        let client = ctx.client.clone();
        let (functions, deployments, services) = match &ctx.watch_namespace {
            Some(ns) => (
                Api::<Function>::namespaced(client.clone(), ns),
                Api::<Deployment>::namespaced(client.clone(), ns),
                Api::<Service>::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };
        let children = watcher::Config::default().labels(CHILDREN);
        let (fn_store, fn_writer) = reflector::store();
        let (dep_store, dep_writer) = reflector::store();
        let (svc_store, svc_writer) = reflector::store();
        Self {
            functions: fn_store,
            deployments: dep_store,
            services: svc_store,
            function_events: Box::pin(
                reflector::reflector(
                    fn_writer,
                    watcher(functions, watcher::Config::default()).modify(slim::function),
                )
                .backoff(WatchBackoff::default())
                .applied_objects(),
            ),
            deployment_events: Box::pin(
                reflector::reflector(
                    dep_writer,
                    watcher(deployments, children.clone()).modify(slim::deployment),
                )
                .backoff(WatchBackoff::default())
                .touched_objects(),
            ),
            service_events: Box::pin(
                reflector::reflector(
                    svc_writer,
                    watcher(services, children).modify(slim::service),
                )
                .backoff(WatchBackoff::default())
                .touched_objects(),
            ),
        }
    }
}

/// What the stores keep of each object. Pure.
///
/// Measured at 1,000 Functions at zero (hack/bench/scale.sh): the
/// controller's RSS grew by about 65 KiB per Function with whole objects,
/// most of it `managedFields` parsed into `serde_json::Value` trees (a
/// Deployment carries four managers' trees) and the pod templates.
pub mod slim {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ObjectMeta};
    use siesta_api::Function;

    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    fn common(meta: &mut ObjectMeta) {
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
    }

    /// No field of a Function's `managedFields` is read.
    pub fn function(f: &mut Function) {
        common(&mut f.metadata);
        f.metadata.managed_fields = None;
    }

    /// No field of a Service's beyond its metadata's identity is read.
    pub fn service(s: &mut Service) {
        common(&mut s.metadata);
        s.metadata.managed_fields = None;
    }

    /// Of `managedFields`, which manager owns `spec.replicas` is read
    /// (`scale::owns_replicas`): each entry keeps only that. The pod
    /// template is never read from the store: a change to it moves the
    /// generation, which is what the reconciler compares.
    pub fn deployment(d: &mut Deployment) {
        common(&mut d.metadata);
        for entry in d.metadata.managed_fields.iter_mut().flatten() {
            let replicas = entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some();
            entry.fields_v1 =
                replicas.then(|| FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}})));
        }
        if let Some(spec) = d.spec.as_mut() {
            spec.template = PodTemplateSpec::default();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::scale::owns_replicas;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

        fn entry(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
            ManagedFieldsEntry {
                manager: Some(manager.into()),
                fields_v1: Some(FieldsV1(fields)),
                ..ManagedFieldsEntry::default()
            }
        }

        #[test]
        fn a_slim_deployment_still_says_who_owns_replicas_and_nothing_else() {
            let mut d: Deployment = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "f", "generation": 3, "annotations": {LAST_APPLIED: "{}", "keep": "1"}},
                "spec": {"replicas": 2, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"readyReplicas": 1, "observedGeneration": 3},
            }))
            .unwrap();
            d.metadata.managed_fields = Some(vec![
                entry(
                    "siesta",
                    serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {}}}}),
                ),
                entry(
                    "siesta-autoscaler",
                    serde_json::json!({"f:spec": {"f:replicas": {}}}),
                ),
                entry(
                    "kube-controller-manager",
                    serde_json::json!({"f:status": {"f:replicas": {}}}),
                ),
            ]);
            assert!(owns_replicas(&d, "siesta"));
            deployment(&mut d);
            assert!(owns_replicas(&d, "siesta"), "siesta still owns replicas");
            assert!(owns_replicas(&d, "siesta-autoscaler"));
            assert!(!owns_replicas(&d, "kube-controller-manager"));
            let fields = d.metadata.managed_fields.as_ref().unwrap();
            assert_eq!(
                fields[0].fields_v1.as_ref().unwrap().0,
                serde_json::json!({"f:spec": {"f:replicas": {}}})
            );
            assert!(fields[2].fields_v1.is_none());
            let spec = d.spec.as_ref().unwrap();
            assert_eq!(spec.replicas, Some(2));
            assert!(spec.template.spec.is_none(), "the template is dropped");
            assert_eq!(
                d.status.as_ref().unwrap().ready_replicas,
                Some(1),
                "status is kept"
            );
            let annotations = d.metadata.annotations.as_ref().unwrap();
            assert!(!annotations.contains_key(LAST_APPLIED));
            assert_eq!(annotations["keep"], "1");
        }

        #[test]
        fn slim_functions_and_services_keep_everything_but_managed_fields() {
            let mut f: Function = serde_json::from_value(serde_json::json!({
                "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
                "metadata": {"name": "f", "namespace": "n", "uid": "u"},
                "spec": {"image": "i"},
                "status": {"observedGeneration": 1},
            }))
            .unwrap();
            f.metadata.managed_fields =
                Some(vec![entry("siesta", serde_json::json!({"f:status": {}}))]);
            let before = f.clone();
            function(&mut f);
            assert!(f.metadata.managed_fields.is_none());
            assert_eq!(f.spec, before.spec);
            assert_eq!(f.status, before.status);
            assert_eq!(f.metadata.uid, before.metadata.uid);
            let mut s = Service::default();
            s.metadata.managed_fields = f
                .metadata
                .managed_fields
                .clone()
                .or(before.metadata.managed_fields);
            service(&mut s);
            assert!(s.metadata.managed_fields.is_none());
        }
    }
}
