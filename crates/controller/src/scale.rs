//! Writes to a Deployment's replica count. They all go under the field
//! manager `siesta-autoscaler`, never `siesta-controller`: the controller's
//! server-side apply leaves `spec.replicas` out, and if its manager ever
//! owned the field, leaving it out would make the apiserver delete it (and
//! default it back to 1). Keeping replicas under another manager is what
//! lets the controller repair drift without fighting the autoscaler.
//!
//! Every write here is for a Function's own Deployment only: the scale
//! subresource carries no owner references, so each write first reads the
//! Deployment itself, refuses ([`Error::NotOwned`]) unless it is controlled
//! by the Function (see [`resources::not_controlled_because`]), and writes
//! the scale with that Deployment's resourceVersion as the precondition. A
//! Deployment that changed in between (a new owner included) fails the
//! write with 409, and the check runs again on what is there now.

use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use siesta_api::Function;

use crate::deployment_view::DeploymentView;
use crate::error::api_call;
use crate::resources::{self, ChildKind, Owner, Taken};
use crate::{Error, Result};

/// The field manager that owns `spec.replicas` of every Function Deployment.
pub const AUTOSCALER_MANAGER: &str = "siesta-autoscaler";

/// How often a read-modify-write of the scale subresource is retried when
/// another writer got in between.
const CONFLICT_RETRIES: usize = 5;

/// The Deployment a replica write is for: the one of the Function
/// `namespace/name` with uid `uid` (a Function's Deployment has its name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Target {
    pub fn of(function: &Function) -> Result<Self> {
        Ok(Self::from(&Owner::of(function)?))
    }
}

