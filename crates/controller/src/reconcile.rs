//! One reconcile of one Function: apply its Deployment and Service, keep
//! `spec.replicas` with the autoscaler's field manager, write status, and
//! publish events. The thin `reconcile` times and counts; `Reconciler`
//! holds the logic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use siesta_api::{FIELD_MANAGER, Function};

use crate::children::{self, Child, Children, Written};
use crate::context::Context;
use crate::deployment_view::DeploymentView;
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

/// What a reconcile works with: the shared context, and the children as
/// watched with what this process last applied to them.
pub struct Reconciling {
    pub ctx: Arc<Context>,
    pub children: Children,
}

/// Entry point for `Controller::run`: times and counts the reconcile.
pub async fn reconcile(function: Arc<Function>, r: Arc<Reconciling>) -> Result<Action> {
    let started = Instant::now();
    let result = Reconciler {
        function: &function,
        ctx: &r.ctx,
        children: &r.children,
    }
    .run()
    .await;
    r.ctx
        .metrics
        .reconciled(started.elapsed(), result.as_ref().err());
    result
}

/// Requeue after a failure; conflicts clear fast, the rest may need a human.
pub fn error_policy(function: Arc<Function>, error: &Error, _r: Arc<Reconciling>) -> Action {
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
    children: &'a Children,
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
        let deployments: Api<DeploymentView> = Api::namespaced(self.ctx.client.clone(), ns);
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
        // The watched copies; one the watch does not show (yet) is read:
        // acting on a Deployment missing only from a lagging cache would
        // create it anew, with minReplicas over a count set since.
        let (cached_deployment, cached_service) = self.children.cached(&owner.key());
        let (existing, service) = tokio::try_join!(
            cached_or_read(
                cached_deployment,
                deployments.get_opt(name),
                "Deployment",
                ns,
                name
            ),
            cached_or_read(
                cached_service,
                services.get_metadata_opt(name),
                "Service",
                ns,
                name
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
            match self
                .apply_children(&owner, existing.as_ref(), service.as_ref())
                .await
            {
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

    /// Applies Deployment and Service, each unless it is what this process
    /// last applied from the same spec (`children::Memo`); returns the
    /// Deployment as written (or as watched, when left alone).
    async fn apply_children(
        &self,
        owner: &Owner,
        existing: Option<&DeploymentView>,
        service: Option<&PartialObjectMeta<Service>>,
    ) -> Result<(DeploymentView, Applied)> {
        let client = &self.ctx.client;
        let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
        let spec = &self.function.spec;
        let min = spec.scale.min_replicas;
        let deployments: Api<DeploymentView> = Api::namespaced(client.clone(), ns);
        let params = PatchParams::apply(FIELD_MANAGER).force();

        // Never let our manager own replicas when we are about to leave the
        // field out: hand it over first (after a crash between the two
        // steps below, or to an older controller's Deployment).
        if let Some(d) = existing.filter(|d| scale::owns_replicas(&d.metadata, FIELD_MANAGER)) {
            scale::adopt_replicas(client, d).await?;
        }

        let key = owner.key();
        let created = existing.is_none();
        // Only on creation does the apply carry replicas (minReplicas), so
        // no pod is started for a function that starts at zero.
        let desired = resources::deployment(owner, spec, created.then_some(min));
        // The steady-state object, what a reconcile after the creation applies.
        let steady = children::digest(&resources::deployment(owner, spec, None));
        let unchanged = existing.filter(|d| {
            !scale::owns_replicas(&d.metadata, FIELD_MANAGER)
                && self.children.memo().current(
                    &key,
                    Child::Deployment,
                    steady,
                    children::deployment_version(d)
                        .as_ref()
                        .map(|(u, v)| (u.as_str(), v.as_str())),
                )
        });
        let mut applied = match unchanged {
            Some(d) => d.clone(),
            None => {
                api_call(
                    || format!("apply Deployment {ns}/{name}"),
                    deployments.patch(name, &params, &Patch::Apply(&desired)),
                )
                .await?
            }
        };
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

        if unchanged.is_none() {
            self.children.memo().wrote(
                &key,
                Child::Deployment,
                children::deployment_version(&applied).map(|(uid, version)| Written {
                    digest: steady,
                    uid,
                    version,
                }),
            );
        }

        let desired_service = resources::service(owner, spec);
        let service_digest = children::digest(&desired_service);
        let service_current = service.is_some_and(|s| {
            self.children.memo().current(
                &key,
                Child::Service,
                service_digest,
                children::service_version(&s.metadata)
                    .as_ref()
                    .map(|(u, v)| (u.as_str(), v.as_str())),
            )
        });
        if !service_current {
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            let written = api_call(
                || format!("apply Service {ns}/{name}"),
                services.patch(name, &params, &Patch::Apply(&desired_service)),
            )
            .await?;
            self.children.memo().wrote(
                &key,
                Child::Service,
                children::service_version(&written.metadata).map(|(uid, version)| Written {
                    digest: service_digest,
                    uid,
                    version,
                }),
            );
        }

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
    async fn keep_within_bounds(&self, owner: &Owner, applied: &mut DeploymentView) -> Result<()> {
        let client = &self.ctx.client;
        let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
        let spec = &self.function.spec;
        let min = spec.scale.min_replicas;
        let current = applied.replicas();
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
    async fn announce(&self, owner: &Owner, applied: &DeploymentView, how: Applied) {
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
        deployment: Option<&DeploymentView>,
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

/// The watched copy of a child, else what the apiserver has.
async fn cached_or_read<K>(
    cached: Option<K>,
    read: impl Future<Output = std::result::Result<Option<K>, kube::Error>>,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Option<K>> {
    match cached {
        Some(child) => Ok(Some(child)),
        None => api_call(|| format!("read {kind} {ns}/{name}"), read).await,
    }
}

/// The reconciler against a scripted apiserver on loopback: what it writes,
/// in which order, and what it does on a conflict, without a cluster.
#[cfg(test)]
mod scripted_apiserver {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};
    use siesta_api::FunctionSpec;

    use super::*;
    use crate::events::Events;
    use crate::metrics::Metrics;
    use crate::scale::AUTOSCALER_MANAGER;

    const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/demo/deployments/hello";
    const SERVICE: &str = "/api/v1/namespaces/demo/services/hello";

    /// One request as the apiserver saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        field_manager: Option<String>,
        body: Value,
    }

    /// The script: answers by method and path; `conflicts` hand-overs are
    /// refused with 409 before one is taken.
    #[derive(Default)]
    struct Script {
        seen: Vec<Seen>,
        conflicts: usize,
        /// The Deployment's resourceVersion, bumped by every write.
        version: u64,
    }

    fn deployment(version: u64, replicas: i32) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": "demo", "resourceVersion": version.to_string(), "generation": 1},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
        })
    }

    fn answer(script: &mut Script, seen: &Seen) -> (u16, Value) {
        let manager = seen.field_manager.as_deref();
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", DEPLOYMENT) if script.version == 0 => (404, not_found()),
            // After a refused hand-over: someone scaled to 2 meanwhile.
            ("GET", DEPLOYMENT) => (200, deployment(script.version, 2)),
            ("GET", SERVICE) => (404, not_found()),
            ("PATCH", DEPLOYMENT) if manager == Some(AUTOSCALER_MANAGER) => {
                if script.conflicts > 0 {
                    script.conflicts -= 1;
                    script.version += 1;
                    return (409, conflict());
                }
                script.version += 1;
                let replicas = seen.body["spec"]["replicas"].as_i64().unwrap_or(-1);
                (200, deployment(script.version, replicas as i32))
            }
            ("PATCH", DEPLOYMENT) => {
                script.version += 1;
                let replicas = seen.body["spec"]["replicas"].as_i64().unwrap_or(0);
                (200, deployment(script.version, replicas as i32))
            }
            ("PATCH", SERVICE) => (200, seen.body.clone()),
            ("PATCH", p) if p.ends_with("/functions/hello/status") => (200, function_json()),
            ("POST", p) if p.ends_with("/events") => (201, seen.body.clone()),
            _ => (404, not_found()),
        }
    }

    fn not_found() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
    }

    fn conflict() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"})
    }

    fn function() -> Function {
        let spec: FunctionSpec =
            serde_json::from_value(json!({"image": "example/hello:1"})).expect("a spec");
        let mut f = Function::new("hello", spec);
        f.metadata.namespace = Some("demo".into());
        f.metadata.uid = Some("uid-1".into());
        f.metadata.generation = Some(1);
        f
    }

    fn function_json() -> Value {
        serde_json::to_value(function()).expect("a Function serializes")
    }

    async fn apiserver(script: Arc<Mutex<Script>>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let script = script.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let field_manager = req.uri().query().and_then(|q| {
                                q.split('&')
                                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                                    .map(str::to_string)
                            });
                            let bytes = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body = bytes
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            let seen = Seen {
                                method,
                                path,
                                field_manager,
                                body,
                            };
                            let (status, value) = {
                                let mut s = script.lock().expect("script lock");
                                let a = answer(&mut s, &seen);
                                s.seen.push(seen);
                                a
                            };
                            let mut resp =
                                http::Response::new(Full::new(Bytes::from(value.to_string())));
                            *resp.status_mut() =
                                http::StatusCode::from_u16(status).expect("a status");
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    async fn reconcile_once(conflicts: usize) -> (Result<Action>, Vec<Seen>) {
        let script = Arc::new(Mutex::new(Script {
            conflicts,
            ..Script::default()
        }));
        let addr = apiserver(script.clone()).await;
        let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let (_leader_tx, leader_rx) = tokio::sync::watch::channel(true);
        let ctx = Arc::new(Context::new(
            client.clone(),
            "siesta.local".into(),
            None,
            Metrics::new().expect("metrics"),
            Events::new(client, "test"),
            leader_rx,
        ));
        let result = reconcile(Arc::new(function()), Arc::new(unwatched(ctx))).await;
        let seen = script.lock().expect("script lock").seen.clone();
        (result, seen)
    }

    /// The Deployment writes, in order: (field manager, spec.replicas sent).
    fn deployment_writes(seen: &[Seen]) -> Vec<(String, Option<i64>)> {
        seen.iter()
            .filter(|s| s.method == "PATCH" && s.path == DEPLOYMENT)
            .map(|s| {
                (
                    s.field_manager.clone().unwrap_or_default(),
                    s.body["spec"]["replicas"].as_i64(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_new_function_is_applied_with_replicas_handed_over_then_applied_without() {
        let (result, seen) = reconcile_once(0).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            deployment_writes(&seen),
            vec![
                // The create carries minReplicas (0: no pod for a function
                // that starts at zero)...
                (FIELD_MANAGER.to_string(), Some(0)),
                // ...the autoscaler's manager takes the field at that value...
                (AUTOSCALER_MANAGER.to_string(), Some(0)),
                // ...and the re-apply leaves it out.
                (FIELD_MANAGER.to_string(), None),
            ]
        );
        let handover = seen
            .iter()
            .find(|s| s.field_manager.as_deref() == Some(AUTOSCALER_MANAGER))
            .expect("a hand-over");
        assert_eq!(
            handover.body["metadata"]["resourceVersion"], "1",
            "the hand-over is conditional on the create it follows"
        );
        let order: Vec<&str> = seen
            .iter()
            .filter(|s| s.method == "PATCH")
            .map(|s| s.path.rsplit('/').next().unwrap_or(""))
            .collect();
        assert_eq!(order, ["hello", "hello", "hello", "hello", "status"]);
        assert_eq!(
            seen.iter()
                .filter(|s| s.method == "PATCH" && s.path == SERVICE)
                .count(),
            1,
            "the Service is applied once, after the Deployment"
        );
    }

    #[tokio::test]
    async fn a_conflicting_hand_over_is_retried_at_the_count_just_read() {
        let (result, seen) = reconcile_once(1).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            deployment_writes(&seen),
            vec![
                (FIELD_MANAGER.to_string(), Some(0)),
                (AUTOSCALER_MANAGER.to_string(), Some(0)),
                // Refused (409): someone scaled to 2 in between. The retry
                // hands over their count, read again, not the stale 0.
                (AUTOSCALER_MANAGER.to_string(), Some(2)),
                (FIELD_MANAGER.to_string(), None),
            ]
        );
        let handovers: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.field_manager.as_deref() == Some(AUTOSCALER_MANAGER))
            .collect();
        assert_eq!(handovers[1].body["metadata"]["resourceVersion"], "2");
        let reads = seen
            .iter()
            .filter(|s| s.method == "GET" && s.path == DEPLOYMENT)
            .count();
        assert_eq!(reads, 2, "read once at the start, once after the 409");
    }

    #[tokio::test]
    async fn a_hand_over_that_keeps_conflicting_fails_the_reconcile_without_the_re_apply() {
        let (result, seen) = reconcile_once(usize::MAX).await;
        let error = result.expect_err("the reconcile fails");
        assert!(error.is_conflict(), "{error}");
        let writes = deployment_writes(&seen);
        assert_eq!(writes[0], (FIELD_MANAGER.to_string(), Some(0)));
        assert!(
            writes[1..]
                .iter()
                .all(|(manager, _)| manager == AUTOSCALER_MANAGER),
            "no re-apply without replicas after a failed hand-over: {writes:?}"
        );
        assert!(
            !seen
                .iter()
                .any(|s| s.method == "PATCH" && s.path == SERVICE),
            "nothing more is applied"
        );
        let status = seen
            .iter()
            .find(|s| s.path.ends_with("/status"))
            .expect("the status says why");
        let ready = &status.body["status"]["conditions"][0];
        assert_eq!(ready["reason"], "ReconcileFailed", "{ready}");
        assert_eq!(
            error_policy(
                Arc::new(function()),
                &error,
                Arc::new(unwatched(Arc::new(dummy_ctx().await)))
            ),
            Action::requeue(Duration::from_secs(1)),
            "a conflict is retried soon"
        );
    }

    /// No watch behind the children's stores: every child is read.
    fn unwatched(ctx: Arc<Context>) -> Reconciling {
        let (deployments, _) = kube::runtime::reflector::store();
        let (services, _) = kube::runtime::reflector::store();
        Reconciling {
            ctx,
            children: Children::new(deployments, services),
        }
    }

    async fn dummy_ctx() -> Context {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let (_tx, rx) = tokio::sync::watch::channel(false);
        Context::new(
            client.clone(),
            "siesta.local".into(),
            None,
            Metrics::new().expect("metrics"),
            Events::new(client, "test"),
            rx,
        )
    }
}
