//! Leader election on a coordination.k8s.io/v1 Lease, so that two
//! controller replicas never both reconcile or scale.
//!
//! The decision is pure ([`Elector`], time passed in) and follows client-go:
//! a follower judges a lease expired by *its own* clock — the lease must not
//! have changed (resourceVersion) for a whole lease duration since this
//! replica first saw it — so clock skew between nodes does not matter. The
//! leader stops acting when it has not renewed for `renew_deadline`
//! (two thirds of the duration), before any follower may take over. Every
//! write carries the resourceVersion it read, so two candidates never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::api_call;
use crate::metrics::Metrics;

/// What to do after reading the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, it expired, or it names us after a restart: take it.
    Acquire,
    /// We lead: write a fresh renewTime.
    Renew,
    /// Someone else leads; it expires in `expires_in` unless renewed.
    StandBy {
        holder: String,
        expires_in: Duration,
    },
    /// We led and must stop acting now.
    Lost { why: String },
}

/// The pure state of one candidate.
#[derive(Clone, Debug)]
pub struct Elector {
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    /// The lease's resourceVersion when we last saw it change, and when.
    seen: Option<(String, Instant)>,
    /// When the last successful acquire/renew request was *sent*, while leading.
    renewed_at: Option<Instant>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, lease_duration: Duration) -> Self {
        Self {
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            seen: None,
            renewed_at: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn is_leader(&self) -> bool {
        self.renewed_at.is_some()
    }

    /// Record a read of the lease: a new resourceVersion restarts the expiry clock.
    pub fn observe(&mut self, resource_version: &str, now: Instant) {
        if self.seen.as_ref().map(|(rv, _)| rv.as_str()) != Some(resource_version) {
            self.seen = Some((resource_version.to_string(), now));
        }
    }

    /// Decide from the lease's holder and advertised duration (`None`: ours).
    pub fn decide(
        &self,
        holder: Option<&str>,
        advertised: Option<Duration>,
        now: Instant,
    ) -> Decision {
        let holder = holder.filter(|h| !h.is_empty());
        if let Some(renewed_at) = self.renewed_at {
            if holder != Some(self.identity.as_str()) {
                return Decision::Lost {
                    why: format!(
                        "the lease is now held by {}",
                        holder.unwrap_or("nobody (it was released)")
                    ),
                };
            }
            if let Some(lost) = self.deadline_passed(renewed_at, now) {
                return lost;
            }
            return Decision::Renew;
        }
        let Some(holder) = holder else {
            return Decision::Acquire;
        };
        if holder == self.identity {
            // Our identity, but we are not leading: a previous run of this
            // replica. Nobody else can be acting on it, so take it back.
            return Decision::Acquire;
        }
        let duration = advertised.unwrap_or(self.lease_duration);
        let since = self.seen.as_ref().map_or(now, |(_, at)| *at);
        let expires = since + duration;
        if now >= expires {
            Decision::Acquire
        } else {
            Decision::StandBy {
                holder: holder.to_string(),
                expires_in: expires - now,
            }
        }
    }

    /// Called when an acquire or renew sent at `sent_at` succeeded.
    pub fn renewed(&mut self, sent_at: Instant) {
        self.renewed_at = Some(sent_at);
    }

    /// Called when the lease could not be read or written: still leading?
    pub fn check(&self, now: Instant) -> Option<Decision> {
        self.renewed_at
            .and_then(|renewed_at| self.deadline_passed(renewed_at, now))
    }

    /// Stop leading (after a release or a loss).
    pub fn step_down(&mut self) {
        self.renewed_at = None;
    }

    fn deadline_passed(&self, renewed_at: Instant, now: Instant) -> Option<Decision> {
        (now >= renewed_at + self.renew_deadline).then(|| Decision::Lost {
            why: format!(
                "could not renew the lease for {:?} (deadline {:?})",
                now - renewed_at,
                self.renew_deadline
            ),
        })
    }
}

/// Where the lease lives and how it is timed.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
}

