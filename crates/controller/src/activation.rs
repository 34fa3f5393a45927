//! Activations: an activator parked the first request for a function at
//! zero and asks for a pod. Any controller replica (leader or not) takes
//! them, so the cold path never waits for an election.
//!
//! Contract: `POST /v1/activate/{namespace}/{name}` (empty body) answers
//! - 202 when the function is waking (its scale went 0 → max(minReplicas, 1))
//!   or already has replicas; repeated calls are harmless;
//! - 404 when there is no such Function (or this controller does not serve
//!   its namespace);
//! - 409 when the Function's spec is invalid, or when the Deployment or the
//!   Service of its name is not controlled by it (reason
//!   `DeploymentConflict` or `ServiceConflict`: Siesta never scales or wakes
//!   a workload it does not own, nor a Function it could not apply); the
//!   body says which and what to do, and the activator answers the parked
//!   requests with it at once (see its Ready condition);
//! - 503 when its Deployment does not exist yet (retry shortly);
//! - 500 when the apiserver failed (retry);
//! - 400 for a malformed path, 405 for a method other than POST.

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use siesta_api::Function;
use siesta_api::names::FunctionKey;
use siesta_api::names::{is_dns_label, is_dns_subdomain};

use crate::Result;
use crate::context::{Activation, Context};
use crate::error::api_call;
use crate::events::{Note, event_reason};
use crate::resources::ChildKind;
use crate::scale::{self, Wake};

/// The path prefix of the activation endpoint.
pub const PREFIX: &str = "/v1/activate/";

/// Why a path under [`PREFIX`] is not an activation.
#[derive(Debug, PartialEq, Eq)]
pub struct BadPath(pub String);

/// Parses `/v1/activate/{namespace}/{name}`; `None` when the path is not
/// under the prefix at all.
pub fn parse_path(path: &str) -> Option<Result<FunctionKey, BadPath>> {
    parse_path_under(PREFIX, path)
}

/// Parses `{prefix}{namespace}/{name}`; `None` when the path is not under
/// `prefix` at all.
pub fn parse_path_under(prefix: &str, path: &str) -> Option<Result<FunctionKey, BadPath>> {
    let rest = path.strip_prefix(prefix)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    let [namespace, name] = parts.as_slice() else {
        return Some(Err(BadPath(format!(
            "expected {prefix}NAMESPACE/NAME, got {path:?}"
        ))));
    };
    if !is_dns_label(namespace) {
        return Some(Err(BadPath(format!(
            "{namespace:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
        ))));
    }
    if !is_dns_subdomain(name) {
        return Some(Err(BadPath(format!(
            "{name:?} is not a Function name (lowercase letters, digits, '-' and '.', at most 253)"
        ))));
    }
    Some(Ok(FunctionKey {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }))
}

/// The HTTP answer to an activation.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Wakes the function if it is at zero. Counts the result, publishes a
/// `WokeUp` event on an actual wake, and tells the autoscaler.
pub async fn activate(ctx: &Context, key: &FunctionKey) -> Answer {
    let (result, answer) = activate_inner(ctx, key).await;
    ctx.metrics.activation(result);
    answer
}

/// The result label and the answer of one activation.
type Outcome = (&'static str, Answer);

fn answer(status: u16, body: String) -> Answer {
    Answer { status, body }
}

async fn activate_inner(ctx: &Context, key: &FunctionKey) -> Outcome {
    let (function, target) = match wakeable(ctx, key).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let replicas = function.spec.scale.min_replicas.max(1);
    let woken = async {
        service_is_its_own(ctx, &target).await?;
        scale::wake(&ctx.client, &target, replicas).await
    }
    .await;
    answer_wake(ctx, key, function, woken)
}

/// The Function and its scale target, when this controller may wake it:
/// served here, existing, valid. Otherwise the refusal (404, 409, 500).
async fn wakeable(ctx: &Context, key: &FunctionKey) -> Result<(Function, scale::Target), Outcome> {
    if !ctx.serves(&key.namespace) {
        return Err((
            "not_found",
            answer(
                404,
                format!(
                    "function {key} is not served by this controller (it watches namespace {:?} only)\n",
                    ctx.watch_namespace.as_deref().unwrap_or("")
                ),
            ),
        ));
    }
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let function = match api_call(|| format!("read Function {key}"), api.get_opt(&key.name)).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err((
                "not_found",
                answer(404, format!("function {key} not found\n")),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, function = %key, "activation failed");
            return Err((
                "error",
                answer(500, format!("could not read function {key}: {e}; retry\n")),
            ));
        }
    };
    if let Err(e) = siesta_api::validate(&function.spec) {
        return Err((
            "invalid",
            answer(409, format!("function {key} has an invalid spec: {e}\n")),
        ));
    }
    let target = match scale::Target::of(&function) {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!(error = %e, function = %key, "activation failed");
            return Err(("error", answer(500, format!("could not wake {key}: {e}\n"))));
        }
    };
    Ok((function, target))
}

