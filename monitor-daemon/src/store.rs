//! The daemon's store: SQLite in WAL mode under the state directory, written in one transaction
//! per batch interval, versioned with migrations (`PRAGMA user_version`). A `kill -9` loses
//! at most the changes of the last batch interval; a restart loads everything before it.

use std::{
    fs,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};

/// Errors of the store; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory cannot be created or used.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another capmon holds the state directory.
    #[error(
        "state directory {path} is in use by another capmon (lock file {lock}); stop it or use \
         another --state-dir"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer capmon.
    #[error(
        "database {path} has schema version {found}, newer than this capmon's {known}: upgrade \
         capmon (the file was left as it is)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

/// Schema migrations, in order: version n is reached by running `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: containers, capability checks with evidence, syscalls, seccomp denials.
    "CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        short_id TEXT NOT NULL,
        runtime TEXT NOT NULL,
        name TEXT,
        image TEXT,
        namespace TEXT,
        pod TEXT,
        k8s_container TEXT,
        pod_uid TEXT,
        qos TEXT,
        cgroup_path TEXT NOT NULL,
        cgroup_id INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        exited_at INTEGER,
        complete INTEGER NOT NULL,
        granted TEXT NOT NULL,
        posture TEXT,
        uid INTEGER
    );
    CREATE TABLE cap_checks (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        capability TEXT NOT NULL,
        class TEXT NOT NULL,
        result TEXT NOT NULL,
        site TEXT NOT NULL,
        syscall TEXT NOT NULL,
        count INTEGER NOT NULL,
        reason TEXT NOT NULL,
        comm TEXT NOT NULL,
        pid INTEGER NOT NULL,
        stack TEXT NOT NULL,
        PRIMARY KEY (container_id, capability, class, result, site, syscall)
    );
    CREATE TABLE syscalls (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        runtime INTEGER NOT NULL,
        PRIMARY KEY (container_id, name, runtime)
    );
    CREATE TABLE denials (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        syscall TEXT NOT NULL,
        number INTEGER NOT NULL,
        errno TEXT NOT NULL,
        count INTEGER NOT NULL,
        comm TEXT NOT NULL,
        PRIMARY KEY (container_id, syscall, errno)
    );",
];

/// The schema version this capmon writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One container's identity and state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRow {
    /// Full container id.
    pub id: String,
    /// 12-character id.
    pub short_id: String,
    /// Runtime (`docker`, `containerd`, ...).
    pub runtime: String,
    /// Name, when an API told it.
    pub name: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod.
    pub pod: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
    /// Kubernetes pod UID.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class.
    pub qos: Option<String>,
    /// cgroup path.
    pub cgroup_path: String,
    /// cgroup id (inode number).
    pub cgroup_id: u64,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last activity (Unix seconds).
    pub last_seen: i64,
    /// When it exited (Unix seconds).
    pub exited_at: Option<i64>,
    /// Whether capmon saw it start (its syscall history is complete).
    pub complete: bool,
    /// Capabilities granted (bounding set of its process).
    pub granted: Vec<String>,
    /// Posture as JSON (`posture::Posture`).
    pub posture: Option<serde_json::Value>,
    /// Effective uid of its process.
    pub uid: Option<u32>,
}

/// One capability check site of a container, with evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
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
    /// Checks counted.
    pub count: u64,
    /// Why it has its class.
    pub reason: String,
    /// First process.
    pub comm: String,
    /// First thread id.
    pub pid: u32,
    /// Kernel frames.
    pub stack: Vec<String>,
}

/// One kind of seccomp denial of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialRow {
    /// Syscall name.
    pub syscall: String,
    /// Syscall number.
    pub number: u32,
    /// `EPERM`.
    pub errno: String,
    /// Denials counted.
    pub count: u64,
    /// First process.
    pub comm: String,
}

