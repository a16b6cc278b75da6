//! Prometheus' text exposition format (version 0.0.4), written straight into one string: the
//! per-container and per-workload families are tens of thousands of series on a busy node,
//! which building through the `prometheus` crate's registries cost about 600 ms a scrape for
//! 1,000 containers; writing them takes a few milliseconds. Label pairs come out sorted by
//! name, as that crate writes them, so a series reads the same either way.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// The exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An exposition expected to be about `bytes` long (the last one's length: the text is
    /// written without growing and copying it).
    pub fn with_capacity(bytes: usize) -> Self {
        Exposition {
            out: String::with_capacity(bytes),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples must follow before the
    /// next family starts (the format wants a family's samples together).
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = write!(self.out, "\n# TYPE {name} {kind}\n");
    }

    /// One sample: `name{labels} value`, the labels sorted by name.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let mut sorted: Vec<&(&str, &str)> = labels.iter().collect();
            sorted.sort_unstable_by_key(|(k, _)| *k);
            self.out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_label(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// Appends text already in the format (whole families).
    pub fn push_families(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format quotes it: `\`, `"` and a newline escaped.
fn escape_label(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_with_sorted_escaped_labels() {
        let mut e = Exposition::default();
        e.family(
            "capmon_x_total",
            "Things, by \\ kind.\nMore.",
            Kind::Counter,
        );
        e.sample("capmon_x_total", &[("z", "1"), ("a", "say \"hi\"\\\n")], 3);
        e.sample("capmon_x_total", &[], 0);
        e.family("capmon_y", "Y.", Kind::Gauge);
        e.sample("capmon_y", &[("name", "web")], 1);
        assert_eq!(
            e.finish(),
            "# HELP capmon_x_total Things, by \\\\ kind.\\nMore.\n\
             # TYPE capmon_x_total counter\n\
             capmon_x_total{a=\"say \\\"hi\\\"\\\\\\n\",z=\"1\"} 3\n\
             capmon_x_total 0\n\
             # HELP capmon_y Y.\n\
             # TYPE capmon_y gauge\n\
             capmon_y{name=\"web\"} 1\n"
        );
    }
}