/// The answer to a wake: 202 when woken or already awake (the autoscaler is
/// told, and a `WokeUp` event published on an actual wake), 409 when the
/// Deployment or Service is not the Function's, 503 before its Deployment
/// exists, 500 otherwise.
fn answer_wake(
    ctx: &Context,
    key: &FunctionKey,
    function: Function,
    woken: Result<Wake>,
) -> Outcome {
    match woken {
        Ok(Wake::Woke { to }) => {
            tracing::info!(function = %key, replicas = to, "woke up on an activation");
            let _ = ctx.activations.send(Activation {
                key: key.clone(),
                replicas: to,
            });
            // The event is for people; the parked request must not wait on
            // one more apiserver write before the activator hears back.
            let events = ctx.events.clone();
            tokio::spawn(async move {
                let note = Note::normal(
                    event_reason::WOKE_UP,
                    format!("a request arrived while at zero; scaled from 0 to {to} replicas"),
                );
                events.publish(&function, note).await;
            });
            (
                "woke",
                answer(202, format!("waking {key}: scaled from 0 to {to}\n")),
            )
        }
        Ok(Wake::Awake { replicas }) => {
            let _ = ctx.activations.send(Activation {
                key: key.clone(),
                replicas,
            });
            (
                "awake",
                answer(202, format!("{key} already has {replicas} replicas\n")),
            )
        }
        Err(e) if e.is_not_owned() => {
            // Not a warning of the controller's own: the Function's Ready
            // condition (DeploymentConflict, ServiceConflict) already tells
            // its owner.
            tracing::info!(function = %key, error = %e, "refused to wake a Function whose Deployment or Service Siesta does not own");
            (
                "conflict",
                answer(409, format!("function {key} cannot be woken: {e}\n")),
            )
        }
        Err(e) if e.is_not_found() => (
            "not_ready",
            answer(
                503,
                format!("function {key} has no Deployment yet; retry shortly\n"),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, function = %key, "activation failed");
            (
                "error",
                answer(500, format!("could not wake {key}: {e}; retry\n")),
            )
        }
    }
}

/// Refuses ([`crate::Error::NotOwned`]) when the Service of the Function's name
/// exists and is not the Function's. The reconciler writes nothing for such
/// a Function (`ServiceConflict`), so there is no Deployment of its own to
/// wake, and without this the activator would be told "no Deployment yet;
/// retry" until its queue timeout. The Deployment is checked, by the same
/// rule, by the scale write itself.
async fn service_is_its_own(ctx: &Context, target: &scale::Target) -> Result<()> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let service = api_call(
        || format!("read Service {target}"),
        services.get_opt(&target.name),
    )
    .await?;
    scale::ensure_owned(
        target,
        [(ChildKind::Service, service.as_ref().map(|s| &s.metadata))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> FunctionKey {
        FunctionKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_well_formed_path_names_the_function() {
        assert_eq!(
            parse_path("/v1/activate/default/hello"),
            Some(Ok(key("default", "hello")))
        );
        assert_eq!(
            parse_path("/v1/activate/ns-1/a.b-c/"),
            Some(Ok(key("ns-1", "a.b-c")))
        );
    }

    #[test]
    fn other_paths_are_not_activations() {
        assert_eq!(parse_path("/metrics"), None);
        assert_eq!(parse_path("/v1/activate"), None);
    }

    #[test]
    fn malformed_activation_paths_are_bad_requests() {
        for bad in [
            "/v1/activate/",
            "/v1/activate/default",
            "/v1/activate/default/",
            "/v1/activate/default/hello/extra",
            "/v1/activate//hello",
            "/v1/activate/Default/hello",
            "/v1/activate/default/Hello",
            "/v1/activate/default/-x",
            "/v1/activate/a.b/hello",
            "/v1/activate/default/hello%20",
        ] {
            assert!(
                matches!(parse_path(bad), Some(Err(_))),
                "{bad} should be a bad path"
            );
        }
        let long = format!("/v1/activate/{}/x", "a".repeat(64));
        assert!(matches!(parse_path(&long), Some(Err(_))));
    }
}
