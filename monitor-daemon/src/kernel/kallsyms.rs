//! Kernel addresses to function names, against `/proc/kallsyms` (whose addresses are only
//! visible with `CAP_SYSLOG`); its lines are parsed by [`capmon_core::kallsyms`].

use std::collections::{BTreeMap, HashMap};

use capmon_core::kallsyms;

/// Symbolizes kernel addresses against `/proc/kallsyms`: text symbols only, in one sorted
/// address array and one name arena (about 2 MB for 120,000 symbols, against about 15 MB as a
/// map of strings; the daemon keeps it for its lifetime).
pub struct Symbolizer {
    addrs: Vec<u64>,
    /// (offset, length) of each name in `arena`.
    names: Vec<(u32, u32)>,
    arena: String,
    cache: HashMap<u64, String>,
}

impl Symbolizer {
    /// Reads `/proc/kallsyms` (addresses are only visible with CAP_SYSLOG).
    pub fn from_kallsyms() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        let s = Self::parse(&text);
        // Without CAP_SYSLOG (kptr_restrict) every address reads as 0: stacks could not be
        // named, and no-audit checks would look like real uses.
        if s.addrs.iter().all(|a| *a == 0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "/proc/kallsyms shows no addresses to this process: capmon needs CAP_SYSLOG",
            ));
        }
        Ok(s)
    }

    /// Parses kallsyms text (`address type name [module]`, [`capmon_core::kallsyms`]),
    /// keeping text symbols.
    pub fn parse(text: &str) -> Self {
        Self::from_sorted(kallsyms::text_symbols(text).into_iter())
    }

    fn from_sorted<'a>(entries: impl Iterator<Item = (u64, &'a str)>) -> Self {
        let mut s = Symbolizer {
            addrs: Vec::new(),
            names: Vec::new(),
            arena: String::new(),
            cache: HashMap::new(),
        };
        for (addr, name) in entries {
            s.addrs.push(addr);
            s.names.push((s.arena.len() as u32, name.len() as u32));
            s.arena.push_str(name);
        }
        s.addrs.shrink_to_fit();
        s.names.shrink_to_fit();
        s.arena.shrink_to_fit();
        s
    }

    /// A symbolizer over a given table (tests).
    pub fn from_table(symbols: BTreeMap<u64, String>) -> Self {
        Self::from_sorted(symbols.iter().map(|(a, n)| (*a, n.as_str())))
    }

    /// The function containing `ip`, or its address in hex.
    pub fn symbol(&mut self, ip: u64) -> String {
        if let Some(s) = self.cache.get(&ip) {
            return s.clone();
        }
        let i = self.addrs.partition_point(|a| *a <= ip);
        let name = match i.checked_sub(1).and_then(|i| self.names.get(i)) {
            Some(&(off, len)) => self.arena[off as usize..(off + len) as usize].to_owned(),
            None => format!("{ip:#x}"),
        };
        self.cache.insert(ip, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_to_the_enclosing_function() {
        let table = BTreeMap::from([
            (0x1000, "cap_capable".to_owned()),
            (0x2000, "do_mmap".to_owned()),
        ]);
        let mut s = Symbolizer::from_table(table);
        assert_eq!(s.symbol(0x1000), "cap_capable");
        assert_eq!(s.symbol(0x1fff), "cap_capable");
        assert_eq!(s.symbol(0x2010), "do_mmap");
        assert_eq!(s.symbol(0x10), "0x10");
        let mut k = Symbolizer::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t do_mmap\nffffffff81000200 D some_data\n\
             ffffffffc0000000 t mod_fn\t[nf_tables]\n",
        );
        assert_eq!(k.symbol(0xffffffff81000150), "do_mmap");
        assert_eq!(
            k.symbol(0xffffffff81000250),
            "do_mmap",
            "data symbols are skipped"
        );
        assert_eq!(k.symbol(0xffffffffc0000010), "mod_fn");
    }
}
