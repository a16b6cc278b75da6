//! Fuzzes the `/proc/kallsyms` reader: any text gives symbols, never a panic; a symbol's
//! fields are the line's (its address the first field's hex digits, its name the third
//! field, its module the fourth without brackets), written back as a line it reads the same,
//! and the text symbols come out sorted by address, one for each text line.
#![no_main]

use capmon_core::kallsyms::{Symbol, parse_line, text_symbols};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut text_lines = Vec::new();
    for line in text.lines() {
        let Some(s) = parse_line(line) else {
            continue;
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let digits = fields[0].trim_start_matches('0');
        assert_eq!(
            format!("{:x}", s.addr),
            if digits.is_empty() {
                "0".to_owned()
            } else {
                digits.to_ascii_lowercase()
            },
            "{line:?}"
        );
        assert_eq!(fields[1], s.kind.to_string(), "{line:?}");
        assert_eq!(fields[2], s.name, "{line:?}");
        assert!(!s.name.is_empty() && !s.name.contains(char::is_whitespace));
        if let Some(m) = s.module {
            assert!(fields[3].contains(m), "{line:?}");
        } else {
            assert_eq!(fields.len(), 3, "{line:?}");
        }
        let written = match s.module {
            Some(m) => format!("{:016x} {} {}\t[{m}]", s.addr, s.kind, s.name),
            None => format!("{:016x} {} {}", s.addr, s.kind, s.name),
        };
        assert_eq!(parse_line(&written), Some(s), "{line:?} -> {written:?}");
        if s.is_text() {
            text_lines.push(s);
        }
    }
    let symbols = text_symbols(&text);
    assert!(symbols.windows(2).all(|w| w[0].0 <= w[1].0), "{symbols:?}");
    assert_eq!(symbols.len(), text_lines.len());
    // The sort is stable: the same (address, name) pairs, in the file's order per address.
    let mut expected: Vec<(u64, &str)> = text_lines
        .iter()
        .map(|s: &Symbol| (s.addr, s.name))
        .collect();
    expected.sort_by_key(|(a, _)| *a);
    assert_eq!(symbols, expected);
});
