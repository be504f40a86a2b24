//! Rate limits and quotas of the public API: as given ([`LimitsSettings`]) and as the API uses
//! them ([`LimitsConfig`]). Anonymous visitors on a public site must not be able to make
//! Concierge spend without bound, so every route that costs something is limited per client
//! IP, per principal (a platform user or a visitor), or both. Zero switches a limit off.

use std::{net::IpAddr, str::FromStr};

use anyhow::{Context, bail};
use clap::Args;
use ipnet::IpNet;

/// The limits as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate limits (environment variables)")]
pub struct LimitsSettings {
    /// Proxies whose X-Forwarded-For is believed, comma-separated IPs or CIDRs (a load
    /// balancer, a CDN). The header is read from the right, skipping these hops; the first
    /// other address is the client. Empty: the peer address is the client.
    #[arg(long, env = "CONCIERGE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Conversations one client IP may open per hour (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_CONVERSATIONS_PER_HOUR", default_value_t = 60)]
    pub limit_conversations_per_hour: u32,
    /// Messages one principal (a user or a visitor) may post per minute (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_MESSAGES_PER_MINUTE", default_value_t = 20)]
    pub limit_messages_per_minute: u32,
    /// Messages one client IP may post per minute, all its principals together (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_IP_MESSAGES_PER_MINUTE", default_value_t = 120)]
    pub limit_ip_messages_per_minute: u32,
    /// Hand-overs to a person one principal may ask for with the button per 24 hours, counted
    /// in the database (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_ESCALATIONS_PER_DAY", default_value_t = 3)]
    pub limit_escalations_per_day: u32,
    /// Action runs one principal may start per minute (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_ACTION_RUNS_PER_MINUTE", default_value_t = 10)]
    pub limit_action_runs_per_minute: u32,
    /// Fresh stream tokens one principal may ask for per minute (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_STREAM_TOKENS_PER_MINUTE", default_value_t = 30)]
    pub limit_stream_tokens_per_minute: u32,
    /// Conversation event streams one principal may hold open at once, per API process (0: no
    /// limit).
    #[arg(long, env = "CONCIERGE_LIMIT_STREAMS_PER_PRINCIPAL", default_value_t = 10)]
    pub limit_streams_per_principal: u32,
    /// Conversation event streams one API process holds open at once (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_STREAMS_PER_PROCESS", default_value_t = 20_000)]
    pub limit_streams_per_process: u32,
    /// Admin knowledge searches per minute, per administrator (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_ADMIN_SEARCH_PER_MINUTE", default_value_t = 60)]
    pub limit_admin_search_per_minute: u32,
    /// Telegram webhook requests one client IP may make per minute (0: no limit).
    #[arg(long, env = "CONCIERGE_LIMIT_WEBHOOK_PER_MINUTE", default_value_t = 600)]
    pub limit_webhook_per_minute: u32,
}

/// The limits the API enforces. `0` switches one off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Per client IP, per hour.
    pub conversations_per_hour: u32,
    /// Per principal, per minute.
    pub messages_per_minute: u32,
    /// Per client IP, per minute.
    pub ip_messages_per_minute: u32,
    /// Per principal, per 24 hours, in the database.
    pub escalations_per_day: u32,
    /// Per principal, per minute.
    pub action_runs_per_minute: u32,
    /// Per principal, per minute.
    pub stream_tokens_per_minute: u32,
    /// Open at once, per principal and process.
    pub streams_per_principal: u32,
    /// Open at once, per process.
    pub streams_per_process: u32,
    /// Per administrator, per minute.
    pub admin_search_per_minute: u32,
    /// Per client IP, per minute.
    pub webhook_per_minute: u32,
}

impl Default for LimitsConfig {
    /// The defaults of the settings: what a real site can live with.
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            conversations_per_hour: 60,
            messages_per_minute: 20,
            ip_messages_per_minute: 120,
            escalations_per_day: 3,
            action_runs_per_minute: 10,
            stream_tokens_per_minute: 30,
            streams_per_principal: 10,
            streams_per_process: 20_000,
            admin_search_per_minute: 60,
            webhook_per_minute: 600,
        }
    }
}

impl LimitsSettings {
    pub(super) fn resolve(self) -> anyhow::Result<LimitsConfig> {
        Ok(LimitsConfig {
            trusted_proxies: self.trusted_proxies.parse().context("CONCIERGE_TRUSTED_PROXIES")?,
            conversations_per_hour: self.limit_conversations_per_hour,
            messages_per_minute: self.limit_messages_per_minute,
            ip_messages_per_minute: self.limit_ip_messages_per_minute,
            escalations_per_day: self.limit_escalations_per_day,
            action_runs_per_minute: self.limit_action_runs_per_minute,
            stream_tokens_per_minute: self.limit_stream_tokens_per_minute,
            streams_per_principal: self.limit_streams_per_principal,
            streams_per_process: self.limit_streams_per_process,
            admin_search_per_minute: self.limit_admin_search_per_minute,
            webhook_per_minute: self.limit_webhook_per_minute,
        })
    }
}

/// Networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client behind `peer`: the peer itself unless it is a trusted proxy; then the
    /// rightmost address of `X-Forwarded-For` that is not a trusted proxy (each proxy appends
    /// the address it saw, so only the right end of the header can be believed). A header that
    /// holds only trusted hops leaves the leftmost; an unparsable entry stops the walk at the
    /// last address believed.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|header| header.split(',')).map(str::trim).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { return client };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|ip| ip.parse().ok())
}

impl FromStr for TrustedProxies {
    type Err = anyhow::Error;

    /// Comma-separated IPs (`10.0.0.1`) and CIDRs (`10.0.0.0/8`, `fd00::/8`).
    fn from_str(list: &str) -> anyhow::Result<Self> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => bail!("{item:?} is neither an IP address nor a CIDR network"),
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse().unwrap();
        assert_eq!(trusted.client_ip(ip("203.0.113.9"), ["1.1.1.1"].into_iter()), ip("203.0.113.9"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), ["1.1.1.1"].into_iter()), ip("1.1.1.1"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), std::iter::empty()), ip("127.0.0.1"));
    }

    #[test]
    fn the_header_is_walked_from_the_right_past_trusted_hops() {
        let trusted: TrustedProxies = "127.0.0.1,10.0.0.0/8".parse().unwrap();
        // The client forged the leftmost entry; the proxies appended what they saw.
        let header = ["6.6.6.6, 198.51.100.7", "10.1.2.3"];
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), header.into_iter()), ip("198.51.100.7"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), ["10.0.0.5, 10.0.0.6"].into_iter()), ip("10.0.0.5"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), ["garbage, 10.0.0.6"].into_iter()), ip("10.0.0.6"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), ["198.51.100.7:4711"].into_iter()), ip("198.51.100.7"));
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), ["[2001:db8::1]:443"].into_iter()), ip("2001:db8::1"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.example.com".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }
}
