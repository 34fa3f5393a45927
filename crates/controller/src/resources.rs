//! Pure builders: what the Deployment and Service of a Function look like.
//! No API calls here; `reconcile` applies what these return.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::{Error, Result};
use siesta_api::names::FunctionKey;
use siesta_api::{FUNCTION_LABEL, Function, FunctionSpec, Protocol};

/// The name of the one container in a Function's pods.
pub const CONTAINER_NAME: &str = "function";
/// The port the Service exposes (it forwards to the named container port).
pub const SERVICE_PORT: i32 = 80;
/// Deployment annotations that tell a reader how the function is served.
/// They sit on the Deployment, not the pod template, so changing them does
/// not restart pods.
pub const CONTAINER_CONCURRENCY_ANNOTATION: &str = "siesta.dev/container-concurrency";
pub const TIMEOUT_ANNOTATION: &str = "siesta.dev/timeout-seconds";
/// Extra time, past the request timeout, a terminating pod gets to finish.
const GRACE_EXTRA_SECONDS: i64 = 5;
/// Ceiling for the request timeout used in the grace period (the schema's maximum).
const MAX_TIMEOUT_SECONDS: i64 = 3600;

/// Who the children belong to: the identity every builder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub reference: OwnerReference,
}

impl Owner {
    pub fn of(function: &Function) -> Result<Self> {
        let namespace = function
            .namespace()
            .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let reference = function
            .controller_owner_ref(&())
            .ok_or(Error::MissingObjectKey("metadata.uid"))?;
        Ok(Self {
            name: function.child_name(),
            namespace,
            reference,
        })
    }

    /// The Function's key (its children have its name).
    pub fn key(&self) -> FunctionKey {
        FunctionKey::new(&self.namespace, &self.name)
    }
}

/// Labels on the Deployment, the Service and every pod.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FUNCTION_LABEL.to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "function".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "siesta".to_string(),
        ),
    ])
}

/// The selector that ties pods to their Function. Deployment selectors are
/// immutable, so this must never change shape.
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(FUNCTION_LABEL.to_string(), name.to_string())])
}

/// The container port's name; the activator and the Service use it to know the protocol.
pub fn port_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http1 => "http",
        Protocol::H2c => "h2c",
    }
}

/// Long enough for a request that started just before termination to finish.
pub fn termination_grace_period_seconds(spec: &FunctionSpec) -> i64 {
    i64::from(spec.timeout_seconds).clamp(1, MAX_TIMEOUT_SECONDS) + GRACE_EXTRA_SECONDS
}

fn meta(owner: &Owner) -> ObjectMeta {
    ObjectMeta {
        name: Some(owner.name.clone()),
        namespace: Some(owner.namespace.clone()),
        labels: Some(labels(&owner.name)),
        owner_references: Some(vec![owner.reference.clone()]),
        ..ObjectMeta::default()
    }
}

fn container(spec: &FunctionSpec) -> Container {
    let mut env = vec![EnvVar {
        name: "PORT".to_string(),
        value: Some(spec.port.to_string()),
        ..EnvVar::default()
    }];
    env.extend(spec.env.iter().cloned());
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(spec.image.clone()),
        command: non_empty(&spec.command),
        args: non_empty(&spec.args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(port_name(spec.protocol).to_string()),
            container_port: spec.port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: spec.resources.clone(),
        // A TCP probe: a function need not answer `GET /`, but it must listen.
        // Every second, so a cold start is noticed as soon as it is over.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(spec.port),
                host: None,
            }),
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            success_threshold: Some(1),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        ..Container::default()
    }
}

