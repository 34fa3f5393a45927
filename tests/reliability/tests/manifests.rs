//! Bad manifests, on the local cluster: every numeric field of the schema
//! just out of range, wrong types, bad enums, unknown fields, then the
//! cross-field rules the schema cannot say (reported on the status), and a
//! huge env value; all while the controller keeps serving a good Function.

use std::time::Duration;

use kube::CustomResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use siesta_api::Function;
use siesta_reliability::*;
use siesta_testkit::{TestNamespace, client, ensure_function_crd, http_get, wait_for};

/// A numeric schema leaf: (path, minimum, maximum, type).
type NumField = (Vec<String>, Option<f64>, Option<f64>, String);
type EnumField = (Vec<String>, Vec<Value>);

/// (path, minimum, maximum, type) of every numeric leaf under `spec`, and
/// enums, read from the generated CRD schema, skipping embedded core types.
fn numeric_fields() -> (Vec<NumField>, Vec<EnumField>) {
    let crd = serde_json::to_value(Function::crd()).expect("crd json");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut nums = Vec::new();
    let mut enums = Vec::new();
    fn walk(v: &Value, path: Vec<String>, nums: &mut Vec<NumField>, enums: &mut Vec<EnumField>) {
        if matches!(path.last().map(String::as_str), Some("env" | "resources")) {
            return;
        }
        if let Some(e) = v["enum"].as_array() {
            enums.push((path.clone(), e.clone()));
        }
        match v["type"].as_str() {
            Some(t @ ("integer" | "number")) => nums.push((
                path,
                v["minimum"].as_f64(),
                v["maximum"].as_f64(),
                t.to_string(),
            )),
            Some("object") => {
                if let Some(props) = v["properties"].as_object() {
                    for (k, child) in props {
                        let mut p = path.clone();
                        p.push(k.clone());
                        walk(child, p, nums, enums);
                    }
                }
            }
            _ => {}
        }
    }
    walk(spec, vec!["spec".into()], &mut nums, &mut enums);
    (nums, enums)
}

fn good_spec() -> Value {
    json!({
        "image": HELLO_IMAGE, "port": 8080,
        "queue": {"maxRequests": 100, "timeoutSeconds": 30},
        "scale": {"minReplicas": 0, "maxReplicas": 3},
    })
}

fn with(path: &[String], value: Value) -> Value {
    let mut obj = json!({"spec": good_spec()});
    let mut cur = &mut obj;
    for (i, k) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur[k.as_str()] = value.clone();
        } else {
            if cur.get(k.as_str()).is_none_or(|v| !v.is_object()) {
                cur[k.as_str()] = json!({});
            }
            cur = &mut cur[k.as_str()];
        }
    }
    obj
}

