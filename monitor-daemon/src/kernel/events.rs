//! The ring buffer's records (first sightings of a capability check or a seccomp denial),
//! decoded by their `kind` header into the `#[repr(C)]` types of `monitor-common`.

use monitor_common::{CapEvent, DenyEvent, kind};

/// A decoded ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// First sighting of a capability check.
    Cap(CapEvent),
    /// First sighting of a seccomp denial.
    Deny(DenyEvent),
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
    }
}
