//! Unit tests of [`super`] (model.rs).

use super::*;
use crate::daemon::container::tests::{container, facts};

const A: &str = "aaaa1111aaaa1111";
const A2: &str = "aaaa1111bbbb2222";
const B: &str = "bbbb3333cccc4444";

fn model() -> Model {
    let mut m = Model::default();
    for (n, id) in [A, A2, B].into_iter().enumerate() {
        let mut c = container(id, 100);
        c.cgroup_id = n as u64 + 1;
        m.adopt(c.cgroup_id, ContainerState::found(c));
    }
    m
}

fn named(m: &mut Model, id: &str, name: &str) {
    m.containers.get_mut(id).expect("container").info.name = Some(name.into());
}

#[test]
fn an_exited_container_without_posture_still_takes_the_kernels() {
    let mut m = model();
    assert!(m.needs_posture(A) && m.lacks_posture(A));
    m.containers.get_mut(A).expect("A").info.exited_at = Some(200);
    // /proc cannot be read any more, but the kernel side's record still applies.
    assert!(!m.needs_posture(A));
    assert!(m.lacks_posture(A));
    assert!(!m.lacks_posture("no such container"));
}

fn posture(source: PostureSource, bounding: &[&str], label: Option<&str>) -> Posture {
    Posture {
        pid: 7,
        source,
        effective: Vec::new(),
        permitted: Vec::new(),
        bounding: bounding.iter().map(|c| c.to_string()).collect(),
        inheritable: None,
        ambient: None,
        uid: 0,
        gid: None,
        no_new_privs: false,
        seccomp: capmon_core::posture::SeccompMode::Unknown,
        lsm_label: label.map(str::to_owned),
        findings: Vec::new(),
    }
}

#[test]
fn the_first_execs_posture_replaces_procs_and_keeps_its_label() {
    let mut m = model();
    // Still running when found: read from /proc first (as under a slow machine).
    m.set_posture(
        A,
        posture(PostureSource::Proc, &["CAP_CHOWN"], Some("docker-default")),
    );
    let differs = m.take_kernel_posture(A, posture(PostureSource::Kernel, &["CAP_CHOWN"], None));
    assert_eq!(differs, None);
    let p = m.containers[A].info.posture.clone().expect("posture");
    assert_eq!(p.source, PostureSource::Kernel);
    assert_eq!(p.lsm_label.as_deref(), Some("docker-default"));
    // A second record changes nothing; a /proc bounding set that differs is said.
    assert_eq!(
        m.take_kernel_posture(A, posture(PostureSource::Kernel, &[], None)),
        None
    );
    assert_eq!(m.containers[A].info.granted, ["CAP_CHOWN"]);
    m.set_posture(B, posture(PostureSource::Proc, &["CAP_KILL"], None));
    assert_eq!(
        m.take_kernel_posture(B, posture(PostureSource::Kernel, &["CAP_CHOWN"], None)),
        Some(vec!["CAP_KILL".to_owned()])
    );
    assert_eq!(m.containers[B].info.granted, ["CAP_CHOWN"]);
    assert_eq!(
        m.take_kernel_posture("nobody", posture(PostureSource::Kernel, &[], None)),
        None
    );
}

#[test]
fn find_by_id_prefix_and_name() {
    let mut m = model();
    named(&mut m, B, "web");
    assert_eq!(m.find(A).expect("full id").info.id, A);
    assert_eq!(m.find("bbbb33").expect("prefix").info.id, B);
    assert_eq!(m.find("web").expect("name").info.id, B);
    assert!(matches!(
        m.find("aaaa1111"),
        Err(FindError::Ambiguous(_, ref which)) if which.len() == 2
    ));
    let err = m.find("aaaa1111").expect_err("ambiguous").to_string();
    assert!(
        err.starts_with("\"aaaa1111\" matches 2 containers: aaaa1111")
            && err.ends_with("; use more of the id"),
        "{err}"
    );
    // Too short to be a prefix, not hex, nobody's name.
    assert!(matches!(m.find("aaa"), Err(FindError::NotFound(_))));
    assert!(matches!(m.find("nosuch"), Err(FindError::NotFound(_))));
}

#[test]
fn the_running_namesake_wins() {
    let mut m = model();
    named(&mut m, A, "web");
    named(&mut m, B, "web");
    assert!(matches!(m.find("web"), Err(FindError::Ambiguous(_, ref which)) if which.len() == 2));
    m.containers.get_mut(A).expect("A").info.exited_at = Some(150);
    assert_eq!(m.find("web").expect("running one").info.id, B);
}