/// Campaigns and renews until `stop` (then releases the lease if leading).
/// `leader` tells the rest of the process whether to act. Losing the lease
/// (e.g. the apiserver was unreachable past the renew deadline) is not the
/// end: the replica stops acting at once and campaigns again, so it recovers
/// when the apiserver returns without a process restart.
pub async fn run(
    client: kube::Client,
    config: LeaseConfig,
    mut elector: Elector,
    leader: watch::Sender<bool>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_standby_log: Option<String> = None;
    // The Lease as our last write left it: set only by a successful write,
    // and taken by every round, so it never outlives the lead.
    let mut written: Option<Lease> = None;
    loop {
        let now = Instant::now();
        let outcome = round(&api, &config, &mut elector, &mut written, now).await;
        let decision = match outcome {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.name, "leader election round failed");
                elector.check(Instant::now())
            }
        };
        match decision {
            Some(Decision::Lost { why }) => {
                elector.step_down();
                leader.send_replace(false);
                metrics.set_leader(false);
                tracing::warn!(lease = %config.name, namespace = %config.namespace, %why,
                    "lost the leader lease: stopped acting; campaigning again");
                last_standby_log = None;
            }
            Some(Decision::StandBy { holder, .. })
                if last_standby_log.as_ref() != Some(&holder) =>
            {
                tracing::info!(%holder, lease = %config.name, "standing by: another replica leads");
                last_standby_log = Some(holder);
            }
            _ => {}
        }
        let leading = elector.is_leader();
        if leader.send_if_modified(|l| std::mem::replace(l, leading) != leading) && leading {
            tracing::info!(identity = elector.identity(), lease = %config.name, "became the leader");
        }
        metrics.set_leader(leading);
        tokio::select! {
            () = tokio::time::sleep(config.renew_period) => {}
            () = stop.cancelled() => {
                if elector.is_leader() {
                    release(&api, &config, elector.identity()).await;
                }
                elector.step_down();
                leader.send_replace(false);
                metrics.set_leader(false);
                return;
            }
        }
    }
}

/// One read and, if the decision says so, one conditional write. While
/// leading, the read is skipped: the renewal is written over the Lease as
/// our last write left it, conditional on its resourceVersion, so a Lease
/// someone else changed since is a conflict, and the next round reads it
/// (as client-go's leader does). Idle, that is one request per
/// `--renew-period` instead of two.
async fn round(
    api: &Api<Lease>,
    config: &LeaseConfig,
    elector: &mut Elector,
    written: &mut Option<Lease>,
    now: Instant,
) -> crate::Result<Option<Decision>> {
    let name = &config.name;
    let ns = &config.namespace;
    let current = match written.take() {
        Some(lease) if elector.is_leader() => Some(lease),
        _ => api_call(|| format!("read Lease {ns}/{name}"), api.get_opt(name)).await?,
    };
    let Some(lease) = current else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec_for(elector.identity(), config.lease_duration, None)),
        };
        match api_call(
            || format!("create Lease {ns}/{name}"),
            api.create(&PostParams::default(), &fresh),
        )
        .await
        {
            Ok(created) => {
                elector.renewed(now);
                *written = Some(created);
            }
            // Another candidate created it first; the next round reads it.
            Err(e) if e.is_conflict() || is_already_exists(&e) => {}
            Err(e) => return Err(e),
        }
        return Ok(Some(Decision::Acquire));
    };
    elector.observe(
        lease.metadata.resource_version.as_deref().unwrap_or(""),
        now,
    );
    let spec = lease.spec.clone().unwrap_or_default();
    let advertised = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    let decision = elector.decide(spec.holder_identity.as_deref(), advertised, now);
    let new_spec = match &decision {
        Decision::Acquire => spec_for(elector.identity(), config.lease_duration, Some(&spec)),
        Decision::Renew => LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_duration_seconds: Some(seconds(config.lease_duration)),
            ..spec
        },
        Decision::StandBy { .. } | Decision::Lost { .. } => return Ok(Some(decision)),
    };
    let mut updated = lease;
    updated.spec = Some(new_spec);
    // `updated.metadata.resourceVersion` is what we read: the replace is conditional on it.
    match api_call(
        || format!("write Lease {ns}/{name}"),
        api.replace(name, &PostParams::default(), &updated),
    )
    .await
    {
        Ok(lease) => {
            elector.renewed(now);
            *written = Some(lease);
            Ok(Some(decision))
        }
        Err(e) if e.is_conflict() => {
            tracing::debug!(lease = %name, "lease changed while writing it; next round reads it again");
            Ok(elector.check(Instant::now()))
        }
        Err(e) => Err(e),
    }
}

