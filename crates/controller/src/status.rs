//! Pure: what a Function's `status` says, given what the controller saw.
//! No API calls here, so every condition a user can meet is unit-tested.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use siesta_api::{Function, FunctionStatus};

use crate::deployment_view::DeploymentView;
use crate::resources::{ChildKind, Taken};

/// Condition types.
pub const READY: &str = "Ready";
pub const ACTIVE: &str = "Active";

/// Condition reasons. They are the contract a user (and `kubectl get fn -o wide`) reads.
pub mod condition_reason {
    /// Ready=True: at least one pod is ready.
    pub const PODS_READY: &str = "PodsReady";
    /// Ready=True / Active=False: no pods on purpose; the next request wakes it.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// Ready=False: the spec passed the schema but cannot run (see `siesta_api::validate`).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Ready=False / Active=False: a Deployment of that name exists and
    /// belongs to something else; Siesta neither changes nor scales it.
    pub const DEPLOYMENT_CONFLICT: &str = "DeploymentConflict";
    /// Ready=False / Active=False: a Service of that name exists and
    /// belongs to something else; Siesta writes neither it nor the
    /// Function's Deployment, and does not wake the Function.
    pub const SERVICE_CONFLICT: &str = "ServiceConflict";
    /// Ready=False: pods are wanted but none exists yet.
    pub const DEPLOYING: &str = "Deploying";
    /// Ready=False: pods exist but none is ready.
    pub const PODS_NOT_READY: &str = "PodsNotReady";
    /// Ready=False: the controller could not write the Deployment or Service.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Active=True: replicas are wanted.
    pub const SERVING: &str = "Serving";
    /// Active=False: there is no Deployment (yet).
    pub const NOT_DEPLOYED: &str = "NotDeployed";
}

/// Why the controller could not (or would not) make the Deployment match the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The spec cannot run; the message says what to change. The existing
    /// Deployment (if any) is left alone.
    InvalidSpec(String),
    /// A child of that name (the Deployment or the Service) exists and is
    /// not controlled by this Function; nothing was written.
    Conflict { kind: ChildKind, message: String },
    /// Writing the children failed; the message is the error.
    ReconcileFailed(String),
}

impl Problem {
    /// The conflict `taken` reports for the Function `namespace/name`,
    /// with what Ready says: which object, why it is not the Function's,
    /// what Siesta does about it, and what to do.
    pub fn conflict(namespace: &str, name: &str, taken: Taken) -> Self {
        let kind = taken.kind;
        let held_back = match kind {
            ChildKind::Deployment => "it does not patch, scale or wake it",
            ChildKind::Service => {
                "it does not patch it, and does not create, scale or wake this Function's Deployment either"
            }
        };
        Problem::Conflict {
            kind,
            message: format!(
                "{kind} {namespace}/{name} exists and is not controlled by this Function: {}. Siesta leaves it alone ({held_back}) and answers requests for this Function with 503; delete or rename that {kind}, or give the Function another name",
                taken.why
            ),
        }
    }
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub function: &'a Function,
    /// The Deployment as last read or written, if it exists.
    pub deployment: Option<&'a DeploymentView>,
    pub problem: Option<&'a Problem>,
    /// The domain of function URLs (`--domain`).
    pub domain: &'a str,
    pub now: Timestamp,
}

/// The URL a function answers on (through the activator).
pub fn url(name: &str, namespace: &str, domain: &str) -> String {
    format!("http://{name}.{namespace}.{domain}")
}

/// The status to write. `autoscaler` is left `None`: the autoscaler owns it.
pub fn compute(o: &Observed<'_>) -> FunctionStatus {
    let f = o.function;
    let name = f.name_any();
    let namespace = f.namespace().unwrap_or_default();
    let generation = f.metadata.generation;
    let previous = f
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();

    let conflict = match o.problem {
        Some(Problem::Conflict { kind, .. }) => Some(*kind),
        _ => None,
    };
    // A Deployment that is not this Function's says nothing about it: its
    // pods are not the Function's, and it is not scaled on its behalf.
    let d = o
        .deployment
        .filter(|_| conflict != Some(ChildKind::Deployment));
    let d_status = d.and_then(|d| d.status.as_ref());
    let replicas = d_status.and_then(|s| s.replicas).unwrap_or(0);
    let ready_replicas = d_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let desired_replicas = d.map_or(0, DeploymentView::replicas);

    let (ready_status, ready_reason, ready_message) = ready_condition(
        o.problem,
        d,
        &name,
        desired_replicas,
        replicas,
        ready_replicas,
    );
    let (active_status, active_reason, active_message) =
        active_condition(d, conflict, desired_replicas, ready_replicas);

    let conditions = vec![
        condition(
            previous,
            READY,
            ready_status,
            ready_reason,
            ready_message,
            generation,
            o.now,
        ),
        condition(
            previous,
            ACTIVE,
            active_status,
            active_reason,
            active_message,
            generation,
            o.now,
        ),
    ];
    FunctionStatus {
        observed_generation: generation,
        url: Some(url(&name, &namespace, o.domain)),
        replicas,
        ready_replicas,
        desired_replicas,
        conditions,
        autoscaler: None,
        last_cold_start: None,
        recent_cold_starts: Vec::new(),
        usage: None,
    }
}

