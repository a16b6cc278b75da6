//! Fuzzes the reader of a Prometheus `/api/v1/query` answer (`capmon fleet`): any text gives
//! samples or an error, never a panic; samples only come from a JSON answer whose status is
//! `success` and whose result is a vector, one per series, with the series' string labels.
//! The samples, as each of the four answers `capmon fleet` merges, give workloads whose
//! coverage never counts more nodes than the workload ran on, and whose report and SPO
//! rendering do not panic.
#![no_main]

use capmon_core::{
    fleet::{merge, parse_vector},
    recommend::Format,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(samples) = parse_vector(text) else {
        return;
    };
    let v: Value = serde_json::from_str(text).expect("an answer that parsed is JSON");
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    assert_eq!(samples.len(), result.len());
    for (s, r) in samples.iter().zip(result) {
        for (k, l) in &s.labels {
            assert_eq!(r["metric"][k].as_str(), Some(l.as_str()), "{s:?}");
        }
        if !s.value.is_nan() {
            assert!(r["value"][1].is_string(), "{s:?}");
        }
    }
    let merged = merge(&samples, &samples, &samples, &samples);
    for (name, w) in &merged {
        assert_eq!(name, &w.name);
        assert!(!w.name.is_empty());
        for c in w.syscall_coverage().iter().chain(&w.capability_coverage()) {
            assert!(c.nodes >= 1 && c.nodes <= c.of_nodes, "{c:?}");
            assert_eq!(c.of_nodes, w.nodes.len());
        }
        for node in w.incomplete.keys() {
            assert!(!node.is_empty());
        }
        let report = w.report();
        // No profile while a node has containers capmon did not see start.
        if !w.incomplete.is_empty() {
            assert!(report.seccomp_profile.is_none(), "{w:?}");
        }
        let used: Vec<String> = w
            .capability_coverage()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(report.capabilities.used, used);
        let _ = w.render("web", Format::Spo);
    }
});
