//! The ring buffer's records (first sightings of a capability check or a seccomp denial, a
//! cgroup created or removed, a cgroup's first exec), decoded by their `kind` header into the
//! `#[repr(C)]` types of `monitor-common`; a cgroup's records become a [`Lifecycle`].

use monitor_common::{
    CGROUP_PATH_LEN, CapEvent, CgroupEvent, CgroupGone, DenyEvent, ExecEvent, kind,
};

/// A decoded ring-buffer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// First sighting of a capability check.
    Cap(CapEvent),
    /// First sighting of a seccomp denial.
    Deny(DenyEvent),
    /// A cgroup created or removed (boxed: it carries a path buffer).
    Cgroup(Box<CgroupEvent>),
    /// A cgroup's first exec.
    Exec(ExecEvent),
}

/// A cgroup's life, as the kernel side reported it, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// A cgroup v2 directory was created.
    Created {
        /// Its id.
        cgroup_id: u64,
        /// Its path from the hierarchy's root (`/docker/<id>`); `None` when the kernel side
        /// could not send it whole (then it is found by scanning).
        path: Option<String>,
    },
    /// A cgroup v2 directory was removed.
    Removed {
        /// Its id.
        cgroup_id: u64,
    },
    /// The first program ran in a cgroup, with these credentials.
    FirstExec(ExecEvent),
}

impl Lifecycle {
    /// The lifecycle record of a cgroup event.
    pub fn of_cgroup(e: &CgroupEvent) -> Lifecycle {
        if e.kind == kind::CGROUP_RMDIR {
            return Lifecycle::Removed {
                cgroup_id: e.cgroup_id,
            };
        }
        let len = e
            .path
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(CGROUP_PATH_LEN);
        // A path that filled the buffer may have been cut.
        let whole = len > 0 && len < CGROUP_PATH_LEN - 1;
        Lifecycle::Created {
            cgroup_id: e.cgroup_id,
            path: whole.then(|| String::from_utf8_lossy(&e.path[..len]).into_owned()),
        }
    }

    /// The cgroup it is about.
    pub fn cgroup_id(&self) -> u64 {
        match self {
            Lifecycle::Created { cgroup_id, .. } | Lifecycle::Removed { cgroup_id } => *cgroup_id,
            Lifecycle::FirstExec(e) => e.cgroup_id,
        }
    }
}

/// Errors decoding a ring-buffer record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind requires.
    #[error("record of kind {kind} has {len} bytes, expected {expected}")]
    Short {
        /// Kind read from the header.
        kind: u32,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// Unknown kind.
    #[error("record of unknown kind {0}")]
    UnknownKind(u32),
    /// Not even a header.
    #[error("record of {0} bytes has no header")]
    NoHeader(usize),
}

