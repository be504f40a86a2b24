//! A circuit breaker for the clients of outside servers (the language model, the embeddings
//! server): after `THRESHOLD` failed calls in a row it opens for a cool-down, during which
//! callers take their fallback at once; one more failure after the cool-down reopens it, one
//! success closes it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Consecutive failed calls that open the breaker.
const THRESHOLD: u32 = 3;

pub struct Breaker {
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(cooldown: Duration) -> Self {
        Self { cooldown, state: Mutex::new(State::default()) }
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        self.state.lock().expect("breaker").open_until.is_some_and(|until| Instant::now() < until)
    }

    pub fn succeeded(&self) {
        *self.state.lock().expect("breaker") = State::default();
    }

    /// Count a failure that says something of the server's health; returns true when this
    /// one opened the breaker.
    pub fn failed(&self) -> bool {
        let mut state = self.state.lock().expect("breaker");
        state.failures += 1;
        if state.failures < THRESHOLD {
            return false;
        }
        state.open_until = Some(Instant::now() + self.cooldown);
        state.failures = THRESHOLD - 1; // one more failure after the cool-down reopens it
        true
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
}
