//! The store's rows: the model's typed values as the text and integers of the tables, and
//! back. Every value read back is checked: one that does not parse is an error naming its
//! table, column and value, never a default.

use capmon_core::{attribution::QosClass, attribution::Runtime, classify::CapClass};

use crate::daemon::container::{
    Capability, Check, CheckKey, CheckResult, Container, DenialCount, DenialKey,
};

/// A value read back that is not what the column holds.
#[derive(Debug)]
pub(super) struct BadValue {
    pub table: &'static str,
    pub column: &'static str,
    /// The value (cut after 100 characters).
    pub value: String,
    /// What it should be.
    pub expected: &'static str,
}

impl BadValue {
    pub fn new(
        table: &'static str,
        column: &'static str,
        value: &str,
        expected: &'static str,
    ) -> Self {
        let mut shown: String = value.chars().take(100).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        BadValue {
            table,
            column,
            value: shown,
            expected,
        }
    }
}

/// `value` of `table.column` parsed by `parse`, or a [`BadValue`].
fn parsed<T>(
    (table, column): (&'static str, &'static str),
    value: &str,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, BadValue> {
    parse(value).ok_or_else(|| BadValue::new(table, column, value, expected))
}

/// `value` of `table.column` as JSON, or a [`BadValue`].
fn json<T: serde::de::DeserializeOwned>(
    at: (&'static str, &'static str),
    value: &str,
    expected: &'static str,
) -> Result<T, BadValue> {
    parsed(at, value, expected, |v| serde_json::from_str(v).ok())
}

/// A row of `containers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ContainerRow {
    pub id: String,
    pub short_id: String,
    pub runtime: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub k8s_container: Option<String>,
    pub pod_uid: Option<String>,
    pub qos: Option<String>,
    pub cgroup_path: String,
    pub cgroup_id: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub exited_at: Option<i64>,
    pub complete: bool,
    /// JSON list of `CAP_*` names.
    pub granted: String,
    /// JSON `posture::Posture`.
    pub posture: Option<String>,
    pub uid: Option<u32>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub sandbox: bool,
    /// JSON `identity::AppliedSpec` (its seccomp profile by digest).
    pub applied: Option<String>,
    pub workload_label: Option<String>,
}

impl ContainerRow {
    /// Columns in the order [`ContainerRow::read`] reads them.
    pub const COLUMNS: &str = "id, short_id, runtime, name, image, namespace, pod, \
        k8s_container, pod_uid, qos, cgroup_path, cgroup_id, first_seen, last_seen, exited_at, \
        complete, granted, posture, uid, compose_project, compose_service, sandbox, applied, \
        workload_label";

    pub fn from_model(c: &Container) -> Self {
        ContainerRow {
            id: c.id.clone(),
            short_id: c.short_id.clone(),
            runtime: c.runtime.as_str().to_owned(),
            name: c.name.clone(),
            image: c.image.clone(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            k8s_container: c.k8s_container.clone(),
            pod_uid: c.pod_uid.clone(),
            qos: c.qos.map(|q| q.as_str().to_owned()),
            cgroup_path: c.cgroup_path.clone(),
            cgroup_id: c.cgroup_id as i64,
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            exited_at: c.exited_at,
            complete: c.complete,
            granted: serde_json::to_string(&c.granted).unwrap_or_else(|_| "[]".into()),
            posture: c
                .posture
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok()),
            uid: c.uid,
            compose_project: c.compose_project.clone(),
            compose_service: c.compose_service.clone(),
            sandbox: c.sandbox,
            workload_label: c.workload_label.clone(),
            applied: c
                .applied
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok()),
        }
    }

    pub fn into_model(self) -> Result<Container, BadValue> {
        const T: &str = "containers";
        let runtime = parsed((T, "runtime"), &self.runtime, "a runtime", Runtime::parse)?;
        let qos = match &self.qos {
            Some(q) => Some(parsed((T, "qos"), q, "a QoS class", QosClass::parse)?),
            None => None,
        };
        let granted = json((T, "granted"), &self.granted, "a JSON list of capabilities")?;
        let posture = match &self.posture {
            Some(p) => Some(json((T, "posture"), p, "a posture in JSON")?),
            None => None,
        };
        let applied = match &self.applied {
            Some(a) => Some(json(
                (T, "applied"),
                a,
                "what the runtime applied, in JSON",
            )?),
            None => None,
        };
        Ok(Container {
            id: self.id,
            short_id: self.short_id,
            runtime,
            name: self.name,
            image: self.image,
            namespace: self.namespace,
            pod: self.pod,
            k8s_container: self.k8s_container,
            pod_uid: self.pod_uid,
            qos,
            cgroup_path: self.cgroup_path,
            cgroup_id: self.cgroup_id as u64,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            exited_at: self.exited_at,
            complete: self.complete,
            granted,
            posture,
            uid: self.uid,
            compose_project: self.compose_project,
            compose_service: self.compose_service,
            sandbox: self.sandbox,
            workload_label: self.workload_label,
            applied,
        })
    }

    pub fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(ContainerRow {
            id: r.get(0)?,
            short_id: r.get(1)?,
            runtime: r.get(2)?,
            name: r.get(3)?,
            image: r.get(4)?,
            namespace: r.get(5)?,
            pod: r.get(6)?,
            k8s_container: r.get(7)?,
            pod_uid: r.get(8)?,
            qos: r.get(9)?,
            cgroup_path: r.get(10)?,
            cgroup_id: r.get(11)?,
            first_seen: r.get(12)?,
            last_seen: r.get(13)?,
            exited_at: r.get(14)?,
            complete: r.get(15)?,
            granted: r.get(16)?,
            posture: r.get(17)?,
            uid: r.get(18)?,
            compose_project: r.get(19)?,
            compose_service: r.get(20)?,
            sandbox: r.get(21)?,
            applied: r.get(22)?,
            workload_label: r.get(23)?,
        })
    }
}

