//! A tower layer around every job handler: how many jobs of each queue ended how, and how long
//! they took (`concierge_jobs_total`, `concierge_job_duration_seconds`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use tower::{Layer, Service};

#[derive(Clone)]
pub struct JobMetricsLayer {
    queue: &'static str,
}

impl JobMetricsLayer {
    pub fn new(queue: &'static str) -> Self {
        Self { queue }
    }
}

impl<S> Layer<S> for JobMetricsLayer {
    type Service = JobMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JobMetrics { inner, queue: self.queue }
    }
}

#[derive(Clone)]
pub struct JobMetrics<S> {
    inner: S,
    queue: &'static str,
}

impl<S, Request> Service<Request> for JobMetrics<S>
where
    S: Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let queue = self.queue;
        let started = Instant::now();
        let running = self.inner.call(request);
        Box::pin(async move {
            let result = running.await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!("concierge_jobs_total", "queue" => queue, "outcome" => outcome).increment(1);
            metrics::histogram!("concierge_job_duration_seconds", "queue" => queue)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}
