//! A fleet's workloads, merged from what Prometheus (or any server with its HTTP query API:
//! Thanos, Mimir, VictoriaMetrics) scraped from every node's capmon: the union of each
//! workload's syscalls and used capabilities, with their coverage in nodes (and, for
//! capabilities, containers), and one report to render every recommendation format from.
//! Prometheus is the fleet's engine: this only reads query answers.
//!
//! The queries ([`queries`]) take each series' maximum over the window, by node (`instance`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::{
    recommend::{Format, RecommendError},
    report::{self, BuildContext, Capabilities, RecordReport, Syscalls},
};

/// A query answer that is not what the Prometheus API promises.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetError {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the query failed: {0}")]
    Failed(String),
    #[error("the answer is not an instant vector (resultType {0})")]
    NotVector(String),
}

/// One series of an instant vector: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses a `/api/v1/query` answer holding an instant vector.
pub fn parse_vector(body: &str) -> Result<Vec<Sample>, FleetError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| FleetError::NotJson(body.chars().take(120).collect()))?;
    if v["status"] != "success" {
        let why = v["error"].as_str().unwrap_or("no error given");
        return Err(FleetError::Failed(format!(
            "{} ({why})",
            v["errorType"].as_str().unwrap_or("status is not success")
        )));
    }
    let kind = v["data"]["resultType"].as_str().unwrap_or("none");
    if kind != "vector" {
        return Err(FleetError::NotVector(kind.to_owned()));
    }
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let labels = s["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        // [timestamp, "value"]
        let value = s["value"][1]
            .as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// The four queries, over `window` (a PromQL duration such as `24h`), for one workload or
/// all: (syscalls, capabilities, containers, incomplete containers).
pub fn queries(window: &str, workload: Option<&str>) -> [String; 4] {
    let m = match workload {
        Some(w) => format!(
            "{{workload=\"{}\"}}",
            w.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => String::new(),
    };
    let q = |metric: &str, by: &str| {
        format!("max by (instance, workload, kind{by}) (max_over_time({metric}{m}[{window}]))")
    };
    [
        q("capmon_workload_syscall_observed", ", syscall"),
        q("capmon_workload_capability_used", ", capability"),
        q("capmon_workload_containers", ", state"),
        q("capmon_workload_incomplete_containers", ""),
    ]
}

/// One capability or syscall across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub name: String,
    /// Nodes where the workload used it.
    pub nodes: usize,
    /// Nodes where the workload ran.
    pub of_nodes: usize,
    /// Containers that used it (capabilities only: the syscall series say 1 per node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<u64>,
}

/// A workload across the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FleetWorkload {
    pub name: String,
    pub kind: String,
    /// Nodes it ran on (their `instance`).
    pub nodes: BTreeSet<String>,
    /// Its containers, summed over nodes (each node's largest count in the window).
    pub containers: u64,
    /// Nodes with containers capmon did not see start, and how many.
    pub incomplete: BTreeMap<String, u64>,
    syscalls: BTreeMap<String, BTreeSet<String>>,
    capabilities: BTreeMap<String, (BTreeSet<String>, u64)>,
}

fn label<'a>(s: &'a Sample, key: &str) -> &'a str {
    s.labels.get(key).map(String::as_str).unwrap_or("")
}

/// The workload of sample `s` in `out` (made on first sight) and its node; `None` for a
/// series without a workload label.
fn entry<'a>(
    out: &'a mut BTreeMap<String, FleetWorkload>,
    s: &Sample,
) -> Option<(String, &'a mut FleetWorkload)> {
    let name = label(s, "workload");
    if name.is_empty() {
        return None;
    }
    let node = match label(s, "instance") {
        "" => "unknown".to_owned(),
        n => n.to_owned(),
    };
    let w = out.entry(name.to_owned()).or_insert_with(|| FleetWorkload {
        name: name.to_owned(),
        kind: label(s, "kind").to_owned(),
        ..Default::default()
    });
    Some((node, w))
}

