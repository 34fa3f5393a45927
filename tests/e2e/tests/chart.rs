//! The Helm chart (`charts/siesta`), as a user meets it: lint, render,
//! values schema, least-privilege RBAC, and a real `helm install` on the
//! local cluster whose controller and activator pods run under the chart's
//! own ServiceAccounts, serve a Function from zero, and leave nothing behind
//! after `helm uninstall`.
//!
//! Run: `KUBECONFIG=.cluster/kubeconfig cargo test -p siesta-e2e -- --include-ignored`
//! (`make test` does). Only the CRD comparison runs without a cluster.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_yaml::Value;
use siesta_e2e::{chart_dir, find, helm_template, kinds, repo_root, run};
use siesta_testkit::{TestNamespace, client, http_get, unique_suffix, wait_for};

/// Values that make the chart run on the local dev cluster: the node agent
/// maps this image to target/debug/siesta, and pods there share one network
/// stack, so each must bind its own pod IP.
const LOCAL_VALUES: &[&str] = &[
    "--set",
    "image.repository=siesta.dev/siesta",
    "--set",
    "image.tag=latest",
    "--set",
    "listenOnPodIP=true",
];

/// Every optional feature on (the ServiceMonitor API is declared present).
const EVERY_OPTION: &[&str] = &[
    "--set",
    "activator.autoscaling.enabled=true",
    "--set",
    "activator.autoscaling.targetMemoryUtilizationPercentage=80",
    "--set",
    "activator.podDisruptionBudget.maxUnavailable=1",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "serviceMonitor.labels.release=prometheus",
    "--set",
    "logFormat=json",
    "--set",
    "logLevel=debug",
    "--set",
    "listenOnPodIP=true",
    "--set",
    "controller.watchNamespace=team-a",
    "--set",
    "autoscaler.metricsSource=prometheus",
    "--set",
    "autoscaler.prometheusUrl=http://prometheus.monitoring:9090",
    "--set",
    "activator.controllerUrls={http://siesta-controller.siesta:9090}",
    "--set",
    "activator.trustedProxies={10.0.0.0/8,fd00::/8}",
    "--set",
    "activator.service.type=LoadBalancer",
    "--set",
    "activator.service.nodePort=30080",
    "--set",
    "activator.service.externalTrafficPolicy=Local",
    "--set",
    "imagePullSecrets[0].name=regcred",
    "--set",
    "controller.extraArgs={--concurrency=4}",
    "--set",
    "activator.extraEnv[0].name=EXTRA,activator.extraEnv[0].value=x",
    "--set",
    "activator.priorityClassName=system-cluster-critical",
];

// ------------------------------------------------------------- no cluster

/// The chart ships the CRD in Helm's crds/ directory; it must be the same
/// file as `crds/function.yaml`, which must be what the types generate.
#[test]
fn chart_crd_is_the_generated_crd() {
    let in_chart = std::fs::read_to_string(chart_dir().join("crds/function.yaml"))
        .expect("charts/siesta/crds/function.yaml exists");
    let checked_in = std::fs::read_to_string(repo_root().join("crds/function.yaml"))
        .expect("crds/function.yaml exists");
    assert!(
        in_chart == checked_in,
        "charts/siesta/crds/function.yaml differs from crds/function.yaml: run \
         `make crd && cp crds/function.yaml charts/siesta/crds/function.yaml`"
    );
    let generated = siesta_api::crd::function_crd_yaml().expect("the CRD serializes");
    assert!(
        in_chart == generated,
        "charts/siesta/crds/function.yaml is not what the types generate: run \
         `make crd && cp crds/function.yaml charts/siesta/crds/function.yaml`"
    );
}

