//! What the API serves to browsers: the widget script, the admin console (an HTML shell and
//! the native ES modules under `web/admin/`, with the libraries vendored under `web/vendor/`),
//! the API reference, and the knowledge base's documents as pages (the links under cited
//! answers). Every file is embedded at build time, so the binary needs no web folder and no
//! network at run time.

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};
use concierge_shared::knowledge::store;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use utoipa_scalar::{Scalar, Servable};

use crate::{AppState, error::ApiError, extract::Path};

const WIDGET_JS: &str = include_str!("../../../web/widget.js");
const ADMIN_HTML: &str = include_str!("../../../web/admin/index.html");
/// The API reference page; utoipa-scalar puts the OpenAPI document where it says `$spec`.
const API_REFERENCE_HTML: &str = include_str!("../../../web/admin/api.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Whether a file changes with every release of the console (revalidated on each load, so that
/// modules of two versions never meet) or is a pinned library (cached for a while).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Caching {
    Console,
    Vendored,
}

/// A file under `/admin/`: its path there, content type, caching and bytes.
struct ConsoleFile {
    path: &'static str,
    content_type: &'static str,
    caching: Caching,
    body: &'static [u8],
}

macro_rules! console_files {
    ($($dir:literal / $path:literal => $content_type:expr, $caching:expr;)*) => {
        &[$(ConsoleFile {
            path: $path,
            content_type: $content_type,
            caching: $caching,
            body: include_bytes!(concat!("../../../web/", $dir, "/", $path)),
        }),*]
    };
}

/// Every file the console loads besides its HTML shell. A module missing here fails to load in
/// the browser; the test below checks that `web/admin/` and `web/vendor/` are all listed.
const CONSOLE_FILES: &[ConsoleFile] = console_files! {
    "admin" / "console.css" => CSS, Caching::Console;
    "admin" / "actions.js" => JS, Caching::Console;
    "admin" / "api.js" => JS, Caching::Console;
    "admin" / "charts.js" => JS, Caching::Console;
    "admin" / "config.js" => JS, Caching::Console;
    "admin" / "conversation-info.js" => JS, Caching::Console;
    "admin" / "conversation.js" => JS, Caching::Console;
    "admin" / "conversations.js" => JS, Caching::Console;
    "admin" / "dom.js" => JS, Caching::Console;
    "admin" / "evals.js" => JS, Caching::Console;
    "admin" / "format.js" => JS, Caching::Console;
    "admin" / "i18n.js" => JS, Caching::Console;
    "admin" / "knowledge.js" => JS, Caching::Console;
    "admin" / "live.js" => JS, Caching::Console;
    "admin" / "main.js" => JS, Caching::Console;
    "admin" / "metrics.js" => JS, Caching::Console;
    "admin" / "nav.js" => JS, Caching::Console;
    "admin" / "router.js" => JS, Caching::Console;
    "admin" / "runs.js" => JS, Caching::Console;
    "admin" / "session.js" => JS, Caching::Console;
    "admin" / "state.js" => JS, Caching::Console;
    "admin" / "strings.js" => JS, Caching::Console;
    "admin" / "transcript.js" => JS, Caching::Console;
    "." / "vendor/uplot/uPlot.esm.js" => JS, Caching::Vendored;
    "." / "vendor/uplot/uPlot.min.css" => CSS, Caching::Vendored;
    "." / "vendor/scalar/standalone.js" => JS, Caching::Vendored;
};

fn asset(content_type: &'static str, caching: Caching, body: impl IntoResponse) -> Response {
    let cache_control = match caching {
        Caching::Console => "no-cache",
        Caching::Vendored => "public, max-age=300",
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
    ];
    (headers, body).into_response()
}

/// `GET /widget.js`: the embeddable chat widget.
pub async fn widget_js() -> Response {
    asset("application/javascript; charset=utf-8", Caching::Vendored, WIDGET_JS)
}

/// `GET /admin/`: the admin console (it signs in with an admin token itself).
pub async fn admin_console() -> Response {
    asset("text/html; charset=utf-8", Caching::Console, ADMIN_HTML)
}

/// `GET /admin/{*file}`: one of the console's modules, styles or vendored libraries.
pub async fn console_file(Path(path): Path<String>) -> Result<Response, ApiError> {
    let file = CONSOLE_FILES.iter().find(|file| file.path == path).ok_or(ApiError::NotFound)?;
    Ok(asset(file.content_type, file.caching, file.body))
}

/// `GET /admin/api`: the API reference (Scalar, served from `/admin/vendor/scalar/`).
pub fn api_reference(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    Scalar::with_url("/admin/api", openapi).custom_html(API_REFERENCE_HTML).into()
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every file under `web/admin/` (but the two HTML templates) and `web/vendor/` that a
    /// browser loads is served, with the content type its extension calls for.
    #[test]
    fn every_console_file_is_served() {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
        let mut on_disk = Vec::new();
        for (dir, prefix) in [("admin", ""), ("vendor/uplot", "vendor/uplot/"), ("vendor/scalar", "vendor/scalar/")] {
            for entry in std::fs::read_dir(web.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".js") || name.ends_with(".css") {
                    on_disk.push(format!("{prefix}{name}"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = CONSOLE_FILES.iter().map(|file| file.path.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "CONSOLE_FILES lists exactly the console's files");
        for file in CONSOLE_FILES {
            let expected = if file.path.ends_with(".js") { JS } else { CSS };
            assert_eq!(file.content_type, expected, "{}", file.path);
            let vendored = file.path.starts_with("vendor/");
            assert_eq!(file.caching == Caching::Vendored, vendored, "{}", file.path);
        }
    }
}
