//! Unit tests of [`super`] (attribution.rs).

use super::*;

const A: &str = "3f1c6a7d0e9b4a2f8c5d7e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "8a1c2b3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
const UID_US: &str = "8a1c2b3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d";

struct Case {
    path: String,
    runtime: Runtime,
    role: Role,
    id: Option<&'static str>,
    pod: bool,
    qos: Option<QosClass>,
    unit: Option<&'static str>,
}

fn c(
    path: String,
    runtime: Runtime,
    role: Role,
    id: Option<&'static str>,
    pod: bool,
    qos: Option<QosClass>,
    unit: Option<&'static str>,
) -> Case {
    Case {
        path,
        runtime,
        role,
        id,
        pod,
        qos,
        unit,
    }
}

fn cases() -> Vec<Case> {
    use QosClass::*;
    use Role::*;
    use Runtime::*;
    vec![
        // Docker, cgroupfs and systemd drivers.
        c(
            format!("/docker/{A}"),
            Docker,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/system.slice/docker-{A}.scope"),
            Docker,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        // Docker in Docker: the inner container wins.
        c(
            format!("/docker/{B}/docker/{A}"),
            Docker,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        // containerd through CRI, systemd driver, each QoS class.
        c(
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{A}.scope"
            ),
            Containerd,
            Container,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{A}.scope"
            ),
            Containerd,
            Container,
            Some(A),
            true,
            Some(BestEffort),
            None,
        ),
        c(
            format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{A}.scope"),
            Containerd,
            Container,
            Some(A),
            true,
            Some(Guaranteed),
            None,
        ),
        // Kubernetes with the cgroupfs driver: bare ids under pod<uid>.
        c(
            format!("/kubepods/burstable/pod{UID}/{A}"),
            Cri,
            Container,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!("/kubepods/besteffort/pod{UID}/{A}"),
            Cri,
            Container,
            Some(A),
            true,
            Some(BestEffort),
            None,
        ),
        c(
            format!("/kubepods/pod{UID}/{A}"),
            Cri,
            Container,
            Some(A),
            true,
            Some(Guaranteed),
            None,
        ),
        // CRI-O, container and conmon.
        c(
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{A}.scope"
            ),
            CriO,
            Container,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{A}.scope"
            ),
            CriO,
            Conmon,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!("/kubepods/burstable/pod{UID}/crio-{A}"),
            CriO,
            Container,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        // Docker as the Kubernetes runtime (dockershim / cri-dockerd), systemd driver.
        c(
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/docker-{A}.scope"
            ),
            Docker,
            Container,
            Some(A),
            true,
            Some(BestEffort),
            None,
        ),
        // The pod's own cgroup.
        c(
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice"
            ),
            Cri,
            Pod,
            None,
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!("/kubepods/pod{UID}"),
            Cri,
            Pod,
            None,
            true,
            Some(Guaranteed),
            None,
        ),
        // podman: systemd and cgroupfs managers, conmon, rootless, the inner `container`.
        c(
            format!("/machine.slice/libpod-{A}.scope"),
            Podman,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/machine.slice/libpod-{A}.scope/container"),
            Podman,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/machine.slice/libpod-conmon-{A}.scope"),
            Podman,
            Conmon,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/libpod_parent/libpod-{A}"),
            Podman,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/libpod_parent/libpod-conmon-{A}"),
            Podman,
            Conmon,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope"),
            Podman,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        // kind (systemd driver inside a node container) and minikube (cgroupfs inside).
        c(
            format!(
                "/system.slice/docker-{B}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_US}.slice/cri-containerd-{A}.scope"
            ),
            Containerd,
            Container,
            Some(A),
            true,
            Some(Burstable),
            None,
        ),
        c(
            format!("/docker/{B}/kubepods/besteffort/pod{UID}/{A}"),
            Cri,
            Container,
            Some(A),
            true,
            Some(BestEffort),
            None,
        ),
        // The kind node itself.
        c(
            format!("/system.slice/docker-{B}.scope"),
            Docker,
            Container,
            Some(B),
            false,
            None,
            None,
        ),
        // systemd services, scopes and sessions.
        c(
            "/system.slice/nginx.service".into(),
            Systemd,
            Other,
            None,
            false,
            None,
            Some("nginx.service"),
        ),
        c(
            "/system.slice/system-getty.slice/getty@tty1.service".into(),
            Systemd,
            Other,
            None,
            false,
            None,
            Some("getty@tty1.service"),
        ),
        c(
            "/user.slice/user-1000.slice/session-3.scope".into(),
            Systemd,
            Other,
            None,
            false,
            None,
            Some("session-3.scope"),
        ),
        // Plain runc: systemd driver, and a custom cgroupsPath with an id, or without.
        c(
            format!("/system.slice/runc-{A}.scope"),
            Unknown,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            format!("/mygroup/{A}"),
            Unknown,
            Container,
            Some(A),
            false,
            None,
            None,
        ),
        c(
            "/mygroup/web".into(),
            Unknown,
            Other,
            None,
            false,
            None,
            None,
        ),
        // The host.
        c("/".into(), Host, Other, None, false, None, None),
        c("/init.scope".into(), Host, Other, None, false, None, None),
        // capmon's own recording cgroup.
        c(
            "/capmon-record-4242".into(),
            Unknown,
            Other,
            None,
            false,
            None,
            None,
        ),
    ]
}

