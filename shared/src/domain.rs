//! Domain types: identifiers as newtypes and the closed sets of states a conversation and a
//! message can be in. Their string forms are the ones stored in the database and sent over
//! the API, so renaming a variant is a migration.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, unguessable id (random UUIDv4).
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a conversation; also what the SSE stream token is scoped to.
    ConversationId
);
uuid_id!(
    /// Identifies one message of any role.
    MessageId
);
uuid_id!(
    /// Identifies one logged run of an action (`action_runs.id`).
    ActionRunId
);
uuid_id!(
    /// Identifies one reindex run (`reindex_runs.id`).
    ReindexRunId
);
uuid_id!(
    /// Identifies one draft knowledge document made from an operator's answer
    /// (`knowledge_drafts.id`).
    KnowledgeDraftId
);
uuid_id!(
    /// Identifies one recorded decision evaluation (`eval_runs.id`).
    EvalRunId
);
uuid_id!(
    /// Identifies one recorded prompt comparison (`eval_comparisons.id`), which links two runs.
    EvalComparisonId
);

/// Ids Telegram gives: a number with a meaning, never mixed with another kind of number.
/// Stored, serialized and bound as the bare number.
macro_rules! telegram_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        /// The bare number, as logs showed it before it had a type.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

telegram_id!(
    /// A Telegram chat (the support group).
    TelegramChatId(i64)
);
telegram_id!(
    /// A forum topic of a chat: the id of the message that opened it.
    TelegramThreadId(i32)
);
telegram_id!(
    /// A message in a Telegram chat.
    TelegramMessageId(i32)
);
telegram_id!(
    /// One update from the Bot API, numbered in the order Telegram made them.
    TelegramUpdateId(i64)
);

/// Who owns a conversation, in the form stored in `conversations.owner`:
/// `user:<sub>` for platform users, `visitor:<uuid>` for anonymous visitors.
/// Every conversation query filters on it, which is what keeps conversations private.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerKey(String);

impl OwnerKey {
    pub fn user(sub: &str) -> Self {
        Self(format!("user:{sub}"))
    }

    pub fn visitor(id: Uuid) -> Self {
        Self(format!("visitor:{id}"))
    }

    /// The stored form back; `None` unless it has one of the two prefixes.
    pub fn parse(stored: &str) -> Option<Self> {
        (stored.starts_with("user:") || stored.starts_with("visitor:")).then(|| Self(stored.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> OwnerKind {
        if self.0.starts_with("visitor:") { OwnerKind::Visitor } else { OwnerKind::User }
    }
}

impl fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for OwnerKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl sqlx::Type<sqlx::Postgres> for OwnerKey {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for OwnerKey {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self::parse(text).ok_or_else(|| UnknownVariant(text.to_owned()))?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for OwnerKey {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownVariant(other.to_owned())),
                }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

/// A string from the database or a request that names no known variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownVariant(pub String);

str_enum!(
    /// Whether a conversation still accepts messages.
    ConversationStatus { Open => "open", Closed => "closed" }
);
str_enum!(
    /// Who answers the user: the AI, or a human operator after escalation.
    ConversationMode { Ai => "ai", Human => "human" }
);
str_enum!(
    /// Who wrote a message.
    MessageRole { User => "user", Assistant => "assistant", Operator => "operator", System => "system" }
);
str_enum!(
    /// What the authenticated caller is on the host platform.
    Role { User => "user", Admin => "admin", Visitor => "visitor" }
);
str_enum!(
    /// Whether the owner of a conversation is a platform user or an anonymous visitor.
    OwnerKind { User => "user", Visitor => "visitor" }
);
str_enum!(
    /// What decided a message's content: the language model, the offline engine, the user's
    /// escalation button, or an action's own result text.
    Engine { Llm => "llm", Offline => "offline", Button => "button", Action => "action" }
);
str_enum!(
    /// What the assistant decided to do with a user message.
    DecisionKind { Answer => "answer", Clarify => "clarify", Escalate => "escalate", Action => "action" }
);
str_enum!(
    /// Why a conversation went to a person.
    EscalationReason {
        /// The user asked for a person.
        UserRequest => "user_request",
        /// Clarifications were used up without a good match.
        NoAnswer => "no_answer",
        /// The problem needs a person's decision or access (refunds, billing errors, hacked accounts).
        NeedsHuman => "needs_human",
        /// The user tried to reach data or instructions that are not theirs to reach.
        Security => "security",
    }
);
str_enum!(
    /// Where an operator wrote from.
    OperatorChannel { Console => "console", Telegram => "telegram" }
);
str_enum!(
    /// Who asked for an action run: the user's button, or an engine deciding on their message.
    ActionRequester { User => "user", Llm => "llm", Offline => "offline" }
);