/// charts/siesta/README.md documents every value in values.yaml (free-form
/// maps such as `resources` as one entry), and nothing that is not one.
#[test]
fn chart_readme_lists_every_value() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("chart README.md");
    let mut paths = Vec::new();
    value_paths(&values, "", &mut paths);
    assert!(paths.len() > 50, "walked values.yaml: {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "charts/siesta/README.md does not list {missing:?}"
    );
    // And every listed value exists.
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(p, _)| p))
        .filter(|p| !p.contains(' ') && !p.contains('<'))
        .collect();
    let unknown: Vec<&&str> = documented
        .iter()
        .filter(|p| !paths.iter().any(|v| v == *p))
        .collect();
    assert!(
        unknown.is_empty(),
        "charts/siesta/README.md lists values that do not exist: {unknown:?}"
    );
}

/// Leaf paths of values.yaml; maps that are free-form Kubernetes objects or
/// string maps count as one value.
fn value_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    const FREE_FORM: &[&str] = &["resources", "podSecurityContext", "securityContext"];
    match value.as_mapping() {
        Some(map) if !map.is_empty() && !FREE_FORM.iter().any(|f| prefix.ends_with(f)) => {
            for (key, child) in map {
                let key = key.as_str().unwrap_or_default();
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                value_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

// ----------------------------------------------------------- helm, offline

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_lint_is_clean() {
    let chart = chart_dir().display().to_string();
    for extra in [&[][..], EVERY_OPTION] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend_from_slice(extra);
        let out = run("helm", &args, None).ok();
        assert!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm lint {extra:?} is not clean:\n{out}"
        );
    }
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_template_renders_the_defaults() {
    let objects = helm_template("rel", &["--namespace", "siesta-system"])
        .unwrap_or_else(|e| panic!("helm template with default values failed: {e}"));
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "Lease",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
        ],
        "the default install (no HPA, no ServiceMonitor)"
    );
    for o in &objects {
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            name.starts_with("rel-"),
            "every object, cluster-scoped ones too, is named per release: {name}"
        );
    }

    let app_version = app_version();
    let controller = deployment(&objects, "-controller");
    let activator = deployment(&objects, "-activator");
    assert_eq!(controller["spec"]["replicas"].as_i64(), Some(2));
    assert_eq!(activator["spec"]["replicas"].as_i64(), Some(2));
    for (d, component) in [(controller, "controller"), (activator, "activator")] {
        // The activator finds controllers, and the autoscaler activators, by
        // exactly these labels.
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"].as_str(), Some("siesta"));
        assert_eq!(
            labels["app.kubernetes.io/component"].as_str(),
            Some(component)
        );
        let c = container(d);
        assert_eq!(
            c["image"].as_str(),
            Some(format!("ghcr.io/siesta-dev/siesta:{app_version}").as_str())
        );
        assert_eq!(args(d)[0], component, "the subcommand comes first");
        assert_hardened(d);
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["port"].as_str(),
            Some("admin")
        );
        assert!(
            c["resources"]["requests"]["memory"].is_string(),
            "{component} has resource requests"
        );
        let env = &c["env"];
        for (var, path) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let found = env
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|e| e["name"].as_str() == Some(var));
            assert_eq!(
                found.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
                Some(&Value::from(path)),
                "{component} gets {var} from the downward API"
            );
        }
    }
    assert!(args(activator).contains(&"--listen=0.0.0.0:8080".to_string()));
    // The activator's own defaults, passed explicitly.
    for flag in [
        "--max-parked-requests=10000",
        "--max-parked-bytes=100663296",
        "--max-request-headers=1000",
        "--max-response-headers=1000",
    ] {
        assert!(args(activator).contains(&flag.to_string()), "{flag}");
    }
    assert!(args(controller).contains(&"--admin-addr=0.0.0.0:9090".to_string()));
    assert!(args(controller).contains(&"--lease-name=rel-siesta-controller".to_string()));
    assert!(args(controller).contains(&"--metrics-source=scrape".to_string()));
    assert!(args(controller).contains(&"--activator-metrics-port=9091".to_string()));

    // The grace period outlasts the shutdown delay plus the drain.
    let seconds_arg = |flag: &str| {
        args(activator)
            .iter()
            .find_map(|a| a.strip_prefix(flag)?.strip_suffix('s')?.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("the activator gets {flag}Ns"))
    };
    let drain = seconds_arg("--drain-timeout=");
    let delay = seconds_arg("--shutdown-delay=");
    assert_eq!(delay, 5, "the default shutdown delay");
    let grace = activator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > delay + drain,
        "grace {grace}s must exceed delay {delay}s + drain {drain}s"
    );

    let traffic = find(&objects, "Service", "-activator").expect("activator Service");
    assert_eq!(traffic["spec"]["ports"][0]["port"].as_i64(), Some(80));
    assert_eq!(
        traffic["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );
    assert_eq!(
        traffic["spec"]["ports"].as_sequence().map(Vec::len),
        Some(1),
        "metrics are not on the traffic Service"
    );
    let metrics =
        find(&objects, "Service", "-activator-metrics").expect("activator metrics Service");
    assert_eq!(metrics["spec"]["ports"][0]["port"].as_i64(), Some(9091));
    let admin = find(&objects, "Service", "-controller").expect("controller Service");
    assert_eq!(admin["spec"]["ports"][0]["port"].as_i64(), Some(9090));

    let lease = find(&objects, "Lease", "-controller").expect("Lease");
    assert!(
        lease["spec"].is_null(),
        "the chart never sets the Lease's spec: the controllers own it"
    );
    let role = find(&objects, "Role", "-controller-lease").expect("lease Role");
    assert_eq!(
        role["metadata"]["namespace"].as_str(),
        Some("siesta-system")
    );
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_template_renders_every_option() {
    let mut args_ = vec!["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
    args_.extend_from_slice(EVERY_OPTION);
    let objects = helm_template("rel", &args_)
        .unwrap_or_else(|e| panic!("helm template with every option failed: {e}"));
    let k = kinds(&objects);
    assert_eq!(
        k.iter().filter(|k| *k == "ServiceMonitor").count(),
        2,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|k| *k == "HorizontalPodAutoscaler").count(),
        1,
        "{k:?}"
    );

    let activator = deployment(&objects, "-activator");
    let controller = deployment(&objects, "-controller");
    assert!(
        activator["spec"]["replicas"].is_null(),
        "with an HPA the Deployment leaves replicas to it"
    );
    let hpa = find(&objects, "HorizontalPodAutoscaler", "-activator").expect("HPA");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"], activator["metadata"]["name"],
        "the HPA scales the activator"
    );
    assert_eq!(hpa["spec"]["metrics"].as_sequence().map(Vec::len), Some(2));
    let pdb = find(&objects, "PodDisruptionBudget", "-activator").expect("PDB");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_i64(), Some(1));
    assert!(pdb["spec"]["minAvailable"].is_null());

    let a = args(activator);
    for want in [
        "--listen=$(POD_IP):8080",
        "--admin-addr=$(POD_IP):9091",
        "--controller-url=http://siesta-controller.siesta:9090",
        "--trusted-proxies=10.0.0.0/8,fd00::/8",
        "--log-json",
    ] {
        assert!(
            a.contains(&want.to_string()),
            "activator args {a:?} lack {want}"
        );
    }
    let c = args(controller);
    for want in [
        "--watch-namespace=team-a",
        "--log-json",
        "--concurrency=4",
        "--admin-addr=$(POD_IP):9090",
        "--metrics-source=prometheus",
        "--prometheus-url=http://prometheus.monitoring:9090",
    ] {
        assert!(
            c.contains(&want.to_string()),
            "controller args {c:?} lack {want}"
        );
    }
    let env = container(activator)["env"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let names: BTreeSet<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
    for want in ["POD_IP", "SIESTA_LOG", "EXTRA"] {
        assert!(names.contains(want), "activator env {names:?} lacks {want}");
    }
    let svc = find(&objects, "Service", "-activator").expect("activator Service");
    assert_eq!(svc["spec"]["type"].as_str(), Some("LoadBalancer"));
    assert_eq!(svc["spec"]["ports"][0]["nodePort"].as_i64(), Some(30080));
    assert_eq!(svc["spec"]["externalTrafficPolicy"].as_str(), Some("Local"));
    let monitor = find(&objects, "ServiceMonitor", "-activator").expect("activator ServiceMonitor");
    assert_eq!(
        monitor["metadata"]["labels"]["release"].as_str(),
        Some("prometheus")
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("admin")
    );

    // Kubernetes 1.20 serves only the beta APIs of PDB and HPA.
    let old = helm_template(
        "rel",
        &[
            "--api-versions",
            "policy/v1beta1/PodDisruptionBudget",
            "--api-versions",
            "autoscaling/v2beta2/HorizontalPodAutoscaler",
            "--set",
            "activator.autoscaling.enabled=true",
        ],
    )
    .unwrap_or_else(|e| panic!("helm template for 1.20 APIs failed: {e}"));
    let pdb = find(&old, "PodDisruptionBudget", "-activator").expect("PDB");
    assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1beta1"));
    let hpa = find(&old, "HorizontalPodAutoscaler", "-activator").expect("HPA");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2beta2"));

    // No Prometheus Operator: no ServiceMonitor, even when asked for.
    let without = helm_template("rel", &["--set", "serviceMonitor.enabled=true"])
        .unwrap_or_else(|e| panic!("helm template failed: {e}"));
    assert!(find(&without, "ServiceMonitor", "").is_none());
}

/// helm enforces values.schema.json (and the chart's own checks) on
/// template and install: wrong types, ranges, enums and unknown keys fail.
#[test]
#[ignore = "needs the local cluster: make test"]
fn bad_values_are_rejected() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "activator.replicas=-1"], "/activator/replicas"),
        (&["--set", "controller.replicas=0"], "/controller/replicas"),
        (
            &["--set-string", "controller.replicas=two"],
            "/controller/replicas",
        ),
        (
            &["--set", "activator.service.type=Ingress"],
            "/activator/service/type",
        ),
        (
            &["--set", "controller.adminPort=70000"],
            "/controller/adminPort",
        ),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (
            &["--set", "activator.trustedProxies={my-ingress}"],
            "/activator/trustedProxies/0",
        ),
        (
            &["--set", "activator.maxParkedRequests=0"],
            "/activator/maxParkedRequests",
        ),
        (
            &["--set", "activator.maxRequestHeaders=70000"],
            "/activator/maxRequestHeaders",
        ),
        (
            &["--set", "autoscaler.metricsSource=pull"],
            "/autoscaler/metricsSource",
        ),
        (
            &["--set", "autoscaler.metricsSource=prometheus"],
            "/autoscaler/prometheusUrl",
        ),
        (
            // The controller speaks plain http to Prometheus and refuses an
            // https URL at start; the chart refuses it before that.
            &[
                "--set",
                "autoscaler.metricsSource=prometheus,autoscaler.prometheusUrl=https://prometheus.monitoring:9090",
            ],
            "/autoscaler/prometheusUrl",
        ),
        (&["--set", "replicas=3"], "additional properties 'replicas'"),
        (
            &["--set", "activator.replica=3"],
            "additional properties 'replica'",
        ),
        (
            &["--set-string", "controller.leaderElection.leaseDuration=15"],
            "/controller/leaderElection/leaseDuration",
        ),
        (
            &["--set", "activator.podDisruptionBudget.minAvailable=half"],
            "/activator/podDisruptionBudget/minAvailable",
        ),
        (
            &[
                "--set",
                "activator.extraEnv[0].name=A,activator.extraEnv[0].value=1",
            ],
            "/activator/extraEnv/0/value",
        ),
        (
            &["--set", "activator.drainTimeoutSeconds=60"],
            "must be greater than activator.shutdownDelaySeconds + activator.drainTimeoutSeconds",
        ),
        (
            // 15 + 30 = 45: a grace period equal to the sum is refused too.
            &["--set", "activator.shutdownDelaySeconds=15"],
            "must be greater than activator.shutdownDelaySeconds + activator.drainTimeoutSeconds",
        ),
        (
            &[
                "--set",
                "activator.autoscaling.enabled=true,activator.autoscaling.minReplicas=5,activator.autoscaling.maxReplicas=2",
            ],
            "must not exceed maxReplicas",
        ),
    ];
    for (values, want) in cases {
        match helm_template("rel", values) {
            Ok(_) => panic!("helm template {values:?} succeeded; it must be rejected"),
            Err(e) => assert!(
                e.contains(want),
                "helm template {values:?} failed, but not because of {want:?}:\n{e}"
            ),
        }
    }
}