fn object(name: &str, body: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name}, "spec": body["spec"],
    }))
    .expect("object")
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn bad_manifests_are_refused_or_reported_and_good_functions_keep_working() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "rel-manifests").await;
    let stack = Stack::start(&client, &ns.name).await;
    create_function(&client, &ns.name, &hello("good", json!({}))).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("siesta.dev", "v1alpha1", "Function"),
        "functions",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);

    // 1. Refused by the schema, with the field named in the error.
    let (nums, enums) = numeric_fields();
    let mut cases: Vec<(String, Value)> = Vec::new();
    for (path, min, max, ty) in &nums {
        let step = if ty == "integer" { 1.0 } else { 0.001 };
        let field = path.join(".");
        if let Some(min) = min {
            cases.push((
                format!("{field} below minimum"),
                with(path, json!(min - step)),
            ));
            // The apiserver compares a whole number with an integer-truncated
            // minimum: `target: 0` once passed `minimum: 0.01`.
            if min.fract() != 0.0 {
                cases.push((
                    format!("{field} as the whole number below a fractional minimum"),
                    with(path, json!(min.ceil() as i64 - 1)),
                ));
            }
        }
        if let Some(max) = max {
            cases.push((
                format!("{field} above maximum"),
                with(path, json!(max + step)),
            ));
        }
        cases.push((format!("{field} as a string"), with(path, json!("ten"))));
        if ty == "integer" {
            cases.push((format!("{field} as a fraction"), with(path, json!(1.5))));
        }
    }
    for (path, _) in &enums {
        cases.push((
            format!("{} not in enum", path.join(".")),
            with(path, json!("bogus")),
        ));
    }
    let s = |p: &str| p.split('.').map(String::from).collect::<Vec<_>>();
    cases.push(("spec.image missing".into(), {
        let mut v = json!({"spec": good_spec()});
        v["spec"].as_object_mut().map(|o| o.remove("image"));
        v
    }));
    cases.push((
        "spec.image as a number".into(),
        with(&s("spec.image"), json!(5)),
    ));
    cases.push((
        "spec.env as an object".into(),
        with(&s("spec.env"), json!({"A": "b"})),
    ));
    cases.push((
        "spec.command as a string".into(),
        with(&s("spec.command"), json!("sh -c x")),
    ));
    cases.push((
        "spec.scale as a list".into(),
        with(&s("spec.scale"), json!([1, 2])),
    ));
    let mut refused = 0;
    let mut accepted = Vec::new();
    for (i, (what, body)) in cases.iter().enumerate() {
        let field = what.split(' ').next().unwrap_or_default();
        let leaf = field.rsplit('.').next().unwrap_or(field);
        match api
            .create(
                &PostParams::default(),
                &object(&format!("bad-{i}"), body.clone()),
            )
            .await
        {
            Err(kube::Error::Api(e)) => {
                assert!(
                    e.code == 422 || e.code == 400,
                    "{what}: unexpected error {e:?}"
                );
                assert!(
                    e.message.contains(leaf),
                    "{what}: the error does not name {leaf}: {}",
                    e.message
                );
                refused += 1;
            }
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => accepted.push(what.clone()),
        }
    }
    assert!(accepted.is_empty(), "accepted by the schema: {accepted:?}");

    // 2. Unknown fields are pruned, not stored.
    let mut body = json!({"spec": good_spec()});
    body["spec"]["bogusField"] = json!(1);
    body["spec"]["scale"]["alsoBogus"] = json!("x");
    let created = api
        .create(&PostParams::default(), &object("pruned", body))
        .await
        .expect("a manifest with unknown fields is accepted");
    assert!(
        created.data["spec"].get("bogusField").is_none(),
        "{:?}",
        created.data
    );
    assert!(created.data["spec"]["scale"].get("alsoBogus").is_none());

    // 3. Cross-field rules: accepted by the schema, reported on the status.
    let status_cases = [
        (
            "min-above-max",
            json!({"scale": {"minReplicas": 4, "maxReplicas": 2}}),
            "minReplicas",
        ),
        ("empty-image", json!({"image": ""}), "image"),
        ("blank-image", json!({"image": "   "}), "image"),
        (
            "port-in-env",
            json!({"env": [{"name": "PORT", "value": "1"}]}),
            "PORT",
        ),
        (
            "memory-lots",
            json!({"resources": {"limits": {"memory": "lots"}}}),
            "spec.resources.limits.memory",
        ),
        (
            "request-above-limit",
            json!({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}),
            "spec.resources.limits.memory",
        ),
        (
            "queue-over-timeout",
            json!({"timeoutSeconds": 10, "queue": {"timeoutSeconds": 20, "maxRequests": 5}}),
            "timeoutSeconds",
        ),
    ];
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    for (name, extra, mentions) in &status_cases {
        let f = hello(name, extra.clone());
        match functions.create(&PostParams::default(), &f).await {
            Ok(_) => {
                let (reason, message) = wait_for(
                    &format!("{name}: Ready=False InvalidSpec"),
                    Duration::from_secs(30),
                    || async {
                        let f = functions.get(name).await.ok()?;
                        let c = f
                            .status?
                            .conditions
                            .into_iter()
                            .find(|c| c.type_ == "Ready" && c.status == "False")?;
                        Some((c.reason, c.message))
                    },
                )
                .await;
                assert_eq!(reason, "InvalidSpec", "{name}: {message}");
                assert!(message.contains(mentions), "{name}: {message}");
            }
            Err(kube::Error::Api(e)) => {
                assert!(e.message.contains(mentions), "{name}: {}", e.message);
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }

    // 4. A huge env value (1.5 MiB): the apiserver's request size limit
    // (about 1.5 MiB for etcd) refuses it, or it is accepted and runs.
    let huge = "x".repeat(1536 * 1024);
    let huge_outcome = match functions
        .create(
            &PostParams::default(),
            &hello("huge-env", json!({"env": [{"name": "BIG", "value": huge}]})),
        )
        .await
    {
        Err(kube::Error::Api(e)) => format!("refused {} {}", e.code, e.reason),
        Err(e) => format!("refused: {e}"),
        Ok(_) => "accepted".to_string(),
    };

    // The controller still serves the good Function: a cold request wakes it.
    stack.activator.wait_known(&ns.name, "good").await;
    let host = format!("good.{}.siesta.local", ns.name);
    let (code, body) = http_get(&stack.activator.traffic.to_string(), "/pod", &host)
        .await
        .expect("request to the good function");
    assert_eq!(code, 200, "{body}");
    eprintln!(
        "RELIABILITY bad-manifests schema_refused={refused} status_invalid={} pruned_unknown=1 huge_env={huge_outcome:?} good_function_answered={code}",
        status_cases.len()
    );
    stack.stop().await;
}
