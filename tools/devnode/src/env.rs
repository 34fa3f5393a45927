//! A container's environment, resolved as the kubelet does: envFrom, then
//! env in order with `$(VAR)` references to earlier names, `valueFrom`
//! field, Secret and ConfigMap references; plus what the dev node adds so a
//! process can listen on its pod's own address (POD_IP, HOST, PORT).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::{Api, Client};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("env {name}: {what} {namespace}/{object} not found or has no key {key:?}")]
    MissingRef {
        name: String,
        what: &'static str,
        namespace: String,
        object: String,
        key: String,
    },
    #[error("env {name}: reading {what} {namespace}/{object}: {source}")]
    Api {
        name: String,
        what: &'static str,
        namespace: String,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("env {name}: fieldRef {path:?} is not supported by the dev node")]
    UnsupportedField { name: String, path: String },
}

/// The ordered environment for one container.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = vec![
        (
            "POD_NAME".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        ("POD_NAMESPACE".into(), namespace.clone()),
        ("POD_IP".into(), pod_ip.into()),
        ("HOST".into(), pod_ip.into()),
    ];
    if let Some(port) = container.ports.iter().flatten().next() {
        env.push(("PORT".into(), port.container_port.to_string()));
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            if let Some(data) =
                fetch_config_map(client, &namespace, &r.name, "envFrom", optional).await?
            {
                env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
            }
        }
        if let Some(r) = &source.secret_ref {
            let optional = r.optional.unwrap_or(false);
            if let Some(data) =
                fetch_secret(client, &namespace, &r.name, "envFrom", optional).await?
            {
                env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => expand_refs(v, &env),
            (None, Some(_)) => value_from(client, pod, &namespace, var, pod_ip).await?,
            (None, None) => String::new(),
        };
        set(&mut env, &var.name, value);
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.into(), value)),
    }
}

/// `$(NAME)` becomes an earlier variable's value; `$$` escapes; unknown
/// references stay as written (the Kubernetes rules).
pub fn expand_refs(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn value_from(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    var: &EnvVar,
    pod_ip: &str,
) -> Result<String, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(String::new());
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path, pod_ip).ok_or_else(|| {
            EnvError::UnsupportedField {
                name: var.name.clone(),
                path: field.field_path.clone(),
            }
        });
    }
    if let Some(key_ref) = &from.config_map_key_ref {
        let optional = key_ref.optional.unwrap_or(false);
        let data = fetch_config_map(client, namespace, &key_ref.name, &var.name, optional).await?;
        return lookup(data, &key_ref.key, optional).ok_or_else(|| EnvError::MissingRef {
            name: var.name.clone(),
            what: "ConfigMap",
            namespace: namespace.into(),
            object: key_ref.name.clone(),
            key: key_ref.key.clone(),
        });
    }
    if let Some(key_ref) = &from.secret_key_ref {
        let optional = key_ref.optional.unwrap_or(false);
        let data = fetch_secret(client, namespace, &key_ref.name, &var.name, optional).await?;
        return lookup(data, &key_ref.key, optional).ok_or_else(|| EnvError::MissingRef {
            name: var.name.clone(),
            what: "Secret",
            namespace: namespace.into(),
            object: key_ref.name.clone(),
            key: key_ref.key.clone(),
        });
    }
    // resourceFieldRef: the dev node sets no limits, so there is no value to give.
    Ok(String::new())
}

fn lookup(data: Option<BTreeMap<String, String>>, key: &str, optional: bool) -> Option<String> {
    match data.and_then(|mut d| d.remove(key)) {
        Some(v) => Some(v),
        None if optional => Some(String::new()),
        None => None,
    }
}

/// The downward-API fields a process may ask for.
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.into()),
        "status.hostIP" | "status.hostIPs" => Some("127.0.0.1".into()),
        _ => from_map(&meta.labels, "metadata.labels['")
            .or_else(|| from_map(&meta.annotations, "metadata.annotations['")),
    }
}

async fn fetch_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    var: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, String>>, EnvError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(Some(cm.data.unwrap_or_default())),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(EnvError::MissingRef {
            name: var.into(),
            what: "ConfigMap",
            namespace: namespace.into(),
            object: name.into(),
            key: String::new(),
        }),
        Err(source) => Err(EnvError::Api {
            name: var.into(),
            what: "ConfigMap",
            namespace: namespace.into(),
            object: name.into(),
            source,
        }),
    }
}

async fn fetch_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    var: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, String>>, EnvError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => Ok(Some(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, ByteString(v))| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        )),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(EnvError::MissingRef {
            name: var.into(),
            what: "Secret",
            namespace: namespace.into(),
            object: name.into(),
            key: String::new(),
        }),
        Err(source) => Err(EnvError::Api {
            name: var.into(),
            what: "Secret",
            namespace: namespace.into(),
            object: name.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn references_expand_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
        ];
        assert_eq!(expand_refs("$(A)-$(B)", &env), "1-2");
        assert_eq!(expand_refs("$(NOPE)", &env), "$(NOPE)");
        assert_eq!(expand_refs("$$(A)", &env), "$(A)");
        assert_eq!(expand_refs("cost $5", &env), "cost $5");
        assert_eq!(expand_refs("$(A", &env), "$(A");
    }

    #[test]
    fn downward_api_fields() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            field_value(&pod, "metadata.name", "127.10.0.1").as_deref(),
            Some("p")
        );
        assert_eq!(
            field_value(&pod, "status.podIP", "127.10.0.1").as_deref(),
            Some("127.10.0.1")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "").as_deref(),
            Some("x")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['none']", "").as_deref(),
            Some("")
        );
        assert_eq!(field_value(&pod, "spec.weird", ""), None);
    }
}