// ------------------------------------------------------------ on the cluster

/// The chart's ServiceAccounts can do exactly what the code needs: the
/// activator only reads Functions and Pods; the controller never reads
/// Secrets, never deletes, and holds its Lease only in its own namespace.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rbac_is_least_privilege() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "chart-rbac").await;
    let release = format!("rbac-{}", unique_suffix());
    let _cleanup = ClusterScoped(release.clone());
    let chart = chart_dir().display().to_string();
    let rendered = run(
        "helm",
        &[
            "template",
            &release,
            &chart,
            "--namespace",
            &ns.name,
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
        None,
    )
    .ok();
    run(
        "kubectl",
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&rendered),
    )
    .ok();

    let activator = format!(
        "system:serviceaccount:{}:{release}-siesta-activator",
        ns.name
    );
    let controller = format!(
        "system:serviceaccount:{}:{release}-siesta-controller",
        ns.name
    );
    let lease = format!("leases.coordination.k8s.io/{release}-siesta-controller");
    let all: &[&str] = &["--all-namespaces"];
    let here: &[&str] = &["-n", &ns.name];
    let status: &[&str] = &["--subresource=status"];
    let scale: &[&str] = &["--subresource=scale"];

    // The apiserver authorizes from its own cache of RBAC objects: wait
    // until it has the new bindings before asking what they allow.
    let start = std::time::Instant::now();
    while !can_i(&activator, "watch", "pods", all) || !can_i(&controller, "get", &lease, here) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the chart's RBAC never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut wrong = Vec::new();
    let mut check = |who: &str, allowed: bool, verb: &str, resource: &str, extra: &[&str]| {
        if can_i(who, verb, resource, extra) != allowed {
            wrong.push(format!(
                "{who} {} {verb} {resource} {extra:?}",
                if allowed { "cannot" } else { "can" }
            ));
        }
    };

    for verb in ["get", "list", "watch"] {
        for resource in ["functions.siesta.dev", "pods"] {
            check(&activator, true, verb, resource, all);
        }
    }
    for verb in ["create", "update", "patch", "delete"] {
        for resource in [
            "pods",
            "deployments.apps",
            "functions.siesta.dev",
            "services",
            "secrets",
            "configmaps",
            "events",
            "events.events.k8s.io",
            "leases.coordination.k8s.io",
        ] {
            check(&activator, false, verb, resource, all);
        }
    }
    check(&activator, false, "update", "deployments.apps", scale);
    check(&activator, false, "patch", "functions.siesta.dev", status);
    for verb in ["get", "list", "watch"] {
        check(&activator, false, verb, "secrets", all);
        check(&activator, false, verb, "deployments.apps", all);
        check(&controller, false, verb, "secrets", all);
        check(&controller, false, verb, "secrets", here);
    }

    for verb in ["get", "list", "watch"] {
        for resource in [
            "functions.siesta.dev",
            "deployments.apps",
            "services",
            "pods",
        ] {
            check(&controller, true, verb, resource, all);
        }
    }
    check(&controller, true, "patch", "functions.siesta.dev", status);
    check(&controller, false, "update", "functions.siesta.dev", all);
    check(&controller, false, "delete", "functions.siesta.dev", all);
    for resource in ["deployments.apps", "services"] {
        check(&controller, true, "create", resource, all);
        check(&controller, true, "patch", resource, all);
        check(&controller, false, "delete", resource, all);
    }
    check(&controller, true, "get", "deployments.apps", scale);
    check(&controller, true, "update", "deployments.apps", scale);
    check(&controller, true, "create", "events.events.k8s.io", all);
    check(&controller, true, "patch", "events.events.k8s.io", all);
    check(&controller, false, "create", "pods", all);
    check(&controller, false, "delete", "pods", all);
    check(&controller, false, "update", "configmaps", all);
    check(&controller, true, "get", &lease, here);
    check(&controller, true, "update", &lease, here);
    check(
        &controller,
        true,
        "create",
        "leases.coordination.k8s.io",
        here,
    );
    check(
        &controller,
        false,
        "update",
        "leases.coordination.k8s.io/some-other-lease",
        here,
    );
    check(&controller, false, "update", &lease, &["-n", "default"]);
    check(
        &controller,
        false,
        "create",
        "leases.coordination.k8s.io",
        &["-n", "default"],
    );

    assert!(
        wrong.is_empty(),
        "RBAC differs from least privilege:\n{}",
        wrong.join("\n")
    );
}

