//! A Docker seccomp profile written back by capmon reads back as the same profile, numbers
//! in the fields it does not model included (serde_json's `float_roundtrip`, set in the
//! workspace's Cargo.toml).

use capmon_core::seccomp::Profile;

#[test]
fn a_large_number_in_an_unknown_field_survives_the_round_trip() {
    // Found by fuzz/fuzz_targets/seccomp_profile.rs: an integer beyond u64 is kept as the
    // f64 4.0555555555555556e80, written as `4.0555555555555556e+80`, and read back one ULP
    // off (4.055555555555555e80) without float_roundtrip.
    let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [],
        "comment": {"value": 405555555555555555555555555555555555555555555555555555555555555555555555555555555,
                    "small": 0.1, "third": 0.30000000000000004, "tiny": 5e-324}}"#;
    let profile = Profile::from_json(text).expect("parse");
    let json = profile.to_json_pretty();
    let again = Profile::from_json(&json).expect("our own output parses");
    assert_eq!(again, profile, "{json}");
    assert_eq!(
        profile.extra["comment"]["value"].as_f64(),
        Some(405555555555555555555555555555555555555555555555555555555555555555555555555555555.0)
    );
}
