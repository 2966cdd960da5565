//! The chart's monitoring: its alerts pass promtool and their unit tests,
//! and every metric its alerts and dashboard query is one menshen exports.

use std::collections::BTreeSet;
use std::process::Command;

use menshen_e2e::Menshen;
use serde_json::Value;

use super::*;

#[test]
fn alerts_pass_promtool_and_their_unit_tests() {
    let Some(helm) = helm() else { return };
    let Some(promtool) = tool("MENSHEN_PROMTOOL", "promtool") else {
        return;
    };
    let manifests = render(&helm, &None, &["--set", "prometheusRule.enabled=true"]);
    let rules = spec_of(only(&manifests, "PrometheusRule"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), &rules).unwrap();
    let tests = std::fs::read_to_string(chart().join("tests/rules-test.yaml")).unwrap();
    std::fs::write(dir.path().join("rules-test.yaml"), &tests).unwrap();

    let output = run(Command::new(&promtool)
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path()));
    assert!(output.status.success(), "{}\n{rules}", text(&output));
    let output = run(Command::new(&promtool)
        .args(["test", "rules", "rules-test.yaml"])
        .current_dir(dir.path()));
    assert!(output.status.success(), "{}", text(&output));

    // Each alert has a unit test, and can be switched off by name.
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 11, "{rules}");
    let schema = std::fs::read_to_string(chart().join("values.schema.json")).unwrap();
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "no unit test for {alert}"
        );
        assert!(
            schema.contains(&format!("\"{alert}\"")),
            "prometheusRule.disabled lacks {alert}"
        );
        let one_off = format!("prometheusRule.disabled.{alert}=true");
        let without = render(
            &helm,
            &None,
            &["--set", "prometheusRule.enabled=true", "--set", &one_off],
        );
        assert!(!without.contains(&format!("- alert: {alert}\n")));
    }
}

/// The `menshen_*` names in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("menshen_") {
        let start = i + at;
        let preceded = start > 0 && {
            let b = bytes[start - 1];
            b.is_ascii_alphanumeric() || b == b'_' || b == b'"'
        };
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if !preceded {
            into.insert(expr[start..end].to_owned());
        }
        i = end;
    }
}

/// Every string under a key named `expr` or `query` in the dashboard.
fn dashboard_queries(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => into.push(s.clone()),
                    _ => dashboard_queries(v, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn metrics_queried_by_rules_and_dashboard_exist() {
    let Some(helm) = helm() else { return };
    let manifests = render(&helm, &None, MONITORING);

    let mut wanted = BTreeSet::new();
    let rules = spec_of(only(&manifests, "PrometheusRule"));
    for line in rules.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr: ") {
            metric_names(expr, &mut wanted);
        }
    }
    let dashboard_map = documents(&manifests)
        .into_iter()
        .filter(|d| kind_of(d) == "ConfigMap")
        .find(|d| d.contains("grafana_dashboard: \"1\""))
        .expect("dashboard ConfigMap");
    let dashboard: Value =
        serde_json::from_str(&block_after(dashboard_map, "  menshen.json: |").expect("json"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() > 10, "{queries:?}");
    for q in &queries {
        metric_names(q, &mut wanted);
    }
    assert!(wanted.len() >= 8, "{wanted:?}");

    // A real menshen, after a few requests (label sets of request metrics
    // exist once requests were made).
    let example = repo().join("examples/menshen.toml");
    let menshen = Menshen::start(&["--config", example.to_str().unwrap()]);
    for path in ["/provider.json", "/readyz", "/api/5/gateways"] {
        reqwest::get(format!("{}{path}", menshen.url))
            .await
            .expect("request");
    }
    let exposition = reqwest::get(format!("{}/metrics", menshen.metrics_url))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the chart's alerts or dashboard query metrics menshen does not export \
         (charts/menshen/METRICS.md says what each must be): {missing:?}\nexported: {exported:?}"
    );
}