/// A container as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Identity and state.
    pub row: ContainerRow,
    /// Check sites.
    pub checks: Vec<CheckRow>,
    /// Syscalls of the workload.
    pub syscalls: Vec<String>,
    /// Syscalls of the runtime under the filter.
    pub runtime_syscalls: Vec<String>,
    /// Denials.
    pub denials: Vec<DenialRow>,
}

/// Changes to write in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Containers to insert or update.
    pub containers: Vec<ContainerRow>,
    /// Containers whose `last_seen` moved: (id, last_seen).
    pub touches: Vec<(String, i64)>,
    /// Check sites to insert or update, by container id.
    pub checks: Vec<(String, CheckRow)>,
    /// Syscalls to insert: (container id, name, runtime's).
    pub syscalls: Vec<(String, String, bool)>,
    /// Denials to insert or update.
    pub denials: Vec<(String, DenialRow)>,
    /// Containers to delete (pruned after retention).
    pub deletes: Vec<String>,
}

impl Batch {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.touches.is_empty()
            && self.checks.is_empty()
            && self.syscalls.is_empty()
            && self.denials.is_empty()
            && self.deletes.is_empty()
    }
}

/// The open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: fs::File,
}

impl Store {
    /// Opens (creating when absent) `state_dir/capmon.db`, takes the state directory's lock,
    /// and migrates the schema. Never rewrites a file it cannot read as a capmon database.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::Dir {
            path: state_dir.to_owned(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(dir_err)?;
        let lock_path = state_dir.join("capmon.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(dir_err)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::InUse {
                path: state_dir.to_owned(),
                lock: lock_path,
            });
        }
        let path = state_dir.join("capmon.db");
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(sql)?;
        // The first read fails on a file that is not a database, before anything is written.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        let mut store = Store {
            conn,
            path,
            _lock: lock,
        };
        store.migrate(version)?;
        Ok(store)
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        for (i, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let to = i as i64 + 1;
            let tx = self.conn.transaction().map_err(sql)?;
            tx.execute_batch(step).map_err(sql)?;
            tx.pragma_update(None, "user_version", to).map_err(sql)?;
            tx.commit().map_err(sql)?;
            tracing::info!(path = %path.display(), version = to, "store schema migrated");
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a batch in one transaction.
    pub fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut c = tx
                .prepare_cached(
                    "INSERT INTO containers (id, short_id, runtime, name, image, namespace, pod,
                        k8s_container, pod_uid, qos, cgroup_path, cgroup_id, first_seen,
                        last_seen, exited_at, complete, granted, posture, uid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                        ?16, ?17, ?18, ?19)
                     ON CONFLICT(id) DO UPDATE SET short_id = ?2, runtime = ?3, name = ?4,
                        image = ?5, namespace = ?6, pod = ?7, k8s_container = ?8,
                        pod_uid = ?9, qos = ?10, cgroup_path = ?11, cgroup_id = ?12,
                        first_seen = ?13, last_seen = ?14, exited_at = ?15, complete = ?16,
                        granted = ?17, posture = ?18, uid = ?19",
                )
                .map_err(sql)?;
            for r in &batch.containers {
                c.execute(params![
                    r.id,
                    r.short_id,
                    r.runtime,
                    r.name,
                    r.image,
                    r.namespace,
                    r.pod,
                    r.k8s_container,
                    r.pod_uid,
                    r.qos,
                    r.cgroup_path,
                    r.cgroup_id as i64,
                    r.first_seen,
                    r.last_seen,
                    r.exited_at,
                    r.complete,
                    serde_json::to_string(&r.granted).unwrap_or_default(),
                    r.posture.as_ref().map(|p| p.to_string()),
                    r.uid,
                ])
                .map_err(sql)?;
            }
            let mut t = tx
                .prepare_cached("UPDATE containers SET last_seen = ?2 WHERE id = ?1")
                .map_err(sql)?;
            for (id, last_seen) in &batch.touches {
                t.execute(params![id, last_seen]).map_err(sql)?;
            }
            // Most batches only move counts: update first, insert (with the evidence) when
            // the row is new.
            let mut u = tx
                .prepare_cached(
                    "UPDATE cap_checks SET count = ?7, reason = ?8 WHERE container_id = ?1 AND
                        capability = ?2 AND class = ?3 AND result = ?4 AND site = ?5 AND
                        syscall = ?6",
                )
                .map_err(sql)?;
            let mut c = tx
                .prepare_cached(
                    "INSERT INTO cap_checks (container_id, capability, class, result, site,
                        syscall, count, reason, comm, pid, stack)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT DO UPDATE SET count = ?7, reason = ?8",
                )
                .map_err(sql)?;
            for (id, r) in &batch.checks {
                let updated = u
                    .execute(params![
                        id,
                        r.capability,
                        r.class,
                        r.result,
                        r.site,
                        r.syscall,
                        r.count as i64,
                        r.reason,
                    ])
                    .map_err(sql)?;
                if updated > 0 {
                    continue;
                }
                c.execute(params![
                    id,
                    r.capability,
                    r.class,
                    r.result,
                    r.site,
                    r.syscall,
                    r.count as i64,
                    r.reason,
                    r.comm,
                    r.pid,
                    serde_json::to_string(&r.stack).unwrap_or_default(),
                ])
                .map_err(sql)?;
            }
            let mut c = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO syscalls (container_id, name, runtime) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for (id, name, runtime) in &batch.syscalls {
                c.execute(params![id, name, runtime]).map_err(sql)?;
            }
            let mut c = tx
                .prepare_cached(
                    "INSERT INTO denials (container_id, syscall, number, errno, count, comm)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO UPDATE SET count = ?5",
                )
                .map_err(sql)?;
            for (id, r) in &batch.denials {
                c.execute(params![
                    id,
                    r.syscall,
                    r.number,
                    r.errno,
                    r.count as i64,
                    r.comm
                ])
                .map_err(sql)?;
            }
            let mut c = tx
                .prepare_cached("DELETE FROM containers WHERE id = ?1")
                .map_err(sql)?;
            for id in &batch.deletes {
                c.execute(params![id]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Everything stored.
    pub fn load(&self) -> Result<Vec<Stored>, StoreError> {
        let sql = |e| self.sql(e);
        let mut out: Vec<Stored> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut q = self
            .conn
            .prepare(
                "SELECT id, short_id, runtime, name, image, namespace, pod, k8s_container,
                    pod_uid, qos, cgroup_path, cgroup_id, first_seen, last_seen, exited_at,
                    complete, granted, posture, uid FROM containers ORDER BY first_seen, id",
            )
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| {
                let granted: String = r.get(16)?;
                let posture: Option<String> = r.get(17)?;
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
                    cgroup_id: r.get::<_, i64>(11)? as u64,
                    first_seen: r.get(12)?,
                    last_seen: r.get(13)?,
                    exited_at: r.get(14)?,
                    complete: r.get(15)?,
                    granted: serde_json::from_str(&granted).unwrap_or_default(),
                    posture: posture.and_then(|p| serde_json::from_str(&p).ok()),
                    uid: r.get(18)?,
                })
            })
            .map_err(sql)?;
        for row in rows {
            let row = row.map_err(sql)?;
            index.insert(row.id.clone(), out.len());
            out.push(Stored {
                row,
                ..Default::default()
            });
        }
        // Each child table: rows keyed by container id (first column), added to that
        // container (rows of an unknown container are still decoded, into a scratch value).
        let mut children =
            |query: &str,
             put: &mut dyn FnMut(&mut Stored, &rusqlite::Row<'_>) -> rusqlite::Result<()>|
             -> Result<(), StoreError> {
                let mut q = self.conn.prepare(query).map_err(sql)?;
                let mut rows = q.query([]).map_err(sql)?;
                let mut scratch = Stored::default();
                while let Some(r) = rows.next().map_err(sql)? {
                    let id: String = r.get(0).map_err(sql)?;
                    let target = match index.get(&id) {
                        Some(&i) => &mut out[i],
                        None => &mut scratch,
                    };
                    put(target, r).map_err(sql)?;
                }
                Ok(())
            };
        children(
            "SELECT container_id, capability, class, result, site, syscall, count, reason,
                comm, pid, stack FROM cap_checks ORDER BY container_id, capability, class",
            &mut |c, r| {
                let stack: String = r.get(10)?;
                c.checks.push(CheckRow {
                    capability: r.get(1)?,
                    class: r.get(2)?,
                    result: r.get(3)?,
                    site: r.get(4)?,
                    syscall: r.get(5)?,
                    count: r.get::<_, i64>(6)? as u64,
                    reason: r.get(7)?,
                    comm: r.get(8)?,
                    pid: r.get(9)?,
                    stack: serde_json::from_str(&stack).unwrap_or_default(),
                });
                Ok(())
            },
        )?;
        children(
            "SELECT container_id, name, runtime FROM syscalls ORDER BY container_id, name",
            &mut |c, r| {
                let name: String = r.get(1)?;
                if r.get::<_, bool>(2)? {
                    c.runtime_syscalls.push(name);
                } else {
                    c.syscalls.push(name);
                }
                Ok(())
            },
        )?;
        children(
            "SELECT container_id, syscall, number, errno, count, comm FROM denials
             ORDER BY container_id, syscall, errno",
            &mut |c, r| {
                c.denials.push(DenialRow {
                    syscall: r.get(1)?,
                    number: r.get(2)?,
                    errno: r.get(3)?,
                    count: r.get::<_, i64>(4)? as u64,
                    comm: r.get(5)?,
                });
                Ok(())
            },
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("capmon-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn row(id: &str) -> ContainerRow {
        ContainerRow {
            id: id.into(),
            short_id: id[..12].into(),
            runtime: "docker".into(),
            name: Some("web".into()),
            cgroup_path: format!("/docker/{id}"),
            cgroup_id: 42,
            first_seen: 100,
            last_seen: 200,
            complete: true,
            granted: vec!["CAP_CHOWN".into()],
            posture: Some(serde_json::json!({"uid": 0})),
            uid: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_update_delete_and_reopen() {
        let d = dir("rt");
        let id = "0123456789abcdef0123";
        {
            let mut s = Store::open(&d).expect("open");
            let check = CheckRow {
                capability: "CAP_CHOWN".into(),
                class: "used".into(),
                result: "granted".into(),
                site: "chown_ok".into(),
                syscall: "fchownat".into(),
                count: 3,
                reason: "granted".into(),
                comm: "chown".into(),
                pid: 7,
                stack: vec!["chown_ok".into()],
            };
            let denial = DenialRow {
                syscall: "fchmodat".into(),
                number: 268,
                errno: "EPERM".into(),
                count: 1,
                comm: "chmod".into(),
            };
            s.write(&Batch {
                containers: vec![row(id)],
                checks: vec![(id.into(), check.clone())],
                syscalls: vec![
                    (id.into(), "read".into(), false),
                    (id.into(), "capset".into(), true),
                ],
                denials: vec![(id.into(), denial.clone())],
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
                checks: vec![(id.into(), CheckRow { count: 5, ..check })],
                denials: vec![(id.into(), DenialRow { count: 2, ..denial })],
                ..Default::default()
            })
            .expect("update");
        }
        let s = Store::open(&d).expect("reopen");
        let all = s.load().expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].row,
            ContainerRow {
                last_seen: 250,
                ..row(id)
            }
        );
        assert_eq!(all[0].checks[0].count, 5);
        assert_eq!(all[0].denials[0].count, 2);
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
}
