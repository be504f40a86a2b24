//! Retrying a job's work in place, with exponential backoff, before the job gives up.

use std::{fmt::Display, future::Future, time::Duration};

/// How often a job tries its work, and how long it waits in between.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// At least one try is made.
    pub tries: u32,
    /// The first wait; each later one is twice as long, at most `max`.
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The tries left to a job of `max_attempts` (200 ms to 10 s apart): those that earlier
    /// runs of it (a worker that died holding it) did not spend. apalis counts the current run
    /// in `attempt` already.
    pub fn for_job(attempt: &apalis::prelude::Attempt, max_attempts: u32) -> Self {
        let spent = (attempt.current() as u32).saturating_sub(1);
        Backoff {
            tries: max_attempts.saturating_sub(spent).max(1),
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }

    /// Run `work` until it succeeds, fails in a way `hopeless` says no retry can mend, or the
    /// tries are spent. Returns the last error.
    pub async fn run<T, E, F, Fut>(self, what: &str, hopeless: impl Fn(&E) -> bool, mut work: F) -> Result<T, E>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tries = self.tries.max(1);
        let mut delay = self.first;
        let mut try_number = 1;
        loop {
            match work().await {
                Ok(value) => return Ok(value),
                Err(error) if try_number < tries && !hopeless(&error) => {
                    tracing::warn!(error = format!("{error:#}"), try_number, ?delay, "{what} failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                    try_number += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
