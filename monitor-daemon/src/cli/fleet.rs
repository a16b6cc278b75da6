//! `capmon fleet`: every node's workloads merged through Prometheus (or Thanos, Mimir,
//! VictoriaMetrics: anything with its `/api/v1/query`), which scraped each node's capmon.
//! Without `--workload`, a table; with it, its coverage and, with `--format`, its merged
//! recommendation. `--output-dir` writes every workload's recommendation in the format.

use std::{io::IsTerminal as _, path::Path, process::ExitCode};

use capmon_core::{
    fleet::{self, FleetWorkload},
    recommend::Format,
};

use super::{Outcome, client, runtime};

/// What went wrong talking to Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum FleetCliError {
    #[error(
        "--prometheus {0}: give http://HOST:PORT[/PATH] (https is not supported: use a local port forward)"
    )]
    BadUrl(String),
    #[error("--since {0}: give a PromQL duration such as 30m, 24h or 7d")]
    BadWindow(String),
    #[error("Prometheus at {url}: {detail}")]
    Query { url: String, detail: String },
    #[error("no workload named {0:?} in Prometheus over the window (capmon fleet lists them)")]
    NoWorkload(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `http://host:port/prefix` -> (`host:port`, `/prefix` without a trailing slash).
pub fn split_url(url: &str) -> Result<(String, String), FleetCliError> {
    let bad = || FleetCliError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(bad());
    }
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((
        host,
        format!("/{}", path.trim_end_matches('/')).replace("//", "/"),
    ))
}

/// A PromQL duration: digits then one of ms, s, m, h, d, w, y (repeated, e.g. `1h30m`).
pub fn valid_window(w: &str) -> bool {
    let mut rest = w;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Runs the four queries and merges them.
fn fetch(
    rt: &tokio::runtime::Runtime,
    url: &str,
    since: &str,
    workload: Option<&str>,
) -> Result<std::collections::BTreeMap<String, FleetWorkload>, FleetCliError> {
    let (addr, prefix) = split_url(url)?;
    if !valid_window(since) {
        return Err(FleetCliError::BadWindow(since.to_owned()));
    }
    let mut answers = Vec::new();
    let queries = fleet::queries(since, workload);
    let progress = std::io::stderr().is_terminal();
    for (n, q) in queries.iter().enumerate() {
        if progress {
            eprint!("\rcapmon fleet: query {}/{} to {url}", n + 1, queries.len());
        }
        let path = format!(
            "{}/api/v1/query?query={}",
            prefix.trim_end_matches('/'),
            client::segment(q)
        );
        let query_error = |detail: String| FleetCliError::Query {
            url: url.to_owned(),
            detail,
        };
        let body = rt
            .block_on(client::get(&addr, &path))
            .map_err(|e| match e {
                client::ClientError::Connect { source, .. } => {
                    query_error(format!("cannot connect: {source}"))
                }
                other => query_error(other.to_string()),
            })?;
        answers.push(fleet::parse_vector(&body).map_err(|e| query_error(e.to_string()))?);
    }
    if progress {
        // The progress line is erased: what follows starts on a clean line.
        eprint!("\r\x1b[2K");
    }
    Ok(fleet::merge(
        &answers[0],
        &answers[1],
        &answers[2],
        &answers[3],
    ))
}

/// `capmon fleet --prometheus URL [--workload NAME] [--since D] [--format F] [--output-dir DIR]`.
pub fn main(
    url: &str,
    workload: Option<&str>,
    since: &str,
    format: Option<Format>,
    output_dir: Option<&Path>,
) -> Outcome {
    let all = fetch(&runtime()?, url, since, workload)?;
    if let Some(dir) = output_dir {
        let format = format.unwrap_or(Format::Spo);
        for w in all.values() {
            let name = crate::daemon::workloads::file_name(&w.name);
            let text = w.render(&name, format)?;
            let path = dir.join(format!("{name}-{}", format.file_name()));
            std::fs::write(&path, text).map_err(|source| FleetCliError::Write {
                path: path.display().to_string(),
                source,
            })?;
            eprintln!("capmon fleet: wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    match workload {
        None => super::table::print(&table(&all)),
        Some(name) => {
            let w = all
                .get(name)
                .ok_or_else(|| FleetCliError::NoWorkload(name.to_owned()))?;
            match format {
                Some(f) => print!(
                    "{}",
                    w.render(&crate::daemon::workloads::file_name(name), f)?
                ),
                None => print!("{}", coverage(w)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every workload, a line each.
pub fn table(all: &std::collections::BTreeMap<String, FleetWorkload>) -> String {
    let mut out = format!(
        "{:<40}  {:<11}  {:>5}  {:>10}  {:>8}  {}\n",
        "WORKLOAD", "KIND", "NODES", "CONTAINERS", "SYSCALLS", "CAPABILITIES USED"
    );
    for w in all.values() {
        out.push_str(&format!(
            "{:<40}  {:<11}  {:>5}  {:>10}  {:>8}  {}\n",
            w.name,
            w.kind,
            w.nodes.len(),
            w.containers,
            w.syscall_coverage().len(),
            w.capability_coverage()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    out
}

/// One workload's coverage as text.
pub fn coverage(w: &FleetWorkload) -> String {
    let mut out = format!(
        "workload {} ({}): {} containers on {} nodes ({})\n",
        w.name,
        w.kind,
        w.containers,
        w.nodes.len(),
        w.nodes.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    for c in w.capability_coverage() {
        out.push_str(&format!(
            "  {:<24} used on {}/{} nodes by {} containers\n",
            c.name,
            c.nodes,
            c.of_nodes,
            c.containers.unwrap_or(0)
        ));
    }
    for c in w.syscall_coverage() {
        out.push_str(&format!(
            "  {:<24} made on {}/{} nodes\n",
            c.name, c.nodes, c.of_nodes
        ));
    }
    if !w.incomplete.is_empty() {
        out.push_str(&format!(
            "  no profile: nodes with containers capmon did not see start: {}\n",
            w.incomplete.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_windows() {
        assert_eq!(
            split_url("http://127.0.0.1:9090").expect("url"),
            ("127.0.0.1:9090".into(), "/".into())
        );
        assert_eq!(
            split_url("http://thanos.example/prom/").expect("url"),
            ("thanos.example:80".into(), "/prom".into())
        );
        for bad in ["https://x:9090", "127.0.0.1:9090", "http://", "http:///x"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
        for ok in ["30m", "24h", "7d", "1h30m", "500ms"] {
            assert!(valid_window(ok), "{ok}");
        }
        for bad in ["", "h", "24", "1 h", "-1h", "1x"] {
            assert!(!valid_window(bad), "{bad}");
        }
    }
}