/// The Ready condition's status, reason and message: a problem first, then
/// whether the Deployment exists and how many of its pods are ready.
fn ready_condition(
    problem: Option<&Problem>,
    d: Option<&DeploymentView>,
    name: &str,
    desired_replicas: i32,
    replicas: i32,
    ready_replicas: i32,
) -> (bool, &'static str, String) {
    match (problem, d) {
        (Some(Problem::InvalidSpec(msg)), _) => {
            (false, condition_reason::INVALID_SPEC, msg.clone())
        }
        (Some(Problem::Conflict { kind, message }), _) => {
            (false, conflict_reason(*kind), message.clone())
        }
        (Some(Problem::ReconcileFailed(msg)), _) => (
            false,
            condition_reason::RECONCILE_FAILED,
            format!("{msg}; the controller retries"),
        ),
        (None, None) => (
            false,
            condition_reason::DEPLOYING,
            format!("creating Deployment {name}"),
        ),
        (None, Some(d)) => readiness(d, name, desired_replicas, replicas, ready_replicas),
    }
}

/// The Active condition's status, reason and message: whether pods are
/// wanted, and what keeps them from being the Function's own.
fn active_condition(
    d: Option<&DeploymentView>,
    conflict: Option<ChildKind>,
    desired_replicas: i32,
    ready_replicas: i32,
) -> (bool, &'static str, String) {
    match d {
        _ if conflict == Some(ChildKind::Service) => (
            false,
            condition_reason::SERVICE_CONFLICT,
            "not woken: the Service of its name is not this Function's, and requests for it at zero are answered 503 until that is resolved (see Ready)".to_string(),
        ),
        None if conflict == Some(ChildKind::Deployment) => (
            false,
            condition_reason::DEPLOYMENT_CONFLICT,
            "no pods of its own: the Deployment of its name is not this Function's, and requests are answered 503 until that is resolved (see Ready)".to_string(),
        ),
        None => (
            false,
            condition_reason::NOT_DEPLOYED,
            "no Deployment exists for this function".to_string(),
        ),
        Some(_) if desired_replicas == 0 => (
            false,
            condition_reason::SCALED_TO_ZERO,
            "no pods; the next request wakes it".to_string(),
        ),
        Some(_) => (
            true,
            condition_reason::SERVING,
            format!("{desired_replicas} replicas wanted, {ready_replicas} ready"),
        ),
    }
}

/// The condition reason for a child's name taken by someone else.
pub fn conflict_reason(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Deployment => condition_reason::DEPLOYMENT_CONFLICT,
        ChildKind::Service => condition_reason::SERVICE_CONFLICT,
    }
}

/// Ready for a valid Function whose Deployment exists.
fn readiness(
    d: &DeploymentView,
    name: &str,
    desired: i32,
    replicas: i32,
    ready: i32,
) -> (bool, &'static str, String) {
    if ready > 0 {
        return (
            true,
            condition_reason::PODS_READY,
            format!("{ready} of {desired} pods ready"),
        );
    }
    let pods_hint = format!(
        "see `kubectl get pods -l {}={name}`",
        siesta_api::FUNCTION_LABEL
    );
    if let Some(failure) = deployment_failure(d) {
        return (
            false,
            condition_reason::PODS_NOT_READY,
            format!("{failure}; {pods_hint}"),
        );
    }
    // At zero there is nothing to wait for: the Deployment exists, is the
    // Function's and reports no failure, so a request can wake it. Waiting
    // for the Deployment controller to observe it (it makes an empty
    // ReplicaSet) said nothing more, and cost the most time when many
    // Functions are created at once: the controller manager writes at 20
    // requests/s by default, so 1,000 took it 200 s. A wake before it has
    // caught up waits for it in the `schedule` phase of the cold start.
    if desired == 0 {
        return (
            true,
            condition_reason::SCALED_TO_ZERO,
            "no pods; the next request wakes it".to_string(),
        );
    }
    if replicas == 0 {
        (
            false,
            condition_reason::DEPLOYING,
            format!("waiting for {desired} pods to be created; {pods_hint}"),
        )
    } else {
        (
            false,
            condition_reason::PODS_NOT_READY,
            format!("0 of {replicas} pods ready; {pods_hint}"),
        )
    }
}

