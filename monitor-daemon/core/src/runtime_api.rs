//! What a Docker-compatible container API (Docker Engine, podman's service) answers, parsed:
//! `GET /containers/{id}/json` -> the container's name, image and Kubernetes labels. Talking
//! to the socket is the daemon's job (`containers::names_api`).

use serde::Deserialize;

/// Name and image of a container, and its Kubernetes names when its runtime labels carry them
/// (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`, `io.kubernetes.container.name`,
/// as set by dockershim, cri-dockerd and podman's `play kube`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerNames {
    /// Container name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Kubernetes pod name.
    pub pod_name: Option<String>,
    /// Kubernetes namespace.
    pub pod_namespace: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: InspectConfig,
}

#[derive(Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::HashMap<String, String>>,
}

/// Parses an inspect answer.
pub fn parse_inspect(body: &[u8]) -> Result<ContainerNames, String> {
    let i: Inspect = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let labels = i.config.labels.unwrap_or_default();
    Ok(ContainerNames {
        name: i.name.trim_start_matches('/').to_owned(),
        image: i.config.image,
        pod_name: labels.get("io.kubernetes.pod.name").cloned(),
        pod_namespace: labels.get("io.kubernetes.pod.namespace").cloned(),
        k8s_container: labels.get("io.kubernetes.container.name").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_and_podman_inspect() {
        let docker = br#"{"Id":"abc","Name":"/web","Config":{"Image":"nginx:1.27","Env":[],"Labels":null},"State":{}}"#;
        assert_eq!(
            parse_inspect(docker),
            Ok(ContainerNames {
                name: "web".into(),
                image: "nginx:1.27".into(),
                ..Default::default()
            })
        );
        // A container that cri-dockerd created for a pod.
        let k8s = br#"{"Name":"/k8s_app_web-7d4b9_shop_8a1c2b3d_0","Config":{"Image":"sha256:0f1e","Labels":{
            "io.kubernetes.pod.name":"web-7d4b9","io.kubernetes.pod.namespace":"shop",
            "io.kubernetes.container.name":"app","io.kubernetes.pod.uid":"8a1c2b3d"}}}"#;
        let n = parse_inspect(k8s).expect("parse");
        assert_eq!(n.pod_name.as_deref(), Some("web-7d4b9"));
        assert_eq!(n.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(n.k8s_container.as_deref(), Some("app"));
        let podman = br#"{"Id":"abc","Name":"capmon-test","Config":{"Image":"localhost/capmon-test-busybox:latest"}}"#;
        assert_eq!(
            parse_inspect(podman).map(|n| n.image),
            Ok("localhost/capmon-test-busybox:latest".into())
        );
        assert!(parse_inspect(b"not json").is_err());
        assert!(parse_inspect(br#"{"Name":"x"}"#).is_err());
    }
}
