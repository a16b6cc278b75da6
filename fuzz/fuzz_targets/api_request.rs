//! Fuzzes what the daemon's HTTP API makes of a request's `{id}` path segment and query string
//! (`/v1/containers/{id}/recommendation?format=...&arch=...`). The input is `SEGMENT?QUERY`
//! as the request carries them; they are decoded as axum's extractors decode them (`Path`:
//! percent-decoding to UTF-8; `Query`: serde_urlencoded into the handler's
//! `{format, arch}`), then go through capmon's own code: the container lookup
//! (`capmon_core::lookup::find`, what `Model::find` runs), `Format`'s and `ArchList`'s
//! parsers. A container is only found when the key is its id, its name, or a hex prefix of
//! its id; a format or architecture list that parses writes out as text that parses the same.
#![no_main]

use std::collections::BTreeMap;

use capmon_core::{
    abi::Abi,
    lookup::{FindError, Findable, MIN_PREFIX, find},
    recommend::Format,
    seccomp::{ArchList, ArchListError},
};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The API's query parameters (`FormatQuery` in the daemon's `daemon::api`).
#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
    arch: Option<String>,
}

struct Container {
    id: &'static str,
    name: Option<&'static str>,
    running: bool,
}

impl Findable for Container {
    fn id(&self) -> &str {
        self.id
    }
    fn name(&self) -> Option<&str> {
        self.name
    }
    fn running(&self) -> bool {
        self.running
    }
}

/// Containers as a node has them: ids that share prefixes, a name that is hex, namesakes (one
/// exited), a container without a name.
fn model() -> BTreeMap<String, Container> {
    [
        (
            "4f2a9c1be07d5a3c8e6b1f0d9a2c7e4b5d8f1a3c6e9b2d4f7a1c3e5b7d9f0a2c",
            Some("web"),
            true,
        ),
        (
            "4f2a9c1be07d0000000000000000000000000000000000000000000000000001",
            Some("web"),
            false,
        ),
        (
            "4f2a00000000000000000000000000000000000000000000000000000000beef",
            Some("db"),
            true,
        ),
        (
            "deadbeef00000000000000000000000000000000000000000000000000000000",
            Some("cafe"),
            true,
        ),
        (
            "cafe000000000000000000000000000000000000000000000000000000000000",
            None,
            true,
        ),
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            Some("shop-web-1"),
            true,
        ),
    ]
    .into_iter()
    .map(|(id, name, running)| (id.to_owned(), Container { id, name, running }))
    .collect()
}

fn is_prefix_key(key: &str) -> bool {
    key.len() >= MIN_PREFIX && key.bytes().all(|b| b.is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (segment, query) = text.split_once('?').unwrap_or((text, ""));
    // The router splits the path at `/` before any decoding: a raw `/` is another route.
    if segment.contains('/') {
        return;
    }
    if let Ok(key) = percent_encoding::percent_decode_str(segment).decode_utf8() {
        let m = model();
        match find(&m, &key) {
            Ok(c) => {
                let by_id = c.id == key;
                let by_name = c.name == Some(&*key);
                let by_prefix = is_prefix_key(&key) && c.id.starts_with(&*key);
                assert!(by_id || by_name || by_prefix, "{key:?} found {}", c.id);
                if m.contains_key(&*key) {
                    assert!(by_id, "{key:?}");
                }
            }
            Err(FindError::NotFound(k)) => {
                assert_eq!(k, key);
                for c in m.values() {
                    assert!(c.id != key && c.name != Some(&*key), "{key:?} is {}", c.id);
                    assert!(!(is_prefix_key(&key) && c.id.starts_with(&*key)), "{key:?}");
                }
            }
            Err(FindError::Ambiguous(k, which)) => {
                assert_eq!(k, key);
                assert!(which.len() >= 2);
                assert!(!m.contains_key(&*key));
            }
        }
    }
    let Ok(q) = serde_urlencoded::from_str::<FormatQuery>(query) else {
        return;
    };
    if let Some(f) = &q.format {
        match f.parse::<Format>() {
            Ok(format) => {
                assert_eq!(format.name(), f.to_ascii_lowercase());
                assert_eq!(format.name().parse::<Format>().ok(), Some(format));
            }
            Err(_) => assert!(!Format::NAMES.contains(&&*f.to_ascii_lowercase()), "{f:?}"),
        }
    }
    if let Some(a) = &q.arch {
        let words: Vec<&str> = a.split(',').map(str::trim).collect();
        match a.parse::<ArchList>() {
            Ok(list) => {
                assert!(words.iter().all(|w| !w.is_empty()), "{a:?}");
                let abis = list.abis();
                assert!(!abis.is_empty(), "{a:?}");
                let order = |x: &Abi| Abi::ALL.iter().position(|y| y == x);
                assert!(
                    abis.windows(2).all(|w| order(&w[0]) < order(&w[1])),
                    "{abis:?}"
                );
                for w in &words {
                    if !w.eq_ignore_ascii_case("all") {
                        assert!(Abi::parse(w).is_some_and(|abi| list.contains(abi)), "{w:?}");
                    }
                }
                let written = list.to_string();
                assert_eq!(
                    written.parse::<ArchList>().as_ref(),
                    Ok(&list),
                    "{written:?}"
                );
            }
            Err(ArchListError::Empty(list)) => {
                assert_eq!(&list, a);
                assert!(words.iter().any(|w| w.is_empty()), "{a:?}");
            }
            Err(ArchListError::Unknown { word, list }) => {
                assert_eq!(&list, a);
                assert!(words.contains(&&*word), "{word:?} of {a:?}");
                assert!(Abi::parse(&word).is_none() && !word.eq_ignore_ascii_case("all"));
            }
        }
    }
});
