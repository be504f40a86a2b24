//! Personal data rules that are not SQL: how an erasure names its subject, and what of a
//! page URL is kept.

use crate::OwnerKey;

/// The longest subject accepted by the erasure and export routes.
pub const MAX_SUBJECT_CHARS: usize = 300;

/// The person an erasure or export names. A platform user is named by the `sub` of their
/// token (`anna`, or explicitly `user:anna`); an anonymous visitor by their owner key,
/// `visitor:<uuid>`, as the console shows it. `None` for an empty or over-long subject, and
/// for `visitor:` followed by anything but a UUID.
pub fn subject_owner(subject: &str) -> Option<OwnerKey> {
    // The length is the one the path names, before the whitespace around it goes.
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return None;
    }
    let subject = subject.trim();
    if subject.is_empty() {
        return None;
    }
    if let Some(id) = subject.strip_prefix("visitor:") {
        return uuid::Uuid::parse_str(id).ok().map(OwnerKey::visitor);
    }
    let sub = subject.strip_prefix("user:").unwrap_or(subject);
    (!sub.trim().is_empty()).then(|| OwnerKey::user(sub))
}

/// A page URL as it is stored: without its query and fragment (where tokens, e-mail
/// addresses and search terms travel) unless `keep_query`.
pub fn page_url(url: &url::Url, keep_query: bool) -> String {
    if keep_query {
        return url.to_string();
    }
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_users_and_visitors() {
        assert_eq!(subject_owner("anna").unwrap().as_str(), "user:anna");
        assert_eq!(subject_owner("user:anna").unwrap().as_str(), "user:anna");
        let id = uuid::Uuid::new_v4();
        assert_eq!(subject_owner(&format!("visitor:{id}")).unwrap().as_str(), format!("visitor:{id}"));
        assert!(subject_owner("visitor:not-a-uuid").is_none());
        assert!(subject_owner(" ").is_none());
        assert!(subject_owner("user:").is_none());
        assert!(subject_owner(&"x".repeat(MAX_SUBJECT_CHARS + 1)).is_none());
        assert!(subject_owner(&format!("anna{}", "\r".repeat(MAX_SUBJECT_CHARS))).is_none());
    }

    #[test]
    fn page_urls_lose_query_and_fragment() {
        let url = url::Url::parse("https://lectio.ru/pay?email=a@b.ru&token=x#step2").unwrap();
        assert_eq!(page_url(&url, false), "https://lectio.ru/pay");
        assert_eq!(page_url(&url, true), "https://lectio.ru/pay?email=a@b.ru&token=x#step2");
    }
}
