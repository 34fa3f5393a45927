//! Kubernetes events (events.k8s.io/v1, served from 1.19 on) on Functions:
//! what `kubectl describe fn` shows a user. Publishing is best effort: a
//! failed event is logged, never a failed reconcile.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use siesta_api::{Function, FunctionStatus};

use crate::status;

/// Event reasons (the `reason` of an events.k8s.io Event). Apart from
/// [`status::condition_reason`]: some words are the same, the contract is not.
pub mod event_reason {
    pub const CREATED: &str = "Created";
    pub const UPDATED: &str = "Updated";
    pub const DRIFT_CORRECTED: &str = "DriftCorrected";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const DEPLOYMENT_CONFLICT: &str = "DeploymentConflict";
    pub const SERVICE_CONFLICT: &str = "ServiceConflict";
    pub const SCALED: &str = "Scaled";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const WOKE_UP: &str = "WokeUp";
    pub const COLD_START: &str = "ColdStart";
    pub const PANIC_ENTERED: &str = "PanicEntered";
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
}

/// The reporting component, as shown in `kubectl describe`.
pub const REPORTER: &str = "siesta-controller";

/// An event to publish: kind, reason, and a note a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl Note {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            note: note.into(),
        }
    }
    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// Publishes events for Functions.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_string(),
            instance: Some(instance.to_string()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn publish(&self, function: &Function, note: Note) {
        let reference = function.object_ref(&());
        // events.k8s.io limits a note to 1 kB.
        let mut text = note.note;
        if text.len() > 1000 {
            let mut cut = 1000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.to_string(),
            note: Some(text),
            action: note.reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(
                error = %e,
                reason = note.reason,
                function = ?reference.name,
                namespace = ?reference.namespace,
                "could not publish an event; check the controller may create events.k8s.io events"
            );
        }
    }
}

/// Events implied by a status change: an invalid spec, or a Deployment or
/// Service of the Function's name that is not its own (each once per
/// distinct message). Pure, so it is tested. Scaling events come from whoever
/// scales: the autoscaler (Scaled, ScaledToZero, WokeUp), the activation
/// endpoint (WokeUp) and the reconciler's min/max clamp (Scaled); the
/// `desiredReplicas` the status carries is the autoscaler's.
pub fn for_status_change(old: Option<&FunctionStatus>, new: &FunctionStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    let old_ready = status::find(old, status::READY);
    let new_ready = status::find(Some(new), status::READY);
    let Some(ready) = new_ready else {
        return notes;
    };
    let same = old_ready.is_some_and(|o| o.reason == ready.reason && o.message == ready.message);
    if same {
        return notes;
    }
    if ready.reason == status::condition_reason::INVALID_SPEC {
        notes.push(Note::warning(
            event_reason::INVALID_SPEC,
            format!(
                "{}; the Deployment is not changed until the spec is fixed",
                ready.message
            ),
        ));
    } else if ready.reason == status::condition_reason::DEPLOYMENT_CONFLICT {
        notes.push(Note::warning(
            event_reason::DEPLOYMENT_CONFLICT,
            ready.message.clone(),
        ));
    } else if ready.reason == status::condition_reason::SERVICE_CONFLICT {
        notes.push(Note::warning(
            event_reason::SERVICE_CONFLICT,
            ready.message.clone(),
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn st(desired: i32, ready_reason: &str, message: &str) -> FunctionStatus {
        let c = |t: &str, r: &str, m: &str| Condition {
            type_: t.into(),
            status: "True".into(),
            reason: r.into(),
            message: m.into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        FunctionStatus {
            desired_replicas: desired,
            conditions: vec![
                c(status::READY, ready_reason, message),
                c(status::ACTIVE, "x", ""),
            ],
            ..FunctionStatus::default()
        }
    }

    #[test]
    fn a_desired_count_change_in_status_is_not_a_second_scaling_event() {
        // The autoscaler publishes scaling events when it writes the scale;
        // the status write that follows must not repeat them.
        assert_eq!(
            for_status_change(Some(&st(1, "PodsReady", "")), &st(3, "PodsReady", "")),
            vec![]
        );
        assert_eq!(
            for_status_change(Some(&st(2, "PodsReady", "")), &st(0, "ScaledToZero", "")),
            vec![]
        );
        assert_eq!(
            for_status_change(Some(&st(2, "PodsReady", "")), &st(2, "PodsReady", "")),
            vec![]
        );
    }

    #[test]
    fn the_first_status_reports_no_scaling() {
        assert_eq!(for_status_change(None, &st(1, "Deploying", "")), vec![]);
    }

    #[test]
    fn invalid_spec_is_reported_once_per_message() {
        let bad = st(0, status::condition_reason::INVALID_SPEC, "min above max");
        let notes = for_status_change(None, &bad);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].warning);
        assert!(notes[0].note.starts_with("min above max"));
        assert_eq!(for_status_change(Some(&bad), &bad), vec![]);
        let other = st(0, status::condition_reason::INVALID_SPEC, "empty image");
        assert_eq!(for_status_change(Some(&bad), &other).len(), 1);
    }

    #[test]
    fn a_deployment_conflict_is_a_warning_once_per_message() {
        let conflict = st(
            0,
            status::condition_reason::DEPLOYMENT_CONFLICT,
            "Deployment demo/hello exists and is not controlled by this Function",
        );
        let notes = for_status_change(Some(&st(0, "Deploying", "")), &conflict);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].warning);
        assert_eq!(notes[0].reason, event_reason::DEPLOYMENT_CONFLICT);
        assert!(notes[0].note.contains("not controlled by this Function"));
        assert_eq!(for_status_change(Some(&conflict), &conflict), vec![]);
    }

    #[test]
    fn a_service_conflict_is_a_warning_once_per_message() {
        let conflict = st(
            0,
            status::condition_reason::SERVICE_CONFLICT,
            "Service demo/hello exists and is not controlled by this Function",
        );
        let notes = for_status_change(Some(&st(0, "Deploying", "")), &conflict);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].warning);
        assert_eq!(notes[0].reason, event_reason::SERVICE_CONFLICT);
        assert!(notes[0].note.starts_with("Service demo/hello"));
        assert_eq!(for_status_change(Some(&conflict), &conflict), vec![]);
        // The Deployment's name freed but the Service's still taken: a new
        // reason, so a new warning.
        let was_deployment = st(
            0,
            status::condition_reason::DEPLOYMENT_CONFLICT,
            "Deployment demo/hello exists and is not controlled by this Function",
        );
        assert_eq!(for_status_change(Some(&was_deployment), &conflict).len(), 1);
    }
}