/// Merges the four answers of [`queries`] into workloads, by name.
pub fn merge(
    syscalls: &[Sample],
    capabilities: &[Sample],
    containers: &[Sample],
    incomplete: &[Sample],
) -> BTreeMap<String, FleetWorkload> {
    let mut out: BTreeMap<String, FleetWorkload> = BTreeMap::new();
    for s in containers {
        if let Some((node, w)) = entry(&mut out, s)
            && s.value > 0.0
        {
            // A count as large as u64's (`+Inf` saturates) must not overflow the sum.
            w.containers = w.containers.saturating_add(s.value as u64);
            w.nodes.insert(node);
        }
    }
    for s in syscalls.iter().filter(|s| s.value > 0.0) {
        let name = label(s, "syscall").to_owned();
        if let Some((node, w)) = entry(&mut out, s) {
            w.syscalls.entry(name).or_default().insert(node.clone());
            w.nodes.insert(node);
        }
    }
    for s in capabilities.iter().filter(|s| s.value > 0.0) {
        let name = label(s, "capability").to_owned();
        if let Some((node, w)) = entry(&mut out, s) {
            let c = w.capabilities.entry(name).or_default();
            c.0.insert(node.clone());
            c.1 = c.1.saturating_add(s.value as u64);
            w.nodes.insert(node);
        }
    }
    for s in incomplete.iter().filter(|s| s.value > 0.0) {
        if let Some((node, w)) = entry(&mut out, s) {
            w.incomplete.insert(node, s.value as u64);
        }
    }
    out
}

/// The annotation of a fleet SPO `SeccompProfile` that carries its coverage (JSON).
pub const COVERAGE_ANNOTATION: &str = "capmon.io/coverage";

impl FleetWorkload {
    /// Its recommendation in `format`; the SPO `SeccompProfile` carries the coverage as the
    /// [`COVERAGE_ANNOTATION`] annotation (nodes, containers, each syscall and capability).
    pub fn render(&self, file_name: &str, format: Format) -> Result<String, RecommendError> {
        let report = self.report();
        let text = report.advice(file_name).render(format)?;
        if format != Format::Spo {
            return Ok(text);
        }
        let (header, yaml) = text.split_once('\n').unwrap_or(("", &text));
        let mut doc: serde_json::Value = serde_norway::from_str(yaml)?;
        let coverage = serde_json::json!({
            "workload": self.name,
            "kind": self.kind,
            "nodes": self.nodes,
            "containers": self.containers,
            "capabilities": self.capability_coverage(),
            "syscalls": self.syscall_coverage(),
        });
        doc["metadata"]["annotations"] =
            serde_json::json!({ COVERAGE_ANNOTATION: coverage.to_string() });
        Ok(format!("{header}\n{}", serde_norway::to_string(&doc)?))
    }

    /// Its syscalls, with the nodes where it made each.
    pub fn syscall_coverage(&self) -> Vec<Coverage> {
        self.syscalls
            .iter()
            .map(|(name, nodes)| Coverage {
                name: name.clone(),
                nodes: nodes.len(),
                of_nodes: self.nodes.len(),
                containers: None,
            })
            .collect()
    }

    /// Its used capabilities, with the nodes and containers that used each.
    pub fn capability_coverage(&self) -> Vec<Coverage> {
        self.capabilities
            .iter()
            .map(|(name, (nodes, containers))| Coverage {
                name: name.clone(),
                nodes: nodes.len(),
                of_nodes: self.nodes.len(),
                containers: Some(*containers),
            })
            .collect()
    }

