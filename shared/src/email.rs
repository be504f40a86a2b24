//! Replies by email while operators are away: when a user may ask for one.
//!
//! Invariant: the offer exists only for an open conversation handed to a person outside duty
//! hours (the one definition of the hours, [`crate::duty`]), for a signed-in user whose token
//! names an address mail can reach, and only when an SMTP server is configured. The API checks
//! it before it stores the user's choice; the worker sends only for a stored choice.

use chrono::{DateTime, Utc};

use crate::{ConversationMode, ConversationStatus};

/// What the offer depends on, as the API knows it for one request.
#[derive(Debug, Clone, Copy)]
pub struct OfferContext<'a> {
    /// Whether an SMTP server is configured (`CONCIERGE_SMTP_URL`).
    pub smtp_configured: bool,
    /// The `email` claim of the caller's platform token; visitors have none.
    pub address: Option<&'a str>,
    pub status: ConversationStatus,
    pub mode: ConversationMode,
    /// When the conversation was last handed to a person.
    pub handed_over_at: Option<DateTime<Utc>>,
}

/// Why a reply by email cannot be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No SMTP server is configured.
    NotConfigured,
    /// The caller's token names no address mail can reach (or the caller is a visitor).
    NoAddress,
    Closed,
    /// The conversation is not waiting for a person handed it outside duty hours.
    NotWaitingOffDuty,
}

impl Unavailable {
    /// The API's error code.
    pub fn code(self) -> &'static str {
        match self {
            Unavailable::NotConfigured => "email_not_configured",
            Unavailable::NoAddress => "no_email",
            Unavailable::Closed => "conversation_closed",
            Unavailable::NotWaitingOffDuty => "not_waiting_off_duty",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Unavailable::NotConfigured => "replies by email are not available on this server",
            Unavailable::NoAddress => "replies by email need a signed-in user whose account has an email address",
            Unavailable::Closed => "the conversation is closed",
            Unavailable::NotWaitingOffDuty => {
                "replies by email are offered when a conversation goes to a person outside operators' hours"
            }
        }
    }
}

impl OfferContext<'_> {
    /// Whether the user may ask for operators' replies by email now, or why not.
    pub fn check(&self) -> Result<(), Unavailable> {
        if !self.smtp_configured {
            return Err(Unavailable::NotConfigured);
        }
        if !self.address.is_some_and(deliverable) {
            return Err(Unavailable::NoAddress);
        }
        if self.status == ConversationStatus::Closed {
            return Err(Unavailable::Closed);
        }
        if self.mode != ConversationMode::Human || !handed_over_off_duty(self.handed_over_at) {
            return Err(Unavailable::NotWaitingOffDuty);
        }
        Ok(())
    }
}

/// Whether a hand-over at `at` came while nobody was on duty.
pub fn handed_over_off_duty(at: Option<DateTime<Utc>>) -> bool {
    at.is_some_and(|at| !crate::duty::on_duty(at))
}

/// Whether `address` is one an email can be sent to.
pub fn deliverable(address: &str) -> bool {
    address.parse::<lettre::Address>().is_ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn offer(at_hour_utc: u32) -> OfferContext<'static> {
        OfferContext {
            smtp_configured: true,
            address: Some("anna@example.com"),
            status: ConversationStatus::Open,
            mode: ConversationMode::Human,
            handed_over_at: Some(Utc.with_ymd_and_hms(2026, 11, 25, at_hour_utc, 30, 0).unwrap()),
        }
    }

    #[test]
    fn offered_for_a_hand_over_outside_duty_hours_only() {
        // 19:30 UTC is 22:30 in Moscow; 10:30 UTC is 13:30.
        assert_eq!(offer(19).check(), Ok(()));
        assert_eq!(offer(10).check(), Err(Unavailable::NotWaitingOffDuty));
        assert_eq!(OfferContext { handed_over_at: None, ..offer(19) }.check(), Err(Unavailable::NotWaitingOffDuty));
        assert_eq!(
            OfferContext { mode: ConversationMode::Ai, ..offer(19) }.check(),
            Err(Unavailable::NotWaitingOffDuty)
        );
    }

    #[test]
    fn needs_smtp_an_address_and_an_open_conversation() {
        assert_eq!(OfferContext { smtp_configured: false, ..offer(19) }.check(), Err(Unavailable::NotConfigured));
        assert_eq!(OfferContext { address: None, ..offer(19) }.check(), Err(Unavailable::NoAddress));
        assert_eq!(OfferContext { address: Some("anna"), ..offer(19) }.check(), Err(Unavailable::NoAddress));
        assert_eq!(OfferContext { status: ConversationStatus::Closed, ..offer(19) }.check(), Err(Unavailable::Closed));
    }
}
