//! Runs a pod under the RBAC of its ServiceAccount: the dev node writes a
//! kubeconfig from the ServiceAccount's token Secret (Kubernetes 1.20 still
//! creates one per ServiceAccount) and points KUBECONFIG at it. There is no
//! cluster DNS or kube-proxy here, so the in-cluster config could not work.

use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_ANNOTATION: &str = "kubernetes.io/service-account.name";

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error(
        "ServiceAccount {namespace}/{name} has no token Secret yet (kube-controller-manager creates it)"
    )]
    NoToken { namespace: String, name: String },
    #[error("listing token Secrets in {namespace}: {source}")]
    Api {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `path` as a kubeconfig for ServiceAccount `namespace/name`.
pub async fn write_for_service_account(
    client: &Client,
    server: &str,
    namespace: &str,
    name: &str,
    path: &Path,
) -> Result<(), KubeconfigError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = secrets
        .list(&ListParams::default().fields(&format!("type={TOKEN_TYPE}")))
        .await
        .map_err(|source| KubeconfigError::Api {
            namespace: namespace.into(),
            source,
        })?;
    let secret = list
        .items
        .into_iter()
        .find(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SA_ANNOTATION))
                .map(String::as_str)
                == Some(name)
        })
        .ok_or_else(|| KubeconfigError::NoToken {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| {
        data.get(k)
            .map(|ByteString(v)| v.clone())
            .unwrap_or_default()
    };
    let token = String::from_utf8_lossy(&field("token")).into_owned();
    let ca = field("ca.crt");
    if token.is_empty() {
        return Err(KubeconfigError::NoToken {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    let text = render(server, namespace, name, &token, &ca);
    std::fs::write(path, text).map_err(|source| KubeconfigError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn render(server: &str, namespace: &str, name: &str, token: &str, ca_pem: &[u8]) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {namespace}:{name}\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context:\n    cluster: local\n    user: {namespace}:{name}\n    namespace: {namespace}\ncurrent-context: sa\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_kubeconfig_parses_with_the_namespace() {
        let text = render(
            "https://127.0.0.1:6443",
            "ns",
            "sa",
            "tok",
            b"-----BEGIN CERTIFICATE-----\n",
        );
        let cfg: kube::config::Kubeconfig = serde_yaml::from_str(&text).unwrap();
        assert_eq!(cfg.current_context.as_deref(), Some("sa"));
        let ctx = cfg.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("ns"));
        let user = cfg.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
    }
}
