//! Reading a whole hash map in a few syscalls: `BPF_MAP_LOOKUP_BATCH` (Linux 5.6), which aya
//! does not offer. Iterating key by key costs two syscalls per entry (next key, lookup); with
//! 1,000 containers the capability-check map holds about 16,000 keys, read every poll, and
//! that iteration was a fifth of the daemon's CPU. A batch returns up to [`CHUNK`] entries per
//! call. Where the kernel has no batch operations, callers iterate as before.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::MapData;

/// Entries asked for per call (a hash bucket never holds anywhere near as many, which the
/// kernel requires: it returns whole buckets).
const CHUNK: usize = 1024;

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `map`: its keys, and `values_per_key` values for each (the
/// number of possible CPUs for a per-CPU map whose value is a multiple of 8 bytes, else 1), in
/// the same order. `None` when this kernel has no batch lookup for the map (the caller
/// iterates instead).
pub fn lookup_all<K: aya::Pod, V: aya::Pod>(
    map: &MapData,
    values_per_key: usize,
) -> io::Result<Option<(Vec<K>, Vec<V>)>> {
    // SAFETY: `aya::Pod` types are plain data for which any bit pattern, zero included, is a
    // value.
    let zero_key: K = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let zero_value: V = unsafe { std::mem::zeroed() };
    let mut keys = vec![zero_key; CHUNK];
    let mut values = vec![zero_value; CHUNK * values_per_key];
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    // The kernel's position between calls (a bucket index for hash maps).
    let (mut token, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const token as u64 },
            out_batch: &raw mut next as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd,
            ..Default::default()
        };
        // SAFETY: the attribute points at buffers of `CHUNK` keys and `CHUNK *
        // values_per_key` values of the map's sizes (the callers' types match the map's
        // definition), and at two u64 batch positions (the kernel uses 4 bytes of each);
        // all outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let n = (attr.count as usize).min(CHUNK);
        all_keys.extend_from_slice(&keys[..n]);
        all_values.extend_from_slice(&values[..n * values_per_key]);
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // The end of the map.
                Some(libc::ENOENT) => Ok(Some((all_keys, all_values))),
                // No batch operations here (before 5.6: an unknown command; ENOTSUPP is 524).
                Some(libc::EINVAL | libc::EOPNOTSUPP | 524) if first => Ok(None),
                _ => Err(e),
            };
        }
        token = next;
        first = false;
    }
}

/// The number of possible CPUs: the values a per-CPU map holds per key.
pub fn possible_cpus() -> io::Result<usize> {
    aya::util::nr_cpus().map_err(|(_, e)| e)
}
