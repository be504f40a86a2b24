//! What the API serves to browsers: the widget script, the admin console (an HTML shell and
//! the native ES modules under `web/admin/`, with the libraries vendored under `web/vendor/`),
//! the API reference, and the knowledge base's documents as pages (the links under cited
//! answers). Every file is embedded at build time, so the binary needs no web folder and no
//! network at run time.
//!
//! Every page is sent with a Content-Security-Policy that lets it run only scripts of its own
//! origin (none inline) and talk only to its own origin's API, so that text which slips into a
//! page (a knowledge document, a conversation shown in the console) cannot run as code.

use std::sync::LazyLock;

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

/// The console and its API reference tab: own scripts, styles and API only; the reference may
/// be framed by the console alone, the console by nobody.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self'; font-src 'self'; connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The API reference (Scalar): its own script only, but it styles its components inline.
const API_REFERENCE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'self'";

/// A knowledge page's style, allowed by its hash: the page runs no script at all.
const KNOWLEDGE_STYLE: &str =
    "body{font:16px/1.55 system-ui,sans-serif;max-width:720px;margin:2rem auto;padding:0 1rem;color:#1f2937}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:1.8rem}.category{color:#6b7280;font-size:.9rem}
code{background:#f3f4f6;padding:0 .25em;border-radius:4px}a{color:#4f46e5}";

static KNOWLEDGE_CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(KNOWLEDGE_STYLE));
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'self'"
    );
    HeaderValue::from_str(&policy).expect("a policy is ASCII")
});

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
    "admin" / "drafts.js" => JS, Caching::Console;
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

/// The line of the widget that holds the file cap, which is served as configured.
const WIDGET_FILE_CAP: &str = "const MAX_FILE_MB = 10;";

/// `GET /widget.js`: the embeddable chat widget, with this server's file cap
/// (`CONCIERGE_MAX_ATTACHMENT_MB`), so that it refuses before upload what the server would.
pub async fn widget_js(State(state): State<AppState>) -> Response {
    let megabytes = state.config.max_attachment_bytes / (1024 * 1024);
    let script = WIDGET_JS.replacen(WIDGET_FILE_CAP, &format!("const MAX_FILE_MB = {megabytes};"), 1);
    asset("application/javascript; charset=utf-8", Caching::Vendored, script)
}

/// `GET /admin/`: the admin console (it signs in with an admin token itself).
pub async fn admin_console() -> Response {
    let mut response = asset("text/html; charset=utf-8", Caching::Console, ADMIN_HTML);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    response
}

/// `GET /admin/{*file}`: one of the console's modules, styles or vendored libraries.
pub async fn console_file(Path(path): Path<String>) -> Result<Response, ApiError> {
    let file = CONSOLE_FILES.iter().find(|file| file.path == path).ok_or(ApiError::NotFound)?;
    Ok(asset(file.content_type, file.caching, file.body))
}

/// `GET /admin/api`: the API reference (Scalar, served from `/admin/vendor/scalar/`).
pub fn api_reference(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    let router: Router<AppState> = Scalar::with_url("/admin/api", openapi).custom_html(API_REFERENCE_HTML).into();
    router.layer(axum::middleware::map_response(|mut response: Response| async move {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(API_REFERENCE_CSP));
        response
    }))
}

/// `GET /kb/{path}`: one knowledge document as a page.
pub async fn knowledge_page(State(state): State<AppState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let store::DocumentPage { title, category, sections } =
        store::page(&state.pool, &path).await?.ok_or(ApiError::NotFound)?;
    let mut body = String::new();
    for (index, (heading, text)) in sections.iter().enumerate() {
        if index > 0 || heading != &title {
            body.push_str(&format!("<h2>{}</h2>\n", escape(heading)));
        }
        body.push_str(&markdown(text));
    }
    let page = Html(format!(
        r#"<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="strict-origin-when-cross-origin">
<title>{title} — справка Lectio</title>
<style>{KNOWLEDGE_STYLE}</style></head>
<body><p class="category">Справка Lectio · {category}</p><h1>{title}</h1>
{body}</body></html>"#,
        title = escape(&title),
        category = escape(&category),
    ));
    Ok(([(header::CONTENT_SECURITY_POLICY, KNOWLEDGE_CSP.clone())], page).into_response())
}

/// Markdown to HTML without raw HTML or images: both become text or links. Links keep only
/// http(s), `mailto:` and relative destinations; any other (`javascript:`, `data:`, `vbscript:`)
/// becomes plain text, its words kept.
fn markdown(text: &str) -> String {
    let mut dropped = Vec::new();
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).filter_map(|event| {
        Some(match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link { dest_url, title, id, link_type })
            | Event::Start(Tag::Image { dest_url, title, id, link_type }) => {
                let safe = safe_link(&dest_url);
                dropped.push(!safe);
                if !safe {
                    return None;
                }
                Event::Start(Tag::Link { link_type, dest_url, title, id })
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if dropped.pop().unwrap_or(false) {
                    return None;
                }
                Event::End(TagEnd::Link)
            }
            other => other,
        })
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// Whether a link destination stays on the web: http(s) or mailto, or relative (a path, a
/// query, a fragment). A scheme is recognised as browsers do, ignoring case, surrounding
/// blanks and the tabs and newlines they strip inside it (`java\tscript:`).
fn safe_link(destination: &str) -> bool {
    let cleaned: String = destination.trim().chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let before_path = cleaned.split(['/', '?', '#']).next().unwrap_or_default();
    match before_path.split_once(':') {
        None => true,
        Some((scheme, _)) => ["http", "https", "mailto"].iter().any(|allowed| scheme.eq_ignore_ascii_case(allowed)),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_widget_holds_the_file_cap_line_that_is_served_as_configured() {
        assert_eq!(super::WIDGET_JS.matches(super::WIDGET_FILE_CAP).count(), 1);
    }

    use std::path::Path;

    use super::*;

    #[test]
    fn links_keep_only_web_and_relative_destinations() {
        for safe in [
            "https://lectio.example.com/a",
            "HTTP://x.example",
            "/kb/faq/a.md",
            "other.md",
            "#part",
            "?q=1",
            "mailto:help@lectio.example.com",
            "faq/a:b.md/../c",
        ] {
            assert!(safe_link(safe), "{safe}");
        }
        for unsafe_ in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "file:///etc/passwd",
        ] {
            assert!(!safe_link(unsafe_), "{unsafe_}");
        }
        let html = markdown(
            "See [the guide](/kb/guides/zoom.md), [this](javascript:alert(1)) and ![img](data:image/png;base64,AA)",
        );
        assert!(html.contains(r#"<a href="/kb/guides/zoom.md">the guide</a>"#), "{html}");
        assert!(!html.contains("javascript") && !html.contains("data:"), "{html}");
        assert!(html.contains("this") && html.contains("img"), "{html}");
    }

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