/// With every option on, the rendered objects are valid for a real
/// Kubernetes 1.20 API server (server-side dry run; the cluster serves no
/// ServiceMonitor API, so none is rendered).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn every_option_passes_apiserver_validation() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "chart-dryrun").await;
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "dry",
        chart.as_str(),
        "--namespace",
        ns.name.as_str(),
        "--api-versions",
        "policy/v1beta1/PodDisruptionBudget",
        "--api-versions",
        "autoscaling/v2beta2/HorizontalPodAutoscaler",
    ];
    args.extend_from_slice(EVERY_OPTION);
    let rendered = run("helm", &args, None).ok();
    let out = run(
        "kubectl",
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        Some(&rendered),
    )
    .ok();
    for kind in [
        "horizontalpodautoscaler",
        "poddisruptionbudget",
        "deployment.apps/dry-siesta-activator",
        "lease",
    ] {
        assert!(out.contains(kind), "the dry run covered {kind}:\n{out}");
    }
}

/// `helm install` on the local cluster: the node agent runs the controller
/// and activator under the chart's ServiceAccounts (so a missing permission
/// fails here), a Function applied from examples/ is woken from zero by a
/// request through the installed activator, and `helm uninstall` leaves
/// nothing of the release behind (the CRD stays, by Helm convention).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn helm_install_serves_a_function_from_zero_and_uninstalls_cleanly() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "chart-install").await;
    let release = format!("e2e-{}", unique_suffix());
    let guard = Release {
        name: release.clone(),
        namespace: ns.name.clone(),
    };
    let outcome = AssertUnwindSafe(install_and_serve(&client, &ns.name, &release))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        dump(&ns.name, &release);
        drop(guard);
        std::panic::resume_unwind(panic);
    }
    drop(guard);
}