/// A row of `cap_checks` (without its container id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct CheckRow {
    /// `CAP_CHOWN`.
    pub capability: String,
    /// `used`, `denied`, `probe`, `ignored`.
    pub class: String,
    /// `granted` or `refused`.
    pub result: String,
    /// Kernel call site (empty when unknown).
    pub site: String,
    /// Syscall (empty when unknown).
    pub syscall: String,
    pub count: i64,
    pub reason: String,
    pub comm: String,
    pub pid: u32,
    /// JSON list of kernel frames.
    pub stack: String,
}

impl CheckRow {
    /// Columns after `container_id`, in the order [`CheckRow::read`] reads them.
    pub const COLUMNS: &str =
        "capability, class, result, site, syscall, count, reason, comm, pid, stack";

    pub fn from_model(k: &CheckKey, c: &Check) -> Self {
        CheckRow {
            capability: k.capability.name(),
            class: k.class.as_str().to_owned(),
            result: k.result.as_str().to_owned(),
            site: k.site.clone().unwrap_or_default(),
            syscall: k.syscall.clone().unwrap_or_default(),
            count: c.count as i64,
            reason: c.reason.clone(),
            comm: c.comm.clone(),
            pid: c.pid,
            stack: serde_json::to_string(&c.stack).unwrap_or_else(|_| "[]".into()),
        }
    }

    pub fn into_model(self) -> Result<(CheckKey, Check), BadValue> {
        const T: &str = "cap_checks";
        let key = CheckKey {
            capability: parsed(
                (T, "capability"),
                &self.capability,
                "a capability name (CAP_*)",
                Capability::from_name,
            )?,
            class: parsed(
                (T, "class"),
                &self.class,
                "a class (used, denied, probe, ignored)",
                CapClass::parse,
            )?,
            result: parsed(
                (T, "result"),
                &self.result,
                "a result (granted, refused)",
                CheckResult::parse,
            )?,
            site: (!self.site.is_empty()).then_some(self.site),
            syscall: (!self.syscall.is_empty()).then_some(self.syscall),
        };
        let check = Check {
            count: self.count as u64,
            reason: self.reason,
            comm: self.comm,
            pid: self.pid,
            stack: json((T, "stack"), &self.stack, "a JSON list of kernel frames")?,
        };
        Ok((key, check))
    }

    /// Reads the row from its columns, from `at` on.
    pub fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(CheckRow {
            capability: r.get(at)?,
            class: r.get(at + 1)?,
            result: r.get(at + 2)?,
            site: r.get(at + 3)?,
            syscall: r.get(at + 4)?,
            count: r.get(at + 5)?,
            reason: r.get(at + 6)?,
            comm: r.get(at + 7)?,
            pid: r.get(at + 8)?,
            stack: r.get(at + 9)?,
        })
    }
}

