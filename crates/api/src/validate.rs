//! Checks the OpenAPI schema cannot express (it has no cross-field rules on
//! Kubernetes 1.20), ranges it lets slip, and the container resources the
//! apiserver would refuse only in the Deployment. A failure becomes
//! `Ready=False, reason=InvalidSpec`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::FunctionSpec;
use crate::{quantity, schedule};

/// The range of `spec.scale.target`, as in the schema.
pub const TARGET_RANGE: std::ops::RangeInclusive<f64> = 0.01..=100000.0;

/// Why a spec that passed the schema still can't run, in words a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "spec.scale.minReplicas ({min}) is greater than spec.scale.maxReplicas ({max}); lower minReplicas or raise maxReplicas"
    )]
    MinAboveMax { min: i32, max: i32 },
    #[error("spec.image is empty; set it to the image that serves your function")]
    EmptyImage,
    #[error("spec.env[{index}] has an empty name")]
    EmptyEnvName { index: usize },
    #[error("spec.env sets PORT; Siesta sets PORT from spec.port, so remove it from env")]
    PortInEnv,
    #[error(
        "spec.queue.timeoutSeconds ({queue}) is greater than spec.timeoutSeconds ({request}); a parked request would outlive its own timeout"
    )]
    QueueTimeoutAboveRequestTimeout { queue: i32, request: i32 },
    #[error(
        "spec.scale.target ({target}) is outside 0.01–100000; set a per-pod target in that range"
    )]
    TargetOutOfRange { target: f64 },
    #[error(
        "{field} is {value:?}, not a Kubernetes quantity: {why}; use e.g. 128Mi, 1Gi, 500m or 2"
    )]
    BadQuantity {
        field: String,
        value: String,
        why: String,
    },
    #[error("{field} is {value:?}; a container resource cannot be negative")]
    NegativeQuantity { field: String, value: String },
    #[error(
        "{field}: {name:?} is not a container resource; use cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-qualified name such as example.com/gpu"
    )]
    UnknownResource { field: String, name: String },
    #[error(
        "spec.resources.requests.{resource} ({request}) is greater than spec.resources.limits.{resource} ({limit}); lower the request or raise the limit"
    )]
    RequestAboveLimit {
        resource: String,
        request: String,
        limit: String,
    },
    #[error("{field} is {value:?}: {why}")]
    BadSchedule {
        /// The full path, e.g. `spec.scale.schedules[1].cron`.
        field: String,
        value: String,
        why: String,
    },
    #[error(
        "spec.scale.schedules[{index}].minReplicas ({min}) is greater than spec.scale.maxReplicas ({max}); lower the window's minReplicas or raise maxReplicas"
    )]
    ScheduleMinAboveMax { index: usize, min: i32, max: i32 },
}

