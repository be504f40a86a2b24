//! Rate limits of the public API, so that no visitor can make Concierge spend without bound.
//!
//! Keys are the client's IP ([`ClientIp`]: the peer, or the address a trusted proxy forwarded)
//! and the principal (the [`OwnerKey`] of a platform user or a visitor). Request rates are
//! GCRA limiters from `governor`, one keyed limiter per limit, held in this process; the
//! escalation quota is counted in the database instead (`db::escalations`), since it is per
//! day and must hold across API processes and restarts. Open event streams are counted here,
//! per principal and per process, by a guard that each stream holds until it is dropped.
//!
//! Over a limit the caller gets 429 with `Retry-After` and the API's error body, and
//! `concierge_rate_limited_total{limit}` counts it.

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use concierge_shared::{OwnerKey, config::LimitsConfig};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use crate::{AppState, error::ApiError};

/// The limiters of one API process.
pub struct Limits {
    pub conversations: Keyed<IpAddr>,
    pub messages: Keyed<OwnerKey>,
    pub ip_messages: Keyed<IpAddr>,
    pub action_runs: Keyed<OwnerKey>,
    pub stream_tokens: Keyed<OwnerKey>,
    pub admin_search: Keyed<OwnerKey>,
    pub webhook: Keyed<IpAddr>,
    streams: Arc<StreamCounts>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            conversations: Keyed::new("conversations", config.conversations_per_hour, Duration::from_secs(3600)),
            messages: Keyed::new("messages", config.messages_per_minute, minute),
            ip_messages: Keyed::new("ip_messages", config.ip_messages_per_minute, minute),
            action_runs: Keyed::new("action_runs", config.action_runs_per_minute, minute),
            stream_tokens: Keyed::new("stream_tokens", config.stream_tokens_per_minute, minute),
            admin_search: Keyed::new("admin_search", config.admin_search_per_minute, minute),
            webhook: Keyed::new("telegram_webhook", config.webhook_per_minute, minute),
            streams: Arc::new(StreamCounts {
                per_principal: config.streams_per_principal,
                per_process: config.streams_per_process,
                open: Mutex::new((0, HashMap::new())),
            }),
        }
    }

    /// Count one more open event stream of `owner`, or refuse it over either cap. The guard
    /// gives the place back when dropped.
    pub fn open_stream(&self, owner: &OwnerKey) -> Result<StreamGuard, ApiError> {
        let counts = &self.streams;
        let mut open = counts.open.lock().expect("stream counts lock");
        let (total, by_owner) = &mut *open;
        let mine = by_owner.get(owner).copied().unwrap_or(0);
        let over = if counts.per_process != 0 && *total >= counts.per_process {
            Some(("streams_process", "this server holds as many event streams as it may"))
        } else if counts.per_principal != 0 && mine >= counts.per_principal {
            Some(("streams_principal", "too many event streams are open for this caller; close one"))
        } else {
            None
        };
        if let Some((limit, message)) = over {
            // No rate says when a place frees up: a stream's reconnect interval is a fair wait.
            return Err(refusal(limit, "too_many_streams", message.to_owned(), STREAM_RETRY));
        }
        *total += 1;
        by_owner.insert(owner.clone(), mine + 1);
        Ok(StreamGuard { counts: counts.clone(), owner: owner.clone() })
    }

    /// Forget keys whose limiter is back to full, so that memory follows the active clients.
    pub fn forget_idle(&self) {
        self.conversations.forget_idle();
        self.messages.forget_idle();
        self.ip_messages.forget_idle();
        self.action_runs.forget_idle();
        self.stream_tokens.forget_idle();
        self.admin_search.forget_idle();
        self.webhook.forget_idle();
    }
}

/// What a refused stream is told to wait.
const STREAM_RETRY: Duration = Duration::from_secs(10);

/// One limit: `count` requests per `period` for each key, in a burst or spread out (GCRA, so
/// a key that used its burst gets one more every `period / count`). `None` when switched off.
pub struct Keyed<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(name: &'static str, count: u32, period: Duration) -> Self {
        let limiter = NonZeroU32::new(count).map(|count| {
            let quota =
                Quota::with_period(period / count.get()).expect("a limit's period is not zero").allow_burst(count);
            RateLimiter::keyed(quota)
        });
        Self { name, limiter }
    }

    /// Take one request for `key`, or refuse it with the wait governor computes.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            rate_limited(self.name, wait)
        })
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The refusal of a request over the named rate limit.
pub fn rate_limited(limit: &'static str, wait: Duration) -> ApiError {
    refusal(limit, "rate_limited", format!("too many requests ({limit}); retry later"), wait)
}

/// A 429 with `code`, counted under `limit`. `Retry-After` is whole seconds, at least one.
pub fn refusal(limit: &'static str, code: &'static str, message: String, wait: Duration) -> ApiError {
    metrics::counter!("concierge_rate_limited_total", "limit" => limit).increment(1);
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests { code, message, retry_after: retry_after.max(1) }
}

/// Open streams, in total and per principal.
struct StreamCounts {
    per_principal: u32,
    per_process: u32,
    open: Mutex<(u32, HashMap<OwnerKey, u32>)>,
}

/// One open event stream, counted until it is dropped.
pub struct StreamGuard {
    counts: Arc<StreamCounts>,
    owner: OwnerKey,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("stream counts lock");
        let (total, by_owner) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = by_owner.get_mut(&self.owner) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                by_owner.remove(&self.owner);
            }
        }
    }
}

/// The client's address, as the key of per-IP limits: the peer, unless the peer is a trusted
/// proxy (`CONCIERGE_TRUSTED_PROXIES`), then what `X-Forwarded-For` says past the trusted hops.
/// An IPv6 client is keyed by its /64, the block one subscriber usually holds.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Served without connection info (a router driven in-process), every caller is one.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ConnectInfo(addr)| addr.ip());
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok());
        let client = state.config.limits.trusted_proxies.client_ip(peer.to_canonical(), forwarded);
        Ok(ClientIp(limit_key(client.to_canonical())))
    }
}

fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_wait_is_told() {
        let limit = Keyed::new("test", 3, Duration::from_secs(60));
        for _ in 0..3 {
            limit.check(&1).unwrap();
        }
        match limit.check(&1) {
            Err(ApiError::TooManyRequests { code: "rate_limited", retry_after, .. }) => {
                assert!((1..=20).contains(&retry_after), "one more every 20 s: {retry_after}")
            }
            other => panic!("expected a refusal: {other:?}"),
        }
        limit.check(&2).unwrap();
        Keyed::new("off", 0, Duration::from_secs(60)).check(&1).unwrap();
    }

    #[test]
    fn stream_places_come_back_when_streams_end() {
        let config = LimitsConfig { streams_per_principal: 2, streams_per_process: 3, ..LimitsConfig::default() };
        let limits = Limits::new(&config);
        let (anna, boris) = (OwnerKey::user("anna"), OwnerKey::user("boris"));
        let first = limits.open_stream(&anna).unwrap();
        let _second = limits.open_stream(&anna).unwrap();
        assert!(limits.open_stream(&anna).is_err(), "two per principal");
        let _third = limits.open_stream(&boris).unwrap();
        assert!(limits.open_stream(&boris).is_err(), "three per process");
        drop(first);
        limits.open_stream(&anna).unwrap();
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        let v4: IpAddr = "203.0.113.4".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
    }
}
