//! `capmon report` and `capmon profile`: clients of the daemon's API. The answers are
//! checked (a body that is not the JSON expected is an error, never an empty table) and
//! rendered as text.

use std::process::ExitCode;

use capmon_core::recommend::Format;
use serde_json::Value;

use super::{Outcome, client, runtime};

/// A daemon answer that is not what the API promises.
#[derive(Debug, thiserror::Error)]
#[error("capmon at {addr} answered {path} with {what}: {excerpt}")]
pub struct BadAnswer {
    addr: String,
    path: String,
    what: &'static str,
    excerpt: String,
}

/// `capmon report [--json] [CONTAINER]`.
pub fn report(addr: &str, json: bool, container: Option<&str>) -> Outcome {
    type Render = fn(&Value) -> String;
    let (path, key, render): (String, &str, Render) = match container {
        Some(c) => (
            format!("/v1/containers/{}", client::segment(c)),
            "container",
            render_one,
        ),
        None => ("/v1/containers".to_owned(), "containers", render_list),
    };
    let body = runtime()?.block_on(client::get(addr, &path))?;
    let value = checked(addr, &path, &body, key)?;
    if json {
        println!("{body}");
    } else {
        print!("{}", render(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// `capmon profile --format F CONTAINER`.
pub fn profile(addr: &str, format: Format, container: &str) -> Outcome {
    let path = format!(
        "/v1/containers/{}/recommendation?format={}",
        client::segment(container),
        format.name()
    );
    let body = runtime()?.block_on(client::get(addr, &path))?;
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// The body as JSON holding `key` (an array for `containers`, an object for `container`).
fn checked(addr: &str, path: &str, body: &str, key: &str) -> Result<Value, BadAnswer> {
    let bad = |what| BadAnswer {
        addr: addr.to_owned(),
        path: path.to_owned(),
        what,
        excerpt: body.chars().take(120).collect(),
    };
    let value: Value = serde_json::from_str(body).map_err(|_| bad("something that is not JSON"))?;
    let ok = match key {
        "containers" => value[key].is_array(),
        _ => value[key].is_object(),
    };
    if ok {
        Ok(value)
    } else {
        Err(bad("JSON without the expected field"))
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The container list as a table.
pub fn render_list(body: &Value) -> String {
    let mut out = format!(
        "{:<12}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
        "ID",
        "NAME",
        "RUNTIME",
        "STATE",
        "GRANTED",
        "USED",
        "UNUSED",
        "DENIED",
        "SYSCALLS",
        "POSTURE"
    );
    for c in body["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("-");
        let name: String = name.chars().take(20).collect();
        out.push_str(&format!(
            "{:<12}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
            c["short_id"].as_str().unwrap_or("?"),
            name,
            c["runtime"].as_str().unwrap_or("?"),
            if c["running"].as_bool().unwrap_or(false) {
                "running"
            } else {
                "exited"
            },
            strs(&c["granted"]).len(),
            strs(&c["used"]).len(),
            strs(&c["unused"]).len(),
            strs(&c["denied"]).len(),
            c["syscalls_used"].as_u64().unwrap_or(0),
            strs(&c["posture"]).join(","),
        ));
    }
    out
}

/// One container as text.
pub fn render_one(body: &Value) -> String {
    let c = &body["container"];
    let a = &body["analysis"];
    let list = |v: &Value| {
        let s = strs(v);
        if s.is_empty() {
            "(none)".to_owned()
        } else {
            s.join(", ")
        }
    };
    let mut out = format!(
        "container {} ({}), {} {}\n",
        c["name"].as_str().unwrap_or("-"),
        c["id"].as_str().unwrap_or("?"),
        c["runtime"].as_str().unwrap_or("?"),
        if c["running"].as_bool().unwrap_or(false) {
            "running"
        } else {
            "exited"
        }
    );
    out.push_str(&format!("granted:        {}\n", list(&c["granted"])));
    out.push_str(&format!("used:           {}\n", list(&a["used"])));
    out.push_str(&format!("denied:         {}\n", list(&a["denied"])));
    out.push_str(&format!("unused (drop):  {}\n", list(&a["unused"])));
    out.push_str(&format!("add:            {}\n", list(&a["add"])));
    out.push_str(&format!("recommended:    {}\n", list(&a["recommended"])));
    for w in a["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "warning [{}]: {}\n",
            w["code"].as_str().unwrap_or("?"),
            w["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "syscalls:       {} used\n",
        strs(&body["syscalls"]["used"]).len()
    ));
    for d in body["syscalls"]["denied"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "seccomp denied: {} {} x{}\n",
            d["name"].as_str().unwrap_or("?"),
            d["errno"].as_str().unwrap_or("?"),
            d["count"].as_u64().unwrap_or(0)
        ));
    }
    let would_deny: Vec<&str> = body["docker_default"]["replay"]["would_deny"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    if !would_deny.is_empty() {
        out.push_str(&format!(
            "Docker's default seccomp profile would deny: {}\n",
            would_deny.join(", ")
        ));
    }
    if let Some(why) = body["seccomp_profile_error"].as_str() {
        out.push_str(&format!("no seccomp profile: {why}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_answers_are_errors_naming_what_was_wrong() {
        let e = checked(
            "127.0.0.1:9477",
            "/v1/containers",
            "<html>oops</html>",
            "containers",
        )
        .expect_err("not JSON");
        assert!(e.to_string().contains("not JSON"), "{e}");
        assert!(e.to_string().contains("<html>oops"), "{e}");
        let e = checked("a", "/v1/containers", r#"{"items":[]}"#, "containers")
            .expect_err("no containers");
        assert!(e.to_string().contains("without the expected field"), "{e}");
        assert!(checked("a", "/v1/containers", r#"{"containers":[]}"#, "containers").is_ok());
        assert!(checked("a", "/v1/containers/x", r#"{"container":{}}"#, "container").is_ok());
    }

    #[test]
    fn renders_a_listing() {
        let v: Value = serde_json::from_str(
            r#"{"containers":[{"short_id":"0123456789ab","name":"web","runtime":"docker",
            "running":true,"granted":["CAP_CHOWN","CAP_KILL"],"used":["CAP_CHOWN"],
            "unused":["CAP_KILL"],"denied":[],"syscalls_used":42,"posture":["runs_as_root"]}]}"#,
        )
        .expect("json");
        let text = render_list(&v);
        let row = text.lines().nth(1).expect("one row");
        assert!(row.starts_with("0123456789ab  web"), "{text}");
        assert!(
            row.contains("running") && row.ends_with("runs_as_root"),
            "{text}"
        );
    }
}
