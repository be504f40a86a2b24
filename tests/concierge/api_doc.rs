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
    ("post", "/admin/conversations/{id}/attachments"),
    ("post", "/admin/conversations/{id}/close"),
    ("post", "/admin/conversations/{id}/notes"),
    ("post", "/admin/conversations/{id}/reply"),
    ("post", "/admin/conversations/{id}/typing"),
    ("get", "/admin/eval-runs"),
    ("get", "/admin/events"),
    ("post", "/admin/events/token"),
    ("get", "/admin/metrics"),
    ("post", "/admin/metrics/recompute"),
    ("get", "/admin/telegram/alerts"),
    ("delete", "/admin/users/{sub}"),
    ("get", "/admin/users/{sub}/export"),
    ("get", "/attachments/{id}"),
    ("get", "/conversations"),
    ("post", "/conversations"),
    ("get", "/conversations/{id}"),
    ("get", "/conversations/{id}/actions"),
    ("post", "/conversations/{id}/actions/{name}/execute"),
    ("post", "/conversations/{id}/attachments"),
    ("post", "/conversations/{id}/close"),
    ("post", "/conversations/{id}/email-reply"),
    ("post", "/conversations/{id}/escalate"),
    ("get", "/conversations/{id}/messages"),
    ("post", "/conversations/{id}/messages"),
    ("post", "/conversations/{id}/rate"),
    ("get", "/conversations/{id}/stream"),
    ("post", "/conversations/{id}/stream-token"),
    ("get", "/knowledge/documents"),
    ("get", "/knowledge/drafts"),
    ("get", "/knowledge/drafts/{id}"),
    ("patch", "/knowledge/drafts/{id}"),
    ("post", "/knowledge/drafts/{id}/approve"),
    ("post", "/knowledge/drafts/{id}/discard"),
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
    for schema in ["MessageOut", "AttachmentOut", "ConversationOut", "ErrorBody", "MetricsOut", "ActionRun"] {
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

/// The document states what the handlers enforce: optional authentication where a visitor may
/// call anonymously, every error status a route can answer, and the constraints on inputs.
#[tokio::test]
async fn the_openapi_document_states_auth_statuses_and_constraints() {
    let app = TestApp::spawn_with(|config| config.max_message_chars = 1234).await;
    let (_, document) = app.get(None, "/openapi.json").await;
    let operations: Vec<(String, String, &Value)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().iter().map(move |(method, operation)| (method.clone(), path.clone(), operation))
        })
        .collect();
    let security = |operation: &Value| operation.get("security").cloned().unwrap_or(document["security"].clone());
    let optional = serde_json::json!([{}, { "bearer": [] }]);
    let anonymous = serde_json::json!([{}]);
    for (method, path, operation) in &operations {
        let route = format!("{method} {path}");
        let statuses: BTreeSet<&str> = operation["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        let has = |status: &str| statuses.contains(status);
        let auth = security(operation);
        match (method.as_str(), path.as_str()) {
            ("post", "/conversations") | ("get", "/conversations/{id}/stream") | ("get", "/admin/events") => {
                assert_eq!(auth, optional, "{route}")
            }
            ("get", "/openapi.json") | ("post", "/telegram/webhook") | ("get", "/attachments/{id}") => {
                assert_eq!(auth, anonymous, "{route}")
            }
            _ => assert_eq!(auth, serde_json::json!([{ "bearer": [] }]), "{route}"),
        }
        if auth != anonymous {
            assert!(has("401"), "{route} answers 401");
        }
        if path.starts_with("/admin/") || path.starts_with("/knowledge/") {
            assert!(has("403"), "{route} answers 403 to non-administrators");
        } else if auth != anonymous {
            assert!(has("429"), "{route} may be rate limited");
        }
        let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
        if parameters.iter().any(|p| p["in"] == "path" || p["in"] == "query") {
            assert!(has("400"), "{route} answers 400 to a malformed parameter");
        }
        for parameter in parameters.iter().filter(|p| p["in"] == "path" && p["name"] == "id") {
            assert_eq!(parameter["schema"]["format"], "uuid", "{route}");
        }
        if let Some(body) = operation.get("requestBody") {
            // A file is uploaded as a form; every other body is JSON.
            let expected = if path.ends_with("/{id}/attachments") { "multipart/form-data" } else { "application/json" };
            assert!(body["content"].get(expected).is_some(), "{route}");
            for status in ["413", "422"] {
                assert!(has(status), "{route} answers {status}");
            }
            if *path != "/telegram/webhook" {
                assert!(has("415"), "{route} answers 415 to a body of another type");
            }
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{route} {status}"
                );
            }
        }
    }

    let schemas = &document["components"]["schemas"];
    // `deny_unknown_fields` is stated.
    for input in [
        "CreateConversationIn",
        "PostMessageIn",
        "RateIn",
        "ExecuteIn",
        "PatchActionIn",
        "ReplyIn",
        "NoteIn",
        "RecomputeIn",
        "DraftPatchIn",
    ] {
        assert_eq!(schemas[input]["additionalProperties"], false, "{input}: {}", schemas[input]);
    }
    let property = |schema: &str, name: &str| schemas[schema]["properties"][name].clone();
    assert_eq!(property("PostMessageIn", "content")["maxLength"], 1234);
    // The text may be empty when files are sent.
    assert!(property("PostMessageIn", "content").get("minLength").is_none());
    assert_eq!(property("PostMessageIn", "attachment_ids")["maxItems"], 5);
    assert_eq!(property("ReplyIn", "content")["maxLength"], 1234);
    assert_eq!(property("ReplyIn", "attachment_ids")["maxItems"], 5);
    // Messages list their files, each with a link.
    assert_eq!(schemas["MessageOut"]["properties"]["attachments"]["type"], "array", "{}", schemas["MessageOut"]);
    assert!(schemas["MessageAttachmentOut"]["required"].as_array().unwrap().contains(&"url".into()));
    assert_eq!(property("PostMessageIn", "client_message_id")["maxLength"], 100);
    assert_eq!(property("CreateConversationIn", "page_url")["maxLength"], 2048);
    assert!(property("CreateConversationIn", "page_url")["pattern"].is_string());
    assert_eq!(property("RateIn", "rating")["minimum"], 1);
    assert_eq!(property("RateIn", "rating")["maximum"], 5);
    assert_eq!(property("RateIn", "comment")["maxLength"], 2000);
    assert_eq!(property("RecomputeIn", "from")["format"], "date");

    let parameter = |method: &str, path: &str, name: &str| {
        document["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} {name}"))["schema"]
            .clone()
    };
    let limit = parameter("get", "/conversations", "limit");
    assert_eq!((limit["minimum"].clone(), limit["maximum"].clone()), (1.into(), 100.into()));
    assert_eq!(parameter("get", "/conversations/{id}/messages", "after")["minimum"], 0);
    assert_eq!(parameter("get", "/conversations/{id}/messages", "limit")["maximum"], 500);
    assert_eq!(parameter("get", "/admin/conversations", "from")["format"], "date");
    assert_eq!(parameter("get", "/admin/conversations", "rating")["maximum"], 5);
    let modes = parameter("get", "/admin/conversations", "mode");
    assert!(modes.to_string().contains("\"human\"") && modes.to_string().contains("\"ai\""), "{modes}");
    assert_eq!(parameter("get", "/knowledge/search", "q")["maxLength"], 1000);
    assert_eq!(parameter("get", "/admin/eval-runs", "limit")["maximum"], 200);
    // A rate-limited answer says when to retry.
    let too_many = &document["paths"]["/conversations"]["post"]["responses"]["429"];
    assert!(too_many["headers"].get("Retry-After").is_some(), "{too_many}");
}
