//! The OpenAPI document describes every route of the API, and the Prometheus endpoint counts.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// Every route of `/api/concierge`, as the router serves it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/admin/action-runs"),
    ("get", "/admin/actions"),
    ("patch", "/admin/actions/{name}"),
    ("get", "/admin/conversations"),
    ("get", "/admin/conversations/{id}"),
    ("post", "/admin/conversations/{id}/ai"),
    ("post", "/admin/conversations/{id}/close"),
    ("post", "/admin/conversations/{id}/notes"),
    ("post", "/admin/conversations/{id}/reply"),
    ("post", "/admin/conversations/{id}/typing"),
    ("get", "/admin/eval-runs"),
    ("get", "/admin/events"),
    ("post", "/admin/events/token"),
    ("get", "/admin/metrics"),
    ("post", "/admin/metrics/recompute"),
    ("delete", "/admin/users/{sub}"),
    ("get", "/admin/users/{sub}/export"),
    ("get", "/conversations"),
    ("post", "/conversations"),
    ("get", "/conversations/{id}"),
    ("get", "/conversations/{id}/actions"),
    ("post", "/conversations/{id}/actions/{name}/execute"),
    ("post", "/conversations/{id}/close"),
    ("post", "/conversations/{id}/escalate"),
    ("get", "/conversations/{id}/messages"),
    ("post", "/conversations/{id}/messages"),
    ("post", "/conversations/{id}/rate"),
    ("get", "/conversations/{id}/stream"),
    ("post", "/conversations/{id}/stream-token"),
    ("get", "/knowledge/documents"),
    ("post", "/knowledge/reindex"),
    ("get", "/knowledge/reindex/{id}"),
    ("get", "/knowledge/search"),
    ("get", "/openapi.json"),
    ("post", "/telegram/webhook"),
];

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = TestApp::spawn().await;
    let (status, document) = app.get(None, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);
    // Each documented route is served: none falls through to the router's fallback.
    for (method, path) in ROUTES {
        let url = app.url(
            &path.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{name}", "x").replace("{sub}", "anna"),
        );
        let request = match *method {
            "get" => app.client.get(&url),
            "post" => app.client.post(&url),
            "delete" => app.client.delete(&url),
            _ => app.client.patch(&url),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "not found" && *path == "/openapi.json"),
            "{method} {path}"
        );
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in ["MessageOut", "ConversationOut", "ErrorBody", "MetricsOut", "ActionRun"] {
        assert!(schemas.contains_key(schema), "{schema} is described");
    }
    // A message's metadata has one documented shape per kind, tagged by `kind`.
    assert_eq!(schemas["MessageOut"]["properties"]["metadata"]["$ref"], "#/components/schemas/MessageMeta");
    let meta = &schemas["MessageMeta"];
    let kinds: BTreeSet<&str> = meta["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{meta}"))
        .iter()
        .flat_map(|variant| variant_kinds(variant, schemas))
        .collect();
    let expected = BTreeSet::from(["action_result", "answer", "clarify", "error", "operator", "status"]);
    assert_eq!(kinds, expected, "{meta}");
}

/// The values a variant of a `kind`-tagged schema gives `kind`, looking through `allOf` and
/// references.
fn variant_kinds<'a>(schema: &'a Value, schemas: &'a serde_json::Map<String, Value>) -> Vec<&'a str> {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        return variant_kinds(&schemas[name], schemas);
    }
    let mut kinds: Vec<&str> =
        schema["properties"]["kind"]["enum"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        kinds.extend(variant_kinds(part, schemas));
    }
    kinds
}

#[tokio::test]
async fn prometheus_metrics_count_requests() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    app.say(&conversation, "Здравствуйте").await;
    let text = app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("concierge_queue_jobs"), "{text}");
    assert!(text.contains("concierge_http_requests_total"), "{text}");
}

#[tokio::test]
async fn a_metrics_token_keeps_prometheus_figures_private() {
    const TOKEN: &str = "metrics-token-0123456789abcdef";
    let app = TestApp::spawn_with(|config| config.metrics_token = Some(TOKEN.into())).await;
    let url = format!("http://{}/metrics", app.addr);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong = app.client.get(&url).bearer_auth("metrics-token-0123456789abcdeX").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = app.client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await.unwrap().contains("concierge_http_requests_total"));
}
