//! What a Docker-compatible container API (Docker Engine, podman's service) answers, parsed:
//! `GET /containers/{id}/json` -> the container's name, image, compose and Kubernetes labels;
//! `GET /events` -> its lines ([`complete_lines`]), each a container event ([`parse_event`]).
//! Talking to the socket is the daemon's job (`containers::names_api`,
//! `containers::docker_events`).

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
    /// Compose project (`com.docker.compose.project`).
    pub compose_project: Option<String>,
    /// Compose service (`com.docker.compose.service`).
    pub compose_service: Option<String>,
    /// The workload it belongs to, when a `capmon.workload` label says
    /// ([`crate::workload::WORKLOAD_LABEL`]).
    pub workload: Option<String>,
}

/// Label of a compose project.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Label of a compose service.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Kubernetes labels of dockershim, cri-dockerd and podman's `play kube`.
pub const K8S_POD: &str = "io.kubernetes.pod.name";
/// The pod's namespace.
pub const K8S_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The container's name in its pod.
pub const K8S_CONTAINER: &str = "io.kubernetes.container.name";

impl ContainerNames {
    /// Names from a container's name, image and labels.
    pub fn from_labels<S: std::hash::BuildHasher>(
        name: String,
        image: String,
        labels: &std::collections::HashMap<String, String, S>,
    ) -> Self {
        ContainerNames {
            name,
            image,
            pod_name: labels.get(K8S_POD).cloned(),
            pod_namespace: labels.get(K8S_NAMESPACE).cloned(),
            k8s_container: labels.get(K8S_CONTAINER).cloned(),
            compose_project: labels.get(COMPOSE_PROJECT).cloned(),
            compose_service: labels.get(COMPOSE_SERVICE).cloned(),
            workload: labels.get(crate::workload::WORKLOAD_LABEL).cloned(),
        }
    }
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
    Ok(ContainerNames::from_labels(
        i.name.trim_start_matches('/').to_owned(),
        i.config.image,
        &labels,
    ))
}

/// One container event of the API's event stream (`GET /events`, one JSON object per line):
/// Docker's create and start events carry the name, image and labels (compose's
/// `com.docker.compose.project`/`.service`, Kubernetes labels), early enough for a `--rm`
/// container that is gone before anyone could ask about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `create`, `start`, `die`, `destroy`, ...
    pub action: String,
    /// Full container id.
    pub id: String,
    /// Container name, when the event says.
    pub name: Option<String>,
    /// Image reference, when the event says.
    pub image: Option<String>,
    /// The container's labels (the actor's attributes other than `name` and `image`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it happened (Unix nanoseconds; 0 when not given).
    pub time_nano: i64,
}

impl ContainerEvent {
    /// The names the event carries, when it carries a name and an image (create and start
    /// events do).
    pub fn names(&self) -> Option<ContainerNames> {
        let labels: std::collections::HashMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(ContainerNames::from_labels(
            self.name.clone()?,
            self.image.clone()?,
            &labels,
        ))
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor")]
    actor: Actor,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Deserialize)]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// Splits what arrived of the event stream (`buf`) into its complete lines, leaving the
/// unfinished rest in `buf`; blank lines are dropped. Fed the stream in any pieces, it yields
/// the same lines.
pub fn complete_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last + 1);
    let done = std::mem::replace(buf, rest);
    done.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Parses one line of the event stream: `Ok(None)` for events that are not about a container
/// (images, networks, volumes), an error for a line that is not an event.
pub fn parse_event(line: &[u8]) -> Result<Option<ContainerEvent>, String> {
    let e: Event = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if e.kind != "container" {
        return Ok(None);
    }
    let mut labels = e.actor.attributes;
    Ok(Some(ContainerEvent {
        name: labels.remove("name"),
        image: labels.remove("image"),
        action: e.action,
        id: e.actor.id,
        labels,
        time_nano: e.time_nano,
    }))
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

    #[test]
    fn lines_are_split_where_they_end() {
        let mut buf = b"{\"a\":1}\n{\"b\":2}\n{\"c\"".to_vec();
        assert_eq!(
            complete_lines(&mut buf),
            [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(buf, b"{\"c\"");
        buf.extend_from_slice(b":3}\n\n \r\n");
        assert_eq!(complete_lines(&mut buf), [b"{\"c\":3}".to_vec()]);
        assert!(buf.is_empty());
        assert!(complete_lines(&mut buf).is_empty());
    }

    #[test]
    fn parses_docker_container_events() {
        let start = br#"{"status":"start","id":"9f1c0a7e","from":"capmon-test:latest","Type":"container","Action":"start","Actor":{"ID":"9f1c0a7e","Attributes":{"com.docker.compose.project":"shop","com.docker.compose.service":"web","image":"capmon-test:latest","name":"shop-web-1"}},"scope":"local","time":1764579600,"timeNano":1764579600123456789}"#;
        let e = parse_event(start)
            .expect("parse")
            .expect("a container event");
        assert_eq!(e.action, "start");
        assert_eq!(e.id, "9f1c0a7e");
        assert_eq!(e.name.as_deref(), Some("shop-web-1"));
        assert_eq!(e.image.as_deref(), Some("capmon-test:latest"));
        assert_eq!(
            e.labels
                .get("com.docker.compose.service")
                .map(String::as_str),
            Some("web")
        );
        assert!(!e.labels.contains_key("name"));
        let n = e.names().expect("names");
        assert_eq!(
            (
                n.name.as_str(),
                n.compose_project.as_deref(),
                n.compose_service.as_deref()
            ),
            ("shop-web-1", Some("shop"), Some("web"))
        );
        let die = br#"{"Type":"container","Action":"die","Actor":{"ID":"9f1c","Attributes":{"exitCode":"0"}}}"#;
        assert_eq!(
            parse_event(die).expect("parse").and_then(|e| e.names()),
            None
        );
        assert_eq!(e.time_nano, 1_764_579_600_123_456_789);
        let network = br#"{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"name":"bridge"}}}"#;
        assert_eq!(parse_event(network), Ok(None));
        assert!(parse_event(b"{\"Type\":\"container\"}").is_err());
        assert!(parse_event(b"garbage").is_err());
    }
}