/// The spec that makes `identity` the holder, counting a transition when
/// the holder changes.
fn spec_for(identity: &str, duration: Duration, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    let same_holder = previous.and_then(|p| p.holder_identity.as_deref()) == Some(identity);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(seconds(duration)),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(if previous.is_some() && !same_holder {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn is_already_exists(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Kube { source: kube::Error::Api(s), .. } if s.reason == "AlreadyExists")
}

/// Hands the lease back on a clean shutdown, so a standby takes over at its
/// next round instead of after a whole lease duration.
async fn release(api: &Api<Lease>, config: &LeaseConfig, identity: &str) {
    let name = &config.name;
    let ns = &config.namespace;
    let result = async {
        let Some(mut lease) =
            api_call(|| format!("read Lease {ns}/{name}"), api.get_opt(name)).await?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        api_call(
            || format!("release Lease {ns}/{name}"),
            api.replace(name, &PostParams::default(), &lease),
        )
        .await
        .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(lease = %name, "released the leader lease"),
        Err(e) => {
            tracing::warn!(error = %e, lease = %name, "could not release the leader lease; a standby takes over when it expires")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_empty_or_released_lease_is_acquired_at_once() {
        let e = Elector::new("a", D);
        let t0 = Instant::now();
        assert_eq!(e.decide(None, None, t0), Decision::Acquire);
        assert_eq!(e.decide(Some(""), None, t0), Decision::Acquire);
    }

    #[test]
    fn a_live_lease_of_another_is_respected_until_it_stops_changing_for_its_duration() {
        let mut e = Elector::new("b", D);
        let t0 = Instant::now();
        e.observe("1", t0);
        assert_eq!(
            e.decide(Some("a"), None, t0 + secs(5)),
            Decision::StandBy {
                holder: "a".into(),
                expires_in: secs(10)
            }
        );
        // The holder renews: a new resourceVersion restarts the clock.
        e.observe("2", t0 + secs(10));
        assert!(matches!(
            e.decide(Some("a"), None, t0 + secs(20)),
            Decision::StandBy { .. }
        ));
        // Seeing the same version again does not.
        e.observe("2", t0 + secs(20));
        assert_eq!(e.decide(Some("a"), None, t0 + secs(25)), Decision::Acquire);
    }

    #[test]
    fn the_holders_advertised_duration_wins_over_ours() {
        let mut e = Elector::new("b", D);
        let t0 = Instant::now();
        e.observe("1", t0);
        assert_eq!(
            e.decide(Some("a"), Some(secs(3)), t0 + secs(3)),
            Decision::Acquire
        );
        assert!(matches!(
            e.decide(Some("a"), Some(secs(60)), t0 + secs(30)),
            Decision::StandBy { .. }
        ));
    }

    #[test]
    fn the_leader_renews_and_loses_when_someone_else_holds_it() {
        let mut e = Elector::new("a", D);
        let t0 = Instant::now();
        e.renewed(t0);
        assert!(e.is_leader());
        assert_eq!(e.decide(Some("a"), None, t0 + secs(2)), Decision::Renew);
        assert!(matches!(
            e.decide(Some("b"), None, t0 + secs(2)),
            Decision::Lost { why } if why.contains("held by b")
        ));
        assert!(matches!(
            e.decide(None, None, t0 + secs(2)),
            Decision::Lost { .. }
        ));
    }

    #[test]
    fn the_leader_stops_before_any_follower_may_take_over() {
        let mut e = Elector::new("a", D);
        let t0 = Instant::now();
        e.renewed(t0);
        assert_eq!(e.check(t0 + secs(9)), None);
        // Renew deadline is 2/3 of 15 s = 10 s, earlier than a follower's 15 s.
        assert!(matches!(
            e.check(t0 + secs(10)),
            Some(Decision::Lost { .. })
        ));
        assert!(matches!(
            e.decide(Some("a"), None, t0 + secs(11)),
            Decision::Lost { .. }
        ));
        // A follower that saw the last renewal at t0 waits until t0 + 15 s.
        let mut f = Elector::new("b", D);
        f.observe("7", t0);
        assert!(matches!(
            f.decide(Some("a"), None, t0 + secs(14)),
            Decision::StandBy { .. }
        ));
        assert_eq!(f.decide(Some("a"), None, t0 + secs(15)), Decision::Acquire);
    }

    #[test]
    fn a_restarted_replica_with_the_same_identity_takes_its_lease_back() {
        let mut e = Elector::new("a", D);
        let t0 = Instant::now();
        e.observe("3", t0);
        assert_eq!(e.decide(Some("a"), None, t0), Decision::Acquire);
    }

    #[test]
    fn transitions_count_holder_changes_only() {
        let first = spec_for("a", D, None);
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));
        let again = spec_for("a", D, Some(&first));
        assert_eq!(again.lease_transitions, Some(0));
        let other = spec_for("b", D, Some(&first));
        assert_eq!(other.lease_transitions, Some(1));
        assert_eq!(other.holder_identity.as_deref(), Some("b"));
    }
}
