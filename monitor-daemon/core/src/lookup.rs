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
    /// Several match.
    #[error("{0:?} matches {1} containers: use more of the id")]
    Ambiguous(String, usize),
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
                _ => Err(FindError::Ambiguous(key.to_owned(), many.len())),
            }
        }
    }
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
        assert_eq!(id("aaaa"), Err(FindError::Ambiguous("aaaa".into(), 2)));
        assert_eq!(id("aaa"), Err(FindError::NotFound("aaa".into())));
        assert_eq!(id(""), Err(FindError::NotFound(String::new())));
        assert_eq!(
            find(&m, "aaaa")
                .map(|c| c.0)
                .expect_err("ambiguous")
                .to_string(),
            "\"aaaa\" matches 2 containers: use more of the id"
        );
    }

    #[test]
    fn the_running_namesake_wins() {
        let mut m = all(vec![
            C("a1a1", Some("web"), true),
            C("b2b2", Some("web"), true),
        ]);
        assert_eq!(
            find(&m, "web").map(|c| c.0),
            Err(FindError::Ambiguous("web".into(), 2))
        );
        m.get_mut("a1a1").expect("a1a1").2 = false;
        assert_eq!(find(&m, "web").map(|c| c.0), Ok("b2b2"));
    }
}
