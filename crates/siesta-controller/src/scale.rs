//! Writes to a Deployment's replica count. They all go under the field
//! manager `siesta-autoscaler`, never `siesta-controller`: the controller's
//! server-side apply leaves `spec.replicas` out, and if its manager ever
//! owned the field, leaving it out would make the apiserver delete it (and
//! default it back to 1). Keeping replicas under another manager is what
//! lets the controller repair drift without fighting the autoscaler.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::Result;
use crate::error::api_call;

/// The field manager that owns `spec.replicas` of every Function Deployment.
pub const AUTOSCALER_MANAGER: &str = "siesta-autoscaler";

/// How often a read-modify-write of the scale subresource is retried when
/// another writer got in between.
const CONFLICT_RETRIES: usize = 5;

/// Sets `deployments/scale` of `namespace/name` to `replicas`, only if it
/// differs. Returns the previous count when it wrote, `None` when the
/// count already was `replicas`. The write carries the resourceVersion it
/// read, so it never overwrites a concurrent decision blindly.
pub async fn set_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<Option<i32>> {
    update_scale(client, namespace, name, |current| {
        (current != replicas).then_some(replicas)
    })
    .await
    .map(|update| update.to.map(|_| update.from))
}

/// Sets `deployments/scale` of `namespace/name` from `expected` to
/// `replicas`, only if the count still is `expected` when read. The
/// autoscaler decides on a count it read from its cache; if an activation
/// (0 → 1) or a user changed it meanwhile, writing the decision would undo
/// theirs, so it returns `None` and the autoscaler decides again.
pub async fn set_replicas_from(
    client: &Client,
    namespace: &str,
    name: &str,
    expected: i32,
    replicas: i32,
) -> Result<Option<i32>> {
    update_scale(client, namespace, name, |current| {
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

/// Raises `namespace/name` from zero to `target`; leaves any non-zero count
/// alone. Two concurrent wakes do not fight: the loser's precondition fails,
/// it re-reads, sees the count above zero and reports `Awake`.
pub async fn wake(client: &Client, namespace: &str, name: &str, target: i32) -> Result<Wake> {
    let update = update_scale(client, namespace, name, |current| {
        (current == 0).then_some(target.max(1))
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

/// True when the field manager `manager` owns `spec.replicas` of `d`.
pub fn owns_replicas(d: &Deployment, manager: &str) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|entry| {
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
pub async fn adopt_replicas(client: &Client, seen: &Deployment) -> Result<Deployment> {
    let namespace = seen.metadata.namespace.as_deref().unwrap_or_default();
    let name = seen.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(AUTOSCALER_MANAGER).force();
    let mut seen = seen.clone();
    let mut attempt = 0;
    loop {
        let patch = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "resourceVersion": seen.metadata.resource_version},
            "spec": {"replicas": seen.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)},
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

fn spec_replicas(scale: &Scale) -> i32 {
    scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

async fn read_scale(client: &Client, namespace: &str, name: &str) -> Result<Scale> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api_call(
        || format!("read deployments/scale of {namespace}/{name}"),
        api.get_scale(name),
    )
    .await
}

/// What [`update_scale`] read and, if it wrote, the count it wrote.
struct Update {
    from: i32,
    to: Option<i32>,
}

/// Read the scale, ask `decide` for a new count, write it with the read
/// resourceVersion; on conflict, read again.
async fn update_scale(
    client: &Client,
    namespace: &str,
    name: &str,
    decide: impl Fn(i32) -> Option<i32>,
) -> Result<Update> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        field_manager: Some(AUTOSCALER_MANAGER.to_string()),
        ..PostParams::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut scale = read_scale(client, namespace, name).await?;
        let current = spec_replicas(&scale);
        let Some(to) = decide(current) else {
            return Ok(Update {
                from: current,
                to: None,
            });
        };
        // `scale.metadata.resourceVersion` is kept: the write is conditional on it.
        scale.spec.get_or_insert_with(Default::default).replicas = Some(to);
        scale.status = None;
        let result = api_call(
            || format!("set deployments/scale of {namespace}/{name} to {to}"),
            api.replace_scale(name, &params, &scale),
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
                tracing::debug!(%namespace, %name, "scale changed while writing it; reading it again");
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

    fn with_managers(entries: &[(&str, serde_json::Value)]) -> Deployment {
        let mut d = Deployment::default();
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
        assert!(!owns_replicas(&d, FIELD_MANAGER));
        assert!(owns_replicas(&d, AUTOSCALER_MANAGER));
        let d = with_managers(&[(
            FIELD_MANAGER,
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
        )]);
        assert!(owns_replicas(&d, FIELD_MANAGER));
        assert!(!owns_replicas(&Deployment::default(), FIELD_MANAGER));
    }
}
