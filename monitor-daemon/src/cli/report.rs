//! `capmon report` and `capmon profile`: clients of the daemon's API. The answers are
//! checked (a body that is not the JSON expected is an error, never an empty table) and
//! rendered as text.

use std::process::ExitCode;

use capmon_core::{recommend::Format, seccomp::ArchList};
use serde_json::Value;

use super::{Outcome, client, runtime, table};

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
pub fn report(api: &client::Daemon, json: bool, container: Option<&str>) -> Outcome {
    let (path, key) = match container {
        Some(c) => (
            format!("/v1/containers/{}", client::segment(c)),
            "container",
        ),
        None => ("/v1/containers".to_owned(), "containers"),
    };
    let body = runtime()?.block_on(api.get(&path))?;
    let value = checked(&api.addr, &path, &body, key)?;
    if json {
        println!("{body}");
    } else if container.is_some() {
        // All of it: a detail cut to the terminal would hide capabilities.
        print!("{}", render_one(&value));
    } else {
        table::print(&render_list(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// `capmon profile --format F [--arch LIST] CONTAINER`.
pub fn profile(
    api: &client::Daemon,
    format: Format,
    arch: Option<&ArchList>,
    container: &str,
) -> Outcome {
    let path = format!(
        "/v1/containers/{}/recommendation?format={}{}",
        client::segment(container),
        format.name(),
        arch_query(arch)
    );
    let body = runtime()?.block_on(api.get(&path))?;
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// `&arch=LIST` for `--arch LIST`, nothing without it (the daemon's own architecture).
pub(super) fn arch_query(arch: Option<&ArchList>) -> String {
    arch.map(|a| format!("&arch={a}")).unwrap_or_default()
}

/// The body as JSON holding `key` (an array for `containers`, an object for `container`).
pub(super) fn checked(addr: &str, path: &str, body: &str, key: &str) -> Result<Value, BadAnswer> {
    let bad = |what| BadAnswer {
        addr: addr.to_owned(),
        path: path.to_owned(),
        what,
        excerpt: body.chars().take(120).collect(),
    };
    let value: Value = serde_json::from_str(body).map_err(|_| bad("something that is not JSON"))?;
    let ok = match key {
        "containers" | "workloads" => value[key].is_array(),
        _ => value[key].is_object(),
    };
    if ok {
        Ok(value)
    } else {
        Err(bad("JSON without the expected field"))
    }
}

pub(super) fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The container list as a table: each id as its shortest unique prefix (12 digits at least,
/// as Docker shows them); `-` for counts that are unknown (the granted set never read).
pub fn render_list(body: &Value) -> String {
    let containers: Vec<&Value> = body["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let ids: Vec<&str> = containers
        .iter()
        .map(|c| c["id"].as_str().or(c["short_id"].as_str()).unwrap_or("?"))
        .collect();
    let shown = capmon_core::lookup::unique_prefixes(&ids, capmon_core::lookup::SHORT_ID);
    let width = shown.iter().map(|s| s.len()).max().unwrap_or(0).max(12);
    let mut out = format!(
        "{:<width$}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
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
    for (c, id) in containers.into_iter().zip(&shown) {
        let name = c["name"].as_str().unwrap_or("-");
        let name: String = name.chars().take(20).collect();
        // A daemon from before `posture_read` existed: its counts as they are.
        let read = c["posture_read"].as_bool().unwrap_or(true);
        let known = |n: usize| if read { n.to_string() } else { "-".to_owned() };
        out.push_str(&format!(
            "{:<width$}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
            id,
            name,
            c["runtime"].as_str().unwrap_or("?"),
            if c["running"].as_bool().unwrap_or(false) {
                "running"
            } else {
                "exited"
            },
            known(strs(&c["granted"]).len()),
            strs(&c["used"]).len(),
            known(strs(&c["unused"]).len()),
            strs(&c["denied"]).len(),
            c["syscalls_used"].as_u64().unwrap_or(0),
            strs(&c["posture"]).join(","),
        ));
    }
    out
}

/// Why a container's granted set can be unknown.
const UNREAD: &str = "capmon saw neither its first program start (it started before capmon, \
                      or the event was lost) nor a process of it running to read";

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
    out.push_str(&identity(c));
    let read = c["posture_read"].as_bool().unwrap_or(true);
    if read {
        out.push_str(&format!("granted:        {}\n", list(&c["granted"])));
    } else {
        out.push_str(&format!("granted:        unknown: {UNREAD}\n"));
    }
    out.push_str(&format!("used:           {}\n", list(&a["used"])));
    out.push_str(&format!("denied:         {}\n", list(&a["denied"])));
    if read {
        out.push_str(&format!("unused (drop):  {}\n", list(&a["unused"])));
    } else {
        out.push_str("unused (drop):  unknown (the granted set is)\n");
    }
    out.push_str(&format!("add:            {}\n", list(&a["add"])));
    // Each recommended capability with how sure the advice is of it.
    let marked: Vec<String> = strs(&a["recommended"])
        .into_iter()
        .map(|cap| match a["basis"][cap].as_str() {
            Some(basis) => format!("{cap} ({basis})"),
            None => cap.to_owned(),
        })
        .collect();
    out.push_str(&format!(
        "recommended:    {}\n",
        if marked.is_empty() {
            "(none)".to_owned()
        } else {
            marked.join(", ")
        }
    ));
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
    out.push_str(&applied(&body["applied"]));
    out
}

/// Image, compose and Kubernetes names, when known.
fn identity(c: &Value) -> String {
    let mut out = String::new();
    if let Some(image) = c["image"].as_str() {
        out.push_str(&format!("image:          {image}\n"));
    }
    if let (Some(p), Some(s)) = (c["compose_project"].as_str(), c["compose_service"].as_str()) {
        out.push_str(&format!("compose:        project {p}, service {s}\n"));
    }
    if let Some(pod) = c["pod"].as_str() {
        let role = match c["sandbox"].as_bool() {
            Some(true) => "the pod's sandbox".to_owned(),
            _ => format!("container {}", c["k8s_container"].as_str().unwrap_or("-")),
        };
        out.push_str(&format!(
            "kubernetes:     pod {}/{pod}, {role}\n",
            c["namespace"].as_str().unwrap_or("-")
        ));
    }
    out
}

/// What the runtime applied, and the container's syscalls against its seccomp profile.
fn applied(a: &Value) -> String {
    if a.is_null() {
        return "applied:        unknown (no OCI spec was read for it)\n".to_owned();
    }
    let mut out = format!(
        "applied:        bounding {}; uid {}; no_new_privileges {}; {}\n",
        strs(&a["capabilities"]["bounding"]).len(),
        a["uid"],
        a["no_new_privileges"],
        a["apparmor_profile"]
            .as_str()
            .or(a["selinux_label"].as_str())
            .map_or("no LSM profile".to_owned(), |l| format!("LSM {l}"))
    );
    let s = &a["seccomp"];
    if s.is_null() {
        out.push_str("applied seccomp: none\n");
        return out;
    }
    let denied: Vec<&str> = s["would_deny"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["syscall"].as_str())
        .collect();
    out.push_str(&format!(
        "applied seccomp: default {}, {} allowed, {} of them never made; would deny: {}\n",
        s["default_action"].as_str().unwrap_or("?"),
        s["allowed"].as_u64().unwrap_or(0),
        strs(&s["allowed_unused"]).len(),
        if denied.is_empty() {
            "nothing it did".to_owned()
        } else {
            denied.join(", ")
        }
    ));
    let args = strs(&s["depends_on_arguments"]);
    if !args.is_empty() {
        out.push_str(&format!(
            "applied seccomp allows only for some arguments: {}\n",
            args.join(", ")
        ));
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
    fn renders_names_and_what_the_runtime_applied() {
        let v: Value = serde_json::from_str(
            r#"{"container":{"id":"abc","name":"shop-web-1","runtime":"docker","running":false,
              "image":"busybox","compose_project":"shop","compose_service":"web",
              "pod":"web-0","namespace":"prod","k8s_container":"app","sandbox":false},
              "analysis":{},"syscalls":{},
              "applied":{"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"]},"uid":0,
                "no_new_privileges":true,"apparmor_profile":null,"selinux_label":null,
                "seccomp":{"default_action":"SCMP_ACT_ERRNO","allowed":300,
                  "allowed_unused":["a","b"],"would_deny":[{"syscall":"fchownat"}]}}}"#,
        )
        .expect("json");
        let text = render_one(&v);
        assert!(
            text.contains("compose:        project shop, service web\n"),
            "{text}"
        );
        assert!(
            text.contains("kubernetes:     pod prod/web-0, container app\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "applied:        bounding 2; uid 0; no_new_privileges true; no LSM profile\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "default SCMP_ACT_ERRNO, 300 allowed, 2 of them never made; would deny: fchownat\n"
            ),
            "{text}"
        );
        let none: Value = serde_json::from_str(r#"{"container":{},"applied":null}"#).expect("json");
        assert!(render_one(&none).contains("applied:        unknown"));
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

    #[test]
    fn unknown_counts_are_not_zero_and_ids_stay_unique() {
        let v: Value = serde_json::from_str(
            r#"{"containers":[
            {"id":"cab000000000a1","short_id":"cab000000000","name":"a","runtime":"docker",
             "running":true,"posture_read":false,"granted":[],"used":["CAP_CHOWN"],"unused":[],
             "denied":[],"syscalls_used":3,"posture":[]},
            {"id":"cab000000000b2","short_id":"cab000000000","name":"b","runtime":"docker",
             "running":true,"posture_read":true,"granted":[],"used":[],"unused":[],
             "denied":[],"syscalls_used":3,"posture":[]}]}"#,
        )
        .expect("json");
        let text = render_list(&v);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][0], "ID");
        // ID NAME RUNTIME STATE GRANTED USED UNUSED ...
        assert_eq!(
            rows[1][..7],
            ["cab000000000a", "a", "docker", "running", "-", "1", "-"]
        );
        assert_eq!(
            rows[2][..7],
            ["cab000000000b", "b", "docker", "running", "0", "0", "0"]
        );
        let one: Value = serde_json::from_str(
            r#"{"container":{"id":"cab000000000a1","posture_read":false,"granted":[]},
              "analysis":{"used":["CAP_CHOWN"],"unused":[]},"syscalls":{}}"#,
        )
        .expect("json");
        let text = render_one(&one);
        assert!(
            text.contains("granted:        unknown: capmon saw neither"),
            "{text}"
        );
        assert!(text.contains("unused (drop):  unknown"), "{text}");
        assert!(text.contains("used:           CAP_CHOWN\n"), "{text}");
    }
}