#[test]
fn real_path_shapes() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in cases {
        let id = identify(&case.path);
        assert_eq!(id.runtime, case.runtime, "{}", case.path);
        assert_eq!(id.role, case.role, "{}", case.path);
        assert_eq!(id.container_id.as_deref(), case.id, "{}", case.path);
        assert_eq!(
            id.short_id.as_deref(),
            case.id.map(|i| &i[..12]),
            "{}",
            case.path
        );
        assert_eq!(
            id.pod_uid.as_deref(),
            case.pod.then_some(UID),
            "{}",
            case.path
        );
        assert_eq!(id.qos, case.qos, "{}", case.path);
        assert_eq!(id.unit.as_deref(), case.unit, "{}", case.path);
        assert_eq!(id.path, case.path);
    }
}

#[test]
fn hostile_names_keep_their_path() {
    let long = format!("/{}", "a".repeat(100_000));
    assert_eq!(identify(&long).runtime, Runtime::Unknown);
    assert_eq!(identify(&long).path, long);
    for odd in [
        "/with space/x",
        "/new\nline",
        "/\u{fffd}\u{fffd}/docker-zz.scope",
        "//",
        "/docker/",
        "/kubepods/pod/",
    ] {
        let id = identify(odd);
        assert_eq!(id.path, odd);
        assert_eq!(id.container_id, None, "{odd:?}");
    }
    // An id that is not 64 hex digits is not an id.
    assert_eq!(identify("/docker/3f1c6a7d0e9b").container_id, None);
    // Upper-case hex is normalised.
    let upper = format!("/docker/{}", A.to_uppercase());
    assert_eq!(identify(&upper).container_id.as_deref(), Some(A));
}

#[test]
fn names_match_json_and_read_back() {
    for r in Runtime::ALL {
        let json = serde_json::to_value(r).expect("json");
        assert_eq!(json, r.as_str(), "{r:?}");
        assert_eq!(Runtime::parse(r.as_str()), Some(r));
    }
    for q in QosClass::ALL {
        let json = serde_json::to_value(q).expect("json");
        assert_eq!(json, q.as_str(), "{q:?}");
        // What the daemon stored before `as_str` existed.
        assert_eq!(format!("{q:?}").to_lowercase(), q.as_str());
        assert_eq!(QosClass::parse(q.as_str()), Some(q));
    }
    assert_eq!(Runtime::parse("Docker"), None);
    assert_eq!(QosClass::parse("best-effort"), None);
}
