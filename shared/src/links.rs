//! Signed links to stored files: `/api/concierge/attachments/{id}?expires=…&sig=…`, the
//! signature an HMAC-SHA256 of the id and the expiry under a key derived from the JWT secret.
//! The API signs the links it puts in messages, the worker those it posts in Telegram topics,
//! and the download route checks them — all with these two functions, so they cannot drift.
//!
//! Invariant: a link opens the one file it names, and only until it expires.

use std::time::Duration;

use hmac::{Hmac, Mac};

/// How long the links in a message the API sends stay valid: the client shows a message's
/// files at once and reloads the messages (with fresh links) when it opens again.
pub const MESSAGE_LINK_LIFETIME: Duration = Duration::from_secs(3600);

fn signature(secret: &str, attachment: uuid::Uuid, expires: i64) -> String {
    let mut key = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    key.update(b"concierge attachment links");
    let key = key.finalize().into_bytes();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(format!("{attachment}:{expires}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The path (from the site's root) of a link to `attachment` valid for `lifetime`; put
/// `CONCIERGE_PUBLIC_URL` before it for a link that works anywhere.
pub fn signed_path(secret: &str, attachment: uuid::Uuid, lifetime: Duration) -> String {
    let expires = chrono::Utc::now().timestamp() + lifetime.as_secs() as i64;
    let sig = signature(secret, attachment, expires);
    format!("/api/concierge/attachments/{attachment}?expires={expires}&sig={sig}")
}

/// Whether `sig` signs `attachment` until `expires` (whether that time has passed is the
/// caller's question: an expired link is answered differently from a forged one).
pub fn signature_holds(secret: &str, attachment: uuid::Uuid, expires: i64, sig: &str) -> bool {
    let expected = signature(secret, attachment, expires);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_holds_for_its_file_and_secret_only() {
        let id = uuid::Uuid::new_v4();
        let path = signed_path("secret", id, Duration::from_secs(60));
        let query = path.split_once('?').unwrap().1;
        let (expires, sig) = query.split_once('&').unwrap();
        let expires: i64 = expires.strip_prefix("expires=").unwrap().parse().unwrap();
        let sig = sig.strip_prefix("sig=").unwrap();
        assert!(signature_holds("secret", id, expires, sig));
        assert!(!signature_holds("other", id, expires, sig));
        assert!(!signature_holds("secret", uuid::Uuid::new_v4(), expires, sig));
        assert!(!signature_holds("secret", id, expires + 1, sig));
    }
}
