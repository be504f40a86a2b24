//! What the API serves to browsers: the widget script, the admin console, and the knowledge
//! base's documents as pages (the links under cited answers).

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};
use concierge_shared::knowledge::store;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::{AppState, error::ApiError, extract::Path};

const WIDGET_JS: &str = include_str!("../../../web/widget.js");
const ADMIN_HTML: &str = include_str!("../../../web/admin.html");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        body,
    )
        .into_response()
}

/// `GET /widget.js`: the embeddable chat widget.
pub async fn widget_js() -> Response {
    asset("application/javascript; charset=utf-8", WIDGET_JS)
}

/// `GET /admin/`: the admin console (it signs in with an admin token itself).
pub async fn admin_console() -> Response {
    let mut response = asset("text/html; charset=utf-8", ADMIN_HTML);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /kb/{path}`: one knowledge document as a page.
pub async fn knowledge_page(State(state): State<AppState>, Path(path): Path<String>) -> Result<Html<String>, ApiError> {
    let store::DocumentPage { title, category, sections } =
        store::page(&state.pool, &path).await?.ok_or(ApiError::NotFound)?;
    let mut body = String::new();
    for (index, (heading, text)) in sections.iter().enumerate() {
        if index > 0 || heading != &title {
            body.push_str(&format!("<h2>{}</h2>\n", escape(heading)));
        }
        body.push_str(&markdown(text));
    }
    Ok(Html(format!(
        r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — справка Lectio</title>
<style>body{{font:16px/1.55 system-ui,sans-serif;max-width:720px;margin:2rem auto;padding:0 1rem;color:#1f2937}}
h1{{font-size:1.6rem}}h2{{font-size:1.2rem;margin-top:1.8rem}}.category{{color:#6b7280;font-size:.9rem}}
code{{background:#f3f4f6;padding:0 .25em;border-radius:4px}}a{{color:#4f46e5}}</style></head>
<body><p class="category">Справка Lectio · {category}</p><h1>{title}</h1>
{body}</body></html>"#,
        title = escape(&title),
        category = escape(&category),
    )))
}

/// Markdown to HTML without raw HTML or images: both become text or links.
fn markdown(text: &str) -> String {
    let events =
        Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|event| match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Image { dest_url, title, id, .. }) => {
                Event::Start(Tag::Link { link_type: pulldown_cmark::LinkType::Inline, dest_url, title, id })
            }
            Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
            other => other,
        });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