async fn install_and_serve(client: &Client, ns: &str, release: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_present = crds
        .get_opt("functions.siesta.dev")
        .await
        .unwrap_or_else(|e| panic!("reading CRD functions.siesta.dev: {e}"))
        .is_some();
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "install",
        release,
        chart.as_str(),
        "--namespace",
        ns,
        "--set",
        "activator.replicas=1",
        "--set",
        "controller.replicas=1",
    ];
    args.extend_from_slice(LOCAL_VALUES);
    // The CRD is cluster-wide and other tests install it too; Helm refuses
    // to install a CRD that exists, so skip it then.
    if crd_present {
        args.push("--skip-crds");
    }
    run("helm", &args, None).ok();
    if !crd_present {
        siesta_testkit::ensure_function_crd(client).await;
    }

    // Both components Ready, under the chart's own ServiceAccounts.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    let ready = wait_for(
        "the controller and activator pods to be Ready",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
                let component = |p: &Pod| p.labels().get("app.kubernetes.io/component").cloned();
                let has = |c: &str| ready.iter().any(|p| component(p).as_deref() == Some(c));
                (has("controller") && has("activator")).then_some(ready)
            }
        },
    )
    .await;
    let mut activator_ip = None;
    for pod in &ready {
        let component = pod
            .labels()
            .get("app.kubernetes.io/component")
            .cloned()
            .unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default();
        assert_eq!(
            account,
            format!("{release}-siesta-{component}"),
            "pod {} runs under the chart's {component} ServiceAccount",
            pod.name_any()
        );
        if component == "activator" {
            activator_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        }
    }
    let activator = format!(
        "{}:8080",
        activator_ip.expect("the activator pod has an IP")
    );

    // A Function from examples/, at zero.
    run(
        "kubectl",
        &["apply", "-n", ns, "-f", "examples/functions/hello.yaml"],
        None,
    )
    .ok();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the controller (under its RBAC) to create Deployment hello",
        Duration::from_secs(60),
        || {
            let deployments = deployments.clone();
            async move { deployments.get_opt("hello").await.ok().flatten() }
        },
    )
    .await;
    let function_pods =
        ListParams::default().labels(&format!("{}=hello", siesta_api::FUNCTION_LABEL));
    let before = pods.list(&function_pods).await.expect("list function pods");
    assert!(
        before.items.is_empty(),
        "hello starts at zero pods, found {}",
        before.items.len()
    );

    // Through the installed activator (its pod IP: no kube-proxy here).
    let host = format!("hello.{ns}.siesta.local");
    let (code, body) = wait_for(
        "the activator to answer for hello",
        Duration::from_secs(90),
        || {
            let (activator, host) = (activator.clone(), host.clone());
            async move {
                let answer =
                    tokio::time::timeout(Duration::from_secs(60), http_get(&activator, "/", &host))
                        .await;
                match answer {
                    // The activator has not seen the new Function yet.
                    Ok(Ok((404, _))) => None,
                    Ok(Ok(answer)) => Some(answer),
                    Ok(Err(e)) => panic!("GET http://{activator}/ (Host {host}): {e}"),
                    Err(_) => panic!("GET http://{activator}/ (Host {host}): no answer in 60 s"),
                }
            }
        },
    )
    .await;
    assert_eq!(code, 200, "cold request through the activator: {body}");
    assert!(
        body.starts_with("hello from hello-"),
        "the hello function answered: {body:?}"
    );
    let after = pods.list(&function_pods).await.expect("list function pods");
    assert!(!after.items.is_empty(), "the request woke hello from zero");

    let (code, body) = http_get(&activator, &format!("/fn/{ns}/hello/"), &activator)
        .await
        .expect("GET by path");
    assert_eq!(code, 200, "warm request by path: {body}");

    // The installed controller finds the activator pods by their labels
    // (the chart's default metrics source) and reads the traffic from them:
    // the leader reports a request rate for hello. Requests keep coming
    // while it waits: the first scrape of a new activator is a baseline
    // (its counts so far happened at unknown times), so the two requests
    // above may be in it.
    let series = format!("siesta_controller_observed_rps{{function=\"hello\",namespace=\"{ns}\"}}");
    let rps = wait_for(
        "the leader to observe hello's traffic by scraping the activator pods",
        Duration::from_secs(60),
        || {
            let (pods, series) = (pods.clone(), series.clone());
            let selector = format!("{selector},app.kubernetes.io/component=controller");
            let (activator, host) = (activator.clone(), host.clone());
            async move {
                let (code, _) = http_get(&activator, "/", &host).await.ok()?;
                assert_eq!(code, 200, "a warm request while waiting");
                let list = pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                let ips: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .collect();
                for ip in &ips {
                    let Ok((200, text)) = http_get(&format!("{ip}:9090"), "/metrics", ip).await
                    else {
                        continue;
                    };
                    let rps = text
                        .lines()
                        .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<f64>().ok());
                    if let Some(rps) = rps.filter(|r| *r > 0.0) {
                        return Some(rps);
                    }
                }
                None
            }
        },
    )
    .await;
    eprintln!("E2E leader observed {rps:.3} rps for hello through pod-label scraping");

    // Uninstall: nothing of the release is left; the CRD stays.
    run(
        "helm",
        &[
            "uninstall",
            release,
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    )
    .ok();
    let leftovers = |what: &str, scope: &[&str]| {
        let mut args = vec!["get", what, "-l", selector.as_str(), "-o", "name"];
        args.extend_from_slice(scope);
        run("kubectl", &args, None).ok()
    };
    let namespaced = "deployments,replicasets,services,serviceaccounts,roles,rolebindings,leases,poddisruptionbudgets,horizontalpodautoscalers";
    wait_for(
        "the release's pods to be gone",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                list.items.is_empty().then_some(())
            }
        },
    )
    .await;
    let left = leftovers(namespaced, &["-n", ns]);
    assert!(
        left.trim().is_empty(),
        "helm uninstall left objects behind:\n{left}"
    );
    let left = leftovers("clusterroles,clusterrolebindings", &[]);
    assert!(
        left.trim().is_empty(),
        "helm uninstall left cluster objects behind:\n{left}"
    );
    let lease = run(
        "kubectl",
        &[
            "get",
            "lease",
            "-n",
            ns,
            &format!("{release}-siesta-controller"),
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        !lease.success && lease.stderr.contains("NotFound"),
        "the leader Lease is gone: {lease:?}"
    );
    assert!(
        crds.get_opt("functions.siesta.dev")
            .await
            .ok()
            .flatten()
            .is_some(),
        "the CRD stays after helm uninstall"
    );
}

