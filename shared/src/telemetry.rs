//! Logging set-up shared by every binary: `RUST_LOG` filters, the default is `info`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tantivy=warn,apalis=warn,apalis_postgres=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
    prometheus();
}

/// This process's Prometheus registry, installed as the `metrics` recorder on first use.
/// Histograms get latency buckets from 1 ms to 30 s.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (tests): this registry then stays empty
        // for `metrics!` calls but still renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The Prometheus text: this process's counters and histograms, and the job queues' depth and
/// outcomes as the database has them.
pub async fn render_prometheus(pool: &sqlx::PgPool) -> String {
    let handle = prometheus();
    let queues = crate::queue_schema::count_by_queue_and_status(pool).await.unwrap_or_default();
    for (queue, status, count) in queues {
        metrics::gauge!("concierge_queue_jobs", "queue" => queue, "status" => status).set(count as f64);
    }
    handle.render()
}

/// Whether a `/metrics` request may be answered: always without a metrics token, otherwise
/// only with `Authorization: Bearer <token>` (compared in constant time).
pub fn metrics_allowed(authorization: Option<&str>, token: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = token else { return true };
    authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

