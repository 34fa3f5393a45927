//! Checks the OpenAPI schema cannot express (it has no cross-field rules on
//! Kubernetes 1.20). A failure becomes `Ready=False, reason=InvalidSpec`.

use super::FunctionSpec;

/// Why a spec that passed the schema still can't run, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

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
