//! What browsers load: every page carries a Content-Security-Policy that runs no inline script
//! and reaches only its own origin, and knowledge pages keep only web and relative links.

use reqwest::{StatusCode, header::CONTENT_SECURITY_POLICY};

use crate::helpers::TestApp;

/// The directives of a policy, by name.
fn directives(policy: &str) -> std::collections::BTreeMap<String, String> {
    policy
        .split(';')
        .filter_map(|d| d.trim().split_once(' ').map(|(name, value)| (name.to_owned(), value.trim().to_owned())))
        .collect()
}

async fn policy_of(client: &reqwest::Client, url: &str) -> (String, String) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let policy = response
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{url} sends no Content-Security-Policy"))
        .to_str()
        .unwrap()
        .to_owned();
    (policy, response.text().await.unwrap())
}

/// No `<script>` with a body and no `<style>`/`style=` where the policy has no hash for it.
fn assert_no_inline_code(url: &str, html: &str) {
    for (at, _) in html.match_indices("<script") {
        let tag_end = at + html[at..].find('>').unwrap();
        let tag = &html[at..=tag_end];
        let closed = html[tag_end + 1..].trim_start().starts_with("</script>");
        assert!(tag.contains("src=") && closed || tag.contains("application/json"), "{url}: inline script {tag}");
    }
    assert!(!html.contains(" style=\""), "{url}: a style attribute");
}

#[tokio::test]
async fn pages_send_a_content_security_policy() {
    let app = TestApp::spawn().await;
    let base = format!("http://{}", app.addr);

    let (policy, html) = policy_of(&app.client, &format!("{base}/admin/")).await;
    let console = directives(&policy);
    assert_eq!(console["script-src"], "'self'", "{policy}");
    assert_eq!(console["style-src"], "'self'", "{policy}");
    assert_eq!(console["connect-src"], "'self'", "{policy}");
    assert_eq!(console["frame-ancestors"], "'none'", "{policy}");
    assert_eq!(console["default-src"], "'none'", "{policy}");
    assert_no_inline_code("/admin/", &html);
    assert!(!html.contains("<style"), "/admin/ has an inline style sheet");

    let (policy, html) = policy_of(&app.client, &format!("{base}/admin/api")).await;
    let reference = directives(&policy);
    assert_eq!(reference["script-src"], "'self'", "{policy}");
    // The console shows the reference in a frame of its own origin; nobody else may.
    assert_eq!(reference["frame-ancestors"], "'self'", "{policy}");
    assert_no_inline_code("/admin/api", &html);

    let (policy, html) = policy_of(&app.client, &format!("{base}/kb/faq/payment-methods.md")).await;
    let page = directives(&policy);
    assert!(!page.contains_key("script-src") && page["default-src"] == "'none'", "{policy}");
    // The one inline style sheet is allowed by its hash.
    assert!(page["style-src"].starts_with("'sha256-"), "{policy}");
    assert_eq!(html.matches("<style>").count(), 1);
    assert!(!html.contains("<script"));
}

#[tokio::test]
async fn the_demo_page_runs_no_inline_script() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, concierge::demo_site::router(Vec::new())).await });
    let client = reqwest::Client::new();
    let (policy, html) = policy_of(&client, &format!("{base}/")).await;
    let demo = directives(&policy);
    assert_eq!(demo["script-src"], "'self'", "{policy}");
    assert_eq!(demo["style-src"], "'self'", "{policy}");
    assert_eq!(demo["connect-src"], "'self'", "{policy}");
    assert_no_inline_code("/", &html);
    assert!(!html.contains("<style"), "the demo page has an inline style sheet");
    // What it links to is served.
    for file in ["/demo/demo.js", "/demo/demo.css"] {
        assert!(html.contains(file), "{file}");
        let response = client.get(format!("{base}{file}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
    }
    server.abort();
}

#[tokio::test]
async fn knowledge_pages_keep_only_web_and_relative_links() {
    let dir = std::env::temp_dir().join(format!("concierge-kb-links-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("faq")).unwrap();
    std::fs::write(
        dir.join("faq/links.md"),
        "---\ntitle: Ссылки\ncategory: faq\ntags: [ссылки]\nlanguage: ru\nupdated: 2026-11-01\n---\n\n# Ссылки\n\n\
         Откройте [настройки](https://lectio.example.com/settings), [оплату](/kb/faq/payment.md) или\n\
         [раздел](#ниже). Не [это](javascript:alert(1)), не [то](JAVASCRIPT:alert(2)), не\n\
         ![картинку](data:image/svg+xml;base64,PHN2Zz4=) и не <javascript:alert(3)>; <b>жирный</b>.\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(|config| config.knowledge_dir = dir.clone()).await;
    concierge_shared::knowledge::store::reindex(&app.pool, &dir).await.unwrap();
    let response = app.client.get(format!("http://{}/kb/faq/links.md", app.addr)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"<a href="https://lectio.example.com/settings">настройки</a>"#), "{html}");
    assert!(html.contains(r#"<a href="/kb/faq/payment.md">оплату</a>"#), "{html}");
    assert!(html.contains(r##"<a href="#"##), "{html}");
    let lower = html.to_lowercase();
    assert_eq!(lower.matches("<a href=").count(), 3, "{html}");
    assert!(!lower.contains("href=\"javascript") && !lower.contains("href=\"data:"), "{html}");
    // The words of a refused link stay, as text; raw HTML is text too.
    assert!(html.contains("это") && html.contains("то") && html.contains("картинку"), "{html}");
    assert!(html.contains("&lt;b&gt;жирный&lt;/b&gt;"), "{html}");
}
