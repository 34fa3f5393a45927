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
//! object) is dropped before the store. A Deployment is parsed into a
//! [`DeploymentView`], so its pod template is never held. Of a Service
//! only its metadata is read, so only its metadata is watched (the
//! apiserver sends PartialObjectMetadata).

use futures::Stream;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use siesta_api::Function;
use siesta_api::watch_backoff::WatchBackoff;

use crate::context::Context;
use crate::deployment_view::DeploymentView;

/// Only children Siesta labelled are watched: less memory in big clusters.
pub const CHILDREN: &str = "app.kubernetes.io/managed-by=siesta";

pub type Events<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The stores, and the event streams that fill them. The streams must be
/// polled (the reconciler's Controller does) for the stores to fill.
pub struct Watches {
    pub functions: Store<Function>,
    pub deployments: Store<DeploymentView>,
    pub services: Store<PartialObjectMeta<Service>>,
    /// Functions changed (applied objects).
    pub function_events: Events<Function>,
    /// Children changed or deleted (touched objects): a deleted child is
    /// made again.
    pub deployment_events: Events<DeploymentView>,
    pub service_events: Events<PartialObjectMeta<Service>>,
}

impl Watches {
    /// Of the namespace the controller serves, or of all.
    pub fn new(ctx: &Context) -> Self {
        let client = ctx.client.clone();
        let (functions, deployments, services) = match &ctx.watch_namespace {
            Some(ns) => (
                Api::<Function>::namespaced(client.clone(), ns),
                Api::<DeploymentView>::namespaced(client.clone(), ns),
                Api::<PartialObjectMeta<Service>>::namespaced(client, ns),
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
/// Deployment carries four managers' trees) and the pod templates. With
/// those gone, heaptrack (`SCALE_HEAPTRACK`) still found 3.8 KiB per
/// Deployment and 1.2 KiB per Service in what the stores keep beyond each
/// object's struct: labels, selectors, the Deployment's conditions and the
/// managers' entries, the Service's spec; now only what is read is kept.
pub mod slim {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta,
    };
    use kube::api::PartialObjectMeta;
    use siesta_api::Function;

    use crate::deployment_view::DeploymentView;

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

    /// A Service's identity (uid, resourceVersion, owner) is read, nothing
    /// else: a change to anything moves its resourceVersion. (Its spec is
    /// not even watched: [`super::Watches`].)
    pub fn service(s: &mut PartialObjectMeta<Service>) {
        identity_only(&mut s.metadata);
    }

    /// Of `managedFields`, which managers own `spec.replicas` is read
    /// (`scale::owns_replicas`): only their entries are kept, each with its
    /// manager and that field. Of the conditions only a failure is kept
    /// ([`crate::status`] reports it). The pod template and the selector
    /// are not even parsed ([`DeploymentView`]): a change to the template
    /// moves the generation, which is what the reconciler compares.
    pub fn deployment(d: &mut DeploymentView) {
        let entries = d.metadata.managed_fields.take();
        identity_only(&mut d.metadata);
        if let Some(entries) = entries {
            let owners: Vec<ManagedFieldsEntry> = entries
                .into_iter()
                .filter(|entry| {
                    entry
                        .fields_v1
                        .as_ref()
                        .and_then(|f| f.0.get("f:spec"))
                        .and_then(|spec| spec.get("f:replicas"))
                        .is_some()
                })
                .map(|entry| ManagedFieldsEntry {
                    manager: entry.manager,
                    fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
                    ..ManagedFieldsEntry::default()
                })
                .collect();
            d.metadata.managed_fields = Some(owners);
        }
        if let Some(conditions) = d.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions.retain(crate::status::is_deployment_failure);
        }
    }

    /// Labels and annotations are not read from the stores (ownership is
    /// the owner reference's).
    fn identity_only(meta: &mut ObjectMeta) {
        common(meta);
        meta.labels = None;
        meta.annotations = None;
        meta.managed_fields = None;
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
            let mut d: DeploymentView = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "f", "uid": "u", "generation": 3, "resourceVersion": "7",
                    "labels": {"app": "f"}, "annotations": {LAST_APPLIED: "{}", "keep": "1"},
                    "ownerReferences": [{"apiVersion": "siesta.dev/v1alpha1", "kind": "Function", "name": "f", "uid": "fu"}]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "f"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"readyReplicas": 1, "observedGeneration": 3, "conditions": [
                    {"type": "Available", "status": "True", "message": "has minimum availability"},
                    {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"},
                ]},
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
            assert!(owns_replicas(&d.metadata, "siesta"));
            let before = d.clone();
            deployment(&mut d);
            assert!(
                owns_replicas(&d.metadata, "siesta"),
                "siesta still owns replicas"
            );
            assert!(owns_replicas(&d.metadata, "siesta-autoscaler"));
            assert!(!owns_replicas(&d.metadata, "kube-controller-manager"));
            let fields = d.metadata.managed_fields.as_ref().unwrap();
            assert_eq!(fields.len(), 2, "only the owners of replicas are kept");
            assert_eq!(
                fields[0].fields_v1.as_ref().unwrap().0,
                serde_json::json!({"f:spec": {"f:replicas": {}}})
            );
            assert_eq!(d.replicas(), 2);
            let status = d.status.as_ref().unwrap();
            assert_eq!(
                (status.ready_replicas, status.observed_generation),
                (Some(1), Some(3))
            );
            let kept: Vec<_> = status
                .conditions
                .iter()
                .flatten()
                .map(|c| c.type_.as_str())
                .collect();
            assert_eq!(kept, ["ReplicaFailure"], "only the failure is kept");
            assert_eq!(
                crate::status::deployment_failure(&d),
                crate::status::deployment_failure(&before),
                "the failure reads the same"
            );
            assert!(d.metadata.labels.is_none() && d.metadata.annotations.is_none());
            assert_eq!(
                crate::children::deployment_version(&d),
                crate::children::deployment_version(&before)
            );
            assert_eq!(
                d.metadata.owner_references,
                before.metadata.owner_references
            );
        }

        #[test]
        fn slim_functions_keep_everything_but_managed_fields_and_services_their_identity() {
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
            let mut s: PartialObjectMeta<Service> = serde_json::from_value(serde_json::json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "f", "namespace": "n", "uid": "su", "resourceVersion": "9",
                    "labels": {"app": "f"},
                    "ownerReferences": [{"apiVersion": "siesta.dev/v1alpha1", "kind": "Function", "name": "f", "uid": "u"}]},
            }))
            .unwrap();
            s.metadata.managed_fields = before.metadata.managed_fields.clone();
            let whole = s.clone();
            service(&mut s);
            assert!(s.metadata.managed_fields.is_none() && s.metadata.labels.is_none());
            assert_eq!(
                crate::children::service_version(&s.metadata),
                crate::children::service_version(&whole.metadata)
            );
            assert_eq!(s.metadata.owner_references, whole.metadata.owner_references);
        }
    }
}
