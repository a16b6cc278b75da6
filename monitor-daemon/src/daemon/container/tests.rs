//! Tests of a container's state, and the fixtures other tests of the daemon build on.

use super::*;

/// A running Docker container found at `t`, with Docker's default capabilities granted.
pub(crate) fn container(id: &str, t: i64) -> Container {
    Container {
        id: id.into(),
        short_id: id.chars().take(12).collect(),
        runtime: Runtime::Docker,
        name: None,
        image: None,
        namespace: None,
        pod: None,
        k8s_container: None,
        compose_project: None,
        compose_service: None,
        sandbox: false,
        workload_label: None,
        applied: None,
        pod_uid: None,
        qos: None,
        cgroup_path: format!("/docker/{id}"),
        cgroup_id: 42,
        first_seen: t,
        last_seen: t,
        exited_at: None,
        complete: true,
        granted: vec!["CAP_CHOWN".into(), "CAP_NET_RAW".into()],
        posture: None,
        uid: Some(0),
    }
}

pub(crate) fn cap_check(cap: &str, class: CapClass, site: &str, count: u64) -> CapCheck {
    CapCheck {
        capability: cap.into(),
        class,
        reason: "granted".into(),
        result: if class == CapClass::Used {
            "granted"
        } else {
            "refused"
        },
        count,
        noaudit_caller: None,
        comm: "chown".into(),
        pid: 7,
        syscall: Some("fchownat".into()),
        site: Some(site.into()),
        stack: vec![site.into()],
    }
}

/// A snapshot's facts: chown used at two sites, a probe, a syscall and a denial.
pub(crate) fn facts(n: u64) -> (Capabilities, Syscalls) {
    let caps = Capabilities {
        checks: vec![
            cap_check("CAP_CHOWN", CapClass::Used, "chown_ok", 2 * n),
            cap_check("CAP_CHOWN", CapClass::Used, "chown_ok", n),
            cap_check("CAP_SYS_ADMIN", CapClass::Probe, "__mmap_region", n),
        ],
        ..Default::default()
    };
    let syscalls = Syscalls {
        used: vec!["fchownat".into(), "read".into()],
        runtime: vec!["capset".into()],
        denied: vec![Denial {
            name: "chmod".into(),
            number: 90,
            errno: "EPERM".into(),
            count: n,
            comm: Some("chmod".into()),
        }],
    };
    (caps, syscalls)
}

fn chown_key() -> CheckKey {
    CheckKey {
        capability: Capability(0),
        class: CapClass::Used,
        result: CheckResult::Granted,
        site: Some("chown_ok".into()),
        syscall: Some("fchownat".into()),
    }
}

#[test]
fn capability_names_read_back() {
    for n in 0..70 {
        let cap = Capability(n);
        assert_eq!(Capability::from_name(&cap.name()), Some(cap), "{n}");
    }
    assert_eq!(Capability::from_name("CAP_CHOWN"), Some(Capability(0)));
    for bad in ["chown", "CAP_chown", "CAP_", "CAP_+5", "CAP_05", "CAP_NOPE"] {
        assert_eq!(Capability::from_name(bad), None, "{bad}");
    }
}

#[test]
fn keys_order_by_capability_number_then_class_result_site_syscall() {
    let a = chown_key();
    let later_cap = CheckKey {
        capability: Capability(21),
        ..a.clone()
    };
    let later_class = CheckKey {
        class: CapClass::Denied,
        ..a.clone()
    };
    let refused = CheckKey {
        result: CheckResult::Refused,
        ..a.clone()
    };
    let no_site = CheckKey {
        site: None,
        ..a.clone()
    };
    assert!(a < later_cap && a < later_class && a < refused);
    assert!(no_site < a, "unknown sites first");
    assert!(later_class < later_cap, "capability first");
    // CAP_NET_RAW (13) before CAP_SYS_ADMIN (21), though its name sorts after.
    let net_raw = CheckKey {
        capability: Capability(13),
        ..a.clone()
    };
    assert!(net_raw < later_cap);
}

#[test]
fn absorbing_the_same_snapshot_twice_does_not_double_counts() {
    let mut c = ContainerState::found(container("abc", 100));
    let (caps, syscalls) = facts(1);
    c.absorb(caps.clone(), syscalls.clone(), 200);
    assert_eq!(
        c.checks[&chown_key()].count,
        3,
        "two entries of one site add up"
    );
    assert_eq!(c.info.last_seen, 200);
    let mut batch = Batch::default();
    c.take_batch(&mut batch);
    assert_eq!(batch.containers.len(), 1);
    assert_eq!(batch.checks.len(), 2);
    assert_eq!(batch.syscalls.len(), 3);
    assert_eq!(batch.denials.len(), 1);
    assert!(!c.is_dirty());
    // The kernel's counts are cumulative: the same snapshot again changes nothing.
    c.absorb(caps, syscalls, 300);
    assert_eq!(c.checks[&chown_key()].count, 3);
    assert_eq!(c.info.last_seen, 200);
    assert!(!c.is_dirty());
    // More checks: the count moves, and only last_seen of the row is written.
    let (caps, syscalls) = facts(2);
    c.absorb(caps, syscalls, 400);
    assert_eq!(c.checks[&chown_key()].count, 6);
    let mut batch = Batch::default();
    c.take_batch(&mut batch);
    assert!(batch.containers.is_empty());
    assert_eq!(batch.touches, vec![("abc".to_owned(), 400)]);
    assert_eq!(batch.checks.len(), 2);
    assert!(batch.syscalls.is_empty());
    assert_eq!(batch.denials[0].2.count, 2);
}

#[test]
fn counts_of_an_earlier_run_are_the_base_of_this_one() {
    let mut first = ContainerState::found(container("abc", 100));
    let (caps, syscalls) = facts(1);
    first.absorb(caps.clone(), syscalls.clone(), 200);
    let stored = Stored {
        container: first.info.clone(),
        checks: first.checks.clone().into_iter().collect(),
        syscalls: first.syscalls.iter().cloned().collect(),
        runtime_syscalls: first.runtime_syscalls.iter().cloned().collect(),
        denials: first.denials.clone().into_iter().collect(),
    };
    let mut again = ContainerState::from_stored(stored);
    assert!(!again.is_dirty());
    // This run's kernel counts start from zero: 3 + 3.
    again.absorb(caps, syscalls, 300);
    assert_eq!(again.checks[&chown_key()].count, 6);
    let key = DenialKey {
        syscall: "chmod".into(),
        errno: "EPERM".into(),
    };
    assert_eq!(again.denials[&key].count, 2);
}

#[test]
fn classes_unused_and_report() {
    let mut c = ContainerState::found(container("abc", 100));
    let (caps, syscalls) = facts(1);
    c.absorb(caps, syscalls, 200);
    assert_eq!(c.names_in_class(CapClass::Used), vec!["CAP_CHOWN"]);
    assert_eq!(c.names_in_class(CapClass::Probe), vec!["CAP_SYS_ADMIN"]);
    assert_eq!(c.unused(), vec!["CAP_NET_RAW"]);
    let r = c.report();
    assert_eq!(r.command, vec!["abc"]);
    assert_eq!(r.capabilities.used, vec!["CAP_CHOWN"]);
    let checks: Vec<(&str, &str, u64)> = r
        .capabilities
        .checks
        .iter()
        .map(|c| (c.capability.as_str(), c.result, c.count))
        .collect();
    assert_eq!(
        checks,
        vec![("CAP_CHOWN", "granted", 3), ("CAP_SYS_ADMIN", "refused", 1)]
    );
    assert_eq!(r.syscalls.denied[0].name, "chmod");
}