/// Every cross-field rule, first failure first.
pub fn validate(spec: &FunctionSpec) -> Result<(), SpecError> {
    if spec.image.trim().is_empty() {
        return Err(SpecError::EmptyImage);
    }
    if spec.scale.min_replicas > spec.scale.max_replicas {
        return Err(SpecError::MinAboveMax {
            min: spec.scale.min_replicas,
            max: spec.scale.max_replicas,
        });
    }
    if !TARGET_RANGE.contains(&spec.scale.target) {
        return Err(SpecError::TargetOutOfRange {
            target: spec.scale.target,
        });
    }
    if let Some(index) = spec.env.iter().position(|e| e.name.trim().is_empty()) {
        return Err(SpecError::EmptyEnvName { index });
    }
    if spec.env.iter().any(|e| e.name == "PORT") {
        return Err(SpecError::PortInEnv);
    }
    if spec.queue.timeout_seconds > spec.timeout_seconds {
        return Err(SpecError::QueueTimeoutAboveRequestTimeout {
            queue: spec.queue.timeout_seconds,
            request: spec.timeout_seconds,
        });
    }
    for (index, s) in spec.scale.schedules.iter().enumerate() {
        schedule::parse(s).map_err(|p| SpecError::BadSchedule {
            field: format!("spec.scale.schedules[{index}].{}", p.field),
            value: p.value,
            why: p.why,
        })?;
        if s.min_replicas > spec.scale.max_replicas {
            return Err(SpecError::ScheduleMinAboveMax {
                index,
                min: s.min_replicas,
                max: spec.scale.max_replicas,
            });
        }
    }
    if let Some(resources) = &spec.resources {
        let requests = quantities("requests", resources.requests.as_ref())?;
        let limits = quantities("limits", resources.limits.as_ref())?;
        for (name, (request_text, request)) in &requests {
            let Some((limit_text, limit)) = limits.get(name) else {
                continue;
            };
            if request.compare(limit) == Some(Ordering::Greater) {
                return Err(SpecError::RequestAboveLimit {
                    resource: name.to_string(),
                    request: request_text.to_string(),
                    limit: limit_text.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Each entry of `spec.resources.{kind}`, parsed, or the first one the
/// apiserver would refuse in the pod template.
fn quantities<'a>(
    kind: &str,
    map: Option<&'a BTreeMap<String, Quantity>>,
) -> Result<BTreeMap<&'a str, (&'a str, quantity::Quantity)>, SpecError> {
    let mut parsed = BTreeMap::new();
    for (name, Quantity(value)) in map.into_iter().flatten() {
        let field = format!("spec.resources.{kind}.{name}");
        if !is_container_resource(name) {
            return Err(SpecError::UnknownResource {
                field,
                name: name.clone(),
            });
        }
        let q = quantity::parse(value).map_err(|why| SpecError::BadQuantity {
            field: field.clone(),
            value: value.clone(),
            why: why.to_string(),
        })?;
        if q.is_negative() {
            return Err(SpecError::NegativeQuantity {
                field,
                value: value.clone(),
            });
        }
        parsed.insert(name.as_str(), (value.as_str(), q));
    }
    Ok(parsed)
}

/// What the apiserver takes as a container resource name: the standard ones,
/// or a domain-qualified (extended) name, whose details it checks itself.
fn is_container_resource(name: &str) -> bool {
    name.contains('/')
        || matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name
            .strip_prefix("hugepages-")
            .is_some_and(|size| quantity::parse(size).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};

    fn spec() -> FunctionSpec {
        serde_json::from_value(serde_json::json!({"image": "hello:1"})).unwrap()
    }

    #[test]
    fn defaults_from_an_image_alone_are_valid() {
        let s = spec();
        assert_eq!(s.port, 8080);
        assert_eq!(s.scale.max_replicas, 10);
        assert_eq!(s.queue.max_requests, 1000);
        assert_eq!(validate(&s), Ok(()));
    }

    #[test]
    fn min_above_max_is_refused() {
        let mut s = spec();
        s.scale.min_replicas = 5;
        s.scale.max_replicas = 2;
        assert_eq!(validate(&s), Err(SpecError::MinAboveMax { min: 5, max: 2 }));
    }

    #[test]
    fn blank_image_is_refused() {
        let mut s = spec();
        s.image = "  ".into();
        assert_eq!(validate(&s), Err(SpecError::EmptyImage));
    }

    #[test]
    fn port_in_env_is_refused() {
        let mut s = spec();
        s.env.push(EnvVar {
            name: "PORT".into(),
            value: Some("1".into()),
            ..Default::default()
        });
        assert_eq!(validate(&s), Err(SpecError::PortInEnv));
    }

    #[test]
    fn target_outside_the_schema_range_is_refused() {
        for bad in [0.0, 0.009, -1.0, 100000.5, f64::NAN, f64::INFINITY] {
            let mut s = spec();
            s.scale.target = bad;
            let err = validate(&s).expect_err("out of range");
            assert!(
                matches!(err, SpecError::TargetOutOfRange { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("spec.scale.target"), "{err}");
        }
        for good in [0.01, 1.0, 100000.0] {
            let mut s = spec();
            s.scale.target = good;
            assert_eq!(validate(&s), Ok(()), "{good}");
        }
    }

    /// `validate` and the CRD schema hold `scale.target` to the same range,
    /// and the schema refuses a whole-number 0 too (see `ScaleSpec::target`).
    #[test]
    fn target_range_is_the_schema_range() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::Function::crd()).unwrap();
        let target = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["scale"]["properties"]["target"];
        assert_eq!(target["minimum"].as_f64(), Some(*TARGET_RANGE.start()));
        assert_eq!(target["maximum"].as_f64(), Some(*TARGET_RANGE.end()));
        assert_eq!(
            target["allOf"],
            serde_json::json!([{"minimum": 0.0, "exclusiveMinimum": true}])
        );
    }

    fn with_resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> FunctionSpec {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        let mut s = spec();
        s.resources = Some(ResourceRequirements {
            requests: map(requests),
            limits: map(limits),
            ..Default::default()
        });
        s
    }

    #[test]
    fn a_bad_quantity_is_refused_naming_its_field() {
        let s = with_resources(&[("cpu", "100m")], &[("memory", "lots")]);
        let err = validate(&s).expect_err("lots is no quantity");
        assert!(
            matches!(&err, SpecError::BadQuantity { field, value, .. }
                if field == "spec.resources.limits.memory" && value == "lots"),
            "{err:?}"
        );
        assert!(err.to_string().contains("spec.resources.limits.memory"));

        let s = with_resources(&[("ephemeral-storage", "1 Gi")], &[]);
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("spec.resources.requests.ephemeral-storage")
        );
        let s = with_resources(&[("example.com/gpu", "one")], &[]);
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("spec.resources.requests.example.com/gpu")
        );
    }

    #[test]
    fn negative_quantities_and_unknown_names_are_refused() {
        let s = with_resources(&[], &[("memory", "-1Gi")]);
        assert!(matches!(
            validate(&s),
            Err(SpecError::NegativeQuantity { .. })
        ));
        let s = with_resources(&[("gpu", "1")], &[]);
        assert!(matches!(
            validate(&s),
            Err(SpecError::UnknownResource { .. })
        ));
        let s = with_resources(&[("hugepages-2Mi", "4Mi")], &[("hugepages-2Mi", "4Mi")]);
        assert_eq!(validate(&s), Ok(()));
        let s = with_resources(&[("hugepages-big", "4Mi")], &[]);
        assert!(validate(&s).is_err());
    }

    #[test]
    fn requests_above_limits_are_refused() {
        let s = with_resources(&[("memory", "2Gi")], &[("memory", "1Gi")]);
        let err = validate(&s).expect_err("request above limit");
        assert_eq!(
            err,
            SpecError::RequestAboveLimit {
                resource: "memory".into(),
                request: "2Gi".into(),
                limit: "1Gi".into()
            }
        );
        assert!(err.to_string().contains("spec.resources.limits.memory"));

        let s = with_resources(&[("cpu", "1001m")], &[("cpu", "1")]);
        assert!(validate(&s).is_err());
        // Equal values in different forms, a request with no limit, and a
        // limit with no request are all fine.
        let s = with_resources(
            &[
                ("memory", "1073741824"),
                ("cpu", "2"),
                ("ephemeral-storage", "1G"),
            ],
            &[("memory", "1Gi"), ("cpu", "2000m")],
        );
        assert_eq!(validate(&s), Ok(()));
        let s = with_resources(&[], &[("memory", "128Mi"), ("nvidia.com/gpu", "1")]);
        assert_eq!(validate(&s), Ok(()));
    }

    fn with_schedules(schedules: serde_json::Value) -> FunctionSpec {
        serde_json::from_value(serde_json::json!({
            "image": "hello:1",
            "scale": {"maxReplicas": 5, "schedules": schedules},
        }))
        .expect("a spec literal")
    }

    #[test]
    fn valid_schedules_pass_and_the_time_zone_defaults_to_utc() {
        let s = with_schedules(serde_json::json!([
            {"cron": "0 8 * * 1-5", "timeZone": "Europe/Berlin", "duration": "10h", "minReplicas": 3},
            {"cron": "0 22 * * *", "duration": "12h", "minReplicas": 5},
        ]));
        assert_eq!(s.scale.schedules[1].time_zone, "UTC");
        assert_eq!(validate(&s), Ok(()));
    }

    #[test]
    fn a_bad_schedule_is_refused_naming_its_field() {
        let s = with_schedules(serde_json::json!([
            {"cron": "0 8 * * 1-5", "duration": "10h", "minReplicas": 1},
            {"cron": "0 8 * * 1-5 *", "duration": "10h", "minReplicas": 1},
        ]));
        let err = validate(&s).expect_err("six fields");
        assert!(
            matches!(&err, SpecError::BadSchedule { field, value, .. }
                if field == "spec.scale.schedules[1].cron" && value == "0 8 * * 1-5 *"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("spec.scale.schedules[1].cron is \"0 8 * * 1-5 *\""),
            "{err}"
        );

        let s = with_schedules(serde_json::json!([
            {"cron": "0 8 * * 1-5", "timeZone": "Mars/Olympus_Mons", "duration": "10h", "minReplicas": 1},
        ]));
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .starts_with("spec.scale.schedules[0].timeZone is \"Mars/Olympus_Mons\"")
        );

        let s = with_schedules(serde_json::json!([
            {"cron": "0 8 * * 1-5", "duration": "10 hours", "minReplicas": 1},
        ]));
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .starts_with("spec.scale.schedules[0].duration")
        );
    }

    #[test]
    fn a_window_above_max_replicas_is_refused() {
        let s = with_schedules(serde_json::json!([
            {"cron": "0 8 * * *", "duration": "1h", "minReplicas": 6},
        ]));
        let err = validate(&s).expect_err("6 > 5");
        assert_eq!(
            err,
            SpecError::ScheduleMinAboveMax {
                index: 0,
                min: 6,
                max: 5
            }
        );
        assert!(
            err.to_string()
                .contains("spec.scale.schedules[0].minReplicas (6)"),
            "{err}"
        );
    }

    /// The schema holds what it can: list length, string lengths, the
    /// duration's shape and the replica range.
    #[test]
    fn the_schema_bounds_schedules() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::Function::crd()).unwrap();
        let schedules = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["scale"]["properties"]["schedules"];
        assert_eq!(
            schedules["maxItems"].as_u64(),
            Some(crate::schedule::MAX_SCHEDULES as u64)
        );
        let item = &schedules["items"];
        assert_eq!(
            item["required"],
            serde_json::json!(["cron", "duration", "minReplicas"])
        );
        let props = &item["properties"];
        assert_eq!(props["minReplicas"]["maximum"].as_f64(), Some(1000.0));
        assert_eq!(props["cron"]["maxLength"].as_u64(), Some(100));
        assert_eq!(props["timeZone"]["default"], "UTC");
        let pattern = props["duration"]["pattern"].as_str().expect("a pattern");
        assert_eq!(pattern, r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$");
    }

    /// Every manifest in examples/functions is a valid Function.
    #[test]
    fn the_example_functions_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/functions");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("examples/functions exists") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let f: crate::Function = serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not a Function: {e}", path.display()));
            assert_eq!(validate(&f.spec), Ok(()), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 5, "read {seen} examples");
    }

    #[test]
    fn queue_wait_longer_than_request_timeout_is_refused() {
        let mut s = spec();
        s.timeout_seconds = 10;
        s.queue.timeout_seconds = 20;
        assert!(matches!(
            validate(&s),
            Err(SpecError::QueueTimeoutAboveRequestTimeout { .. })
        ));
    }
}
