//! One reconcile of one Function: apply its Deployment and Service, keep
//! `spec.replicas` with the autoscaler's field manager, write status, and
//! publish events. The thin `reconcile` times and counts; `Reconciler`
//! holds the logic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use siesta_api::{FIELD_MANAGER, Function};

use crate::context::Context;
use crate::error::api_call;
use crate::events::{self, Note, event_reason};
use crate::resources::{self, ChildKind, Owner};
use crate::scale;
use crate::status::{self, Problem};
use crate::{Error, Result};

/// How often a settled Function is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a Function whose name is taken by a Deployment or Service not
/// its own is looked at again: removing that object is an event the
/// controller does not see (it watches its own children only), and the
/// Function should not wait a whole resync to take the name.
const CONFLICT_RECHECK: Duration = Duration::from_secs(15);

/// Entry point for `Controller::run`: times and counts the reconcile.
pub async fn reconcile(function: Arc<Function>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = Reconciler {
        function: &function,
        ctx: &ctx,
    }
    .run()
    .await;
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err());
    result
}

/// Requeue after a failure; conflicts clear fast, the rest may need a human.
pub fn error_policy(function: Arc<Function>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        function = %function.name_any(),
        namespace = ?function.namespace(),
        error = %error,
        "reconcile failed; retrying"
    );
    if error.is_conflict() {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::requeue(Duration::from_secs(10))
    }
}

struct Reconciler<'a> {
    function: &'a Function,
    ctx: &'a Context,
}

/// What applying the children changed.
enum Applied {
    Created,
    Changed,
    Unchanged,
}

