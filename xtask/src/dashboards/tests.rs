//! Unit tests of [`super`] (dashboards.rs).

use super::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn ok_dashboard() -> Value {
    serde_json::json!({
        "uid": "t", "title": "T", "schemaVersion": 39,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "node", "type": "query", "query": "label_values(x, instance)",
             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        ]},
        "panels": [
            {"id": 1, "type": "stat", "title": "a",
             "targets": [{"refId": "A", "expr": "up{instance=~\"$node\"}"}]},
            {"id": 2, "type": "row", "title": "r", "collapsed": true, "panels": [
                {"id": 3, "type": "timeseries", "title": "b",
                 "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "targets": [{"refId": "A", "expr": "rate(x[1m])"},
                             {"refId": "B", "expr": "rate(y[1m])"}]}
            ]}
        ]
    })
}

#[test]
fn shipped_dashboards_pass_the_json_lint() {
    let dashboards = load(&repo_root()).expect("dashboards load");
    assert!(dashboards.len() >= 3);
    let problems: Vec<String> = dashboards
        .iter()
        .flat_map(|d| lint(&d.file, &d.json))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn panel_queries_include_nested_panels_and_only_known_variables() {
    let queries = panel_queries(&repo_root()).expect("queries");
    for file in [
        "capmon-fleet.json",
        "capmon-container.json",
        "capmon-daemon.json",
        "capmon-workloads.json",
    ] {
        assert!(queries.iter().any(|q| q.0 == file), "no query from {file}");
    }
    // The daemon version table sits in a collapsed row.
    assert!(queries.iter().any(|(f, t, e)| f == "capmon-daemon.json"
        && t == "Daemon version"
        && e.contains("capmon_build_info")));
    for (file, title, expr) in &queries {
        assert!(!expr.trim().is_empty(), "{file} {title}");
        assert!(!expr.contains("$__"), "{file} {title}: {expr}");
        if file == "capmon-container.json" && !title.is_empty() {
            assert!(
                expr.contains(r#"instance=~"$node", name=~"$container""#),
                "{title}: {expr}"
            );
        }
    }
}

#[test]
fn lint_accepts_a_good_dashboard_and_lists_nested_queries() {
    assert_eq!(lint("t.json", &ok_dashboard()), Vec::<String>::new());
    let panels = all_panels(&ok_dashboard()).len();
    assert_eq!(panels, 3);
}

#[test]
fn lint_reports_each_problem() {
    let mut d = ok_dashboard();
    d["uid"] = "".into();
    d.as_object_mut().expect("object").remove("title");
    d["panels"][1]["panels"][0]["id"] = 1.into(); // duplicate, nested
    d["panels"][1]["panels"][0]["targets"][1]["expr"] = " ".into();
    d["panels"][0]["targets"][0]["expr"] = "rate(x[$__rate_interval])".into();
    d["panels"][0]["datasource"] = serde_json::json!({"type": "prometheus", "uid": "abc"});
    let problems = lint("t.json", &d);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("`uid` is missing"), "{problems:#?}");
    assert!(has("`title` is missing"), "{problems:#?}");
    assert!(has("reuses id 1"), "{problems:#?}");
    assert!(has("`expr` is missing or empty"), "{problems:#?}");
    assert!(has("`$__rate_interval`"), "{problems:#?}");
    assert!(has("datasource must be"), "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("dashboards/t.json: "))
    );
}

#[test]
fn lint_requires_used_variables_to_be_defined() {
    let mut d = ok_dashboard();
    d["panels"][0]["targets"][0]["expr"] = "up{name=~\"${container:regex}\"}".into();
    let problems = lint("t.json", &d);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`$container` but the dashboard defines no such")),
        "{problems:#?}"
    );
}

#[test]
fn referenced_variables_forms() {
    assert_eq!(
        referenced_variables(r#"x{a=~"$node", b=~"${container}", c=~"${x:csv}", d=~".*$"}"#),
        ["node", "container", "x"]
    );
}

#[test]
fn module_keeps_json_line_numbers() {
    let src = module_source("{\n  \"a\": 1\n}\n");
    assert!(src.starts_with(IMPORT_LINE));
    assert_eq!(src.lines().nth(1), Some("  \"a\": 1"));
}

/// The full check, npm and tsc included (needs Node.js and the npm registry once).
#[test]
#[ignore = "installs npm packages and runs tsc"]
fn full_check_passes() {
    check(&repo_root()).expect("dashboards check");
}