fn read_pod<T: aya::Pod>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: length checked; `T: aya::Pod` is plain data (a `#[repr(C)]` integer-only type of
    // monitor-common), so any bit pattern is valid; read_unaligned copes with the alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record by its `kind` header.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::NoHeader(bytes.len()))?;
    match u32::from_ne_bytes(header) {
        kind::CAP_CHECK => read_pod(bytes, kind::CAP_CHECK).map(Event::Cap),
        kind::SYSCALL_DENIED => read_pod(bytes, kind::SYSCALL_DENIED).map(Event::Deny),
        kind::CGROUP_MKDIR => {
            read_pod(bytes, kind::CGROUP_MKDIR).map(|e| Event::Cgroup(Box::new(e)))
        }
        kind::CGROUP_RMDIR => read_pod::<CgroupGone>(bytes, kind::CGROUP_RMDIR).map(|g| {
            Event::Cgroup(Box::new(CgroupEvent {
                kind: g.kind,
                pid: g.pid,
                tgid: g.tgid,
                _pad: 0,
                cgroup_id: g.cgroup_id,
                comm: g.comm,
                path: [0; CGROUP_PATH_LEN],
            }))
        }),
        kind::FIRST_EXEC => read_pod(bytes, kind::FIRST_EXEC).map(Event::Exec),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use capmon_core::names::comm_str;
    use monitor_common::{CapKey, DenyKey};

    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_both_kinds() {
        let cap = CapEvent {
            kind: kind::CAP_CHECK,
            pid: 10,
            tgid: 9,
            syscall_nr: 260,
            key: CapKey {
                cgroup_id: 77,
                cap: 0,
                ret: 0,
                stack: 3,
                context: 0,
                outcome: 0,
            },
            comm: *b"chown\0\0\0\0\0\0\0\0\0\0\0",
        };
        assert_eq!(decode(&bytes_of(&cap)), Ok(Event::Cap(cap)));
        assert_eq!(comm_str(&cap.comm), "chown");
        let deny = DenyEvent {
            kind: kind::SYSCALL_DENIED,
            pid: 1,
            tgid: 1,
            _pad: 0,
            key: DenyKey {
                cgroup_id: 5,
                syscall_nr: 268,
                errno: 1,
            },
            comm: [b'x'; 16],
        };
        assert_eq!(decode(&bytes_of(&deny)), Ok(Event::Deny(deny)));
        assert_eq!(comm_str(&deny.comm), "x".repeat(16));
    }

    fn cgroup_event(kind: u32, path: &[u8]) -> CgroupEvent {
        let mut e = CgroupEvent {
            kind,
            pid: 3,
            tgid: 3,
            _pad: 0,
            cgroup_id: 4242,
            comm: *b"runc\0\0\0\0\0\0\0\0\0\0\0\0",
            path: [0; CGROUP_PATH_LEN],
        };
        e.path[..path.len()].copy_from_slice(path);
        e
    }

    #[test]
    fn cgroup_records_become_lifecycle() {
        let mkdir = cgroup_event(kind::CGROUP_MKDIR, b"/docker/abc");
        let Ok(Event::Cgroup(e)) = decode(&bytes_of(&mkdir)) else {
            panic!("not a cgroup event");
        };
        assert_eq!(
            Lifecycle::of_cgroup(&e),
            Lifecycle::Created {
                cgroup_id: 4242,
                path: Some("/docker/abc".into())
            }
        );
        // A removal is the 40-byte head alone.
        let gone = CgroupGone {
            kind: kind::CGROUP_RMDIR,
            pid: 3,
            tgid: 3,
            _pad: 0,
            cgroup_id: 4242,
            comm: *b"runc\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let Ok(Event::Cgroup(e)) = decode(&bytes_of(&gone)) else {
            panic!("not a cgroup event");
        };
        assert_eq!(*e, cgroup_event(kind::CGROUP_RMDIR, b""));
        assert_eq!(
            Lifecycle::of_cgroup(&e),
            Lifecycle::Removed { cgroup_id: 4242 }
        );
        assert!(matches!(
            decode(&bytes_of(&gone)[..39]),
            Err(DecodeError::Short {
                kind: 4,
                len: 39,
                expected: 40
            })
        ));
        // A path that filled the buffer may have been cut: unknown, found by scanning.
        let long = cgroup_event(kind::CGROUP_MKDIR, &[b'a'; CGROUP_PATH_LEN - 1]);
        assert_eq!(
            Lifecycle::of_cgroup(&long),
            Lifecycle::Created {
                cgroup_id: 4242,
                path: None
            }
        );
        assert_eq!(Lifecycle::of_cgroup(&long).cgroup_id(), 4242);
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::NoHeader(2)));
        assert_eq!(
            decode(&[1, 0, 0, 0, 0]),
            Err(DecodeError::Short {
                kind: 1,
                len: 5,
                expected: 64
            })
        );
        assert_eq!(decode(&[9, 0, 0, 0]), Err(DecodeError::UnknownKind(9)));
        assert!(matches!(
            decode(&[3, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Short { kind: 3, .. })
        ));
    }
}
