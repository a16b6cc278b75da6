//! Fuzzes the reader of a Docker-compatible API's container inspect answer: any bytes give
//! names or an error, never a panic; a name never keeps Docker's leading `/`. The same bytes
//! as a line of the event stream: an event or an error, and `name`/`image` never stay labels.
#![no_main]

use capmon_core::runtime_api::{parse_event, parse_inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = parse_inspect(data) {
        assert!(!names.name.starts_with('/'), "{names:?}");
    }
    if let Ok(Some(e)) = parse_event(data) {
        assert!(!e.labels.contains_key("name") && !e.labels.contains_key("image"), "{e:?}");
    }
});
