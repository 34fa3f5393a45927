//! Kubernetes events (events.k8s.io/v1, served from 1.19 on) on Functions:
//! what `kubectl describe fn` shows a user. Publishing is best effort: a
//! failed event is logged, never a failed reconcile.
//!
//! The same event again within [`SERIES_WINDOW`] (same Function, type,
//! reason and note) is counted on the first one (its `series`) instead of
//! made anew, as client-go's recorder does. What is remembered for that is
//! small (`Recent`): kube-runtime's `Recorder` kept a whole Event per
//! event for it, about 3 KiB per Function after a creation burst (heaptrack
//! at 1,000 Functions, `SCALE_HEAPTRACK` in hack/bench/scale.sh), and swept
//! its whole cache on every publish.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use siesta_api::{Function, FunctionStatus};

use crate::status;

/// How long a published event is counted on rather than made again.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

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
    client: kube::Client,
    instance: String,
    recent: std::sync::Arc<Mutex<Recent>>,
}

impl Events {
    pub fn new(client: kube::Client, instance: &str) -> Self {
        Self {
            client,
            instance: instance.to_string(),
            recent: Default::default(),
        }
    }

    pub async fn publish(&self, function: &Function, mut note: Note) {
        let reference = function.object_ref(&());
        let namespace = reference.namespace.clone().unwrap_or_default();
        // events.k8s.io limits a note to 1 kB.
        if note.note.len() > 1000 {
            let mut cut = 1000;
            while !note.note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.note.truncate(cut);
        }
        let key = Recent::key(&reference, note.warning, note.reason, &note.note);
        let now = jiff::Timestamp::now();
        // Named as kubectl and client-go name them: the object's name and
        // the time in hex.
        let new_name = || {
            format!(
                "{}.{:x}",
                reference.name.as_deref().unwrap_or(REPORTER),
                now.as_nanosecond()
            )
        };
        let planned = self.lock().plan(key, Instant::now(), new_name);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let create = |name| {
            let event = self.event(&reference, &note, name, now);
            let api = api.clone();
            async move { api.create(&PostParams::default(), &event).await.map(drop) }
        };
        let result = match planned {
            Publish::Repeat { name, count } => {
                let series = serde_json::json!({"series": EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                }});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    // Gone from the apiserver (events expire): made anew.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        let name = self.lock().restart(key, Instant::now(), new_name());
                        create(name).await
                    }
                    r => r.map(drop),
                }
            }
            Publish::New { name } => create(name).await,
        };
        if let Err(e) = result {
            self.lock().forget(key);
            tracing::warn!(
                error = %e,
                reason = note.reason,
                function = ?reference.name,
                namespace = %namespace,
                "could not publish an event; check the controller may create and patch events.k8s.io events"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn event(
        &self,
        reference: &ObjectReference,
        note: &Note,
        name: String,
        now: jiff::Timestamp,
    ) -> Event {
        let kind = if note.warning { "Warning" } else { "Normal" };
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: reference.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(note.reason.to_string()),
            reason: Some(note.reason.to_string()),
            note: Some(note.note.clone()),
            regarding: Some(reference.clone()),
            reporting_controller: Some(REPORTER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(kind.to_string()),
            ..Event::default()
        }
    }
}

/// What to write for one event.
#[derive(Debug, PartialEq, Eq)]
enum Publish {
    /// A new Event of this name.
    New { name: String },
    /// The `count`th of the Event of this name.
    Repeat { name: String, count: i32 },
}

/// The events published in the last [`SERIES_WINDOW`], by a hash of what
/// makes two the same: the Event's name, how many, when first made. Pure.
#[derive(Default)]
struct Recent {
    seen: HashMap<u64, Seen>,
    swept: Option<Instant>,
}

struct Seen {
    name: String,
    count: i32,
    first: Instant,
}

impl Recent {
    fn key(reference: &ObjectReference, warning: bool, reason: &str, note: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &reference.namespace,
            &reference.name,
            &reference.uid,
            warning,
            reason,
            note,
        )
            .hash(&mut h);
        h.finish()
    }

    /// A repeat within the window of the first, or a new Event named by
    /// `name`. Entries past the window are dropped at most once a minute.
    fn plan(&mut self, key: u64, now: Instant, name: impl FnOnce() -> String) -> Publish {
        if self
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
        {
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.first) < SERIES_WINDOW);
            self.swept = Some(now);
        }
        match self.seen.get_mut(&key) {
            Some(s) if now.saturating_duration_since(s.first) < SERIES_WINDOW => {
                s.count += 1;
                Publish::Repeat {
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => {
                let name = name();
                self.seen.insert(
                    key,
                    Seen {
                        name: name.clone(),
                        count: 1,
                        first: now,
                    },
                );
                Publish::New { name }
            }
        }
    }

    /// The event's Event is gone: the next is a new one, named anew.
    fn restart(&mut self, key: u64, now: Instant, name: String) -> String {
        self.seen.remove(&key);
        match self.plan(key, now, || name) {
            Publish::New { name } | Publish::Repeat { name, .. } => name,
        }
    }

    /// A failed write: the next same event starts afresh.
    fn forget(&mut self, key: u64) {
        self.seen.remove(&key);
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
    fn the_same_event_within_the_window_is_counted_on_the_first() {
        let mut r = Recent::default();
        let t0 = Instant::now();
        let first = r.plan(1, t0, || "a".into());
        assert_eq!(first, Publish::New { name: "a".into() });
        let again = r.plan(1, t0 + Duration::from_secs(10), || "b".into());
        assert_eq!(
            again,
            Publish::Repeat {
                name: "a".into(),
                count: 2
            }
        );
        let third = r.plan(1, t0 + Duration::from_secs(20), || "c".into());
        assert_eq!(
            third,
            Publish::Repeat {
                name: "a".into(),
                count: 3
            }
        );
        // Another event (another note, reason or Function) is its own.
        assert_eq!(
            r.plan(2, t0 + Duration::from_secs(20), || "d".into()),
            Publish::New { name: "d".into() }
        );
    }

    #[test]
    fn after_the_window_the_same_event_is_a_new_one_and_old_ones_are_swept() {
        let mut r = Recent::default();
        let t0 = Instant::now();
        r.plan(1, t0, || "a".into());
        r.plan(2, t0, || "b".into());
        let later = t0 + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(
            r.plan(1, later, || "a2".into()),
            Publish::New { name: "a2".into() }
        );
        assert_eq!(r.seen.len(), 1, "the other, past its window, was swept");
    }

    #[test]
    fn a_failed_write_or_a_gone_event_starts_afresh() {
        let mut r = Recent::default();
        let t0 = Instant::now();
        r.plan(1, t0, || "a".into());
        r.forget(1);
        assert_eq!(
            r.plan(1, t0, || "b".into()),
            Publish::New { name: "b".into() }
        );
        let renamed = r.restart(1, t0, "b2".into());
        assert_eq!(renamed, "b2");
        assert_eq!(
            r.plan(1, t0, || "c".into()),
            Publish::Repeat {
                name: renamed,
                count: 2
            }
        );
    }

    #[test]
    fn the_key_tells_functions_reasons_and_notes_apart() {
        let reference = |name: &str| ObjectReference {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some("u".into()),
            ..ObjectReference::default()
        };
        let k = Recent::key(&reference("f"), false, "Scaled", "to 2");
        assert_eq!(k, Recent::key(&reference("f"), false, "Scaled", "to 2"));
        assert_ne!(k, Recent::key(&reference("g"), false, "Scaled", "to 2"));
        assert_ne!(k, Recent::key(&reference("f"), true, "Scaled", "to 2"));
        assert_ne!(k, Recent::key(&reference("f"), false, "WokeUp", "to 2"));
        assert_ne!(k, Recent::key(&reference("f"), false, "Scaled", "to 3"));
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
