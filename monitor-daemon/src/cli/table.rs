//! Tables on a terminal: each line cut to the terminal's width, as `ps` does, so that a row
//! never wraps into the next; into a pipe or a file, lines stay whole for the reader.

use std::io::IsTerminal as _;

/// The width to fit stdout's lines to: `COLUMNS` when set to a number, else the terminal's;
/// `None` when stdout is not a terminal (nothing is cut).
pub fn stdout_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(n);
    }
    terminal_size::terminal_size_of(&stdout).map(|(w, _)| usize::from(w.0))
}

/// `text` with each line longer than `width` characters cut to `width`, its last character
/// replaced by `…`; unchanged without a width.
pub fn fit(text: &str, width: Option<usize>) -> String {
    let Some(width) = width.filter(|&w| w > 0) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        if body.chars().count() > width {
            out.extend(body.chars().take(width - 1));
            out.push('…');
        } else {
            out.push_str(body);
        }
        out.push_str(end);
    }
    out
}

/// Prints a table on stdout, fitted to the terminal.
pub fn print(text: &str) {
    print!("{}", fit(text, stdout_width()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_characters_and_marked() {
        let text = "ID    NAME\nabcdef web-\u{e9}t\u{e9}\nshort\nno newline at the end";
        assert_eq!(fit(text, None), text);
        assert_eq!(fit(text, Some(9)), "ID    NA…\nabcdef w…\nshort\nno newli…");
        assert_eq!(fit("a\u{e9}cd\n", Some(3)), "a\u{e9}…\n");
        assert_eq!(fit("abc\n", Some(3)), "abc\n");
        assert_eq!(fit("abc\n", Some(0)), "abc\n", "a width of 0 is no width");
    }
}
