use capmon_core::{attribution::QosClass, classify::CapClass, posture};

use super::*;
use crate::daemon::container::{
    Capability, Check, CheckKey, CheckResult, Container, DenialCount, DenialKey, tests::container,
};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capmon-store-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// `/proc/<pid>/status` of a root shell on this project's build machine.
const HOST_ROOT: &str = include_str!("../../../core/tests/fixtures/status-host-root.txt");

fn row(id: &str) -> Container {
    let mut c = container(id, 100);
    c.name = Some("web".into());
    c.last_seen = 200;
    c.qos = Some(QosClass::Burstable);
    let p = posture::from_status(1, HOST_ROOT, None, 0x1ff_feff_ffff).expect("posture");
    c.set_posture(p);
    c
}

fn chown() -> (CheckKey, Check) {
    let key = CheckKey {
        capability: Capability(0),
        class: CapClass::Used,
        result: CheckResult::Granted,
        site: Some("chown_ok".into()),
        syscall: Some("fchownat".into()),
    };
    let check = Check {
        count: 3,
        reason: "granted".into(),
        comm: "chown".into(),
        pid: 7,
        stack: vec!["chown_ok".into()],
    };
    (key, check)
}

fn chmod() -> (DenialKey, DenialCount) {
    let key = DenialKey {
        syscall: "fchmodat".into(),
        errno: "EPERM".into(),
    };
    let denial = DenialCount {
        number: 268,
        count: 1,
        comm: "chmod".into(),
    };
    (key, denial)
}

#[test]
fn round_trip_update_delete_and_reopen() {
    let d = dir("rt");
    let id = "0123456789abcdef0123";
    let (ck, check) = chown();
    let (dk, denial) = chmod();
    {
        let mut s = Store::open(&d).expect("open");
        s.write(&Batch {
            containers: vec![row(id)],
            checks: vec![(id.into(), ck.clone(), check.clone())],
            syscalls: vec![
                (id.into(), "read".into(), false),
                (id.into(), "capset".into(), true),
            ],
            denials: vec![(id.into(), dk.clone(), denial.clone())],
            deletes: vec![],
            touches: vec![],
        })
        .expect("write");
        // Activity moves last_seen alone.
        s.write(&Batch {
            touches: vec![(id.into(), 250)],
            ..Default::default()
        })
        .expect("touch");
        // Counts are absolute: an update replaces them.
        s.write(&Batch {
            checks: vec![(id.into(), ck.clone(), Check { count: 5, ..check })],
            denials: vec![(id.into(), dk, DenialCount { count: 2, ..denial })],
            ..Default::default()
        })
        .expect("update");
    }
    let s = Store::open(&d).expect("reopen");
    let all = s.load().expect("load");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].container,
        Container {
            last_seen: 250,
            ..row(id)
        }
    );
    assert_eq!(all[0].checks[0].0, ck);
    assert_eq!(all[0].checks[0].1.count, 5);
    assert_eq!(all[0].denials[0].1.count, 2);
    assert_eq!(all[0].syscalls, vec!["read"]);
    assert_eq!(all[0].runtime_syscalls, vec!["capset"]);
    drop(s);
    let mut s = Store::open(&d).expect("reopen");
    s.write(&Batch {
        deletes: vec![id.into()],
        ..Default::default()
    })
    .expect("delete");
    assert!(s.load().expect("load").is_empty());
}

/// A container's rows as the daemon wrote them before its model was typed (posture, granted
/// and stack JSON, class and result names), in a version-1 file: the file is migrated, and
/// they load as the same values.
#[test]
fn rows_written_by_the_string_model_in_a_version_1_file_load() {
    let d = dir("old");
    fs::create_dir_all(&d).expect("dir");
    {
        let conn = Connection::open(d.join("capmon.db")).expect("sqlite");
        conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
    }
    let id = "0123456789abcdef0123";
    let posture = serde_json::to_value(row(id).posture)
        .expect("json")
        .to_string();
    let granted = serde_json::to_string(&row(id).granted).expect("json");
    let conn = Connection::open(d.join("capmon.db")).expect("sqlite");
    conn.execute(
        "INSERT INTO containers VALUES (?1, '0123456789ab', 'docker', 'web', NULL, NULL, NULL,
            NULL, NULL, 'burstable', ?2, 42, 100, 200, NULL, 1, ?3, ?4, 0)",
        params![id, format!("/docker/{id}"), granted, posture],
    )
    .expect("container");
    conn.execute(
        "INSERT INTO cap_checks VALUES (?1, 'CAP_CHOWN', 'used', 'granted', 'chown_ok',
            'fchownat', 3, 'granted', 'chown', 7, '[\"chown_ok\"]'),
            (?1, 'CAP_SYS_ADMIN', 'probe', 'refused', '', '', 1, 'no-audit', 'sh', 8, '[]')",
        params![id],
    )
    .expect("checks");
    drop(conn);
    let s = Store::open(&d).expect("open");
    let version: i64 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let all = s.load().expect("load");
    assert_eq!(all[0].container, row(id));
    assert_eq!(all[0].checks[0], chown());
    let probe = &all[0].checks[1].0;
    assert_eq!(
        (probe.capability, probe.class),
        (Capability(21), CapClass::Probe)
    );
    assert_eq!(
        (probe.site.as_deref(), probe.syscall.as_deref()),
        (None, None)
    );
}