/// A row of `denials` (without its container id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct DenialRow {
    pub syscall: String,
    pub number: u32,
    pub errno: String,
    pub count: i64,
    pub comm: String,
}

impl DenialRow {
    /// Columns after `container_id`, in the order [`DenialRow::read`] reads them.
    pub const COLUMNS: &str = "syscall, number, errno, count, comm";

    pub fn from_model(k: &DenialKey, d: &DenialCount) -> Self {
        DenialRow {
            syscall: k.syscall.clone(),
            number: d.number,
            errno: k.errno.clone(),
            count: d.count as i64,
            comm: d.comm.clone(),
        }
    }

    pub fn into_model(self) -> (DenialKey, DenialCount) {
        let key = DenialKey {
            syscall: self.syscall,
            errno: self.errno,
        };
        let count = DenialCount {
            number: self.number,
            count: self.count as u64,
            comm: self.comm,
        };
        (key, count)
    }

    /// Reads the row from its columns, from `at` on.
    pub fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(DenialRow {
            syscall: r.get(at)?,
            number: r.get(at + 1)?,
            errno: r.get(at + 2)?,
            count: r.get(at + 3)?,
            comm: r.get(at + 4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::container::tests::container;

    #[test]
    fn typed_values_become_the_same_text_as_before_and_read_back() {
        let mut c = container("0123456789abcdef", 100);
        c.qos = Some(QosClass::BestEffort);
        c.runtime = Runtime::CriO;
        let row = ContainerRow::from_model(&c);
        assert_eq!(
            (row.runtime.as_str(), row.qos.as_deref()),
            ("cri-o", Some("besteffort"))
        );
        assert_eq!(row.granted, r#"["CAP_CHOWN","CAP_NET_RAW"]"#);
        assert_eq!(row.clone().into_model().expect("read back"), c);
        let key = CheckKey {
            capability: Capability(21),
            class: CapClass::Probe,
            result: CheckResult::Refused,
            site: None,
            syscall: Some("mmap".into()),
        };
        let check = Check {
            count: 4,
            stack: vec!["__mmap_region".into()],
            ..Default::default()
        };
        let row = CheckRow::from_model(&key, &check);
        let text = (
            row.capability.as_str(),
            row.class.as_str(),
            row.result.as_str(),
        );
        assert_eq!(text, ("CAP_SYS_ADMIN", "probe", "refused"));
        assert_eq!(row.site, "", "unknown sites are empty, as before");
        assert_eq!(row.into_model().expect("read back"), (key, check));
    }

    #[test]
    fn bad_values_name_table_column_and_value() {
        let row = CheckRow {
            capability: "CAP_CHOWN".into(),
            class: "sometimes".into(),
            result: "granted".into(),
            stack: "[]".into(),
            ..Default::default()
        };
        let bad = row.clone().into_model().expect_err("bad class");
        assert_eq!(
            (bad.table, bad.column, bad.value.as_str()),
            ("cap_checks", "class", "sometimes")
        );
        let bad = CheckRow {
            capability: "CAP_NOPE".into(),
            ..row.clone()
        }
        .into_model()
        .expect_err("bad capability");
        assert_eq!(bad.column, "capability");
        let bad = CheckRow {
            class: "used".into(),
            result: "maybe".into(),
            ..row.clone()
        };
        assert_eq!(bad.into_model().expect_err("bad result").column, "result");
        let c = ContainerRow::from_model(&container("0123456789abcdef", 100));
        for (bad, column) in [
            (
                ContainerRow {
                    runtime: "lxc".into(),
                    ..c.clone()
                },
                "runtime",
            ),
            (
                ContainerRow {
                    qos: Some("gold".into()),
                    ..c.clone()
                },
                "qos",
            ),
            (
                ContainerRow {
                    granted: "CAP_CHOWN".into(),
                    ..c.clone()
                },
                "granted",
            ),
            (
                ContainerRow {
                    posture: Some("{\"uid\":0}".into()),
                    ..c.clone()
                },
                "posture",
            ),
        ] {
            let err = bad.into_model().expect_err("bad value");
            assert_eq!((err.table, err.column), ("containers", column));
        }
        let long = BadValue::new("t", "c", &"x".repeat(500), "short");
        assert_eq!(long.value.chars().count(), 101);
    }
}
