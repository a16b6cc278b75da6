//! The daemon's store: SQLite in WAL mode under the state directory, written in one transaction
//! per batch interval, versioned with migrations (`PRAGMA user_version`). A `kill -9` loses
//! at most the changes of the last batch interval; a restart loads everything before it. The
//! model's values become text only here ([`rows`]); what is read back is checked.

mod rows;
#[cfg(test)]
mod tests;

use nix::fcntl::{Flock, FlockArg};
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rusqlite::{Connection, OpenFlags, Transaction, params};

use self::rows::{BadValue, CheckRow, ContainerRow, DenialRow};
use capmon_core::seccomp::Profile;

use super::{
    container::{Batch, Stored},
    identity,
};

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
    /// A value read back is not what its column holds.
    #[error(
        "database {path}: {table}.{column} holds {value:?}, which is not {expected} (the file \
         was left as it is)"
    )]
    BadValue {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value (cut after 100 characters).
        value: String,
        /// What it should be.
        expected: &'static str,
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
    // 2: names learned before a container runs (compose, a pod's sandbox) and what its
    // runtime applied, with each distinct seccomp profile kept once.
    "ALTER TABLE containers ADD COLUMN compose_project TEXT;
    ALTER TABLE containers ADD COLUMN compose_service TEXT;
    ALTER TABLE containers ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN applied TEXT;
    CREATE TABLE seccomp_profiles (
        digest TEXT PRIMARY KEY,
        profile TEXT NOT NULL
    );",
    // 3: the workload a label or annotation names (the other rules use the names above).
    "ALTER TABLE containers ADD COLUMN workload_label TEXT;",
];

/// The schema version this capmon writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Flock<fs::File>,
}

/// Takes the state directory's lock (held while the file is open).
fn lock_state_dir(state_dir: &Path) -> Result<Flock<fs::File>, StoreError> {
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
    Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|_| StoreError::InUse {
        path: state_dir.to_owned(),
        lock: lock_path,
    })
}

impl Store {
    /// Opens (creating when absent) `state_dir/capmon.db`, takes the state directory's lock,
    /// and migrates the schema. Never rewrites a file it cannot read as a capmon database.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let lock = lock_state_dir(state_dir)?;
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

    fn bad(&self, b: BadValue) -> StoreError {
        StoreError::BadValue {
            path: self.path.clone(),
            table: b.table,
            column: b.column,
            value: b.value,
            expected: b.expected,
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
        write_containers(&tx, batch).map_err(sql)?;
        write_checks(&tx, batch).map_err(sql)?;
        write_syscalls_and_denials(&tx, batch).map_err(sql)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM containers WHERE id = ?1")
            .map_err(sql)?;
        for id in &batch.deletes {
            delete.execute(params![id]).map_err(sql)?;
        }
        drop(delete);
        tx.commit().map_err(sql)
    }

    /// Everything stored; a value that does not read back is an error naming it.
    pub fn load(&self) -> Result<Vec<Stored>, StoreError> {
        let mut out = self.load_containers()?;
        let index: HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, s)| (s.container.id.clone(), i))
            .collect();
        let query = format!(
            "SELECT container_id, {} FROM cap_checks ORDER BY container_id, capability, class",
            CheckRow::COLUMNS
        );
        for (i, check) in self.children(&query, &index, |r| {
            let row = CheckRow::read(r, 1).map_err(|e| self.sql(e))?;
            row.into_model().map_err(|b| self.bad(b))
        })? {
            out[i].checks.push(check);
        }
        let query = "SELECT container_id, name, runtime FROM syscalls ORDER BY container_id, name";
        for (i, (name, runtime)) in self.children(query, &index, |r| {
            let name: String = r.get(1).map_err(|e| self.sql(e))?;
            let runtime: bool = r.get(2).map_err(|e| self.sql(e))?;
            Ok((name, runtime))
        })? {
            match runtime {
                true => out[i].runtime_syscalls.push(name),
                false => out[i].syscalls.push(name),
            }
        }
        let query = format!(
            "SELECT container_id, {} FROM denials ORDER BY container_id, syscall, errno",
            DenialRow::COLUMNS
        );
        for (i, denial) in self.children(&query, &index, |r| {
            let row = DenialRow::read(r, 1).map_err(|e| self.sql(e))?;
            Ok(row.into_model())
        })? {
            out[i].denials.push(denial);
        }
        Ok(out)
    }

    fn load_containers(&self) -> Result<Vec<Stored>, StoreError> {
        let query = format!(
            "SELECT {} FROM containers ORDER BY first_seen, id",
            ContainerRow::COLUMNS
        );
        let mut q = self.conn.prepare(&query).map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], ContainerRow::read)
            .map_err(|e| self.sql(e))?;
        let profiles = self.load_profiles()?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.sql(e))?;
            let mut container = row.into_model().map_err(|b| self.bad(b))?;
            if let Some(a) = &mut container.applied {
                a.seccomp = a
                    .seccomp_digest
                    .as_ref()
                    .and_then(|d| profiles.get(d))
                    .cloned();
            }
            out.push(Stored {
                container,
                checks: Vec::new(),
                syscalls: Vec::new(),
                runtime_syscalls: Vec::new(),
                denials: Vec::new(),
            });
        }
        Ok(out)
    }

    /// The seccomp profiles runtimes applied, by digest.
    fn load_profiles(&self) -> Result<HashMap<String, Arc<Profile>>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT digest, profile FROM seccomp_profiles")
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (digest, text) = row.map_err(|e| self.sql(e))?;
            let profile = Profile::parse(&text).map_err(|_| {
                self.bad(BadValue::new(
                    "seccomp_profiles",
                    "profile",
                    &text,
                    "a seccomp profile in JSON",
                ))
            })?;
            out.insert(digest.clone(), identity::intern(&digest, profile));
        }
        Ok(out)
    }

    /// The rows of a child table (keyed by container id, its first column), decoded, with the
    /// index in `index` of their container. Rows of an unknown container are still decoded
    /// (their errors reported), then dropped.
    fn children<T>(
        &self,
        query: &str,
        index: &HashMap<String, usize>,
        decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<(usize, T)>, StoreError> {
        let sql = |e| self.sql(e);
        let mut q = self.conn.prepare(query).map_err(sql)?;
        let mut rows = q.query([]).map_err(sql)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sql)? {
            let id: String = r.get(0).map_err(sql)?;
            let value = decode(r)?;
            if let Some(&i) = index.get(&id) {
                out.push((i, value));
            }
        }
        Ok(out)
    }
}

