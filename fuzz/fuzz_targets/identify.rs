//! Fuzzes the cgroup path parser: any bytes (made UTF-8 lossily, as the index does with odd
//! directory names) must give an identity that keeps the path, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let id = capmon_core::attribution::identify(&path);
    assert_eq!(id.path, path);
    if let Some(cid) = &id.container_id {
        assert_eq!(cid.len(), 64);
        assert_eq!(id.short_id.as_deref(), Some(&cid[..12]));
    }
});