#[test]
fn a_row_with_a_bad_class_is_an_error_naming_it() {
    let d = dir("badclass");
    let id = "0123456789abcdef0123";
    let (ck, check) = chown();
    Store::open(&d)
        .expect("open")
        .write(&Batch {
            containers: vec![row(id)],
            checks: vec![(id.into(), ck, check)],
            ..Default::default()
        })
        .expect("write");
    let conn = Connection::open(d.join("capmon.db")).expect("sqlite");
    conn.execute("UPDATE cap_checks SET class = 'sometimes'", [])
        .expect("edit");
    drop(conn);
    let err = Store::open(&d)
        .expect("open")
        .load()
        .expect_err("bad class");
    let msg = err.to_string();
    assert!(
        msg.contains("capmon.db")
            && msg.contains("cap_checks.class holds \"sometimes\"")
            && msg.contains("not a class (used, denied, probe, ignored)"),
        "{msg}"
    );
    // Same for the runtime of a container.
    let conn = Connection::open(d.join("capmon.db")).expect("sqlite");
    conn.execute("UPDATE containers SET runtime = 'lxc'", [])
        .expect("edit");
    drop(conn);
    let err = Store::open(&d)
        .expect("open")
        .load()
        .expect_err("bad runtime");
    assert!(
        err.to_string().contains("containers.runtime holds \"lxc\""),
        "{err}"
    );
}

#[test]
fn second_instance_corrupt_and_newer_files_are_refused_untouched() {
    let d = dir("bad");
    let s = Store::open(&d).expect("open");
    let err = Store::open(&d).err().expect("locked");
    assert!(
        err.to_string().contains("in use by another capmon"),
        "{err}"
    );
    drop(s);
    // Not a database: refused, and the file is left as it was.
    let d = dir("corrupt");
    fs::create_dir_all(&d).expect("dir");
    let junk = b"this is not a database, but someone's file\n".repeat(100);
    fs::write(d.join("capmon.db"), &junk).expect("junk");
    let err = Store::open(&d).err().expect("corrupt");
    let msg = err.to_string();
    assert!(
        msg.contains("capmon.db") && msg.contains("not a database"),
        "{msg}"
    );
    assert_eq!(fs::read(d.join("capmon.db")).expect("read"), junk);
    // Locked by another program (a write transaction held open): refused, not waited on
    // forever, and nothing is written.
    let d = dir("locked");
    drop(Store::open(&d).expect("create"));
    let holder = Connection::open(d.join("capmon.db")).expect("sqlite");
    holder
        .execute_batch("PRAGMA journal_mode=DELETE; BEGIN EXCLUSIVE;")
        .expect("lock");
    let t = std::time::Instant::now();
    let err = Store::open(&d).err().expect("locked");
    assert!(
        err.to_string().contains("capmon.db") && err.to_string().contains("locked"),
        "{err}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    drop(holder);
    // Newer schema.
    let d = dir("newer");
    drop(Store::open(&d).expect("create"));
    let conn = Connection::open(d.join("capmon.db")).expect("sqlite");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err = Store::open(&d).err().expect("newer");
    assert!(
        err.to_string().contains("schema version 99, newer"),
        "{err}"
    );
}

/// What a runtime applied reads back, its seccomp profile stored once for two containers.
#[test]
fn applied_specs_round_trip_and_profiles_are_stored_once() {
    use crate::daemon::identity::Learned;
    let d = dir("applied");
    let spec = capmon_core::oci::Applied::parse(
        r#"{"process":{"user":{"uid":1000,"gid":1000},"noNewPrivileges":true,
            "capabilities":{"bounding":["CAP_CHOWN"]}},
          "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}}}"#,
    )
    .expect("spec");
    let learned = Learned::from_spec(&spec, 0);
    let mut a = row("a0123456789");
    let mut b = row("b0123456789");
    for c in [&mut a, &mut b] {
        c.applied = learned.applied.clone();
        c.compose_project = Some("shop".into());
        c.compose_service = Some("web".into());
        c.sandbox = true;
    }
    b.workload_label = Some("storefront".into());
    {
        let mut s = Store::open(&d).expect("open");
        s.write(&Batch {
            containers: vec![a.clone(), b.clone()],
            ..Default::default()
        })
        .expect("write");
        let profiles: i64 = s
            .conn
            .query_row("SELECT count(*) FROM seccomp_profiles", [], |r| r.get(0))
            .expect("count");
        assert_eq!(profiles, 1);
    }
    let all = Store::open(&d).expect("reopen").load().expect("load");
    assert_eq!(all[0].container, a);
    assert_eq!(all[1].container, b);
    let p = all[0]
        .container
        .applied
        .as_ref()
        .and_then(|x| x.seccomp.clone());
    assert_eq!(
        p.map(|p| p.syscalls[0].names.clone()),
        Some(vec!["read".into(), "write".into()])
    );
}
