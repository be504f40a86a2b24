//! What runs an action, as a closed set: a built-in lookup or a declarative GET.
//!
//! Invariant: the written forms (`builtin:<name>`, `http`) in fixtures, the database and the
//! API are exactly the ones of [`Handler::as_str`], and nothing else parses.

use serde::{Deserialize, Serialize};

/// What runs an action: a lookup written in Rust, or a declarative GET described by `http`.
/// Written (in fixtures, the database and the API) as `builtin:<name>` or `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Handler {
    Builtin(Builtin),
    Http,
}

/// The built-in handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    ZoomStatus,
    Subscription,
    Recordings,
    SystemStatus,
    Lesson,
}

impl Builtin {
    pub const ALL: [Builtin; 5] =
        [Builtin::ZoomStatus, Builtin::Subscription, Builtin::Recordings, Builtin::SystemStatus, Builtin::Lesson];
}

impl Handler {
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Builtin(Builtin::ZoomStatus) => "builtin:check_zoom_status",
            Handler::Builtin(Builtin::Subscription) => "builtin:check_subscription",
            Handler::Builtin(Builtin::Recordings) => "builtin:check_recordings",
            Handler::Builtin(Builtin::SystemStatus) => "builtin:check_system_status",
            Handler::Builtin(Builtin::Lesson) => "builtin:check_lesson",
            Handler::Http => "http",
        }
    }
}

impl std::fmt::Display for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handler name that is neither `http` nor a known `builtin:` one.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown handler {0:?}")]
pub struct UnknownHandler(pub String);

impl std::str::FromStr for Handler {
    type Err = UnknownHandler;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let builtins = Builtin::ALL.into_iter().map(Handler::Builtin);
        std::iter::once(Handler::Http).chain(builtins).find(|h| h.as_str() == s).ok_or_else(|| UnknownHandler(s.into()))
    }
}

impl TryFrom<String> for Handler {
    type Error = UnknownHandler;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Handler> for String {
    fn from(handler: Handler) -> Self {
        handler.as_str().to_owned()
    }
}

impl sqlx::Type<sqlx::Postgres> for Handler {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Handler {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?.parse()?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Handler {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn handlers_keep_their_written_names() {
        for handler in Builtin::ALL.into_iter().map(Handler::Builtin).chain([Handler::Http]) {
            assert_eq!(handler.as_str().parse::<Handler>(), Ok(handler));
            assert_eq!(serde_json::to_value(handler).unwrap(), json!(handler.as_str()));
        }
        assert_eq!(
            serde_json::from_value::<Handler>(json!("builtin:check_zoom_status")).unwrap(),
            Handler::Builtin(Builtin::ZoomStatus)
        );
        assert!("builtin:rm_rf".parse::<Handler>().is_err());
        assert!(serde_json::from_value::<Handler>(json!("check_zoom_status")).is_err());
    }
}
