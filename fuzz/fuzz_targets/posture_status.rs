//! Fuzzes the `/proc/<pid>/status` reader: any text (and LSM label) gives a posture or an
//! error, never a panic, and the posture's findings agree with its fields.
#![no_main]

use capmon_core::posture::{Check, SeccompMode, from_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A first line `label=...` is the LSM label.
    let text = String::from_utf8_lossy(data);
    let (label, status) = match text.split_once('\n') {
        Some((label, rest)) if label.starts_with("label=") => (Some(&label[6..]), rest),
        _ => (None, &*text),
    };
    let host_bounding = 0x0000_01ff_feff_ffff;
    let Ok(p) = from_status(42, status, label, host_bounding) else {
        return;
    };
    assert_eq!(p.pid, 42);
    let has = |check| p.findings.iter().filter(|f| f.check == check).count();
    for f in &p.findings {
        assert_eq!(has(f.check), 1, "{:?} twice: {:?}", f.check, p.findings);
    }
    assert_eq!(
        has(Check::SeccompDisabled) == 1,
        p.seccomp == SeccompMode::Disabled
    );
    assert_eq!(has(Check::NoNewPrivilegesOff) == 1, !p.no_new_privs);
    assert_eq!(has(Check::RunsAsRoot) == 1, p.uid == 0);
    for cap in p.effective.iter().chain(&p.permitted).chain(&p.bounding) {
        assert!(!cap.is_empty());
    }
});
