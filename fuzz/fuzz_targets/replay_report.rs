//! Fuzzes `capmon replay`'s reading of a `report.json`: any text gives a history or an error,
//! never a panic; the syscall names it yields are sorted and unique, and replaying them
//! against Docker's default profile accounts for every one (allowed, denied, or depending on
//! arguments).
#![no_main]

use capmon_core::{
    names::Arch,
    replay::{History, canonical_caps, replay},
    seccomp::{KernelVersion, Profile},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(history) = History::parse(text) else {
        return;
    };
    let caps = canonical_caps(&history.granted).unwrap_or_default();
    let docker = Profile::docker_default();
    for arch in Arch::ALL {
        let Ok(names) = history.syscall_names(arch) else {
            continue;
        };
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        let r = replay(
            "docker-default",
            &docker,
            caps.clone(),
            arch,
            KernelVersion(6, 1),
            &names,
        );
        let accounted =
            r.replay.allowed + r.replay.would_deny.len() + r.replay.depends_on_arguments.len();
        assert_eq!(accounted, names.len(), "{:?}", r.replay);
    }
});
