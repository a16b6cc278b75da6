//! `capmon report --workloads [NAME]` and `capmon profile --workload NAME`: the daemon's
//! workloads (containers merged by `capmon_core::workload`'s rules), as tables.

use std::process::ExitCode;

use capmon_core::{recommend::Format, seccomp::ArchList};
use serde_json::Value;

use super::{
    Outcome, client,
    report::{arch_query, checked, strs},
    runtime, table,
};

/// `capmon report --workloads [--json] [NAME]`.
pub fn report(api: &client::Daemon, json: bool, name: Option<&str>) -> Outcome {
    let (path, key) = match name {
        Some(n) => (format!("/v1/workloads/{}", client::segment(n)), "workload"),
        None => ("/v1/workloads".to_owned(), "workloads"),
    };
    let body = runtime()?.block_on(api.get(&path))?;
    let value = checked(&api.addr, &path, &body, key)?;
    if json {
        println!("{body}");
    } else if name.is_some() {
        print!("{}", render_one(&value));
    } else {
        table::print(&render_list(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// `capmon profile --workload NAME --format F [--arch LIST]`.
pub fn profile(
    api: &client::Daemon,
    format: Format,
    arch: Option<&ArchList>,
    name: &str,
) -> Outcome {
    let path = format!(
        "/v1/workloads/{}/recommendation?format={}{}",
        client::segment(name),
        format.name(),
        arch_query(arch)
    );
    let body = runtime()?.block_on(api.get(&path))?;
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// The workload list as a table.
pub fn render_list(body: &Value) -> String {
    let mut out = format!(
        "{:<40}  {:<11}  {:>10}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}\n",
        "WORKLOAD", "KIND", "CONTAINERS", "GRANTED", "USED", "UNUSED", "DENIED", "SYSCALLS"
    );
    for w in body["workloads"].as_array().into_iter().flatten() {
        let c = &w["containers"];
        out.push_str(&format!(
            "{:<40}  {:<11}  {:>10}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}\n",
            w["name"].as_str().unwrap_or("?"),
            w["kind"].as_str().unwrap_or("?"),
            format!(
                "{}/{}",
                c["running"].as_u64().unwrap_or(0),
                c["total"].as_u64().unwrap_or(0)
            ),
            strs(&w["granted"]).len(),
            strs(&w["used"]).len(),
            strs(&w["unused"]).len(),
            strs(&w["denied"]).len(),
            strs(&w["syscalls"]).len(),
        ));
    }
    out
}

/// Coverage entries as `name (n/of)`.
fn covered(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} ({}/{})",
                c["name"].as_str().unwrap_or("?"),
                c["containers"].as_u64().unwrap_or(0),
                c["of"].as_u64().unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One workload as text: its containers, capabilities, and coverage.
pub fn render_one(body: &Value) -> String {
    let w = &body["workload"];
    let mut out = format!(
        "workload {} ({}): {} containers, {} running\n",
        w["name"].as_str().unwrap_or("?"),
        w["kind"].as_str().unwrap_or("?"),
        w["containers"]["total"].as_u64().unwrap_or(0),
        w["containers"]["running"].as_u64().unwrap_or(0)
    );
    for (label, key) in [
        ("granted", "granted"),
        ("used", "used"),
        ("unused", "unused"),
        ("denied", "denied"),
    ] {
        out.push_str(&format!("  {label:<8} {}\n", strs(&w[key]).join(" ")));
    }
    out.push_str(&format!(
        "  capabilities used by (containers of the workload): {}\n",
        covered(&body["coverage"]["capabilities"])
    ));
    out.push_str(&format!(
        "  syscalls made by: {}\n",
        covered(&body["coverage"]["syscalls"])
    ));
    let incomplete = strs(&body["incomplete"]);
    if !incomplete.is_empty() {
        out.push_str(&format!(
            "  no profile: capmon did not see these containers start: {}\n",
            incomplete.join(", ")
        ));
    }
    out.push_str("  containers:\n");
    for m in body["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {:<12}  {:<30}  {}\n",
            m["short_id"].as_str().unwrap_or("?"),
            m["name"].as_str().unwrap_or("-"),
            if m["running"].as_bool().unwrap_or(false) {
                "running"
            } else {
                "exited"
            }
        ));
    }
    out
}