/// A condition by which a Deployment reports a failure of its own: pods it
/// cannot make (quota), or no progress within its deadline.
pub fn is_deployment_failure(c: &k8s_openapi::api::apps::v1::DeploymentCondition) -> bool {
    (c.type_ == "ReplicaFailure" && c.status == "True")
        || (c.type_ == "Progressing" && c.status == "False")
}

/// A failure the Deployment reports itself (quota, progress deadline).
pub(crate) fn deployment_failure(d: &DeploymentView) -> Option<String> {
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        is_deployment_failure(c).then(|| {
            format!(
                "Deployment {}: {}",
                c.reason.as_deref().unwrap_or(&c.type_),
                c.message.as_deref().unwrap_or("no message")
            )
        })
    })
}

/// A condition that keeps its `lastTransitionTime` while its status stays the same.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// True when writing `new` would change what `old` says. Only the
/// reconciler's fields are compared: the autoscaler's (`autoscaler`,
/// `desiredReplicas`), the cold-start record's (`lastColdStart`,
/// `recentColdStarts`) and the usage record's (`usage`) are written by
/// their own field managers. Comparing those too made every reconcile of a
/// Function with a usage record write its status (a no-op at the server,
/// but one request per reconcile, and a reconcile follows every write).
pub fn changed(old: Option<&FunctionStatus>, new: &FunctionStatus) -> bool {
    match old {
        None => true,
        Some(old) => {
            fn ours(
                s: &FunctionStatus,
            ) -> (Option<i64>, &Option<String>, i32, i32, &Vec<Condition>) {
                (
                    s.observed_generation,
                    &s.url,
                    s.replicas,
                    s.ready_replicas,
                    &s.conditions,
                )
            }
            ours(old) != ours(new)
        }
    }
}

