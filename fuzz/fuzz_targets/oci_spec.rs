//! Fuzzes the reader of an OCI runtime spec (`config.json`): any text gives what the runtime
//! applied or an error, never a panic; Kubernetes names are only reported with a pod or a
//! namespace, and an applied seccomp profile is one that validates.
#![no_main]

use capmon_core::oci::Applied;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(applied) = Applied::parse(text) {
        if let Some(k) = &applied.kubernetes {
            assert!(k.pod.is_some() || k.namespace.is_some(), "{k:?}");
        }
        if let Some(p) = &applied.seccomp {
            assert!(p.validate().is_ok(), "{p:?}");
        }
    }
});
