//! Fuzzes the Docker seccomp profile reader: any text must parse or fail without panicking;
//! a profile that parses must write out as JSON that reads back as the same profile (nothing
//! lost, `extra` fields included), and validating and resolving it must not panic.
#![no_main]

use capmon_core::{
    names::Arch,
    seccomp::{KernelVersion, Profile, Target},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = Profile::from_json(text) else {
        return;
    };
    let json = profile.to_json_pretty();
    let again = Profile::from_json(&json)
        .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{json}"));
    assert_eq!(again, profile, "round trip changed the profile:\n{json}");
    if profile.validate().is_ok() {
        for arch in Arch::ALL {
            let target = Target {
                arch,
                caps: ["CAP_SYS_ADMIN".to_owned()].into(),
                kernel: KernelVersion(6, 1),
            };
            let resolved = profile.resolve(&target);
            assert!(
                resolved
                    .syscalls
                    .iter()
                    .all(|r| r.includes.is_none() && r.excludes.is_none())
            );
            let _ = profile.verdict(&target, "read");
        }
    }
});
