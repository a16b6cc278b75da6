//! Fuzzes the reader of a Docker-compatible API's event stream (`GET /events`): the bytes
//! are the stream's body, fed whole and in pieces of sizes the input picks; either way the
//! lines are the same, they are the body's non-blank newline-terminated lines, and what is
//! left is its unterminated tail. Each line gives an event, `None` (not a container's) or an
//! error, never a panic; an event's id is the actor's (in the line when nothing is escaped),
//! `name`/`image` never stay labels, and the names it carries need both.
#![no_main]

use capmon_core::runtime_api::{complete_lines, parse_event};
use libfuzzer_sys::fuzz_target;

/// The lines of `body` fed in pieces of the given sizes (cycled), and what is left.
fn lines_in_pieces(body: &[u8], sizes: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at((*size).min(rest.len()));
        buf.extend_from_slice(piece);
        lines.extend(complete_lines(&mut buf));
        rest = after;
    }
    (lines, buf)
}

fuzz_target!(|data: &[u8]| {
    // Piece sizes come from the first bytes after a final NUL (none in a real stream); a
    // stream alone is read in pieces of 1, 7 and 64 bytes.
    let (body, sizes): (&[u8], Vec<usize>) = match data.iter().rposition(|&b| b == 0) {
        Some(nul) => (
            &data[..nul],
            data[nul + 1..]
                .iter()
                .map(|&b| usize::from(b) + 1)
                .collect(),
        ),
        None => (data, vec![1, 7, 64]),
    };
    let sizes = if sizes.is_empty() {
        vec![1, 7, 64]
    } else {
        sizes
    };
    let mut whole = body.to_vec();
    let lines = complete_lines(&mut whole);
    let tail_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(whole, &body[tail_start..]);
    let expected: Vec<&[u8]> = body[..tail_start]
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    assert_eq!(lines, expected);
    let (pieces, left) = lines_in_pieces(body, &sizes);
    assert_eq!(pieces, lines, "pieces of {sizes:?}");
    assert_eq!(left, whole);
    for line in &lines {
        assert!(!line.contains(&b'\n'));
        let Ok(Some(e)) = parse_event(line) else {
            continue;
        };
        if !line.contains(&b'\\') {
            let text = String::from_utf8_lossy(line);
            assert!(text.contains(&format!("\"{}\"", e.id)), "{e:?} from {text}");
        }
        assert!(
            !e.labels.contains_key("name") && !e.labels.contains_key("image"),
            "{e:?}"
        );
        assert_eq!(
            e.names().is_some(),
            e.name.is_some() && e.image.is_some(),
            "{e:?}"
        );
        if let Some(n) = e.names() {
            assert_eq!(Some(&n.name), e.name.as_ref());
            assert_eq!(
                n.compose_project.as_ref(),
                e.labels.get("com.docker.compose.project")
            );
        }
    }
});