/// The condition of a type, if present.
pub fn find<'a>(status: Option<&'a FunctionStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment_view::SpecView;
    use crate::resources::tests::function;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::jiff::SignedDuration;

    fn deployment(spec_replicas: i32, replicas: i32, ready: i32) -> DeploymentView {
        let mut d = DeploymentView {
            spec: Some(SpecView {
                replicas: Some(spec_replicas),
            }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                observed_generation: Some(2),
                ..DeploymentStatus::default()
            }),
            ..DeploymentView::default()
        };
        d.metadata.generation = Some(2);
        d
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn status_of(f: &Function, d: Option<&DeploymentView>, p: Option<&Problem>) -> FunctionStatus {
        compute(&Observed {
            function: f,
            deployment: d,
            problem: p,
            domain: "siesta.local",
            now: now(),
        })
    }

    fn cond<'a>(s: &'a FunctionStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn ready_pods_make_it_ready_and_active() {
        let f = function(serde_json::json!({"image": "x"}));
        let d = deployment(2, 2, 1);
        let s = status_of(&f, Some(&d), None);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.url.as_deref(), Some("http://hello.demo.siesta.local"));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.desired_replicas),
            (2, 1, 2)
        );
        let ready = cond(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", condition_reason::PODS_READY)
        );
        assert_eq!(ready.message, "1 of 2 pods ready");
        assert_eq!(ready.observed_generation, Some(3));
        let active = cond(&s, ACTIVE);
        assert_eq!(
            (active.status.as_str(), active.reason.as_str()),
            ("True", condition_reason::SERVING)
        );
    }

    #[test]
    fn zero_replicas_with_a_healthy_deployment_is_ready_and_inactive() {
        let f = function(serde_json::json!({"image": "x"}));
        let s = status_of(&f, Some(&deployment(0, 0, 0)), None);
        let ready = cond(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", condition_reason::SCALED_TO_ZERO)
        );
        assert_eq!(ready.message, "no pods; the next request wakes it");
        let active = cond(&s, ACTIVE);
        assert_eq!(
            (active.status.as_str(), active.reason.as_str()),
            ("False", condition_reason::SCALED_TO_ZERO)
        );
    }

    /// Just created, before the Deployment controller has written any
    /// status: at zero it is Ready already; a failure it reports is not.
    #[test]
    fn zero_replicas_are_ready_before_the_deployment_controller_observes_them() {
        let f = function(serde_json::json!({"image": "x"}));
        let mut d = deployment(0, 0, 0);
        d.metadata.generation = Some(3);
        d.status = None;
        let s = status_of(&f, Some(&d), None);
        assert_eq!(
            (
                cond(&s, READY).status.as_str(),
                cond(&s, READY).reason.as_str()
            ),
            ("True", condition_reason::SCALED_TO_ZERO)
        );
        let mut failed = deployment(0, 0, 0);
        failed.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("exceeded quota".into()),
                ..Default::default()
            }]);
        let s = status_of(&f, Some(&failed), None);
        assert_eq!(
            (
                cond(&s, READY).status.as_str(),
                cond(&s, READY).reason.as_str()
            ),
            ("False", condition_reason::PODS_NOT_READY)
        );
    }

    #[test]
    fn wanted_pods_not_ready_say_which_and_where_to_look() {
        let f = function(serde_json::json!({"image": "x"}));
        let s = status_of(&f, Some(&deployment(1, 0, 0)), None);
        assert_eq!(cond(&s, READY).reason, condition_reason::DEPLOYING);
        let s = status_of(&f, Some(&deployment(1, 1, 0)), None);
        let ready = cond(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", condition_reason::PODS_NOT_READY)
        );
        assert!(
            ready
                .message
                .contains("kubectl get pods -l siesta.dev/function=hello"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_failing_deployment_is_reported_even_at_zero() {
        let f = function(serde_json::json!({"image": "x"}));
        let mut d = deployment(0, 0, 0);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("exceeded quota".into()),
            ..DeploymentCondition::default()
        }]);
        let s = status_of(&f, Some(&d), None);
        let ready = cond(&s, READY);
        assert_eq!(ready.reason, condition_reason::PODS_NOT_READY);
        assert!(ready.message.contains("exceeded quota"));
    }

    #[test]
    fn invalid_spec_is_not_ready_with_the_validation_message() {
        let f = function(
            serde_json::json!({"image": "x", "scale": {"minReplicas": 3, "maxReplicas": 1}}),
        );
        let msg = siesta_api::validate(&f.spec).unwrap_err().to_string();
        let s = status_of(&f, None, Some(&Problem::InvalidSpec(msg.clone())));
        let ready = cond(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", condition_reason::INVALID_SPEC)
        );
        assert_eq!(ready.message, msg);
        assert_eq!(cond(&s, ACTIVE).reason, condition_reason::NOT_DEPLOYED);
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn reconcile_failure_keeps_replica_counts_from_the_deployment() {
        let f = function(serde_json::json!({"image": "x"}));
        let p = Problem::ReconcileFailed("apply Deployment demo/hello failed: forbidden".into());
        let s = status_of(&f, Some(&deployment(2, 2, 2)), Some(&p));
        assert_eq!(cond(&s, READY).reason, condition_reason::RECONCILE_FAILED);
        assert!(cond(&s, READY).message.contains("forbidden"));
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(cond(&s, ACTIVE).status, "True");
    }

    #[test]
    fn a_conflicting_deployment_is_reported_and_none_of_its_numbers_are_claimed() {
        let f = function(serde_json::json!({"image": "x"}));
        let p = Problem::conflict(
            "demo",
            "hello",
            Taken {
                kind: ChildKind::Deployment,
                why: "it has no controller owner reference".into(),
            },
        );
        // Someone else's Deployment, at zero or running: neither is this Function's.
        for foreign in [deployment(0, 0, 0), deployment(3, 3, 3)] {
            let s = status_of(&f, Some(&foreign), Some(&p));
            let ready = cond(&s, READY);
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", condition_reason::DEPLOYMENT_CONFLICT)
            );
            assert!(ready.message.contains("not controlled by this Function"));
            let active = cond(&s, ACTIVE);
            assert_eq!(
                (active.status.as_str(), active.reason.as_str()),
                ("False", condition_reason::DEPLOYMENT_CONFLICT)
            );
            assert!(
                !active.message.contains("wakes"),
                "the next request does not wake it: {}",
                active.message
            );
            assert_eq!(
                (s.replicas, s.ready_replicas, s.desired_replicas),
                (0, 0, 0)
            );
        }
    }

    #[test]
    fn a_conflicting_service_is_reported_and_never_called_woken() {
        let f = function(serde_json::json!({"image": "x"}));
        let p = Problem::conflict(
            "demo",
            "hello",
            Taken {
                kind: ChildKind::Service,
                why: "it has no controller owner reference".into(),
            },
        );
        // No Deployment (a new Function: nothing was written), or the
        // Function's own from before someone replaced its Service.
        for own in [None, Some(deployment(0, 0, 0))] {
            let s = status_of(&f, own.as_ref(), Some(&p));
            let ready = cond(&s, READY);
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", condition_reason::SERVICE_CONFLICT)
            );
            for says in [
                "Service demo/hello exists and is not controlled by this Function: it has no controller owner reference.",
                "answers requests for this Function with 503",
                "delete or rename that Service, or give the Function another name",
            ] {
                assert!(ready.message.contains(says), "{}", ready.message);
            }
            assert!(
                !ready.message.contains("that Deployment"),
                "{}",
                ready.message
            );
            let active = cond(&s, ACTIVE);
            assert_eq!(
                (active.status.as_str(), active.reason.as_str()),
                ("False", condition_reason::SERVICE_CONFLICT)
            );
            assert!(active.message.contains("Service of its name"));
            assert!(
                !active.message.contains("wakes"),
                "the next request does not wake it: {}",
                active.message
            );
        }
        // The Function's own Deployment still reports its own numbers.
        let s = status_of(&f, Some(&deployment(2, 2, 1)), Some(&p));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.desired_replicas),
            (2, 1, 2)
        );
    }

    #[test]
    fn transition_time_is_kept_while_status_stays_and_moves_when_it_flips() {
        let mut f = function(serde_json::json!({"image": "x"}));
        let earlier = Time(now() - SignedDuration::from_secs(600));
        let mut old = status_of(&f, Some(&deployment(1, 1, 1)), None);
        for c in &mut old.conditions {
            c.last_transition_time = earlier.clone();
        }
        f.status = Some(old);
        // Same statuses (a different message): times kept.
        let s = status_of(&f, Some(&deployment(2, 2, 2)), None);
        assert_eq!(cond(&s, READY).last_transition_time, earlier);
        assert_eq!(cond(&s, ACTIVE).last_transition_time, earlier);
        // Ready stays True (ScaledToZero), Active flips to False: only Active moves.
        let s = status_of(&f, Some(&deployment(0, 0, 0)), None);
        assert_eq!(cond(&s, READY).last_transition_time, earlier);
        assert_eq!(cond(&s, ACTIVE).last_transition_time, Time(now()));
    }

    #[test]
    fn unchanged_status_is_not_rewritten_and_autoscaler_part_is_ignored() {
        let mut f = function(serde_json::json!({"image": "x"}));
        let s = status_of(&f, Some(&deployment(1, 1, 1)), None);
        assert!(changed(None, &s));
        let mut old = s.clone();
        old.autoscaler = Some(siesta_api::AutoscalerStatus::default());
        assert!(!changed(Some(&old), &s));
        f.status = Some(old);
        let later = status_of(&f, Some(&deployment(1, 1, 1)), None);
        assert!(!changed(f.status.as_ref(), &later));
        let scaled = status_of(&f, Some(&deployment(2, 2, 1)), None);
        assert!(changed(f.status.as_ref(), &scaled));
        // desiredReplicas alone is the autoscaler's business.
        let mut desired_only = later.clone();
        desired_only.desired_replicas = 7;
        assert!(!changed(f.status.as_ref(), &desired_only));
    }

    #[test]
    fn the_other_managers_fields_do_not_make_the_status_changed() {
        let f = function(serde_json::json!({"image": "x"}));
        let s = status_of(&f, Some(&deployment(0, 0, 0)), None);
        let mut old = s.clone();
        old.usage = Some(siesta_api::usage::UsageStatus::default());
        old.recent_cold_starts = vec![Default::default()];
        old.last_cold_start = Some(Default::default());
        assert!(
            !changed(Some(&old), &s),
            "usage and cold starts are not the reconciler's"
        );
        old.ready_replicas = 1;
        assert!(changed(Some(&old), &s), "ready replicas are");
    }
}