impl From<&Owner> for Target {
    fn from(owner: &Owner) -> Self {
        Self {
            namespace: owner.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.reference.uid.clone(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Sets the replicas of the Function's Deployment to `replicas`, only if it
/// differs. Returns the previous count when it wrote, `None` when the
/// count already was `replicas`. The write carries the resourceVersion it
/// read, so it never overwrites a concurrent decision blindly.
pub async fn set_replicas(client: &Client, target: &Target, replicas: i32) -> Result<Option<i32>> {
    update_scale(client, target, |current| {
        (current != replicas).then_some(replicas)
    })
    .await
    .map(|update| update.to.map(|_| update.from))
}

/// Sets the replicas of the Function's Deployment from `expected` to
/// `replicas`, only if the count still is `expected` when read. The
/// autoscaler decides on a count it read from its cache; if an activation
/// (0 → 1) or a user changed it meanwhile, writing the decision would undo
/// theirs, so it returns `None` and the autoscaler decides again.
pub async fn set_replicas_from(
    client: &Client,
    target: &Target,
    expected: i32,
    replicas: i32,
) -> Result<Option<i32>> {
    update_scale(client, target, |current| {
        (current == expected && current != replicas).then_some(replicas)
    })
    .await
    .map(|update| update.to.map(|_| update.from))
}

/// The result of a wake-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// It was at zero; now `to`.
    Woke { to: i32 },
    /// It already had `replicas` > 0; nothing written.
    Awake { replicas: i32 },
}

/// Raises the Function's Deployment from zero to `replicas`; leaves any
/// non-zero count alone. Two concurrent wakes do not fight: the loser's
/// precondition fails, it re-reads, sees the count above zero and reports
/// `Awake`.
pub async fn wake(client: &Client, target: &Target, replicas: i32) -> Result<Wake> {
    let update = update_scale(client, target, |current| {
        (current == 0).then_some(replicas.max(1))
    })
    .await?;
    Ok(match update.to {
        Some(to) => Wake::Woke { to },
        None => Wake::Awake {
            replicas: update.from,
        },
    })
}

/// The count the bounds `[min, max]` require, or `None` when `current` is
/// within them. Zero is left alone when `min` is zero: scaling to and from
/// zero is the autoscaler's and the activator's business.
pub fn clamp_to_bounds(current: i32, min: i32, max: i32) -> Option<i32> {
    if current < min {
        Some(min)
    } else if current > max && max >= min {
        Some(max)
    } else {
        None
    }
}

/// True when the field manager `manager` owns `spec.replicas` of the
/// Deployment whose metadata is `meta`.
pub fn owns_replicas(meta: &ObjectMeta, manager: &str) -> bool {
    meta.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

/// Makes `siesta-autoscaler` a co-owner of `spec.replicas` at the value it
/// has in `seen` (a server-side apply of only that field), so that the
/// controller's manager can then drop the field without the apiserver
/// deleting it. This is the documented way to hand a field from one manager
/// to another.
///
/// The apply carries `seen`'s resourceVersion as a precondition: if anyone
/// wrote in between (a user's `kubectl scale`, a wake-up right after the
/// Function was created), the apiserver answers 409 and the hand-over is
/// retried at the value just read, so it never puts back a stale count.
pub async fn adopt_replicas(client: &Client, seen: &DeploymentView) -> Result<DeploymentView> {
    let namespace = seen.metadata.namespace.as_deref().unwrap_or_default();
    let name = seen.metadata.name.as_deref().unwrap_or_default();
    let api: Api<DeploymentView> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(AUTOSCALER_MANAGER).force();
    let mut seen = seen.clone();
    let mut attempt = 0;
    loop {
        let patch = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "resourceVersion": seen.metadata.resource_version},
            "spec": {"replicas": seen.replicas()},
        });
        let result = api_call(
            || {
                format!(
                    "hand spec.replicas of Deployment {namespace}/{name} to {AUTOSCALER_MANAGER}"
                )
            },
            api.patch(name, &params, &Patch::Apply(&patch)),
        )
        .await;
        match result {
            Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => {
                attempt += 1;
                seen = api_call(
                    || format!("read Deployment {namespace}/{name}"),
                    api.get(name),
                )
                .await?;
            }
            other => return other,
        }
    }
}

/// Refuses ([`Error::NotOwned`], naming the kind) the first of `children`
/// that exists and is not the target Function's. Pure: the rule
/// [`resources::first_taken`] applies for the reconciler, as an error for
/// the writers that scale or wake.
pub fn ensure_owned<'a>(
    target: &Target,
    children: impl IntoIterator<Item = (ChildKind, Option<&'a ObjectMeta>)>,
) -> Result<()> {
    match resources::first_taken(children, &target.name, &target.uid) {
        Some(Taken { kind, why }) => Err(Error::NotOwned {
            kind,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            why,
        }),
        None => Ok(()),
    }
}

/// What [`update_scale`] read and, if it wrote, the count it wrote.
struct Update {
    from: i32,
    to: Option<i32>,
}

/// The Deployment's replica count, or why it is not the target's to scale.
/// Pure: the whole ownership rule a scale write obeys.
fn scalable(d: &DeploymentView, target: &Target) -> Result<i32> {
    ensure_owned(target, [(ChildKind::Deployment, Some(&d.metadata))])?;
    let refuse = |why: String| Error::NotOwned {
        kind: ChildKind::Deployment,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        why,
    };
    if d.metadata
        .resource_version
        .as_deref()
        .is_none_or(str::is_empty)
    {
        // Without it the write below would be unconditional, and could land
        // on a Deployment whose owner changed after this read.
        return Err(refuse(
            "it came without a resourceVersion, so a write could not be made conditional on its owner".to_string(),
        ));
    }
    Ok(d.replicas())
}

/// The scale to write: `replicas`, on the condition that the Deployment is
/// still at the resourceVersion `d` was read at (the scale subresource of a
/// Deployment shares its resourceVersion), so any change since (an owner
/// reference removed, another writer's count) makes the write fail with 409.
fn scale_of(d: &DeploymentView, replicas: i32) -> Scale {
    Scale {
        metadata: ObjectMeta {
            name: d.metadata.name.clone(),
            namespace: d.metadata.namespace.clone(),
            resource_version: d.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(ScaleSpec {
            replicas: Some(replicas),
        }),
        status: None,
    }
}

/// Read the Deployment, refuse unless it is the target's, ask `decide` for
/// a new count, write it with the read resourceVersion; on conflict, read
/// (and check) again.
async fn update_scale(
    client: &Client,
    target: &Target,
    decide: impl Fn(i32) -> Option<i32>,
) -> Result<Update> {
    let api: Api<DeploymentView> = Api::namespaced(client.clone(), &target.namespace);
    let params = PostParams {
        field_manager: Some(AUTOSCALER_MANAGER.to_string()),
        ..PostParams::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let d = api_call(
            || format!("read Deployment {target}"),
            api.get(&target.name),
        )
        .await?;
        let current = scalable(&d, target)?;
        let Some(to) = decide(current) else {
            return Ok(Update {
                from: current,
                to: None,
            });
        };
        let result = api_call(
            || format!("set deployments/scale of {target} to {to}"),
            api.replace_scale(&target.name, &params, &scale_of(&d, to)),
        )
        .await;
        match result {
            Ok(_) => {
                return Ok(Update {
                    from: current,
                    to: Some(to),
                });
            }
            Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => {
                tracing::debug!(deployment = %target, "Deployment changed while scaling it; reading it again");
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use siesta_api::FIELD_MANAGER;

    #[test]
    fn bounds_raise_to_min_and_lower_to_max_but_leave_zero_alone() {
        assert_eq!(clamp_to_bounds(0, 0, 10), None);
        assert_eq!(clamp_to_bounds(0, 2, 10), Some(2));
        assert_eq!(clamp_to_bounds(1, 3, 10), Some(3));
        assert_eq!(clamp_to_bounds(5, 3, 10), None);
        assert_eq!(clamp_to_bounds(12, 0, 10), Some(10));
        // An invalid spec (min > max) never reaches here, but must not oscillate.
        assert_eq!(clamp_to_bounds(3, 3, 1), None);
    }

    fn with_managers(entries: &[(&str, serde_json::Value)]) -> DeploymentView {
        let mut d = DeploymentView::default();
        d.metadata.managed_fields = Some(
            entries
                .iter()
                .map(|(m, f)| ManagedFieldsEntry {
                    manager: Some(m.to_string()),
                    fields_v1: Some(FieldsV1(f.clone())),
                    ..ManagedFieldsEntry::default()
                })
                .collect(),
        );
        d
    }

    fn target() -> Target {
        Target {
            namespace: "demo".into(),
            name: "hello".into(),
            uid: "uid-1".into(),
        }
    }

    /// A Deployment as the apiserver returns it, at resourceVersion 42.
    fn deployment(replicas: Option<i32>, owner: Option<serde_json::Value>) -> DeploymentView {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "hello", "namespace": "demo", "resourceVersion": "42",
                "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "hello"}},
                "template": {},
            },
        }))
        .unwrap()
    }

    fn the_function() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "name": "hello", "uid": "uid-1", "controller": true,
        })
    }

    #[test]
    fn only_the_functions_own_deployment_may_be_scaled() {
        assert_eq!(
            scalable(&deployment(Some(0), Some(the_function())), &target()).unwrap(),
            0
        );
        assert_eq!(
            scalable(&deployment(None, Some(the_function())), &target()).unwrap(),
            1,
            "an absent count is the apiserver's default, 1"
        );

        // `kubectl create deployment hello --replicas=0`: refused, and the
        // error says whose it is and what to do.
        let e = scalable(&deployment(Some(0), None), &target()).unwrap_err();
        assert!(e.is_not_owned(), "{e}");
        assert_eq!(e.metric_label(), "not_owned");
        let msg = e.to_string();
        assert!(
            msg.contains("Deployment demo/hello is not controlled by Function demo/hello"),
            "{msg}"
        );
        assert!(msg.contains("no controller owner reference"), "{msg}");
        assert!(msg.contains("Delete or rename that Deployment"), "{msg}");

        // The child of an earlier Function of the same name.
        let mut earlier = the_function();
        earlier["uid"] = "uid-0".into();
        let e = scalable(&deployment(Some(0), Some(earlier)), &target()).unwrap_err();
        assert!(e.is_not_owned(), "{e}");

        // Without a resourceVersion the write could not be conditional.
        let mut d = deployment(Some(0), Some(the_function()));
        d.metadata.resource_version = None;
        assert!(scalable(&d, &target()).unwrap_err().is_not_owned());
        d.metadata.resource_version = Some(String::new());
        assert!(scalable(&d, &target()).unwrap_err().is_not_owned());
    }

    #[test]
    fn a_service_not_the_functions_refuses_a_wake_and_names_the_service() {
        let meta = |owner: Option<serde_json::Value>| ObjectMeta {
            owner_references: Some(
                owner
                    .into_iter()
                    .map(|o| serde_json::from_value(o).unwrap())
                    .collect(),
            ),
            ..ObjectMeta::default()
        };
        let ours = meta(Some(the_function()));
        // No Service yet (the reconciler is about to create it), or its own.
        assert!(ensure_owned(&target(), [(ChildKind::Service, None)]).is_ok());
        assert!(ensure_owned(&target(), [(ChildKind::Service, Some(&ours))]).is_ok());

        // `kubectl create service clusterip hello`: refused, as a conflict.
        let foreign = meta(None);
        let e = ensure_owned(&target(), [(ChildKind::Service, Some(&foreign))]).unwrap_err();
        assert!(e.is_not_owned(), "{e}");
        assert_eq!(e.metric_label(), "not_owned");
        let msg = e.to_string();
        assert!(
            msg.contains("Service demo/hello is not controlled by Function demo/hello"),
            "{msg}"
        );
        assert!(msg.contains("Delete or rename that Service"), "{msg}");
        assert!(!msg.contains("Deployment"), "{msg}");

        // A Deployment of its own does not make up for a foreign Service.
        let e = ensure_owned(
            &target(),
            [
                (ChildKind::Deployment, Some(&ours)),
                (ChildKind::Service, Some(&foreign)),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("Service demo/hello"), "{e}");
    }

    #[test]
    fn a_scale_write_is_conditional_on_the_deployment_it_checked() {
        let d = deployment(Some(0), Some(the_function()));
        let scale = scale_of(&d, 3);
        assert_eq!(scale.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(scale.metadata.name.as_deref(), Some("hello"));
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        assert!(scale.status.is_none());
    }

    #[test]
    fn a_target_is_the_functions_name_and_uid() {
        let f = crate::resources::tests::function(serde_json::json!({"image": "x"}));
        assert_eq!(Target::of(&f).unwrap(), target());
        let mut f = f;
        f.metadata.uid = None;
        assert!(Target::of(&f).is_err());
    }

    #[test]
    fn replicas_ownership_is_read_from_managed_fields() {
        let d = with_managers(&[
            (
                FIELD_MANAGER,
                serde_json::json!({"f:spec": {"f:template": {}}}),
            ),
            (
                AUTOSCALER_MANAGER,
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert!(!owns_replicas(&d.metadata, FIELD_MANAGER));
        assert!(owns_replicas(&d.metadata, AUTOSCALER_MANAGER));
        let d = with_managers(&[(
            FIELD_MANAGER,
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
        )]);
        assert!(owns_replicas(&d.metadata, FIELD_MANAGER));
        assert!(!owns_replicas(&ObjectMeta::default(), FIELD_MANAGER));
    }
}