#[test]
fn snapshots_of_a_container_and_of_other_cgroups() {
    let mut m = model();
    assert_eq!(m.seen(1), Seen::Container(A.into()));
    assert_eq!(m.seen(99), Seen::New);
    m.not_a_container(99);
    assert_eq!(m.seen(99), Seen::Ignored);
    let (caps, syscalls) = facts(1);
    m.absorb(A, caps, syscalls, 200);
    let batch = m.batch();
    assert_eq!(
        batch.containers.len(),
        3,
        "found containers are written whole"
    );
    assert_eq!(batch.checks.len(), 2);
    assert!(m.batch().is_empty());
}

#[test]
fn exited_containers_are_forgotten_once_written_then_pruned() {
    let mut m = model();
    let _ = m.batch();
    let exists = |path: &str| !path.contains(A2);
    let mut input = SweepInput {
        now: 1000,
        retention: 3600,
        exited: &HashSet::from([3]),
        cgroup_exists: &exists,
        records_lost: false,
    };
    let swept = m.sweep(&input);
    assert!(swept.forget.is_empty(), "not written yet");
    assert_eq!(m.counts(), (1, 2));
    assert_eq!(m.batch().containers.len(), 2);
    // Written, but no snapshot read after the exit was absorbed yet: the kernel still
    // holds its last counts (a one-shot's exec and checks after its first snapshot).
    assert!(m.sweep(&input).forget.is_empty(), "last counts not in");
    m.snapshot_applied();
    assert!(
        m.sweep(&input).forget.is_empty(),
        "the snapshot in flight may predate it"
    );
    m.snapshot_applied();
    let swept = m.sweep(&input);
    assert_eq!(swept.forget, BTreeSet::from([2, 3]));
    assert_eq!(
        m.seen(2),
        Seen::Ignored,
        "a late snapshot does not bring it back"
    );
    input.now = 1000 + 3601;
    let swept = m.sweep(&input);
    assert_eq!(swept.untracked, vec![2, 3]);
    assert_eq!(m.containers.len(), 1);
    assert_eq!(m.batch().deletes, vec![A2.to_owned(), B.to_owned()]);
}

#[test]
fn cgroups_nothing_names_are_dropped_as_unattributed_two_snapshots_and_seconds_later() {
    let mut m = Model::default();
    // Created after the probes attached (a creation recorded before it).
    m.created(1);
    m.not_found_yet(7, 100);
    m.snapshot_applied();
    m.not_found_yet(7, 101);
    let exists = |_: &str| true;
    let mut input = SweepInput {
        now: 101,
        retention: 3600,
        exited: &HashSet::new(),
        cgroup_exists: &exists,
        records_lost: false,
    };
    assert_eq!(m.sweep(&input), Swept::default());
    // Two seconds are not enough while the snapshot that may name it is still to come
    // (a long poll interval).
    input.now = 110;
    assert_eq!(m.sweep(&input), Swept::default());
    m.snapshot_applied();
    let swept = m.sweep(&input);
    assert_eq!(swept.unattributed, 1);
    assert_eq!(swept.forget, BTreeSet::from([7]));
    assert_eq!(m.seen(7), Seen::Ignored);
}

#[test]
fn unnamed_cgroups_older_than_the_first_recorded_creation_were_there_before_the_probes() {
    let mut m = Model::default();
    // 5 existed before the probes attached and went before the first scan; 9's record of
    // creation was lost; 8 was the first creation recorded.
    m.created(8);
    m.created(12);
    for id in [5, 9] {
        m.not_found_yet(id, 100);
    }
    m.snapshot_applied();
    m.snapshot_applied();
    let exists = |_: &str| true;
    let swept = m.sweep(&SweepInput {
        now: 110,
        retention: 3600,
        exited: &HashSet::new(),
        cgroup_exists: &exists,
        records_lost: false,
    });
    assert_eq!((swept.before_start, swept.unattributed), (1, 1));
    assert_eq!(swept.forget, BTreeSet::from([5, 9]));
    // Before any creation was recorded, every unnamed cgroup is older than the probes.
    let mut m = Model::default();
    m.not_found_yet(3, 100);
    m.snapshot_applied();
    m.snapshot_applied();
    let swept = m.sweep(&SweepInput {
        now: 110,
        retention: 3600,
        exited: &HashSet::new(),
        cgroup_exists: &exists,
        records_lost: false,
    });
    assert_eq!((swept.before_start, swept.unattributed), (1, 0));
    // Once creation records were lost, an older unnamed cgroup may be one of those.
    let mut m = Model::default();
    m.created(8);
    m.not_found_yet(5, 100);
    m.snapshot_applied();
    m.snapshot_applied();
    let swept = m.sweep(&SweepInput {
        now: 110,
        retention: 3600,
        exited: &HashSet::new(),
        cgroup_exists: &exists,
        records_lost: true,
    });
    assert_eq!((swept.before_start, swept.unattributed), (0, 1));
}
