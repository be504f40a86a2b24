//! The SMTP server that sends operators' replies by email: as given ([`EmailSettings`]) and as
//! the processes use it ([`EmailConfig`]). Unset, nobody is offered a reply by email.

use anyhow::{Context, bail};
use clap::Args;
use lettre::{AsyncSmtpTransport, Tokio1Executor, message::Mailbox};

use crate::secret::Secret;

/// The SMTP settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Replies by email (environment variables)")]
pub struct EmailSettings {
    /// The SMTP server that sends operators' replies by email, as a URL:
    /// `smtps://user:password@host:465` (TLS), `smtp://user:password@host:587?tls=required`
    /// (STARTTLS) or `smtp://host:25` (no TLS, for a relay on the same network). Unset: users
    /// are not offered a reply by email.
    #[arg(long, env = "CONCIERGE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The sender of those emails, `address` or `Name <address>`. Required with
    /// CONCIERGE_SMTP_URL.
    #[arg(long, env = "CONCIERGE_SMTP_FROM")]
    pub smtp_from: Option<String>,
}

/// Where replies by email are sent from.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The SMTP server's URL in lettre's form; it may hold a password.
    pub smtp_url: Secret,
    /// The `From` of every email.
    pub from: Mailbox,
}

impl EmailSettings {
    /// `None` when no SMTP URL is set.
    pub(super) fn resolve(self) -> anyhow::Result<Option<EmailConfig>> {
        let Some(smtp_url) = self.smtp_url else {
            if self.smtp_from.is_some() {
                bail!("CONCIERGE_SMTP_FROM is set but CONCIERGE_SMTP_URL is not: no email could be sent");
            }
            return Ok(None);
        };
        let url = smtp_url.expose().trim();
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            bail!("CONCIERGE_SMTP_URL must start with smtp:// or smtps://");
        }
        // The error would quote the URL, password included: say what is wrong without it.
        if AsyncSmtpTransport::<Tokio1Executor>::from_url(url).is_err() {
            bail!(
                "CONCIERGE_SMTP_URL is not an SMTP URL lettre understands (smtp[s]://[user:password@]host[:port][?tls=required|opportunistic])"
            );
        }
        let from = self.smtp_from.context("CONCIERGE_SMTP_URL is set but CONCIERGE_SMTP_FROM is not")?;
        let from = from
            .trim()
            .parse::<Mailbox>()
            .with_context(|| format!("CONCIERGE_SMTP_FROM={from:?} is not an address or `Name <address>`"))?;
        Ok(Some(EmailConfig { smtp_url: url.into(), from }))
    }
}
