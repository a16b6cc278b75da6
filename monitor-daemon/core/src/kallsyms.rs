//! `/proc/kallsyms` text: one symbol a line, `address type name [module]` (the address in
//! hex, the type one letter as `nm` prints it). Reading the file and naming addresses is the
//! daemon's job (`kernel::kallsyms`).

/// One line of `/proc/kallsyms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Its address (0 for every symbol when the reader lacks `CAP_SYSLOG`).
    pub addr: u64,
    /// `nm`'s type letter: `t`/`T` code, `w`/`W` weak, `d`/`D` data, ...
    pub kind: char,
    /// Its name.
    pub name: &'a str,
    /// The module it belongs to, without its brackets (`nf_tables` for `[nf_tables]`).
    pub module: Option<&'a str>,
}

impl Symbol<'_> {
    /// Whether it is code: a text symbol (`t`, `T`) or a weak one (`w`, `W`, functions that
    /// architectures override).
    pub fn is_text(&self) -> bool {
        matches!(self.kind, 't' | 'T' | 'w' | 'W')
    }
}

/// Parses one line; `None` for a line that is not `address type name [module]` (an address
/// of hex digits that fits 64 bits, a one-letter type, a name).
pub fn parse_line(line: &str) -> Option<Symbol<'_>> {
    let mut f = line.split_whitespace();
    let addr = f.next()?;
    if !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let addr = u64::from_str_radix(addr, 16).ok()?;
    let mut kind = f.next()?.chars();
    let (Some(letter), None) = (kind.next(), kind.next()) else {
        return None;
    };
    let name = f.next()?;
    let module = f.next().map(|m| {
        m.strip_prefix('[')
            .and_then(|m| m.strip_suffix(']'))
            .unwrap_or(m)
    });
    Some(Symbol {
        addr,
        kind: letter,
        name,
        module,
    })
}

/// The text symbols of kallsyms `text` ([`Symbol::is_text`]) as (address, name), sorted by
/// address (symbols at one address keep the file's order); lines that do not parse are
/// skipped.
pub fn text_symbols(text: &str) -> Vec<(u64, &str)> {
    let mut entries: Vec<(u64, &str)> = text
        .lines()
        .filter_map(parse_line)
        .filter(Symbol::is_text)
        .map(|s| (s.addr, s.name))
        .collect();
    entries.sort_by_key(|(a, _)| *a);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_as_the_kernel_writes_them() {
        assert_eq!(
            parse_line("ffffffff81000000 T _stext"),
            Some(Symbol {
                addr: 0xffff_ffff_8100_0000,
                kind: 'T',
                name: "_stext",
                module: None
            })
        );
        assert_eq!(
            parse_line("ffffffffc0a01010 t nft_do_chain\t[nf_tables]"),
            Some(Symbol {
                addr: 0xffff_ffff_c0a0_1010,
                kind: 't',
                name: "nft_do_chain",
                module: Some("nf_tables")
            })
        );
        // Without CAP_SYSLOG every address reads as zeros.
        assert_eq!(
            parse_line("0000000000000000 D jiffies").map(|s| (s.addr, s.is_text())),
            Some((0, false))
        );
        for bad in [
            "",
            "ffffffff81000000",
            "ffffffff81000000 T",
            "+fffffff81000000 T sign",
            "xyz T not_hex",
            "1ffffffff81000000 T too_wide",
            "ffffffff81000000 TT two_letters",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keeps_text_symbols_sorted() {
        let text = "ffffffff81000200 D some_data\nffffffff81000100 t do_mmap\n\
                    garbage\nffffffff81000000 T _stext\nffffffffc0000000 W mod_fn\t[m]\n";
        assert_eq!(
            text_symbols(text),
            [
                (0xffff_ffff_8100_0000, "_stext"),
                (0xffff_ffff_8100_0100, "do_mmap"),
                (0xffff_ffff_c000_0000, "mod_fn"),
            ]
        );
    }
}