fn write_containers(tx: &Transaction<'_>, batch: &Batch) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO containers (id, short_id, runtime, name, image, namespace, pod,
            k8s_container, pod_uid, qos, cgroup_path, cgroup_id, first_seen,
            last_seen, exited_at, complete, granted, posture, uid, compose_project,
            compose_service, sandbox, applied, workload_label)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
            ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)
         ON CONFLICT(id) DO UPDATE SET short_id = ?2, runtime = ?3, name = ?4,
            image = ?5, namespace = ?6, pod = ?7, k8s_container = ?8,
            pod_uid = ?9, qos = ?10, cgroup_path = ?11, cgroup_id = ?12,
            first_seen = ?13, last_seen = ?14, exited_at = ?15, complete = ?16,
            granted = ?17, posture = ?18, uid = ?19, compose_project = ?20,
            compose_service = ?21, sandbox = ?22, applied = ?23, workload_label = ?24",
    )?;
    let mut profile = tx.prepare_cached(
        "INSERT OR IGNORE INTO seccomp_profiles (digest, profile) VALUES (?1, ?2)",
    )?;
    for c in &batch.containers {
        let r = ContainerRow::from_model(c);
        insert.execute(params![
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
            r.cgroup_id,
            r.first_seen,
            r.last_seen,
            r.exited_at,
            r.complete,
            r.granted,
            r.posture,
            r.uid,
            r.compose_project,
            r.compose_service,
            r.sandbox,
            r.applied,
            r.workload_label,
        ])?;
        if let Some(a) = &c.applied
            && let (Some(digest), Some(p)) = (&a.seccomp_digest, &a.seccomp)
        {
            profile.execute(params![
                digest,
                serde_json::to_string(&**p).unwrap_or_default()
            ])?;
        }
    }
    let mut touch = tx.prepare_cached("UPDATE containers SET last_seen = ?2 WHERE id = ?1")?;
    for (id, last_seen) in &batch.touches {
        touch.execute(params![id, last_seen])?;
    }
    Ok(())
}

fn write_checks(tx: &Transaction<'_>, batch: &Batch) -> rusqlite::Result<()> {
    // Most batches only move counts: update first, insert (with the evidence) when the row is
    // new.
    let mut update = tx.prepare_cached(
        "UPDATE cap_checks SET count = ?7, reason = ?8 WHERE container_id = ?1 AND
            capability = ?2 AND class = ?3 AND result = ?4 AND site = ?5 AND syscall = ?6",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO cap_checks (container_id, capability, class, result, site,
            syscall, count, reason, comm, pid, stack)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT DO UPDATE SET count = ?7, reason = ?8",
    )?;
    for (id, key, check) in &batch.checks {
        let r = CheckRow::from_model(key, check);
        let updated = update.execute(params![
            id,
            r.capability,
            r.class,
            r.result,
            r.site,
            r.syscall,
            r.count,
            r.reason,
        ])?;
        if updated > 0 {
            continue;
        }
        insert.execute(params![
            id,
            r.capability,
            r.class,
            r.result,
            r.site,
            r.syscall,
            r.count,
            r.reason,
            r.comm,
            r.pid,
            r.stack,
        ])?;
    }
    Ok(())
}

fn write_syscalls_and_denials(tx: &Transaction<'_>, batch: &Batch) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO syscalls (container_id, name, runtime) VALUES (?1, ?2, ?3)",
    )?;
    for (id, name, runtime) in &batch.syscalls {
        insert.execute(params![id, name, runtime])?;
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO denials (container_id, syscall, number, errno, count, comm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO UPDATE SET count = ?5",
    )?;
    for (id, key, denial) in &batch.denials {
        let r = DenialRow::from_model(key, denial);
        upsert.execute(params![id, r.syscall, r.number, r.errno, r.count, r.comm])?;
    }
    Ok(())
}