// ---------------------------------------------------------------- helpers

fn app_version() -> String {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    chart["appVersion"]
        .as_str()
        .expect("appVersion")
        .to_string()
}

fn deployment<'a>(objects: &'a [Value], suffix: &str) -> &'a Value {
    find(objects, "Deployment", suffix).unwrap_or_else(|| panic!("a Deployment named *{suffix}"))
}

fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

fn args(d: &Value) -> Vec<String> {
    container(d)["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Non-root, read-only root filesystem, no privilege escalation, no
/// capabilities, seccomp RuntimeDefault.
fn assert_hardened(d: &Value) {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let pod = &d["spec"]["template"]["spec"]["securityContext"];
    let c = &container(d)["securityContext"];
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true), "{name}");
    assert_eq!(
        pod["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "{name}"
    );
    assert_eq!(c["runAsNonRoot"].as_bool(), Some(true), "{name}");
    assert_eq!(c["runAsUser"].as_i64(), Some(65532), "{name}");
    assert_eq!(c["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
    assert_eq!(
        c["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{name}"
    );
    assert_eq!(c["capabilities"]["drop"][0].as_str(), Some("ALL"), "{name}");
    assert_eq!(
        c["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "{name}"
    );
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `kubectl auth can-i VERB RESOURCE --as WHO`: yes or no, anything else panics.
fn can_i(who: &str, verb: &str, resource: &str, extra: &[&str]) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", who];
    args.extend_from_slice(extra);
    let ran = run("kubectl", &args, None);
    match ran.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "`{}` said neither yes nor no:\n{}\n{}",
            ran.line, ran.stdout, ran.stderr
        ),
    }
}

/// Deletes a release's cluster-scoped objects (ClusterRoles and bindings)
/// that a test applied without helm; namespaced ones go with the namespace.
struct ClusterScoped(String);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let selector = format!("app.kubernetes.io/instance={}", self.0);
        let _ = run(
            "kubectl",
            &[
                "delete",
                "clusterroles,clusterrolebindings",
                "-l",
                &selector,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Uninstalls a release when the test ends (a no-op if it already did;
/// needed when it failed before, as its ClusterRoles outlive the test
/// namespace).
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = run(
            "helm",
            &["uninstall", &self.name, "--namespace", &self.namespace],
            None,
        );
        drop(ClusterScoped(self.name.clone()));
    }
}

/// What the test saw, for a failure.
fn dump(ns: &str, release: &str) {
    eprintln!("---- namespace {ns}, release {release}");
    for args in [
        vec![
            "get",
            "all,leases,functions,serviceaccounts,roles,rolebindings",
            "-n",
            ns,
            "-o",
            "wide",
        ],
        vec!["get", "events", "-n", ns, "--sort-by=.lastTimestamp"],
        vec!["get", "pods", "-n", ns, "-o", "yaml"],
    ] {
        let ran = run("kubectl", &args, None);
        eprintln!("$ {}\n{}{}", ran.line, ran.stdout, ran.stderr);
    }
}
