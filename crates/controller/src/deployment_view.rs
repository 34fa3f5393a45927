//! A Deployment as the controller reads it: its metadata, `spec.replicas`
//! and its status. Everything else the apiserver sends (the pod template,
//! the selector, the strategy) is skipped while the JSON is parsed, so it is
//! never held: not in the watch's store, not in a reconcile.
//!
//! The k8s-openapi `Deployment` struct is 2,400 bytes even with an empty
//! pod template (its `PodSpec` is inline); heaptrack at 1,000 Functions
//! (`SCALE_HEAPTRACK`, hack/bench/scale.sh) found the stores' object
//! structs the largest part of what they keep per Function. This one is
//! 464 bytes.
//!
//! The same type is what the reconciler and the scale writer read and
//! patch through (`Api<DeploymentView>`): a server-side apply sends the
//! whole desired `Deployment` and parses only this much of the answer.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// What is read of an `apps/v1` Deployment.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DeploymentView {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<SpecView>,
    pub status: Option<DeploymentStatus>,
}

/// What is read of a Deployment's spec.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SpecView {
    /// `None` only before the apiserver defaulted it (to 1).
    pub replicas: Option<i32>,
}

impl DeploymentView {
    /// `spec.replicas`, as the apiserver defaults it.
    pub fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
}

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        Self {
            metadata: d.metadata,
            spec: d.spec.map(|s| SpecView {
                replicas: s.replicas,
            }),
            status: d.status,
        }
    }
}

impl kube::Resource for DeploymentView {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Deployment")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("apps")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("deployments")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn it_names_the_same_resource_as_a_deployment() {
        assert_eq!(
            DeploymentView::api_version(&()),
            <Deployment as Resource>::api_version(&())
        );
        assert_eq!(
            DeploymentView::plural(&()),
            <Deployment as Resource>::plural(&())
        );
        assert_eq!(
            DeploymentView::kind(&()),
            <Deployment as Resource>::kind(&())
        );
    }

    #[test]
    fn parsing_keeps_metadata_replicas_and_status_and_skips_the_rest() {
        let json = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": "demo", "generation": 3},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
            "status": {"readyReplicas": 1, "replicas": 2},
        });
        let parsed: DeploymentView = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(parsed.metadata.name.as_deref(), Some("hello"));
        assert_eq!(parsed.replicas(), 2);
        assert_eq!(parsed.status.as_ref().unwrap().ready_replicas, Some(1));
        // The same as converting the whole object.
        let whole: Deployment = serde_json::from_value(json).unwrap();
        assert_eq!(DeploymentView::from(whole), parsed);
        assert!(
            std::mem::size_of::<DeploymentView>() * 4 < std::mem::size_of::<Deployment>(),
            "{} against {}",
            std::mem::size_of::<DeploymentView>(),
            std::mem::size_of::<Deployment>()
        );
    }

    #[test]
    fn an_absent_spec_replicas_is_one_as_the_apiserver_defaults_it() {
        assert_eq!(DeploymentView::default().replicas(), 1);
        let d: DeploymentView =
            serde_json::from_value(serde_json::json!({"metadata": {}, "spec": {}})).unwrap();
        assert_eq!(d.replicas(), 1);
    }
}
