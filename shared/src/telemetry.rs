//! Logging set-up shared by every binary: `RUST_LOG` filters, the default is `info`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tantivy=warn,apalis=warn,apalis_postgres=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
    prometheus();
}

/// This process's Prometheus registry, installed as the `metrics` recorder on first use.
/// Histograms get latency buckets from 1 ms to 30 s; the wait for a person, from 10 s to a day.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(crate::human::FIRST_HUMAN_REPLY_SECONDS.to_owned()),
                &[10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0, 86_400.0],
            )
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
    let counts = crate::queue_schema::count_by_queue_and_status(pool).await.unwrap_or_default();
    set_queue_gauges(counts);
    handle.render()
}

/// Set `concierge_queue_jobs` from one reading of the table. The registry keeps a gauge at its
/// last value, so every queue and status reported before and absent now is set to 0: a queue
/// that drained shows 0, not its last depth.
fn set_queue_gauges(counts: Vec<(String, String, i64)>) {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (queue, status, count) in queue_gauge_values(&mut seen, counts) {
        metrics::gauge!("concierge_queue_jobs", "queue" => queue, "status" => status).set(count as f64);
    }
}

/// The values to set: `counts`, and 0 for every pair in `seen` that `counts` lacks; `seen`
/// gains the pairs of `counts`.
fn queue_gauge_values(
    seen: &mut std::collections::BTreeSet<(String, String)>,
    counts: Vec<(String, String, i64)>,
) -> Vec<(String, String, i64)> {
    let mut values: std::collections::BTreeMap<(String, String), i64> =
        seen.iter().map(|pair| (pair.clone(), 0)).collect();
    for (queue, status, count) in counts {
        seen.insert((queue.clone(), status.clone()));
        values.insert((queue, status), count);
    }
    values.into_iter().map(|((queue, status), count)| (queue, status, count)).collect()
}

/// Whether a `/metrics` request may be answered: always without a metrics token, otherwise
/// only with `Authorization: Bearer <token>` (compared in constant time).
pub fn metrics_allowed(authorization: Option<&str>, token: Option<&crate::secret::Secret>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = token else { return true };
    authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(queue: &str, status: &str, count: i64) -> (String, String, i64) {
        (queue.into(), status.into(), count)
    }

    #[test]
    fn a_drained_queue_reads_zero() {
        let mut seen = Default::default();
        let first = queue_gauge_values(&mut seen, vec![row("q", "Pending", 3), row("q", "Done", 1)]);
        assert_eq!(first, vec![row("q", "Done", 1), row("q", "Pending", 3)]);
        let drained = queue_gauge_values(&mut seen, vec![row("q", "Done", 4)]);
        assert_eq!(drained, vec![row("q", "Done", 4), row("q", "Pending", 0)]);
        let empty = queue_gauge_values(&mut seen, Vec::new());
        assert_eq!(empty, vec![row("q", "Done", 0), row("q", "Pending", 0)]);
    }

    #[test]
    fn the_gauge_renders_zero_after_the_queue_drains() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            set_queue_gauges(vec![row("concierge::gauge-test", "Pending", 2)]);
            set_queue_gauges(Vec::new());
        });
        let text = handle.render();
        assert!(
            text.lines().any(|line| line.starts_with("concierge_queue_jobs{")
                && line.contains("concierge::gauge-test")
                && line.ends_with(" 0")),
            "{text}"
        );
    }
}
