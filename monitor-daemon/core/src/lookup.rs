//! A container named by a user: the `{id}` of the API's paths (`/v1/containers/{id}`), as a
//! full id, a unique id prefix of at least four hex digits (the short id), or a name.

use std::collections::BTreeMap;

/// What a container is known by.
pub trait Findable {
    /// Its full id.
    fn id(&self) -> &str;
    /// Its name, when known.
    fn name(&self) -> Option<&str>;
    /// Whether it runs (a running container wins over exited namesakes).
    fn running(&self) -> bool;
}

/// Why a container lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No such container.
    #[error("no container with id, short id or name {0:?}")]
    NotFound(String),
    /// Several match: each as its shortest unique id prefix, with its name and state.
    #[error("{0:?} matches {n} containers: {list}; use more of the id", n = .1.len(), list = .1.join(", "))]
    Ambiguous(String, Vec<String>),
}

/// How many hex digits of an id are shown at least, as Docker shows them.
pub const SHORT_ID: usize = 12;

/// For each of `ids` (in order), its shortest prefix of at least `min` characters that no
/// other id of `ids` starts with (the whole id when it is a prefix of another): what a
/// listing shows so that each row can be named again.
pub fn unique_prefixes(ids: &[&str], min: usize) -> Vec<String> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut out = vec![String::new(); ids.len()];
    for (pos, &i) in order.iter().enumerate() {
        let id = ids[i];
        // In sorted order, the ids sharing the longest prefix with this one are its neighbours.
        let shared = [pos.checked_sub(1), Some(pos + 1)]
            .into_iter()
            .flatten()
            .filter_map(|p| order.get(p))
            .filter(|&&j| ids[j] != id)
            .map(|&j| common(id, ids[j]))
            .max()
            .unwrap_or(0);
        let len = (shared + 1).max(min).min(id.len());
        // Stay on a character boundary (ids are ASCII hex; a name-like id is not).
        let end = (len..=id.len())
            .find(|&e| id.is_char_boundary(e))
            .unwrap_or(id.len());
        out[i] = id[..end].to_owned();
    }
    out
}

/// The shortest id prefix looked up.
pub const MIN_PREFIX: usize = 4;

/// Finds the container `key` names in `containers` (by full id): the one with that full id;
/// else those with that name; else, for `key` of at least [`MIN_PREFIX`] hex digits, those
/// whose id starts with it. Of several, the only running one wins; else it is ambiguous.
pub fn find<'a, C: Findable>(
    containers: &'a BTreeMap<String, C>,
    key: &str,
) -> Result<&'a C, FindError> {
    if let Some(c) = containers.get(key) {
        return Ok(c);
    }
    let by_name: Vec<&C> = containers
        .values()
        .filter(|c| c.name() == Some(key))
        .collect();
    let matches: Vec<&C> = if !by_name.is_empty() {
        by_name
    } else if key.len() >= MIN_PREFIX && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        containers
            .values()
            .filter(|c| c.id().starts_with(key))
            .collect()
    } else {
        Vec::new()
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(FindError::NotFound(key.to_owned())),
        many => {
            let running: Vec<&&C> = many.iter().filter(|c| c.running()).collect();
            match running.as_slice() {
                [one] => Ok(one),
                _ => Err(FindError::Ambiguous(
                    key.to_owned(),
                    described(containers, many),
                )),
            }
        }
    }
}

/// The candidates of an ambiguous lookup, each as a listing shows it: `PREFIX (NAME, running)`.
fn described<C: Findable>(containers: &BTreeMap<String, C>, many: &[&C]) -> Vec<String> {
    let ids: Vec<&str> = containers.values().map(Findable::id).collect();
    let prefixes: BTreeMap<&str, String> = ids
        .iter()
        .copied()
        .zip(unique_prefixes(&ids, SHORT_ID))
        .collect();
    many.iter()
        .map(|c| {
            let state = if c.running() { "running" } else { "exited" };
            let shown = prefixes.get(c.id()).map_or(c.id(), String::as_str);
            match c.name() {
                Some(name) => format!("{shown} ({name}, {state})"),
                None => format!("{shown} ({state})"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C(&'static str, Option<&'static str>, bool);

    impl Findable for C {
        fn id(&self) -> &str {
            self.0
        }
        fn name(&self) -> Option<&str> {
            self.1
        }
        fn running(&self) -> bool {
            self.2
        }
    }

    fn all(cs: Vec<C>) -> BTreeMap<String, C> {
        cs.into_iter().map(|c| (c.0.to_owned(), c)).collect()
    }

    #[test]
    fn by_id_prefix_and_name() {
        let m = all(vec![
            C("aaaa1111", Some("db"), true),
            C("aaaa1112", None, true),
            C("bbbb3333", Some("web"), true),
            C("cccc", Some("aaaa1111"), false),
        ]);
        let id = |k: &str| find(&m, k).map(|c| c.0);
        assert_eq!(id("aaaa1111"), Ok("aaaa1111"), "the full id before a name");
        assert_eq!(id("bbbb33"), Ok("bbbb3333"));
        assert_eq!(id("BBBB33"), Err(FindError::NotFound("BBBB33".into())));
        assert_eq!(id("web"), Ok("bbbb3333"));
        assert_eq!(
            id("aaaa"),
            Err(FindError::Ambiguous(
                "aaaa".into(),
                vec!["aaaa1111 (db, running)".into(), "aaaa1112 (running)".into()]
            ))
        );
        assert_eq!(id("aaa"), Err(FindError::NotFound("aaa".into())));
        assert_eq!(id(""), Err(FindError::NotFound(String::new())));
        assert_eq!(
            find(&m, "aaaa")
                .map(|c| c.0)
                .expect_err("ambiguous")
                .to_string(),
            "\"aaaa\" matches 2 containers: aaaa1111 (db, running), aaaa1112 (running); \
             use more of the id"
        );
    }

    #[test]
    fn listings_show_the_shortest_unique_prefix() {
        let ids = [
            "cab000000000a1ff",
            "0123456789abcdef",
            "cab000000000b2ff",
            "cab000000000b3ff",
            "cab000",
            "",
        ];
        assert_eq!(
            unique_prefixes(&ids, SHORT_ID),
            [
                "cab000000000a",
                "0123456789ab",
                "cab000000000b2",
                "cab000000000b3",
                "cab000",
                ""
            ]
        );
        // Never cut inside a character: \u{e9} and \u{e8} share their first byte.
        assert_eq!(
            unique_prefixes(&["a\u{e9}x", "a\u{e8}x"], 1),
            ["a\u{e9}", "a\u{e8}"]
        );
        assert!(unique_prefixes(&[], SHORT_ID).is_empty());
    }

    #[test]
    fn the_running_namesake_wins() {
        let mut m = all(vec![
            C("a1a1", Some("web"), true),
            C("b2b2", Some("web"), true),
        ]);
        assert_eq!(
            find(&m, "web").map(|c| c.0),
            Err(FindError::Ambiguous(
                "web".into(),
                vec!["a1a1 (web, running)".into(), "b2b2 (web, running)".into()]
            ))
        );
        m.get_mut("a1a1").expect("a1a1").2 = false;
        assert_eq!(find(&m, "web").map(|c| c.0), Ok("b2b2"));
    }
}