    /// One report for the workload across the fleet: the union of its syscalls and used
    /// capabilities, granted exactly those (the metrics carry no grant); no profile while a
    /// node has containers capmon did not see start.
    pub fn report(&self) -> RecordReport {
        let used: Vec<String> = self.capabilities.keys().cloned().collect();
        let mut ctx = BuildContext::new(used.clone());
        ctx.complete = self.incomplete.is_empty();
        let caps = Capabilities {
            used,
            ..Default::default()
        };
        let syscalls = Syscalls {
            used: self.syscalls.keys().cloned().collect(),
            ..Default::default()
        };
        report::assemble(
            &ctx,
            vec![self.name.clone()],
            0,
            None,
            caps,
            syscalls,
            BTreeMap::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: &[(&[(&str, &str)], &str)]) -> String {
        let result: Vec<Value> = rows
            .iter()
            .map(|(labels, v)| {
                let metric: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect();
                serde_json::json!({"metric": metric, "value": [1.7e9, v]})
            })
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
            .to_string()
    }

    const W: (&str, &str) = ("workload", "k8s:shop:web:app");
    const K: (&str, &str) = ("kind", "deployment");

    #[test]
    fn two_nodes_merge_with_coverage() {
        let sys = parse_vector(&answer(&[
            (&[W, K, ("instance", "a:9477"), ("syscall", "read")], "1"),
            (&[W, K, ("instance", "b:9477"), ("syscall", "read")], "1"),
            (
                &[W, K, ("instance", "b:9477"), ("syscall", "fchownat")],
                "1",
            ),
        ]))
        .expect("vector");
        let caps = parse_vector(&answer(&[(
            &[W, K, ("instance", "b:9477"), ("capability", "CAP_CHOWN")],
            "2",
        )]))
        .expect("vector");
        let containers = parse_vector(&answer(&[
            (&[W, K, ("instance", "a:9477"), ("state", "running")], "1"),
            (&[W, K, ("instance", "b:9477"), ("state", "running")], "2"),
            (&[W, K, ("instance", "b:9477"), ("state", "exited")], "1"),
        ]))
        .expect("vector");
        let all = merge(&sys, &caps, &containers, &[]);
        let w = &all["k8s:shop:web:app"];
        assert_eq!(w.nodes.len(), 2);
        assert_eq!(w.containers, 4);
        assert_eq!(
            w.syscall_coverage()
                .iter()
                .map(|c| (c.name.as_str(), c.nodes, c.of_nodes))
                .collect::<Vec<_>>(),
            [("fchownat", 1, 2), ("read", 2, 2)]
        );
        assert_eq!(
            w.capability_coverage(),
            [Coverage {
                name: "CAP_CHOWN".into(),
                nodes: 1,
                of_nodes: 2,
                containers: Some(2)
            }]
        );
        let r = w.report();
        assert_eq!(r.capabilities.used, ["CAP_CHOWN"]);
        let p = r.seccomp_profile.expect("a profile");
        let allowed: Vec<&str> = p
            .syscalls
            .iter()
            .flat_map(|s| s.names.iter().map(String::as_str))
            .collect();
        assert!(allowed.contains(&"fchownat") && allowed.contains(&"read"));
        let spo: serde_json::Value =
            serde_norway::from_str(&w.render("web", Format::Spo).expect("spo")).expect("yaml");
        assert_eq!(spo["kind"], "SeccompProfile");
        let cov: serde_json::Value = serde_json::from_str(
            spo["metadata"]["annotations"][COVERAGE_ANNOTATION]
                .as_str()
                .expect("annotation"),
        )
        .expect("JSON");
        assert_eq!(cov["nodes"], serde_json::json!(["a:9477", "b:9477"]));
        assert_eq!(cov["capabilities"][0]["containers"], 2);
        assert_eq!(
            cov["syscalls"][1],
            serde_json::json!({"name": "read", "nodes": 2, "of_nodes": 2})
        );
    }

    #[test]
    fn counts_too_large_saturate() {
        // Found by fuzzing (fuzz/fuzz_targets/prometheus_query.rs): `+Inf` (Prometheus' answer
        // to a division by zero) is u64::MAX as a count, and two of them overflowed the sum.
        let inf = parse_vector(&answer(&[
            (
                &[W, K, ("instance", "a:9477"), ("state", "running")],
                "+Inf",
            ),
            (
                &[W, K, ("instance", "b:9477"), ("state", "running")],
                "+Inf",
            ),
        ]))
        .expect("vector");
        let caps: Vec<Sample> = inf
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.labels.insert("capability".into(), "CAP_CHOWN".into());
                s
            })
            .collect();
        let all = merge(&[], &caps, &inf, &[]);
        let w = &all["k8s:shop:web:app"];
        assert_eq!(w.containers, u64::MAX);
        assert_eq!(w.capability_coverage()[0].containers, Some(u64::MAX));
    }

    #[test]
    fn incomplete_nodes_and_bad_answers() {
        let inc = parse_vector(&answer(&[(&[W, K, ("instance", "a:9477")], "1")])).expect("v");
        let all = merge(&[], &[], &[], &inc);
        let w = &all["k8s:shop:web:app"];
        assert_eq!(w.incomplete.get("a:9477"), Some(&1));
        assert!(w.report().seccomp_profile.is_none());
        assert!(matches!(
            parse_vector("<html>"),
            Err(FleetError::NotJson(_))
        ));
        assert_eq!(
            parse_vector(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#),
            Err(FleetError::Failed("bad_data (parse error)".into()))
        );
        assert_eq!(
            parse_vector(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
            Err(FleetError::NotVector("matrix".into()))
        );
        let [q, ..] = queries("24h", Some("a\"b"));
        assert_eq!(
            q,
            "max by (instance, workload, kind, syscall) \
             (max_over_time(capmon_workload_syscall_observed{workload=\"a\\\"b\"}[24h]))"
        );
    }
}