impl Reconciler<'_> {
    async fn run(&self) -> Result<Action> {
        if self.function.meta().deletion_timestamp.is_some() {
            // Owner references let the garbage collector delete the children.
            return Ok(Action::await_change());
        }
        let owner = Owner::of(self.function)?;
        let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
        let deployments: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), ns);
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
        let (existing, service) = tokio::try_join!(
            api_call(
                || format!("read Deployment {ns}/{name}"),
                deployments.get_opt(name),
            ),
            api_call(
                || format!("read Service {ns}/{name}"),
                services.get_opt(name),
            ),
        )?;

        let problem = self.problem(
            &owner,
            [
                (
                    ChildKind::Deployment,
                    existing.as_ref().map(|d| &d.metadata),
                ),
                (ChildKind::Service, service.as_ref().map(|s| &s.metadata)),
            ],
        );
        let mut deployment = existing.clone();
        let mut failure = None;
        if problem.is_none() {
            match self.apply_children(&owner, existing.as_ref()).await {
                Ok((applied, how)) => {
                    self.announce(&owner, &applied, how).await;
                    deployment = Some(applied);
                }
                Err(e) => failure = Some(e),
            }
        }
        let recheck = if matches!(problem, Some(Problem::Conflict { .. })) {
            CONFLICT_RECHECK
        } else {
            RESYNC
        };
        let problem = problem.or_else(|| {
            failure
                .as_ref()
                .map(|e| Problem::ReconcileFailed(e.to_string()))
        });
        self.write_status(deployment.as_ref(), problem.as_ref())
            .await?;
        match failure {
            Some(e) => {
                self.ctx
                    .events
                    .publish(
                        self.function,
                        Note::warning(event_reason::RECONCILE_FAILED, e.to_string()),
                    )
                    .await;
                Err(e)
            }
            None => Ok(Action::requeue(recheck)),
        }
    }

    /// A reason not to write any child at all. `children` are the objects
    /// of the Function's name, one per kind it makes, as read (if they exist).
    fn problem(
        &self,
        owner: &Owner,
        children: [(ChildKind, Option<&ObjectMeta>); 2],
    ) -> Option<Problem> {
        if let Err(e) = siesta_api::validate(&self.function.spec) {
            return Some(Problem::InvalidSpec(e.to_string()));
        }
        if let Some(why) = resources::name_problem(&owner.name) {
            return Some(Problem::InvalidSpec(why));
        }
        // The same rule every scale write and activation checks
        // (`scale::ensure_owned`): an object that is not this Function's is
        // never applied to, and neither is the rest, or the Function would
        // be half made of someone else's objects.
        let taken = resources::first_taken(children, &owner.name, &owner.reference.uid)?;
        Some(Problem::conflict(&owner.namespace, &owner.name, taken))
    }

    /// Applies Deployment and Service; returns the Deployment as written.
    async fn apply_children(
        &self,
        owner: &Owner,
        existing: Option<&Deployment>,
    ) -> Result<(Deployment, Applied)> {
        let client = &self.ctx.client;
        let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
        let spec = &self.function.spec;
        let min = spec.scale.min_replicas;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let params = PatchParams::apply(FIELD_MANAGER).force();

        // Never let our manager own replicas when we are about to leave the
        // field out: hand it over first (after a crash between the two
        // steps below, or to an older controller's Deployment).
        if let Some(d) = existing.filter(|d| scale::owns_replicas(d, FIELD_MANAGER)) {
            scale::adopt_replicas(client, d).await?;
        }

        let created = existing.is_none();
        // Only on creation does the apply carry replicas (minReplicas), so
        // no pod is started for a function that starts at zero.
        let desired = resources::deployment(owner, spec, created.then_some(min));
        let mut applied = api_call(
            || format!("apply Deployment {ns}/{name}"),
            deployments.patch(name, &params, &Patch::Apply(&desired)),
        )
        .await?;
        if created {
            // Whoever scaled since the create (a wake-up, `kubectl scale`)
            // keeps their count: the hand-over is conditional on `applied`.
            scale::adopt_replicas(client, &applied).await?;
            let without_replicas = resources::deployment(owner, spec, None);
            applied = api_call(
                || format!("apply Deployment {ns}/{name}"),
                deployments.patch(name, &params, &Patch::Apply(&without_replicas)),
            )
            .await?;
        }

        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        api_call(
            || format!("apply Service {ns}/{name}"),
            services.patch(
                name,
                &params,
                &Patch::Apply(&resources::service(owner, spec)),
            ),
        )
        .await?;

        self.keep_within_bounds(owner, &mut applied).await?;

        let before = existing.and_then(|d| d.metadata.generation);
        let how = if created {
            Applied::Created
        } else if before != applied.metadata.generation {
            Applied::Changed
        } else {
            Applied::Unchanged
        };
        Ok((applied, how))
    }

    /// Bounds: raise to minReplicas (and lower to maxReplicas) with a scale
    /// write, as the autoscaler would; zero stays the autoscaler's call.
    /// `applied` then shows the count written.
    async fn keep_within_bounds(&self, owner: &Owner, applied: &mut Deployment) -> Result<()> {
        let client = &self.ctx.client;
        let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
        let spec = &self.function.spec;
        let min = spec.scale.min_replicas;
        let current = applied.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if let Some(target) = scale::clamp_to_bounds(current, min, spec.scale.max_replicas)
            && scale::set_replicas(client, &scale::Target::from(owner), target)
                .await?
                .is_some()
        {
            tracing::info!(
                namespace = ns,
                function = name,
                from = current,
                to = target,
                "replicas moved into [minReplicas, maxReplicas]"
            );
            self.ctx
                .events
                .publish(
                    self.function,
                    Note::normal(
                        event_reason::SCALED,
                        format!(
                            "scaled from {current} to {target} replicas to stay within minReplicas {min} and maxReplicas {}",
                            spec.scale.max_replicas
                        ),
                    ),
                )
                .await;
            if let Some(s) = applied.spec.as_mut() {
                s.replicas = Some(target);
            }
        }
        Ok(())
    }

    /// Events for what the apply did.
    async fn announce(&self, owner: &Owner, applied: &Deployment, how: Applied) {
        let image = &self.function.spec.image;
        let name = &owner.name;
        let note = match how {
            Applied::Unchanged => return,
            Applied::Created => Note::normal(
                event_reason::CREATED,
                format!("created Deployment and Service {name} running {image}"),
            ),
            Applied::Changed => {
                let spec_changed = self
                    .function
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    != self.function.metadata.generation;
                if spec_changed {
                    Note::normal(
                        event_reason::UPDATED,
                        format!(
                            "updated Deployment {name} to the new spec (image {image}, Deployment generation {})",
                            applied.metadata.generation.unwrap_or_default()
                        ),
                    )
                } else {
                    Note::normal(
                        event_reason::DRIFT_CORRECTED,
                        format!(
                            "Deployment {name} was changed outside Siesta; restored it from the Function spec"
                        ),
                    )
                }
            }
        };
        self.ctx.events.publish(self.function, note).await;
    }

    /// Writes status (server-side apply on the status subresource) only
    /// when it changed, then publishes the events the change implies.
    async fn write_status(
        &self,
        deployment: Option<&Deployment>,
        problem: Option<&Problem>,
    ) -> Result<()> {
        let new = status::compute(&status::Observed {
            function: self.function,
            deployment,
            problem,
            domain: &self.ctx.domain,
            now: Timestamp::now(),
        });
        let old = self.function.status.as_ref();
        if !status::changed(old, &new) {
            return Ok(());
        }
        let ns = self
            .function
            .namespace()
            .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let name = self.function.name_any();
        let api: Api<Function> = Api::namespaced(self.ctx.client.clone(), &ns);
        // `desiredReplicas` (like `autoscaler`) is the autoscaler's, written
        // under its own field manager: leaving it out of this apply keeps
        // exactly one owner per field.
        let mut status = serde_json::to_value(&new).map_err(|e| Error::Serialize {
            what: "the Function status",
            source: e,
        })?;
        if let Some(fields) = status.as_object_mut() {
            fields.remove("desiredReplicas");
            fields.remove("autoscaler");
        }
        let patch = serde_json::json!({
            "apiVersion": Function::api_version(&()),
            "kind": Function::kind(&()),
            "metadata": {"name": name},
            "status": status,
        });
        api_call(
            || format!("write status of Function {ns}/{name}"),
            api.patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            ),
        )
        .await?;
        for note in events::for_status_change(old, &new) {
            self.ctx.events.publish(self.function, note).await;
        }
        Ok(())
    }
}