/// The Deployment for a Function. `replicas` is `Some` only when creating:
/// afterwards the autoscaler owns `spec.replicas` and the controller must not
/// send it (see `reconcile::apply_deployment`).
pub fn deployment(owner: &Owner, spec: &FunctionSpec, replicas: Option<i32>) -> Deployment {
    let mut metadata = meta(owner);
    metadata.annotations = Some(BTreeMap::from([
        (
            CONTAINER_CONCURRENCY_ANNOTATION.to_string(),
            spec.container_concurrency.to_string(),
        ),
        (
            TIMEOUT_ANNOTATION.to_string(),
            spec.timeout_seconds.to_string(),
        ),
    ]));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector(&owner.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&owner.name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(spec)],
                    termination_grace_period_seconds: Some(termination_grace_period_seconds(spec)),
                    // Functions find each other by URL, not by a wall of
                    // *_SERVICE_HOST variables for every Service in the namespace.
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Service for a Function: port 80 to the named container port.
pub fn service(owner: &Owner, spec: &FunctionSpec) -> Service {
    let port = port_name(spec.protocol);
    Service {
        metadata: meta(owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector(&owner.name)),
            ports: Some(vec![ServicePort {
                name: Some(port.to_string()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String(port.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Why a Function's name cannot name its Deployment, Service and label
/// value, or `None` when it can. A Service name is a DNS-1035 label: at most
/// 63 characters of `a-z`, `0-9` and `-`, starting with a letter and not
/// ending with `-`. Function names are DNS subdomains, which allow more.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| {
        format!(
            "the Function name {name:?} cannot name its Service: use at most 63 lowercase letters, digits and '-', starting with a letter; recreate the Function under such a name"
        )
    })
}

/// The kinds of object a Function is made of; each takes the Function's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Deployment,
    Service,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A child's name taken by an object the Function does not control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub kind: ChildKind,
    /// What [`not_controlled_because`] said.
    pub why: String,
}

/// The first of `children` that exists and is not the child of the
/// Function named `function` with uid `uid`, or `None` when every one is
/// either absent or the Function's. Each entry is a kind and the metadata
/// of the object of that kind and name, if there is one; all are checked by
/// the same rule. One foreign child is enough not to write any: applying
/// the others would leave a Function half made of someone else's objects.
pub fn first_taken<'a>(
    children: impl IntoIterator<Item = (ChildKind, Option<&'a ObjectMeta>)>,
    function: &str,
    uid: &str,
) -> Option<Taken> {
    children.into_iter().find_map(|(kind, metadata)| {
        let why = not_controlled_because(metadata?, function, uid)?;
        Some(Taken { kind, why })
    })
}

/// Why the object with `metadata` is not the child of the Function named
/// `function` with uid `uid`, or `None` when it is. A child has a
/// controller owner reference to kind `Function` of the `siesta.dev` group
/// (any version), with that name and that uid: the reference Siesta itself
/// writes, and the one the garbage collector deletes the child by. Nothing
/// else is Siesta's to patch or scale, even when its name and labels look
/// like a Function's.
pub fn not_controlled_because(metadata: &ObjectMeta, function: &str, uid: &str) -> Option<String> {
    let Some(controller) = metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
    else {
        return Some(
            "it has no controller owner reference (it was made by someone else, e.g. with `kubectl create`, or orphaned by `kubectl delete fn --cascade=orphan`)"
                .to_string(),
        );
    };
    let group = controller
        .api_version
        .split_once('/')
        .map_or("", |(group, _)| group);
    if group != Function::group(&()) || controller.kind != Function::kind(&()) {
        return Some(format!(
            "it is controlled by {} {} ({})",
            controller.kind, controller.name, controller.api_version
        ));
    }
    if controller.name != function {
        return Some(format!("it is controlled by Function {}", controller.name));
    }
    (controller.uid != uid).then(|| {
        format!(
            "it is controlled by an earlier Function of this name (uid {}); the garbage collector deletes it shortly, then this Function creates its own",
            controller.uid
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    /// A Function as the apiserver would hand it over, with a uid and generation.
    pub(crate) fn function(spec: serde_json::Value) -> Function {
        let mut f = Function::new("hello", serde_json::from_value(spec).unwrap());
        f.metadata.namespace = Some("demo".into());
        f.metadata.uid = Some("uid-1".into());
        f.metadata.generation = Some(3);
        f
    }

    fn built(spec: serde_json::Value, replicas: Option<i32>) -> (Deployment, Service) {
        let f = function(spec);
        let owner = Owner::of(&f).unwrap();
        (
            deployment(&owner, &f.spec, replicas),
            service(&owner, &f.spec),
        )
    }

    fn only_container(d: &Deployment) -> &Container {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers.len(), 1);
        &pod.containers[0]
    }

    #[test]
    fn children_are_controlled_by_the_function_and_labelled() {
        let (d, s) = built(serde_json::json!({"image": "hello:1"}), None);
        for meta in [&d.metadata, &s.metadata] {
            assert_eq!(meta.name.as_deref(), Some("hello"));
            assert_eq!(meta.namespace.as_deref(), Some("demo"));
            let refs = meta.owner_references.as_ref().unwrap();
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].kind, "Function");
            assert_eq!(refs[0].api_version, "siesta.dev/v1alpha1");
            assert_eq!(refs[0].uid, "uid-1");
            assert_eq!(refs[0].controller, Some(true));
            assert_eq!(not_controlled_because(meta, "hello", "uid-1"), None);
            assert!(not_controlled_because(meta, "hello", "uid-2").is_some());
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[FUNCTION_LABEL], "hello");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "siesta");
        }
        let spec = d.spec.as_ref().unwrap();
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(pod_labels[FUNCTION_LABEL], "hello");
        assert_eq!(spec.selector.match_labels, Some(selector("hello")));
        assert_eq!(s.spec.as_ref().unwrap().selector, Some(selector("hello")));
    }

    #[test]
    fn replicas_are_sent_only_when_asked() {
        let (d, _) = built(serde_json::json!({"image": "hello:1"}), None);
        assert_eq!(d.spec.as_ref().unwrap().replicas, None);
        // Serialized for apply, the field must be absent, not null.
        let json = serde_json::to_value(&d).unwrap();
        assert!(json["spec"].get("replicas").is_none());
        let (d, _) = built(serde_json::json!({"image": "hello:1"}), Some(0));
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
    }

    #[test]
    fn container_comes_from_the_spec_with_port_env_and_probe() {
        let resources = ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
            ..ResourceRequirements::default()
        };
        let (d, _) = built(
            serde_json::json!({
                "image": "hello:2", "port": 9000, "command": ["/bin/hello"], "args": ["-v"],
                "env": [{"name": "GREETING", "value": "hi"}],
                "resources": {"limits": {"memory": "64Mi"}},
                "timeoutSeconds": 30
            }),
            None,
        );
        let c = only_container(&d);
        assert_eq!(c.name, CONTAINER_NAME);
        assert_eq!(c.image.as_deref(), Some("hello:2"));
        assert_eq!(c.command, Some(vec!["/bin/hello".to_string()]));
        assert_eq!(c.args, Some(vec!["-v".to_string()]));
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].name, "PORT");
        assert_eq!(env[0].value.as_deref(), Some("9000"));
        assert_eq!(env[1].name, "GREETING");
        assert_eq!(c.resources, Some(resources));
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("http"), 9000)
        );
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.tcp_socket.as_ref().unwrap().port,
            IntOrString::Int(9000)
        );
        assert_eq!(probe.period_seconds, Some(1));
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(35));
    }

    #[test]
    fn empty_command_and_args_are_left_to_the_image() {
        let (d, _) = built(serde_json::json!({"image": "hello:1"}), None);
        let c = only_container(&d);
        assert_eq!((c.command.as_ref(), c.args.as_ref()), (None, None));
    }

    #[test]
    fn h2c_names_the_port_h2c_and_the_service_targets_it() {
        let (d, s) = built(
            serde_json::json!({"image": "hello:1", "protocol": "h2c"}),
            None,
        );
        let port = &only_container(&d).ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("h2c"));
        let sp = &s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(sp.name.as_deref(), Some("h2c"));
        assert_eq!(sp.port, SERVICE_PORT);
        assert_eq!(sp.target_port, Some(IntOrString::String("h2c".into())));
    }

    #[test]
    fn grace_period_covers_the_request_timeout_and_is_capped() {
        let mut spec = function(serde_json::json!({"image": "x"})).spec;
        assert_eq!(termination_grace_period_seconds(&spec), 305);
        spec.timeout_seconds = 1_000_000;
        assert_eq!(termination_grace_period_seconds(&spec), 3605);
        spec.timeout_seconds = -4;
        assert_eq!(termination_grace_period_seconds(&spec), 6);
    }

    #[test]
    fn concurrency_and_timeout_are_annotated_on_the_deployment_not_the_pods() {
        let (d, _) = built(
            serde_json::json!({"image": "x", "containerConcurrency": 4, "timeoutSeconds": 60}),
            None,
        );
        let ann = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[CONTAINER_CONCURRENCY_ANNOTATION], "4");
        assert_eq!(ann[TIMEOUT_ANNOTATION], "60");
        let template = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        assert_eq!(template.annotations, None);
    }

    /// Editing `scale.schedules` (or any scaling knob) must restart no pod:
    /// the Deployment and Service the reconciler applies are the same
    /// objects, so the apply changes nothing and no rollout starts. Only
    /// the autoscaler's replica writes follow from a schedule.
    #[test]
    fn scaling_knobs_and_schedules_leave_the_deployment_and_service_as_they_are() {
        let plain = serde_json::json!({"image": "x", "scale": {"maxReplicas": 10}});
        let scheduled = serde_json::json!({"image": "x", "scale": {
            "maxReplicas": 10, "minReplicas": 1, "target": 3, "scaleToZeroAfterSeconds": 600,
            "schedules": [
                {"cron": "0 8 * * 1-5", "timeZone": "Europe/Berlin", "duration": "10h", "minReplicas": 3},
                {"cron": "0 22 * * *", "duration": "12h", "minReplicas": 1},
            ],
        }});
        let (d1, s1) = built(plain, None);
        let (d2, s2) = built(scheduled, None);
        assert_eq!(
            serde_json::to_value(&d1).unwrap(),
            serde_json::to_value(&d2).unwrap()
        );
        assert_eq!(s1, s2);
        let text = serde_json::to_string(&d2).unwrap();
        assert!(!text.contains("0 8 * * 1-5"), "{text}");
    }

    #[test]
    fn names_that_cannot_name_a_service_are_reported() {
        assert_eq!(name_problem("hello"), None);
        assert_eq!(name_problem("a-1"), None);
        assert!(name_problem("1abc").is_some());
        assert!(name_problem("a.b").is_some());
        assert!(name_problem("abc-").is_some());
        assert!(name_problem(&"a".repeat(64)).is_some());
        assert_eq!(name_problem(&"a".repeat(63)), None);
    }

    fn controlled(reference: serde_json::Value) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![serde_json::from_value(reference).unwrap()]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_a_controller_reference_to_this_very_function_makes_a_child() {
        let ours = serde_json::json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "name": "hello", "uid": "uid-1", "controller": true,
        });
        assert_eq!(
            not_controlled_because(&controlled(ours.clone()), "hello", "uid-1"),
            None
        );
        // A later API version of the same group is still a Function.
        let mut v2 = ours.clone();
        v2["apiVersion"] = "siesta.dev/v1".into();
        assert_eq!(
            not_controlled_because(&controlled(v2), "hello", "uid-1"),
            None
        );

        // `kubectl create deployment hello`: no owner at all.
        let why = not_controlled_because(&ObjectMeta::default(), "hello", "uid-1").unwrap();
        assert!(why.contains("no controller owner reference"), "{why}");
        // An owner that is not the controller does not make it ours.
        let mut not_controller = ours.clone();
        not_controller["controller"] = false.into();
        let why = not_controlled_because(&controlled(not_controller), "hello", "uid-1").unwrap();
        assert!(why.contains("no controller owner reference"), "{why}");

        // Another controller of the same name and uid, but not a Function.
        for (api_version, kind) in [
            ("apps/v1", "Function"),
            ("other.dev/v1alpha1", "Function"),
            ("siesta.dev.evil.io/v1alpha1", "Function"),
            ("v1", "Function"),
            ("siesta.dev/v1alpha1", "Rollout"),
        ] {
            let mut other = ours.clone();
            other["apiVersion"] = api_version.into();
            other["kind"] = kind.into();
            let why = not_controlled_because(&controlled(other), "hello", "uid-1")
                .unwrap_or_else(|| panic!("{api_version} {kind} is not a Function"));
            assert!(
                why.contains(&format!("{kind} hello ({api_version})")),
                "{why}"
            );
        }

        // A Function of another name, or an earlier Function of this name.
        let mut other_name = ours.clone();
        other_name["name"] = "other".into();
        let why = not_controlled_because(&controlled(other_name), "hello", "uid-1").unwrap();
        assert_eq!(why, "it is controlled by Function other");
        let why = not_controlled_because(&controlled(ours), "hello", "uid-2").unwrap();
        assert!(
            why.contains("earlier Function of this name (uid uid-1)"),
            "{why}"
        );
    }

    #[test]
    fn every_child_is_checked_by_the_same_rule_and_the_first_taken_is_reported() {
        let ours = controlled(serde_json::json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "name": "hello", "uid": "uid-1", "controller": true,
        }));
        // `kubectl create service clusterip hello --tcp=80:8080`.
        let foreign = ObjectMeta::default();
        let check = |d: Option<&ObjectMeta>, s: Option<&ObjectMeta>| {
            first_taken(
                [(ChildKind::Deployment, d), (ChildKind::Service, s)],
                "hello",
                "uid-1",
            )
        };
        // A new Function, or one whose children are all its own: free.
        assert_eq!(check(None, None), None);
        assert_eq!(check(Some(&ours), Some(&ours)), None);
        assert_eq!(check(Some(&ours), None), None);
        assert_eq!(check(None, Some(&ours)), None);

        // A foreign Service alone is enough, with or without a Deployment.
        for d in [None, Some(&ours)] {
            let taken = check(d, Some(&foreign)).expect("the Service is not the Function's");
            assert_eq!(taken.kind, ChildKind::Service);
            assert!(
                taken.why.contains("no controller owner reference"),
                "{}",
                taken.why
            );
        }
        // The Service of an earlier Function of this name is not this one's.
        let earlier = controlled(serde_json::json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "name": "hello", "uid": "uid-0", "controller": true,
        }));
        assert_eq!(
            check(None, Some(&earlier)).map(|t| t.kind),
            Some(ChildKind::Service)
        );

        // A foreign Deployment, whatever the Service; the Deployment is
        // listed first, so it is reported first.
        for s in [None, Some(&ours), Some(&foreign)] {
            assert_eq!(
                check(Some(&foreign), s).map(|t| t.kind),
                Some(ChildKind::Deployment)
            );
        }
    }

    #[test]
    fn a_function_without_uid_is_an_error_not_a_panic() {
        let mut f = function(serde_json::json!({"image": "x"}));
        f.metadata.uid = None;
        assert!(matches!(
            Owner::of(&f),
            Err(Error::MissingObjectKey("metadata.uid"))
        ));
    }
}
