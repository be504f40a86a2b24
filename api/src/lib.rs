//! Concierge's HTTP API: it authenticates, validates, stores and enqueues, and streams what
//! the workers write. It never calls the LLM, Telegram or the host platform itself.

pub mod auth;
pub mod error;
pub mod extract;
pub mod hub;
pub mod limits;
mod routes;

use std::sync::Arc;

use anyhow::Context;
use axum::{Router, extract::DefaultBodyLimit, http::Request};
use concierge_shared::config::Config;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::{auth::Keys, hub::Hub, limits::Limits};

/// Largest request body accepted; message content is limited separately, in characters.
const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub hub: Hub,
    /// Cancelled on shutdown; ends SSE streams so the server can drain.
    pub shutdown: CancellationToken,
    /// The search index for admin search, built on first use.
    pub knowledge: Arc<tokio::sync::OnceCell<Arc<concierge_shared::knowledge::KnowledgeBase>>>,
    /// This process's rate limiters and open-stream counts.
    pub limits: Arc<Limits>,
    /// Where attachment files live (the same store the worker reads).
    pub storage: concierge_shared::storage::Storage,
}

impl AppState {
    /// Everything the API needs, with the event listener already listening.
    pub async fn build(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<Self> {
        concierge_shared::telemetry::prometheus();
        let secret = config.require_jwt_secret()?;
        let policy =
            auth::PlatformClaimsPolicy { issuer: config.jwt_issuer.clone(), audience: config.jwt_audience.clone() };
        let keys = Keys::new(secret, &policy, config.visitor_token_ttl, config.stream_token_ttl);
        let hub = Hub::default();
        hub.start(pool.clone(), shutdown.clone()).await.context("cannot LISTEN for events")?;
        let limits = Arc::new(Limits::new(&config.limits));
        tokio::spawn(forget_idle_limits(limits.clone(), shutdown.clone()));
        let storage = concierge_shared::storage::Storage::from_config(&config)?;
        storage.check().await?;
        Ok(Self {
            storage,
            pool,
            config: Arc::new(config),
            keys: Arc::new(keys),
            hub,
            shutdown,
            knowledge: Default::default(),
            limits,
        })
    }
}

/// Every minute, drop the limiter state of clients that are back to a full allowance.
async fn forget_idle_limits(limits: Arc<Limits>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => limits.forget_idle(),
        }
    }
}

/// The API's routes. Paths are declared without a trailing slash; `serve` strips one.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = routes::router(state.config.max_message_chars, state.config.max_attachment_bytes);
    Router::new()
        .nest("/api/concierge", api.layer(cors()))
        .merge(routes::pages(openapi))
        .merge(routes::health::router())
        .route("/metrics", axum::routing::get(prometheus_metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(record_request))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::debug_span!("http", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state)
}

/// `GET /metrics`: Prometheus text.
async fn prometheus_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authorization = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !concierge_shared::telemetry::metrics_allowed(authorization, state.config.metrics_token.as_ref()) {
        return crate::error::ApiError::Unauthorized(
            "/metrics needs `Authorization: Bearer <CONCIERGE_METRICS_TOKEN>`".into(),
        )
        .into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        concierge_shared::telemetry::render_prometheus(&state.pool).await,
    )
        .into_response()
}

/// Count requests and time them, by route pattern (not by path, which holds ids).
async fn record_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    // Only the methods the API serves: a made-up one must not add a metric series.
    let method = match *request.method() {
        axum::http::Method::GET
        | axum::http::Method::POST
        | axum::http::Method::PATCH
        | axum::http::Method::DELETE
        | axum::http::Method::OPTIONS => request.method().to_string(),
        _ => "other".to_owned(),
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("concierge_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("concierge_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The OpenAPI description of `/api/concierge`, with the limits of `config`.
pub fn openapi(config: &Config) -> utoipa::openapi::OpenApi {
    routes::router(config.max_message_chars, config.max_attachment_bytes).1
}

/// The widget runs on the host platform's pages, another origin. Credentials are bearer
/// tokens, never cookies, so any origin may call.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("last-event-id")])
        .expose_headers([HeaderName::from_static("idempotent-replayed")])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then drain open requests. Each
/// request carries its peer's address (`ConnectInfo`), the key of the per-IP limits.
///
/// HTTP/1.1 only, the protocol browsers speak to a server without TLS (a TLS proxy in front
/// may speak HTTP/2 to browsers). Serving only it skips the sniffing of HTTP/2's preface on
/// every connection, whose put-back bytes made hyper double each connection's read buffer to
/// 16 KiB: half the memory of an idle event stream. `TCP_NODELAY`: an event stream writes
/// small events in quick succession (typing, then the reply), and Nagle's algorithm would hold
/// the second until the client acknowledged the first, up to a delayed ACK's 40 ms.
pub async fn serve(mut listener: TcpListener, router: Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};

    let app = NormalizePathLayer::trim_trailing_slash().layer(router);
    let http = hyper::server::conn::http1::Builder::new();
    let connections = GracefulShutdown::new();
    loop {
        // `Listener::accept` retries failed accepts itself (out of descriptors: after a pause).
        let (stream, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = shutdown.cancelled() => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service =
            tower::ServiceExt::map_request(app.clone(), move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection =
            connections.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// The standalone API process: connect, build, serve on `CONCIERGE_BIND` until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = concierge_shared::db::connect(config.require_database_url()?, config.db_max_connections).await?;
    let bind = config.bind;
    let state = AppState::build(config, pool, shutdown.clone()).await?;
    let listener = TcpListener::bind(bind).await.with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!("API listening on http://{}", listener.local_addr()?);
    serve(listener, router(state), shutdown).await
}
