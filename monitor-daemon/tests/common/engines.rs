//! The library's real engines (`capmon::testbed`), one test at a time per test binary (each
//! test starts and stops them), with test-style failures.

use std::{
    process::Output,
    sync::{Mutex, MutexGuard},
};

#[allow(unused_imports)]
pub use capmon::testbed::engines::{CTR, CTR_IMAGE, DOCKER_SOCK, IMAGE};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Running engines, stopped (the ones the test started) when dropped.
pub struct Engines {
    inner: capmon::testbed::engines::Engines,
    _guard: MutexGuard<'static, ()>,
}

impl Engines {
    pub fn start() -> Engines {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let inner = capmon::testbed::engines::Engines::start()
            .unwrap_or_else(|e| panic!("start the container engines: {e:#}"));
        Engines {
            inner,
            _guard: guard,
        }
    }

    pub fn logs(&self) -> String {
        self.inner.logs()
    }
}

/// `docker run --rm --network none ARGS... IMAGE CMD...`: its output.
pub fn docker_run(args: &[&str], cmd: &[&str]) -> Output {
    capmon::testbed::engines::docker_run(args, cmd).expect("run docker")
}

/// The full id of the container named `name` in `containers` (capmon's `/v1/containers`).
pub fn id_by_name<'a>(containers: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    containers["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_str())
}
