//! Fuzzes the daemon's configuration file reader: any text gives a configuration or an error
//! naming the file, never a panic; a configuration that parses writes out as TOML that reads
//! back the same, and validating it does not panic.
#![no_main]

use std::path::Path;

use capmon_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/capmon/capmon.toml");
    let cfg = match Config::from_toml(path, text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(e.to_string().contains("/etc/capmon/capmon.toml"), "{e}");
            return;
        }
    };
    let _ = cfg.validate();
    let _ = (
        cfg.poll_interval(),
        cfg.batch_interval(),
        cfg.retention_secs(),
    );
    let written = toml::to_string(&cfg).unwrap_or_else(|e| panic!("cannot write {cfg:?}: {e}"));
    let again = Config::from_toml(path, &written)
        .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{written}"));
    assert_eq!(
        again, cfg,
        "round trip changed the configuration:\n{written}"
    );
});
