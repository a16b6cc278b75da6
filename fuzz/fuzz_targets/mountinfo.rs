//! Fuzzes the cgroup2 mount finder over `/proc/self/mountinfo` text: no panic, and a mount
//! point is only ever found on a `cgroup2` line.
#![no_main]

use capmon_core::mountinfo::parse_cgroup2_mount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Some(mount) = parse_cgroup2_mount(&text) else {
        return;
    };
    assert!(
        text.contains(" - ") && text.contains("cgroup2"),
        "{mount:?} from {text:?}"
    );
    // Without octal escapes the mount point is a field of the text as it stands.
    if !text.contains('\\') {
        let shown = mount.to_string_lossy();
        assert!(text.contains(&*shown), "{shown:?} not in {text:?}");
    }
});
